// SPDX-License-Identifier: Apache-2.0
// Next-hop MACs from the kernel: which neighbour a packet for a backend goes
// to (the route's gateway, or the backend itself on a connected network) and
// that neighbour's MAC (the ARP/NDP table), read over rtnetlink. The
// dataplanes put it in the Ethernet header of every packet to that backend.
#pragma once

#include "address.h"

#include <optional>
#include <string>

namespace sluice {

struct next_hop {
	ip_address via;    // the gateway, or the destination itself
	int ifindex = 0;
	std::optional<mac_address> mac; // nullopt: not (yet) in the neighbour table
};

// Looks the route and the neighbour up. Throws sluice::error if there is no
// route at all ("no route to 10.0.0.11").
next_hop resolve_next_hop(const ip_address &dst);

// Makes the kernel resolve `via` on interface `ifindex` (an ARP request or
// neighbour solicitation on that link). Errors are ignored: the next lookup
// tells.
void poke_neighbor(const ip_address &via, int ifindex);

} // namespace sluice
