# SPDX-License-Identifier: Apache-2.0
"""Holds connections to a VIP open from the client namespace, for tests that
count them in sluice (tests/e2e/conns_e2e.py). Runs inside the namespace;
one JSON line answers each command line on stdin:

  open VIP TCP_N UDP_N   TCP_N keep-alive HTTP connections to VIP:80 (one
                         request each, answered; the server names itself in
                         X-Backend) and UDP_N flows to VIP:5353 (echoed
                         "NAME:..."), each flow re-sent every 0.5 s so its
                         entry stays live; answers which backend each got
                         and from which address:port
  close NAME             closes NAME's TCP connections and stops its UDP flows
  quit

Every socket operation has a timeout; an error is answered, never raised.
"""
import json
import socket
import sys
import threading
import time

CLIENTS = [f"10.0.0.{100 + i}" for i in range(10)]
TIMEOUT = 5


def http_keepalive(src, vip):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.bind((src, 0))
    s.connect((vip, 80))
    s.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise ConnectionError("closed before the response's headers")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    hdrs = {k.strip().lower(): v.strip() for k, _, v in
            (x.partition(":") for x in head.decode("latin-1").split("\r\n")[1:])}
    want = int(hdrs.get("content-length", "0"))
    while len(body) < want:
        d = s.recv(4096)
        if not d:
            raise ConnectionError("closed mid-body")
        body += d
    return s, hdrs.get("x-backend")


class UdpFlow:
    def __init__(self, src, vip, n):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(TIMEOUT)
        self.s.bind((src, 0))
        self.vip, self.msg = vip, f"hold-{n}".encode()
        self.s.sendto(self.msg, (vip, 5353))
        data, _ = self.s.recvfrom(2048)
        self.backend = data.decode().split(":", 1)[0]
        self.s.setblocking(False)
        self.on = True

    def refresh(self):
        if not self.on:
            return
        try:
            while True:
                self.s.recvfrom(2048)  # the echoes of earlier refreshes
        except (BlockingIOError, OSError):
            pass
        try:
            self.s.sendto(self.msg, (self.vip, 5353))
        except OSError:
            pass


def main():
    tcp, udp = [], []
    lock = threading.Lock()

    def refresher():
        while True:
            time.sleep(0.5)
            with lock:
                for f in udp:
                    f.refresh()
    threading.Thread(target=refresher, daemon=True).start()
    for line in sys.stdin:
        cmd = line.split()
        out = {}
        try:
            if cmd[0] == "open":
                vip, n_tcp, n_udp = cmd[1], int(cmd[2]), int(cmd[3])
                for i in range(n_tcp):
                    s, be = http_keepalive(CLIENTS[i % len(CLIENTS)], vip)
                    tcp.append((s, be))
                with lock:
                    for i in range(n_udp):
                        udp.append(UdpFlow(CLIENTS[i % len(CLIENTS)], vip, i))
                out = {"tcp": [be for _, be in tcp], "udp": [f.backend for f in udp],
                       "tcp_from": ["%s:%d" % s.getsockname() for s, _ in tcp],
                       "udp_from": ["%s:%d" % f.s.getsockname() for f in udp]}
            elif cmd[0] == "close":
                name = cmd[1]
                keep, closed = [], 0
                for s, be in tcp:
                    if be == name:
                        s.close()
                        closed += 1
                    else:
                        keep.append((s, be))
                tcp[:] = keep
                stopped = 0
                with lock:
                    for f in udp:
                        if f.backend == name and f.on:
                            f.on = False
                            f.s.close()
                            stopped += 1
                out = {"closed_tcp": closed, "stopped_udp": stopped}
            elif cmd[0] == "quit":
                break
            else:
                out = {"error": f"unknown command {cmd[0]!r}"}
        except Exception as e:  # the test decides
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
