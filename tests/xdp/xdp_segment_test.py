#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-xdp against a segment it cannot trust (root).

The test plays a broken or hostile writer: with sluiced killed (the segment
stays), it publishes snapshots itself, each a copy of the last good one with
one defect: every count field out of range, random bytes over the tables, a
VIP table past the rings. sluice-xdp must refuse each one, keep forwarding by
the generation it holds, never crash, and say in its worker record which
generation it applied and why it refused the one it saw. Then a snapshot
whose tables do not fit its `--ring-entries`: `sluicectl status` and
/metrics must show the worker stale with that reason, and not once a
snapshot fits.

usage: xdp_segment_test.py BUILD_DIR SOURCE_DIR
"""
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import unittest

# The shared helpers (tests/harness/) and the packet-fixture table
# (tests/fixtures/) are beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TESTS, "harness"), os.path.join(TESTS, "fixtures")]
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402
from sluiced import Sluiced, wait_for  # noqa: E402

import snapshot as S  # noqa: E402  (the segment's layout, tests/fixtures/snapshot.py)

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
"""

@unittest.skipUnless(U.is_root(), "needs root (BPF, namespaces)")
class CorruptSegment(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-xdp-seg-")
        self.ns = f"sxg{os.getpid() % 100000}"
        U.run("ip", "netns", "add", self.ns)
        U.run("ip", "link", "set", "lo", "up", ns=self.ns)
        self.bpf = U.BpfMount()
        self.sluiced = Sluiced(U.BUILD, self.tmp, "xdp-seg", config_text=CONFIG, metrics=True,
                               worker_timeout_ms=1000)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.alive():
                p.stop(signal.SIGINT)
        self.sluiced.stop()
        U.run("ip", "netns", "del", self.ns, check=False)
        self.bpf.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def xdp(self, *extra):
        p = U.Proc([U.exe("xdp/sluice-xdp"), "--iface", "lo", "--shm", self.sluiced.shm,
                    "--pin-dir", os.path.join(self.bpf.path, "lo"), "--ct-entries", "64", *extra],
                   os.path.join(self.tmp, "xdp.log"), ns=self.ns)
        self.procs.append(p)
        return p

    def test_every_broken_snapshot_is_refused_and_the_old_tables_stay(self):
        p = self.xdp()
        wait_for(lambda: "attached in" in p.text() or not p.alive(), 30, "sluice-xdp to attach")
        self.assertTrue(p.alive(), p.text())
        seg = S.Segment(self.sluiced.shm)
        try:
            good, good_slot = seg.active()
            wait_for(lambda: seg.worker("xdp lo") == (good, good, 0), 10, "the mirror to apply the first")
            self.sluiced.kill()  # the segment stays; this test is the writer now
            # The defects both dataplanes refuse, and one of the maps' own.
            cases = S.broken_snapshots(seg, random.Random(7)) + [
                ("ring_used past the maps", lambda d: struct.pack_into("<I", seg.m, d + S.HDR_RING_USED,
                                                                      S.RING_POOL), "ring_entries")]
            for name, edit, why in cases:
                with self.subTest(defect=name):
                    gen = seg.publish_copy(good_slot, edit)
                    wait_for(lambda: seg.worker("xdp lo")[0] == gen, 10, f"the mirror to see {gen}")
                    wait_for(lambda: seg.worker("xdp lo") == (gen, good, S.REFUSED[why]), 10,
                             f"the mirror to refuse {gen} for {why}: {seg.worker('xdp lo')}")
                    self.assertTrue(p.alive(), p.text())
                    self.assertIn(f"still forwarding by generation {good}", p.text())
        finally:
            seg.close()
        # A good snapshot after all that is taken: sluiced back, publishing.
        self.sluiced.start()
        wait_for(lambda: [x for x in self.sluiced.json("status")["workers"] if x["name"] == "xdp lo"][0]
                 ["generation_applied"] == self.sluiced.generation(), 10, "the mirror to apply again")
        self.assertEqual(p.stop(signal.SIGINT), 0, p.text())

    def test_a_snapshot_its_maps_cannot_hold_shows_the_worker_stale(self):
        # The VIP's default table (65,537 entries) is more than 1,024.
        p = self.xdp("--ring-entries", "1024")
        wait_for(lambda: "--ring-entries" in p.text() or not p.alive(), 30, "sluice-xdp to refuse")
        self.assertTrue(p.alive(), p.text())
        gen = self.sluiced.generation()
        w = [x for x in self.sluiced.json("status")["workers"] if x["name"] == "xdp lo"][0]
        self.assertEqual((w["generation_seen"], w["generation_applied"]), (gen, 0))
        self.assertIn(f"refused generation {gen}", w["stale"])
        self.assertIn("--ring-entries", w["stale"])
        self.assertIn("STALE", self.sluiced.ok("status"))
        self.assertIn("--ring-entries", self.sluiced.ok("status"))
        m = self.sluiced.metrics()
        self.assertIn('sluice_worker_stale{worker="xdp lo",kind="xdp",reason="ring_entries"} 1', m)
        self.assertIn('sluice_worker_generation_applied{worker="xdp lo",kind="xdp"} 0', m)
        # A table that fits: applied, and stale no more.
        small = os.path.join(self.tmp, "small.yaml")
        with open(small, "w") as f:
            f.write(CONFIG.replace("    protocol: tcp\n", "    protocol: tcp\n    ring_size: 251\n"))
        self.sluiced.ok("apply", "-f", small)
        gen = self.sluiced.generation()
        wait_for(lambda: [x for x in self.sluiced.json("status")["workers"] if x["name"] == "xdp lo"][0]
                 ["generation_applied"] == gen, 10, "the mirror to apply a table that fits")
        w = [x for x in self.sluiced.json("status")["workers"] if x["name"] == "xdp lo"][0]
        self.assertEqual(w["stale"], "")
        self.assertIn('sluice_worker_stale{worker="xdp lo",kind="xdp",reason=""} 0', self.sluiced.metrics())


if __name__ == "__main__":
    testmain.main("xdp_segment_test", U.init(sys.argv))
