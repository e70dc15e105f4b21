#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Connections per backend and "drain done" with a real dataplane (root).

scripts/sluice_topology's network (client, LB, three backends), sluiced and
one dataplane (`sluice-xdp` native on the LB's veth, or `sluice-dpdk
--iface`), started with short FIN and UDP timeouts and a 0.5 s sweep. The
client holds 12 keep-alive HTTP connections to the IPIP VIP's 80/tcp and 6
UDP flows to its 5353/udp (re-sent every 0.5 s), each answered by the
backend that names itself. Then:

  1 `stats --json` shows, per backend, as many active connections as the
    servers saw (the sum is 12 and 6), none inactive; /metrics says the same;
  2 the backend with the most TCP connections is drained in both services:
    status says its drain is waiting, no "drained" event yet;
  3 its TCP connections closed, its UDP flows stopped: its FIN entries show
    as inactive, then everything goes (FIN 20 s, UDP 3 s), the drain reads
    done (`status --json`, "drained" in `sluicectl stats`, /metrics) and
    `sluicectl events` holds one "drained" event per service for it; the
    other backends' counts never moved;
  4 the dataplane stopped: no live record counts, and the counts read as
    unknown (null), not as zero.

usage: conns_e2e.py BUILD_DIR SOURCE_DIR xdp|dpdk [unittest args]
"""
import collections
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import unittest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(os.path.dirname(TESTS), "scripts")]
import sluice_topology as T  # noqa: E402
import testmain  # noqa: E402
from sluice_topology.procs import ONE_CPU  # noqa: E402

BUILD = SOURCE = DATAPLANE = None
N_TCP, N_UDP = 12, 6
# FIN long enough that a loaded machine still reads the closed connections
# as inactive before they expire; UDP short: the stopped flows go soon.
FIN_S, UDP_S, SWEEP_S = 20, 3, 0.5
HOLDER = os.path.join(TESTS, "harness", "conn_holder.py")


class Holder:
    """tests/harness/conn_holder.py in the client namespace; every answer
    waited for at most `timeout` seconds."""

    def __init__(self, ns):
        # On CPU 0, where the LB's NAPI poll is pinned (Topology.pin_lb_napi):
        # a flow whose packets reach another CPU's table is counted there.
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, *ONE_CPU, "/usr/bin/python3", HOLDER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line, timeout=60):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise TimeoutError(f"conn_holder: no answer to {line!r} in {timeout}s")
        out = json.loads(self.p.stdout.readline() or '{"error": "conn_holder exited"}')
        if "error" in out:
            raise RuntimeError(f"conn_holder {line!r}: {out['error']}")
        return out

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait(timeout=10)
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except OSError:
                pass


class Conns(unittest.TestCase):
    topo = None
    holder = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: network namespaces, XDP, bpffs")
        for tag in T.leftovers("sluice-conns"):
            T.cleanup(tag)
        cls.topo = T.Topology(BUILD, dataplane=DATAPLANE, backends=3, prefix="sluice-conns")
        cls.topo.dp_args = ["--ct-timeout-fin", str(FIN_S), "--ct-timeout-udp", str(UDP_S),
                            "--conn-sweep-s", str(SWEEP_S)]
        try:
            cls.topo.up()
            cls.topo.start_sluice(cls.topo.config_yaml(modes=["ipip"], ipv6=False))
            cls.topo.pin_lb_napi()
            cls.holder = Holder(cls.topo.ns["client"])
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.holder:
            cls.holder.close()
            cls.holder = None
        if cls.topo:
            cls.topo.down()
            cls.topo = None

    # -- reading sluice
    def backends(self, svc, verb="stats"):
        """{backend name: its JSON} of one service in `sluicectl VERB --json`."""
        for v in self.topo.ctl_json(verb)["vips"]:
            if v["vip"] == svc:
                return {self.topo.be_by_addr(b["address"]): b for b in v["backends"]}
        self.fail(f"no service {svc} in `sluicectl {verb}`")

    def counts(self, svc):
        """{backend: (active, inactive)}; None for a backend not counted."""
        return {be: (b["conns"]["active"], b["conns"]["inactive"]) if b["conns"] else None
                for be, b in self.backends(svc).items()}

    def wait_counts(self, svc, want, what, timeout=20):
        seen = []  # every distinct reading, for the failure's message

        def ok():
            c = self.counts(svc)
            if not seen or seen[-1][1] != c:
                seen.append((round(time.monotonic() - t0, 1), c))
            return c == want
        t0 = time.monotonic()
        try:
            T.wait_for(ok, timeout, what, step=0.2)
        except TimeoutError:
            self.fail(f"{what}: want {want}; {svc} read (seconds in: counts) {seen}")

    def drained_events(self):
        # `events --json`: one event object per line.
        evs = [json.loads(ln) for ln in self.topo.ctl("--json", "events")[1].splitlines() if ln.strip()]
        return [e["fields"] for e in evs
                if e["fields"].get("event") == "backend" and e["fields"].get("state") == "drained"]

    def test_counts_and_drain(self):
        topo = self.topo
        vip = T.vip4("ipip")
        tcp, udp = T.service(vip, T.HTTP_PORT, "tcp"), T.service(vip, T.UDP_PORT, "udp")
        got = self.holder.ask(f"open {vip} {N_TCP} {N_UDP}")
        by_tcp, by_udp = collections.Counter(got["tcp"]), collections.Counter(got["udp"])
        self.assertEqual(sum(by_tcp.values()), N_TCP, got)
        self.assertTrue(set(by_tcp) <= {"be1", "be2", "be3"}, got)

        # 1: what the servers saw, per backend.
        want_tcp = {be: (by_tcp.get(be, 0), 0) for be in ("be1", "be2", "be3")}
        want_udp = {be: (by_udp.get(be, 0), 0) for be in ("be1", "be2", "be3")}
        self.wait_counts(tcp, want_tcp, "the open TCP connections counted")
        self.wait_counts(udp, want_udp, "the live UDP flows counted")
        stats = topo.ctl_json("stats")
        self.assertGreaterEqual(stats["conns_workers"]["counting"], 1, stats["conns_workers"])
        live = [w for w in stats["workers"] if w["state"] == "live"]
        self.assertTrue(live and all(w["conn_sweeps"] >= 1 and w["conn_sweep_ms"] == SWEEP_S * 1000
                                     for w in live), live)
        v = next(v for v in stats["vips"] if v["vip"] == tcp)
        self.assertEqual(v["conns"], {"active": N_TCP, "inactive": 0})
        metrics = topo.metrics()
        fill = re.search(r'^sluice_worker_conn_table_entries\{worker="[^"]+",kind="(?:xdp|dpdk)"\} (\d+)$',
                         metrics, re.M)
        self.assertTrue(fill and int(fill[1]) >= N_TCP + N_UDP, "the table's fill on /metrics")
        self.assertRegex(metrics, r'(?m)^sluice_worker_conn_table_capacity\{worker="[^"]+",kind="(?:xdp|dpdk)"\} [1-9]')
        for be, (act, _) in want_tcp.items():
            line = (f'sluice_backend_connections{{vip="{tcp}",backend="{topo.be4(be)}",state="active"}} '
                    f"{act}")
            self.assertIn(line, metrics)

        # 1b: `conn list`: every connection, from its client to the backend
        # whose server answered it; filtered by VIP, by backend, limited.
        listed = topo.ctl_json("conn", "list", tcp)
        self.assertEqual(listed["dataplanes"], {"asked": 1, "unanswered": []}, listed)
        self.assertEqual(listed["matched"], N_TCP, listed)
        self.assertEqual(sorted((c["client"], c["backend"]) for c in listed["connections"]),
                         sorted((c, topo.be4(be)) for c, be in zip(got["tcp_from"], got["tcp"])))
        self.assertEqual({(c["vip"], c["protocol"], c["state"], c["destination"]) for c in listed["connections"]},
                         {(tcp, "tcp", "EST", f"{vip}:{T.HTTP_PORT}")})
        every = topo.ctl_json("conn", "list")
        self.assertEqual(every["matched"], N_TCP + N_UDP, every)
        self.assertEqual(sorted(c["client"] for c in every["connections"] if c["vip"] == udp),
                         sorted(got["udp_from"]))
        one = by_tcp.most_common()[-1][0]
        only = topo.ctl_json("conn", "list", tcp, "--backend", topo.be4(one))
        self.assertEqual(sorted(c["client"] for c in only["connections"]),
                         sorted(c for c, be in zip(got["tcp_from"], got["tcp"]) if be == one))
        few = topo.ctl_json("conn", "list", "--limit", "2")
        self.assertEqual((len(few["connections"]), few["matched"]), (2, N_TCP + N_UDP), few)
        text = topo.ctl("conn", "list", tcp)[1]
        self.assertIn(f"{N_TCP} of {N_TCP} matching connections shown", text)
        self.assertEqual(sum(1 for ln in text.splitlines() if ln.startswith("tcp ")), N_TCP, text)
        rc, _, err = topo.ctl("conn", "list", tcp, "--limit", "0", check=False)
        self.assertEqual((rc, err.count("\n")), (1, 1), err)
        self.assertIn("--limit: '0'", err)
        # The table's fill, per worker: at least the flows held open.
        w = next(w for w in topo.ctl_json("stats")["workers"] if w["state"] == "live")
        self.assertGreaterEqual(w["ct_live"], N_TCP + N_UDP, w)
        self.assertGreater(w["ct_capacity"], w["ct_live"], w)

        # 2: drain the busiest backend in both services.
        x = by_tcp.most_common(1)[0][0]
        addr = topo.be4(x)
        for svc in (tcp, udp):
            topo.ctl("backend", "set", svc, addr, "--drain")
        st = self.backends(tcp, "status")[x]
        self.assertEqual(st["drain"], "waiting", st)
        self.assertEqual(self.drained_events(), [])

        # 3: its connections go: FIN entries first (inactive), then none.
        closed = self.holder.ask(f"close {x}")
        self.assertEqual(closed["closed_tcp"], by_tcp[x], closed)
        others_tcp = {be: c for be, c in want_tcp.items() if be != x}
        others_udp = {be: c for be, c in want_udp.items() if be != x}
        self.wait_counts(tcp, {**others_tcp, x: (0, by_tcp[x])},
                         f"{x}'s closed connections counted inactive (FIN, {FIN_S} s)")
        closing = topo.ctl_json("conn", "list", tcp, "--backend", addr)["connections"]
        self.assertEqual(sorted(c["state"] for c in closing), ["FIN"] * by_tcp[x], closing)
        # Only TCP's: the UDP flows were closed too and expire after
        # UDP_S (3 s), so that service may be done already, rightly.
        self.assertEqual([e for e in self.drained_events() if e["vip"] == tcp], [],
                         "drained while FIN entries are live")
        self.wait_counts(tcp, {**others_tcp, x: (0, 0)}, f"{x}'s connections all gone", timeout=FIN_S + 30)
        self.wait_counts(udp, {**others_udp, x: (0, 0)}, f"{x}'s UDP flows all gone", timeout=30)
        T.wait_for(lambda: len(self.drained_events()) == 2, 10, "a drained event per service")
        evs = self.drained_events()
        self.assertEqual(sorted(e["vip"] for e in evs), sorted([tcp, udp]), evs)
        self.assertTrue(all(e["address"] == addr for e in evs), evs)
        self.assertIn(f"backend {addr} of VIP {tcp} drained: no connections left", [e["reason"] for e in evs])
        for svc in (tcp, udp):
            self.assertEqual(self.backends(svc, "status")[x]["drain"], "done")
        text = topo.ctl("stats")[1]
        self.assertTrue(any(addr in ln and "drained" in ln for ln in text.splitlines()), text)
        self.assertIn(f'sluice_backend_drain_done{{vip="{tcp}",backend="{addr}"}} 1', topo.metrics())
        time.sleep(3 * SWEEP_S)  # a few more sweeps: still one event per drain
        self.assertEqual(len(self.drained_events()), 2)

        # 3b: a restarted sluiced knows the drains were reported (state.json):
        # no second event for them, and they still read done.
        topo.kill_sluiced(signal.SIGTERM)
        topo.start_sluiced()
        T.wait_for(lambda: topo.ctl_json("stats")["conns_workers"]["counting"] >= 1, 20,
                   "the dataplane's counts read by the new sluiced")
        time.sleep(3 * SWEEP_S)
        self.assertEqual(self.drained_events(), [], "a drain reported again after a restart")
        for svc in (tcp, udp):
            self.assertEqual(self.backends(svc, "status")[x]["drain"], "done")

        # 4: no live dataplane, no counts.
        topo.stop_dataplane()
        T.wait_for(lambda: topo.ctl_json("stats")["conns_workers"]["counting"] == 0, 10,
                   "no record counting once the dataplane stopped")
        self.assertEqual(set(self.counts(tcp).values()), {None})
        self.assertEqual(self.backends(tcp, "status")[x]["drain"], "unknown")


def main():
    global BUILD, SOURCE, DATAPLANE
    if len(sys.argv) < 4 or sys.argv[3] not in ("xdp", "dpdk"):
        sys.exit(__doc__)
    BUILD, SOURCE, DATAPLANE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    testmain.require_root(f"conns_e2e_{DATAPLANE}", "network namespaces, XDP, bpffs")
    testmain.tear_down_on_term("conns_e2e", Conns.tearDownClass)
    Conns.__name__ = f"Conns_{DATAPLANE}"
    testmain.main(f"conns_e2e_{DATAPLANE}", [sys.argv[0]] + sys.argv[4:])


if __name__ == "__main__":
    main()
