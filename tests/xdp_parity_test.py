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
- count the same counters.
Then the same for random traffic (many flows, TCP states, UDP, VLAN tags,
non-VIP packets) through connection tables of 64 entries, where buckets fill
and evict, and with snapshot changes between runs.
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

import testmain
import xdp_util as U
from xdp_fixture_test import ip_start


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


def random_frames(F, n, seed):
    """Client packets to every VIP of the table and to non-VIP addresses:
    TCP with SYN/ACK/FIN/RST mixes over a few hundred flows, UDP, some
    tagged. Sizes stay under the MTU, so that nothing is about fragments or
    PTB here: the fixture table has those."""
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
    frames = []
    for k in range(n):
        v, src, sport, dport = rng.choice(flows)
        eth = Ether(src=F.ROUTER_MAC, dst=F.LB_MAC)
        if rng.random() < 0.1:
            eth = eth / Dot1Q(vlan=rng.randrange(1, 4095))
        dst = v["address"]
        if rng.random() < 0.05:  # not a VIP: the kernel's
            dst = F.OTHER4 if v["family"] == 4 else F.OTHER6
        ip = IP(src=src, dst=dst, flags="DF") if v["family"] == 4 else IPv6(src=src, dst=dst)
        if v["protocol"] == "tcp":
            l4 = TCP(sport=sport, dport=dport, seq=k,
                     flags=rng.choice(["S", "S", "A", "PA", "A", "FA", "R", "SA"]))
        else:
            l4 = UDP(sport=sport, dport=dport)
        frames.append(bytes(eth / ip / l4 / Raw(b"r%06d" % k + b"x" * rng.randrange(0, 200))))
    return frames


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

    def test_random_traffic_small_table(self):
        frames = random_frames(self.F, 4000, seed=7)
        c = self.compare(self.run_both(frames, "random", "--ct-entries", "64"))
        self.assertGreater(c["conn_evict"], 0, "the table must fill and evict")
        self.assertGreater(c["conn_hit"], 0)
        # A backend leaves and one is drained: flows re-pick the same way.
        self.sluiced.ctl_ok("backend", "del", "10.200.0.1:80/tcp", "10.0.1.1")
        self.sluiced.ctl_ok("backend", "set", "[fd00:200::1]:443/tcp", "fd00:1::2", "--drain")
        frames = random_frames(self.F, 3000, seed=8)
        self.compare(self.run_both(frames, "random2", "--ct-entries", "64"))


if __name__ == "__main__":
    testmain.main("xdp_parity_test", U.init(sys.argv))
