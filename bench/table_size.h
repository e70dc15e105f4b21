// SPDX-License-Identifier: Apache-2.0
// How the benchmarks size a connection table for N active flows, the same
// for the DPDK pipeline (bench_pipeline) and the XDP program (bench_xdp) so
// their figures at one flow count compare: the power of two at or above
// 1.5 x N entries (2,048 / 262,144 / 2,097,152 / 16,777,216 for 1K / 100K /
// 1M / 10M flows), a table a little over half full.
#pragma once

#include <cstdint>

namespace sluice::bench {

inline uint32_t table_entries_for(uint32_t flows)
{
	uint64_t want = static_cast<uint64_t>(flows) * 3 / 2, n = 1;
	while (n < want)
		n <<= 1;
	return static_cast<uint32_t>(n);
}

} // namespace sluice::bench
