// SPDX-License-Identifier: Apache-2.0
// Maglev table build time (controlplane/maglev.cpp): what a backend change
// costs the control plane per VIP before the new table can be published.
#include "maglev.h"

#include <benchmark/benchmark.h>

#include <vector>

namespace {

std::vector<sluice::maglev_backend> backends(uint32_t n)
{
	std::vector<sluice::maglev_backend> v;
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t host = i + 1;
		v.push_back({sluice::ip_address::v4(10, (uint8_t)(host >> 16), (uint8_t)(host >> 8),
						    (uint8_t)host),
			     100, i});
	}
	return v;
}

void run(benchmark::State &state, const std::vector<sluice::maglev_backend> &bs)
{
	std::vector<uint32_t> table((size_t)state.range(0));
	for (auto _ : state) {
		sluice::maglev_build(bs, table);
		benchmark::DoNotOptimize(table.data());
		benchmark::ClobberMemory();
	}
	state.counters["slots/s"] =
		benchmark::Counter((double)table.size(), benchmark::Counter::kIsIterationInvariantRate);
}

// Equal weights: the common case.
void bm_build_equal(benchmark::State &state)
{
	run(state, backends((uint32_t)state.range(1)));
}

// Weights spread over 1..100 (max/mean about 2): the sweep scheduler.
void bm_build_weighted(benchmark::State &state)
{
	auto bs = backends((uint32_t)state.range(1));
	for (size_t i = 0; i < bs.size(); i++)
		bs[i].weight = 1 + (uint32_t)((i * 37) % 100);
	run(state, bs);
}

// One backend in 64 at weight `heavy`, the rest at 1: max/mean of 7, 21,
// 32, 42 and 59, around maglev.cpp's sweep/heap switch (32). Measures where
// that switch belongs.
void bm_build_skewed(benchmark::State &state)
{
	auto bs = backends((uint32_t)state.range(1));
	for (size_t i = 0; i < bs.size(); i++)
		bs[i].weight = i % 64 == 0 ? (uint32_t)state.range(2) : 1;
	run(state, bs);
}

} // namespace

BENCHMARK(bm_build_equal)
	->ArgNames({"M", "N"})
	->ArgsProduct({{65537, 1048573}, {10, 100, 1000, 10000}})
	->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_build_weighted)
	->ArgNames({"M", "N"})
	->ArgsProduct({{65537, 1048573}, {1000}})
	->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_build_skewed)
	->ArgNames({"M", "N", "heavy"})
	->ArgsProduct({{65537}, {1000}, {8, 32, 64, 128, 1000}})
	->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
