#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A SYN flood against the connection table, through both dataplanes.

1,000 established TCP flows (SYN, then ACKs) keep sending while SYNs from
40,960 distinct random sources, ten times the table's 4,096 entries, pour in;
then every established flow sends once more. Each dataplane replays the same
capture (`sluice-dpdk --pcap` and `sluice-xdp --pcap`, root for the XDP
one). A flow that lost its entry shows as a second connection-table miss
(conn_new) for it. The same capture without the flood's SYNs is the
control: a 4-way bucket that five of the 1,000 flows share misses without
any flood. At most 1% of the established flows may miss more with the flood
than without, on both. Before SYN-first eviction every bucket cycled through
the flood and nearly all of them did.

usage: syn_flood_test.py BUILD_DIR SOURCE_DIR
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402

CONFIG = """\
node:
  source_ipv4: 10.0.0.2
  gateway_mac: 02:00:00:00:00:fe
vips:
  - address: 10.200.1.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
      - address: 10.0.0.13
"""

ENTRIES = 4096
ESTABLISHED = 1000
FLOOD = 10 * ENTRIES
SYN, ACK = 0x02, 0x10


def ipv4_csum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def frame(src, sport, flags):
    """Ethernet/IPv4/TCP from src:sport to the VIP, with a valid IPv4
    header checksum (the TCP checksum is not the LB's to check)."""
    eth = bytes.fromhex("020000000001" "020000000002" "0800")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                               bytes(src), bytes([10, 200, 1, 1])))
    struct.pack_into("!H", ip, 10, ipv4_csum(bytes(ip)))
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 0, 5 << 4, flags, 65535, 0, 0)
    return eth + bytes(ip) + tcp


def capture(with_flood=True):
    rng = random.Random(11)
    est = [((192, 0, 2 + i // 250, 1 + i % 250), 20000 + i) for i in range(ESTABLISHED)]
    # Distinct flood sources: 100.64.0.0/10 walked in a shuffled order.
    flood = rng.sample(range(1 << 22), FLOOD)
    frames = [frame(s, p, SYN) for s, p in est] + [frame(s, p, ACK) for s, p in est]
    for n, x in enumerate(flood):
        src = (100, 64 | (x >> 16), (x >> 8) & 0xFF, x & 0xFF)
        sport = 1024 + rng.randrange(64000)
        if with_flood:
            frames.append(frame(src, sport, SYN))
        if n % 40 == 39:  # the established flows keep talking through it
            s, p = est[(n // 40) % ESTABLISHED]
            frames.append(frame(s, p, ACK))
    frames += [frame(s, p, ACK) for s, p in est]
    return frames


@unittest.skipUnless(U.is_root(), "sluice-xdp --pcap needs root (BPF_PROG_TEST_RUN)")
class SynFlood(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import fixtures
        cls.F = fixtures
        cls.tmp = tempfile.mkdtemp(prefix="sluice-synflood-")
        cls.sluiced = U.Sluiced(cls.tmp, CONFIG, tag="synflood")
        cls.frames = capture()
        fixtures.write_pcap(os.path.join(cls.tmp, "flood.pcap"), cls.frames)
        cls.control = capture(with_flood=False)
        fixtures.write_pcap(os.path.join(cls.tmp, "control.pcap"), cls.control)

    @classmethod
    def tearDownClass(cls):
        cls.sluiced.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def replay(self, exe, name):
        inp = os.path.join(self.tmp, f"{name}.pcap")
        out = os.path.join(self.tmp, f"{name}.{os.path.basename(exe)}.pcap")
        p = subprocess.run([U.exe(exe), "--shm", self.sluiced.shm, "--pcap", f"{inp}:{out}",
                            "--ct-entries", str(ENTRIES)], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        return U.counters(p.stdout)

    def check(self, exe):
        c, base = self.replay(exe, "flood"), self.replay(exe, "control")
        self.assertEqual(c.get("tx_packets", 0), len(self.frames), c)
        self.assertEqual(base.get("tx_packets", 0), len(self.control), base)
        # Each established flow's first SYN and each flood SYN is one miss;
        # any miss beyond those is an established flow's packet that found
        # no entry. The control counts the ones the flood did not cause.
        missed = c["conn_new"] - ESTABLISHED - FLOOD
        missed_anyway = base["conn_new"] - ESTABLISHED
        print(f"{exe}: established flows' packets that missed: {missed} with the flood, "
              f"{missed_anyway} without; conn_evict {c.get('conn_evict', 0)}, "
              f"conn_syn_untracked {c.get('conn_syn_untracked', 0)}", file=sys.stderr)
        self.assertGreaterEqual(missed, missed_anyway, c)
        self.assertLessEqual(missed - missed_anyway, ESTABLISHED // 100, c)
        self.assertGreater(c.get("conn_syn_untracked", 0) + c.get("conn_evict", 0), 0,
                           "the flood must have filled the table")

    def test_dpdk_keeps_established_flows_through_a_syn_flood(self):
        self.check("dataplane/sluice-dpdk")

    def test_xdp_keeps_established_flows_through_a_syn_flood(self):
        self.check("xdp/sluice-xdp")


if __name__ == "__main__":
    testmain.main("syn_flood_test", U.init(sys.argv))
