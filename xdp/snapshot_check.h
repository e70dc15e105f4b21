// SPDX-License-Identifier: Apache-2.0
// What sluice-xdp checks of a snapshot before its maps take it: the checks
// both dataplanes make (common/snapshot_check.h), and that the tables fit the
// maps. Pure functions over bytes (no maps, no segment), so
// fuzz/fuzz_snapshot runs them on arbitrary input.
#pragma once

#include "maps.h"
#include "snapshot_verify.h"

#include <sluice/shm.h>

#include <cstdint>
#include <string>

namespace sluice::xdp {

// The header alone, read once from the slot, before anything is copied:
// a generation after `last` (0: none yet), every count within the
// segment's bounds, the rings within the maps' `ring_entries`. Returns
// SLUICE_REFUSED_NONE, or the reason with *why set to one line.
uint32_t check_header(const sluice_snapshot_header &hd, uint32_t ring_entries, uint64_t last,
		      std::string *why);

// The copy in a bank (and its hd.ring_used ring entries, as check_header
// bounded them): its checksum, every VIP's table inside the rings, every
// port-0 VIP with its address entry.
uint32_t check_bank(const sluice_snapshot_header &hd, const sluice_xdp_bank &b, const uint32_t *rings,
		    std::string *why);

} // namespace sluice::xdp
