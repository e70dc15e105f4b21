#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The packet-fixture table (tests/fixtures/fixtures.py) through
`sluice-dpdk --pcap`, checked field by field (tests/fixtures/check.py), and
the flow distribution over weighted backends.

Each run: a real sluiced in a temp dir (own socket, state dir, shm segment)
loaded with the table's configuration; the frames written to IN.pcap;
`sluice-dpdk --shm NAME --pcap IN.pcap:OUT.pcap` forwards them in order with
one worker and prints its counters; OUT.pcap (forwards and the LB's replies),
OUT.exception.pcap (the kernel's) and the counters are checked against the
table. Fixtures marked with a known bug run on their own and are reported as
expected failures until the bug is fixed.

The live test (root only) runs `sluice-dpdk --iface` on a veth in network
namespaces it makes, changes the backends with sluicectl while flows are
open, and checks where the flows' next packets go.

No hugepages, no NIC; every wait is bounded and everything is torn down.

usage: dpdk_fixture_test.py BUILD_DIR SOURCE_DIR
"""
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

# The shared helpers (tests/harness/) and the packet-fixture table
# (tests/fixtures/) are beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(TESTS, "fixtures")]
import check  # noqa: E402
import fixtures  # noqa: E402  (needs python3-scapy: run with /usr/bin/python3)
import snapshot  # noqa: E402
import testmain  # noqa: E402
from sluiced import Sluiced, wait_for  # noqa: E402

BUILD = SOURCE = None
# Each sluiced here: a metrics port, and workers silent for 2 s are dead.
SLUICED = dict(metrics=True, worker_timeout_ms=2000)




def run_pcap(tmp, d, frames, name, extra=()):
    """Feeds frames through `sluice-dpdk --pcap`. Returns (tx, kernel, counters, port MAC)."""
    inp = os.path.join(tmp, f"{name}.in.pcap")
    out = os.path.join(tmp, f"{name}.out.pcap")
    fixtures.write_pcap(inp, frames)
    p = subprocess.run([os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", d.shm, "--pcap",
                        f"{inp}:{out}", *extra], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"sluice-dpdk --pcap exited {p.returncode}:\n{p.stderr}")
    counters = {}
    for line in p.stdout.splitlines():
        m = re.fullmatch(r"(\w+) (\d+)", line.strip())
        if m:
            counters[m.group(1)] = int(m.group(2))
    if not counters:
        raise AssertionError(f"sluice-dpdk printed no counters:\n{p.stdout}\n{p.stderr}")
    m = re.search(r"MAC ((?:[0-9a-f]{2}:){5}[0-9a-f]{2})", p.stderr, re.I)
    if not m:
        raise AssertionError(f"sluice-dpdk did not say its port's MAC:\n{p.stderr}")
    exc = out[:-len(".pcap")] + ".exception.pcap"
    return fixtures.read_pcap(out), fixtures.read_pcap(exc), counters, m.group(1).lower()


class FixtureTable(unittest.TestCase):
    """One sluiced with the table's configuration for the class; every run a
    fresh sluice-dpdk (so a fresh connection table)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-fx-")
        cls.d = None
        try:
            cls.d = Sluiced(BUILD, cls.tmp, "fx-table", config_text=fixtures.CONFIG, **SLUICED)
            cls.table = [fx for fx in fixtures.FIXTURES if "bug" not in fx]
            cls.out = run_pcap(cls.tmp, cls.d, [fx["frame"] for fx in cls.table], "table")
        except BaseException:
            cls.tearDownClass()  # not called when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.d:
            cls.d.stop()
        if os.environ.get("SLUICE_KEEP_TMP"):
            print(f"kept {cls.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, table, tx, kernel, counters, mac):
        snap = snapshot.Snapshot(self.d.shm)
        try:
            return check.check_run(table, tx, kernel, counters, fixtures.NODE, fixtures.VIPS, mac,
                                   pick=snap.pick)
        finally:
            snap.close()

    def run_table(self, table, name):
        return self.check(table, *run_pcap(self.tmp, self.d, [fx["frame"] for fx in table], name))

    def test_table_is_consistent(self):
        self.assertEqual(fixtures.self_check(SOURCE), [])

    def test_every_fixture_through_sluice_dpdk_pcap(self):
        errs = self.check(self.table, *self.out)
        self.assertEqual(errs, [], f"{len(errs)} problems in {len(self.table)} fixtures:\n" + "\n".join(errs))

    def test_the_checker_sees_every_kind_of_mistake(self):
        # The real run's outputs, each spoiled one way: the checker must say so.
        tx, kernel, counters, mac = self.out
        table = self.table
        to_tx = [fx for fx in table if fx["expect"]["action"] in ("forward", "reply")]
        self.assertEqual(len(tx), len(to_tx))
        idx = {fx["name"]: i for i, fx in enumerate(to_tx)}

        def find(pred):
            return next(i for i, fx in enumerate(to_tx) if pred(fx))

        def spoil(i, fn):
            t = list(tx)
            t[i] = bytes(fn(bytearray(t[i])))
            return t

        ipip = idx["v4_ipip tcp ACK with data"]
        gue = idx["v4_gue udp same flow"]
        v6 = idx["v6_ipip tcp FIN"]
        dsr = idx["v4_l2dsr tcp FIN"]
        frag = idx["v4_gue last fragment"]
        fneed = find(lambda fx: fx["expect"].get("reply", {}).get("kind") == "frag_needed")
        echo = find(lambda fx: fx["expect"].get("reply", {}).get("kind") == "echo")

        def other_backend(b, off, addrs):
            cur = bytes(b[off:off + len(addrs[0])])
            b[off:off + len(cur)] = next(a for a in addrs if a != cur)
            return b

        def set_byte(off, val):
            def f(b):
                b[off] = val if not callable(val) else val(b[off])
                return b
            return f

        v4_backends = [check._ip(a) for a, w, m in fixtures.VIPS["v4_ipip"]["backends"] if w]
        dsr_macs = [check._mac(m) for a, w, m in fixtures.VIPS["v4_l2dsr"]["backends"]]
        cases = {
            "inner byte": spoil(ipip, set_byte(-1, lambda x: x ^ 1)),
            "outer TTL": spoil(ipip, set_byte(14 + 8, 63)),
            "outer DSCP": spoil(ipip, set_byte(14 + 1, 0x20)),
            "outer checksum": spoil(ipip, set_byte(14 + 10, lambda x: x ^ 0x10)),
            "backend of a flow": spoil(ipip, lambda b: other_backend(b, 14 + 16, v4_backends)),
            "GUE source port": spoil(gue, set_byte(14 + 20 + 1, lambda x: x ^ 1)),
            "GUE checksum": spoil(gue, set_byte(14 + 20 + 7, 1)),
            "flow label": spoil(v6, set_byte(14 + 3, lambda x: x ^ 1)),
            "l2dsr backend": spoil(dsr, lambda b: other_backend(b, 0, dsr_macs)),
            "gateway MAC": spoil(ipip, set_byte(5, 0xFD)),
            "source MAC": spoil(ipip, set_byte(11, 0x77)),
            "padding forwarded": spoil(ipip, lambda b: b + b"\0\0"),
            "fragment elsewhere": spoil(frag, lambda b: other_backend(
                b, 14 + 16, [check._ip(a) for a, w, m in fixtures.VIPS["v4_gue"]["backends"]])),
            "frag-needed MTU": spoil(fneed, set_byte(14 + 20 + 7, lambda x: x ^ 8)),
            "echo checksum": spoil(echo, set_byte(14 + 20 + 2, lambda x: x ^ 1)),
            "a forward missing": tx[:ipip] + tx[ipip + 1:],
            "two swapped": tx[:ipip] + [tx[ipip + 1], tx[ipip]] + tx[ipip + 2:],
        }
        for what, t in cases.items():
            with self.subTest(what):
                self.assertNotEqual(self.check(table, t, kernel, counters, mac), [], what)
        with self.subTest("another Maglev table"):
            self.assertNotEqual(check.check_run(table, tx, kernel, counters, fixtures.NODE, fixtures.VIPS, mac,
                                                pick=lambda vip, h: check._ip(vip["backends"][h % 2][0])), [])
        with self.subTest("a kernel frame changed"):
            k = list(kernel)
            k[0] = k[0][:-1] + bytes([k[0][-1] ^ 1])
            self.assertNotEqual(self.check(table, tx, k, counters, mac), [])
        with self.subTest("a kernel frame missing"):
            self.assertNotEqual(self.check(table, tx, kernel[1:], counters, mac), [])
        for name in ("drop_truncated", "drop_vip_proto", "conn_new", "frag_followed", "pass_not_vip"):
            with self.subTest(f"counter {name}"):
                c = dict(counters)
                c[name] += 1
                self.assertNotEqual(self.check(table, tx, kernel, c, mac), [])


def _known_bug_test(fx):
    # Alone, so one bug's fix shows as this test's unexpected success
    # (then drop the fixture's `bug`).
    @unittest.expectedFailure
    def test(self):
        print(f"\n  known bug, {fx['tag']} {fx['name']}: {fx['bug']}", file=sys.stderr)
        errs = self.run_table([fx], "bug")
        self.assertEqual(errs, [], "\n".join(errs))
    return test


for _fx in fixtures.FIXTURES:
    if "bug" in _fx:
        setattr(FixtureTable, "test_known_bug_" + re.sub(r"\W+", "_", _fx["name"]).strip("_"),
                _known_bug_test(_fx))


# ------------------------------------------------------------ distribution

DIST_VIPS = {
    "equal": dict(address="10.201.0.1", port=80, protocol="tcp", mode="ipip", family=4,
                  backends=[("10.0.21.1", 100, None), ("10.0.21.2", 100, None),
                            ("10.0.21.3", 100, None), ("10.0.21.9", 0, None)]),
    "weighted": dict(address="10.201.0.2", port=80, protocol="tcp", mode="ipip", family=4,
                     backends=[("10.0.22.1", 100, None), ("10.0.22.2", 300, None)]),
}
DIST_FLOWS = 30000


def syn_frames(vip, n, seed):
    """n TCP SYNs of n distinct flows to vip: one template, patched with struct
    (scapy would take minutes)."""
    from scapy.all import IP, TCP, Ether
    tmpl = bytearray(bytes(Ether(src=fixtures.ROUTER_MAC, dst=fixtures.LB_MAC) /
                           IP(src="100.64.0.1", dst=vip, flags="DF", ttl=61) /
                           TCP(sport=1, dport=80, flags="S", seq=1, window=64240)))
    rng = random.Random(seed)
    seen, frames = set(), []
    while len(frames) < n:
        src = 0x64400000 | rng.getrandbits(22)  # 100.64.0.0/10
        sport = rng.randrange(1024, 65536)
        if (src, sport) in seen:
            continue
        seen.add((src, sport))
        f = bytearray(tmpl)
        struct.pack_into("!I", f, 26, src)
        struct.pack_into("!H", f, 24, 0)
        struct.pack_into("!H", f, 24, check.inet_csum(bytes(f[14:34])))
        struct.pack_into("!H", f, 34, sport)
        frames.append(bytes(f))
    return frames


class Distribution(unittest.TestCase):
    def test_flows_spread_by_weight(self):
        tmp = tempfile.mkdtemp(prefix="sluice-fx-dist-")
        d = None
        try:
            d = Sluiced(BUILD, tmp, "fx-dist", config_text=fixtures.config_yaml(fixtures.NODE, DIST_VIPS), **SLUICED)
            eq = syn_frames(DIST_VIPS["equal"]["address"], DIST_FLOWS, 1)
            wt = syn_frames(DIST_VIPS["weighted"]["address"], DIST_FLOWS, 2)
            # Interleaved, and every flow twice (SYN, then the same frame again):
            # its second packet must find its first's backend.
            frames = [f for pair in zip(eq, wt) for f in pair]
            frames += frames
            tx, kernel, counters, _ = run_pcap(tmp, d, frames, "dist", ("--ct-entries", "1048576"))
            self.assertEqual(len(tx), len(frames), counters)
            # A few buckets of the 4-way table get a fifth flow (Poisson): those
            # evict and are picked again by Maglev, to the same backend.
            self.assertEqual(counters["conn_new"] + counters["conn_hit"], len(frames))
            self.assertGreaterEqual(counters["conn_new"], 2 * DIST_FLOWS)
            self.assertLessEqual(counters["conn_new"] - 2 * DIST_FLOWS, counters["conn_evict"])
            by_vip = {"equal": {}, "weighted": {}}
            backend_of = {}
            for f in tx:
                inner_src, inner_dst, sport = f[34 + 12:34 + 16], f[34 + 16:34 + 20], f[54:56]
                dst = socket.inet_ntoa(f[30:34])
                name = "equal" if socket.inet_ntoa(inner_dst) == DIST_VIPS["equal"]["address"] else "weighted"
                key = (inner_src, sport, name)
                if key in backend_of:
                    self.assertEqual(backend_of[key], dst, "a flow's second packet went elsewhere")
                    continue
                backend_of[key] = dst
                by_vip[name][dst] = by_vip[name].get(dst, 0) + 1
            # Each flow went where the snapshot's Maglev table says.
            snap = snapshot.Snapshot(d.shm)
            try:
                for (src, sport, name), b in backend_of.items():
                    key = check.flow_key(4, src, socket.inet_aton(DIST_VIPS[name]["address"]),
                                         struct.unpack("!H", sport)[0], 80, 6)
                    want = snap.pick(DIST_VIPS[name], check.flow_hash(key))
                    self.assertEqual(socket.inet_aton(b), want, f"{name}: a flow off its Maglev backend")
            finally:
                snap.close()
            report = {k: {b: f"{n / DIST_FLOWS:.4f}" for b, n in sorted(v.items())} for k, v in by_vip.items()}
            print(f"\nflow shares over {DIST_FLOWS} flows each: {report}", file=sys.stderr)
            want = {"equal": {"10.0.21.1": 1 / 3, "10.0.21.2": 1 / 3, "10.0.21.3": 1 / 3},
                    "weighted": {"10.0.22.1": 0.25, "10.0.22.2": 0.75}}
            for name, shares in want.items():
                self.assertEqual(set(by_vip[name]), set(shares), f"{name}: backends used")
                self.assertEqual(sum(by_vip[name].values()), DIST_FLOWS)
                for b, share in shares.items():
                    got = by_vip[name][b] / DIST_FLOWS
                    self.assertLessEqual(abs(got - share), 0.02, f"{name}: {b} got {got:.4f} of the flows, "
                                         f"want {share:.4f} +- 0.02")
        finally:
            if d:
                d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------ live change

LIVE_VIP = "10.202.0.1"
LIVE_KEY = f"{LIVE_VIP}:80/tcp"
LIVE_BACKENDS = ["10.0.31.1", "10.0.31.2", "10.0.31.3", "10.0.31.4"]
LIVE_ADDED = "10.0.31.5"
LIVE_CHECKED = "10.0.31.3"  # health-checked against a listener the test controls
LIVE_CHECK_PORT = 8080
LIVE_FLOWS = 400


def _ip(*args, ns=None, check=True):
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def _mac_of(ns, ifname):
    import json
    return json.loads(_ip("-j", "link", "show", ifname, ns=ns))[0]["address"]


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("ip"), "needs root and iproute2")
class LiveChange(unittest.TestCase):
    """`sluice-dpdk --iface` on a veth (LB namespace) with a client namespace on
    its peer; backends drained, removed, failing their health check and added
    with sluicectl while flows are open."""

    def setUp(self):
        t = f"sfx{os.getpid() % 100000}"
        self.lbns, self.clns, self.lbif, self.clif = f"{t}-lb", f"{t}-cl", f"{t}l", f"{t}c"
        self.tmp = tempfile.mkdtemp(prefix="sluice-fx-live-")
        self.procs = []
        self.d = None
        self.spread = {}  # phase -> {backend: flows}, printed for the log
        self.addCleanup(self.teardown_all)
        _ip("netns", "add", self.lbns)
        _ip("netns", "add", self.clns)
        _ip("link", "add", self.lbif, "type", "veth", "peer", "name", self.clif)
        _ip("link", "set", self.lbif, "netns", self.lbns)
        _ip("link", "set", self.clif, "netns", self.clns)
        for ns, ifname, addr in ((self.lbns, self.lbif, "10.0.0.2/24"), (self.clns, self.clif, "10.0.0.1/24")):
            # No IPv6 chatter; neither kernel routes what it sees (docs/testing.md).
            for key in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
                        "net.ipv4.ip_forward=0"):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", key], check=True, timeout=30)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", ifname, "up", ns=ns)
            _ip("addr", "add", addr, "dev", ifname, ns=ns)
        # The health-checked backend's address lives on the LB's loopback,
        # where sluiced (in the LB namespace) checks it.
        _ip("addr", "add", f"{LIVE_CHECKED}/32", "dev", "lo", ns=self.lbns)
        self.client_mac = _mac_of(self.clns, self.clif)
        self.lb_mac = _mac_of(self.lbns, self.lbif)
        self.listener = self.listen()

    def teardown_all(self):
        for phase, n in self.spread.items():
            print(f"\n  {phase}: {dict(sorted(n.items()))}", end="", file=sys.stderr)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        if self.d:
            self.d.stop()
        for ns in (self.lbns, self.clns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if os.environ.get("SLUICE_KEEP_TMP"):
            print(f"kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def listen(self):
        code = ("import socket\n"
                "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('{LIVE_CHECKED}', {LIVE_CHECK_PORT})); s.listen(64)\n"
                "while True: s.accept()[0].close()\n")
        p = subprocess.Popen(["ip", "netns", "exec", self.lbns, sys.executable, "-c", code])
        self.procs.append(p)
        return p

    def state(self):
        return {b["address"]: b for b in self.d.json("backend", "list", LIVE_KEY)}

    def wait_dataplane_current(self):
        def current():
            st = self.d.json("status")
            live = [w for w in st["workers"] if w["state"] == "live"]
            return live and all(w["generation_seen"] >= st["generation"] for w in live)
        wait_for(current, 20, "the dataplane to use the latest snapshot")

    def exchange(self, frames, name):
        """Sends frames from the client; returns {flow: backend} of what the LB forwarded.
        A frame lost on the veth or in a socket buffer (a busy machine) is sent
        again, up to three times: a flow's repeated packet finds its entry, so
        the counters stay exact."""
        flow_of = lambda f: (f[26:30], f[34:36])  # noqa: E731
        got, todo = [], list(frames)
        for attempt in range(4):
            inp = os.path.join(self.tmp, f"{name}.{attempt}.in.pcap")
            out = os.path.join(self.tmp, f"{name}.{attempt}.out.pcap")
            fixtures.write_pcap(inp, todo)
            subprocess.run(["ip", "netns", "exec", self.clns, sys.executable,
                            os.path.join(TESTS, "fixtures", "netio.py"), self.clif, inp, out, str(len(todo)),
                            "5", self.lb_mac], check=True, timeout=120)
            got += fixtures.read_pcap(out)
            seen = {(f[34 + 12:34 + 16], f[34 + 20:34 + 22]) for f in got if len(f) >= 34 + 22}
            todo = [f for f in todo if flow_of(f) not in seen]
            if not todo:
                break
        self.assertEqual(todo, [], f"{name}: {len(todo)} of {len(frames)} flows never forwarded")
        self.spread[name] = {}
        where = {}
        for f in got:
            self.assertEqual(f[0:6], check._mac(self.client_mac), "not sent to the gateway MAC")
            self.assertEqual(f[12:14], b"\x08\x00")
            self.assertEqual(f[14 + 9], 4, "not IPIP")
            self.assertEqual(f[14 + 12:14 + 16], socket.inet_aton("10.0.0.2"))
            inner = f[34:]
            flow = (inner[12:16], inner[20:22])
            if flow in where:  # sent again, forwarded twice: the same way
                self.assertEqual(where[flow], socket.inet_ntoa(f[14 + 16:14 + 20]))
                continue
            where[flow] = socket.inet_ntoa(f[14 + 16:14 + 20])
            self.spread[name][where[flow]] = self.spread[name].get(where[flow], 0) + 1
        return where

    def frames(self, first, n, flags):
        from scapy.all import IP, TCP, Ether
        tmpl = bytearray(bytes(Ether(src=self.client_mac, dst=self.lb_mac) /
                               IP(src="198.18.0.0", dst=LIVE_VIP, flags="DF", ttl=61) /
                               TCP(sport=1, dport=80, flags=flags, seq=1, window=64240)))
        out = []
        for i in range(first, first + n):
            f = bytearray(tmpl)
            f[26:30] = socket.inet_aton(f"198.18.{i >> 8}.{i & 255}")
            struct.pack_into("!H", f, 24, 0)
            struct.pack_into("!H", f, 24, check.inet_csum(bytes(f[14:34])))
            struct.pack_into("!H", f, 34, 20000 + i)
            out.append(bytes(f))
        return out

    def test_drained_flows_stay_removed_and_unhealthy_flows_move_new_flows_avoid_them(self):
        b1, b2, b3, b4 = LIVE_BACKENDS
        vips = {"live": dict(address=LIVE_VIP, port=80, protocol="tcp", mode="ipip", family=4,
                             backends=[(b, 100, None) for b in LIVE_BACKENDS])}
        cfg = fixtures.config_yaml({"source_ipv4": "10.0.0.2", "gateway_mac": self.client_mac}, vips)
        cfg = cfg.replace(f"      - address: {b3}\n        weight: 100\n",
                          f"      - address: {b3}\n        weight: 100\n        check: {{type: tcp, "
                          f"port: {LIVE_CHECK_PORT}, interval_ms: 500, timeout_ms: 500, rise: 1, fall: 1}}\n")
        self.assertIn("check:", cfg)
        self.d = Sluiced(BUILD, self.tmp, "fx-live", config_text=cfg, netns=self.lbns, **SLUICED)
        wait_for(lambda: self.state()[b3]["checks"] >= 2 and self.state()[b3]["state"] == "up", 20,
                 "the checked backend to pass its checks")
        dp = subprocess.Popen(["ip", "netns", "exec", self.lbns, os.path.join(BUILD, "dataplane/sluice-dpdk"),
                               "--shm", self.d.shm, "--iface", self.lbif],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(dp)
        self.wait_dataplane_current()

        # 1. Flows open on all four.
        before = self.exchange(self.frames(0, LIVE_FLOWS, "S"), "open")
        self.assertEqual(set(before.values()), set(LIVE_BACKENDS), "all four backends get flows")

        # 2. Drain b1, remove b2, add b5, fail b3's health check.
        self.d.ok("backend", "set", LIVE_KEY, b1, "--drain")
        self.d.ok("backend", "del", LIVE_KEY, b2)
        self.d.ok("backend", "add", LIVE_KEY, LIVE_ADDED)
        self.listener.kill()
        self.listener.wait(timeout=10)
        wait_for(lambda: self.state()[b3]["state"] == "down", 20, "the checked backend to go down")
        self.wait_dataplane_current()
        after = self.exchange(self.frames(0, LIVE_FLOWS, "A"), "established")
        fresh = self.exchange(self.frames(LIVE_FLOWS, LIVE_FLOWS, "S"), "new")
        for flow, b in before.items():
            if b in (b1, b4):
                self.assertEqual(after[flow], b, f"a flow on {b} moved to {after[flow]}")
            else:
                self.assertIn(after[flow], (b4, LIVE_ADDED), f"a flow of {b} went to {after[flow]}")
        self.assertEqual(set(fresh.values()), {b4, LIVE_ADDED}, "new flows: live backends only, the new one too")

        # 3. b3 healthy again: moved flows stay where they went; new ones may use b3.
        self.listener = self.listen()
        wait_for(lambda: self.state()[b3]["state"] == "up", 20, "the checked backend to come back")
        self.wait_dataplane_current()
        again = self.exchange(self.frames(0, 2 * LIVE_FLOWS, "A"), "again")
        for flow, b in list(after.items()) + list(fresh.items()):
            self.assertEqual(again[flow], b, f"a flow on {b} moved to {again[flow]} when {b3} came back")
        later = self.exchange(self.frames(2 * LIVE_FLOWS, LIVE_FLOWS, "S"), "later")
        self.assertEqual(set(later.values()), {b3, b4, LIVE_ADDED})

        dp.send_signal(signal.SIGTERM)
        out, err = dp.communicate(timeout=60)
        self.assertEqual(dp.returncode, 0, err)
        c = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+) (\d+)$", out, re.M)}
        moved = sum(1 for b in before.values() if b in (b2, b3))
        self.assertEqual(c.get("conn_repick"), moved, out)
        self.assertEqual(c.get("conn_new"), 3 * LIVE_FLOWS, out)


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("dpdk_fixture_test", [sys.argv[0]] + sys.argv[3:])
