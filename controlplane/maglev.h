// SPDX-License-Identifier: Apache-2.0
// Maglev table generation (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI'16, §3.4). The lookup the dataplanes
// run, and the per-backend offset/skip hashes, are in <sluice/maglev.h>.
//
// A table is a function of the backend SET (addresses, weights, ids) and M
// only: never of list order, machine or build, so every LB of a fleet
// builds the same table and a flow lands on the same backend whichever LB
// ECMP picks.
#pragma once

#include "address.h"

#include <sluice/maglev.h>

#include <cstdint>
#include <span>
#include <vector>

namespace sluice {

struct maglev_backend {
	ip_address address; // the backend's identity in the permutation (§3.4)
	uint32_t weight = 1; // relative; 0: no slots (drained)
	uint32_t id = 0; // the value written into its slots; never SLUICE_MAGLEV_EMPTY
};

bool is_prime(uint32_t n);

// Fills `table` (its size is M: prime, SLUICE_MAGLEV_MIN_SIZE to
// SLUICE_MAGLEV_MAX_SIZE) with backend ids. Each backend with weight > 0
// gets about M * weight / (sum of weights) slots, and at least one while
// there are no more such backends than slots; weight 0 gets none. With no
// backend of weight > 0, every slot is SLUICE_MAGLEV_EMPTY.
//
// Throws sluice::error (one line) on a bad M, an address listed twice, an
// unset address, or an id equal to SLUICE_MAGLEV_EMPTY.
void maglev_build(std::span<const maglev_backend> backends, std::span<uint32_t> table);
std::vector<uint32_t> maglev_build(std::span<const maglev_backend> backends, uint32_t m);

} // namespace sluice
