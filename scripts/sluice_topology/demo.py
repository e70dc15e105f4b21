# SPDX-License-Identifier: Apache-2.0
"""scripts/demo: the network with three backends, traffic through sluice, a
backend failing and coming back, and a clean teardown, narrated.
"""
import os
import sys
import time

from .addresses import HTTP_PORT, MODES, service, vip4
from .drive import sources
from .procs import run


def bar(done, total, width=30):
    n = int(width * done / max(total, 1))
    return "[" + "#" * n + "." * (width - n) + "]"


def table(rows, headers):
    w = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    out = ["  " + "  ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)).rstrip(),
           "  " + "  ".join("-" * x for x in w)]
    for r in rows:
        out.append("  " + "  ".join(str(c).rjust(w[i]) if isinstance(c, (int, float)) else str(c).ljust(w[i])
                                    for i, c in enumerate(r)).rstrip())
    return "\n".join(out)


def demo(topo, auto=True):
    """scripts/demo: traffic through sluice to three backends, the spread,
    the counters, a backend failing and coming back, and a clean teardown."""
    t0 = time.monotonic()
    tty = sys.stdout.isatty()
    bold = (lambda s: f"\033[1m{s}\033[0m") if tty else (lambda s: s)

    def step(s):
        print(f"\n{bold('== ' + s)}  [{time.monotonic() - t0:.0f}s]", flush=True)

    def show(*args):
        print(bold("$ sluicectl " + " ".join(args)))
        print(topo.ctl(*args)[1].rstrip(), flush=True)

    step("building the network: a client, the LB, three backends, one bridge (namespaces " + topo.tag + "-*)")
    topo.up()
    print("  client   10.0.0.100-109   routes the VIPs 10.200.0.0/16 to the LB")
    print("  lb       10.0.0.2         sluiced + the dataplane, on eth0")
    print("  be1-be3  10.0.0.11-13     the VIPs on lo; `sluice-decap` opens IPIP and GUE;")
    print("                            a web server and a UDP echo answer with their name, directly")
    modes = {vip4("ipip"): "IPIP", vip4("gue"): "GUE", vip4("l2dsr"): "L2 DSR"}
    config = topo.config_yaml(modes=MODES, interval_ms=500, rise=2, fall=2, ipv6=False, udp=False)
    with open(f"{topo.run_dir}/sluice.yaml", "w") as f:
        f.write(config)
    topo.start_sluiced()
    topo.wait_backends_up()
    topo.wait_next_hops()
    step(f"starting sluice-{topo.dataplane} on the LB's eth0")
    try:
        topo.start_dataplane()
    except (RuntimeError, TimeoutError) as e:
        if not (auto and topo.dataplane == "dpdk"):
            raise
        print(f"  sluice-dpdk does not run here ({str(e).splitlines()[0]}): using sluice-xdp")
        topo.dataplane = "xdp"
        topo.start_dataplane()
    what = ("sluice-dpdk --iface eth0 (DPDK af_packet on the veth; on a server: a NIC bound to vfio-pci)"
            if topo.dataplane == "dpdk" else "sluice-xdp --iface eth0 (native XDP on the veth)")
    print(f"  {what}")
    show("vip", "list")

    total, batch = 1200, 40
    step(f"sending {total} HTTP requests, from 10 client addresses and {total // 10} ports each, "
         f"to the three VIPs")
    results = {v: [] for v in modes}
    srcs = sources(total, 20000)
    reqs = [(a, p, list(modes)[i % 3], HTTP_PORT, "/") for i, (a, p) in enumerate(srcs)]
    done = 0
    for i in range(0, total, batch):
        for r, q in zip(topo.client.http(reqs[i:i + batch], parallel=4), reqs[i:i + batch]):
            results[q[2]].append(r)
        done = min(total, i + batch)
        ok = sum(r["ok"] for v in results.values() for r in v)
        line = f"  {bar(done, total)} {done}/{total} sent, {ok} answered"
        if tty:
            print("\r" + line, end="", flush=True)
        elif done % 150 == 0 or done == total:
            print(line, flush=True)
    if tty:
        print()
    st = topo.stats()
    rows = []
    for v, rs in results.items():
        lb = next(x for x in st["vips"] if x["vip"] == service(v, HTTP_PORT, "tcp"))
        per = {topo.be_by_addr(b["address"]): b for b in lb["backends"]}
        for be in topo.backends:
            n = sum(1 for r in rs if r["ok"] and r["backend"] == be)
            rows.append((f"{v} ({modes[v]})" if be == "be1" else "", be, n, f"{100 * n / len(rs):.0f}%",
                         per[be]["new_flows"], per[be]["packets"]))
        failed = sum(1 for r in rs if not r["ok"])
        if failed:
            rows.append(("", "failed", failed, f"{100 * failed / len(rs):.0f}%", "", ""))
    print("\n  who answered (the client's count) and what sluice counted:")
    print(table(rows, ["VIP", "backend", "answers", "share", "new flows", "packets"]))
    print()
    show("stats")

    victim, vip = "be2", vip4("ipip")
    svc = service(vip, HTTP_PORT, "tcp")
    step(f"failing {victim}: its web server stops while the client keeps sending to {vip} "
         f"(checks every 500 ms, fall 2, rise 2)")
    topo.client.start("live", op="loop", srcs=[list(x) for x in sources(3000, 30000)], host=vip,
                      port=HTTP_PORT, seconds=10, max=3000, interval=0.03, timeout=1)
    t_loop = time.monotonic()
    time.sleep(1.0)
    topo.stop_server(victim)
    t_fail = time.monotonic()
    marked = back = rejoined = None
    seen = 0
    print(f"  {'time':>6}  {victim + ' state':<14} answers in the last half second")
    deadline = t_loop + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = time.monotonic() - t_fail
        ev = topo.client.peek("live")["progress"].get("events", [])
        recent, seen = ev[seen:], len(ev)
        state = topo.backend_states(svc).get(victim, "?")
        if state != "up" and marked is None:
            marked = now
        if marked is not None and back is not None and state == "up" and rejoined is None:
            rejoined = now
        share = {}
        for _, ok, who, *_ in recent:
            k = who if ok else "failed"
            share[k] = share.get(k, 0) + 1
        shown = "  ".join(f"{k} {share.get(k, 0):3d}" for k in [*topo.backends, "failed"])
        print(f"  {now:5.1f}s  {state:<14} {shown}", flush=True)
        if marked is not None and back is None and now > marked + 2.5:
            topo.start_server(victim)
            topo.wait_server(victim)
            back = time.monotonic() - t_fail
            print(f"  {back:5.1f}s  {victim}'s web server is back", flush=True)
    ev = topo.client.wait("live", timeout=30).get("events", [])
    fails = sum(1 for e in ev if not e[1])
    if marked is None:
        print(f"  {victim} was never marked down: something is wrong (logs in {topo.run_dir}/log/)")
    else:
        down_from, down_to = t_fail - t_loop + marked, t_fail - t_loop + (rejoined or 99)
        during = [e for e in ev if down_from + 0.1 < e[0] < down_to]
        print(f"\n  {victim} stopped answering at 0.0s, was marked down at {marked:.1f}s"
              + (f", rejoined at {rejoined:.1f}s" if rejoined else "") + ".")
        print(f"  {len(ev)} requests in all, {fails} failed: those that reached {victim} before it was "
              f"marked down;\n  while it was down, {sum(1 for e in during if e[1])} of {len(during)} "
              f"were answered by the other two.")
    print()
    show("backend", "list", svc)

    step("tearing everything down")
    tag, run_dir = topo.tag, topo.run_dir
    topo.down()
    left = [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(tag)]
    left += [p for p in (run_dir, f"/dev/shm/{tag}") if os.path.exists(p)]
    print(f"  namespaces, processes, pinned maps (bpffs {run_dir}/bpf), shared memory: "
          f"{'all gone' if not left else 'LEFT: ' + ' '.join(left)}")
    print(f"\ndemo done in {time.monotonic() - t0:.0f}s")
    return 0 if marked is not None and not left else 1
