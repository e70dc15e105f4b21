// SPDX-License-Identifier: Apache-2.0
// EAL for sluice-dpdk: its arguments (options.h builds them), its logs on
// stderr (stdout carries our counters), its runtime directory removed at
// exit, and the worker lcores it gives.
#pragma once

#include "options.h"

#include <cstdint>
#include <vector>

namespace sluice {

// rte_eal_init with eal_arguments(o); throws sluice::error with one line
// (EAL's own messages come before it).
void start_eal(const options &o);

// The lcores that will forward, one per worker, in EAL's order: --workers of
// them, or every worker lcore EAL gave. Throws sluice::error when EAL gave
// too few, or more workers than a segment has records.
std::vector<unsigned> worker_lcores(const options &o);

} // namespace sluice
