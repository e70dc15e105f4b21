// SPDX-License-Identifier: Apache-2.0
// Which VIPs this node announces, and the BIRD text that announces them.
// Pure: the decision is a function of the node's drain flag, the dataplane
// workers and each VIP's backends, so it is unit-tested without BIRD, a
// segment or a clock; controlplane/bird.h tells BIRD.
#pragma once

#include "config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// "65010:100" (RFC 1997: two 16-bit halves) or "65010:1:2" (RFC 8092 large:
// three 32-bit parts); nullopt if it is neither.
std::optional<std::vector<uint32_t>> parse_bgp_community(std::string_view text);

// node.bgp's rules; throws sluice::error naming the field
// ("node.bgp.communities[1]: ...").
void validate_bgp(const bgp_config &b);

// One dataplane worker as the decision sees it (from its segment record).
struct bgp_worker {
	std::string name;
	bool live = false;        // its record says running (not stopped)
	double heartbeat_age_s = 0;
	std::string stale;        // non-empty: refused or not taking the active snapshot
	// Its process left its forwarding in place for the next run (sluice-xdp
	// --keep-attached; SLUICE_WORKER_HANDED_OVER); heartbeat_age_s is then
	// the time since it left.
	bool handed_over = false;
};

struct bgp_vip {
	vip_key key;
	uint32_t backends = 0; // configured
	uint32_t healthy = 0;  // passing their checks
	uint32_t in_table = 0; // in the Maglev table: healthy, weight > 0, next hop known
};

struct bgp_inputs {
	bool drained = false;
	uint32_t heartbeat_timeout_ms = 300;
	std::vector<bgp_worker> workers;
	std::vector<bgp_vip> vips;
};

struct bgp_decision {
	vip_key key;
	bool announce = false;
	std::string reason; // one line: why announced, or why withdrawn
};

// A worker forwards, for announcing: running, heartbeat within the timeout,
// and on the active snapshot (not stale: status's STALE column, which
// allows a new generation a second to be taken, so a publish never flaps
// the announcement).
// A worker handed over counts as forwarding for bgp_handover_grace_ms after
// its process left: long enough for the next run to start and replace its
// program in place (~0.5 s here), so a hitless restart never withdraws the
// node; if no run takes over, the node withdraws then (it forwards, but on
// a snapshot nobody updates).
bool bgp_worker_forwards(const bgp_worker &w, uint32_t heartbeat_timeout_ms);
inline constexpr uint32_t bgp_handover_grace_ms = 5000;

// Per VIP, in input order: announce while the node is not drained, at
// least one worker forwards, and the VIP has a backend in its table.
std::vector<bgp_decision> bgp_decide(const bgp_inputs &in);

// The prefixes to announce: a VIP's address as /32 or /128, announced when
// any VIP on that address is (two services on one address share a route:
// withdrawing it for one would take the other's traffic away too). Sorted,
// each once.
std::vector<ip_address> bgp_prefixes(const std::vector<bgp_decision> &decisions);

// The include file: static protocols PROTOCOL4 and PROTOCOL6 (always both,
// possibly empty, so bird.conf's export filters always name something)
// holding a blackhole route per prefix, tagged with the communities.
std::string render_bird_include(const bgp_config &b, const std::vector<ip_address> &prefixes);

} // namespace sluice
