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

private:
	struct cached_table {
		uint32_t ring_size = 0;
		std::vector<maglev_backend> members;
		std::vector<uint32_t> table;
	};
	std::map<uint32_t, cached_table> cache_; // by VIP id
};

} // namespace sluice
