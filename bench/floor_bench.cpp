// SPDX-License-Identifier: Apache-2.0
// The memory floor of a connection-table lookup on this machine: what
// bench_pipeline's established packets could not go below, measured on the
// same table (sluice's 256-byte buckets, the same sizes, the same pages:
// bench/table_mem.h) with nothing else in the way. scripts/bench runs it in
// the pipeline section, in the same run, and prints it beside.
//
// Each lookup is a random bucket of the whole table (as bench_pipeline's
// established packets visit their flows in a random order):
//  - serial: one lookup at a time, the next bucket depending on what the
//    last read returned: the latency of one miss, nothing overlapped, plus
//    the hash that picks the bucket (the 1K-flow figure, no misses, is that
//    hash's own cost);
//  - one_line: bursts of 32, every bucket's tag line prefetched before any
//    is read, then each read and its last-seen word written (prefetches as
//    the worker's, __builtin_prefetch(p, 1, 3): prefetcht0 on a target
//    without PRFCHW);
//  - two_lines: bursts of 32 in three passes, as the worker's stages: every
//    tag line prefetched; then each tag line read and the line of the way
//    it names prefetched (always another line: the worst case); then each
//    way line read and written. Two dependent misses, each overlapped
//    across the burst: the floor of a lookup that finds its flow in way
//    1-3, and the figure docs/performance.md's targets add.
//
// bench_floor [--pages=4k] [Google Benchmark flags]
// Names: floor/<serial|one_line|two_lines>/<flows>; the figure is the
// counter ns_per_lookup (thp_MiB: the process's AnonHugePages, the table's
// and anything else's). Each run fills its table just before it is timed,
// as bench_pipeline builds its fixture: what of it the last-level cache
// still holds is warm in both alike.
#include "table_mem.h"
#include "table_size.h"

#include <sluice/conntrack.h>
#include <sluice/hash.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

using namespace sluice;

namespace {

constexpr int burst = 32;

bench::table_arena tables{"bench_floor"};

// A random bucket per counter value: MurmurHash3's finaliser (hash.h).
inline uint64_t mix(uint64_t x)
{
	return sluice_fmix64(x);
}

enum class mode { serial, one_line, two_lines };

void bm_floor(benchmark::State &state, mode md, uint32_t flows)
{
	const uint32_t entries = bench::table_entries_for(flows);
	const size_t bytes = sluice_ct_table_bytes(entries);
	auto *t = static_cast<sluice_ct_table *>(tables.get(bytes));
	sluice_ct_table_init(t, entries, nullptr, 0);
	const uint64_t thp = bench::anon_huge_bytes();
	sluice_ct_bucket *const buckets = t->buckets;
	const uint64_t n_buckets = t->n_buckets;
	// Every way 0 names a way 1-3 in its tags, so two_lines always reads a
	// second line.
	for (uint64_t i = 0; i < n_buckets; i++)
		for (int w = 0; w < SLUICE_CT_WAYS; w++)
			buckets[i].way[0].tags[w] = static_cast<uint16_t>(1 + (mix(i * 4 + w) % 3));

	uint64_t k = flows, acc = 0, lookups = 0;
	sluice_ct_entry *e[burst];
	auto one = [&] {
		switch (md) {
		case mode::serial:
			for (int j = 0; j < burst; j++) {
				// k + acc only grows (acc by the tag read, 1-3), so every
				// lookup is another random bucket, and it waits on the last.
				sluice_ct_bucket *b = &buckets[mix(k++ + acc) & (n_buckets - 1)];
				acc += b->way[0].tags[0];
				b->way[0].last_seen_s = static_cast<uint32_t>(acc);
			}
			break;
		case mode::one_line:
			for (int j = 0; j < burst; j++) {
				e[j] = &buckets[mix(k++) & (n_buckets - 1)].way[0];
				__builtin_prefetch(e[j], 1, 3);
			}
			for (int j = 0; j < burst; j++) {
				acc += e[j]->tags[0];
				e[j]->last_seen_s = static_cast<uint32_t>(acc);
			}
			break;
		case mode::two_lines:
			for (int j = 0; j < burst; j++) {
				e[j] = &buckets[mix(k++) & (n_buckets - 1)].way[0];
				__builtin_prefetch(e[j], 1, 3);
			}
			for (int j = 0; j < burst; j++) {
				e[j] += e[j]->tags[j & (SLUICE_CT_WAYS - 1)];
				__builtin_prefetch(e[j], 1, 3);
			}
			for (int j = 0; j < burst; j++) {
				acc += e[j]->state;
				e[j]->last_seen_s = static_cast<uint32_t>(acc);
			}
			break;
		}
		lookups += burst;
	};
	for (int i = 0; i < 2000; i++) // warm-up, as bench_pipeline's
		one();
	lookups = 0;
	const auto t0 = std::chrono::steady_clock::now();
	for (auto _ : state)
		one();
	const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
	benchmark::DoNotOptimize(acc);
	state.counters["ns_per_lookup"] = ns / static_cast<double>(lookups ? lookups : 1);
	state.counters["flows"] = flows;
	state.counters["table_MiB"] = static_cast<double>(bytes) / (1 << 20);
	state.counters["thp_MiB"] = static_cast<double>(thp) / (1 << 20);
}

std::string flows_name(uint32_t n)
{
	return n % 1000000 == 0 ? std::to_string(n / 1000000) + "m" : std::to_string(n / 1000) + "k";
}

} // namespace

int main(int argc, char **argv)
{
	std::vector<char *> rest;
	for (int i = 0; i < argc; i++) {
		if (!tables.take_pages_option(argv[i]))
			rest.push_back(argv[i]);
	}
	int rargc = static_cast<int>(rest.size());
	benchmark::Initialize(&rargc, rest.data());
	if (benchmark::ReportUnrecognizedArguments(rargc, rest.data()))
		return 2;
	const std::pair<const char *, mode> modes[] = {
		{"serial", mode::serial}, {"one_line", mode::one_line}, {"two_lines", mode::two_lines}};
	for (uint32_t flows : {1000u, 100000u, 1000000u, 10000000u})
		for (const auto &[name, md] : modes)
			benchmark::RegisterBenchmark(("floor/" + std::string(name) + "/" + flows_name(flows)).c_str(),
						     bm_floor, md, flows)
				->Unit(benchmark::kNanosecond);
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
