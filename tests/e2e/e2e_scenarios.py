#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice end to end: real clients, real servers, one dataplane (root).

One network per run (scripts/sluice_topology/, what scripts/topology runs):
a client namespace with ten addresses, the LB namespace running sluiced and
the dataplane under test (`sluice-xdp` native on the LB's veth, or
`sluice-dpdk --iface` on it), and four backends (three configured, one spare) that serve HTTP and a UDP echo
from their loopback VIPs and open IPIP/GUE with `sluice-xdp --decap`. Every
scenario of issue 5 §2 runs for the three modes at once, each mode on its own
VIPs, with a subTest per mode:

  1 spread       300 HTTP requests from 300 (address, port) pairs: all answered, 20-47 % each
  2 udp          one flow's datagrams reach one backend; 150 flows spread
  3 health       a backend's server stops: marked down on exactly its `fall`-th
                 failed probe in a row (the checker's own counts in `sluicectl
                 status --json`), then 100 % success on the others; back: up on
                 exactly its `rise`-th passed probe in a row
  4 churn        downloads survive a backend added and a different one removed
  5 drain        --drain: the download on it finishes, it gets no new connection
  6 sluiced      SIGKILL: traffic flows; restarted: adopts the dataplane, same
                 configuration, a later change takes effect
  7 dataplane    sluice-xdp restarted: established connections survive (pinned
                 connection table); either restarted: forwarding again
  8 ipv6         scenario 1 on the IPv6 VIPs
  9 stats        after every scenario, per-VIP and per-backend packets in
                 `sluicectl stats --json` and /metrics equal what the bridge
                 handed the LB's veth for that VIP service (counted on the
                 bridge's side of it, within the kernel's own tx counter of
                 that port), less what reached it while no dataplane ran and
                 what the kernel counted as dropped between there and the
                 LB; that in turn is what the client sent (counted on its
                 veth) less what the kernel counted as dropped on the way.
                 TCP and UDP alike: a retransmission is a packet sent and
                 counted, never slack. Every packet left the LB carried the
                 VIP's way (counted on the bridge); no drop counter moved;
                 replies came from the backends' MACs

How long failover takes (a backend marked down, a dataplane forwarding
again) is printed here, never asserted: `scripts/bench --only failover`
measures it.

usage: e2e_scenarios.py BUILD_DIR SOURCE_DIR xdp|dpdk [unittest args]
"""
import atexit
import os
import re
import signal
import sys
import time
import unittest

# The shared helpers are in tests/harness/, beside this folder; the network
# is scripts/sluice_topology/, the package scripts/topology runs.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(os.path.dirname(TESTS), "scripts")]
import sluice_topology as T  # noqa: E402
import testmain  # noqa: E402

BUILD = SOURCE = DATAPLANE = None


INTERVAL_MS, RISE, FALL = 200, 2, 2
DOWNLOAD_S = 5


class Scenarios(unittest.TestCase):
    topo = None
    next_port = 10000

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: network namespaces, XDP, bpffs")
        t0 = time.monotonic()
        for tag in T.leftovers("sluice-e2e"):  # of runs that were killed
            T.cleanup(tag)
        cls.topo = T.Topology(BUILD, dataplane=DATAPLANE, backends=4, check_interval_ms=INTERVAL_MS)
        atexit.register(cls.topo.down)  # SIGTERM (meson's timeout): see main()
        try:
            cls.topo.up()
            cls.config = cls.topo.config_yaml(backends=["be1", "be2", "be3"], rise=RISE, fall=FALL)
            cls.topo.start_sluice(cls.config)
            cls.baseline = cls.topo.ctl("dump")[1]
        except BaseException:
            cls.topo.down()
            raise
        cls.timings = {"setup": time.monotonic() - t0}

    @classmethod
    def tearDownClass(cls):
        if cls.topo:
            cls.topo.down()
            cls.topo = None
        for k, v in getattr(cls, "timings", {}).items():
            print(f"  {DATAPLANE} {k}: {v:.1f}s", file=sys.stderr)

    def setUp(self):
        self.t0 = time.monotonic()

    def tearDown(self):
        type(self).timings[self._testMethodName] = time.monotonic() - self.t0
        # Every scenario leaves sluice running and its configuration as it
        # found them, even when it failed half-way.
        topo = self.topo
        if not topo:
            return
        if not (topo.sluiced and topo.sluiced.alive()):
            topo.start_sluiced()
        if not (topo.dp and topo.dp.alive()):
            topo.start_dataplane()
        for be in topo.backends:
            if f"{be}-server" not in topo.procs:
                topo.start_server(be)
                topo.wait_server(be)
        if topo.ctl("dump")[1] != self.baseline:
            topo.ctl("apply", "-f", "-", stdin=self.config)
        topo.wait_backends_up()
        topo.wait_next_hops()

    # ------------------------------------------------------------ helpers

    def sources(self, n, v6=False):
        """n fresh (address, port) pairs: a port is never reused in a run."""
        base = type(self).next_port
        type(self).next_port += (n + T.CLIENTS - 1) // T.CLIENTS + 1
        assert type(self).next_port < 32000, "out of client ports"
        return T.sources(n, base, v6)

    def get(self, host, n, v6=False, parallel=4):
        """n requests to host:80 from fresh sources: the results."""
        return self.topo.client.http([(a, p, host, T.HTTP_PORT, "/") for a, p in self.sources(n, v6)],
                                     parallel=parallel)

    def shares(self, results):
        d = {}
        for r in results:
            k = r["backend"] if r["ok"] else "failed"
            d[k] = d.get(k, 0) + 1
        return d

    def assert_all_ok(self, results, what):
        bad = [r for r in results if not r["ok"]]
        self.assertFalse(bad, f"{what}: {len(bad)} of {len(results)} failed, e.g. {bad[:3]}")

    def mark(self):
        """What the client has sent, what reached the LB's veth, the kernel's
        counters on the way and what sluice has counted, now."""
        c = self.topo.client.counts()
        f = self.topo.tap.counts()
        links = self.topo.link_stats()
        side = lambda *ifs: sum(links[ns][i].get(d, {}).get("dropped", 0) for ns, i in ifs for d in ("rx", "tx"))
        return {"sent": c["counts"], "drops": c["drops"] + f["drops"], "fwd": f["counts"],
                "retrans": c["retrans"],
                # Dropped by the kernel between the client's sniffer and the
                # bridge's side of the LB's veth, and from there to the LB.
                "client_drops": side(("client", "eth0"), ("br", "client"), ("br", "br0")),
                "lb_drops": side(("br", "lb"), ("lb", "eth0")),
                "lb_port_tx": links["br"]["lb"].get("tx", {}).get("packets", 0),
                "lb_rx": links["lb"]["eth0"].get("rx", {}).get("packets", 0),
                "stats": self.topo.stats(), "t": time.monotonic()}

    @staticmethod
    def key(svc):
        addr, port, proto = svc
        return f"{addr}/{6 if proto == 'tcp' else 17}/{port}"

    @staticmethod
    def carried(svc):
        """How the LB carries svc's packets to its backends (same family here)."""
        addr, port, proto = svc
        mode = T.MODES[int(addr.split(".")[2]) - 1] if "." in addr else T.MODES[int(addr.rsplit(":", 1)[1]) - 1]
        v6 = ":" in addr
        kind = {"ipip": "ip6ip6" if v6 else "ipip", "gue": "gue6" if v6 else "gue4", "l2dsr": "plain"}[mode]
        return kind, f"{addr}/{6 if proto == 'tcp' else 17}/{port}"

    def vip_stats(self, stats, svc):
        name = T.service(*svc)
        for v in stats["vips"]:
            if v["vip"] == name:
                return v
        self.fail(f"no VIP {name} in sluicectl stats")

    def account(self, before, svcs, gap=None, what="", hint=""):
        """Scenario 9 after a scenario: for every VIP service it used, the
        packets sluice counted equal what the bridge handed the LB's veth
        for it since `before` (less at most what reached it while `gap` =
        (mark, mark) had no dataplane, and what the kernel counted as
        dropped from there to the LB's dataplane), and that equals what the
        client sent less what the kernel counted as dropped on its way. No
        other slack, TCP or UDP: a retransmitted segment is one more packet
        sent and one more counted. The backends' packets add up to the
        VIP's, and /metrics says the same as `sluicectl stats --json`."""
        gap_arrived = {}
        if gap:
            g0, g1 = gap
            for s in svcs:
                k = "to-lb/" + self.key(s)
                gap_arrived[s] = g1["fwd"].get(k, 0) - g0["fwd"].get(k, 0)

        def deltas():
            now = self.mark()
            out = {}
            for s in svcs:
                k = self.key(s)
                sent = now["sent"].get(k, 0) - before["sent"].get(k, 0)
                arrived = now["fwd"].get("to-lb/" + k, 0) - before["fwd"].get("to-lb/" + k, 0)
                v1, v0 = self.vip_stats(now["stats"], s), self.vip_stats(before["stats"], s)
                counted = v1["packets"] - v0["packets"]
                b0 = {b["address"]: b["packets"] for b in v0["backends"]}
                by_backend = sum(b["packets"] - b0.get(b["address"], 0) for b in v1["backends"])
                kind, inner = self.carried(s)
                fwd = {kd: now["fwd"].get(f"{kd}/{inner}", 0) - before["fwd"].get(f"{kd}/{inner}", 0)
                       for kd in ("ipip", "ip6ip6", "ip4in6", "ip6in4", "gue4", "gue6", "plain")}
                out[s] = (sent, arrived, counted, by_backend, fwd)
            return now, out

        def kernel(now):
            """What the kernel counted on the LB's port and veth since
            `before`: frames the bridge's side sent (tx_packets), frames the
            LB's side received (rx_packets), and the drops on either half of
            the path (client to bridge, bridge to LB)."""
            return {k: now[k] - before[k] for k in ("client_drops", "lb_drops", "lb_port_tx", "lb_rx")}

        def problems(now, d):
            k = kernel(now)
            bad = []
            for s, (sent, arrived, counted, _, fwd) in d.items():
                name, unseen = T.service(*s), gap_arrived.get(s, 0)
                if arrived > sent:
                    bad.append(f"{name}: {arrived} packets reached the LB's veth, the client sent {sent}")
                if sent - arrived > k["client_drops"]:
                    bad.append(f"{name}: the client sent {sent} packets, {arrived} reached the LB's veth, the "
                               f"kernel dropped {k['client_drops']} on the way")
                if counted > arrived:
                    bad.append(f"{name}: sluice counted {counted} packets, {arrived} reached the LB's veth")
                if arrived - unseen - counted > k["lb_drops"]:
                    bad.append(f"{name}: sluice counted {counted} packets, {arrived} reached the LB's veth ("
                               f"{unseen} while no dataplane ran), the kernel dropped {k['lb_drops']} between "
                               f"the bridge and the LB")
                if fwd[self.carried(s)[0]] != counted:
                    bad.append(f"{name}: {fwd[self.carried(s)[0]]} packets left the LB as "
                               f"{self.carried(s)[0]}, sluice counted {counted}: {fwd}")
            arrived_all = sum(v[1] for v in d.values())
            counted_all = sum(v[2] for v in d.values())
            # The kernel's own counters of the two ends of the LB's veth, read
            # before and after: every packet counted above went through both.
            if arrived_all > k["lb_port_tx"] + k["lb_drops"]:
                bad.append(f"{arrived_all} VIP packets seen leaving the bridge for the LB, its port's tx "
                           f"counter moved {k['lb_port_tx']} (dropped {k['lb_drops']})")
            if counted_all > k["lb_rx"]:
                bad.append(f"sluice counted {counted_all} VIP packets, the LB's veth received {k['lb_rx']} frames")
            return bad

        def settled():
            # The sniffers read their sockets on their own time, and the
            # dataplanes copy their counters every 100 ms: wait for all.
            now, d = deltas()
            return None if problems(now, d) else (now, d)
        try:
            now, d = T.wait_for(settled, 8, "the counters to settle", step=0.2)
        except TimeoutError:
            now, d = deltas()
        bad = problems(now, d)
        if bad:
            c1, c0 = now["stats"]["counters"], before["stats"]["counters"]
            moved = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] != c0.get(k, 0)}
            print(f"\n  after {what}: per service (sent, reached the LB's veth, counted, left the LB): "
                  f"{ {T.service(*k): (v[0], v[1], v[2], v[4][self.carried(k)[0]]) for k, v in d.items()} }; "
                  f"kernel: {kernel(now)}; the client retransmitted {now['retrans'] - before['retrans']}; "
                  f"counters moved: {moved}", file=sys.stderr)
        with self.subTest(scenario=9, after=what):
            self.assertEqual(now["drops"], 0, "the client's packet counter lost packets: no verdict")
            # Nothing the clients sent was dropped by a dataplane.
            c1, c0 = now["stats"]["counters"], before["stats"]["counters"]
            drops = {k: c1[k] - c0.get(k, 0) for k in c1 if k.startswith("drop_") and c1[k] != c0.get(k, 0)}
            why = {"drop_no_nexthop": " (a snapshot with backends whose next-hop MAC was unknown)"}
            self.assertEqual(drops, {}, f"the dataplane dropped packets during {what}: "
                                        + ", ".join(f"{k} {v}{why.get(k, '')}" for k, v in drops.items())
                                        + (f"; {hint}" if hint else ""))
            for s, (sent, arrived, counted, by_backend, fwd) in d.items():
                name = T.service(*s)
                self.assertGreater(sent, 0, f"{name}: the client sent nothing")
                self.assertEqual(by_backend, counted, f"{name}: per-backend packets do not add up to the VIP's")
                # What left the LB for the backends: carried the VIP's way only.
                kind, _ = self.carried(s)
                self.assertEqual(sum(fwd.values()), fwd[kind], f"{name}: carried another way too: {fwd}")
            if bad:
                self.fail(f"after {what}: the counts do not reconcile:\n  " + "\n  ".join(bad))
            # Direct server return: replies from VIPs come from the backends' MACs, never the LB's.
            replies = {k.split("/", 1)[1]: now["sent"].get(k, 0) - before["sent"].get(k, 0)
                       for k in now["sent"] if k.startswith("reply-from/")}
            self.assertEqual(replies.get(T.LB_MAC, 0), 0, f"replies came through the LB: {replies}")
            self.assertGreater(sum(replies.values()), 0, "no reply from a VIP reached the client")
            # /metrics, read between two identical stats: the same numbers.
            for _ in range(5):
                s1 = self.topo.stats()
                m = self.topo.metrics()
                s2 = self.topo.stats()
                if s1["vips"] == s2["vips"]:
                    break
            vm = {k: int(v) for k, v in re.findall(r'^sluice_vip_packets_total\{vip="([^"]+)"\} (\d+)$', m, re.M)}
            bm = {(k, b): int(v) for k, b, v in
                  re.findall(r'^sluice_backend_packets_total\{vip="([^"]+)",backend="([^"]+)"\} (\d+)$', m, re.M)}
            for v in s2["vips"]:
                self.assertEqual(vm.get(v["vip"]), v["packets"], f"/metrics vs stats for {v['vip']}")
                for b in v["backends"]:
                    self.assertEqual(bm.get((v["vip"], b["address"])), b["packets"],
                                     f"/metrics vs stats for {v['vip']} {b['address']}")

    def tcp4(self, mode):
        return (T.vip4(mode), T.HTTP_PORT, "tcp")

    def udp4(self, mode):
        return (T.vip4(mode), T.UDP_PORT, "udp")

    def tcp6(self, mode):
        return (T.vip6(mode), T.HTTP_PORT, "tcp")

    def svc(self, s):
        return T.service(*s)

    def be_addr(self, s, be):
        return self.topo.be6(be) if ":" in s[0] else self.topo.be4(be)

    def start_downloads(self, tag, modes, per_mode=1, seconds=DOWNLOAD_S):
        """Long downloads, `per_mode` per mode, from fresh sources; returns
        {(mode, i): (job id, backend)} once each has named its backend."""
        jobs = {}
        for m in modes:
            for i, (a, p) in enumerate(self.sources(per_mode)):
                jid = f"{tag}-{m}-{i}"
                self.topo.client.start(jid, op="slow", src=a, sport=p, host=T.vip4(m), port=T.HTTP_PORT,
                                       seconds=seconds, timeout=10)
                jobs[(m, i)] = jid

        def named():
            out = {}
            for k, jid in jobs.items():
                pr = self.topo.client.peek(jid)
                if pr["done"]:
                    out[k] = (jid, self.topo.client.wait(jid, 5))
                elif pr["progress"].get("backend"):
                    out[k] = (jid, pr["progress"]["backend"])
                else:
                    return None
            return out
        got = T.wait_for(named, 15, "every download's first bytes", step=0.05)
        for k, (jid, be) in got.items():
            if isinstance(be, dict):
                self.fail(f"download {jid} ended before it started streaming: {be}")
        return got

    def finish_downloads(self, downloads):
        """Waits for each download: {key: result}."""
        return {k: self.topo.client.wait(jid, DOWNLOAD_S + 20) for k, (jid, _) in downloads.items()}

    def check_change(self, args, what):
        rc, out, err = self.topo.ctl(*args, check=False)
        self.assertEqual(rc, 0, f"sluicectl {' '.join(map(str, args))}: {err}")

    def health_of(self, svcs, be):
        """{service: be's backend object in `sluicectl status --json`}, for
        every service in svcs, from one status."""
        names = {self.svc(s) for s in svcs}
        return {v["vip"]: b for v in self.topo.status()["vips"] if v["vip"] in names
                for b in v["backends"] if self.topo.be_by_addr(b["address"]) == be}

    def wait_states(self, svcs, be, want, timeout):
        """Waits until `be` is in state `want` for every service in svcs:
        (the seconds it took, {service: be's backend object then})."""
        t0 = time.monotonic()

        def all_there():
            h = self.health_of(svcs, be)
            return h if len(h) == len(svcs) and all(b["state"] == want for b in h.values()) else None
        got = T.wait_for(all_there, timeout, f"{be} {want} for {', '.join(map(self.svc, svcs))}", step=0.05)
        return time.monotonic() - t0, got

    def assert_transition(self, got, be, want, n, since=None):
        """Each service's checker turned `be` `want` on exactly the n-th probe
        in a row to say so: the probes since the last one that went the other
        way (checks - failures_in_row for down) up to the one that flipped it
        (transition_check) number n. Valid while no probe has gone the other
        way since, which the caller ensures. since: {service: a transition_check
        this one must come after}."""
        run = "failures_in_row" if want == "down" else "successes_in_row"
        for name, b in sorted(got.items()):
            with self.subTest(service=name, transition=want):
                self.assertEqual(b["healthy"], want == "up", b)
                self.assertGreater(b["transition_check"], (since or {}).get(name, 0), f"{name}: {b}")
                self.assertLessEqual(b["transition_check"], b["checks"], f"{name}: {b}")
                in_row = b["transition_check"] - (b["checks"] - b[run])
                self.assertEqual(in_row, n, f"{name}: {be} marked {want} by the {in_row}-th probe in a row to "
                                            f"say so, not the {n}-th: {b}")

    # ------------------------------------------------------------ scenarios

    def test_1_spread(self):
        before = self.mark()
        for m in T.MODES:
            with self.subTest(mode=m):
                res = self.get(T.vip4(m), 300)
                self.assert_all_ok(res, f"{m}: 300 requests")
                d = self.shares(res)
                for be in ("be1", "be2", "be3"):
                    share = d.get(be, 0) / len(res)
                    self.assertTrue(0.20 <= share <= 0.47, f"{m}: {be} got {share:.0%} of 300 ({d})")
                self.assertEqual(set(d), {"be1", "be2", "be3"}, d)
        self.account(before, [self.tcp4(m) for m in T.MODES], what="spread")

    def test_2_udp(self):
        before = self.mark()
        for m in T.MODES:
            with self.subTest(mode=m):
                vip = T.vip4(m)
                (a, p), = self.sources(1)
                one = self.topo.client.udp([(a, p, vip, T.UDP_PORT, 20)])[0]
                self.assertEqual(len(one), 20)
                self.assertFalse([x for x in one if x.startswith("!")], f"{m}: one flow: {one}")
                self.assertEqual(len(set(one)), 1, f"{m}: one flow's datagrams reached {set(one)}")
                many = self.topo.client.udp([(a, p, vip, T.UDP_PORT, 2) for a, p in self.sources(150)])
                bad = [f for f in many if any(x.startswith("!") for x in f)]
                self.assertFalse(bad, f"{m}: {len(bad)} of 150 flows lost datagrams, e.g. {bad[:3]}")
                split = [f for f in many if len(set(f)) != 1]
                self.assertFalse(split, f"{m}: flows answered by two backends: {split[:3]}")
                d = {}
                for f in many:
                    d[f[0]] = d.get(f[0], 0) + 1
                self.assertEqual(set(d), {"be1", "be2", "be3"}, d)
                for be, n in d.items():
                    self.assertGreaterEqual(n / 150, 0.15, f"{m}: {be} got {n} of 150 flows: {d}")
        self.account(before, [self.udp4(m) for m in T.MODES], what="udp")

    def wait_taken(self, what):
        """Until every live worker forwards by the published generation:
        status shows a verdict when sluiced publishes it, and a loaded
        machine may take a moment more to hand it to the dataplane."""
        gen = self.topo.status()["generation"]
        T.wait_for(lambda: all(w["generation_seen"] >= gen for w in self.topo.status()["workers"]
                               if w["state"] == "live"), 10, f"the dataplane to take {what} (generation {gen})")

    def test_3_health(self):
        victim = "be2"
        svcs = [f(m) for m in T.MODES for f in (self.tcp4, self.udp4, self.tcp6)]
        before = self.mark()
        self.topo.stop_server(victim)
        try:
            # Nothing answers for the victim now: every probe fails.
            took, got = self.wait_states(svcs, victim, "down", 60)
            type(self).timings["health: marked down after"] = took
            self.wait_taken("the verdict")
            self.assert_transition(got, victim, "down", FALL)
            down_at = {name: b["transition_check"] for name, b in got.items()}
            for m in T.MODES:
                with self.subTest(mode=m, phase="down"):
                    res = self.get(T.vip4(m), 60) + self.get(T.vip6(m), 30, v6=True)
                    self.assert_all_ok(res, f"{m}: with {victim} down")
                    self.assertNotIn(victim, self.shares(res))
                    udp = self.topo.client.udp([(a, p, T.vip4(m), T.UDP_PORT, 1) for a, p in self.sources(30)])
                    names = [f[0] for f in udp]
                    self.assertFalse([x for x in names if x.startswith("!") or x == victim],
                                     f"{m}: UDP with {victim} down: {names}")
        finally:
            self.topo.start_server(victim)
            self.topo.wait_server(victim)
        # Its servers answer again (wait_server: both listen): every probe passes.
        took, got = self.wait_states(svcs, victim, "up", 60)
        type(self).timings["health: back up after"] = took
        self.wait_taken("the verdict")
        self.assert_transition(got, victim, "up", RISE, since=down_at)
        print(f"\n  health ({INTERVAL_MS} ms, fall {FALL}, rise {RISE}): {victim} down on all {len(svcs)} services "
              f"{type(self).timings['health: marked down after']:.2f}s after its servers stopped, up {took:.2f}s "
              f"after they were back", file=sys.stderr)
        for m in T.MODES:
            with self.subTest(mode=m, phase="back"):
                res = self.get(T.vip4(m), 60)
                self.assert_all_ok(res, f"{m}: after {victim} came back")
                self.assertIn(victim, self.shares(res), f"{m}: {victim} rejoined but got no new request")
        self.account(before, svcs, what="health")

    def test_4_churn(self):
        before = self.mark()
        downloads = self.start_downloads("churn", T.MODES, per_mode=2)
        removed = {}
        check = ["--check", "tcp", "--check-port", T.HTTP_PORT, "--interval-ms", INTERVAL_MS,
                 "--timeout-ms", INTERVAL_MS * 3 // 4, "--rise", RISE, "--fall", FALL]
        for m in T.MODES:
            s = self.svc(self.tcp4(m))
            busy = {downloads[(m, i)][1] for i in range(2)}
            removed[m] = next(be for be in ("be3", "be2", "be1") if be not in busy)
            self.check_change(["backend", "add", s, self.topo.be4("be4"), *check], "add")
            self.check_change(["backend", "del", s, self.topo.be4(removed[m])], "del")
        self.topo.wait_next_hops()
        for m in T.MODES:
            with self.subTest(mode=m, phase="new connections"):
                res = self.get(T.vip4(m), 60)
                self.assert_all_ok(res, f"{m}: after the churn")
                d = self.shares(res)
                self.assertNotIn(removed[m], d, f"{m}: the removed backend still gets new connections")
                self.assertIn("be4", d, f"{m}: the added backend gets no new connection")
        results = self.finish_downloads(downloads)
        for (m, i), r in results.items():
            with self.subTest(mode=m, download=i):
                self.assertTrue(r["ok"], f"{m}: download {i} from {downloads[(m, i)][1]}: {r}")
                self.assertEqual(r["backend"], downloads[(m, i)][1])
        self.account(before, [self.tcp4(m) for m in T.MODES], what="churn")

    def test_5_drain(self):
        before = self.mark()
        downloads = self.start_downloads("drain", T.MODES)
        for m in T.MODES:
            be = downloads[(m, 0)][1]
            self.check_change(["backend", "set", self.svc(self.tcp4(m)), self.topo.be4(be), "--drain"], "drain")
        for m in T.MODES:
            with self.subTest(mode=m):
                be = downloads[(m, 0)][1]
                self.assertEqual(self.topo.backend_states(self.svc(self.tcp4(m)))[be], "draining")
                res = self.get(T.vip4(m), 60)
                self.assert_all_ok(res, f"{m}: while {be} drains")
                self.assertNotIn(be, self.shares(res), f"{m}: the drained {be} got new connections")
        for (m, i), r in self.finish_downloads(downloads).items():
            with self.subTest(mode=m, download="on the drained backend"):
                self.assertTrue(r["ok"], f"{m}: the download on the drained {downloads[(m, i)][1]}: {r}")
                self.assertEqual(r["backend"], downloads[(m, i)][1])
        self.account(before, [self.tcp4(m) for m in T.MODES], what="drain")

    def test_6_sluiced_killed(self):
        topo = self.topo
        before = self.mark()
        dump = topo.ctl("dump")[1]
        gen = topo.status()["generation"]
        dp_pid = topo.dp.pid
        downloads = self.start_downloads("cp", T.MODES)
        # A steady UDP flow per mode across the kill and the restart: any
        # packet a dataplane cannot forward meanwhile is counted as a drop.
        streams = []
        for m in T.MODES:
            (a, p), = self.sources(1)
            streams.append(topo.client.start(f"cp-udp-{m}", op="udp_stream", src=a, sport=p, host=T.vip4(m),
                                             port=T.UDP_PORT, rate=1000, seconds=4))
        time.sleep(0.5)
        self.assertEqual(topo.kill_sluiced(signal.SIGKILL), -signal.SIGKILL)
        for m in T.MODES:
            with self.subTest(mode=m, phase="sluiced dead"):
                res = self.get(T.vip4(m), 40) + self.get(T.vip6(m), 20, v6=True)
                self.assert_all_ok(res, f"{m}: with sluiced killed")
                self.assertEqual(set(self.shares(res)), {"be1", "be2", "be3"})
        topo.start_sluiced()
        for jid in streams:
            r = topo.client.wait(jid, 20)
            self.assertTrue(r["ok"], r)
        st = topo.status()
        self.assertEqual(topo.ctl("dump")[1], dump, "the configuration after the restart")
        self.assertGreaterEqual(st["generation"], gen, "the generation count goes on")
        live = [w for w in st["workers"] if w["pid"] == dp_pid]
        self.assertTrue(live and all(w["state"] == "live" for w in live),
                        f"the running sluice-{DATAPLANE} (pid {dp_pid}) adopted: {st['workers']}")
        topo.wait_next_hops()
        # A change made now reaches the running dataplane.
        for m in T.MODES:
            self.check_change(["backend", "set", self.svc(self.tcp4(m)), topo.be4("be1"), "--weight", "0"], "drain")
        self.wait_taken("the change")  # the adopted dataplane's workers, live (asserted above)
        for m in T.MODES:
            with self.subTest(mode=m, phase="change after the restart"):
                res = self.get(T.vip4(m), 60)
                self.assert_all_ok(res, f"{m}: after sluiced came back")
                self.assertNotIn("be1", self.shares(res), f"{m}: a change after the restart did not take effect")
        for (m, i), r in self.finish_downloads(downloads).items():
            with self.subTest(mode=m, download="across the control-plane restart"):
                self.assertTrue(r["ok"], f"{m}: {r}")
        self.account(before, [f(m) for m in T.MODES for f in (self.tcp4, self.tcp6, self.udp4)],
                     what="sluiced killed and restarted",
                     hint="a restarted sluiced publishes its first snapshot before it has resolved the "
                          "backends' next hops (controlplane/service.cpp: the constructor's publish_locked(), "
                          "then sluiced/main.cpp: refresh_next_hops()), and the running dataplane forwards "
                          "by it until the next one")

    def test_7_dataplane_restart(self):
        topo = self.topo
        before = self.mark()
        downloads = self.start_downloads("dp", T.MODES)
        # New requests all along, each from a fresh port: when forwarding resumes.
        topo.client.start("dp-loop", op="loop", srcs=[list(x) for x in self.sources(600)],
                          host=T.vip4("ipip"), port=T.HTTP_PORT, seconds=10, max=600, interval=0.02,
                          timeout=0.5)
        t_loop = time.monotonic()
        time.sleep(0.5)
        gap0 = self.mark()
        t_stop = time.monotonic()
        old = topo.dp
        self.assertEqual(topo.stop_dataplane(signal.SIGTERM), 0, old.tail())
        t_start = time.monotonic()
        topo.start_dataplane()
        t_ready = time.monotonic()
        gap1 = self.mark()
        if DATAPLANE == "xdp":
            self.assertIn("reused with its flows", topo.dp.text(),
                          "sluice-xdp did not find its pinned connection table")
            # Each download's backend leaves the Maglev table: only the
            # connection table kept across the restart still sends it there.
            for m in T.MODES:
                be = downloads[(m, 0)][1]
                self.check_change(["backend", "set", self.svc(self.tcp4(m)), topo.be4(be), "--drain"], "drain")
        loop = topo.client.wait("dp-loop", 30)
        ev = loop["events"]
        t_loop = loop.get("t0", t_loop)  # the loop's own start, on the same clock
        # When the first request begun after the new process started was
        # answered (an event is (ended, ok, backend, begun)).
        ok_after = [t_loop + e[0] for e in ev if e[1] and t_loop + e[3] > t_start]
        resumed = ok_after[0] - t_start if ok_after else None
        failed = sum(1 for e in ev if not e[1])
        timings = type(self).timings
        timings["dataplane stop->ready"] = t_ready - t_stop
        if resumed is not None:
            timings["forwarding resumed after the new start"] = resumed
        first = "none" if resumed is None else f"{resumed:.2f}s"
        print(f"\n  sluice-{DATAPLANE} restart: stopped in {t_start - t_stop:.2f}s, ready {t_ready - t_start:.2f}s "
              f"after its start, the first request sent after that answered {first} after it; {failed} of "
              f"{len(ev)} requests failed meanwhile", file=sys.stderr)
        self.assertIsNotNone(resumed, f"no request succeeded after sluice-{DATAPLANE} restarted: {ev[-5:]}")
        for (m, i), r in self.finish_downloads(downloads).items():
            with self.subTest(mode=m, download="across the dataplane restart"):
                self.assertTrue(r["ok"], f"{m}: the download from {downloads[(m, i)][1]} across the "
                                         f"sluice-{DATAPLANE} restart: {r}")
                self.assertEqual(r["backend"], downloads[(m, i)][1])
        self.account(before, [self.tcp4(m) for m in T.MODES], gap=(gap0, gap1), what="dataplane restart")

    def test_8_ipv6(self):
        before = self.mark()
        for m in T.MODES:
            with self.subTest(mode=m):
                res = self.get(T.vip6(m), 300, v6=True)
                self.assert_all_ok(res, f"{m}: 300 IPv6 requests")
                d = self.shares(res)
                for be in ("be1", "be2", "be3"):
                    share = d.get(be, 0) / len(res)
                    self.assertTrue(0.20 <= share <= 0.47, f"{m}: {be} got {share:.0%} of 300 ({d})")
        self.account(before, [self.tcp6(m) for m in T.MODES], what="ipv6")


def main():
    global BUILD, SOURCE, DATAPLANE
    if len(sys.argv) < 4 or sys.argv[3] not in ("xdp", "dpdk"):
        sys.exit(__doc__)
    BUILD, SOURCE, DATAPLANE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    testmain.require_root("e2e_scenarios", "network namespaces, XDP, bpffs")
    testmain.tear_down_on_term("e2e_scenarios", lambda: Scenarios.topo and Scenarios.topo.down())
    Scenarios.__name__ = f"Scenarios_{DATAPLANE}"
    testmain.main(f"e2e_scenarios_{DATAPLANE}", [sys.argv[0]] + sys.argv[4:])


if __name__ == "__main__":
    main()
