// SPDX-License-Identifier: Apache-2.0
#include "report.h"

#include "counter_names.h"

#include <cstdio>

namespace sluice {

void print_progress(const runtime &rt, double elapsed_s)
{
	// The workers count without atomics; an aligned 64-bit load sees one
	// value or the other.
	uint64_t rx = 0, tx = 0;
	for (const auto &w : rt.workers) {
		rx += __atomic_load_n(&w->state.stats->counters[SLUICE_CNT_rx_packets], __ATOMIC_RELAXED) -
		      w->baseline[SLUICE_CNT_rx_packets];
		tx += __atomic_load_n(&w->state.stats->counters[SLUICE_CNT_tx_packets], __ATOMIC_RELAXED) -
		      w->baseline[SLUICE_CNT_tx_packets];
	}
	std::printf("stats elapsed_s=%.6f rx_packets=%llu tx_packets=%llu\n", elapsed_s,
		    static_cast<unsigned long long>(rx), static_cast<unsigned long long>(tx));
	std::fflush(stdout);
}

run_counters sum_run_counters(const runtime &rt)
{
	run_counters total{};
	for (const auto &w : rt.workers)
		for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
			total[i] += w->state.stats->counters[i] - w->baseline[i];
	return total;
}

void print_run_counters(const run_counters &total)
{
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
		std::printf("%s %llu\n", counter_table[i].name, static_cast<unsigned long long>(total[i]));
	std::fflush(stdout);
}

} // namespace sluice
