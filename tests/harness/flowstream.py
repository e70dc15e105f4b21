# SPDX-License-Identifier: Apache-2.0
"""A steady stream of sequence-numbered UDP datagrams over many flows, and
the receivers that record, per flow, which sequence numbers arrived where:
what tests/e2e/hitless_restart.py holds a dataplane restart against.

Runs inside a namespace (`ip netns exec NS python3 flowstream.py VERB ...`)
and answers each JSON line on its stdin with one JSON line carrying the
request's `seq` back, like the topology's agents (drive.Driven talks to it).

  recv --port P      on a backend: a UDP socket on P; per run and flow, a
                     bitmap of the sequence numbers received (duplicates
                     counted), and the flow's source (a check that the
                     flow id in the payload is the flow the LB hashed)
  send               in the client namespace: `stream` jobs (a paced
                     round-robin over the flows: datagram i is flow
                     i % N's sequence number i // N, so where a lost one
                     falls in time is known from i), and `tcp` jobs (long
                     downloads from the backends' /slow, which fail on a
                     reset or a short body)

Payload: "SLFS", run id, flow id, sequence number (network order, 16 bytes).
"""
import base64
import json
import os
import socket
import struct
import sys
import threading
import time

MAGIC = b"SLFS"
HDR = struct.Struct("!4sIII")
MAX_FLOWS = 65536
MAX_SEQ = 1 << 20          # per flow: bounds a receiver's bitmap
MAX_RATE = 50000           # datagrams a second
MAX_SECONDS = 120
BURST = 64                 # at most this many datagrams back to back when
                           # catching up: a veth's XDP ring holds 256 frames


def udp_errors():
    """This namespace's UDP receive errors (/proc/net/snmp): datagrams the
    kernel dropped because a socket's buffer was full, or for a bad checksum."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    h, v = rows[0], rows[1]
    return {k: int(v[h.index(k)]) for k in ("InErrors", "RcvbufErrors", "InCsumErrors") if k in h}


# ------------------------------------------------------------------ receiver

def recv_main(args):
    port = int(args[args.index("--port") + 1])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # 32 MiB: a receiver that falls behind for a moment (two cores shared
    # with the whole network) must not drop what the LB delivered.
    s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    lock = threading.Lock()
    runs = {}  # run -> flow -> [bitmap, dups, "src:port"]
    stray = [0]

    def loop():
        while True:
            try:
                data, peer = s.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < HDR.size:
                stray[0] += 1
                continue
            magic, run, flow, seq = HDR.unpack_from(data)
            if magic != MAGIC or flow >= MAX_FLOWS or seq >= MAX_SEQ:
                stray[0] += 1
                continue
            with lock:
                f = runs.setdefault(run, {}).get(flow)
                if f is None:
                    f = runs[run][flow] = [bytearray(), 0, f"{peer[0]}:{peer[1]}"]
                bm = f[0]
                byte = seq >> 3
                if byte >= len(bm):
                    bm.extend(bytes(byte + 64 - len(bm)))
                bit = 1 << (seq & 7)
                if bm[byte] & bit:
                    f[1] += 1
                else:
                    bm[byte] |= bit
    threading.Thread(target=loop, daemon=True).start()

    def report(c):
        run = int(c["run"])
        with lock:
            flows = {str(k): [base64.b64encode(bytes(v[0])).decode(), v[1], v[2]]
                     for k, v in runs.get(run, {}).items()}
        return {"ok": True, "flows": flows, "stray": stray[0], "udp": udp_errors()}
    serve({"report": report})


# -------------------------------------------------------------------- sender

class Stream:
    """Datagram i goes to flow i % N with sequence number i // N, `rate` a
    second, until stopped or `seconds` pass. `marks` records (i, time) every
    pacing step: the send time of any datagram, to within a step."""

    def __init__(self, c):
        self.run = int(c["run"])
        self.flows = [(a, int(p)) for a, p in c["flows"]][:MAX_FLOWS]
        self.dst = (c["host"], int(c["port"]))
        self.rate = min(float(c["rate"]), MAX_RATE)
        self.seconds = min(float(c.get("seconds", 30)), MAX_SECONDS)
        self.stop_ev = threading.Event()
        self.sent = 0
        self.retries = 0
        self.marks = []
        self.t0 = None
        self.socks = []
        for a, p in self.flows:
            sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sk.bind((a, p))
            sk.setblocking(False)
            self.socks.append(sk)
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def loop(self):
        n = len(self.socks)
        t0 = self.t0 = time.monotonic()
        end = t0 + self.seconds
        i = 0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now >= end or i // n >= MAX_SEQ:
                break
            due = min(int((now - t0) * self.rate), i + BURST)
            if due > i:
                self.marks.append((i, now))
            while i < due:
                flow = i % n
                try:
                    self.socks[flow].sendto(HDR.pack(MAGIC, self.run, flow, i // n), self.dst)
                except (BlockingIOError, OSError):
                    # Not sent (a full socket buffer): the same datagram
                    # again at the next step, so that every number counts.
                    self.retries += 1
                    break
                i += 1
            self.sent = i
            time.sleep(0.0005)
        self.sent = i
        for sk in self.socks:
            sk.close()

    def result(self):
        return {"ok": True, "run": self.run, "sent": self.sent, "flows": len(self.flows),
                "retries": self.retries, "t0": self.t0, "marks": self.marks,
                "seconds": (self.marks[-1][1] - self.t0) if self.marks else 0.0}


def send_main(_args):
    # The download client is the topology's own (scripts/sluice_topology).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(here)), "scripts"))
    from sluice_topology.agents import http_get
    streams, tcp = {}, {}

    def start(c):
        if c["id"] in streams:
            raise ValueError(f"stream {c['id']} exists")
        streams[c["id"]] = Stream(c)
        return {"ok": True}

    def progress(c):
        st = streams[c["id"]]
        return {"ok": True, "sent": st.sent, "running": st.th.is_alive()}

    def stop(c):
        st = streams.pop(c["id"])
        st.stop_ev.set()
        st.th.join(10)
        return st.result()

    def tcp_start(c):
        # Long downloads: each names its backend in its first bytes.
        jobs = []
        for src, sport in c["srcs"]:
            prog = {}
            j = {"progress": prog, "result": None}
            th = threading.Thread(target=lambda j=j, src=src, sport=sport: j.update(result=http_get(
                src, sport, c["host"], int(c["port"]), f"/slow?s={float(c['seconds'])}",
                float(c.get("timeout", 10)), j["progress"])), daemon=True)
            j["th"] = th
            th.start()
            jobs.append(j)
        tcp[c["id"]] = jobs
        return {"ok": True}

    def tcp_peek(c):
        return {"ok": True, "backends": [j["progress"].get("backend") for j in tcp[c["id"]]]}

    def tcp_wait(c):
        deadline = time.monotonic() + min(float(c.get("wait", 60)), 120)
        for j in tcp[c["id"]]:
            j["th"].join(max(0.0, deadline - time.monotonic()))
        jobs = tcp.pop(c["id"])
        return {"ok": True, "results": [j["result"] or {"ok": False, "error": "still running"} for j in jobs]}
    serve({"start": start, "progress": progress, "stop": stop, "tcp_start": tcp_start,
           "tcp_peek": tcp_peek, "tcp_wait": tcp_wait})


def serve(ops):
    print("ready", file=sys.stderr, flush=True)
    for raw in sys.stdin:
        c = {}
        try:
            c = json.loads(raw)
            op = c.get("op")
            out = {"ok": True} if op == "ping" else ops[op](c)
        except Exception as e:  # answered to the test, which decides
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(dict(out, seq=c.get("seq") if isinstance(c, dict) else None)), flush=True)


if __name__ == "__main__":
    try:
        import resource
        # One socket per flow.
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_FLOWS + 1024, MAX_FLOWS + 1024))
    except (ValueError, OSError):
        pass
    {"recv": recv_main, "send": send_main}[sys.argv[1]](sys.argv[2:])
