// SPDX-License-Identifier: Apache-2.0
#include "snapshot_verify.h"

#include <sluice/vip.h>

#include <fmt/format.h>

namespace sluice {

uint32_t check_snapshot_header(const sluice_snapshot_header &hd, uint64_t last, std::string *why)
{
	const uint64_t gen = hd.generation;
	// A segment never reuses a generation (and sluice-xdp's per-CPU VIP
	// memo keys on it): a number seen again here is another segment's.
	if (gen <= last) {
		*why = fmt::format("snapshot generation {}: not after generation {}, already taken "
				   "(another segment? restart the dataplane)",
				   gen, last);
		return SLUICE_REFUSED_GENERATION;
	}
	if (hd.vip_count > SLUICE_MAX_VIPS || hd.backend_count > SLUICE_MAX_BACKENDS ||
	    hd.ring_used > SLUICE_RING_POOL) {
		*why = fmt::format("snapshot generation {}: {} VIPs, {} backends, {} ring entries: the "
				   "segment holds at most {}, {}, {} (a corrupt segment?)",
				   gen, hd.vip_count, hd.backend_count, hd.ring_used, SLUICE_MAX_VIPS,
				   SLUICE_MAX_BACKENDS, SLUICE_RING_POOL);
		return SLUICE_REFUSED_CORRUPT;
	}
	return SLUICE_REFUSED_NONE;
}

uint32_t check_snapshot_copy(const sluice_snapshot_header &hd, const sluice_snapshot &c,
			     const uint32_t *rings, std::string *why)
{
	const uint64_t gen = hd.generation;
	if (hd.checksum != sluice_snapshot_checksum_parts(&hd, &c.node, rings)) {
		*why = fmt::format("snapshot generation {}: checksum mismatch (a torn or foreign write?)", gen);
		return SLUICE_REFUSED_CHECKSUM;
	}
	// The lookups below read only hdr.vip_seed, vip_hash and vips.
	for (uint32_t slot = 0; slot < SLUICE_VIP_HASH_SIZE; slot++) {
		uint16_t e = c.vip_hash[slot];
		if (e == 0)
			continue;
		uint32_t id = (e - 1u) & (SLUICE_MAX_VIPS - 1);
		const sluice_vip &v = c.vips[id];
		if ((uint64_t)v.ring_offset + v.ring_size > hd.ring_used) {
			*why = fmt::format("snapshot generation {}: VIP id {}'s Maglev table ends past ring_used", gen, id);
			return SLUICE_REFUSED_CORRUPT;
		}
		// A port-0 service is looked up only for a VIP address (decide.h):
		// each must have its address entry.
		if (v.port_be == 0 && v.proto != 0 &&
		    sluice_vip_find_exact(&c, v.addr, v.family, 0, v.proto) == id &&
		    sluice_vip_find_address(&c, v.addr, v.family) == SLUICE_MAX_VIPS) {
			*why = fmt::format("snapshot generation {}: port-0 VIP id {} has no address entry", gen, id);
			return SLUICE_REFUSED_CORRUPT;
		}
	}
	return SLUICE_REFUSED_NONE;
}

} // namespace sluice
