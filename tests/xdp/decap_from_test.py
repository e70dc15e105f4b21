#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-decap --from (root): a backend opens only the load
balancers' tunnels.

A backend namespace runs the decap program on its veth with `--from
10.77.0.2/32` (the load balancer). A sender on the other end of the veth
sends IPIP to the backend from the load balancer's address and from another
one, and GUE the same way. Only the load balancer's are opened; the others
are dropped and counted (`drop_foreign` in the line it logs on exit). Bad
prefixes on the command line are one line naming --from.

usage: decap_from_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import signal
import subprocess
import sys
import time
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402
from sluiced import wait_for  # noqa: E402

LB, OTHER, BACKEND = "10.77.0.2", "10.77.0.99", "10.77.0.11"


@unittest.skipUnless(U.is_root(), "needs root (XDP, namespaces)")
class DecapFrom(unittest.TestCase):
    def setUp(self):
        self.tag = f"sdf{os.getpid() % 100000}"
        self.ns_s, self.ns_b = f"{self.tag}s", f"{self.tag}b"
        for n in (self.ns_s, self.ns_b):
            U.run("ip", "netns", "add", n)
        U.run("ip", "link", "add", f"{self.tag}a", "netns", self.ns_s, "type", "veth", "peer", "name",
              f"{self.tag}z", "netns", self.ns_b)
        U.run("ip", "link", "set", f"{self.tag}a", "up", ns=self.ns_s)
        U.run("ip", "addr", "add", f"{BACKEND}/24", "dev", f"{self.tag}z", ns=self.ns_b)
        U.run("ip", "link", "set", f"{self.tag}z", "up", ns=self.ns_b)
        U.run("ip", "link", "set", "lo", "up", ns=self.ns_b)
        self.mac = U.run("cat", f"/sys/class/net/{self.tag}z/address", ns=self.ns_b).stdout.strip()
        self.log = os.path.join("/tmp", f"{self.tag}.log")

    def tearDown(self):
        for n in (self.ns_s, self.ns_b):
            U.run("ip", "netns", "del", n, check=False)
        if os.path.exists(self.log):
            os.unlink(self.log)

    def send(self, frames):
        """Frames out of the sender's veth, by scapy in the sender namespace."""
        code = ("import sys\nfrom scapy.all import sendp, Ether, IP, UDP, TCP, Raw\n"
                f"frames = [{', '.join(frames)}]\n"
                f"sendp(frames, iface={self.tag + 'a'!r}, verbose=False)\n")
        U.run("/usr/bin/python3", "-c", code, ns=self.ns_s)

    def test_only_the_load_balancers_tunnels_are_opened(self):
        p = U.Proc([U.exe("xdp/sluice-decap"), "--iface", f"{self.tag}z", "--gue-port", "6080",
                    "--from", f"{LB}/32", "--from", "fd00:77::/64"], self.log, ns=self.ns_b)
        wait_for(lambda: "decap attached" in p.text() or not p.alive(), 30, "the decap program to attach")
        self.assertIn("outer source in one of 2 --from", p.text())
        eth = f"Ether(dst={self.mac!r})"
        inner = "IP(src='192.0.2.7', dst='10.200.1.1')/TCP(sport=40000, dport=80, flags='S')"
        frames = [
            f"{eth}/IP(src={LB!r}, dst={BACKEND!r}, proto=4)/{inner}",
            f"{eth}/IP(src={OTHER!r}, dst={BACKEND!r}, proto=4)/{inner}",
            f"{eth}/IP(src={LB!r}, dst={BACKEND!r})/UDP(sport=50000, dport=6080)/Raw(b'\\x00\\x04\\x00\\x00')/{inner}",
            f"{eth}/IP(src={OTHER!r}, dst={BACKEND!r})/UDP(sport=50000, dport=6080)/Raw(b'\\x00\\x04\\x00\\x00')/{inner}",
            f"{eth}/IP(src={OTHER!r}, dst={BACKEND!r})/TCP(sport=1, dport=22)",  # not a tunnel: untouched
        ]
        self.send(frames)
        time.sleep(0.5)  # the veth delivers at once; let the frames land before stopping
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.text())
        line = [l for l in p.text().splitlines() if "detached from" in l][-1]
        got = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line.split("; ", 1)[1])}
        self.assertEqual(got["decap_ipip"], 1, line)
        self.assertEqual(got["decap_gue"], 1, line)
        self.assertEqual(got["drop_foreign"], 2, line)
        self.assertGreaterEqual(got["pass_not_tunnel"], 1, line)

    def test_bad_prefixes_are_one_line(self):
        for bad, why in [("10.0.0.0/33", "prefix length must be 0-32"), ("nonsense", "not an IPv4 or IPv6"),
                         ("fd00::/129", "0-128"), ("10.0.0.0/", "prefix length")]:
            r = subprocess.run(["ip", "netns", "exec", self.ns_b, U.exe("xdp/sluice-decap"),
                                "--iface", f"{self.tag}z", "--from", bad], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn(f"--from '{bad}'", lines[0])
            self.assertIn(why, lines[0])
        r = subprocess.run([U.exe("xdp/sluice-xdp"), "--iface", "lo", "--from", "10.0.0.0/8"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--from is for the backend-side decap: sluice-decap", r.stderr)


if __name__ == "__main__":
    testmain.main("decap_from_test", U.init(sys.argv))
