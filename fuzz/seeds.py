#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Seed corpora for the fuzz targets (scripts/fuzz), from what the tests
already hold: the packet-fixture table's frames (each as one frame of
fuzz_packet's input), the example and test configurations as YAML and as
JSON, the bad-input table's API requests, and an empty and a one-VIP
snapshot header.

usage: seeds.py SOURCE_DIR OUT_DIR   (needs python3-scapy: /usr/bin/python3)
"""
import json
import os
import struct
import sys


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    src, out = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.join(src, "tests", "fixtures"))
    import fixtures as F
    for i, fx in enumerate(F.FIXTURES):
        frame = bytes(fx["frame"])
        for t in ("fuzz_packet", "fuzz_burst"):
            write(os.path.join(out, t), f"fixture-{i:03d}", struct.pack("<H", len(frame)) + frame)
    configs = [F.CONFIG, open(os.path.join(src, "examples", "sluice.yaml")).read()]
    table = json.load(open(os.path.join(src, "tests", "data", "bad_inputs.json")))
    configs.append(table["base_yaml"])
    configs += [c["yaml"] for c in table.get("yaml", [])]
    for i, text in enumerate(configs):
        write(os.path.join(out, "fuzz_config"), f"yaml-{i:03d}", text.encode())
    for i, c in enumerate(table.get("json", [])):
        write(os.path.join(out, "fuzz_config"), f"json-{i:03d}", json.dumps(c.get("json", c)).encode())
    lines = [json.dumps({"verb": "status"}), json.dumps({"verb": "vip.list"}),
             json.dumps({"verb": "vip.add", "args": {"vip": "10.200.2.1:80/tcp"}}),
             json.dumps({"verb": "backend.add", "args": {"vip": "10.200.1.1:80/tcp", "address": "10.0.0.12"}}),
             json.dumps({"verb": "backend.set", "args": {"vip": "10.200.1.1:80/tcp", "address": "10.0.0.11",
                                                         "weight": 0}}),
             json.dumps({"verb": "apply", "args": {"config": {"vips": []}}}), "{not json"]
    for i, l in enumerate(lines):
        write(os.path.join(out, "fuzz_api"), f"line-{i:03d}", l.encode())
    write(os.path.join(out, "fuzz_api"), "all", "\n".join(lines).encode())
    # Every input a finding was fixed with (fuzz/regressions/TARGET/), so
    # each run replays them first.
    reg = os.path.join(src, "fuzz", "regressions")
    for t in os.listdir(reg) if os.path.isdir(reg) else []:
        for name in os.listdir(os.path.join(reg, t)):
            write(os.path.join(out, t), "regression-" + name, open(os.path.join(reg, t, name), "rb").read())
    # generation 1, checksum 0, published 0, 1 VIP, 1 backend, 251 ring entries
    write(os.path.join(out, "fuzz_snapshot"), "header", struct.pack("<QQQIII", 1, 0, 0, 1, 1, 251) + bytes(28))
    write(os.path.join(out, "fuzz_snapshot"), "empty", struct.pack("<Q", 1) + bytes(56))


if __name__ == "__main__":
    main()
