#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Parity of the two dataplanes (root): the packet-fixture table, under one
snapshot from a real sluiced, through `sluice-dpdk --pcap` and through the
XDP program (`sluice-xdp --pcap`, BPF_PROG_TEST_RUN). Both start with an
empty connection table of the same size and see the packets in the same
order; they must
- forward and reply with the same frames, identical from the IP header on,
  to the same next-hop MAC with the same ethertype and VLAN tag (the source
  MAC is each port's own);
- hand the kernel the same frames, byte for byte;
- count the same counters;
and, so that two empty or equally wrong outputs cannot agree, each must have
received every frame (rx_packets), forwarded as many as the table or the
traffic's own make-up says (tx_packets > 0) and handed the kernel as many.
Then the same for random traffic (many flows, TCP states, UDP, VLAN tags,
non-VIP packets) through connection tables of 64 entries, where buckets fill
and evict, and again under a changed backend set. Every `--pcap` run starts
with an empty connection table, so no flow spans the change: re-picking a
flow whose backend left (conn_repick) is not compared here. It is tested on
each dataplane with live flows: tests/xdp/xdp_veth_test.py
(test_7_flow_moves_once_when_its_backend_leaves) and tests/dpdk/dpdk_fixture_test.py
(LiveChange).
This is what lets a fleet mix DPDK and XDP LBs behind one ECMP group.

usage: xdp_parity_test.py BUILD_DIR SOURCE_DIR
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402
from xdp_fixture_test import ip_start  # noqa: E402


@unittest.skipUnless(U.is_root(), "BPF_PROG_TEST_RUN needs root")
class Base(unittest.TestCase):
    """A real sluiced publishing the fixture table's CONFIG, and both runners
    (each with its default port MTU, 1500, and connection-table size)."""

    @classmethod
    def setUpClass(cls):
        import fixtures
        cls.F = fixtures
        cls.tmp = tempfile.mkdtemp(prefix="sluice-xdp-parity-")
        cls.sluiced = U.Sluiced(cls.tmp, fixtures.CONFIG, tag="xdp-parity")

    @classmethod
    def tearDownClass(cls):
        cls.sluiced.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_both(cls, frames, name, *extra):
        inp = os.path.join(cls.tmp, f"{name}.pcap")
        cls.F.write_pcap(inp, frames)
        res = {}
        for dp, exe in (("xdp", "xdp/sluice-xdp"), ("dpdk", "dataplane/sluice-dpdk")):
            out = os.path.join(cls.tmp, f"{name}.{dp}.pcap")
            p = subprocess.run([U.exe(exe), "--shm", cls.sluiced.shm, "--pcap", f"{inp}:{out}", *extra],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, f"{exe}: {p.stderr}"
            res[dp] = (U.counters(p.stdout), cls.F.read_pcap(out),
                       cls.F.read_pcap(os.path.join(cls.tmp, f"{name}.{dp}.exception.pcap")))
        return res

    def assert_same_counters(self, xc, dc):
        for name, _ in self.F.counter_names(U.SOURCE):
            # drop_tx_full and drop_exception_full are a DPDK port's queues.
            if name not in ("drop_tx_full", "drop_exception_full"):
                self.assertEqual(xc.get(name, 0), dc.get(name, 0), name)

    def assert_same_sent(self, xt, dt):
        self.assertEqual(len(xt), len(dt))
        for i, (x, d) in enumerate(zip(xt, dt)):
            with self.subTest(frame=i):
                o = ip_start(d)
                self.assertEqual(ip_start(x), o)
                self.assertEqual(x[o:].hex(), d[o:].hex(), "bytes from the IP header on")
                self.assertEqual(x[0:6], d[0:6], "next-hop MAC")
                self.assertEqual(x[12:o], d[12:o], "ethertype and VLAN tag")

    def assert_counts(self, res, frames, forward, kernel, reply=0, drops=None, unknown=0):
        """Absolute counts on each side: `frames` received, `forward`
        forwarded (tx_packets and frames sent), `kernel` handed to the
        kernel, `reply` answered by the LB, and the drop counters in `drops`;
        each exactly, or up to `unknown` more where that many frames' outcome
        is not known. sluice-xdp --pcap prints only non-zero counters: a
        missing name is 0, which never equals a count above 0."""
        self.assertGreater(forward, 0, "the expected traffic forwards something")

        def count(got, want, what):
            self.assertGreaterEqual(got, want, what)
            self.assertLessEqual(got, want + unknown, what)
        for dp, (c, tx, exc) in res.items():
            with self.subTest(dataplane=dp):
                self.assertEqual(c.get("rx_packets", 0), frames, "rx_packets")
                count(c.get("tx_packets", 0), forward, "tx_packets")
                count(len(tx), forward + reply, "frames sent (forwards and replies)")
                count(len(exc), kernel, "frames to the kernel")
                for name, n in (drops or {}).items():
                    count(c.get(name, 0), n, name)

    def assert_same_to_kernel(self, xe, de):
        self.assertEqual(len(xe), len(de))
        for i, (x, d) in enumerate(zip(xe, de)):
            with self.subTest(frame=i):
                self.assertEqual(x.hex(), d.hex())


class Parity(Base):
    """The fixture table."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.res = cls.run_both([f["frame"] for f in cls.F.FIXTURES], "fixtures")
        except BaseException:
            cls.tearDownClass()
            raise

    def test_same_counters(self):
        self.assert_same_counters(self.res["xdp"][0], self.res["dpdk"][0])

    def test_same_frames_sent(self):
        self.assert_same_sent(self.res["xdp"][1], self.res["dpdk"][1])

    def test_same_frames_to_the_kernel(self):
        self.assert_same_to_kernel(self.res["xdp"][2], self.res["dpdk"][2])

    def test_counts_match_the_table(self):
        """What the table expects of every fixture, summed. A fixture with a
        known bug (`bug`) does what the dataplane does, not what the table
        says: its frame may land in any count."""
        fx = [f for f in self.F.FIXTURES if not f.get("bug")]
        n = {a: sum(1 for f in fx if f["expect"]["action"] == a) for a in ("forward", "kernel", "reply")}
        drops = {}
        for f in fx:
            if f["expect"]["action"] == "drop":
                drops[f["expect"]["reason"]] = drops.get(f["expect"]["reason"], 0) + 1
        self.assert_counts(self.res, len(self.F.FIXTURES), n["forward"], n["kernel"], n["reply"], drops,
                           unknown=len(self.F.FIXTURES) - len(fx))


def random_frames(F, n, seed):
    """Client packets to every VIP of the table and to non-VIP addresses:
    TCP with SYN/ACK/FIN/RST mixes over a few hundred flows, UDP, some
    tagged. Sizes stay under the MTU, so that nothing is about fragments or
    PTB here: the fixture table has those. Returns the frames and, per
    frame, the VIP (a dict of F.VIPS) it is sent to, None for a non-VIP
    destination."""
    from scapy.all import IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw
    rng = random.Random(seed)
    vips = list(F.VIPS.values())
    flows = []
    for i in range(300):
        v = rng.choice(vips)
        fam = v["family"]
        src = f"192.0.{2 + i // 250}.{i % 250 + 1}" if fam == 4 else f"2001:db8::{i + 1:x}"
        dport = v["port"] or rng.randrange(1, 65536)
        flows.append((v, src, rng.randrange(1024, 65536), dport))
    frames, targets = [], []
    for k in range(n):
        v, src, sport, dport = rng.choice(flows)
        eth = Ether(src=F.ROUTER_MAC, dst=F.LB_MAC)
        if rng.random() < 0.1:
            eth = eth / Dot1Q(vlan=rng.randrange(1, 4095))
        dst = v["address"]
        to = v
        if rng.random() < 0.05:  # not a VIP: the kernel's
            dst = F.OTHER4 if v["family"] == 4 else F.OTHER6
            to = None
        ip = IP(src=src, dst=dst, flags="DF") if v["family"] == 4 else IPv6(src=src, dst=dst)
        if v["protocol"] == "tcp":
            l4 = TCP(sport=sport, dport=dport, seq=k,
                     flags=rng.choice(["S", "S", "A", "PA", "A", "FA", "R", "SA"]))
        else:
            l4 = UDP(sport=sport, dport=dport)
        frames.append(bytes(eth / ip / l4 / Raw(b"r%06d" % k + b"x" * rng.randrange(0, 200))))
        targets.append(to)
    return frames, targets


def expected_counts(F, targets, removed=(), drained=()):
    """(forward, kernel, drop_no_backend) for random_frames()' targets, from
    the table's backends less `removed` and with `drained` at weight 0
    ((VIP address, port, backend address) triples): a packet for a VIP with
    a backend of weight > 0 is forwarded whatever its TCP flags (a miss is
    inserted, an evicted flow picked again), one for a VIP whose backends
    are all drained is dropped, and one for another address goes to the
    kernel. A port-0 VIP's random port may hit its address's exact VIP
    (v4_any_dns): both have live backends."""
    def live(v):
        return any(w > 0 and (v["address"], v["port"], a) not in drained
                   for a, w, _ in v["backends"] if (v["address"], v["port"], a) not in removed)
    fwd = sum(1 for v in targets if v is not None and live(v))
    kernel = sum(1 for v in targets if v is None)
    return fwd, kernel, len(targets) - fwd - kernel


class RandomParity(Base):
    """Random traffic through 64-entry connection tables, before and after
    a change of the backend set."""

    def compare(self, res):
        xc, xt, xe = res["xdp"]
        dc, dt, de = res["dpdk"]
        self.assert_same_counters(xc, dc)
        self.assert_same_sent(xt, dt)
        self.assert_same_to_kernel(xe, de)
        return xc

    def check_counts(self, res, frames, targets, **changes):
        fwd, kernel, no_backend = expected_counts(self.F, targets, **changes)
        self.assertGreater(kernel, 0, "the traffic has non-VIP packets")
        self.assertGreater(no_backend, 0, "the traffic has packets for all-drained VIPs")
        self.assert_counts(res, len(frames), fwd, kernel, drops={"drop_no_backend": no_backend})

    def test_random_traffic_small_table(self):
        frames, targets = random_frames(self.F, 4000, seed=7)
        res = self.run_both(frames, "random", "--ct-entries", "64")
        c = self.compare(res)
        self.check_counts(res, frames, targets)
        self.assertGreater(c["conn_evict"], 0, "the table must fill and evict")
        self.assertGreater(c["conn_hit"], 0)
        # A backend leaves and one is drained; the next run starts with an
        # empty connection table (as every --pcap run does), so this checks
        # that both pick the same backends under the new set, not re-picks
        # (module doc).
        removed = {("10.200.0.1", 80, "10.0.1.1")}
        drained = {("fd00:200::1", 443, "fd00:1::2")}
        self.sluiced.ctl_ok("backend", "del", "10.200.0.1:80/tcp", "10.0.1.1")
        self.sluiced.ctl_ok("backend", "set", "[fd00:200::1]:443/tcp", "fd00:1::2", "--drain")
        frames, targets = random_frames(self.F, 3000, seed=8)
        res = self.run_both(frames, "random2", "--ct-entries", "64")
        c = self.compare(res)
        self.check_counts(res, frames, targets, removed=removed, drained=drained)
        self.assertEqual(c.get("conn_repick", 0), 0, "no flow spans the change")


if __name__ == "__main__":
    testmain.main("xdp_parity_test", U.init(sys.argv))
