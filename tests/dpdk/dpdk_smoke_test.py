#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-dpdk as an operator runs it: a smoke test of the application.

Starts a real sluiced (own socket, state dir and shm segment), then:
- `sluice-dpdk --pcap IN:OUT` on a scapy-written capture: exit 0, the VIP
  packets in OUT, the ARP and the non-VIP packet byte for byte in
  OUT.exception.pcap, rx_packets equal to the input's count, and its worker
  record (kind dpdk) in `sluicectl status`, stopped once it is done;
- start-up errors: one line and the documented exit status;
- `sluice-dpdk --iface` on a veth inside network namespaces made for the test
  (root only): it attaches, answers three pings to the VIP (ping gets three
  replies, none duplicated; icmp_echo_replied is exactly 3), and stops
  cleanly on SIGTERM.
No hugepages, no NIC; every wait is bounded and everything is torn down.
The packet contents are the fixture suite's business, not this one's.

usage: dpdk_smoke_test.py BUILD_DIR SOURCE_DIR
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

from scapy.all import ARP, IP, TCP, UDP, Ether, rdpcap, wrpcap  # python3-scapy

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import sluiced  # noqa: E402
import testmain  # noqa: E402
from sluiced import wait_for  # noqa: E402

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
    mode: ipip
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
"""




counters = sluiced.exit_counters


class Sluiced(sluiced.Sluiced):
    def workers(self, pid):
        """The worker records of dataplane process PID in `sluicectl status`."""
        return [w for w in self.json("status")["workers"] if w["pid"] == pid]


def dpdk(*args):
    return [os.path.join(BUILD, "dataplane/sluice-dpdk"), *args]


class DpdkSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-dpdk-smoke-")
        cls.d = Sluiced(BUILD, cls.tmp, "dpdk-smoke", config_text=CONFIG, worker_timeout_ms=1000)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_pcap_forwards_the_file_passes_the_kernels_and_exits_0(self):
        client, lb = "02:00:00:00:00:01", "02:70:63:61:70:00"
        vip_pkts = [Ether(src=client, dst=lb) /
                    IP(src=f"192.0.2.{i + 1}", dst=VIP) / TCP(sport=40000 + i, dport=80, flags="S")
                    for i in range(4)]
        arp = Ether(src=client, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="10.0.0.2")
        other = Ether(src=client, dst=lb) / IP(src="192.0.2.1", dst="10.9.9.9") / UDP(sport=5353, dport=53)
        packets = vip_pkts[:2] + [arp] + vip_pkts[2:3] + [other] + vip_pkts[3:]
        inp = os.path.join(self.tmp, "in.pcap")
        out = os.path.join(self.tmp, "out.pcap")
        exc = os.path.join(self.tmp, "out.exception.pcap")
        wrpcap(inp, packets)

        def totals():
            st = self.d.json("stats")
            return st["counters"], [(v["vip"], v["packets"]) for v in st["vips"]]
        before = totals()
        p = subprocess.Popen(dpdk("--shm", self.d.shm, "--pcap", f"{inp}:{out}"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0, stderr)
        # The capability line says what the port offered.
        self.assertRegex(stderr, r"port 0 \(net_pcap0, net_pcap\): 1 rx/1 tx queue; RSS: .*; "
                                 r"TX IPv4 checksum: (offload|software)")

        c = counters(stdout)
        self.assertEqual(c.get("rx_packets"), len(packets), stdout)
        self.assertIn("drop_tx_full", c)
        self.assertEqual(len(rdpcap(out)), len(vip_pkts), "VIP packets forwarded to OUT")
        self.assertEqual([bytes(x) for x in rdpcap(exc)], [bytes(arp), bytes(other)],
                         "ARP and non-VIP packets handed to the kernel unchanged, in order")

        # A replay is not the node's traffic: nothing of it in the node's
        # or the VIP's totals, and its record freed once it exited (no
        # "stopped" worker left whose heartbeat ages for ever).
        # (Other tests of this class share the sluiced: the totals must
        # not move.)
        self.assertEqual(self.d.workers(p.pid), [])
        self.assertEqual(totals(), before)
        self.assertNotIn("replay", [w["kind"] for w in self.d.json("status")["workers"]])
        self.assertFalse(os.path.exists(f"/var/run/dpdk/sluice-{p.pid}"),
                         "the private EAL runtime directory is removed")

    def test_pcap_ends_on_every_capture_format(self):
        # --pcap stops once it has seen as many packets as the file holds:
        # big-endian, nanosecond, pcapng, and a record cut short at the end
        # (which libpcap does not return) must all end, with every packet.
        pkts = [bytes(Ether(dst="02:00:00:00:00:02") / IP(src=f"192.0.2.{i + 1}", dst=VIP) /
                      TCP(sport=2000 + i, dport=80, flags="S")) for i in range(5)]
        files = {}
        path = os.path.join(self.tmp, "be-ns.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack(">IHHiIII", 0xa1b23c4d, 2, 4, 0, 0, 65535, 1))
            for i, b in enumerate(pkts):
                f.write(struct.pack(">IIII", i, 0, len(b), len(b)) + b)
            f.write(struct.pack(">IIII", 9, 0, 60, 60) + pkts[0][:20])  # truncated
        files[path] = len(pkts)
        try:
            from scapy.utils import PcapNgWriter
        except ImportError:
            PcapNgWriter = None
        if PcapNgWriter:
            path = os.path.join(self.tmp, "capture.pcapng")
            w = PcapNgWriter(path)
            for b in pkts[:3]:
                w.write(Ether(b))
            w.close()
            files[path] = 3
        for path, n in files.items():
            out = path + ".out.pcap"
            p = subprocess.run(dpdk("--shm", self.d.shm, "--pcap", f"{path}:{out}"),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(counters(p.stdout).get("rx_packets"), n, path)

    def test_startup_errors_are_one_line_and_an_exit_status(self):
        inp = os.path.join(self.tmp, "err.pcap")
        wrpcap(inp, [Ether() / IP(dst=VIP) / TCP(dport=80)])
        cases = [
            (dpdk("--shm", self.d.shm + "-none", "--wait-shm-ms", "200", "--pcap",
                  f"{inp}:{self.tmp}/e.pcap"), 1, "no shm segment"),
            (dpdk("--shm", self.d.shm, "--pcap", f"{self.tmp}/missing.pcap:{self.tmp}/e.pcap"), 1,
             "missing.pcap"),
            (dpdk("--shm", self.d.shm, "--pcap", f"{self.d.config}:{self.tmp}/e.pcap"), 1,
             "not a pcap or pcapng file"),
            (dpdk("--pcap", inp), 2, "expected IN.pcap:OUT.pcap"),
            (dpdk("--pcap", f"{inp}:x.pcap", "--iface", "lo"), 2, "exclude each other"),
            (dpdk("--no-such-option"), 2, "no-such-option"),
        ]
        for args, status, text in cases:
            p = subprocess.run(args, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, status, p.stderr)
            last = p.stderr.strip().splitlines()[-1]
            self.assertTrue(last.startswith("sluice-dpdk: "), last)
            self.assertIn(text, last)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("ip"), "needs root and iproute2")
    def test_iface_on_a_veth_attaches_answers_pings_and_stops_on_sigterm(self):
        tag = f"sds{os.getpid() % 100000}"
        lbns, clns = f"{tag}-lb", f"{tag}-cl"
        lbif, clif = f"{tag}l", f"{tag}c"

        def ip(*args):
            subprocess.run(["ip", *args], check=True, timeout=30, capture_output=True)

        proc = None
        try:
            ip("netns", "add", lbns)
            ip("netns", "add", clns)
            ip("link", "add", lbif, "type", "veth", "peer", "name", clif)
            ip("link", "set", lbif, "netns", lbns)
            ip("link", "set", clif, "netns", clns)
            ip("-n", lbns, "link", "set", lbif, "up")
            ip("-n", clns, "link", "set", clif, "up")
            ip("-n", lbns, "addr", "add", "10.0.0.2/24", "dev", lbif)
            ip("-n", clns, "addr", "add", "10.0.0.1/24", "dev", clif)
            ip("-n", clns, "route", "add", f"{VIP}/32", "via", "10.0.0.2")
            # The LB's kernel sees the af_packet port's frames too: it must
            # not route VIP packets (docs/testing.md).
            subprocess.run(["ip", "netns", "exec", lbns, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                           check=True, timeout=30)

            proc = subprocess.Popen(["ip", "netns", "exec", lbns,
                                     *dpdk("--shm", self.d.shm, "--iface", lbif, "--workers", "2")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # `ip netns exec` execs the command: same pid.
            wait_for(lambda: proc.poll() is not None or
                     len([w for w in self.d.workers(proc.pid) if w["state"] == "live"]) == 2,
                     60, "two live dpdk workers in `sluicectl status`")
            self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
            names = sorted(w["name"] for w in self.d.workers(proc.pid))
            self.assertEqual(names, [f"dpdk {lbif} q0", f"dpdk {lbif} q1"])

            # Echo requests to a VIP are sluice-dpdk's to answer (decide.h:
            # SLUICE_ACT_ECHO): the LB's kernel does not hold the VIP and
            # does not forward, so every reply is sluice-dpdk's, one each.
            ping = subprocess.run(["ip", "netns", "exec", clns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "5",
                                   VIP], capture_output=True, text=True, timeout=60)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, 0, stderr)
            self.assertIn("signal 15: stopping", stderr)
            self.assertRegex(stderr, rf"port 0 \(net_af_packet0, net_af_packet\): 2 rx/2 tx queues; "
                                     rf"RSS: .*; TX IPv4 checksum: (offload|software)")
            c = counters(stdout)
            self.assertEqual(ping.returncode, 0, f"ping {VIP}:\n{ping.stdout}{ping.stderr}\n{stdout}")
            self.assertRegex(ping.stdout, r"\b3 packets transmitted, 3 received\b", ping.stdout)
            self.assertNotIn("DUP!", ping.stdout, "an echo request answered twice (the LB's kernel too?)")
            self.assertEqual(len(re.findall(rf"^\d+ bytes from {re.escape(VIP)}: icmp_seq=[123] ", ping.stdout,
                                            re.M)), 3, ping.stdout)
            # The three requests ping sent, each answered once, by the
            # dataplane: no more (a reply counted twice, or an echo it did
            # not send), no fewer (a request it lost or left to the kernel).
            self.assertEqual(c.get("icmp_echo_replied"), 3, stdout)
            # Those three, plus whatever ARP came by.
            self.assertGreaterEqual(c.get("rx_packets", 0), 3, stdout)
            self.assertEqual([w["state"] for w in self.d.workers(proc.pid)], ["stopped", "stopped"])
        finally:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
            for ns in (lbns, clns):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("dpdk_smoke_test", [sys.argv[0]] + sys.argv[3:])
