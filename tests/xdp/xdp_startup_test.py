#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-xdp's start-up as an operator meets it (root):
- every start-up error is one line, with exit status 1 (2 for usage);
- a segment of another ABI version is refused, naming both versions;
- on an interface whose driver has no native XDP (a namespace's loopback)
  the program falls back to generic mode, saying so in one line, and a
  clean stop detaches it;
- a --keep-attached stop leaves the program attached, the next start
  replaces it in place, and --detach takes it off keeping the pins;
- a pinned map of another layout is refused in one line naming the ways on
  (--replace-pinned, --unpin), and --replace-pinned starts on a new table.

usage: xdp_startup_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import shutil
import signal
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
from sluiced import wait_for  # noqa: E402

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
"""


def xdp(*args, ns=None, timeout=60):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [U.exe("xdp/sluice-xdp"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def decap(*args, timeout=60):
    return subprocess.run([U.exe("xdp/sluice-decap"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@unittest.skipUnless(U.is_root(), "needs root (BPF, namespaces)")
class Startup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-xdp-start-")
        cls.sluiced = U.Sluiced(cls.tmp, CONFIG, tag="xdp-start")

    @classmethod
    def tearDownClass(cls):
        cls.sluiced.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def one_line(self, p, rc, *words):
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(p.returncode, rc, p.stderr)
        self.assertEqual(len(lines), 1, p.stderr)
        for w in words:
            self.assertIn(w, lines[0])

    def test_usage_errors(self):
        self.one_line(xdp("--iface", "lo", "--mode", "fast"), 2, "--mode", "native or generic")
        self.one_line(xdp("--bogus"), 2, "bogus")
        self.one_line(xdp(), 2, "--iface")
        self.one_line(xdp("--decap", "--iface", "lo", "--unpin"), 2)
        # spdlog turns a level it does not know into "off": silence.
        self.one_line(xdp("--iface", "lo", "--log-level", "WARN"), 2, "--log-level: 'WARN' is not one of")
        self.one_line(xdp("--decap", "--iface", "lo", "--log-level", "verbose"), 2, "--log-level: 'verbose' is not one of")
        self.one_line(decap("--iface", "lo", "--log-level", "verbose"), 2, "sluice-decap:", "--log-level")
        self.one_line(decap(), 2, "sluice-decap:", "--iface is required")
        self.one_line(xdp("--iface", "lo", "--vip", "10.0.0.1"), 2, "--vip is for", "sluice-decap")
        self.one_line(xdp("--iface", "lo", "--unpin", "--detach"), 2, "--detach", "--unpin")
        self.one_line(xdp("--iface", "lo", "--unpin", "--keep-attached"), 2, "--keep-attached", "not with --unpin")

    def test_decap_is_its_own_program(self):
        r = decap("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Usage: sluice-decap --iface IF", r.stdout)
        self.assertIn("--from", r.stdout)
        r = xdp("--decap", "--help")
        self.assertIn("Usage: sluice-xdp --decap --iface IF", r.stdout)
        # The forwarder's help no longer lists the decap program's options.
        r = xdp("--help")
        self.assertNotIn("--gue-port", r.stdout)
        self.assertIn("sluice-decap", r.stdout)

    def test_missing_things(self):
        self.one_line(xdp("--iface", "nosuch0", "--shm", self.sluiced.shm), 1, "nosuch0", "no such interface")
        self.one_line(xdp("--iface", "lo", "--shm", f"absent-{os.getpid()}", "--wait-shm-ms", "100"), 1,
                      "no shm segment", "is sluiced running")
        self.one_line(xdp("--pcap", f"{self.tmp}/none.pcap:{self.tmp}/out.pcap", "--shm", self.sluiced.shm), 1,
                      "none.pcap")
        self.one_line(xdp("--iface", "lo", "--show"), 1, "lo runs no XDP program")
        self.one_line(xdp("--decap", "--iface", "lo", "--vip", "10.1.2"), 1, "--vip", "10.1.2")

    def test_pin_dir_must_be_bpffs(self):
        self.one_line(xdp("--iface", "lo", "--shm", self.sluiced.shm, "--pin-dir", f"{self.tmp}/pins"), 1,
                      "not on a bpf filesystem")

    def test_other_abi_version(self):
        name = f"sluice-xdp-abi-{os.getpid()}"
        path = f"/dev/shm/{name}"
        # A header like ours but of ABI version 999 (include/sluice/shm.h).
        with open(f"/dev/shm/{self.sluiced.shm}", "rb") as f:
            hdr = bytearray(f.read(64))
        struct.pack_into("<I", hdr, 8, 999)
        with open(path, "wb") as f:
            f.write(hdr)
            f.truncate(os.path.getsize(f"/dev/shm/{self.sluiced.shm}"))
        try:
            # The version this build speaks, as the header defines it.
            ours = re.search(r"#define SLUICE_ABI_VERSION (\d+)u",
                             open(os.path.join(U.SOURCE, "include/sluice/shm.h")).read())[1]
            self.one_line(xdp("--iface", "lo", "--shm", name), 1, "ABI version 999", f"speaks {ours}")
            self.one_line(xdp("--pcap", f"{self.tmp}/x.pcap:{self.tmp}/y.pcap", "--shm", name), 1)
        finally:
            os.unlink(path)

    def test_generic_fallback_on_loopback(self):
        ns = f"sxs{os.getpid() % 100000}"
        U.run("ip", "netns", "add", ns)
        U._cleanups.append(lambda: U.run("ip", "netns", "del", ns, check=False))
        bpf = U.BpfMount()
        try:
            U.run("ip", "link", "set", "lo", "up", ns=ns)
            p = U.Proc([U.exe("xdp/sluice-xdp"), "--iface", "lo", "--shm", self.sluiced.shm,
                        "--pin-dir", os.path.join(bpf.path, "lo"), "--ct-entries", "64"],
                       os.path.join(self.tmp, "lo.log"), ns=ns)
            wait_for(lambda: "attached in" in p.text() or not p.alive(), 30, "sluice-xdp to attach")
            text = p.text()
            self.assertIn("refuses native XDP", text)
            self.assertIn("attached in generic mode", text)
            self.assertIn("xdpgeneric", U.run("ip", "-d", "link", "show", "lo", ns=ns).stdout)
            self.assertEqual(p.stop(signal.SIGINT), 0, p.text())
            self.assertNotIn("prog/xdp", U.run("ip", "-d", "link", "show", "lo", ns=ns).stdout)
            # An explicit --mode native does not fall back.
            r = xdp("--iface", "lo", "--shm", self.sluiced.shm, "--mode", "native",
                    "--pin-dir", os.path.join(bpf.path, "lo"), ns=ns)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("native mode", r.stderr.splitlines()[-1])
        finally:
            U.run("ip", "netns", "del", ns, check=False)
            bpf.close()

    def loopback_ns(self):
        """A namespace with its loopback up (no native XDP: generic mode) and
        a bpffs for the pins; both removed at the end of the test."""
        ns = f"sxs{os.getpid() % 100000}"
        U.run("ip", "netns", "add", ns)
        self.addCleanup(U.run, "ip", "netns", "del", ns, check=False)
        U.run("ip", "link", "set", "lo", "up", ns=ns)
        bpf = U.BpfMount()
        self.addCleanup(bpf.close)
        return ns, os.path.join(bpf.path, "lo")

    def start_lo(self, ns, pins, log, *extra):
        p = U.Proc([U.exe("xdp/sluice-xdp"), "--iface", "lo", "--shm", self.sluiced.shm, "--pin-dir", pins,
                    "--ct-entries", "64", *extra], os.path.join(self.tmp, log), ns=ns)
        self.addCleanup(p.stop, signal.SIGKILL)
        wait_for(lambda: "attached in" in p.text() or not p.alive(), 30, "sluice-xdp to attach")
        self.assertTrue(p.alive(), p.text())
        return p

    def attached_id(self, ns):
        """The id of the XDP program on the namespace's lo, or None."""
        out = U.run("ip", "-d", "-j", "link", "show", "lo", ns=ns).stdout
        import json
        xdp_ = json.loads(out)[0].get("xdp") or {}
        return (xdp_.get("prog") or {}).get("id")

    def test_keep_attached_stop_and_detach(self):
        ns, pins = self.loopback_ns()
        p = self.start_lo(ns, pins, "keep1.log", "--keep-attached")
        first = self.attached_id(ns)
        self.assertIsNotNone(first)
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())
        self.assertIn("leaving the program attached to lo", p.text())
        # Still there, the very program that stopped run loaded.
        self.assertEqual(self.attached_id(ns), first, "a --keep-attached stop detached the program")
        # The next start swaps programs in place and reuses the pinned table.
        p = self.start_lo(ns, pins, "keep2.log")
        self.assertIn(f"replaced the sluice XDP program (id {first})", p.text())
        self.assertIn("reused with its flows", p.text())
        second = self.attached_id(ns)
        self.assertNotIn(second, (None, first))
        # Without --keep-attached a stop detaches, as before.
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())
        self.assertIsNone(self.attached_id(ns))
        # --detach after a --keep-attached stop: off the interface, pins kept.
        p = self.start_lo(ns, pins, "keep3.log", "--keep-attached")
        self.assertEqual(p.stop(signal.SIGINT), 0, p.text())
        self.assertIsNotNone(self.attached_id(ns))
        r = xdp("--iface", "lo", "--detach", "--pin-dir", pins, ns=ns)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("detached sluice's XDP program", r.stderr)
        self.assertIsNone(self.attached_id(ns))
        self.assertTrue(os.path.exists(os.path.join(pins, "sl_ct")), "--detach removed the pinned table")
        r = xdp("--iface", "lo", "--detach", "--pin-dir", pins, ns=ns)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing to detach", r.stderr)

    def test_pinned_map_of_another_layout(self):
        ns, pins = self.loopback_ns()
        os.makedirs(pins)
        # What another sluice-xdp version could have left: a connection
        # table whose buckets are 8 bytes, not sizeof(struct sluice_ct_bucket).
        U.run("bpftool", "map", "create", os.path.join(pins, "sl_ct"), "type", "array", "key", "4",
              "value", "8", "entries", "4", "name", "sl_ct")
        self.one_line(xdp("--iface", "lo", "--shm", self.sluiced.shm, "--pin-dir", pins, "--ct-entries", "64",
                          ns=ns), 1, "sl_ct: the pinned map has another layout", "8-byte values",
                      "--replace-pinned", f"sluice-xdp --iface lo --unpin --pin-dir {pins}")
        self.assertTrue(os.path.exists(os.path.join(pins, "sl_ct")), "a refused start removed the pin")
        # The same for the table's key beside it.
        os.unlink(os.path.join(pins, "sl_ct"))
        p = self.start_lo(ns, pins, "layout1.log")
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())
        os.unlink(os.path.join(pins, "sl_ct_key"))
        U.run("bpftool", "map", "create", os.path.join(pins, "sl_ct_key"), "type", "array", "key", "4",
              "value", "16", "entries", "1", "name", "sl_ct_key")
        self.one_line(xdp("--iface", "lo", "--shm", self.sluiced.shm, "--pin-dir", pins, "--ct-entries", "64",
                          ns=ns), 1, "sl_ct_key: the pinned map has another layout", "16-byte values", "--replace-pinned")
        # --replace-pinned: new maps, saying so, and forwarding.
        p = self.start_lo(ns, pins, "layout2.log", "--replace-pinned")
        self.assertIn("replacing it", p.text())
        self.assertNotIn("reused with its flows", p.text())
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())
        # What it pinned is this version's layout: the next start reuses it.
        p = self.start_lo(ns, pins, "layout3.log")
        self.assertIn("reused with its flows", p.text())
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())


if __name__ == "__main__":
    testmain.main("xdp_startup_test", U.init(sys.argv))
