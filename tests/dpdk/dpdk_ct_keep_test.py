#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-dpdk's connection tables outlive the process (dataplane/ct_store.h).

With a real sluiced and `sluice-dpdk --pcap IN:OUT --ct-dir DIR` (a replay
keeps its tables only where --ct-dir is given; a live port always does):
- 2,000 TCP flows open (SYN) with three backends; a backend is added and
  another removed; the same flows' next packets (ACK) in a second run over
  the same tables: every flow whose backend is still there stays on it, the
  removed one's flows move, and the same second run over empty tables
  (what Maglev alone does) moves some of the flows that had a backend to
  stay on: the difference the kept tables make;
- tables it cannot trust: random bytes over entries (it starts, says how
  many invalid entries it dropped, forwards every packet, and the flows in
  the untouched entries keep their backends), a truncated file, a wrong
  magic, another layout version, another worker count (each: one line
  saying why, a new table, every packet forwarded), another --ct-entries
  (rehashed, every flow kept), a table locked by another process or owned
  by another user or writable by others (refused in one line), and
  --ct-fresh (thrown away).
No root, no hugepages (the files go where --ct-dir says).

usage: dpdk_ct_keep_test.py BUILD_DIR SOURCE_DIR
"""
import fcntl
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

from scapy.all import IP, TCP, Ether, rdpcap, wrpcap  # python3-scapy

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import sluiced  # noqa: E402
import testmain  # noqa: E402

BUILD = SOURCE = None
VIP = "10.200.1.1"
BACKENDS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
ADDED, REMOVED = "10.0.0.14", "10.0.0.12"
FLOWS = 2000
CONFIG = f"""\
node:
  source_ipv4: 10.0.0.2
  gateway_mac: 02:00:00:00:00:fe
vips:
  - address: {VIP}
    port: 80
    protocol: tcp
    mode: ipip
    backends:
""" + "".join(f"      - address: {b}\n" for b in BACKENDS)

HEADER_BYTES = 4096   # ct_store.h ct_header_bytes: the table follows
TABLE_HEAD = 64       # struct sluice_ct_table's header, then the buckets
ENTRY = 64
counters = sluiced.exit_counters


def flow_src(i):
    return f"198.{18 + i // 60000}.{(i // 250) % 240}.{i % 250 + 1}", 1024 + i % 60000


def capture(path, flags):
    pkts = []
    for i in range(FLOWS):
        src, sport = flow_src(i)
        pkts.append(Ether(src="02:00:00:00:00:01", dst="02:70:63:61:70:00") /
                    IP(src=src, dst=VIP) / TCP(sport=sport, dport=80, flags=flags, seq=1000, ack=1 if flags == "A" else 0))
    wrpcap(path, pkts)


def backends_of(out):
    """(client address, port) -> the backend its packet was sent to (IPIP's outer destination)."""
    got = {}
    for p in rdpcap(out):
        inner = p[IP].payload
        got[(inner.src, inner[TCP].sport)] = p[IP].dst
    return got


class CtKeep(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-ct-keep-")
        self.d = sluiced.Sluiced(BUILD, self.tmp, "ct-keep", config_text=CONFIG)
        self.syn = os.path.join(self.tmp, "syn.pcap")
        self.ack = os.path.join(self.tmp, "ack.pcap")
        capture(self.syn, "S")
        capture(self.ack, "A")
        self.runs = 0

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_dp(self, inp, ct_dir, *extra, status=0):
        """sluice-dpdk --pcap INP over the tables in ct_dir: (backend per flow, stderr, counters)."""
        self.runs += 1
        out = os.path.join(self.tmp, f"out{self.runs}.pcap")
        args = [os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", self.d.shm, "--pcap", f"{inp}:{out}"]
        if ct_dir:
            args += ["--ct-dir", ct_dir]
        p = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=180)
        self.assertEqual(p.returncode, status, p.stderr)
        if status:
            return None, p.stderr, None
        c = counters(p.stdout)
        self.assertEqual(c.get("rx_packets"), FLOWS, p.stdout)
        self.assertEqual(c.get("tx_packets"), FLOWS, f"every packet forwarded\n{p.stdout}{p.stderr}")
        return backends_of(out), p.stderr, c

    def opened(self):
        """A --ct-dir whose table holds the 2,000 flows, opened with the three backends."""
        ct = os.path.join(self.tmp, f"ct{self.runs}")
        os.mkdir(ct)
        first, err, c = self.run_dp(self.syn, ct)
        self.assertIn("connection table", err)
        self.assertRegex(err, r"worker 0: connection table .*: new; 0 flows kept")
        self.assertEqual(c.get("conn_new"), FLOWS)
        self.assertEqual(sorted(set(first.values())), BACKENDS, "the flows spread over the three")
        return ct, first

    def table_file(self, ct):
        files = [f for f in os.listdir(ct) if f.startswith("sluice-ct.")]
        self.assertEqual(len(files), 1, files)
        return os.path.join(ct, files[0])

    def change_backends(self):
        self.d.ok("backend", "add", f"{VIP}:80/tcp", ADDED)
        self.d.ok("backend", "del", f"{VIP}:80/tcp", REMOVED)

    def test_flows_keep_their_backends_across_a_restart_and_a_changed_backend_set(self):
        ct, first = self.opened()
        self.change_backends()
        kept, err, c = self.run_dp(self.ack, ct)
        self.assertRegex(err, rf"worker 0: connection table .*: re-attached after a clean stop; {FLOWS} "
                              r"flows kept, 0 expired, 0 invalid entries dropped")
        staying = [f for f, b in first.items() if b != REMOVED]
        moved = [f for f in staying if kept[f] != first[f]]
        self.assertEqual(moved, [], f"{len(moved)} of {len(staying)} flows left a backend that is still there")
        for f, b in first.items():
            if b == REMOVED:
                self.assertNotEqual(kept[f], REMOVED, "a flow still sent to the removed backend")
        self.assertEqual(c.get("conn_new"), 0, "every flow found in the kept table")

        # The same packets over empty tables: Maglev alone.
        fresh, err, _ = self.run_dp(self.ack, None)
        maglev_moved = [f for f in staying if fresh[f] != first[f]]
        print(f"\n  {len(staying)} flows on backends still there: 0 moved with the kept tables, "
              f"{len(maglev_moved)} with Maglev alone", file=sys.stderr)
        self.assertGreater(len(maglev_moved), 0,
                           "the backend change moves no flow under Maglev: the test shows nothing")

    def test_ct_fresh_throws_the_tables_away(self):
        ct, first = self.opened()
        self.change_backends()
        _, err, c = self.run_dp(self.ack, ct, "--ct-fresh")
        self.assertRegex(err, r"worker 0: connection table .*: new: the one there was --ct-fresh; 0 flows kept")
        self.assertEqual(c.get("conn_new"), FLOWS)

    def test_random_bytes_over_entries_are_dropped_and_counted_and_the_rest_kept(self):
        ct, first = self.opened()
        path = self.table_file(ct)
        size = os.path.getsize(path)
        n_entries = (size - HEADER_BYTES - TABLE_HEAD) // ENTRY
        rng = random.Random(7)
        hit = sorted(rng.sample(range(n_entries), 300))
        with open(path, "r+b") as f:
            for e in hit:
                f.seek(HEADER_BYTES + TABLE_HEAD + e * ENTRY)
                f.write(rng.randbytes(ENTRY))
        _, err, c = self.run_dp(self.ack, ct)
        m = re.search(r"re-attached after a clean stop; (\d+) flows kept, 0 expired, (\d+) invalid entries dropped", err)
        self.assertIsNotNone(m, err)
        kept, invalid = int(m.group(1)), int(m.group(2))
        self.assertGreater(invalid, 0, err)
        self.assertLess(kept, FLOWS, err)
        self.assertGreater(kept, FLOWS // 2, err)
        # What stayed in the table is found; the rest is picked again.
        self.assertEqual(c.get("conn_new"), FLOWS - kept, err)

    def test_tables_it_cannot_be_are_replaced_in_one_line_and_it_forwards(self):
        def truncate(path):
            os.truncate(path, HEADER_BYTES + 4096)

        def magic(path):
            with open(path, "r+b") as f:
                f.write(b"NOTSLUCE")

        def layout(path):
            with open(path, "r+b") as f:
                f.seek(8)
                f.write(struct.pack("<I", 999))

        def workers(path):
            with open(path, "r+b") as f:
                f.seek(32)
                f.write(struct.pack("<I", 3))

        def tiny(path):
            os.truncate(path, 10)

        cases = [(truncate, r"new: the one there was truncated \(\d+ bytes, its \d+ buckets take \d+\)"),
                 (tiny, r"new: the one there was truncated \(10 bytes, less than its header\)"),
                 (magic, r"new: the one there was not a sluice connection table \(wrong magic\)"),
                 (layout, r"new: the one there was layout version 999, this build reads 1"),
                 (workers, r"new: the one there was made for 3 workers, this run has 1 \(each flow.s worker follows the NIC.s hash over the worker count\)")]
        for spoil, line in cases:
            with self.subTest(spoil.__name__):
                ct, _ = self.opened()
                spoil(self.table_file(ct))
                _, err, c = self.run_dp(self.ack, ct)
                self.assertRegex(err, r"worker 0: connection table .*: " + line + r"; 0 flows kept")
                self.assertEqual(c.get("conn_new"), FLOWS)

    def test_another_size_is_rehashed_with_every_flow(self):
        ct, first = self.opened()
        self.change_backends()
        kept, err, c = self.run_dp(self.ack, ct, "--ct-entries", "16384")
        self.assertRegex(err, rf"rehashed from 65536 to 16384 entries \({FLOWS} moved\); {FLOWS} flows kept")
        self.assertEqual(c.get("conn_new"), 0)
        for f, b in first.items():
            if b != REMOVED:
                self.assertEqual(kept[f], b)

    def test_a_table_in_use_is_refused_in_one_line(self):
        ct, _ = self.opened()
        with open(self.table_file(ct), "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _, err, _ = self.run_dp(self.ack, ct, status=1)
        last = err.strip().splitlines()[-1]
        self.assertRegex(last, r"^sluice-dpdk: .*sluice-ct\..*: locked by another process: "
                               r"one dataplane per segment and port$")

    @unittest.skipUnless(os.geteuid() == 0, "needs root: a file of another user")
    def test_a_table_another_user_owns_or_may_write_is_refused(self):
        # /dev/shm is world-writable: a local user may plant a table (with
        # its own hash key) where sluice-dpdk looks for one.
        for uid, mode in ((65534, 0o600), (0, 0o666)):
            with self.subTest(uid=uid, mode=oct(mode)):
                ct, _ = self.opened()
                path = self.table_file(ct)
                os.chown(path, uid, uid)
                os.chmod(path, mode)
                _, err, _ = self.run_dp(self.ack, ct, status=1)
                last = err.strip().splitlines()[-1]
                self.assertRegex(last, rf"^sluice-dpdk: .*sluice-ct\..*: owned by uid {uid} with mode {mode:o}, "
                                       r"not this process's \(uid 0\) and private: refusing it")

    def test_bad_options_are_one_line(self):
        for args, text in [(["--ct-dir", os.path.join(self.tmp, "none")], "not a directory"),
                           (["--no-ct-persist", "--ct-fresh"], "--no-ct-persist keeps no tables")]:
            p = subprocess.run([os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", self.d.shm, "--pcap",
                                f"{self.syn}:{self.tmp}/x.pcap", *args], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(text, p.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("dpdk_ct_keep_test", [sys.argv[0]] + sys.argv[3:])
