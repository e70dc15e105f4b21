#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Servers and a client for the XDP namespace tests, run inside namespaces
with `ip netns exec`.

  xdp_peer.py server NAME --tcp PORT... --udp PORT... --addr ADDR...
      Answers every TCP line and every UDP datagram with "NAME:<it>". TCP
      listens on every address (VIPs on the loopback included); UDP on each
      --addr (the VIPs), so that a reply leaves from the VIP it was sent to.
  xdp_peer.py client
      Reads commands on stdin, one JSON object a line, answers each with
      one JSON line: {"op": "open", "id", "host", "port"},
      {"op": "send", "id", "text"}, {"op": "close", "id"},
      {"op": "udp", "host", "port", "text"}. Every wait is bounded.
"""
import json
import selectors
import socket
import sys

TIMEOUT = 5.0


def serve(name, tcp_ports, udp_ports, addrs):
    sel = selectors.DefaultSelector()
    for port in tcp_ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(64)
        sel.register(s, selectors.EVENT_READ, "accept")
    for port in udp_ports:
        for a in addrs:
            s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a, port))
            sel.register(s, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    buffers = {}
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "accept":
                c, _ = s.accept()
                buffers[c] = b""
                sel.register(c, selectors.EVENT_READ, "conn")
            elif key.data == "udp":
                data, peer = s.recvfrom(65535)
                s.sendto(name.encode() + b":" + data, peer)
            else:
                try:
                    data = s.recv(65535)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    buffers.pop(s, None)
                    continue
                buffers[s] += data
                while b"\n" in buffers[s]:
                    line, buffers[s] = buffers[s].split(b"\n", 1)
                    s.sendall(name.encode() + b":" + line + b"\n")


def client():
    conns = {}
    for raw in sys.stdin:
        cmd = json.loads(raw)
        out = {"ok": True}
        try:
            op = cmd["op"]
            if op == "open":
                fam = socket.AF_INET6 if ":" in cmd["host"] else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.settimeout(cmd.get("timeout", TIMEOUT))
                s.connect((cmd["host"], cmd["port"]))
                conns[cmd["id"]] = [s, b""]
            elif op == "send":
                s, buf = conns[cmd["id"]]
                s.settimeout(cmd.get("timeout", TIMEOUT))
                s.sendall(cmd["text"].encode() + b"\n")
                while b"\n" not in buf:
                    d = s.recv(65535)
                    if not d:
                        raise ConnectionError("closed by the server")
                    buf += d
                line, buf = buf.split(b"\n", 1)
                conns[cmd["id"]][1] = buf
                out["reply"] = line.decode()
            elif op == "close":
                s, _ = conns.pop(cmd["id"])
                s.close()
            elif op == "udp":
                fam = socket.AF_INET6 if ":" in cmd["host"] else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.settimeout(cmd.get("timeout", TIMEOUT))
                if "sport" in cmd:
                    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", cmd["sport"]))
                s.sendto(cmd["text"].encode(), (cmd["host"], cmd["port"]))
                data, peer = s.recvfrom(65535)
                out["reply"] = data.decode()
                out["from"] = peer[0]
                s.close()
            else:
                raise ValueError(f"unknown op {op}")
        except Exception as e:  # reported to the test, which decides
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        args = sys.argv[3:]
        lists = {"--tcp": [], "--udp": [], "--addr": []}
        cur = None
        for a in args:
            if a in lists:
                cur = lists[a]
            else:
                cur.append(a)
        serve(sys.argv[2], [int(p) for p in lists["--tcp"]], [int(p) for p in lists["--udp"]],
              lists["--addr"])
    elif sys.argv[1] == "client":
        client()
    else:
        sys.exit(__doc__)
