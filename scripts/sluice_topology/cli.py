# SPDX-License-Identifier: Apache-2.0
"""A sluice network on one machine, in network namespaces (root, Debian 12).

    scripts/topology up [--dataplane xdp|dpdk] [--backends N] [-- COMMAND ...]
    scripts/topology down [--prefix P] [--all]
    scripts/topology demo [--dataplane auto|xdp|dpdk]   (what scripts/demo runs)

`up` builds the network below, starts sluiced and one dataplane in `lb`, a
web server and a UDP echo on every backend, prints how to reach it, then runs
COMMAND (with SLUICE_* variables describing the network in its environment)
or waits for Ctrl-C, and tears everything down. `down` removes what a killed
run left behind: namespaces, processes in them, the bpffs mount, the
shared-memory segment, DPDK runtime directories (only runs whose owner is
gone, unless --all).

Everything is named PREFIX-PID (default prefix sluice-e2e) and every wait
is bounded; the CLI tears down on exit, SIGINT, SIGTERM and SIGHUP, and
`down` cleans up after runs that were killed outright.
"""
import argparse
import atexit
import os
import signal
import subprocess
import sys
import time

from . import network
from .addresses import HTTP_PORT, UDP_PORT, all_vips, vip4, vip6
from .agents import client_main, serve_main, tap_main
from .demo import demo
from .network import Topology, cleanup, leftovers
from .procs import say


def default_build():
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.environ.get("SLUICE_BUILD") or os.path.join(source, os.environ.get("BUILD_DIR", "build"))


def default_dataplane():
    """xdp where this kernel runs it natively on a veth (it does here);
    sluice-dpdk --iface otherwise."""
    return "xdp"


class Guard:
    """Tears the topology down on exit, SIGINT and SIGTERM."""

    def __init__(self, topo):
        self.topo = topo
        atexit.register(topo.down)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.on_signal)

    def on_signal(self, sig, _frame):
        say(f"topology: signal {sig}: tearing down")
        self.topo.down()
        os._exit(128 + sig)


def cmd_up(a):
    topo = Topology(a.build, dataplane=a.dataplane, backends=a.backends, prefix=a.prefix)
    Guard(topo)
    topo.up()
    topo.start_sluice(topo.config_yaml(backends=topo.backends[:a.backends]))
    env = dict(os.environ,
               SLUICE_TAG=topo.tag, SLUICE_SOCKET=topo.sock, SLUICE_SHM=topo.shm,
               SLUICE_NS_CLIENT=topo.ns["client"], SLUICE_NS_LB=topo.ns["lb"],
               SLUICE_NS_BACKENDS=" ".join(topo.ns[b] for b in topo.backends),
               SLUICE_VIPS=" ".join(all_vips()[0] + all_vips()[1]), SLUICE_RUN_DIR=topo.run_dir,
               SLUICECTL=f"{topo.exe('controlplane/sluicectl/sluicectl')} --socket {topo.sock}")
    say(f"""
topology {topo.tag} is up: sluiced + sluice-{topo.dataplane} in {topo.ns['lb']}, {len(topo.backends)} backends.
  {env['SLUICECTL']} status
  ip netns exec {topo.ns['client']} curl -s http://{vip4('ipip')}/        # IPIP
  ip netns exec {topo.ns['client']} curl -s http://[{vip6('gue')}]/    # GUE over IPv6
  ip netns exec {topo.ns['client']} curl -s http://{vip4('l2dsr')}/        # L2 DSR
  logs: {topo.run_dir}/log/""")
    if a.command:
        rc = subprocess.call(a.command, env=env)
    else:
        say(f"Ctrl-C (or {a.hold}s) tears it down.")
        try:
            time.sleep(a.hold)
        except KeyboardInterrupt:
            pass
        rc = 0
    topo.down()
    return rc


def cmd_down(a):
    tags = leftovers(a.prefix, a.all)
    for t in tags:
        cleanup(t)
        say(f"topology: removed {t}")
    if not tags:
        say(f"topology: nothing left of {a.prefix}-*")
    return 0


def cmd_demo(a):
    topo = Topology(a.build, dataplane="dpdk" if a.dataplane == "auto" else a.dataplane, backends=3,
                    prefix="sluice-demo", check_interval_ms=500, quiet=True)
    Guard(topo)
    return demo(topo, auto=a.dataplane == "auto")


def main(argv):
    ap = argparse.ArgumentParser(prog="topology", description=__doc__ + "\n" + network.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    # serve, client and tap are the agents the network starts in its
    # namespaces (agents.py), not for users: left out of the verbs listed,
    # and given no help, which argparse would print as ==SUPPRESS==.
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{up,down,demo}")
    up = sub.add_parser("up", help="build the network, run sluice on it, then COMMAND or wait; tear down")
    up.add_argument("--dataplane", choices=("xdp", "dpdk"), default=default_dataplane())
    up.add_argument("--backends", type=int, default=3)
    up.add_argument("--prefix", default="sluice-e2e")
    up.add_argument("--hold", type=float, default=3600, help="seconds to wait without COMMAND")
    up.add_argument("--build", default=default_build())
    up.add_argument("command", nargs=argparse.REMAINDER)
    dn = sub.add_parser("down", help="remove what runs whose owner is gone left behind")
    dn.add_argument("--prefix", default="sluice-e2e")
    dn.add_argument("--all", action="store_true", help="also runs whose owner is alive")
    de = sub.add_parser("demo", help="the demo (scripts/demo)")
    de.add_argument("--dataplane", choices=("auto", "xdp", "dpdk"), default="auto",
                    help="auto: sluice-dpdk, or sluice-xdp where sluice-dpdk does not start")
    de.add_argument("--build", default=default_build())
    sv = sub.add_parser("serve")
    sv.add_argument("--name", required=True)
    sv.add_argument("--http", type=int, default=HTTP_PORT)
    sv.add_argument("--udp", type=int, default=UDP_PORT)
    sv.add_argument("--udp-addr", nargs="*", default=[])
    sub.add_parser("client")
    tp = sub.add_parser("tap")
    tp.add_argument("--iface", required=True)
    a = ap.parse_args(argv)
    if a.cmd in ("up", "down", "demo") and os.geteuid() != 0:
        sys.exit("topology: run as root (namespaces, XDP, bpffs)")
    if a.cmd == "up":
        if a.command and a.command[0] == "--":
            a.command = a.command[1:]
        return cmd_up(a)
    if a.cmd == "down":
        return cmd_down(a)
    if a.cmd == "demo":
        return cmd_demo(a)
    if a.cmd == "serve":
        return serve_main(a)
    if a.cmd == "client":
        return client_main(a)
    if a.cmd == "tap":
        return tap_main(a)
    return 2
