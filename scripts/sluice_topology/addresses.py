# SPDX-License-Identifier: Apache-2.0
"""The network's numbers: every address, port and MAC of the namespaces
network.py builds, and the VIP notation sluicectl takes."""


MODES = ("ipip", "gue", "l2dsr")
MODE_INDEX = {"ipip": 1, "gue": 2, "l2dsr": 3}
HTTP_PORT = 80
UDP_PORT = 5353
GUE_PORT = 6080
LB4, LB6 = "10.0.0.2", "fd00::2"
LB_MAC = "02:5e:00:00:00:02"
CLIENTS = 10
CLIENT4 = [f"10.0.0.{100 + i}" for i in range(CLIENTS)]
CLIENT6 = [f"fd00::{100 + i}" for i in range(CLIENTS)]
VIP_NET4, VIP_NET6 = "10.200.0.0/16", "fd00:200::/64"


def vip4(mode):
    return f"10.200.{MODE_INDEX[mode]}.1"


def vip6(mode):
    return f"fd00:200::{MODE_INDEX[mode]}"


def all_vips():
    return [vip4(m) for m in MODES], [vip6(m) for m in MODES]


def backend4(i):
    return f"10.0.0.{10 + i}"


def backend6(i):
    return f"fd00::{10 + i}"


def backend_mac(i):
    return f"02:5e:00:00:00:{0x10 + i:02x}"


def service(addr, port, proto):
    """sluicectl's VIP notation."""
    return f"[{addr}]:{port}/{proto}" if ":" in addr else f"{addr}:{port}/{proto}"
