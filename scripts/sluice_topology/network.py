# SPDX-License-Identifier: Apache-2.0
"""The network `up` builds (Topology), and the sluice processes on it:

                       ┌──────────── bridge namespace PREFIX-br (br0) ────────────┐
                       │ client(1500)  lb(1600, XDP_PASS)  be1 … beN (1600)       │
                       └────┬───────────────┬──────────────┬──────────────────────┘
  PREFIX-client             │   PREFIX-lb   │   PREFIX-beK │
  eth0 10.0.0.100-109       │   eth0 10.0.0.2, fd00::2     │  eth0 10.0.0.1K, fd00::1K
       fd00::100-109        │   sluiced, sluice-xdp or     │  lo: every VIP (arp_ignore=1,
  VIPs routed via 10.0.0.2 ─┘   sluice-dpdk --iface eth0   │      arp_announce=2)
  tx checksum offload off       ip_forward=0, VIPs         │  sluice-decap (IPIP, GUE),
                                blackholed in the kernel   │
                                                           │  L2 DSR needs nothing more;
                                                           │  HTTP :80 (/ and /slow), UDP echo :5353

VIPs, one address per mode: IPIP 10.200.1.1 / fd00:200::1, GUE 10.200.2.1 /
fd00:200::2, L2 DSR 10.200.3.1 / fd00:200::3; each has 80/tcp (IPv4 and
IPv6) and 5353/udp (IPv4). Backends answer clients directly (DSR).
In the bridge namespace a counter (`tap`) on the LB's port classifies what
the LB sends by encapsulation and inner destination, and what the bridge
hands the LB by VIP service; the client counts what it sends and who answers
from a VIP: the tests hold sluice's counters against all three.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

from .addresses import (CLIENT4, CLIENT6, GUE_PORT, HTTP_PORT, LB4, LB6, LB_MAC, MODES, UDP_PORT,
                        VIP_NET4, VIP_NET6, all_vips, backend4, backend6, backend_mac, vip4, vip6)
from .drive import AGENT, Client, Tap
from .procs import PY, Proc, proc_start_time, run, say, wait_for


class Topology:
    """The network of this module's docstring, and the sluice processes on it."""

    def __init__(self, build_dir, dataplane="xdp", backends=4, prefix="sluice-e2e", tag=None,
                 check_interval_ms=200, quiet=False):
        if dataplane not in ("xdp", "dpdk"):
            raise ValueError(f"dataplane {dataplane!r}: xdp or dpdk")
        self.build = os.path.abspath(build_dir)
        self.dataplane = dataplane
        self.nbackends = backends
        self.prefix = prefix
        self.tag = tag or f"{prefix}-{os.getpid()}"
        self.run_dir = f"/run/{self.tag}"
        self.bpf_dir = f"{self.run_dir}/bpf"
        self.sock = f"{self.run_dir}/sluiced.sock"
        self.state_dir = f"{self.run_dir}/state"
        self.shm = self.tag
        self.metrics_addr = "127.0.0.1:9300"  # inside the lb namespace
        self.check_interval_ms = check_interval_ms
        self.quiet = quiet
        self.backends = [f"be{i}" for i in range(1, backends + 1)]
        self.ns = {r: f"{self.tag}-{r}" for r in ("br", "client", "lb", *self.backends)}
        self.procs = {}       # name -> Proc
        self._log_start = {}  # backend -> size of its server's log when it was last started
        self.client = None
        self.tap = None
        self.sluiced = None
        self.dp = None
        self.dp_args = []     # more options for the dataplane (e.g. --ct-timeout-fin)
        self._made = []       # namespaces made
        self._mounted = False
        self._down = False

    # -- addresses
    def be_index(self, be):
        return self.backends.index(be) + 1

    def be4(self, be):
        return backend4(self.be_index(be))

    def be6(self, be):
        return backend6(self.be_index(be))

    def be_by_addr(self, addr):
        for be in self.backends:
            if addr in (self.be4(be), self.be6(be)):
                return be
        return None

    def exe(self, rel):
        return os.path.join(self.build, rel)

    def note(self, msg):
        if not self.quiet:
            say(f"topology: {msg}")

    # -- building
    def up(self, servers=True):
        """Builds the network, the bpffs mount and the backends' servers and
        decap programs. Undoes everything it did if any step fails."""
        for rel in ("controlplane/sluiced/sluiced", "controlplane/sluicectl/sluicectl",
                    "xdp/sluice-xdp", "xdp/pass.bpf.o", "dataplane/sluice-dpdk"):
            if not os.path.exists(self.exe(rel)):
                raise RuntimeError(f"{self.exe(rel)} is missing: build first (scripts/build)")
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            os.makedirs(f"{self.run_dir}/log", exist_ok=True)
            with open(f"{self.run_dir}/owner", "w") as f:
                json.dump({"pid": os.getpid(), "start": proc_start_time(os.getpid())}, f)
            self._network()
            os.makedirs(self.bpf_dir, exist_ok=True)
            run("mount", "-t", "bpf", "bpf", self.bpf_dir)
            self._mounted = True
            if servers:
                for be in self.backends:
                    self.start_server(be)
                    self.start_decap(be)
                for be in self.backends:
                    self.wait_server(be)
            self.client = Client(self)
            self.tap = Tap(self)
        except BaseException:
            self.down()
            raise
        return self

    def _network(self):
        t0 = time.monotonic()
        for n in self.ns.values():
            run("ip", "netns", "add", n)
            self._made.append(n)
            run("ip", "-n", n, "link", "set", "lo", "up")
        br = self.ns["br"]
        run("ip", "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        run("ip", "-n", br, "link", "set", "br0", "mtu", "1600", "up")
        ends = [("client", "1500", None), ("lb", "1600", LB_MAC)]
        ends += [(be, "1600", backend_mac(self.be_index(be))) for be in self.backends]
        for role, mtu, mac in ends:
            run("ip", "link", "add", "name", "eth0", "netns", self.ns[role],
                *(["address", mac] if mac else []), "mtu", mtu,
                "type", "veth", "peer", "name", role, "netns", br, "mtu", mtu)
            run("ip", "-n", br, "link", "set", role, "master", "br0")
            run("ip", "-n", br, "link", "set", role, "up")
            run("ip", "-n", self.ns[role], "link", "set", "eth0", "up")

        c = self.ns["client"]
        for a in CLIENT4:
            run("ip", "-n", c, "addr", "add", f"{a}/24", "dev", "eth0")
        for a in CLIENT6:
            run("ip", "-n", c, "addr", "add", f"{a}/64", "dev", "eth0", "nodad")
        run("ip", "-n", c, "route", "add", VIP_NET4, "via", LB4, "src", CLIENT4[0])
        run("ip", "-n", c, "-6", "route", "add", VIP_NET6, "via", LB6)
        # A veth hands on partial checksums; the LB forwards bytes, so the
        # backends would drop them (docs/testing.md). Real NICs deliver full ones.
        run("ethtool", "-K", "eth0", "tx", "off", ns=c)

        lb = self.ns["lb"]
        run("ip", "-n", lb, "addr", "add", f"{LB4}/24", "dev", "eth0")
        run("ip", "-n", lb, "addr", "add", f"{LB6}/64", "dev", "eth0", "nodad")
        # The kernel beside an af_packet port sees VIP packets too: it must
        # not route them (nor answer them with ICMP).
        for k in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
            run("sysctl", "-qw", k, ns=lb)
        # IPv6 answers a packet it has no route for with ICMPv6 "no route",
        # forwarding or not, which aborts the client's connection: the
        # kernel must drop VIP packets silently (blackhole; IPv4 too).
        run("ip", "-n", lb, "route", "add", "blackhole", VIP_NET4)
        run("ip", "-n", lb, "-6", "route", "add", "blackhole", VIP_NET6)

        v4, v6 = all_vips()
        for be in self.backends:
            n = self.ns[be]
            run("ip", "-n", n, "addr", "add", f"{self.be4(be)}/24", "dev", "eth0")
            run("ip", "-n", n, "addr", "add", f"{self.be6(be)}/64", "dev", "eth0", "nodad")
            for v in v4:
                run("ip", "-n", n, "addr", "add", f"{v}/32", "dev", "lo")
            for v in v6:
                run("ip", "-n", n, "addr", "add", f"{v}/128", "dev", "lo", "nodad")
            # The VIPs are answered, never announced; loose reverse-path
            # filtering (decapsulated packets arrive on eth0 anyway).
            for k in ("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                      "net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2",
                      "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.eth0.rp_filter=2",
                      "net.ipv4.conf.lo.rp_filter=0"):
                run("sysctl", "-qw", k, ns=n)
        self.note(f"network {self.tag}-* built in {time.monotonic() - t0:.1f}s "
                  f"({len(self.backends)} backends)")

    # -- backends
    def start_server(self, be):
        v4, _ = all_vips()
        args = [PY, AGENT, "serve", "--name", be, "--http", HTTP_PORT, "--udp", UDP_PORT,
                "--udp-addr", self.be4(be), *v4]
        log = f"{self.run_dir}/log/{be}-server.log"
        # The log is appended to: a restarted server's "ready" is the one after this.
        self._log_start[be] = os.path.getsize(log) if os.path.exists(log) else 0
        self.procs[f"{be}-server"] = Proc(args, log, ns=self.ns[be], cpu0=True)

    def wait_server(self, be):
        p = self.procs[f"{be}-server"]
        start = self._log_start.get(be, 0)
        wait_for(lambda: "ready" in p.text()[start:] or not p.alive(), 15, f"{be}'s servers")
        if not p.alive():
            raise RuntimeError(f"{be}'s servers did not start:\n{p.tail()}")

    def stop_server(self, be, sig=signal.SIGTERM):
        p = self.procs.pop(f"{be}-server", None)
        if p:
            p.stop(sig)

    def start_decap(self, be):
        p = Proc([self.exe("xdp/sluice-decap"), "--iface", "eth0", "--gue-port", GUE_PORT],
                 f"{self.run_dir}/log/{be}-decap.log", ns=self.ns[be])
        self.procs[f"{be}-decap"] = p
        wait_for(lambda: "decap attached" in p.text() or not p.alive(), 30, f"{be}'s decap program")
        if not p.alive():
            raise RuntimeError(f"sluice-decap on {be} failed:\n{p.tail()}")

    # -- sluice
    def config_yaml(self, backends=None, modes=MODES, interval_ms=None, rise=2, fall=2,
                    ipv6=True, udp=True):
        """sluiced's configuration: every mode's VIPs on `backends` (default
        the first three), TCP checks on 80 and UDP checks on 5353."""
        backends = backends or self.backends[:3]
        iv = interval_ms or self.check_interval_ms
        to = max(50, iv * 3 // 4)
        tcp_check = (f"{{ type: tcp, port: {HTTP_PORT}, interval_ms: {iv}, timeout_ms: {to}, "
                     f"rise: {rise}, fall: {fall} }}")
        udp_check = (f"{{ type: udp, port: {UDP_PORT}, interval_ms: {iv}, timeout_ms: {to}, "
                     f"rise: {rise}, fall: {fall}, send: health }}")
        out = [f"node:\n  source_ipv4: {LB4}\n  source_ipv6: {LB6}\nvips:"]

        def vip(addr, port, proto, mode, fam6, check):
            out.append(f"  - address: {addr}\n    port: {port}\n    protocol: {proto}\n"
                       f"    mode: {mode}\n" + (f"    gue_port: {GUE_PORT}\n" if mode == "gue" else "") +
                       "    backends:")
            for be in backends:
                out.append(f"      - address: {self.be6(be) if fam6 else self.be4(be)}\n"
                           f"        check: {check}")
        for m in modes:
            vip(vip4(m), HTTP_PORT, "tcp", m, False, tcp_check)
            if udp:
                vip(vip4(m), UDP_PORT, "udp", m, False, udp_check)
            if ipv6:
                vip(vip6(m), HTTP_PORT, "tcp", m, True, tcp_check)
        return "\n".join(out) + "\n"

    def start_sluice(self, config_text):
        """sluiced, then the dataplane; returns once the dataplane forwards."""
        with open(f"{self.run_dir}/sluice.yaml", "w") as f:
            f.write(config_text)
        self.start_sluiced()
        self.wait_backends_up()
        self.wait_next_hops()
        self.start_dataplane()
        return self

    def start_sluiced(self):
        log = f"{self.run_dir}/log/sluiced.log"
        self.sluiced = Proc([self.exe("controlplane/sluiced/sluiced"), "--config", f"{self.run_dir}/sluice.yaml",
                             "--shm", self.shm, "--socket", self.sock, "--state-dir", self.state_dir,
                             "--metrics", self.metrics_addr, "--worker-timeout-ms", "1000"],
                            log, ns=self.ns["lb"])
        self._remember_pid(self.sluiced.pid)
        wait_for(lambda: not self.sluiced.alive() or self.ctl("status", check=False)[0] == 0, 20,
                 "sluiced to answer")
        if not self.sluiced.alive():
            raise RuntimeError(f"sluiced did not start:\n{self.sluiced.tail()}")

    def kill_sluiced(self, sig=signal.SIGKILL):
        return self.sluiced.stop(sig)

    def start_dataplane(self, timeout=60, extra_args=()):
        """Starts the dataplane (with extra_args, e.g. sluice-xdp's
        --keep-attached) and returns once it forwards."""
        log = f"{self.run_dir}/log/{self.dataplane}.log"
        if self.dataplane == "xdp" and "prog/xdp" not in run("ip", "-d", "link", "show", "lb",
                                                             ns=self.ns["br"]).stdout:
            # A veth delivers what its peer sends with XDP_TX only when it
            # runs an XDP program itself.
            run("ip", "-n", self.ns["br"], "link", "set", "dev", "lb", "xdp", "obj",
                self.exe("xdp/pass.bpf.o"), "sec", "xdp")
        if self.dataplane == "xdp":
            args = [self.exe("xdp/sluice-xdp"), "--iface", "eth0", "--shm", self.shm, "--mode", "native",
                    "--pin-dir", f"{self.bpf_dir}/lb"]
        else:
            args = [self.exe("dataplane/sluice-dpdk"), "--shm", self.shm, "--iface", "eth0"]
        args += self.dp_args + list(extra_args)
        start = os.path.getsize(log) if os.path.exists(log) else 0
        self.dp = Proc(args, log, ns=self.ns["lb"])
        self._remember_pid(self.dp.pid)

        def ready():
            if not self.dp.alive():
                return True
            if self.dataplane == "xdp":
                return "attached in native mode" in self.dp.text()[start:]
            return any(w["pid"] == self.dp.pid and w["state"] == "live" for w in self.status()["workers"])
        wait_for(ready, timeout, f"sluice-{self.dataplane} to forward", step=0.02)
        if not self.dp.alive():
            raise RuntimeError(f"sluice-{self.dataplane} did not start:\n{self.dp.tail()}")
        return self.dp

    def pin_lb_napi(self):
        """sluice-xdp's connection table is per CPU, which relies on every
        packet of a flow reaching one CPU, as RSS gives on a NIC. A veth runs
        XDP in its NAPI poll, on whichever CPU scheduled it: the sender's
        CPU mostly, but the other one whenever something sent from there
        (a health check's answer, ARP, an ACK sent in softirq) has it
        running, and then a flow meets the other CPU's table, where a
        backend change since makes Maglev answer differently (seen: 5 of
        1,352 flows moved; a drained backend's closing FINs counted under
        the backends Maglev picks instead). Threaded NAPI pinned to CPU 0
        makes the LB's eth0 one queue served by one CPU. SCHED_FIFO, as a
        NIC's softirq outranks every process: a kthread at normal priority
        waits behind the machine's compilers, its 256-frame ring overflows,
        and datagrams are lost (seen: 168 of 80,010). The kthread is made
        with the XDP program's NAPI, so call this again after a start that
        re-attached (not after an in-place replace). No-op for sluice-dpdk."""
        if self.dataplane != "xdp":
            return
        run("sh", "-c", "echo 1 > /sys/class/net/eth0/threaded", ns=self.ns["lb"])

        def threads():
            out = run("ps", "-eo", "pid=,comm=").stdout.split("\n")
            return [ln.split()[0] for ln in out
                    if ln.split()[1:] and ln.split()[1].startswith("napi/eth0-")]
        # Only the LB's eth0 runs threaded NAPI (the backends' do not).
        for pid in wait_for(threads, 5, "the LB's NAPI thread"):
            run("taskset", "-p", "-c", "0", pid)
            run("chrt", "-f", "-p", "20", pid)

    def stop_dataplane(self, sig=signal.SIGTERM):
        return self.dp.stop(sig, timeout=30)

    def _remember_pid(self, pid):
        with open(f"{self.run_dir}/pids", "a") as f:
            f.write(f"{pid}\n")

    def ctl(self, *args, check=True, stdin=None):
        p = subprocess.run([self.exe("controlplane/sluicectl/sluicectl"), "--socket", self.sock,
                            "--wait-ms", "3000", *map(str, args)],
                           capture_output=True, text=True, timeout=30, input=stdin)
        if check and p.returncode != 0:
            raise RuntimeError(f"sluicectl {' '.join(map(str, args))}: {p.stderr.strip()}")
        return p.returncode, p.stdout, p.stderr

    def ctl_json(self, *args):
        return json.loads(self.ctl("--json", *args)[1])

    def status(self):
        return self.ctl_json("status")

    def stats(self):
        return self.ctl_json("stats")

    def metrics(self):
        p = run("curl", "-sf", "--max-time", "5", f"http://{self.metrics_addr}/metrics", ns=self.ns["lb"])
        return p.stdout

    def backend_states(self, svc=None):
        """{service: {backend name: state}} from `sluicectl status`."""
        out = {}
        for v in self.status()["vips"]:
            if svc and v["vip"] != svc:
                continue
            out[v["vip"]] = {self.be_by_addr(b["address"]) or b["address"]: b["state"] for b in v["backends"]}
        return out[svc] if svc else out

    def wait_backends_up(self, timeout=20):
        wait_for(lambda: all(s == "up" for v in self.backend_states().values() for s in v.values()),
                 timeout, "every backend up in `sluicectl status`", step=0.1)

    def link_stats(self, roles=("client", "br", "lb")):
        """{role: {ifname: stats64}}: the kernel's own counters of every
        interface in those namespaces (`ip -s -j link`)."""
        out = {}
        for role in roles:
            out[role] = {link["ifname"]: link.get("stats64", {})
                         for link in json.loads(run("ip", "-s", "-j", "link", "show", ns=self.ns[role]).stdout)
                         if link.get("ifname") != "lo"}
        return out

    @staticmethod
    def drops_of(stats):
        """Frames the kernel dropped on the way from the client to the LB,
        in link_stats(): the dropped counters of the client's, the bridge's
        and the LB's interfaces (veth queues, bridge ports)."""
        return sum(st.get("rx", {}).get("dropped", 0) + st.get("tx", {}).get("dropped", 0)
                   for links in stats.values() for st in links.values())

    def path_drops(self):
        return self.drops_of(self.link_stats())

    def wait_next_hops(self, timeout=10):
        """Every backend's next-hop MAC known: sluiced keeps a backend whose
        MAC is still unresolved in the Maglev table, and the dataplanes drop
        its packets (drop_no_nexthop) until the next resolution, up to 1 s."""
        wait_for(lambda: all(b.get("next_hop_mac") for v in self.status()["vips"] for b in v["backends"]),
                 timeout, "every backend's next-hop MAC in `sluicectl status`", step=0.05)

    # -- teardown
    def down(self):
        """Stops every process, deletes the namespaces, the bpffs mount, the
        segment and the run directory. Safe to call twice."""
        if self._down:
            return
        self._down = True
        for d in (self.client, self.tap):
            if d:
                d.close()
        for p in [self.dp, self.sluiced, *self.procs.values()]:
            if p:
                p.stop(timeout=10)
        cleanup(self.tag)
        self.note(f"{self.tag}: torn down")


def cleanup(tag):
    """Removes everything named `tag`: processes in its namespaces, the
    namespaces, its bpffs mount, run directory, segment and the DPDK runtime
    directories of the dataplanes it started."""
    names = [n for n in run("ip", "netns", "list", check=False).stdout.split() if n.startswith(tag + "-")]
    for n in names:
        for pid in run("ip", "netns", "pids", n, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for n in names:
        for _ in range(50):
            if not run("ip", "netns", "pids", n, check=False).stdout.split():
                break
            time.sleep(0.1)
        run("ip", "netns", "del", n, check=False)
    rd = f"/run/{tag}"
    pids = []
    try:
        with open(f"{rd}/pids") as f:
            pids = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    for pid in pids:
        d = f"/var/run/dpdk/sluice-{pid}"
        if os.path.isdir(d) and proc_start_time(pid) is None:
            shutil.rmtree(d, ignore_errors=True)
    if os.path.ismount(f"{rd}/bpf"):
        run("umount", f"{rd}/bpf", check=False)
    if os.path.isdir(rd) and not os.path.ismount(f"{rd}/bpf"):
        shutil.rmtree(rd, ignore_errors=True)
    # The segment, and the connection tables sluice-dpdk kept for it
    # (dataplane/ct_store.h: /dev/shm or a hugetlbfs mount).
    dirs = ["/dev/shm"]
    with open("/proc/mounts") as m:
        dirs += [line.split()[1] for line in m if line.split()[2] == "hugetlbfs"]
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for f in names:
            if f == tag or f.startswith(tag + ".") or f.startswith(f"sluice-ct.{tag}."):
                try:
                    os.unlink(os.path.join(d, f))
                except OSError:
                    pass


def leftovers(prefix, everything=False):
    """Tags PREFIX-PID with something left whose owner is gone (or all)."""
    tags = set()
    pat = re.compile(re.escape(prefix) + r"-(\d+)")
    for n in run("ip", "netns", "list", check=False).stdout.split():
        m = pat.match(n)
        if m and n[m.end():].startswith("-"):
            tags.add(m.group(0))
    for d in os.listdir("/run"):
        m = pat.fullmatch(d)
        if m:
            tags.add(d)
    for f in os.listdir("/dev/shm"):
        m = pat.fullmatch(f)
        if m:
            tags.add(f)
    out = []
    for t in sorted(tags):
        pid = int(t.rsplit("-", 1)[1])
        owner_alive = False
        try:
            with open(f"/run/{t}/owner") as f:
                o = json.load(f)
            owner_alive = proc_start_time(o["pid"]) == o["start"]
        except (OSError, ValueError, KeyError):
            owner_alive = proc_start_time(pid) is not None
        if everything or not owner_alive:
            out.append(t)
    return out
