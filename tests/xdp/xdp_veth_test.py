#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-xdp on veths in network namespaces, with real traffic (root).

One topology for the module (tests/harness/xdp_util.py): a client, the LB running
sluiced and sluice-xdp (native XDP on its veth), a router, and two Linux
backends that serve the VIPs from their loopback and open sluice's tunnels
with `sluice-xdp --decap` (this kernel has no IPIP/FOU modules). Checks:
- the program attaches natively, and in generic mode on request, and a
  clean stop detaches it;
- TCP connections and UDP exchanges to VIPs through IPIP, IPv6-in-IPv6,
  IPv4-in-IPv6, GUE over IPv4 and GUE over IPv6 reach a backend and its replies reach the client
  straight from the backend, with the counters read back through
  `sluicectl stats --json`;
- the maps follow the snapshot (a backend added, drained, unhealthy,
  removed), and every read of them is one whole snapshot;
- a restarted sluice-xdp keeps the pinned connection table: an established
  connection stays on its backend after its backend left the Maglev table;
- a killed sluice-xdp leaves its program forwarding on the last snapshot,
  and the next one swaps its own program in place;
- a flow whose backend is drained stays on it; once the backend is deleted
  the flow's next packet goes to another backend, and conn_repick counts
  that once.

usage: xdp_veth_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402
from sluiced import wait_for  # noqa: E402

VIP_TCP, VIP_UDP_GUE, VIP_TCP_GUE, VIP_UDP = "10.200.1.1", "10.200.1.2", "10.200.1.3", "10.200.1.4"
VIP6 = "fd00:200::1"
VIP_4IN6 = "10.200.1.5"   # IPv4 VIP, IPv6 backends: IPv4-in-IPv6
VIP6_GUE = "fd00:200::2"  # IPv6 UDP VIP, GUE over IPv6
GUE_PORT = 6080
CHECK = "{ type: tcp, port: 80, interval_ms: 100, timeout_ms: 80, rise: 1, fall: 1 }"
CONFIG = f"""\
node:
  source_ipv4: 10.0.0.2
  source_ipv6: fd00::2
  gateway_mac: "{U.Topology.GW_MAC}"
vips:
  - address: {VIP_TCP}
    port: 80
    protocol: tcp
    mode: ipip
    ring_size: 251
    backends:
      - address: 10.1.0.11
        check: {CHECK}
      - address: 10.1.0.12
        check: {CHECK}
  - address: {VIP_UDP_GUE}
    port: 53
    protocol: udp
    mode: gue
    gue_port: {GUE_PORT}
    ring_size: 251
    backends:
      - address: 10.1.0.11
      - address: 10.1.0.12
  - address: {VIP_TCP_GUE}
    port: 8080
    protocol: tcp
    mode: gue
    gue_port: {GUE_PORT}
    ring_size: 251
    backends:
      - address: 10.1.0.11
      - address: 10.1.0.12
  - address: {VIP_UDP}
    port: 5353
    protocol: udp
    mode: ipip
    ring_size: 251
    backends:
      - address: 10.1.0.11
      - address: 10.1.0.12
  - address: {VIP6}
    port: 80
    protocol: tcp
    mode: ipip
    ring_size: 251
    backends:
      - address: fd01::11
      - address: fd01::12
  - address: {VIP_4IN6}
    port: 80
    protocol: tcp
    mode: ipip
    ring_size: 251
    backends:
      - address: fd01::11
      - address: fd01::12
  - address: {VIP6_GUE}
    port: 53
    protocol: udp
    mode: gue
    gue_port: {GUE_PORT}
    ring_size: 251
    backends:
      - address: fd01::11
      - address: fd01::12
"""
BACKEND_IDS = {}  # address -> backend id, from --show


# The connection table is per CPU, as the DPDK worker's is per RX queue: it
# relies on every packet of a flow reaching the same CPU, which RSS gives on
# a NIC. On a veth the CPU that sends a frame is the CPU that runs XDP on it,
# so the client and the servers run on CPU 0: all of a flow's packets, the
# client's ACKs included, are then seen by one CPU's table.
ONE_CPU = ["taskset", "-c", "0"]


class Client:
    """xdp_peer.py client in the client namespace, driven line by line."""

    def __init__(self, topo, tmp):
        self.proc = U.Proc([*ONE_CPU, U.PY, os.path.join(U.SOURCE, "tests/harness/xdp_peer.py"), "client"],
                           os.path.join(tmp, "client.log"), ns=topo.ns["cli"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def cmd(self, **c):
        p = self.proc.proc
        p.stdin.write(json.dumps(c) + "\n")
        p.stdin.flush()
        r, _, _ = select.select([p.stdout], [], [], 30)
        if not r:
            raise AssertionError(f"client did not answer {c}")
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"client exited: {self.proc.text()}")
        return json.loads(line)

    def ok(self, **c):
        r = self.cmd(**c)
        assert r["ok"], f"{c}: {r.get('error')}"
        return r

    def close(self):
        try:
            self.proc.proc.stdin.close()
        except OSError:
            pass
        self.proc.stop()
        self.proc.proc.stdout.close()


@unittest.skipUnless(U.is_root(), "needs root (namespaces, XDP)")
class XdpVeth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-xdp-veth-")
        cls.procs = []
        cls.topo = U.Topology(vips4=[VIP_TCP, VIP_UDP_GUE, VIP_TCP_GUE, VIP_UDP, VIP_4IN6],
                              vips6=[VIP6, VIP6_GUE])
        cls.bpf = None
        cls.sluiced = None
        cls.client = None
        try:
            cls.topo.build()
            cls.bpf = U.BpfMount()
            cls.pin_dir = os.path.join(cls.bpf.path, "l0")
            cls.sluiced = U.Sluiced(cls.tmp, CONFIG, ns=cls.topo.ns["lb"], tag="xdp-veth")
            for be in ("be1", "be2"):
                vips = ["--addr", VIP_UDP_GUE, VIP_UDP, VIP6_GUE]
                srv = U.Proc([*ONE_CPU, U.PY, os.path.join(U.SOURCE, "tests/harness/xdp_peer.py"), "server", be,
                              "--tcp", 80, 8080, "--udp", 53, 5353, *vips],
                             os.path.join(cls.tmp, f"{be}-server.log"), ns=cls.topo.ns[be])
                cls.procs.append(srv)
                wait_for(lambda: "ready" in srv.text() or not srv.alive(), 10, f"{be} server")
                # be1 opens every tunnel to it; be2 only those for its VIPs.
                extra = [] if be == "be1" else [x for v in (VIP_TCP, VIP_UDP_GUE, VIP_TCP_GUE, VIP_UDP, VIP6,
                                                            VIP_4IN6, VIP6_GUE) for x in ("--vip", v)]
                dec = U.Proc([U.exe("xdp/sluice-xdp"), "--decap", "--iface", "b0", "--gue-port", GUE_PORT,
                              *extra], os.path.join(cls.tmp, f"{be}-decap.log"), ns=cls.topo.ns[be])
                cls.procs.append(dec)
                wait_for(lambda: "decap attached" in dec.text() or not dec.alive(), 20, f"{be} decap")
                assert dec.alive(), dec.text()
            cls.xdp = cls.start_xdp()
            cls.client = Client(cls.topo, cls.tmp)
            # The health checks see both backends up.
            wait_for(lambda: all(b["state"] == "up" for v in cls.sluiced.json("status")["vips"]
                                 for b in v["backends"]), 20, "backends up")
            cls.wait_mirrored()
            for b in cls.show()["backends"]:
                BACKEND_IDS[(b["vip_id"], b["address"])] = b["id"]
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.client:
            cls.client.close()
        for p in reversed(cls.procs):
            p.stop()
        if cls.sluiced:
            cls.sluiced.stop()
        cls.topo.teardown()
        if cls.bpf:
            cls.bpf.close()
        if os.environ.get("SLUICE_TEST_KEEP"):
            print("kept", cls.tmp, file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ----------------------------------------------------------- helpers

    starts = 0

    @classmethod
    def start_xdp(cls, *extra):
        cls.starts += 1
        p = U.Proc([U.exe("xdp/sluice-xdp"), "--iface", "l0", "--shm", cls.sluiced.shm,
                    "--pin-dir", cls.pin_dir, "--ct-entries", "4096", "--log-level", "debug", *extra],
                   os.path.join(cls.tmp, f"sluice-xdp.{cls.starts}.log"), ns=cls.topo.ns["lb"])
        cls.procs.append(p)
        wait_for(lambda: "attached in" in p.text() or not p.alive(), 30, "sluice-xdp to attach")
        assert p.alive(), p.text()
        return p

    @classmethod
    def show(cls, ct=False):
        r = U.run(U.exe("xdp/sluice-xdp"), "--iface", "l0", "--show", *(["--show-ct"] if ct else []),
                  ns=cls.topo.ns["lb"])
        return json.loads(r.stdout)

    @classmethod
    def wait_mirrored(cls):
        gen = cls.sluiced.generation()
        return wait_for(lambda: (lambda s: s if s["generation"] >= gen else None)(cls.show()), 10,
                        f"generation {gen} in the maps")

    def xdp_link(self):
        return U.run("ip", "-d", "link", "show", "l0", ns=self.topo.ns["lb"]).stdout

    def vip_view(self, show, address, port):
        for v in show["vips"]:
            if v["address"] == address and v["port"] == port:
                return v
        return None

    def assert_consistent(self, show):
        """One bank, one snapshot: every Maglev entry names a backend of its
        VIP that is present, healthy and not draining in the same bank, and
        each table has exactly live_count members."""
        bes = {b["id"]: b for b in show["backends"]}
        for v in show["vips"]:
            members = {int(k) for k in v["ring"] if k != "empty"}
            self.assertEqual(len(members), v["live_count"], v)
            self.assertEqual(sum(v["ring"].values()), v["ring_size"], v)
            for m in members:
                b = bes.get(m)
                self.assertIsNotNone(b, f"ring of {v['address']} names backend {m}, absent from its bank")
                self.assertEqual(b["vip_id"], v["id"])
                self.assertTrue(b["present"] and b["healthy"] and not b["draining"], b)

    # ------------------------------------------------------------- tests

    def test_1_attached_natively(self):
        link = self.xdp_link()
        self.assertIn("prog/xdp", link)
        self.assertNotIn("xdpgeneric", link)
        s = self.show()
        self.assertEqual(s["mode"], "native")
        self.assertEqual(s["generation"], self.sluiced.generation())
        self.assert_consistent(s)
        # Every VIP key and the address entries, in the active bank.
        keys = {(k["address"], k["port"], k["kind"]) for k in s["keys"]}
        for a, port in ((VIP_TCP, 80), (VIP_UDP_GUE, 53), (VIP_TCP_GUE, 8080), (VIP_UDP, 5353), (VIP6, 80),
                        (VIP_4IN6, 80), (VIP6_GUE, 53)):
            self.assertIn((a, port, "service"), keys)
            self.assertIn((a, 0, "address"), keys)
        workers = self.sluiced.json("status")["workers"]
        self.assertTrue(any(w["kind"] == "xdp" and w["state"] == "live" and w["name"] == "xdp l0"
                            for w in workers), workers)

    def test_2_generic_mode_and_clean_stop(self):
        lb = self.topo.ns["lb"]
        U.run("ip", "link", "add", "g0", "type", "veth", "peer", "name", "g1", ns=lb)
        try:
            U.run("ip", "link", "set", "g0", "up", ns=lb)
            U.run("ip", "link", "set", "g1", "up", ns=lb)
            p = U.Proc([U.exe("xdp/sluice-xdp"), "--iface", "g0", "--shm", self.sluiced.shm, "--mode", "generic",
                        "--pin-dir", os.path.join(self.bpf.path, "g0"), "--ct-entries", "64"],
                       os.path.join(self.tmp, "generic.log"), ns=lb)
            wait_for(lambda: "attached in" in p.text() or not p.alive(), 30, "generic attach")
            self.assertIn("attached in generic mode", p.text())
            link = U.run("ip", "-d", "link", "show", "g0", ns=lb).stdout
            self.assertIn("xdpgeneric", link)
            self.assertEqual(p.stop(), 0, p.text())
            self.assertNotIn("prog/xdp", U.run("ip", "-d", "link", "show", "g0", ns=lb).stdout)
            # Its pins stay until --unpin, which removes them.
            self.assertTrue(os.path.exists(os.path.join(self.bpf.path, "g0", "sl_ct")))
            U.run(U.exe("xdp/sluice-xdp"), "--iface", "g0", "--unpin", "--pin-dir",
                  os.path.join(self.bpf.path, "g0"), ns=lb)
            self.assertFalse(os.path.exists(os.path.join(self.bpf.path, "g0")))
        finally:
            U.run("ip", "link", "del", "g0", ns=lb, check=False)

    def test_3_traffic_through_tunnels(self):
        before = self.sluiced.json("stats")
        served = {}
        # TCP over IPIP: several connections, so both backends show up.
        for i in range(8):
            self.client.ok(op="open", id=f"t{i}", host=VIP_TCP, port=80)
            r = self.client.ok(op="send", id=f"t{i}", text=f"hello {i}")["reply"]
            be, _, echo = r.partition(":")
            self.assertEqual(echo, f"hello {i}")
            # The same connection keeps its backend.
            self.assertEqual(self.client.ok(op="send", id=f"t{i}", text="again")["reply"], f"{be}:again")
            self.client.ok(op="close", id=f"t{i}")
            served[be] = served.get(be, 0) + 1
        self.assertEqual(set(served), {"be1", "be2"}, served)
        # TCP over GUE, IPv6-in-IPv6 and IPv4-in-IPv6.
        for host, port in ((VIP_TCP_GUE, 8080), (VIP6, 80), (VIP_4IN6, 80)):
            self.client.ok(op="open", id="g", host=host, port=port)
            self.assertRegex(self.client.ok(op="send", id="g", text="x")["reply"], r"^be[12]:x$")
            self.client.ok(op="close", id="g")
        # UDP over GUE and over IPIP: the answer comes from the VIP itself,
        # straight from the backend (the LB only ever sees the requests).
        vip_before = {v["vip"]: v["packets"] for v in before["vips"]}
        n = 6
        for host, port in ((VIP_UDP_GUE, 53), (VIP_UDP, 5353), (VIP6_GUE, 53)):
            for i in range(n):
                r = self.client.ok(op="udp", host=host, port=port, text=f"q{i}", sport=40000 + i)
                self.assertRegex(r["reply"], rf"^be[12]:q{i}$")
                self.assertEqual(r["from"], host)

        def settled():
            s = self.sluiced.json("stats")
            v = {x["vip"]: x for x in s["vips"]}
            ok = all(v[k]["packets"] - vip_before.get(k, 0) == n
                     for k in (f"{VIP_UDP_GUE}:53/udp", f"{VIP_UDP}:5353/udp", f"[{VIP6_GUE}]:53/udp"))
            return s if ok else None
        # Counters reach the segment every 100 ms: wait for the copy.
        after = wait_for(settled, 5, "the UDP requests in sluicectl stats")
        c, c0 = after["counters"], before["counters"]
        self.assertGreater(c["tx_packets"], c0["tx_packets"])
        self.assertGreaterEqual(c["conn_new"] - c0["conn_new"], 8 + 3 + 3 * n)
        self.assertGreater(c["conn_hit"], c0["conn_hit"])
        for k in ("drop_no_backend", "drop_no_nexthop", "drop_too_big", "drop_no_snapshot"):
            self.assertEqual(c[k], 0, k)
        tcp_vip = next(v for v in after["vips"] if v["vip"] == f"{VIP_TCP}:80/tcp")
        for b in tcp_vip["backends"]:
            self.assertGreater(b["packets"], 0, b)
            self.assertGreater(b["new_flows"], 0, b)
        self.assertTrue(any(w["kind"] == "xdp" for w in after["workers"]))

    def test_3b_not_for_a_vip_to_the_kernel(self):
        """Echo requests to the LB's own address go to its kernel and are
        counted as pass_not_vip, as a delta over a reading taken just before:
        the total is above 0 from the start (ARP, health-check answers).
        Every request that got a reply passed the program; pass_not_vip also
        counts what the LB's kernel receives meanwhile (health-check answers,
        ARP, neighbour discovery: about 20 packets a second here, from a
        100 ms check interval on two backends), which the test does not
        control, so the delta is asserted to be at least the replies, not
        equal to them. n is large enough that background traffic alone
        cannot make up the delta before the wait gives up (the ping and the
        10 s wait see a few hundred such packets): a program that did not
        count these packets, or did not pass them, fails."""
        n = 2000
        before = self.sluiced.json("stats")["counters"]
        # Flood: the next request goes out when the reply came back (or after
        # 10 ms), so the run is bounded by -c and -w.
        out = U.run("ping", "-f", "-q", "-c", n, "-w", 30, U.Topology.LB4, ns=self.topo.ns["cli"],
                    check=False, timeout=60).stdout
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        self.assertIsNotNone(m, out)
        sent, replies = int(m.group(1)), int(m.group(2))
        self.assertEqual(sent, n, out)
        self.assertGreaterEqual(replies, n * 99 // 100, out)

        def passed():
            c = self.sluiced.json("stats")["counters"]
            return c if c["pass_not_vip"] - before["pass_not_vip"] >= replies else None
        # Counters reach the segment every 100 ms: wait for the copy.
        c = wait_for(passed, 10, f"pass_not_vip to rise by the {replies} echo requests answered")
        self.assertGreaterEqual(c["pass_not_vip"] - before["pass_not_vip"], replies)
        self.assertGreaterEqual(c["rx_packets"] - before["rx_packets"], replies)
        # Nothing of it was forwarded or dropped: none was for a VIP.
        for k in ("drop_no_backend", "drop_vip_proto", "icmp_echo_replied"):
            self.assertEqual(c[k], before[k], k)

    def test_4_maps_follow_the_snapshot(self):
        vip = f"{VIP_UDP}:5353/udp"
        dead = "10.1.0.14"  # checked on a port nobody listens on: goes down

        def backend(show, address):
            return next((b for b in show["backends"] if b["address"] == address
                         and b["vip_id"] == self.vip_view(show, VIP_UDP, 5353)["id"]), None)

        def in_ring(show, bid):
            return str(bid) in self.vip_view(show, VIP_UDP, 5353)["ring"]

        self.sluiced.ctl_ok("backend", "add", vip, "10.1.0.13")
        s = self.wait_mirrored()
        b = backend(s, "10.1.0.13")
        self.assertTrue(b and b["present"] and b["healthy"] and in_ring(s, b["id"]), s)
        self.assertEqual(self.vip_view(s, VIP_UDP, 5353)["live_count"], 3)
        self.assert_consistent(s)

        self.sluiced.ctl_ok("backend", "set", vip, "10.1.0.13", "--drain")
        s = self.wait_mirrored()
        b = backend(s, "10.1.0.13")
        self.assertTrue(b["draining"] and not in_ring(s, b["id"]), b)
        self.assert_consistent(s)

        self.sluiced.ctl_ok("backend", "del", vip, "10.1.0.13")
        s = self.wait_mirrored()
        self.assertIsNone(backend(s, "10.1.0.13"))
        self.assertEqual(self.vip_view(s, VIP_UDP, 5353)["live_count"], 2)
        self.assert_consistent(s)

        self.sluiced.ctl_ok("backend", "add", vip, dead, "--check", "tcp", "--check-port", "9",
                            "--interval-ms", "100", "--timeout-ms", "80", "--rise", "1", "--fall", "1")
        s = wait_for(lambda: (lambda x: x if backend(x, dead) and not backend(x, dead)["healthy"] else None)(
            self.wait_mirrored()), 15, f"{dead} unhealthy in the maps")
        self.assertFalse(in_ring(s, backend(s, dead)["id"]))
        self.assert_consistent(s)

        # Many snapshots in a row: every read of the maps is one of them.
        for i in range(6):
            self.sluiced.ctl_ok("backend", "add", vip, f"10.1.0.{30 + i}")
            self.assert_consistent(self.show())
        for i in range(6):
            self.sluiced.ctl_ok("backend", "del", vip, f"10.1.0.{30 + i}")
            self.assert_consistent(self.show())
        self.sluiced.ctl_ok("backend", "del", vip, dead)
        s = self.wait_mirrored()
        self.assertIsNone(backend(s, dead))
        self.assert_consistent(s)
        # How long publication -> maps took (reported, never asserted).
        # The first is the snapshot sluiced published before sluice-xdp started.
        lat = sorted(int(x) for x in re.findall(r"(\d+) us after its publication", self.xdp.text())[1:])
        if lat:
            print(f"\nmirror latency over {len(lat)} snapshots: median {lat[len(lat) // 2]} us, "
                  f"max {lat[-1]} us", file=sys.stderr)

    def test_5_restart_keeps_flows(self):
        cls = type(self)
        self.client.ok(op="open", id="kept", host=VIP_TCP, port=80)
        first = self.client.ok(op="send", id="kept", text="before")["reply"].split(":")[0]
        other = "be2" if first == "be1" else "be1"
        first_addr = U.Topology.BE[first][0]

        # A clean stop detaches and keeps the pin.
        self.assertEqual(cls.xdp.stop(), 0, cls.xdp.text())
        self.assertNotIn("prog/xdp", self.xdp_link())
        self.assertTrue(os.path.exists(os.path.join(self.pin_dir, "sl_ct")))
        cls.xdp = cls.start_xdp()
        self.assertIn("reused with its flows", cls.xdp.text())

        # The flow's backend leaves the Maglev table (drained: it keeps its
        # flows), so only the connection table can still send it there.
        try:
            self.sluiced.ctl_ok("backend", "set", f"{VIP_TCP}:80/tcp", first_addr, "--drain")
            s = self.wait_mirrored()
            v = self.vip_view(s, VIP_TCP, 80)
            self.assertEqual(v["live_count"], 1)
            bid = BACKEND_IDS[(v["id"], first_addr)]
            self.assertNotIn(str(bid), v["ring"])
            self.assertEqual(self.client.ok(op="send", id="kept", text="after")["reply"], f"{first}:after")
            ct = self.show(ct=True)["ct"]
            self.assertGreater(ct["by_backend"].get(str(bid), 0), 0, ct)
            for i in range(4):
                self.client.ok(op="open", id=f"n{i}", host=VIP_TCP, port=80)
                self.assertEqual(self.client.ok(op="send", id=f"n{i}", text="new")["reply"], f"{other}:new")
                self.client.ok(op="close", id=f"n{i}")
            self.client.ok(op="close", id="kept")
        finally:
            self.sluiced.ctl_ok("backend", "set", f"{VIP_TCP}:80/tcp", first_addr, "--weight", "100")
            self.wait_mirrored()

    def test_6_killed_then_replaced_in_place(self):
        cls = type(self)
        self.client.ok(op="open", id="k", host=VIP_TCP, port=80)
        be = self.client.ok(op="send", id="k", text="a")["reply"].split(":")[0]
        old_id = self.show()["program_id"]
        cls.xdp.stop(signal.SIGKILL)
        # Nobody mirrors or counts now, but the program still forwards.
        self.assertIn("prog/xdp", self.xdp_link())
        self.assertEqual(self.client.ok(op="send", id="k", text="b")["reply"], f"{be}:b")
        r = self.client.ok(op="udp", host=VIP_UDP, port=5353, text="c")
        self.assertRegex(r["reply"], r"^be[12]:c$")
        cls.xdp = cls.start_xdp()
        self.assertIn(f"replaced the sluice XDP program (id {old_id})", cls.xdp.text())
        self.assertIn("reused with its flows", cls.xdp.text())
        self.assertNotEqual(self.show()["program_id"], old_id)
        self.assertEqual(self.client.ok(op="send", id="k", text="d")["reply"], f"{be}:d")
        self.client.ok(op="close", id="k")

    def test_7_flow_moves_once_when_its_backend_leaves(self):
        """One UDP flow (fixed source port) to a VIP with two backends: its
        backend X drained, the flow stays on X and nothing is re-picked;
        X deleted, the flow's next packet goes to the other backend and
        conn_repick rises by exactly 1; the packet after that stays there
        (a flow moves once). The backends' answers say who served each
        request; the counters are compared with a reading taken just before
        each step. (tests/dpdk/dpdk_fixture_test.py LiveChange does the same on
        the DPDK dataplane.)"""
        key, sport = f"{VIP_UDP_GUE}:53/udp", 41000
        sent = [0]  # requests to this VIP so far: the only traffic it gets

        def ask(text, port=sport):
            r = self.client.ok(op="udp", host=VIP_UDP_GUE, port=53, text=text, sport=port)
            sent[0] += 1
            be, _, echo = r["reply"].partition(":")
            self.assertEqual(echo, text)
            return be

        def vip_stats(s):
            return next(v for v in s["vips"] if v["vip"] == key)

        def settled():
            """sluicectl stats once the segment holds every request sent so
            far. sluice-xdp copies the counters every 100 ms, the CPU's
            counters first, then the VIPs' and backends'; the program counts
            a packet's conn_* before its VIP's packets and tx_packets last.
            A copy that holds this VIP's `sent` packets and tx_packets past
            them holds their conn_* counters too: only this test's client
            sends to VIPs now, so a stray packet cannot stand in for one of
            them in both."""
            def ready():
                s = self.sluiced.json("stats")
                ok = (vip_stats(s)["packets"] - vip0 >= sent[0] and
                      s["counters"]["tx_packets"] - tx0 >= sent[0])
                return s if ok else None
            s = wait_for(ready, 10, f"{sent[0]} requests to {key} in sluicectl stats")
            # Exactly these, then: nothing else reached the VIP.
            self.assertEqual(vip_stats(s)["packets"] - vip0, sent[0])
            return s

        def delta(a, b, name):
            return b["counters"][name] - a["counters"][name]

        def backend_packets(s, be):
            addr = U.Topology.BE[be][0]
            return next((b["packets"] for b in vip_stats(s)["backends"] if b["address"] == addr), None)

        s0 = self.sluiced.json("stats")
        vip0, tx0 = vip_stats(s0)["packets"], s0["counters"]["tx_packets"]
        x = ask("first")
        y = "be2" if x == "be1" else "be1"
        x_addr = U.Topology.BE[x][0]
        s1 = settled()
        self.assertEqual(delta(s0, s1, "conn_new"), 1)
        self.assertEqual(delta(s0, s1, "conn_repick"), 0)
        try:
            # Drained: weight 0, out of the Maglev table, but it keeps its flows.
            self.sluiced.ctl_ok("backend", "set", key, x_addr, "--drain")
            v = self.vip_view(self.wait_mirrored(), VIP_UDP_GUE, 53)
            self.assertEqual(v["live_count"], 1)
            self.assertEqual(ask("drained"), x, "a drained backend keeps its flows")
            # A new flow goes to the other one.
            self.assertEqual(ask("new", port=sport + 1), y)
            s2 = settled()
            self.assertEqual(delta(s1, s2, "conn_repick"), 0, "nothing re-picked for a drained backend")
            self.assertEqual(delta(s1, s2, "conn_new"), 1)
            self.assertGreaterEqual(delta(s1, s2, "conn_hit"), 1)
            self.assertEqual(backend_packets(s2, x) - backend_packets(s1, x), 1)
            self.assertEqual(backend_packets(s2, y) - backend_packets(s1, y), 1)

            # Deleted: the flow's entry names a backend that is gone.
            self.sluiced.ctl_ok("backend", "del", key, x_addr)
            s = self.wait_mirrored()
            self.assertEqual(self.vip_view(s, VIP_UDP_GUE, 53)["live_count"], 1)
            self.assertNotIn(x_addr, [b["address"] for b in vip_stats(self.sluiced.json("stats"))["backends"]])
            self.assertEqual(ask("moved"), y, "the flow of a deleted backend goes to another one")
            s3 = settled()
            self.assertEqual(delta(s2, s3, "conn_repick"), 1, "the flow was re-picked once")
            self.assertEqual(delta(s2, s3, "conn_new"), 0, "re-picked in place, not inserted again")
            self.assertEqual(backend_packets(s3, y) - backend_packets(s2, y), 1)
            # Its entry now names the new backend: no second re-pick.
            self.assertEqual(ask("stays"), y)
            s4 = settled()
            self.assertEqual(delta(s3, s4, "conn_repick"), 0, "a flow moves once")
            self.assertGreaterEqual(delta(s3, s4, "conn_hit"), 1)
            self.assertEqual(backend_packets(s4, y) - backend_packets(s3, y), 1)
        finally:
            # Back to the configuration's set, whichever step failed.
            if x_addr not in [b["address"] for b in self.sluiced.json("backend", "list", key)]:
                self.sluiced.ctl_ok("backend", "add", key, x_addr)
            else:
                self.sluiced.ctl_ok("backend", "set", key, x_addr, "--weight", "100")
            self.wait_mirrored()


if __name__ == "__main__":
    testmain.main("xdp_veth_test", U.init(sys.argv))
