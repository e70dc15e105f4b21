# SPDX-License-Identifier: Apache-2.0
"""What runs inside the namespaces, started by drive.py and network.py
through `scripts/topology serve|tap|client`: the backends' web server and
UDP echo, the counter on the LB's bridge port, and the client.
"""
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time

from .addresses import GUE_PORT, LB_MAC


def serve_main(a):
    """HTTP on [::]:PORT (`/` answers the name, `/slow?s=S` streams for S
    seconds) and a UDP echo on each --udp-addr answering "NAME:<datagram>"
    from the address it was sent to."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse
    name = a.name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sluice-e2e"

        def log_message(self, *args):
            pass

        def do_GET(self):
            u = urlparse(self.path)
            if u.path == "/slow":
                q = parse_qs(u.query)
                secs = min(float(q.get("s", ["6"])[0]), 60.0)
                ticks = max(1, int(secs * 10))
                head = f"{name}\n".encode()
                chunk = b"x" * 1023 + b"\n"
                self.send_response(200)
                self.send_header("X-Backend", name)
                self.send_header("Content-Length", str(len(head) + ticks * len(chunk)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(head)
                self.wfile.flush()
                for _ in range(ticks):
                    time.sleep(0.1)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                self.close_connection = True
                return
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("X-Backend", name)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6
        daemon_threads = True
        request_queue_size = 256

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    httpd = Server(("::", a.http), Handler)
    socks = []
    for addr in a.udp_addr:
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, a.udp))
        socks.append(s)

    def echo():
        while True:
            r, _, _ = select.select(socks, [], [], 1.0)
            for s in r:
                try:
                    data, peer = s.recvfrom(65535)
                    s.sendto(name.encode() + b":" + data, peer)
                except OSError:
                    pass
    threading.Thread(target=echo, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    httpd.serve_forever()


# ----------------------------------------------- inside the namespaces: client

ETH_P_ALL = 3
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6


def parse_ip(frame, off, et):
    """(src, dst, proto, dport, payload offset) of the IP packet at `off`, or None."""
    try:
        if et == 0x0800:
            ihl = (frame[off] & 0xF) * 4
            proto = frame[off + 9]
            frag = struct.unpack_from("!H", frame, off + 6)[0] & 0x1FFF
            src = socket.inet_ntop(socket.AF_INET, frame[off + 12:off + 16])
            dst = socket.inet_ntop(socket.AF_INET, frame[off + 16:off + 20])
            l4 = off + ihl
        elif et == 0x86DD:
            proto = frame[off + 6]
            frag = 0
            src = socket.inet_ntop(socket.AF_INET6, frame[off + 8:off + 24])
            dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24:off + 40])
            l4 = off + 40
        else:
            return None
        port = struct.unpack_from("!H", frame, l4 + 2)[0] if proto in (6, 17) and not frag else 0
        return src, dst, proto, port, l4
    except (IndexError, struct.error, ValueError):
        return None


def classify_sent(frame, outgoing):
    """The client's view: what it sends, by destination (dst/proto/port),
    and who answers from a VIP (reply-from/SRC-MAC)."""
    et = struct.unpack_from("!H", frame, 12)[0]
    ip = parse_ip(frame, 14, et)
    if not ip:
        return None
    if outgoing:
        return f"{ip[1]}/{ip[2]}/{ip[3]}"
    if ip[0].startswith("10.200.") or ip[0].startswith("fd00:200:"):
        return "reply-from/" + frame[6:12].hex(":")
    return None


def classify_forwarded(frame, outgoing, gue_port=GUE_PORT):
    """The bridge's view of what the LB sends: how each packet is carried
    (ipip, ip6ip6, ip4in6, gue4, gue6, plain) and its inner destination:
    KIND/dst/proto/port. Only frames from the LB's MAC. And what the bridge
    hands the LB for a VIP (the port's outgoing frames to the LB's MAC):
    to-lb/dst/proto/port, the same key the client counts what it sent by."""
    et = struct.unpack_from("!H", frame, 12)[0]
    if outgoing:
        if frame[0:6].hex(":") != LB_MAC:
            return None
        ip = parse_ip(frame, 14, et)
        if not ip or not (ip[1].startswith("10.200.") or ip[1].startswith("fd00:200:")):
            return None
        return f"to-lb/{ip[1]}/{ip[2]}/{ip[3]}"
    if frame[6:12].hex(":") != LB_MAC:
        return None
    outer = parse_ip(frame, 14, et)
    if not outer:
        return None
    v6 = et == 0x86DD
    kind, off, iet = None, None, None
    if outer[2] == 4:
        kind, off, iet = ("ip4in6" if v6 else "ipip"), outer[4], 0x0800
    elif outer[2] == 41:
        kind, off, iet = ("ip6ip6" if v6 else "ip6in4"), outer[4], 0x86DD
    elif outer[2] == 17 and outer[3] == gue_port:
        off = outer[4] + 8 + 4  # UDP, then GUE's 4-byte header
        if off < len(frame):
            kind = "gue6" if v6 else "gue4"
            iet = 0x0800 if frame[off] >> 4 == 4 else 0x86DD
    if kind is None:
        return f"plain/{outer[1]}/{outer[2]}/{outer[3]}"
    inner = parse_ip(frame, off, iet)
    if not inner:
        return f"{kind}/?"
    return f"{kind}/{inner[1]}/{inner[2]}/{inner[3]}"


class Sniffer:
    """Counts the frames on an interface, keyed by classify(frame, outgoing)."""

    def __init__(self, ifname, classify):
        self.classify = classify
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        self.s.bind((ifname, 0))
        self.s.settimeout(0.2)
        self.lock = threading.Lock()
        self.counts = {}
        self.drops = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                frame, addr = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(frame) < 34:
                continue
            key = self.classify(frame, addr[2] == PACKET_OUTGOING)
            if key:
                with self.lock:
                    self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self):
        try:
            _, drops = struct.unpack("II", self.s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.drops += drops  # reading the statistics resets them
        except OSError:
            pass
        with self.lock:
            return dict(self.counts), self.drops


def tap_main(a):
    """In the bridge namespace: counts what the LB forwards (classify_forwarded)
    on the bridge's side of its veth; answers each stdin line with JSON."""
    sn = Sniffer(a.iface, classify_forwarded)
    print("ready", file=sys.stderr, flush=True)
    for raw in sys.stdin:
        try:
            seq = json.loads(raw).get("seq")
        except ValueError:
            seq = None
        counts, drops = sn.snapshot()  # every request (ping, counts) gets the counts
        print(json.dumps({"ok": True, "counts": counts, "drops": drops, "seq": seq}), flush=True)


def _connect(src, sport, host, port, timeout):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    if src or sport:
        s.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), int(sport or 0)))
    s.connect((host, port))
    return s


def _head(s, buf):
    """Reads until the end of the response's headers: (status, headers, rest)."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError(f"connection closed after {len(buf)} bytes of headers")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, hdrs, rest


def http_get(src, sport, host, port, path, timeout, progress=None):
    t0 = time.monotonic()
    out = {"ok": False, "src": src, "sport": sport}
    s = None
    try:
        s = _connect(src, sport, host, port, timeout)
        out["sport"] = s.getsockname()[1]
        h = f"[{host}]" if ":" in host else host
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n".encode())
        status, hdrs, body = _head(s, b"")
        out["status"] = status
        out["backend"] = hdrs.get("x-backend")
        want = int(hdrs.get("content-length", "-1"))
        if progress is not None:
            progress.update(backend=out["backend"], bytes=len(body), expected=want,
                            first_byte_s=time.monotonic() - t0)
        while want < 0 or len(body) < want:
            d = s.recv(65536)
            if not d:
                break
            body += d
            if progress is not None:
                progress["bytes"] = len(body)
        out["bytes"] = len(body)
        first = body.split(b"\n", 1)[0].decode(errors="replace")
        if want >= 0 and len(body) != want:
            out["error"] = f"short body: {len(body)} of {want} bytes"
        elif status != 200:
            out["error"] = f"HTTP {status}"
        elif first != out["backend"]:
            out["error"] = f"body names {first!r}, header {out['backend']!r}"
        else:
            out["ok"] = True
    except Exception as e:  # reported to the caller, which decides
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        if s:
            s.close()
    out["t"] = round(time.monotonic() - t0, 4)
    return out


def udp_flow(src, sport, host, port, count, timeout):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    names = []
    try:
        s.bind((src, int(sport)))
        for i in range(count):
            msg = f"q{i}-{sport}".encode()
            try:
                s.sendto(msg, (host, port))
                while True:
                    data, peer = s.recvfrom(65535)
                    if data.endswith(b":" + msg):
                        break
                name = data.decode().split(":", 1)[0]
                names.append(name if peer[0] == host else f"!from {peer[0]}")
            except OSError as e:
                names.append(f"!{type(e).__name__}")
    finally:
        s.close()
    return names


def tcp_retransmits():
    """This namespace's TCP segments sent again (IPv4 and IPv6 together)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("RetransSegs")])


def client_main(_a):
    import concurrent.futures
    sniffer = Sniffer("eth0", classify_sent)
    jobs = {}

    def do(job, progress):
        op = job["op"]
        deadline = time.monotonic() + float(job.get("deadline", 240))
        if op == "http":
            reqs = job["reqs"]
            to = float(job.get("timeout", 5))
            res = [None] * len(reqs)

            def one(i):
                if time.monotonic() > deadline:
                    return {"ok": False, "error": "deadline"}
                src, sport, host, port, path = reqs[i]
                return http_get(src, sport, host, port, path, to)
            with concurrent.futures.ThreadPoolExecutor(max(1, int(job.get("parallel", 1)))) as ex:
                for i, r in zip(range(len(reqs)), ex.map(one, range(len(reqs)))):
                    res[i] = r
                    progress["done"] = i + 1
            return {"ok": True, "results": res}
        if op == "udp":
            to = float(job.get("timeout", 2))
            res = []
            for src, sport, host, port, count in job["flows"]:
                if time.monotonic() > deadline:
                    res.append(["!deadline"])
                    continue
                res.append(udp_flow(src, sport, host, port, int(count), to))
            return {"ok": True, "results": res}
        if op == "slow":
            r = http_get(job.get("src"), job.get("sport", 0), job["host"], job.get("port", 80),
                         f"/slow?s={job.get('seconds', 6)}", float(job.get("timeout", 10)), progress)
            return r
        if op == "udp_stream":
            # `rate` datagrams a second for `seconds` from one socket (one
            # flow), not waiting for answers; counts the answers.
            fam = socket.AF_INET6 if ":" in job["host"] else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((job["src"], int(job["sport"])))
            s.setblocking(False)
            rate, secs = min(float(job.get("rate", 1000)), 20000), min(float(job.get("seconds", 2)), 60)
            batch = max(1, int(rate / 200))
            t0 = time.monotonic()
            sent = answers = 0
            nxt = t0
            while time.monotonic() - t0 < secs:
                for _ in range(batch):
                    try:
                        s.sendto(f"s{sent}".encode(), (job["host"], int(job["port"])))
                        sent += 1
                    except BlockingIOError:
                        pass
                while True:
                    try:
                        s.recv(65535)
                        answers += 1
                    except BlockingIOError:
                        break
                progress["sent"] = sent
                nxt += batch / rate
                time.sleep(max(0.0, nxt - time.monotonic()))
            end = time.monotonic() + 1.0
            while time.monotonic() < end and answers < sent:
                try:
                    s.recv(65535)
                    answers += 1
                except BlockingIOError:
                    time.sleep(0.01)
            s.close()
            return {"ok": True, "sent": sent, "answers": answers}
        if op == "loop":
            # Requests one after another for `seconds` (at most `max`), each
            # from the next source: a timeline of (t, ok, backend|error,
            # t_sent), t when it ended, t_sent when it began, from t0.
            srcs = job.get("srcs") or [[None, 0]]
            end = time.monotonic() + min(float(job.get("seconds", 5)), 120)
            t0 = time.monotonic()
            progress["t0"] = t0  # CLOCK_MONOTONIC is one clock for every namespace
            events = progress.setdefault("events", [])
            i = 0
            # `stop` (below) ends it early: a test loops for as long as
            # its maintenance takes, not a guessed number of seconds.
            while time.monotonic() < end and i < min(int(job.get("max", 2000)), len(srcs)) \
                    and not progress.get("stop"):
                src, sport = srcs[i]
                t_sent = time.monotonic() - t0
                r = http_get(src, sport, job["host"], job.get("port", 80), "/", float(job.get("timeout", 2)))
                events.append([round(time.monotonic() - t0, 3), r["ok"], r.get("backend") if r["ok"] else r.get("error"),
                               round(t_sent, 3)])
                i += 1
                gap = float(job.get("interval", 0.02))
                if gap:
                    time.sleep(gap)
            return {"ok": True, "t0": t0, "events": list(events)}
        if op == "udp_probe":
            # One datagram every `interval` s for `seconds` from one socket
            # (one flow): when each was sent (CLOCK_MONOTONIC) and whether
            # its echo came back, to time a gap in forwarding. With
            # `until_resumed` N: stops early once N probes in a row were
            # answered after one that was not (no answer within `lost_after` s).
            fam = socket.AF_INET6 if ":" in job["host"] else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((job["src"], int(job["sport"])))
            s.setblocking(False)
            gap = max(float(job.get("interval", 0.005)), 0.001)
            end = time.monotonic() + min(float(job.get("seconds", 5)), 60)
            until, lost_after = int(job.get("until_resumed", 0)), float(job.get("lost_after", 0.3))
            sent, answered = [], set()
            judged, last_lost = 0, -1

            def drain():
                while True:
                    try:
                        data = s.recv(65535)
                    except (BlockingIOError, ConnectionRefusedError):
                        return
                    m = re.search(rb":p(\d+)$", data)
                    if m:
                        answered.add(int(m.group(1)))
            while time.monotonic() < end and len(sent) < 100000:
                try:
                    s.sendto(f"p{len(sent)}".encode(), (job["host"], int(job["port"])))
                    sent.append(time.monotonic())
                except OSError:
                    pass
                drain()
                now = time.monotonic()
                while judged < len(sent) and now - sent[judged] > lost_after:
                    if judged not in answered:
                        last_lost = judged
                    judged += 1
                if until and last_lost >= 0 and judged - last_lost > until and \
                        all(j in answered for j in range(last_lost + 1, judged)):
                    break
                progress["sent"] = len(sent)
                time.sleep(gap)
            last = time.monotonic() + 1.0
            while time.monotonic() < last and len(answered) < len(sent):
                drain()
                time.sleep(0.01)
            s.close()
            return {"ok": True, "probes": [[t, i in answered] for i, t in enumerate(sent)]}
        raise ValueError(f"unknown op {op}")

    def runjob(id, job):
        j = jobs[id]
        try:
            j["result"] = do(job, j["progress"])
        except Exception as e:
            j["result"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        j["done"].set()

    print("ready", file=sys.stderr, flush=True)
    for raw in sys.stdin:
        c = {}
        try:
            c = json.loads(raw)
            op = c.get("op")
            if op == "ping":
                out = {"ok": True}
            elif op == "counts":
                counts, drops = sniffer.snapshot()
                out = {"ok": True, "counts": counts, "drops": drops, "retrans": tcp_retransmits()}
            elif op == "start":
                jobs[c["id"]] = {"progress": {}, "done": threading.Event()}
                threading.Thread(target=runjob, args=(c["id"], c["job"]), daemon=True).start()
                out = {"ok": True}
            elif op == "peek":
                j = jobs[c["id"]]
                out = {"ok": True, "done": j["done"].is_set(), "progress": json.loads(json.dumps(j["progress"]))}
            elif op == "stop":
                # Asks a running job that checks for it (loop) to end.
                jobs[c["id"]]["progress"]["stop"] = True
                out = {"ok": True}
            elif op == "wait":
                j = jobs[c["id"]]
                if j["done"].wait(min(float(c.get("wait", 60)), 300)):
                    out = jobs.pop(c["id"])["result"]
                else:
                    out = {"ok": False, "error": "still running", "running": True}
            else:
                out = do(c, {})
        except Exception as e:
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(dict(out, seq=c.get("seq") if isinstance(c, dict) else None)), flush=True)
