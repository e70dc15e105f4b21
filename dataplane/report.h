// SPDX-License-Identifier: Apache-2.0
// What sluice-dpdk prints on stdout: this run's counters at the end (one
// `name value` line each, every counter), and with --stats-period a
// `stats elapsed_s=... rx_packets=... tx_packets=...` line as it goes.
// This run's: a record may have been taken over from an earlier run, whose
// counts it keeps for sluiced's totals; the workers' baselines are
// subtracted.
#pragma once

#include "runtime.h"

#include <sluice/counters.h>

#include <array>
#include <cstdint>

namespace sluice {

using run_counters = std::array<uint64_t, SLUICE_CNT__COUNT>;

// The --stats-period line, for a rate over a window measured in the process
// itself (scripts/bench).
void print_progress(const runtime &rt, double elapsed_s);

// Summed over the workers; read before their records are released.
run_counters sum_run_counters(const runtime &rt);

void print_run_counters(const run_counters &total);

} // namespace sluice
