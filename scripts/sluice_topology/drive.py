# SPDX-License-Identifier: Apache-2.0
"""The test's side of the agents in the namespaces that take requests
(agents.py: the client, and the tap on the LB's bridge port): each answers
one JSON line on its stdin with one JSON line.
"""
import json
import os
import select
import subprocess
import threading
import time

from .addresses import CLIENT4, CLIENT6
from .procs import PY, Proc


# The agents run as `scripts/topology serve|tap|client`: a program that
# `ip netns exec` can start as it is, its hidden verbs calling agents.py.
AGENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "topology")


class Driven:
    """A helper process in a namespace that answers each JSON line on its
    stdin with one JSON line, carrying the request's `seq` back."""

    def __init__(self, topo, name, args, ns, cpu0=False):
        self.name = name
        self.lock = threading.Lock()
        self.seq = 0
        self.p = Proc([PY, AGENT, *args], f"{topo.run_dir}/log/{name}.log", ns=ns,
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cpu0=cpu0)
        r = self.cmd(op="ping", within=20)
        if not r.get("ok"):
            raise RuntimeError(f"{name}: {r}")

    def cmd(self, within=120, **c):
        """Sends request c, returns its answer; TimeoutError if none comes
        within `within` seconds. An answer to an earlier request that timed
        out is skipped when it comes (its seq is not this one's)."""
        with self.lock:
            p = self.p.proc
            if p.poll() is not None:
                raise RuntimeError(f"the {self.name} exited:\n{self.p.tail()}")
            self.seq += 1
            p.stdin.write(json.dumps(dict(c, seq=self.seq)) + "\n")
            p.stdin.flush()
            deadline = time.monotonic() + within
            for _ in range(10000):
                r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    raise TimeoutError(f"the {self.name} did not answer {c.get('op')} within {within}s")
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {self.name} exited:\n{self.p.tail()}")
                out = json.loads(line)
                if out.pop("seq", None) == self.seq:
                    return out
            raise RuntimeError(f"the {self.name}: no answer to {c.get('op')} among 10000 stale ones")

    def close(self):
        if self.p.proc.poll() is None:
            try:
                self.p.proc.stdin.close()
            except OSError:
                pass
        self.p.stop(timeout=5)
        try:
            self.p.proc.stdout.close()
        except OSError:
            pass


class Tap(Driven):
    """`topology tap` on the bridge's side of the LB's veth: counts what the
    LB forwards, by encapsulation and inner destination (classify_forwarded)."""

    def __init__(self, topo):
        super().__init__(topo, "tap", ["tap", "--iface", "lb"], topo.ns["br"])

    def counts(self):
        return self.cmd(op="counts")


class Client(Driven):
    """`topology client` in the client namespace on CPU 0.

    The XDP connection table is per CPU and a veth runs XDP on the CPU that
    sent the frame: with the client and the servers on one CPU, every packet
    of a flow meets one table, as RSS gives on a NIC."""

    def __init__(self, topo):
        super().__init__(topo, "client", ["client"], topo.ns["client"], cpu0=True)

    # Requests: [(src, sport, host, port, path)], sport 0 = any.
    # `timeout` is each request's (each datagram's); the whole batch ends by
    # its `deadline` (240 s), which bounds the wait for the answer.
    def http(self, reqs, timeout=5, parallel=4):
        return self.cmd(op="http", reqs=[list(r) for r in reqs], timeout=timeout, parallel=parallel,
                        deadline=240, within=270)["results"]

    def udp(self, flows, timeout=2):
        """flows: [(src, sport, host, port, count)] -> per flow, the replies' sender names."""
        return self.cmd(op="udp", flows=[list(f) for f in flows], timeout=timeout, deadline=240,
                        within=270)["results"]

    def start(self, id, **job):
        r = self.cmd(op="start", id=id, job=job)
        assert r.get("ok"), r
        return id

    def peek(self, id):
        return self.cmd(op="peek", id=id)

    def stop(self, id):
        """Ends a running loop job early (its result still comes by wait)."""
        return self.cmd(op="stop", id=id)

    def wait(self, id, timeout=60):
        return self.cmd(op="wait", id=id, wait=timeout, within=timeout + 10)

    def counts(self):
        return self.cmd(op="counts")


def sources(n, base_port, v6=False):
    """n distinct (address, port) pairs over the client's addresses."""
    addrs = CLIENT6 if v6 else CLIENT4
    return [(addrs[i % len(addrs)], base_port + i // len(addrs)) for i in range(n)]
