#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the XDP tests (tests/xdp/xdp_*_test.py): a real sluiced,
sluice-xdp processes, and a topology of network namespaces joined by veth
pairs and bridges. Everything is named with the test's pid, every wait is
bounded, and teardown removes namespaces, mounts and processes even after
a failure.

Topology (Topology.build()):

    cli ──c0── rc ┐                          ┌ rb1 ──b0── be1  (10.1.0.11, fd01::11; VIPs on lo)
                  ├ brl (router R) brb ──────┤
    lb  ──l0── rl ┘  10.0.0.1      10.1.0.1  └ rb2 ──b0── be2  (10.1.0.12, fd01::12)
     10.0.0.2, fd00::2 (sluiced, sluice-xdp)
    client 10.0.0.100, fd00::100: VIP routes via the LB; the router forwards
    the LB's tunnels to the backends and the backends' replies to the client.
"""
import atexit
import os
import re
import signal
import subprocess
import sys

import sluiced

BUILD = SOURCE = None
PY = "/usr/bin/python3"  # has python3-scapy; the pyenv python3 on PATH does not


# Teardowns still owed, run at exit too: a test killed by meson's timeout
# (SIGTERM) must not leave namespaces, mounts or processes behind.
_cleanups = []


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep tearing down the rest
            print(f"cleanup: {e}", file=sys.stderr)


def _interrupted(*_):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM")


def init(argv):
    """BUILD_DIR SOURCE_DIR from the command line; the rest goes to unittest."""
    global BUILD, SOURCE
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} BUILD_DIR SOURCE_DIR [unittest args]")
    BUILD, SOURCE = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    sys.path.insert(0, os.path.join(SOURCE, "tests", "fixtures"))
    atexit.register(_run_cleanups)
    # unittest reports SystemExit in a test and goes on; KeyboardInterrupt
    # ends the run, and the teardowns above still happen at exit.
    signal.signal(signal.SIGTERM, _interrupted)
    return [argv[0]] + argv[3:]


def exe(rel):
    return os.path.join(BUILD, rel)


def is_root():
    return os.geteuid() == 0




def run(*args, ns=None, check=True, timeout=60, input=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


counters = sluiced.exit_counters


class Proc:
    """A background process (optionally in a namespace) with its log in a file."""

    def __init__(self, args, log, ns=None, stdin=None, stdout=None):
        self.args = [str(a) for a in args]
        self.logpath = log
        self.log = open(log, "a")
        cmd = (["ip", "netns", "exec", ns] if ns else []) + self.args
        self.proc = subprocess.Popen(cmd, stdout=stdout or self.log, stderr=self.log,
                                     stdin=stdin, text=True)
        _cleanups.append(lambda: self.stop(signal.SIGKILL, timeout=5))

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        with open(self.logpath) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the process (ip netns exec passes it on: it execs) and waits."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


class Sluiced(sluiced.Sluiced):
    """A real sluiced on its own socket, state dir and shm segment, stopped
    at exit too."""

    def __init__(self, tmp, config_text, ns=None, tag="xdp"):
        super().__init__(BUILD, tmp, tag, config_text=config_text, netns=ns, worker_timeout_ms=1000,
                         start=False)
        _cleanups.append(self.stop)
        self.start()


class BpfMount:
    """A bpffs outside /sys: `ip netns exec` remounts /sys, and pins made
    under it vanish with the command (docs/testing.md)."""

    def __init__(self):
        self.path = f"/run/sluice-test-bpf-{os.getpid()}"
        os.makedirs(self.path, exist_ok=True)
        run("mount", "-t", "bpf", "bpf", self.path)
        _cleanups.append(self.close)

    def close(self):
        if not os.path.isdir(self.path):
            return
        run("umount", self.path, check=False)
        try:
            os.rmdir(self.path)
        except OSError:
            pass


class Topology:
    """Namespaces cli, lb, R (router + bridges), be1, be2 (see the module doc)."""

    GW_MAC = "02:00:00:00:01:01"  # the router's LAN side: node.gateway_mac
    LB4, LB6 = "10.0.0.2", "fd00::2"
    CLI4, CLI6 = "10.0.0.100", "fd00::100"
    BE = {"be1": ("10.1.0.11", "fd01::11"), "be2": ("10.1.0.12", "fd01::12")}

    def __init__(self, vips4=(), vips6=()):
        p = os.getpid() % 100000
        self.ns = {n: f"sx{p}-{n}" for n in ("cli", "lb", "r", "be1", "be2")}
        self.vips4, self.vips6 = list(vips4), list(vips6)
        self.built = []

    def sh(self, ns, *args, check=True):
        return run(*args, ns=self.ns[ns] if ns else None, check=check)

    def build(self):
        ns = self.ns
        _cleanups.append(self.teardown)
        for n in ns.values():
            run("ip", "netns", "add", n)
            self.built.append(n)
            run("ip", "-n", n, "link", "set", "lo", "up")
        r = ns["r"]
        # veth pairs: (namespace, inner name, router-side name)
        for name, inner, outer in (("cli", "c0", "rc"), ("lb", "l0", "rl"), ("be1", "b0", "rb1"),
                                   ("be2", "b0", "rb2")):
            tmp_in = f"t{os.getpid() % 100000}{outer}"
            run("ip", "link", "add", tmp_in, "type", "veth", "peer", "name", f"{tmp_in}p")
            run("ip", "link", "set", tmp_in, "netns", ns[name])
            run("ip", "link", "set", f"{tmp_in}p", "netns", r)
            run("ip", "-n", ns[name], "link", "set", tmp_in, "name", inner)
            run("ip", "-n", r, "link", "set", f"{tmp_in}p", "name", outer)
            # 1600 on the LB and backend links: an encapsulated full-size
            # packet is 1520 bytes (docs/testing.md: XDP_TX is limited to the
            # peer's MTU + 18). The client keeps 1500.
            mtu = "1500" if name == "cli" else "1600"
            run("ip", "-n", ns[name], "link", "set", inner, "mtu", mtu, "up")
            run("ip", "-n", r, "link", "set", outer, "mtu", "1600", "up")
        for br, ports, a4, a6, mac in (("brl", ("rc", "rl"), "10.0.0.1/24", "fd00::1/64", self.GW_MAC),
                                       ("brb", ("rb1", "rb2"), "10.1.0.1/24", "fd01::1/64", None)):
            run("ip", "-n", r, "link", "add", br, "type", "bridge")
            if mac:
                run("ip", "-n", r, "link", "set", br, "address", mac)
            for prt in ports:
                run("ip", "-n", r, "link", "set", prt, "master", br)
            run("ip", "-n", r, "link", "set", br, "mtu", "1600", "up")
            run("ip", "-n", r, "addr", "add", a4, "dev", br)
            run("ip", "-n", r, "addr", "add", a6, "dev", br, "nodad")
        for k, v in (("net.ipv4.ip_forward", 1), ("net.ipv6.conf.all.forwarding", 1),
                     ("net.ipv4.conf.all.rp_filter", 0), ("net.ipv4.conf.default.rp_filter", 0)):
            run("sysctl", "-qw", f"{k}={v}", ns=r)
        # The router sends VIP traffic to the LB, as BGP would have it.
        run("ip", "-n", r, "route", "add", "10.200.0.0/16", "via", self.LB4)
        run("ip", "-n", r, "-6", "route", "add", "fd00:200::/64", "via", self.LB6)
        # The LB's far side runs an XDP program, or XDP_TX frames are lost.
        run("ip", "-n", r, "link", "set", "dev", "rl", "xdp", "obj", exe("xdp/pass.bpf.o"), "sec", "xdp")

        c = ns["cli"]
        run("ip", "-n", c, "addr", "add", f"{self.CLI4}/24", "dev", "c0")
        run("ip", "-n", c, "addr", "add", f"{self.CLI6}/64", "dev", "c0", "nodad")
        run("ip", "-n", c, "route", "add", "10.200.0.0/16", "via", self.LB4)
        run("ip", "-n", c, "-6", "route", "add", "fd00:200::/64", "via", self.LB6)
        run("ip", "-n", c, "route", "add", "default", "via", "10.0.0.1")
        run("ip", "-n", c, "-6", "route", "add", "default", "via", "fd00::1")
        # Forwarded bytes lose the "checksum pending" mark (docs/testing.md).
        run("ethtool", "-K", "c0", "tx", "off", ns=c)

        lb = ns["lb"]
        run("ip", "-n", lb, "addr", "add", f"{self.LB4}/24", "dev", "l0")
        run("ip", "-n", lb, "addr", "add", f"{self.LB6}/64", "dev", "l0", "nodad")
        run("ip", "-n", lb, "route", "add", "default", "via", "10.0.0.1")
        run("ip", "-n", lb, "-6", "route", "add", "default", "via", "fd00::1")
        run("sysctl", "-qw", "net.ipv4.ip_forward=0", ns=lb)
        run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0", ns=lb)

        for be, (a4, a6) in self.BE.items():
            n = ns[be]
            run("ip", "-n", n, "addr", "add", f"{a4}/24", "dev", "b0")
            run("ip", "-n", n, "addr", "add", f"{a6}/64", "dev", "b0", "nodad")
            run("ip", "-n", n, "route", "add", "default", "via", "10.1.0.1")
            run("ip", "-n", n, "-6", "route", "add", "default", "via", "fd01::1")
            for v in self.vips4:
                run("ip", "-n", n, "addr", "add", f"{v}/32", "dev", "lo")
            for v in self.vips6:
                run("ip", "-n", n, "addr", "add", f"{v}/128", "dev", "lo", "nodad")
            # docs/xdp.md's backend set-up: the VIP is answered for, never
            # announced, and strict reverse-path filtering still passes.
            for k, v in (("net.ipv4.conf.all.arp_ignore", 1), ("net.ipv4.conf.all.arp_announce", 2),
                         ("net.ipv4.conf.all.rp_filter", 1), ("net.ipv4.conf.b0.rp_filter", 1)):
                run("sysctl", "-qw", f"{k}={v}", ns=n)
        return self

    def teardown(self):
        for n in reversed(self.built):
            for pid in run("ip", "netns", "pids", n, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", n, check=False)
        self.built = []
