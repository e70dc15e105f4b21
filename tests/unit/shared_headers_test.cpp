// SPDX-License-Identifier: Apache-2.0
// The shared decisions of include/sluice/ as C++ sees them. The same headers
// compile for BPF (check_headers.sh); the XDP tests check that the BPF build
// computes the same values.
#include <sluice/counters.h>
#include <sluice/encap.h>
#include <sluice/flow.h>
#include <sluice/maglev.h>
#include <sluice/packet.h>
#include <sluice/shm.h>

#include "metrics.h"

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
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

// The rule, written out here on its own: RFC 7605 §3 gives the dynamic
// range as 49152-65535 (16384 ports); the outer source port is the start of
// that range plus the flow hash modulo its size, so one flow keeps one port
// (RFC 8086 §3.1 asks for that) and the fabric's ECMP and the backend's RSS
// spread different flows.
uint16_t reference_gue_source_port(uint32_t flow_hash)
{
	return static_cast<uint16_t>(49152 + flow_hash % 16384);
}

// What a capture of the outer packet shows: the UDP header's first two
// bytes, in network order, as sluice_write_gue puts them on the wire.
uint16_t wire_gue_source_port(uint32_t flow_hash)
{
	uint8_t buf[sizeof(sluice_udp_hdr) + sizeof(sluice_gue_hdr)];
	std::memset(buf, 0xAA, sizeof(buf));
	sluice_udp_hdr u;
	sluice_gue_hdr g;
	sluice_write_gue(&u, &g, sluice_htons(6080), flow_hash, SLUICE_AF_INET, 100);
	std::memcpy(buf, &u, sizeof(u));
	return static_cast<uint16_t>(buf[0] << 8 | buf[1]);
}

sluice_flow_key v4_key_with_sport(uint16_t sport)
{
	sluice_flow_key k = v4_key();
	k.sport_be = sluice_htons(sport);
	return k;
}

TEST(Gue, SourcePortIsTheFlowHashInTheDynamicRange)
{
	// Golden values computed outside this code: the flow hash by hash.h's
	// written definition in Python (which gives FlowHash's golden hashes
	// too), the port by the rule above.
	sluice_flow_key zero;
	std::memset(&zero, 0, sizeof(zero));
	const struct {
		const char *what;
		sluice_flow_key key;
		uint32_t hash;
		uint16_t port;
	} golden[] = {
		{"192.0.2.1:40000 -> 10.200.1.1:80 tcp", v4_key(), 0x8c9dfb42u, 64322},
		{"192.0.2.1:40001 -> 10.200.1.1:80 tcp", v4_key_with_sport(40001), 0x862bba54u, 64084},
		{"192.0.2.1:40002 -> 10.200.1.1:80 tcp", v4_key_with_sport(40002), 0xc78fcabau, 51898},
		{"192.0.2.1:1024 -> 10.200.1.1:80 tcp", v4_key_with_sport(1024), 0xf84eba84u, 64132},
		{"all-zero key", zero, 0xb18748d9u, 51417},
	};
	std::set<uint16_t> ports;
	for (const auto &g : golden) {
		SCOPED_TRACE(g.what);
		EXPECT_EQ(sluice_flow_hash(&g.key), g.hash);
		EXPECT_EQ(reference_gue_source_port(g.hash), g.port);
		EXPECT_EQ(sluice_gue_source_port(g.hash), g.port);
		EXPECT_EQ(wire_gue_source_port(sluice_flow_hash(&g.key)), g.port);
		ports.insert(g.port);
	}
	// Different flows, different ports: neighbouring client ports of one
	// client included.
	EXPECT_EQ(ports.size(), std::size(golden));

	// Every client port of one client, as a NAT produces: each flow's port
	// is the rule's, and the flows use (nearly) the whole range: 65,536
	// flows over 16,384 ports leave about e^-4, 1.8%, of them unused.
	std::set<uint16_t> used;
	for (uint32_t p = 0; p < 65536; p++) {
		sluice_flow_key k = v4_key_with_sport(static_cast<uint16_t>(p));
		uint32_t h = sluice_flow_hash(&k);
		uint16_t port = wire_gue_source_port(h);
		if (port != reference_gue_source_port(h)) {
			ADD_FAILURE() << "client port " << p << ": flow hash " << h << " gave "
				      << port << ", want " << reference_gue_source_port(h);
			break;
		}
		used.insert(port);
	}
	EXPECT_GT(used.size(), 16384u * 95 / 100);
	EXPECT_GE(*used.begin(), 49152);

	// And for hashes no key gave here: both ends of the range are reached.
	std::mt19937 rng(7);
	for (int i = 0; i < 10000; i++) {
		uint32_t h = static_cast<uint32_t>(rng());
		ASSERT_EQ(sluice_gue_source_port(h), reference_gue_source_port(h)) << "hash " << h;
	}
	EXPECT_EQ(sluice_gue_source_port(0u), 49152);
	EXPECT_EQ(sluice_gue_source_port(0xFFFFFFFFu), 65535);
	EXPECT_EQ(sluice_gue_source_port(16384u), 49152); // the range wraps, it does not overflow
	EXPECT_EQ(sluice_gue_source_port(16383u), 65535);
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
