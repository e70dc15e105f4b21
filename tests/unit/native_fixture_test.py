#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The packet-fixture table (tests/fixtures/) through the shared decision
itself: tests/unit/decide_runner runs every frame through include/sluice/decide.h
and encap.h's writers in one process — no root, no DPDK, no BPF — and
tests/fixtures/check.py checks its output field by field, as it checks
sluice-dpdk's and the XDP program's. So every decision is checked on any
machine; the DPDK and XDP runners add the I/O around it.

A sluiced with the table's configuration runs beside it (no root needed) so
the checker can compute each flow's Maglev pick from the snapshot sluiced
publishes, independently of the runner's own.

usage: native_fixture_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import shutil
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
import sluiced  # noqa: E402
import testmain  # noqa: E402
from sluiced import Sluiced  # noqa: E402

BUILD = SOURCE = None
PORT_MAC = "02:00:00:00:aa:01"


counters = sluiced.exit_counters


class NativeFixtureTable(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-native-fx-")
        cls.d = None
        try:
            cls.d = Sluiced(BUILD, cls.tmp, "native-fx", config_text=fixtures.CONFIG)
            cls.table = [fx for fx in fixtures.FIXTURES if "bug" not in fx]
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.d:
            cls.d.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_table(self, table, name):
        inp, out = os.path.join(self.tmp, f"{name}.in.pcap"), os.path.join(self.tmp, f"{name}.out.pcap")
        fixtures.write_pcap(inp, [fx["frame"] for fx in table])
        p = subprocess.run([os.path.join(BUILD, "tests/unit/decide_runner"), self.d.config, inp, out, PORT_MAC],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        tx = fixtures.read_pcap(out)
        kernel = fixtures.read_pcap(out[:-len(".pcap")] + ".exception.pcap")
        snap = snapshot.Snapshot(self.d.shm)
        try:
            return check.check_run(table, tx, kernel, counters(p.stdout), fixtures.NODE, fixtures.VIPS, PORT_MAC,
                                   pick=snap.pick)
        finally:
            snap.close()

    def test_every_fixture_through_the_shared_decision(self):
        errs = self.run_table(self.table, "table")
        self.assertEqual(errs, [], f"{len(errs)} problems in {len(self.table)} fixtures:\n" + "\n".join(errs))


def _known_bug_test(fx):
    @unittest.expectedFailure
    def test(self):
        errs = self.run_table([fx], "bug")
        self.assertEqual(errs, [], "\n".join(errs))
    return test


for _fx in fixtures.FIXTURES:
    if "bug" in _fx:
        setattr(NativeFixtureTable, "test_known_bug_" + re.sub(r"\W+", "_", _fx["name"]).strip("_"),
                _known_bug_test(_fx))


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("native_fixture_test", [sys.argv[0]] + sys.argv[3:])
