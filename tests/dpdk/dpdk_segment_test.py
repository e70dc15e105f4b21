#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-dpdk against a segment it cannot trust (root).

As tests/xdp/xdp_segment_test.py does for sluice-xdp: with sluiced killed
(the segment stays), the test publishes snapshots itself, each a copy of the
last good one with one defect (a count out of range, random bytes over the
tables, a VIP table past the rings). sluice-dpdk's workers forward by copies
its main lcore checks first (dataplane/snapshot_keeper.h): it must refuse
each one, say so once, keep forwarding by the generation it holds (pings to
the VIP, which only a snapshot that has the VIP answers, still get replies)
and say in every worker record the generation it saw, the one it applies
and why it refused the newer one. Then sluiced, back, publishes again and the workers
take it.

usage: dpdk_segment_test.py BUILD_DIR SOURCE_DIR
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

# The shared helpers (tests/harness/) and the segment's layout
# (tests/fixtures/snapshot.py) are beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(TESTS, "fixtures")]
import testmain  # noqa: E402
from sluiced import Sluiced, wait_for  # noqa: E402

import snapshot as S  # noqa: E402

BUILD = SOURCE = None
VIP = "10.200.1.1"
CONFIG = f"""\
node:
  source_ipv4: 10.0.0.2
  gateway_mac: 02:00:00:00:00:fe
vips:
  - address: {VIP}
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
"""


def ip(*args):
    subprocess.run(["ip", *args], check=True, timeout=30, capture_output=True)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("ip"), "needs root and iproute2")
class CorruptSegment(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-dpdk-seg-")
        tag = f"sdg{os.getpid() % 100000}"
        self.lbns, self.clns = f"{tag}-lb", f"{tag}-cl"
        self.lbif, clif = f"{tag}l", f"{tag}c"
        self.proc = None
        self.sluiced = Sluiced(BUILD, self.tmp, "dpdk-seg", config_text=CONFIG, worker_timeout_ms=1000)
        ip("netns", "add", self.lbns)
        ip("netns", "add", self.clns)
        ip("link", "add", self.lbif, "type", "veth", "peer", "name", clif)
        ip("link", "set", self.lbif, "netns", self.lbns)
        ip("link", "set", clif, "netns", self.clns)
        ip("-n", self.lbns, "link", "set", self.lbif, "up")
        ip("-n", self.clns, "link", "set", clif, "up")
        ip("-n", self.lbns, "addr", "add", "10.0.0.2/24", "dev", self.lbif)
        ip("-n", self.clns, "addr", "add", "10.0.0.1/24", "dev", clif)
        ip("-n", self.clns, "route", "add", f"{VIP}/32", "via", "10.0.0.2")
        # The LB's kernel sees the af_packet port's frames too: it must not
        # route VIP packets.
        subprocess.run(["ip", "netns", "exec", self.lbns, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                       check=True, timeout=30)

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sluiced.stop()
        for ns in (self.lbns, self.clns):
            subprocess.run(["ip", "netns", "del", ns], timeout=30, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ping(self):
        """Whether one ping to the VIP is answered (by sluice-dpdk: the LB's
        kernel neither holds the VIP nor forwards)."""
        r = subprocess.run(["ip", "netns", "exec", self.clns, "ping", "-n", "-c", "1", "-W", "3", VIP],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def test_every_broken_snapshot_is_refused_and_the_old_tables_stay(self):
        log = open(os.path.join(self.tmp, "dpdk.log"), "w+")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.lbns,
                                      os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", self.sluiced.shm,
                                      "--iface", self.lbif, "--workers", "2"],
                                     stdout=subprocess.DEVNULL, stderr=log, text=True)
        names = [f"dpdk {self.lbif} q0", f"dpdk {self.lbif} q1"]

        def text():
            log.seek(0)
            return log.read()

        seg = S.Segment(self.sluiced.shm)
        try:
            good, good_slot = seg.active()
            wait_for(lambda: self.proc.poll() is not None or
                     all(seg.worker(n) == (good, good, 0) for n in names), 60,
                     "both workers to take the first snapshot")
            self.assertIsNone(self.proc.poll(), text())
            self.assertTrue(self.ping(), "the VIP unanswered before anything was broken")
            self.sluiced.kill()  # the segment stays; this test is the writer now
            for name, edit, why in S.broken_snapshots(seg, random.Random(7)):
                with self.subTest(defect=name):
                    gen = seg.publish_copy(good_slot, edit)
                    wait_for(lambda: self.proc.poll() is not None or
                             all(seg.worker(n) == (gen, good, S.REFUSED[why]) for n in names), 10,
                             f"the workers to refuse {gen} for {why}: {[seg.worker(n) for n in names]}")
                    self.assertIsNone(self.proc.poll(), text())
                    self.assertRegex(text(), rf"snapshot generation {gen}: .*: still forwarding by "
                                             rf"generation {good}\n")
                    self.assertTrue(self.ping(), f"the VIP unanswered after generation {gen} ({name})")
        finally:
            seg.close()
        # sluiced back, publishing a good one (the next generation after the
        # ones this test wrote): taken, the refusal cleared.
        self.sluiced.start()
        gen = self.sluiced.generation()
        self.assertGreater(gen, good)
        seg = S.Segment(self.sluiced.shm)
        try:
            wait_for(lambda: all(seg.worker(n) == (gen, gen, 0) for n in names), 10,
                     f"the workers to take generation {gen}: {[seg.worker(n) for n in names]}")
        finally:
            seg.close()
        self.assertIn(f"snapshot generation {gen} taken", text())
        self.assertTrue(self.ping())
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=60), 0, text())
        self.assertEqual(len(re.findall(r"still forwarding by", text())), 5, text())


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("dpdk_segment_test", [sys.argv[0]] + sys.argv[3:])
