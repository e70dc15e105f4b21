// SPDX-License-Identifier: Apache-2.0
// Maglev table generation (controlplane/maglev.*) and the shared lookup's
// division-free modulo (include/sluice/maglev.h).
#include "maglev.h"

#include "error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

// 10.0.0.1, 10.0.0.2, ... with ids 0, 1, ...
std::vector<maglev_backend> v4_backends(uint32_t n, uint32_t weight = 1)
{
	std::vector<maglev_backend> v;
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t host = i + 1;
		v.push_back({ip_address::v4(10, (uint8_t)(host >> 16), (uint8_t)(host >> 8), (uint8_t)host),
			     weight, i});
	}
	return v;
}

ip_address addr(const char *text)
{
	auto a = ip_address::parse(text);
	EXPECT_TRUE(a.has_value()) << text;
	return *a;
}

// FNV-1a (64-bit) over the table's ids as little-endian bytes: fixed
// arithmetic, so a digest means the same table on every machine.
uint64_t digest(const std::vector<uint32_t> &table)
{
	uint64_t h = 0xCBF29CE484222325ULL;
	for (uint32_t v : table)
		for (int b = 0; b < 4; b++) {
			h ^= (v >> (8 * b)) & 0xFF;
			h *= 0x100000001B3ULL;
		}
	return h;
}

std::map<uint32_t, uint32_t> slot_counts(const std::vector<uint32_t> &table)
{
	std::map<uint32_t, uint32_t> counts;
	for (uint32_t v : table)
		counts[v]++;
	return counts;
}

// Pseudocode 1 of the paper (§3.4), written as plainly as possible with a
// division per permutation entry, plus the weighted rounds maglev.cpp
// documents (integer credit in units of 1 / max weight, starting at
// max - weight; address order within a round). The library must build the
// same table however it schedules and probes.
std::vector<uint32_t> reference_build(std::vector<maglev_backend> bs, uint32_t m)
{
	std::erase_if(bs, [](const maglev_backend &b) { return b.weight == 0; });
	std::sort(bs.begin(), bs.end(),
		  [](const maglev_backend &a, const maglev_backend &b) { return a.address < b.address; });
	std::vector<uint32_t> entry(m, SLUICE_MAGLEV_EMPTY);
	if (bs.empty())
		return entry;
	const size_t n = bs.size();
	std::vector<uint64_t> offset(n), skip(n), next(n, 0), credit(n);
	uint64_t max_w = 0;
	for (const auto &b : bs)
		max_w = std::max<uint64_t>(max_w, b.weight);
	for (size_t i = 0; i < n; i++) {
		alignas(8) uint8_t a[16];
		std::memcpy(a, bs[i].address.bytes.data(), 16);
		offset[i] = sluice_maglev_offset(a, bs[i].address.family, m);
		skip[i] = sluice_maglev_skip(a, bs[i].address.family, m);
		credit[i] = max_w - bs[i].weight;
	}
	uint32_t filled = 0;
	for (;;) {
		for (size_t i = 0; i < n; i++) {
			credit[i] += bs[i].weight;
			if (credit[i] < max_w)
				continue;
			credit[i] -= max_w;
			uint64_t c;
			do {
				c = (offset[i] + next[i] * skip[i]) % m;
				next[i]++;
			} while (entry[c] != SLUICE_MAGLEV_EMPTY);
			entry[c] = bs[i].id;
			if (++filled == m)
				return entry;
		}
	}
}

std::string error_of(const std::vector<maglev_backend> &bs, uint32_t m)
{
	try {
		maglev_build(bs, m);
	} catch (const error &e) {
		return e.what();
	}
	return "(no error)";
}

TEST(MaglevBuild, FillsEverySlotWithALiveBackend)
{
	for (uint32_t m : {251u, 65537u}) {
		for (uint32_t n : {2u, 10u, 100u, 1000u}) {
			auto bs = v4_backends(n);
			bs[0].weight = 0; // drained: must not appear
			auto table = maglev_build(bs, m);
			ASSERT_EQ(table.size(), m);
			for (uint32_t v : table) {
				ASSERT_NE(v, SLUICE_MAGLEV_EMPTY) << "m=" << m << " n=" << n;
				ASSERT_GE(v, 1u);
				ASSERT_LT(v, n);
			}
		}
	}
}

// Computed once and fixed: a table is part of what every LB of a fleet must
// agree on, so any change to hashing, ordering or weighting shows up here.
TEST(MaglevBuild, GoldenDigests)
{
	EXPECT_EQ(digest(maglev_build(v4_backends(10), 251)), 0xE2D7778BCA5D79C4ULL);
	EXPECT_EQ(digest(maglev_build(v4_backends(100), 65537)), 0x8440EE96906AA7D1ULL);

	const std::vector<maglev_backend> mixed = {
		{addr("10.0.0.1"), 100, 0},
		{addr("10.0.0.2"), 50, 1},
		{addr("fd00::1"), 100, 2},
		{addr("fd00::2"), 0, 3},
		{addr("2001:db8::5"), 25, 4},
	};
	EXPECT_EQ(digest(maglev_build(mixed, 251)), 0x48FF12C780DD5693ULL);
	EXPECT_EQ(digest(maglev_build(mixed, 65537)), 0xBCF7C3277F489527ULL);

	// Skewed weights (one backend far heavier than the rest).
	auto skewed = v4_backends(50);
	skewed[7].weight = 1000;
	EXPECT_EQ(digest(maglev_build(skewed, 65537)), 0xBE1D598C75290DD3ULL);
}

TEST(MaglevBuild, EqualWeightsMatchPaperPseudocode)
{
	for (uint32_t m : {251u, 65537u})
		for (uint32_t n : {1u, 3u, 10u, 100u, 1000u})
			EXPECT_EQ(maglev_build(v4_backends(n), m), reference_build(v4_backends(n), m))
				<< "m=" << m << " n=" << n;
	// More backends than slots: only the first M turns (address order) count.
	EXPECT_EQ(maglev_build(v4_backends(300), 251), reference_build(v4_backends(300), 251));
}

TEST(MaglevBuild, WeightedMatchesReferenceRounds)
{
	// From close weights to one backend outweighing all others together:
	// maglev.cpp schedules these in different ways, and the tables must
	// not show it.
	std::mt19937 rng(20160316);
	struct weights_case {
		const char *name;
		uint32_t lo, hi; // weights uniform in [lo, hi] ...
		uint32_t heavy, n_heavy; // ... but n_heavy of them at `heavy`
	};
	const weights_case cases[] = {
		{"close", 90, 100, 0, 0},
		{"wide", 1, 100, 0, 0},
		{"some heavy", 1, 3, 100, 3},
		{"one heavy", 1, 3, 1000, 1},
		{"extreme", 1, 1, 4000000000u, 2},
	};
	for (const auto &c : cases) {
		for (uint32_t m : {251u, 65537u}) {
			auto bs = v4_backends(100);
			std::uniform_int_distribution<uint32_t> w(c.lo, c.hi);
			for (auto &b : bs)
				b.weight = w(rng);
			for (uint32_t i = 0; i < c.n_heavy; i++)
				bs[5 + 31 * i].weight = c.heavy;
			bs[3].weight = 0;
			EXPECT_EQ(maglev_build(bs, m), reference_build(bs, m)) << c.name << " m=" << m;
		}
	}
}

TEST(MaglevBuild, LargeTablesMatchReference)
{
	// maglev.cpp keeps which slots are taken as bytes up to 2^19 slots and
	// as bits above: both sides of that line, equal and mixed weights.
	for (uint32_t m : {524287u, 524309u}) {
		EXPECT_EQ(maglev_build(v4_backends(100), m), reference_build(v4_backends(100), m))
			<< "m=" << m;
		auto bs = v4_backends(50);
		for (uint32_t i = 0; i < bs.size(); i++)
			bs[i].weight = 1 + (i * 37) % 100;
		EXPECT_EQ(maglev_build(bs, m), reference_build(bs, m)) << "weighted m=" << m;
	}
}

TEST(MaglevBuild, EqualWeightsShareWithinOnePercent)
{
	const uint32_t m = 65537, n = 100;
	auto counts = slot_counts(maglev_build(v4_backends(n), m));
	ASSERT_EQ(counts.size(), n);
	const double fair = (double)m / n;
	for (auto [id, count] : counts)
		EXPECT_NEAR(count, fair, fair * 0.01) << "backend " << id;
}

TEST(MaglevBuild, WeightsOneTwoThreeFourGiveProportionalShares)
{
	const uint32_t m = 65537;
	auto bs = v4_backends(4);
	for (uint32_t i = 0; i < 4; i++)
		bs[i].weight = i + 1;
	auto counts = slot_counts(maglev_build(bs, m));
	ASSERT_EQ(counts.size(), 4u);
	for (uint32_t i = 0; i < 4; i++) {
		const double share = (double)counts[i] / m;
		EXPECT_NEAR(share, (i + 1) / 10.0, 0.01 * (i + 1) / 10.0) << "weight " << i + 1;
	}
}

TEST(MaglevBuild, LargeWeightsKeepProportions)
{
	// Weights as an operator may write them (percentages, thousands).
	const uint32_t m = 65537;
	auto bs = v4_backends(3);
	bs[0].weight = 100;
	bs[1].weight = 300;
	bs[2].weight = 600;
	auto counts = slot_counts(maglev_build(bs, m));
	EXPECT_NEAR((double)counts[0] / m, 0.1, 0.001);
	EXPECT_NEAR((double)counts[1] / m, 0.3, 0.003);
	EXPECT_NEAR((double)counts[2] / m, 0.6, 0.006);
}

TEST(MaglevBuild, EveryBackendWithWeightGetsASlot)
{
	// Its fair share rounds to nothing, but a backend someone left at
	// weight 1 must still see traffic.
	auto bs = v4_backends(100);
	bs[42].weight = 1000000;
	auto counts = slot_counts(maglev_build(bs, 251));
	EXPECT_EQ(counts.size(), 100u);
	for (auto [id, count] : counts)
		EXPECT_GE(count, 1u) << "backend " << id;
}

TEST(MaglevBuild, RemovingOneBackendMovesFewOtherSlotsAndReAddingRestores)
{
	const uint32_t m = 65537, n = 100;
	const auto all = v4_backends(n);
	const auto before = maglev_build(all, m);
	for (uint32_t removed : {0u, 37u, 99u}) {
		auto fewer = all;
		fewer.erase(fewer.begin() + removed);
		const auto after = maglev_build(fewer, m);
		uint32_t others = 0, moved = 0;
		for (uint32_t s = 0; s < m; s++) {
			if (before[s] == removed)
				continue;
			others++;
			if (after[s] != before[s])
				moved++;
		}
		EXPECT_LE(moved, others / 100) << "removed backend " << removed;
		for (uint32_t v : after)
			ASSERT_NE(v, removed);

		auto again = fewer;
		again.push_back(all[removed]);
		EXPECT_EQ(maglev_build(again, m), before) << "re-added backend " << removed;
	}
}

TEST(MaglevBuild, InsertionOrderDoesNotMatter)
{
	const uint32_t m = 65537;
	auto bs = v4_backends(100);
	bs.push_back({addr("fd00::1"), 1, 100});
	bs.push_back({addr("2001:db8::1"), 3, 101});
	bs[10].weight = 2;
	bs[20].weight = 0;
	const auto table = maglev_build(bs, m);
	std::mt19937 rng(42);
	for (int i = 0; i < 5; i++) {
		std::shuffle(bs.begin(), bs.end(), rng);
		EXPECT_EQ(maglev_build(bs, m), table);
	}
	std::reverse(bs.begin(), bs.end());
	EXPECT_EQ(maglev_build(bs, m), table);
}

TEST(MaglevBuild, SameBytesDifferentFamilyAreDifferentBackends)
{
	// 10.0.0.1 and 0a00:0001:: share their first four bytes; the family
	// keeps them apart, both as keys and in the permutation hashes.
	std::vector<maglev_backend> bs = {{addr("10.0.0.1"), 1, 0}, {addr("a00:1::"), 1, 1}};
	auto counts = slot_counts(maglev_build(bs, 251));
	EXPECT_EQ(counts.size(), 2u);
}

TEST(MaglevBuild, ZeroWeightBackendsGetNoSlots)
{
	auto bs = v4_backends(10);
	bs[2].weight = 0;
	bs[7].weight = 0;
	auto counts = slot_counts(maglev_build(bs, 65537));
	EXPECT_EQ(counts.size(), 8u);
	EXPECT_EQ(counts.count(2), 0u);
	EXPECT_EQ(counts.count(7), 0u);
}

TEST(MaglevBuild, NoLiveBackendsGiveAnEmptyTable)
{
	const std::vector<uint32_t> empty(251, SLUICE_MAGLEV_EMPTY);
	EXPECT_EQ(maglev_build(std::vector<maglev_backend>{}, 251), empty);
	EXPECT_EQ(maglev_build(v4_backends(5, 0), 251), empty);

	std::vector<uint32_t> table(251, 7); // overwritten, not left stale
	maglev_build(std::vector<maglev_backend>{}, table);
	EXPECT_EQ(table, empty);
}

TEST(MaglevBuild, SpanOverloadFillsTheSameTable)
{
	auto bs = v4_backends(20);
	bs[4].weight = 3;
	std::vector<uint32_t> table(65537, 0);
	maglev_build(bs, table);
	EXPECT_EQ(table, maglev_build(bs, 65537));
}

TEST(MaglevBuild, RejectsBadSizesNamingTheValue)
{
	const auto bs = v4_backends(3);
	EXPECT_EQ(error_of(bs, 65536), "maglev table size 65536 is not prime");
	EXPECT_EQ(error_of(bs, 1), "maglev table size 1 is outside 251..4194301");
	EXPECT_EQ(error_of(bs, 241), "maglev table size 241 is outside 251..4194301"); // prime
	EXPECT_EQ(error_of(bs, 4194319), "maglev table size 4194319 is outside 251..4194301"); // prime
	EXPECT_EQ(error_of(bs, 0xFFFFFFFFu), "maglev table size 4294967295 is outside 251..4194301");

	std::vector<uint32_t> table(1000);
	EXPECT_THROW(maglev_build(bs, table), error);
}

TEST(MaglevBuild, RejectsBadBackends)
{
	auto twice = v4_backends(3);
	twice.push_back({addr("10.0.0.2"), 0, 9}); // a duplicate even when drained
	EXPECT_EQ(error_of(twice, 251), "maglev: backend 10.0.0.2 is listed twice");

	std::vector<maglev_backend> v6 = {{addr("fd00::1"), 1, 0}, {addr("fd00:0::1"), 1, 1}};
	EXPECT_EQ(error_of(v6, 251), "maglev: backend fd00::1 is listed twice");

	auto unset = v4_backends(3);
	unset[1].address = ip_address{};
	EXPECT_EQ(error_of(unset, 251), "maglev: backend #1 has no address");

	auto reserved = v4_backends(3);
	reserved[2].id = SLUICE_MAGLEV_EMPTY;
	EXPECT_EQ(error_of(reserved, 251),
		  "maglev: backend 10.0.0.3 has id 4294967295, the value of an empty slot");
}

TEST(IsPrime, KnownValues)
{
	for (uint32_t p : {2u, 3u, 5u, 251u, 65537u, 1048573u, 4194301u, 4294967291u})
		EXPECT_TRUE(is_prime(p)) << p;
	for (uint32_t c : {0u, 1u, 4u, 9u, 25u, 65536u, 1048575u, 4194303u, 65537u * 65521u, 0xFFFFFFFFu})
		EXPECT_FALSE(is_prime(c)) << c;
	// Against a sieve for every n below 10,000.
	std::vector<bool> composite(10000, false);
	for (uint32_t i = 2; i < 10000; i++) {
		if (!composite[i])
			for (uint32_t j = i * i; j < 10000; j += i)
				composite[j] = true;
		EXPECT_EQ(is_prime(i), !composite[i]) << i;
	}
}

TEST(Fastmod, EqualsModulo)
{
	std::mt19937 rng(65537);
	std::vector<uint32_t> ms = {1, 2, 3, 251, 65537, 1048573, 4194301, 0x7FFFFFFF, 0xFFFFFFFF};
	for (int i = 0; i < 100; i++)
		ms.push_back(rng());
	const uint32_t edge[] = {0, 1, 250, 251, 252, 65536, 65537, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF};
	for (uint32_t m : ms) {
		const uint64_t inv = sluice_fastmod_inverse(m);
		for (uint32_t h : edge)
			ASSERT_EQ(sluice_fastmod(h, inv, m), h % m) << "hash " << h << " m " << m;
		for (int i = 0; i < 10000; i++) {
			const uint32_t h = rng();
			ASSERT_EQ(sluice_fastmod(h, inv, m), h % m) << "hash " << h << " m " << m;
			ASSERT_EQ(sluice_maglev_slot(h, inv, m), h % m);
		}
	}
}

} // namespace
} // namespace sluice
