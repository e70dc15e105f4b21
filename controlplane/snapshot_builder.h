// SPDX-License-Identifier: Apache-2.0
// Turns the configuration, the ids and the health of every backend into a
// snapshot record for the dataplanes. Keeps each VIP's last Maglev table and
// rebuilds only those whose live backend set changed, so a one-backend
// change costs one table, not all of them.
#pragma once

#include "config.h"
#include "maglev.h"
#include "state.h"

#include <sluice/shm.h>

#include <functional>
#include <map>
#include <vector>

namespace sluice {

struct snapshot_inputs {
	const config &cfg;
	const object_ids &ids;
	// Whether a backend (by id) passes its health checks.
	std::function<bool(uint32_t backend_id)> healthy;
	// The next-hop MAC the kernel resolved for a backend, if any.
	std::function<std::optional<mac_address>(uint32_t backend_id)> next_hop_mac;
	// Whether sluiced resolves next hops: then a backend whose MAC is not
	// known yet waits outside the Maglev table. Without resolution a
	// backend with no MAC is a configuration gap, counted drop_no_nexthop.
	bool resolving_next_hops = false;
};

class snapshot_builder {
public:
	// Writes everything a reader uses (node, vip_hash, vips, backends, rings,
	// counts); the writer sets generation and checksum.
	void build(const snapshot_inputs &in, sluice_snapshot &out);

	// What the last build made of VIP `vip_id`: its table digest (16 hex
	// digits, see table_digest()) and how many backends its table holds
	// (healthy, weight > 0 and, while resolving, next hop known). nullptr
	// for an id not in it.
	struct vip_summary {
		std::string digest;
		uint32_t in_table = 0;
	};
	const vip_summary *summary(uint32_t vip_id) const;

private:
	struct cached_table {
		uint32_t ring_size = 0;
		std::vector<maglev_backend> members;
		std::vector<uint32_t> table;
		uint64_t table_hash = 0; // the table by member address, see table_digest()
	};
	std::map<uint32_t, cached_table> cache_; // by VIP id
	std::map<uint32_t, vip_summary> summaries_; // by VIP id, from the last build
};

// What two nodes must share to send every flow of a VIP to the same backend:
// FNV-1a 64 (not a secret, only a comparison) over the VIP (key, mode,
// ring size, GUE port), its backends sorted by address (address, weight,
// healthy, in the table) and its Maglev table with each slot written as
// the address of the backend it names. Ids are left out: they are local to
// a node (given in the order objects were added), while the table they
// index is a function of addresses and weights only (maglev.h).
struct digest_backend {
	ip_address address;
	uint32_t weight = 0;
	bool healthy = false;
	bool in_table = false;
};
uint64_t table_hash(const std::vector<maglev_backend> &members, const std::vector<uint32_t> &table);
std::string table_digest(const vip_config &v, std::vector<digest_backend> backends, uint64_t table_hash);

} // namespace sluice
