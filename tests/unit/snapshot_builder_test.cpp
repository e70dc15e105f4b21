// SPDX-License-Identifier: Apache-2.0
// What the snapshot builder puts in a VIP's Maglev table: healthy, undrained
// backends whose next hop is known. A backend sluiced cannot reach yet (its
// neighbour not resolved) takes no share: the packets Maglev would give it
// go to the others instead of being dropped.
#include "config_io.h"
#include "config.h"
#include "error.h"
#include "snapshot_builder.h"

#include <sluice/packet.h>
#include <sluice/shm.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>
#include <map>
#include <random>
#include <memory>
#include <set>

namespace sluice {
namespace {

const char *config_text = R"(
node: {source_ipv4: 10.0.0.2}
vips:
  - address: 10.200.1.1
    port: 80
    protocol: tcp
    mode: ipip
    ring_size: 251
    backends: [{address: 10.1.0.1}, {address: 10.1.0.2}, {address: 10.1.0.3}]
)";

struct built {
	std::unique_ptr<sluice_snapshot> snap = std::make_unique<sluice_snapshot>();
	std::set<uint32_t> in_table; // backend ids in the VIP's Maglev table
	uint32_t live_count = 0;
};

// Builds with the given backends (by address) resolved; all healthy.
built build(snapshot_builder &b, const config &cfg, const object_ids &ids,
	    const std::set<std::string> &resolved, bool resolving = true)
{
	std::map<uint32_t, mac_address> macs;
	for (const auto &be : cfg.vips[0].backends)
		if (resolved.count(be.address.str()))
			macs[ids.backend_id(cfg.vips[0].key, be.address)] = *mac_address::parse("02:00:00:00:00:01");
	built out;
	b.build(snapshot_inputs{cfg, ids, [](uint32_t) { return true; },
				[&](uint32_t id) -> std::optional<mac_address> {
					auto it = macs.find(id);
					if (it == macs.end())
						return std::nullopt;
					return it->second;
				},
				resolving},
		*out.snap);
	const uint32_t vid = ids.vip_id(cfg.vips[0].key);
	const sluice_vip &v = out.snap->vips[vid];
	for (uint32_t i = 0; i < v.ring_size; i++)
		out.in_table.insert(out.snap->rings[v.ring_offset + i]);
	out.live_count = v.live_count;
	return out;
}

TEST(SnapshotBuilder, BackendWithoutNextHopTakesNoShareUntilResolved)
{
	const config cfg = config_from_yaml(config_text);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	const uint32_t vid = ids.vip_id(cfg.vips[0].key);
	const uint32_t third = ids.backend_id(cfg.vips[0].key, cfg.vips[0].backends[2].address);
	snapshot_builder b;

	built before = build(b, cfg, ids, {"10.1.0.1", "10.1.0.2"});
	EXPECT_EQ(before.live_count, 2u);
	EXPECT_EQ(before.in_table.count(third), 0u) << "an unresolved backend is in the Maglev table";
	EXPECT_EQ(before.in_table.size(), 2u);
	// Still listed, so its counters and state stay visible, without a MAC.
	const sluice_backend &br = before.snap->backends[third];
	EXPECT_EQ(br.flags & SLUICE_BACKEND_PRESENT, SLUICE_BACKEND_PRESENT);
	EXPECT_EQ(br.flags & SLUICE_BACKEND_HAS_MAC, 0u);
	EXPECT_EQ(br.vip_id, vid);

	built after = build(b, cfg, ids, {"10.1.0.1", "10.1.0.2", "10.1.0.3"});
	EXPECT_EQ(after.live_count, 3u);
	EXPECT_EQ(after.in_table.count(third), 1u) << "a resolved backend is not in the Maglev table";
	EXPECT_EQ(after.in_table.size(), 3u);

	built none = build(b, cfg, ids, {});
	EXPECT_EQ(none.live_count, 0u); // every packet of the VIP: drop_no_backend
}

// Without resolution (no neighbour lookups: pcap mode, tests) nothing will
// ever give a backend a MAC: it stays in the table, and its packets count
// drop_no_nexthop, which names the gap (set node.gateway_mac or its mac).
TEST(SnapshotBuilder, WithoutResolutionABackendWithoutMacStaysInTheTable)
{
	const config cfg = config_from_yaml(config_text);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	snapshot_builder b;
	built off = build(b, cfg, ids, {"10.1.0.1"}, false);
	EXPECT_EQ(off.live_count, 3u);
	EXPECT_EQ(off.in_table.size(), 3u);
}


// Configurations of many VIPs: every one validation accepts is published,
// and every VIP and VIP address is found where the dataplanes look.
std::string many_vips_yaml(const std::vector<std::string> &addresses, const std::vector<int> &ports)
{
	std::string y = "node: {source_ipv4: 10.0.0.2, source_ipv6: 'fd00::2'}\nvips:\n";
	for (size_t i = 0; i < addresses.size(); i++)
		y += fmt::format("  - {{address: '{}', port: {}, protocol: tcp, ring_size: 251, "
				 "backends: [{{address: {}}}]}}\n",
				 addresses[i], ports[i],
				 addresses[i].find(':') == std::string::npos ? "10.1.0.1" : "'fd00:1::1'");
	return y;
}

void expect_all_found(const std::vector<std::string> &addresses, const std::vector<int> &ports)
{
	const config cfg = config_from_yaml(many_vips_yaml(addresses, ports));
	validate(cfg, field_names::by_position);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	snapshot_builder b;
	auto snap = std::make_unique<sluice_snapshot>();
	b.build(snapshot_inputs{cfg, ids, [](uint32_t) { return true; },
				[](uint32_t) -> std::optional<mac_address> { return std::nullopt; }, false},
		*snap);
	for (const auto &v : cfg.vips) {
		const uint32_t vid = ids.vip_id(v.key);
		// The lookups read addresses as 64-bit words (shm.h): aligned, as
		// a flow key's are.
		alignas(8) uint8_t addr[16];
		std::memcpy(addr, v.key.address.bytes.data(), 16);
		ASSERT_EQ(sluice_vip_find_exact(snap.get(), addr, v.key.address.family,
						sluice_htons(v.key.port), SLUICE_IPPROTO_TCP),
			  vid)
			<< v.key.str();
		ASSERT_NE(sluice_vip_find_address(snap.get(), addr, v.key.address.family), SLUICE_MAX_VIPS)
			<< v.key.str();
	}
}

TEST(SnapshotBuilder, AThousandConsecutiveVipsArePublished)
{
	// 256 consecutive addresses failed the old 16-probe table in about 1
	// of 9 ranges; try many ranges of 1,024.
	for (int range = 0; range < 8; range++) {
		std::vector<std::string> a;
		std::vector<int> p;
		for (int i = 0; i < 1024; i++) {
			a.push_back(fmt::format("10.{}.{}.{}", 100 + range, i / 256, i % 256));
			p.push_back(80);
		}
		expect_all_found(a, p);
	}
}

TEST(SnapshotBuilder, TheMostVipsAreAllPublished)
{
	std::mt19937 rng(42);
	std::set<std::pair<std::string, int>> seen;
	std::vector<std::string> a;
	std::vector<int> p;
	while (a.size() < SLUICE_MAX_VIPS) {
		std::string addr = rng() % 4 ? fmt::format("{}.{}.{}.{}", 11 + rng() % 200, rng() % 256,
							   rng() % 256, rng() % 256)
					   : fmt::format("2001:db8:{:x}::{:x}", rng() % 65536, rng() % 65536);
		int port = 1 + rng() % 65535;
		if (seen.insert({addr, port}).second) {
			a.push_back(addr);
			p.push_back(port);
		}
	}
	expect_all_found(a, p);
	// One more is refused when the configuration is read, not at publication.
	a.push_back("10.250.0.1");
	p.push_back(80);
	try {
		validate(config_from_yaml(many_vips_yaml(a, p)), field_names::by_position);
		FAIL() << "4,097 VIPs validated";
	} catch (const error &e) {
		EXPECT_NE(std::string(e.what()).find("at most 4096"), std::string::npos) << e.what();
	}
}

} // namespace
} // namespace sluice
