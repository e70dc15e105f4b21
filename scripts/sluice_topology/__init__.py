# SPDX-License-Identifier: Apache-2.0
"""sluice's namespace network on one machine: what scripts/topology (the CLI,
cli.py), scripts/demo (demo.py), scripts/bench and the end-to-end tests
(tests/e2e/e2e_scenarios.py) build and drive.

    addresses.py  every address, port and MAC of the network
    procs.py      commands and background processes, every wait bounded
    network.py    Topology: the namespaces, veths and bridge, the backends'
                  servers and decap programs, sluiced and the dataplane
    drive.py      the test's side of the agents in the namespaces
    agents.py     the agents: web server and UDP echo, the counter on the
                  LB's bridge port, the client
    demo.py       the narrated demo
    cli.py        `scripts/topology up|down|demo`

As a library, with scripts/ on sys.path:
    import sluice_topology as T
    topo = T.Topology(build_dir, dataplane="xdp").up()   # network + servers
    topo.start_sluice(topo.config_yaml())                # sluiced + dataplane
    topo.client.http([...]); topo.ctl("status"); topo.down()
A library user calls down() (the tests also at exit); `scripts/topology
down` cleans up after runs that were killed outright.
"""
from .addresses import (CLIENT4, CLIENT6, CLIENTS, GUE_PORT, HTTP_PORT, LB4, LB6, LB_MAC, MODES,
                        UDP_PORT, VIP_NET4, VIP_NET6, all_vips, backend4, backend6, backend_mac,
                        service, vip4, vip6)
from .drive import Client, Tap, sources
from .network import Topology, cleanup, leftovers
from .procs import wait_for

__all__ = [
    "CLIENT4", "CLIENT6", "CLIENTS", "GUE_PORT", "HTTP_PORT", "LB4", "LB6", "LB_MAC", "MODES",
    "UDP_PORT", "VIP_NET4", "VIP_NET6", "all_vips", "backend4", "backend6", "backend_mac",
    "service", "vip4", "vip6", "Client", "Tap", "sources", "Topology", "cleanup", "leftovers",
    "wait_for",
]
