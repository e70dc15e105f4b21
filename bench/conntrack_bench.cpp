// SPDX-License-Identifier: Apache-2.0
// The connection table (include/sluice/conntrack.h) as the DPDK worker runs
// it: a burst of 32 flows is hashed, every bucket prefetched, then looked up
// or inserted. Reported per flow (ns/flow), for tables of 1K to 10M entries
// filled to capacity with random flows: at 1K the table sits in L1/L2, at
// 10M (1 GiB) every bucket is a DRAM miss, which the prefetch overlaps.
//
// bench_conntrack [--benchmark_filter=...]
#include "../tests/unit/random_keys.h"

#include <sluice/conntrack.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

namespace {

constexpr uint32_t burst = 32; // dataplane/worker.h burst_size
constexpr uint32_t now_s = 1;  // nothing expires during a run

using sluice::testing::random_key;

struct table_deleter {
	void operator()(sluice_ct_table *t) const { std::free(t); }
};

// A table of `entries` filled with as many random flows (so about 80% stay:
// the rest were evicted by their bucket), the flows that stayed in random
// order, and new flows for inserts. Built once per size.
struct fixture {
	std::unique_ptr<sluice_ct_table, table_deleter> table;
	std::vector<sluice_flow_key> present;
	std::vector<sluice_flow_key> fresh;
};

fixture &filled(uint32_t entries)
{
	static std::map<uint32_t, std::unique_ptr<fixture>> cache;
	auto &slot = cache[entries];
	if (slot)
		return *slot;
	slot = std::make_unique<fixture>();
	const uint64_t bytes = sluice_ct_table_bytes(entries);
	auto *t = static_cast<sluice_ct_table *>(std::aligned_alloc(SLUICE_CACHE_LINE, bytes));
	if (t == nullptr)
		std::abort();
	std::memset(static_cast<void *>(t), 0, bytes);
	sluice_ct_table_init(t, entries, nullptr, 0x9E3779B97F4A7C15ull);
	slot->table.reset(t);
	for (uint32_t i = 0; i < entries; i++) {
		const sluice_flow_key k = random_key(i);
		const uint32_t h = sluice_ct_hash(&k, t->secret);
		sluice_ct_insert(sluice_ct_table_bucket(t, h), &k, sluice_ct_tag(h), i, 1, SLUICE_CT_EST, now_s,
				 &t->to, nullptr);
	}
	for (uint32_t i = 0; i < entries; i++) {
		const sluice_flow_key k = random_key(i);
		const uint32_t h = sluice_ct_hash(&k, t->secret);
		if (sluice_ct_find(sluice_ct_table_bucket(t, h), &k, sluice_ct_tag(h), now_s, &t->to))
			slot->present.push_back(k);
	}
	const uint32_t n_fresh = entries < (1u << 20) ? entries : (1u << 20);
	for (uint32_t i = 0; i < n_fresh; i++)
		slot->fresh.push_back(random_key(0x100000000ULL + i));
	return *slot;
}

// Stage 1 of a burst, as the worker does it: hash, locate and prefetch every
// bucket's tag line before touching any, then the lines the tags point to.
void locate(sluice_ct_table *t, const sluice_flow_key *keys, sluice_ct_bucket **b, uint16_t *tag,
	    bool prefetch)
{
	for (uint32_t j = 0; j < burst; j++) {
		const uint32_t h = sluice_ct_hash(&keys[j], t->secret);
		b[j] = sluice_ct_table_bucket(t, h);
		tag[j] = sluice_ct_tag(h);
		if (prefetch)
			sluice_ct_prefetch(b[j]);
	}
	if (prefetch)
		for (uint32_t j = 0; j < burst; j++)
			sluice_ct_prefetch_ways(b[j], tag[j]);
}

void per_flow(benchmark::State &state, const fixture &f)
{
	state.counters["ns/flow"] = benchmark::Counter(
		(double)burst, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
	state.counters["table_MiB"] =
		(double)sluice_ct_table_bytes((uint32_t)state.range(0)) / (1024.0 * 1024.0);
	state.counters["kept"] = (double)f.present.size() / (double)state.range(0);
}

// A packet of a known flow: find hits, update refreshes.
void lookup_hit(benchmark::State &state, bool prefetch)
{
	fixture &f = filled((uint32_t)state.range(0));
	sluice_ct_table *t = f.table.get();
	const size_t n = f.present.size() / burst * burst;
	size_t pos = 0;
	uint64_t sum = 0;
	sluice_ct_bucket *b[burst];
	uint16_t tag[burst];
	for (auto _ : state) {
		const sluice_flow_key *keys = &f.present[pos];
		locate(t, keys, b, tag, prefetch);
		for (uint32_t j = 0; j < burst; j++) {
			sluice_ct_entry *e = sluice_ct_find(b[j], &keys[j], tag[j], now_s, &t->to);
			if (e == nullptr)
				continue; // evicted by a new_flow run before this one
			sluice_ct_update(e, SLUICE_TCP_ACK, now_s);
			sum += e->backend_id;
		}
		pos = pos + burst == n ? 0 : pos + burst;
	}
	benchmark::DoNotOptimize(sum);
	per_flow(state, f);
}

// A new flow: find misses, insert takes a way (in a full table: evicts).
void new_flow(benchmark::State &state, bool prefetch)
{
	fixture &f = filled((uint32_t)state.range(0));
	sluice_ct_table *t = f.table.get();
	const size_t n = f.fresh.size() / burst * burst;
	size_t pos = 0;
	uint64_t evictions = 0;
	sluice_ct_bucket *b[burst];
	uint16_t tag[burst];
	for (auto _ : state) {
		const sluice_flow_key *keys = &f.fresh[pos];
		locate(t, keys, b, tag, prefetch);
		for (uint32_t j = 0; j < burst; j++) {
			if (sluice_ct_find(b[j], &keys[j], tag[j], now_s, &t->to) != nullptr)
				continue; // a fresh key already inserted by an earlier lap
			bool evicted;
			sluice_ct_insert(b[j], &keys[j], tag[j], 7, 1, SLUICE_CT_SYN, now_s, &t->to, &evicted);
			evictions += evicted;
		}
		pos = pos + burst == n ? 0 : pos + burst;
	}
	benchmark::DoNotOptimize(evictions);
	per_flow(state, f);
}

// Insert alone: the cost sluice_ct_insert adds to a miss. (Once the fresh
// keys have gone round, an insert replaces its own key: the same scan.)
void insert_only(benchmark::State &state)
{
	fixture &f = filled((uint32_t)state.range(0));
	sluice_ct_table *t = f.table.get();
	const size_t n = f.fresh.size() / burst * burst;
	size_t pos = 0;
	uint64_t sum = 0;
	sluice_ct_bucket *b[burst];
	uint16_t tag[burst];
	for (auto _ : state) {
		const sluice_flow_key *keys = &f.fresh[pos];
		locate(t, keys, b, tag, true);
		for (uint32_t j = 0; j < burst; j++)
			sum += sluice_ct_insert(b[j], &keys[j], tag[j], 7, 1, SLUICE_CT_SYN, now_s, &t->to, nullptr)->vip_id;
		pos = pos + burst == n ? 0 : pos + burst;
	}
	benchmark::DoNotOptimize(sum);
	per_flow(state, f);
}

void bm_lookup_hit(benchmark::State &state) { lookup_hit(state, true); }
void bm_lookup_hit_no_prefetch(benchmark::State &state) { lookup_hit(state, false); }
void bm_new_flow(benchmark::State &state) { new_flow(state, true); }
void bm_insert(benchmark::State &state) { insert_only(state); }

void sizes(benchmark::internal::Benchmark *b)
{
	for (int64_t n : {1'000, 100'000, 1'000'000, 10'000'000})
		b->Arg(n);
	b->Unit(benchmark::kNanosecond);
}

BENCHMARK(bm_lookup_hit)->Apply(sizes);
BENCHMARK(bm_lookup_hit_no_prefetch)->Apply(sizes);
BENCHMARK(bm_new_flow)->Apply(sizes);
BENCHMARK(bm_insert)->Apply(sizes);

} // namespace

BENCHMARK_MAIN();
