// SPDX-License-Identifier: Apache-2.0
#include "snapshot_check.h"

#include <fmt/format.h>

namespace sluice::xdp {

uint32_t check_header(const sluice_snapshot_header &hd, uint32_t ring_entries, uint64_t last,
		      std::string *why)
{
	if (uint32_t r = check_snapshot_header(hd, last, why); r != SLUICE_REFUSED_NONE)
		return r;
	if (hd.ring_used > ring_entries) {
		*why = fmt::format("snapshot generation {}: its Maglev tables hold {} entries, more than "
				   "the {} of --ring-entries",
				   hd.generation, hd.ring_used, ring_entries);
		return SLUICE_REFUSED_RING_ENTRIES;
	}
	return SLUICE_REFUSED_NONE;
}

uint32_t check_bank(const sluice_snapshot_header &hd, const sluice_xdp_bank &b, const uint32_t *rings,
		    std::string *why)
{
	// A bank lays out the snapshot's fields at the snapshot's offsets, up to
	// rings[] (static-asserted in maps.h).
	return check_snapshot_copy(hd, *reinterpret_cast<const sluice_snapshot *>(&b), rings, why);
}

} // namespace sluice::xdp
