#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Nodes agree (root, for sluice-xdp --pcap): three sluiced given the same
configuration three ways show the same table digest per VIP, and their
dataplanes send every flow to the same backend.

- A: started empty, then `sluicectl apply -f FILE`;
- B: started empty, then built up with `vip add` / `backend add` /
  `backend set` in another order (so its VIP and backend ids differ);
- C: started with `--config FILE`, then killed (SIGKILL) and started again
  from its state directory.

Their digests (`status --json`, `/metrics`) must be equal per VIP and differ
between VIPs. Then a capture of 100,000 new TCP flows (SYNs, from distinct
clients, over both VIPs) goes through `sluice-dpdk --pcap` on A and on B and
through `sluice-xdp --pcap` (the XDP program) on C: every flow comes out of
all three, encapsulated to the same backend, and every backend gets some.

usage: digest_e2e.py BUILD_DIR SOURCE_DIR
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

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
sys.path.insert(0, os.path.join(TESTS, "fixtures"))
import testmain  # noqa: E402
import xdp_util as U  # noqa: E402
from pcapfile import read_pcap, write_pcap  # noqa: E402
from sluiced import Sluiced  # noqa: E402

FLOWS = 100_000
# gateway_mac: next hops need no kernel lookup, so every backend is in its
# table from the first snapshot on all three.
CONFIG = """node:
  source_ipv4: 10.0.0.2
  gateway_mac: 02:00:00:00:00:fe
vips:
  - address: 10.200.1.1
    port: 80
    protocol: tcp
    ring_size: 65537
    backends:
      - address: 10.1.0.11
      - address: 10.1.0.12
      - address: 10.1.0.13
        weight: 50
      - address: 10.1.0.14
        weight: 200
  - address: 10.200.1.2
    port: 443
    protocol: tcp
    ring_size: 4093
    backends:
      - address: 10.1.0.21
      - address: 10.1.0.22
      - address: 10.1.0.23
"""
VIPS = [("10.200.1.1", 80), ("10.200.1.2", 443)]
BACKENDS = {"10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14", "10.1.0.21", "10.1.0.22", "10.1.0.23"}


def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(i):
    """Flow i: client 172.16.0.0/12 + i, source port from i, to one VIP."""
    vip, port = VIPS[i % 2]
    src = bytes([172, 16 + (i >> 16) % 16, (i >> 8) & 0xFF, i & 0xFF])
    sport = 1024 + (i * 7919) % 60000
    tcp = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src,
                               bytes(int(x) for x in vip.split("."))))
    struct.pack_into("!H", ip, 10, csum(bytes(ip)))
    eth = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"
    return eth + bytes(ip) + tcp


def backends_by_flow(frames):
    """{(client, sport, vip, port): backend} of IPIP frames sluice sent."""
    out = {}
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[14 + 9] != 4:
            continue  # not IPv4-in-IPv4
        outer_dst = ".".join(map(str, f[30:34]))
        inner = 34
        ihl = (f[inner] & 0xF) * 4
        src = ".".join(map(str, f[inner + 12:inner + 16]))
        dst = ".".join(map(str, f[inner + 16:inner + 20]))
        sport, dport = struct.unpack_from("!HH", f, inner + ihl)
        out[(src, sport, dst, dport)] = outer_dst
    return out


@unittest.skipUnless(U.is_root(), "sluice-xdp --pcap runs BPF_PROG_TEST_RUN (root)")
class NodesAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-digest-")
        cls.cfg = os.path.join(cls.tmp, "config.yaml")
        with open(cls.cfg, "w") as f:
            f.write(CONFIG)
        cls.nodes = {}
        try:
            a = cls.start("a", metrics=True)
            a.ok("apply", "-f", cls.cfg)

            b = cls.start("b", metrics=True)
            # Another order than the file: the second VIP first,
            # backends reversed, weights set afterwards.
            b.ok("apply", "-f", "-", stdin="node:\n  source_ipv4: 10.0.0.2\n  gateway_mac: 02:00:00:00:00:fe\n")
            b.ok("vip", "add", "10.200.1.2:443/tcp", "--ring-size", "4093")
            for be in ("10.1.0.23", "10.1.0.21", "10.1.0.22"):
                b.ok("backend", "add", "10.200.1.2:443/tcp", be)
            b.ok("vip", "add", "10.200.1.1:80/tcp")
            for be in ("10.1.0.14", "10.1.0.13", "10.1.0.12", "10.1.0.11"):
                b.ok("backend", "add", "10.200.1.1:80/tcp", be)
            b.ok("backend", "set", "10.200.1.1:80/tcp", "10.1.0.14", "--weight", "200")
            b.ok("backend", "set", "10.200.1.1:80/tcp", "10.1.0.13", "--weight", "50")

            c = cls.start("c", config=cls.cfg, metrics=True)
            c.kill(signal.SIGKILL)
            c.start()
            assert "restored the last acknowledged configuration" in c.log_text(), c.log_text()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls, name, **kw):
        s = Sluiced(U.BUILD, cls.tmp, name, start=False, **kw)
        cls.nodes[name] = s
        U._cleanups.append(s.stop)
        return s.start()

    @classmethod
    def tearDownClass(cls):
        U._run_cleanups()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def digests(self, node):
        return {v["vip"]: v["digest"] for v in node.json("status")["vips"]}

    def test_1_the_same_digests_in_status_and_metrics(self):
        d = {n: self.digests(s) for n, s in self.nodes.items()}
        print(f"\ndigests: {d['a']}", flush=True)
        self.assertEqual(sorted(d["a"]), ["10.200.1.1:80/tcp", "10.200.1.2:443/tcp"])
        self.assertEqual(d["a"], d["b"], "apply -f and verbs in another order")
        self.assertEqual(d["a"], d["c"], "apply -f and a restart from the state directory")
        self.assertNotEqual(d["a"]["10.200.1.1:80/tcp"], d["a"]["10.200.1.2:443/tcp"])
        for v in d["a"].values():
            self.assertRegex(v, r"^[0-9a-f]{16}$")
        # B's ids differ from A's: the digest does not depend on them.
        ids = {n: {v["vip"]: v["id"] for v in s.json("status")["vips"]} for n, s in self.nodes.items()}
        self.assertNotEqual(ids["a"], ids["b"])
        for n, s in self.nodes.items():
            m = dict(re.findall(r'^sluice_vip_table_info\{vip="([^"]+)",digest="([0-9a-f]+)"\} 1$', s.metrics(), re.M))
            self.assertEqual(m, d["a"], f"/metrics of {n}")
        # status prints it for people too.
        self.assertIn(f"digest {d['a']['10.200.1.1:80/tcp']}", self.nodes["b"].ok("status"))

    def test_2_every_flow_goes_to_the_same_backend_through_dpdk_dpdk_and_xdp(self):
        inp = os.path.join(self.tmp, "flows.pcap")
        write_pcap(inp, (syn(i) for i in range(FLOWS)))
        got = {}
        for name, exe in (("a", "dataplane/sluice-dpdk"), ("b", "dataplane/sluice-dpdk"), ("c", "xdp/sluice-xdp")):
            out = os.path.join(self.tmp, f"out-{name}.pcap")
            p = subprocess.run([U.exe(exe), "--shm", self.nodes[name].shm, "--pcap", f"{inp}:{out}"],
                               capture_output=True, text=True, timeout=240)
            self.assertEqual(p.returncode, 0, f"{exe} on {name}: {p.stderr}")
            got[name] = backends_by_flow(read_pcap(out))
            self.assertEqual(len(got[name]), FLOWS, f"{exe} on {name}: flows forwarded")
        self.assertEqual(set(got["a"].values()), BACKENDS, "every backend gets flows")
        for other in ("b", "c"):
            differ = [k for k in got["a"] if got["a"][k] != got[other].get(k)]
            self.assertEqual(len(differ), 0,
                             f"{len(differ)} flows to another backend on {other} than on a, e.g. {differ[:3]}")
        print(f"\n{FLOWS} flows: the same backend on all three (sluice-dpdk, sluice-dpdk, sluice-xdp)", flush=True)


if __name__ == "__main__":
    testmain.main("digest_e2e", U.init(sys.argv))
