// SPDX-License-Identifier: Apache-2.0
// What a dataplane checks of a snapshot before it forwards by it. The
// segment is shared memory another process writes (sluiced, or whoever got
// at it), and the packet path indexes its tables with what the snapshot
// says: both dataplanes copy a snapshot out of the segment and check the
// copy (sluice-xdp into its maps' banks, sluice-dpdk into its keeper's,
// dataplane/snapshot_keeper.h). Pure functions over bytes, so
// fuzz/fuzz_snapshot runs them on arbitrary input.
#pragma once

#include <sluice/shm.h>

#include <cstdint>
#include <string>

namespace sluice {

// The header alone, read once from the slot, before anything is copied: a
// generation after `last` (0: none yet), every count within the segment's
// bounds. Returns SLUICE_REFUSED_NONE, or the reason with *why set to one
// line.
uint32_t check_snapshot_header(const sluice_snapshot_header &hd, uint64_t last, std::string *why);

// A copy: `body` holds the snapshot up to rings[] (its header is `hd`, as
// check_snapshot_header passed it), `rings` its hd.ring_used entries. Its
// checksum, every VIP's table inside the rings, every port-0 VIP with its
// address entry.
uint32_t check_snapshot_copy(const sluice_snapshot_header &hd, const sluice_snapshot &body,
			     const uint32_t *rings, std::string *why);

} // namespace sluice
