// SPDX-License-Identifier: Apache-2.0
// The shared decisions of include/sluice/ as C++ sees them. The same headers
// compile for BPF (check_headers.sh); the XDP tests check that the BPF build
// computes the same values.
#include <sluice/counters.h>
#include <sluice/flow.h>
#include <sluice/maglev.h>
#include <sluice/packet.h>
#include <sluice/shm.h>

#include "metrics.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <string>

namespace {

sluice_flow_key v4_key()
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	const uint8_t src[4] = {192, 0, 2, 1}, dst[4] = {10, 200, 1, 1};
	std::memcpy(k.src, src, 4);
	std::memcpy(k.dst, dst, 4);
	k.sport_be = sluice_htons(40000);
	k.dport_be = sluice_htons(80);
	k.proto = SLUICE_IPPROTO_TCP;
	k.family = SLUICE_AF_INET;
	return k;
}

// Golden values: the flow hash is part of the ABI. If one of these changes,
// every flow of a running fleet would move to another backend, and LBs of
// two versions would disagree; bump SLUICE_ABI_VERSION on purpose or fix it.
TEST(FlowHash, GoldenValuesNeverChange)
{
	sluice_flow_key k = v4_key();
	EXPECT_EQ(sluice_flow_hash(&k), 0x8c9dfb42u);

	sluice_flow_key z;
	std::memset(&z, 0, sizeof(z));
	EXPECT_EQ(sluice_flow_hash(&z), 0xb18748d9u);

	sluice_flow_key s;
	std::memset(&s, 0, sizeof(s));
	s.family = SLUICE_AF_INET6;
	s.proto = SLUICE_IPPROTO_UDP;
	for (int i = 0; i < 16; i++) {
		s.src[i] = static_cast<uint8_t>((i == 0 ? 0xfd : 0) + i);
		s.dst[i] = static_cast<uint8_t>((i == 0 ? 0xfd : 0) + 0x10 + i);
	}
	s.sport_be = sluice_htons(5353);
	s.dport_be = sluice_htons(53);
	EXPECT_EQ(sluice_flow_hash(&s), 0xfed8d6dbu);
}

TEST(FlowHash, EveryByteOfTheKeyMatters)
{
	sluice_flow_key k = v4_key();
	uint32_t base = sluice_flow_hash(&k);
	for (size_t i = 0; i < sizeof(k); i++) {
		sluice_flow_key m = k;
		reinterpret_cast<uint8_t *>(&m)[i] ^= 0x01;
		EXPECT_NE(sluice_flow_hash(&m), base) << "byte " << i;
	}
}

TEST(FlowHash, SpreadsSequentialClientPortsEvenly)
{
	// 65,536 flows differing only in the client port, as a NAT produces,
	// over 7 buckets: each within 3% of its share.
	sluice_flow_key k = v4_key();
	uint32_t buckets[7] = {};
	for (uint32_t p = 0; p < 65536; p++) {
		k.sport_be = sluice_htons(static_cast<uint16_t>(p));
		buckets[sluice_flow_hash(&k) % 7]++;
	}
	for (uint32_t b : buckets)
		EXPECT_NEAR(b, 65536.0 / 7, 65536.0 / 7 * 0.03);
}

TEST(FlowKey, EqualityComparesAllFields)
{
	sluice_flow_key a = v4_key(), b = v4_key();
	EXPECT_TRUE(sluice_flow_key_equal(&a, &b));
	b.family = SLUICE_AF_INET6;
	EXPECT_FALSE(sluice_flow_key_equal(&a, &b));
}

TEST(Gue, SourcePortInDynamicRange)
{
	std::mt19937 rng(7);
	for (int i = 0; i < 10000; i++) {
		uint16_t p = sluice_gue_source_port(static_cast<uint32_t>(rng()));
		EXPECT_GE(p, 49152);
	}
}

TEST(ActiveIndex, PacksGenerationAndSlot)
{
	uint64_t a = sluice_active_pack(123456789, 3);
	EXPECT_EQ(sluice_active_generation(a), 123456789u);
	EXPECT_EQ(sluice_active_slot(a), 3u);
}

TEST(Counters, NamesAreUniqueAndKindsKnown)
{
	std::set<std::string> names;
	const std::set<std::string> kinds = {"rx", "tx", "pass", "drop", "event"};
	for (const auto &c : sluice::counter_table) {
		EXPECT_TRUE(names.insert(c.name).second) << c.name;
		EXPECT_TRUE(kinds.count(c.kind)) << c.name << " has kind " << c.kind;
		if (std::string(c.kind) == "drop") {
			EXPECT_EQ(std::string(c.name).rfind("drop_", 0), 0u) << c.name;
		}
		EXPECT_GT(std::strlen(c.help), 10u) << c.name;
	}
	EXPECT_EQ(names.size(), static_cast<size_t>(SLUICE_CNT__COUNT));
}

} // namespace
