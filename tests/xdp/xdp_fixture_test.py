#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The packet-fixture table through the XDP program (root).

A real sluiced publishes tests/fixtures/fixtures.py's CONFIG; `sluice-xdp
--pcap` mirrors that snapshot into the program's maps and runs every
fixture, in order, through the program with BPF_PROG_TEST_RUN on one CPU
(one connection table, as one DPDK worker), writing what it sends and what
it passes to the kernel, and printing the counters and a verdict per packet.
The outputs are checked by the same checker as every dataplane's
(tests/fixtures/check.py: each field of every forward and reply, the kernel
frames byte for byte, every counter, and the backend each flow's first
packet gets from the snapshot's Maglev table), and the verdicts against each
fixture's action. Fixtures marked with a known bug run on their own and are
reported as expected failures, as tests/dpdk/dpdk_fixture_test.py does.
tests/xdp/xdp_parity_test.py compares the outputs with sluice-dpdk's.

usage: xdp_fixture_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import re
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

PORT_MAC = "02:00:00:00:00:02"
VERDICT = {"forward": "tx", "reply": "tx", "kernel": "pass", "drop": "drop"}


def ip_start(frame):
    return 18 if frame[12:14] == b"\x81\x00" else 14


def run_xdp_pcap(fixtures, tmp, shm, frames, name, *extra):
    """Runs frames through sluice-xdp --pcap; returns (tx frames, kernel
    frames, counters, verdicts)."""
    inp = os.path.join(tmp, f"{name}.pcap")
    out = os.path.join(tmp, f"{name}.xdp.pcap")
    fixtures.write_pcap(inp, frames)
    p = subprocess.run([U.exe("xdp/sluice-xdp"), "--shm", shm, "--pcap", f"{inp}:{out}", "--json",
                        "--mac", PORT_MAC, "--mtu", "1500", *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    return (fixtures.read_pcap(out), fixtures.read_pcap(os.path.join(tmp, f"{name}.xdp.exception.pcap")),
            r["counters"], r["verdicts"])


@unittest.skipUnless(U.is_root(), "BPF_PROG_TEST_RUN needs root")
class XdpFixtures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import check
        import fixtures
        import snapshot
        cls.F, cls.check_mod, cls.snapshot_mod = fixtures, check, snapshot
        cls.tmp = tempfile.mkdtemp(prefix="sluice-xdp-fx-")
        cls.sluiced = None
        try:
            cls.sluiced = U.Sluiced(cls.tmp, fixtures.CONFIG, tag="xdp-fx")
            cls.table = [fx for fx in fixtures.FIXTURES if "bug" not in fx]
            cls.out = run_xdp_pcap(fixtures, cls.tmp, cls.sluiced.shm, [fx["frame"] for fx in cls.table],
                                   "table")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sluiced:
            cls.sluiced.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, table, tx, kernel, counters):
        snap = self.snapshot_mod.Snapshot(self.sluiced.shm)
        try:
            return self.check_mod.check_run(table, tx, kernel, counters, self.F.NODE, self.F.VIPS, PORT_MAC,
                                            pick=snap.pick)
        finally:
            snap.close()

    def test_table_is_consistent(self):
        self.assertEqual(self.F.self_check(U.SOURCE), [])

    def test_every_fixture_through_the_xdp_program(self):
        tx, kernel, counters, _ = self.out
        errs = self.check(self.table, tx, kernel, counters)
        self.assertEqual(errs, [], f"{len(errs)} problems in {len(self.table)} fixtures:\n" + "\n".join(errs))

    def test_verdict_of_every_fixture(self):
        verdicts = self.out[3]
        self.assertEqual(len(verdicts), len(self.table))
        wrong = [f"{fx['tag']} {fx['name']}: {v}, want {VERDICT[fx['expect']['action']]}"
                 for fx, v in zip(self.table, verdicts) if v != VERDICT[fx["expect"]["action"]]]
        self.assertEqual(wrong, [])


def _known_bug_test(fx):
    # Alone, so that the fix shows as this test's unexpected success.
    @unittest.expectedFailure
    def test(self):
        print(f"\n  known bug, {fx['tag']} {fx['name']}: {fx['bug']}", file=sys.stderr)
        tx, kernel, counters, _ = run_xdp_pcap(self.F, self.tmp, self.sluiced.shm, [fx["frame"]], "bug")
        self.assertEqual(self.check([fx], tx, kernel, counters), [])
    return test


def _add_known_bugs():
    sys.path.insert(0, os.path.join(TESTS, "fixtures"))
    import fixtures
    for fx in fixtures.FIXTURES:
        if "bug" in fx:
            setattr(XdpFixtures, "test_known_bug_" + re.sub(r"\W+", "_", fx["name"]).strip("_"),
                    _known_bug_test(fx))


_add_known_bugs()

if __name__ == "__main__":
    testmain.main("xdp_fixture_test", U.init(sys.argv))
