#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluice-dpdk with many workers, as on a 16-core server, on this machine.

For 1, 5, 8 and 16 workers (lcores mapped onto the CPUs there are), each run
against a fresh sluiced: a net_pcap data port with one rx_pcap file per
queue (so worker q receives exactly file q: its own flows), forwarded
traffic into net_null, and the exception TAP that EAL mode always makes,
inside a network namespace of the test's. Each file holds VIP_PER_QUEUE
packets of distinct flows to the VIP and KERNEL_PER_QUEUE packets for the
box itself. Asserted, exactly:
- it starts (DPDK 22.11's net_tap cannot take a queue per worker beyond 4:
  it once smashed its stack at 5 workers) and exits 0 on SIGTERM;
- every worker's own record counts its file: rx, tx (forwarded), new flows
  and kernel-bound packets;
- the TAP's kernel side received every kernel-bound packet of every worker;
- the totals sluice-dpdk prints agree.
Root (TAP, namespaces); exits 77 (skipped) otherwise. No hugepages; every
wait is bounded and the namespace is removed whatever happens.

usage: dpdk_workers_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from scapy.all import IP, TCP, Ether, wrpcap  # python3-scapy

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
      - address: 10.0.0.13
"""
VIP_PER_QUEUE = 40
KERNEL_PER_QUEUE = 3
CLIENT_MAC, PORT_MAC = "02:00:00:00:00:01", "02:70:63:61:70:00"


counters = sluiced.exit_counters


def write_queue_file(path, q):
    """Queue q's traffic: VIP flows from 10.9.q.0/24, and TCP to the LB's own
    address (not a VIP: for the kernel), each flow its own."""
    pkts = [Ether(src=CLIENT_MAC, dst=PORT_MAC) / IP(src=f"10.9.{q}.{i + 1}", dst=VIP) /
            TCP(sport=10000 + i, dport=80, flags="S") for i in range(VIP_PER_QUEUE)]
    pkts += [Ether(src=CLIENT_MAC, dst=PORT_MAC) / IP(src=f"10.9.{q}.200", dst="10.0.0.2") /
             TCP(sport=20000 + i, dport=22, flags="S") for i in range(KERNEL_PER_QUEUE)]
    wrpcap(path, pkts)


def lcore_map(workers):
    """Lcore 0 on the first CPU we may use, every worker on the second (or the
    same one on a 1-CPU box): how a 16-worker start runs on 2 CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    main, rest = cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]
    return f"0@{main},(1-{workers})@{rest}" if workers > 1 else f"0@{main},1@{rest}"


class ManyWorkers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-dpdk-workers-")
        cls.ns = f"sluice-wk-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", cls.ns], check=True)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["ip", "netns", "del", cls.ns], check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tap_rx_packets(self, tap):
        p = subprocess.run(["ip", "netns", "exec", self.ns, "cat", f"/sys/class/net/{tap}/statistics/rx_packets"],
                           capture_output=True, text=True)
        return int(p.stdout) if p.returncode == 0 and p.stdout.strip() else None

    def run_workers(self, workers):
        tmp = os.path.join(self.tmp, f"w{workers}")
        os.makedirs(tmp)
        d = sluiced.Sluiced(BUILD, tmp, f"wk{workers}", config_text=CONFIG, worker_timeout_ms=5000)
        proc = None
        try:
            files = []
            for q in range(workers):
                files.append(os.path.join(tmp, f"q{q}.pcap"))
                write_queue_file(files[-1], q)
            tap = f"slwk{workers}"
            vdev = "net_pcap0," + ",".join(f"rx_pcap={f}" for f in files)
            args = ["ip", "netns", "exec", self.ns, os.path.join(BUILD, "dataplane/sluice-dpdk"),
                    "--shm", d.shm, "--tap", tap, "--tx-port", "net_null0", "--workers", str(workers),
                    "--mbufs", "2048", "--ct-entries", "4096", "--",
                    "--no-huge", "-m", "1024", "--no-shconf", "--no-pci", "--no-telemetry",
                    "--file-prefix", f"sluice-wk-{os.getpid()}-{workers}",
                    "--lcores", lcore_map(workers), "--vdev", vdev, "--vdev", "net_null0,no-rx=1"]
            out_path, err_path = os.path.join(tmp, "dpdk.out"), os.path.join(tmp, "dpdk.err")
            with open(out_path, "w") as out, open(err_path, "w") as err:
                proc = subprocess.Popen(args, stdout=out, stderr=err)

            def log():
                with open(err_path) as f:
                    return f.read()

            def mine():
                return sorted((w for w in d.json("status")["workers"] if w["pid"] == proc.pid),
                              key=lambda w: w["queue"])

            def done():
                if proc.poll() is not None:
                    raise AssertionError(f"sluice-dpdk --workers {workers} exited {proc.returncode}:\n{log()}")
                ws = mine()
                return (len(ws) == workers and
                        sum(w["counters"]["rx_packets"] for w in ws) == workers * (VIP_PER_QUEUE + KERNEL_PER_QUEUE) and
                        self.tap_rx_packets(tap) == workers * KERNEL_PER_QUEUE)

            try:
                wait_for(done, 60, f"{workers} workers to take in every file and the TAP every kernel packet",
                         step=0.2)
            except AssertionError as e:
                raise AssertionError(f"{e}\nrecords: {[(w['queue'], w['counters']['rx_packets']) for w in mine()]}"
                                     f" TAP rx: {self.tap_rx_packets(tap)}\n{log()}") from None
            ws = mine()
            self.assertEqual([w["queue"] for w in ws], list(range(workers)))
            for w in ws:
                c = w["counters"]
                # Worker q read file q and nothing else: its own counts.
                self.assertEqual((c["rx_packets"], c["tx_packets"], c["conn_new"], c["pass_not_vip"]),
                                 (VIP_PER_QUEUE + KERNEL_PER_QUEUE, VIP_PER_QUEUE, VIP_PER_QUEUE,
                                  KERNEL_PER_QUEUE), f"worker {w['queue']} of {workers}")
                self.assertEqual(c["drop_exception_full"], 0)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            self.assertEqual(proc.returncode, 0, log())
            with open(out_path) as f:
                total = counters(f.read())
            self.assertEqual((total["rx_packets"], total["tx_packets"], total["pass_not_vip"]),
                             (workers * (VIP_PER_QUEUE + KERNEL_PER_QUEUE), workers * VIP_PER_QUEUE,
                              workers * KERNEL_PER_QUEUE))
            self.assertNotIn("stack smashing", log())
            # It says how it reaches the TAP with this many workers.
            self.assertIn(f"TAP {tap} (1 queue pair)", log())
        finally:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            d.stop()

    def test_64_workers_on_af_packet(self):
        """The most a segment takes (SLUICE_MAX_WORKERS), as --iface starts
        them: a veth in the test's namespace, 2,048 flows sent from its peer;
        the kernel's fanout hash spreads them over the 64 queues."""
        workers, flows = 64, 2048
        tmp = os.path.join(self.tmp, "af64")
        os.makedirs(tmp)
        d = sluiced.Sluiced(BUILD, tmp, "af64", config_text=CONFIG, worker_timeout_ms=5000)
        proc = None
        nsx = ["ip", "netns", "exec", self.ns]
        try:
            for cmd in (["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                        ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                        ["sysctl", "-qw", "net.ipv4.ip_forward=0"],
                        ["ip", "link", "add", "wk64a", "address", PORT_MAC, "type", "veth", "peer", "name", "wk64b"],
                        ["ip", "link", "set", "wk64a", "up"], ["ip", "link", "set", "wk64b", "up"]):
                subprocess.run(nsx + cmd, check=True)
            err_path = os.path.join(tmp, "dpdk.err")
            with open(os.path.join(tmp, "dpdk.out"), "w") as out, open(err_path, "w") as err:
                proc = subprocess.Popen(nsx + [os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", d.shm,
                                               "--iface", "wk64a", "--workers", str(workers), "--mbufs", "2048",
                                               "--ct-entries", "4096"], stdout=out, stderr=err)

            def log():
                with open(err_path) as f:
                    return f.read()

            def mine():
                if proc.poll() is not None:
                    raise AssertionError(f"sluice-dpdk --iface --workers {workers} exited {proc.returncode}:\n{log()}")
                return [w for w in d.json("status")["workers"] if w["pid"] == proc.pid and w["state"] == "live"]

            wait_for(lambda: len(mine()) == workers, 60, f"{workers} live workers", step=0.2)
            script = os.path.join(tmp, "send.py")
            with open(script, "w") as f:
                f.write("from scapy.all import *\n"
                        f"pk = [Ether(src='{CLIENT_MAC}', dst='{PORT_MAC}') / IP(src=f'10.8.{{i // 256}}.{{i % 256}}', dst='{VIP}')"
                        f" / TCP(sport=40000, dport=80, flags='S') for i in range({flows})]\n"
                        "sendp(pk, iface='wk64b', verbose=False)\n")
            subprocess.run(nsx + ["/usr/bin/python3", script], check=True, timeout=120)

            def vip_packets():
                return [v for v in d.json("stats")["vips"] if v["vip"] == f"{VIP}:80/tcp"][0]["packets"]
            wait_for(lambda: vip_packets() == flows, 60, f"all {flows} packets forwarded", step=0.2)
            ws = mine()
            self.assertEqual(len(ws), workers)
            idle = [w["queue"] for w in ws if w["counters"]["conn_new"] == 0]
            self.assertEqual(idle, [], "workers that got no flow")
            self.assertEqual(sum(w["counters"]["conn_new"] for w in ws), flows)
            self.assertEqual(sum(w["counters"]["tx_packets"] for w in ws), flows)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            self.assertEqual(proc.returncode, 0, log())
        finally:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            subprocess.run(nsx + ["ip", "link", "del", "wk64a"], check=False, capture_output=True)
            d.stop()

    def test_1_worker(self):
        self.run_workers(1)

    def test_5_workers(self):
        self.run_workers(5)

    def test_8_workers(self):
        self.run_workers(8)

    def test_16_workers(self):
        self.run_workers(16)


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.require_root("dpdk_workers_test", "a TAP, a network namespace")
    testmain.main("dpdk_workers_test", [sys.argv[0]] + sys.argv[3:])
