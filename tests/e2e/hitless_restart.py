#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A dataplane restarted under a steady stream (issue 12 §3), as root.

The topology of e2e_scenarios.py (scripts/sluice_topology/: a client, the LB
running sluiced and the dataplane under test, four backends that open IPIP
with sluice-decap), with a VIP of its own: 10.200.1.1:7000/udp and
10.200.1.1:80/tcp over IPIP on be1-be3 (be4 spare). Through every scenario:

- FLOWS UDP flows (ten client addresses x FLOWS/10 ports, fresh for each
  scenario) send RATE datagrams a second in turn, each carrying its flow id
  and sequence number (tests/harness/flowstream.py); a receiver on each
  backend records per flow which numbers arrived there. XDP's connection
  table is per CPU, which relies on every packet of a flow reaching one CPU
  (RSS on a NIC): the sender runs on CPU 0, and for sluice-xdp the LB's veth
  polls in a NAPI thread pinned there (Topology.pin_lb_napi);
- DOWNLOADS long HTTP downloads (TCP) from the backends, which fail on a
  reset or a short body and name their backend.

Scenarios (each but the first restarts the dataplane mid-stream):

  0 steady         no restart: 0 lost (the harness itself loses nothing here,
                   or the figures below mean nothing)
  1 clean restart  stop (sluice-xdp: SIGTERM with --keep-attached, as the
                   systemd unit runs it), start
  2 kill -9        SIGKILL, start
  3 churn, clean   stop; while it is down `sluicectl` adds be4 and removes
                   be3 from the UDP VIP; start
  4 churn, kill -9 the same after SIGKILL

and after each: for sluice-xdp 0 datagrams lost and every one counted in
`sluicectl stats`; for sluice-dpdk the gap (first to last lost datagram's
send time) measured and printed; for both,
every flow whose backend is still in the VIP received every datagram on its
original backend only (100 %), the downloads finished on theirs. With churn
the test also computes, with the reference Maglev lookup (tests/fixtures/
snapshot.py over check.py's flow hash, the same reader the fixture tests
use), where Maglev alone would send each of those flows in the new backend
set, and asserts that it would move some (else the churn proves nothing);
flows of the removed backend are reported on their own (they move once).
Before every restart the same reference must give every flow the backend
it was seen on, which checks the reference and the receivers' attribution.

`--plain-stop` (by hand, not in meson): stop without --keep-attached, as
sluice-xdp did before: the loss this test exists to catch.

Durations and the gap are printed, never asserted.

usage: hitless_restart.py BUILD_DIR SOURCE_DIR xdp|dpdk [--plain-stop] [unittest args]
"""
import atexit
import base64
import bisect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(TESTS, "fixtures"),
                os.path.join(os.path.dirname(TESTS), "scripts")]
import check  # noqa: E402
import snapshot  # noqa: E402
import sluice_topology as T  # noqa: E402
import testmain  # noqa: E402
from sluice_topology.drive import Driven  # noqa: E402
from sluice_topology.procs import PY, Proc, run  # noqa: E402

BUILD = SOURCE = DATAPLANE = None
PLAIN_STOP = False

FLOWSTREAM = os.path.join(TESTS, "harness", "flowstream.py")
VIP = T.vip4("ipip")
STREAM_PORT = 7000
FLOWS = int(os.environ.get("SLUICE_HITLESS_FLOWS", 2000))
RATE = int(os.environ.get("SLUICE_HITLESS_RATE", 20000))  # datagrams a second, all flows together
WARM_S = 2.0     # before the stop: every flow has sent RATE / FLOWS * WARM_S datagrams
AFTER_S = 2.0    # after the new dataplane forwards
DOWNLOADS = 4
INTERVAL_MS = 200


class Agent(Driven):
    """flowstream.py in a namespace, driven like the topology's agents."""

    def __init__(self, topo, name, args, ns, cpu0=False):
        self.name = name
        self.lock = threading.Lock()
        self.seq = 0
        self.p = Proc([PY, FLOWSTREAM, *args], f"{topo.run_dir}/log/{name}.log", ns=ns,
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cpu0=cpu0)
        topo.procs[name] = self.p  # stopped by topo.down() too
        r = self.cmd(op="ping", within=20)
        if not r.get("ok"):
            raise RuntimeError(f"{name}: {r}")

    def call(self, within=60, **c):
        r = self.cmd(within=within, **c)
        if not r.get("ok"):
            raise RuntimeError(f"{self.name} {c.get('op')}: {r}")
        return r


def config(topo, udp_backends):
    """sluiced's configuration: the stream's UDP VIP on udp_backends, the
    downloads' TCP VIP on be1-be3, every backend checked on its HTTP port."""
    chk = (f"{{ type: tcp, port: {T.HTTP_PORT}, interval_ms: {INTERVAL_MS}, "
           f"timeout_ms: {INTERVAL_MS * 3 // 4}, rise: 2, fall: 2 }}")
    out = [f"node:\n  source_ipv4: {T.LB4}\n  source_ipv6: {T.LB6}\nvips:"]
    for port, proto, bes in ((STREAM_PORT, "udp", udp_backends), (T.HTTP_PORT, "tcp", ["be1", "be2", "be3"])):
        out.append(f"  - address: {VIP}\n    port: {port}\n    protocol: {proto}\n    mode: ipip\n    backends:")
        out += [f"      - address: {topo.be4(b)}\n        check: {chk}" for b in bes]
    return "\n".join(out) + "\n"


def popcount_below(bm, n):
    """Set bits of bitmap bm among its first n."""
    full, rest = divmod(n, 8)
    c = sum(bin(b).count("1") for b in bm[:full])
    if rest and full < len(bm):
        c += bin(bm[full] & ((1 << rest) - 1)).count("1")
    return c


class Restart(unittest.TestCase):
    topo = None
    run_id = 0
    next_port = 10000

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: network namespaces, XDP, bpffs")
        for tag in T.leftovers("sluice-hitless"):  # of runs that were killed
            T.cleanup(tag)
        cls.topo = T.Topology(BUILD, dataplane=DATAPLANE, backends=4, prefix="sluice-hitless",
                              check_interval_ms=INTERVAL_MS)
        atexit.register(cls.topo.down)
        try:
            cls.topo.up()
            # The topology's sniffers (client, bridge port) would read every
            # datagram of the stream in Python on the same two cores: this
            # test counts with its own receivers instead.
            for d in (cls.topo.client, cls.topo.tap):
                d.close()
            cls.topo.client = cls.topo.tap = None
            cls.config = config(cls.topo, ["be1", "be2", "be3"])
            cls.start_sluice()
            cls.receivers = {be: Agent(cls.topo, f"{be}-recv", ["recv", "--port", STREAM_PORT], cls.topo.ns[be])
                             for be in cls.topo.backends}
            cls.sender = Agent(cls.topo, "sender", ["send"], cls.topo.ns["client"], cpu0=True)
            cls.baseline = cls.topo.ctl("dump")[1]
        except BaseException:
            cls.topo.down()
            raise
        cls.figures = []

    @classmethod
    def start_sluice(cls):
        """Topology.start_sluice, with start_dp's arguments and pinning."""
        with open(f"{cls.topo.run_dir}/sluice.yaml", "w") as f:
            f.write(cls.config)
        cls.topo.start_sluiced()
        cls.topo.wait_backends_up()
        cls.topo.wait_next_hops()
        cls.start_dp()

    @classmethod
    def dp_args(cls):
        # What makes a stop hitless for sluice-xdp (dist/sluice-xdp@.service
        # runs it so); sluice-dpdk has no such switch.
        return ["--keep-attached"] if DATAPLANE == "xdp" and not PLAIN_STOP else []

    @classmethod
    def start_dp(cls):
        dp = cls.topo.start_dataplane(extra_args=cls.dp_args())
        cls.topo.pin_lb_napi()
        return dp

    @classmethod
    def tearDownClass(cls):
        for line in getattr(cls, "figures", []):
            print(f"  {line}", file=sys.stderr)
        if cls.topo:
            cls.topo.down()
            cls.topo = None

    def tearDown(self):
        # Every scenario leaves the dataplane running and the configuration
        # as it found it, even when it failed half-way.
        topo = self.topo
        if not topo:
            return
        if not (topo.dp and topo.dp.alive()):
            self.start_dp()
        if topo.ctl("dump")[1] != self.baseline:
            topo.ctl("apply", "-f", "-", stdin=self.config)
        topo.wait_backends_up()
        topo.wait_next_hops()

    # ------------------------------------------------------------ helpers

    def fresh(self, n):
        base = type(self).next_port
        type(self).next_port += (n + T.CLIENTS - 1) // T.CLIENTS + 1
        assert type(self).next_port < 60000, "out of client ports"
        return T.sources(n, base)

    def reports(self, run):
        return {be: r.call(op="report", run=run) for be, r in self.receivers.items()}

    def received(self, run):
        """{flow: {backend: bitmap}} and the receivers' UDP error counters."""
        out, errs = {}, {}
        for be, rep in self.reports(run).items():
            errs[be] = rep["udp"]
            for f, (bm, _dups, _src) in rep["flows"].items():
                out.setdefault(int(f), {})[be] = base64.b64decode(bm)
        return out, errs

    def wait_settled(self, run, sent_total):
        """Waits (bounded) until what the receivers hold stops growing after
        the sender stopped: datagrams in flight, receivers catching up."""
        last, same = -1, 0
        for _ in range(50):
            got, _ = self.received(run)
            n = sum(popcount_below(bm, 1 << 30) for bes in got.values() for bm in bes.values())
            if n >= sent_total:
                return
            same = same + 1 if n == last else 0
            if same >= 3:
                return
            last = n
            time.sleep(0.2)

    def maglev(self, flows):
        """{flow index: backend} by the reference Maglev lookup over the
        segment's active snapshot: where a flow goes with no connection table."""
        snap = snapshot.Snapshot(self.topo.shm)
        try:
            vip = {"address": VIP, "port": STREAM_PORT, "protocol": "udp"}
            dst = socket.inet_aton(VIP)
            out = {}
            for i, (a, p) in enumerate(flows):
                h = check.flow_hash(check.flow_key(4, socket.inet_aton(a), dst, p, STREAM_PORT, 17))
                b = snap.pick(vip, h)
                out[i] = self.topo.be_by_addr(socket.inet_ntoa(b)) if b else None
            return out, snap.generation
        finally:
            snap.close()

    def origins(self, run, nflows):
        """{flow: the one backend it was seen on} before the restart."""
        got, _ = self.received(run)
        missing = [f for f in range(nflows) if f not in got]
        self.assertFalse(missing, f"{len(missing)} flows reached no backend before the restart, e.g. {missing[:5]}")
        split = {f: sorted(b) for f, b in got.items() if len(b) != 1}
        self.assertFalse(split, f"{len(split)} flows on two backends before any restart: {list(split.items())[:3]}")
        return {f: next(iter(b)) for f, b in got.items()}

    def churn(self):
        """While the dataplane is down: be4 in, be3 out of the UDP VIP."""
        svc = T.service(VIP, STREAM_PORT, "udp")
        chk = ["--check", "tcp", "--check-port", T.HTTP_PORT, "--interval-ms", INTERVAL_MS,
               "--timeout-ms", INTERVAL_MS * 3 // 4, "--rise", 2, "--fall", 2]
        self.topo.ctl("backend", "add", svc, self.topo.be4("be4"), *chk)
        self.topo.ctl("backend", "del", svc, self.topo.be4("be3"))
        T.wait_for(lambda: self.topo.backend_states(svc) == {"be1": "up", "be2": "up", "be4": "up"}, 20,
                   "be4 up and be3 gone in the UDP VIP")
        self.topo.wait_next_hops()
        return "be3", "be4"

    def kernel_drops(self):
        """Every interface's rx/tx drop counters in every namespace: where
        the kernel lost datagrams, if it did."""
        stats = self.topo.link_stats(roles=("client", "br", "lb", *self.topo.backends))
        return {f"{ns}/{i}": st.get("rx", {}).get("dropped", 0) + st.get("tx", {}).get("dropped", 0)
                for ns, links in stats.items() for i, st in links.items()}

    def vip_packets(self):
        """What `sluicectl stats` counts for the stream's VIP."""
        name = T.service(VIP, STREAM_PORT, "udp")
        return next((v["packets"] for v in self.topo.stats()["vips"] if v["vip"] == name), 0)

    # ------------------------------------------------------------ the scenario

    def restart_under_stream(self, what, sig=None, churn=False):
        topo = self.topo
        type(self).run_id += 1
        run = type(self).run_id
        flows = self.fresh(FLOWS)
        sender = self.sender
        # The dataplane copies its counters to the segment every 100 ms: the
        # last datagrams of the scenario before must be in what we start from.
        time.sleep(0.3)
        counted0 = self.vip_packets()
        drops0 = self.kernel_drops()
        sender.call(op="start", id=what, run=run, flows=[list(f) for f in flows], host=VIP, port=STREAM_PORT,
                    rate=RATE, seconds=60)
        try:
            dl_srcs = self.fresh(DOWNLOADS)
            secs = WARM_S + AFTER_S + 10
            sender.call(op="tcp_start", id=what, srcs=[list(s) for s in dl_srcs], host=VIP, port=T.HTTP_PORT,
                        seconds=secs, timeout=10)
            dl_be = T.wait_for(lambda: (lambda b: b if all(b) else None)(sender.call(op="tcp_peek", id=what)["backends"]),
                               15, "every download's first bytes")
            time.sleep(WARM_S)
            origin = self.origins(run, len(flows))
            # The reference lookup agrees with where the flows went: it can
            # be trusted for what Maglev alone would do after the churn.
            ref, gen = self.maglev(flows)
            wrong = {f: (origin[f], ref[f]) for f in origin if ref[f] != origin[f]}
            self.assertFalse(wrong, f"{len(wrong)} flows not where the reference Maglev (generation {gen}) puts "
                                    f"them: {list(wrong.items())[:5]}")
            t_stop = time.monotonic()
            rc = topo.dp.stop(sig) if sig else topo.stop_dataplane()
            t_stopped = time.monotonic()
            if sig == signal.SIGKILL:
                self.assertEqual(rc, -signal.SIGKILL)
            else:
                self.assertEqual(rc, 0, topo.dp.tail())
            removed = added = None
            moved_by_maglev = {}
            if churn:
                removed, added = self.churn()
                after, gen2 = self.maglev(flows)
                self.assertGreater(gen2, gen)
                moved_by_maglev = {f: (origin[f], after[f]) for f in origin
                                   if origin[f] != removed and after[f] != origin[f]}
            t_start = time.monotonic()
            self.start_dp()
            t_ready = time.monotonic()
            if DATAPLANE == "xdp":
                self.assertIn("reused with its flows", topo.dp.text(), "sluice-xdp did not take its pinned table")
            else:
                # The kept table (dataplane/ct_store.h), as the stop left it.
                how = ("re-attached after pid \\d+ stopped without closing it" if sig == signal.SIGKILL
                       else "re-attached after a clean stop")
                self.assertRegex(topo.dp.text(), r"worker 0: connection table \S+: " + how +
                                 r"; [1-9]\d* flows kept, \d+ expired, 0 invalid entries dropped")
            time.sleep(AFTER_S)
        finally:
            res = sender.call(op="stop", id=what)
        self.wait_settled(run, res["sent"])
        got, udp_errs = self.received(run)
        downloads = sender.call(op="tcp_wait", id=what, wait=60, within=80)["results"]
        time.sleep(0.3)  # the dataplane copies its counters to the segment every 100 ms
        counted = self.vip_packets() - counted0
        drops = {k: v - drops0.get(k, 0) for k, v in self.kernel_drops().items() if v != drops0.get(k, 0)}

        # What was lost, and when it was sent.
        n = res["flows"]
        marks_i = [m[0] for m in res["marks"]]

        def sent_at(i):
            k = bisect.bisect_right(marks_i, i) - 1
            return res["marks"][max(k, 0)][1]
        lost, lost_times = 0, []
        for f in range(n):
            count = res["sent"] // n + (1 if f < res["sent"] % n else 0)
            union = bytearray(max((len(b) for b in got.get(f, {}).values()), default=0))
            for bm in got.get(f, {}).values():
                for k, byte in enumerate(bm):
                    union[k] |= byte
            have = popcount_below(union, count)
            if have < count:
                lost += count - have
                for s in range(count):
                    if s // 8 >= len(union) or not union[s // 8] & (1 << (s % 8)):
                        lost_times.append(sent_at(s * n + f))
        kept = {f: o for f, o in origin.items() if o != removed}
        off = {f: sorted(got.get(f, {})) for f, o in kept.items() if set(got.get(f, {})) != {o}}
        of_removed = {f: sorted(got.get(f, {})) for f, o in origin.items() if o == removed}
        gap = f"{(max(lost_times) - min(lost_times)) * 1000:.0f} ms" if lost_times else "none"
        first_lost = f"{(min(lost_times) - t_stop) * 1000:+.0f} ms" if lost_times else "-"
        rate = res["sent"] / res["seconds"] if res["seconds"] else 0
        line = (f"{DATAPLANE} {what}: {n} flows, {res['sent']} datagrams at {rate / 1000:.1f} kpps; lost {lost} "
                f"(gap {gap}, first {first_lost} from the stop); stop took {t_stopped - t_stop:.2f} s, start to "
                f"forwarding {t_ready - t_start:.2f} s; on their original backend: "
                f"{len(kept) - len(off)} of {len(kept)} flows; `sluicectl stats` counted {counted} of the "
                f"{res['sent'] - lost} datagrams forwarded")
        if churn:
            line += (f"; Maglev alone would have moved {len(moved_by_maglev)} of them; the {len(of_removed)} "
                     f"flows of the removed {removed} went to "
                     f"{ {b: sum(1 for v in of_removed.values() if b in v) for b in topo.backends} }")
        type(self).figures.append(line)
        print(f"\n  {line}", file=sys.stderr)

        # ---- what a user would notice
        bad_dl = [(dl_be[i], r) for i, r in enumerate(downloads) if not r.get("ok") or r.get("backend") != dl_be[i]]
        self.assertFalse(bad_dl, f"downloads broken or moved across the restart: {bad_dl}")
        self.assertFalse(off, f"{len(off)} of {len(kept)} flows left their original backend: "
                              f"{[(f, origin[f], b) for f, b in list(off.items())[:5]]}")
        if churn:
            self.assertGreater(len(moved_by_maglev), 0, "the churn moves no flow in Maglev's table: it proves nothing")
        if DATAPLANE == "xdp":
            self.assertEqual(lost, 0, f"{lost} datagrams lost across the restart (gap {gap}); receivers' UDP "
                                      f"errors: {udp_errs}; the kernel's drop counters that moved: {drops}")
            # What the replaced program forwarded after its run's last count
            # is in the totals too (xdp/handover.h).
            self.assertEqual(counted, res["sent"] - lost, "`sluicectl stats` for the stream's VIP against the "
                                                          "datagrams the backends received")
        return lost

    # ------------------------------------------------------------ scenarios

    def test_0_steady(self):
        """No restart: the harness loses nothing by itself."""
        topo = self.topo
        type(self).run_id += 1
        run = type(self).run_id
        flows = self.fresh(FLOWS)
        drops0 = self.kernel_drops()
        self.sender.call(op="start", id="steady", run=run, flows=[list(f) for f in flows], host=VIP,
                         port=STREAM_PORT, rate=RATE, seconds=60)
        try:
            time.sleep(WARM_S + AFTER_S)
        finally:
            res = self.sender.call(op="stop", id="steady")
        self.wait_settled(run, res["sent"])
        got, udp_errs = self.received(run)
        n = res["flows"]
        have = sum(popcount_below(bm, 1 << 30) for bes in got.values() for bm in bes.values())
        rate = res["sent"] / res["seconds"] if res["seconds"] else 0
        line = (f"{DATAPLANE} steady: {n} flows, {res['sent']} datagrams at {rate / 1000:.1f} kpps "
                f"(asked {RATE / 1000:.1f}), {res['sent'] - have} lost, {res['retries']} send retries")
        type(self).figures.append(line)
        print(f"\n  {line}", file=sys.stderr)
        drops = {k: v - drops0.get(k, 0) for k, v in self.kernel_drops().items() if v != drops0.get(k, 0)}
        self.assertEqual(have, res["sent"], f"{res['sent'] - have} lost with no restart: receivers' UDP errors "
                                            f"{udp_errs}; the kernel's drop counters that moved: {drops}; the "
                                            f"harness is not fit to measure a restart")
        self.assertTrue(topo.dp.alive())

    def test_1_clean_restart(self):
        self.restart_under_stream("clean restart")

    def test_2_kill9(self):
        self.restart_under_stream("kill -9 then start", sig=signal.SIGKILL)

    def test_3_churn_while_stopped(self):
        self.restart_under_stream("clean restart, be4 added and be3 removed while stopped", churn=True)

    def test_4_churn_while_killed(self):
        self.restart_under_stream("kill -9, be4 added and be3 removed while down, start", sig=signal.SIGKILL,
                                  churn=True)


def main():
    global BUILD, SOURCE, DATAPLANE, PLAIN_STOP
    if len(sys.argv) < 4 or sys.argv[3] not in ("xdp", "dpdk"):
        sys.exit(__doc__)
    BUILD, SOURCE, DATAPLANE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    rest = sys.argv[4:]
    if "--plain-stop" in rest:
        PLAIN_STOP = True
        rest.remove("--plain-stop")
    testmain.require_root("hitless_restart", "network namespaces, XDP, bpffs")
    testmain.tear_down_on_term("hitless_restart", lambda: Restart.topo and Restart.topo.down())
    Restart.__name__ = f"Restart_{DATAPLANE}"
    testmain.main(f"hitless_restart_{DATAPLANE}", [sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
