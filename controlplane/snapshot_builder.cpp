// SPDX-License-Identifier: Apache-2.0
#include "snapshot_builder.h"

#include "error.h"

#include <sluice/maglev.h>
#include <sluice/packet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <vector>

namespace sluice {

namespace {

uint8_t proto_number(l4_proto p)
{
	return p == l4_proto::tcp ? SLUICE_IPPROTO_TCP : SLUICE_IPPROTO_UDP;
}

uint8_t mode_number(vip_mode m)
{
	switch (m) {
	case vip_mode::ipip:
		return SLUICE_MODE_IPIP;
	case vip_mode::gue:
		return SLUICE_MODE_GUE;
	case vip_mode::l2dsr:
		return SLUICE_MODE_L2DSR;
	}
	return 0;
}

bool same_members(const std::vector<maglev_backend> &a, const std::vector<maglev_backend> &b)
{
	if (a.size() != b.size())
		return false;
	for (size_t i = 0; i < a.size(); i++)
		if (a[i].address != b[i].address || a[i].weight != b[i].weight || a[i].id != b[i].id)
			return false;
	return true;
}

// One entry of vip_hash: a VIP (its exact key) or a VIP address (port 0,
// protocol 0).
struct vip_hash_entry {
	const uint8_t *addr;
	uint8_t family, proto;
	uint16_t port_be;
	uint32_t vid;
};

// Open addressing with a bounded probe, the bound the readers use.
bool place_in_vip_hash(sluice_snapshot &out, const vip_hash_entry &e, uint32_t seed)
{
	const uint32_t h = sluice_vip_hash(e.addr, e.family, e.port_be, e.proto, seed);
	for (uint32_t p = 0; p < SLUICE_VIP_HASH_PROBES; p++) {
		uint16_t &slot = out.vip_hash[(h + p) & (SLUICE_VIP_HASH_SIZE - 1)];
		if (slot == 0) {
			slot = static_cast<uint16_t>(e.vid + 1);
			return true;
		}
	}
	return false;
}

// Seeds tried before giving up. At a load of at most 1/4 one seed fails
// with a probability far below 1e-6 (a run of 16 in linear probing), so
// this bound is never reached by a configuration validation accepts; it
// only keeps a bug from looping.
constexpr uint32_t vip_seed_tries = 64;

// Fills vip_hash with every entry within the readers' probe bound, under
// the first seed that allows it; sets hdr.vip_seed.
void fill_vip_hash(sluice_snapshot &out, const std::vector<vip_hash_entry> &entries)
{
	for (uint32_t seed = 0; seed < vip_seed_tries; seed++) {
		std::memset(out.vip_hash, 0, sizeof(out.vip_hash));
		bool all = true;
		for (const vip_hash_entry &e : entries)
			if (!(all = place_in_vip_hash(out, e, seed)))
				break;
		if (all) {
			out.hdr.vip_seed = seed;
			return;
		}
	}
	throw error("vips: {} VIPs found no layout of the VIP lookup table within {} probes in {} "
		    "tries",
		    entries.size(), SLUICE_VIP_HASH_PROBES, vip_seed_tries);
}

// FNV-1a, 64 bits (Fowler, Noll, Vo; the offset basis and prime of the
// published parameters).
struct fnv64 {
	uint64_t h = 0xcbf29ce484222325ull;
	void bytes(const void *p, size_t n)
	{
		const auto *b = static_cast<const uint8_t *>(p);
		for (size_t i = 0; i < n; i++) {
			h ^= b[i];
			h *= 0x100000001b3ull;
		}
	}
	void u32(uint32_t v)
	{
		// Little-endian whatever the host: a digest compares across machines.
		const uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
		bytes(b, 4);
	}
	void u64(uint64_t v)
	{
		u32(static_cast<uint32_t>(v));
		u32(static_cast<uint32_t>(v >> 32));
	}
	void addr(const ip_address &a)
	{
		bytes(&a.family, 1);
		bytes(a.bytes.data(), a.bytes.size());
	}
};

} // namespace

uint64_t table_hash(const std::vector<maglev_backend> &members, const std::vector<uint32_t> &table)
{
	std::map<uint32_t, const ip_address *> by_id;
	for (const auto &m : members)
		by_id[m.id] = &m.address;
	fnv64 f;
	const ip_address none{};
	for (uint32_t slot : table) {
		auto it = by_id.find(slot);
		f.addr(it == by_id.end() ? none : *it->second);
	}
	return f.h;
}

std::string table_digest(const vip_config &v, std::vector<digest_backend> backends, uint64_t table_hash)
{
	std::sort(backends.begin(), backends.end(),
		  [](const digest_backend &a, const digest_backend &b) { return a.address < b.address; });
	fnv64 f;
	f.bytes("sluice-table-v1", 15);
	f.addr(v.key.address);
	f.u32(v.key.port);
	f.u32(static_cast<uint32_t>(v.key.proto));
	f.u32(static_cast<uint32_t>(v.mode));
	f.u32(v.ring_size);
	f.u32(v.mode == vip_mode::gue ? v.gue_port : 0);
	f.u32(static_cast<uint32_t>(backends.size()));
	for (const auto &b : backends) {
		f.addr(b.address);
		f.u32(b.weight);
		f.u32((b.healthy ? 1u : 0u) | (b.in_table ? 2u : 0u));
	}
	f.u64(table_hash);
	return fmt::format("{:016x}", f.h);
}

const snapshot_builder::vip_summary *snapshot_builder::summary(uint32_t vip_id) const
{
	auto it = summaries_.find(vip_id);
	return it == summaries_.end() ? nullptr : &it->second;
}

void snapshot_builder::build(const snapshot_inputs &in, sluice_snapshot &out)
{
	const config &c = in.cfg;

	std::memset(&out.node, 0, sizeof(out.node));
	if (c.node.source_ipv4) {
		std::memcpy(out.node.source_ipv4, c.node.source_ipv4->bytes.data(), 4);
		out.node.flags |= SLUICE_NODE_HAS_IPV4;
	}
	if (c.node.source_ipv6) {
		std::memcpy(out.node.source_ipv6, c.node.source_ipv6->bytes.data(), 16);
		out.node.flags |= SLUICE_NODE_HAS_IPV6;
	}
	if (c.node.gateway_mac) {
		std::memcpy(out.node.gateway_mac, c.node.gateway_mac->bytes.data(), 6);
		out.node.flags |= SLUICE_NODE_HAS_GATEWAY_MAC;
	}
	out.node.mtu = c.node.mtu;

	std::memset(out.vip_hash, 0, sizeof(out.vip_hash));
	std::memset(out.vips, 0, sizeof(out.vips));
	std::memset(out.backends, 0, sizeof(out.backends));

	uint32_t ring_used = 0;
	uint32_t backend_count = 0;
	std::vector<vip_hash_entry> hash_entries;
	std::set<std::pair<uint8_t, std::array<uint8_t, 16>>> addresses;
	hash_entries.reserve(2 * c.vips.size());
	std::set<uint32_t> live_vips;
	std::map<uint32_t, vip_summary> summaries;
	for (const auto &v : c.vips) {
		uint32_t vid = in.ids.vip_id(v.key);
		live_vips.insert(vid);
		sluice_vip &rec = out.vips[vid];
		std::memcpy(rec.addr, v.key.address.bytes.data(), 16);
		rec.port_be = sluice_htons(v.key.port);
		rec.proto = proto_number(v.key.proto);
		rec.family = v.key.address.family;
		rec.mode = mode_number(v.mode);
		rec.flags = SLUICE_VIP_PRESENT;
		rec.gue_port_be = sluice_htons(v.gue_port);
		rec.id = vid;
		rec.ring_size = v.ring_size;
		rec.ring_inv = sluice_fastmod_inverse(v.ring_size);
		rec.backend_count = static_cast<uint32_t>(v.backends.size());

		std::vector<maglev_backend> members;
		std::vector<digest_backend> described;
		for (const auto &b : v.backends) {
			uint32_t bid = in.ids.backend_id(v.key, b.address);
			bool healthy = in.healthy(bid);
			sluice_backend &br = out.backends[bid];
			std::memcpy(br.addr, b.address.bytes.data(), 16);
			br.family = b.address.family;
			br.flags = SLUICE_BACKEND_PRESENT;
			if (healthy)
				br.flags |= SLUICE_BACKEND_HEALTHY;
			if (b.weight == 0)
				br.flags |= SLUICE_BACKEND_DRAINING;
			// l2dsr needs the backend's own MAC; encapsulated packets go to
			// the gateway if one is configured, else to the backend's next hop.
			std::optional<mac_address> mac;
			if (v.mode == vip_mode::l2dsr)
				mac = b.mac ? b.mac : in.next_hop_mac(bid);
			else
				mac = c.node.gateway_mac ? c.node.gateway_mac : in.next_hop_mac(bid);
			if (mac) {
				std::memcpy(br.mac, mac->bytes.data(), 6);
				br.flags |= SLUICE_BACKEND_HAS_MAC;
			}
			br.weight = b.weight;
			br.vip_id = vid;
			br.id = bid;
			backend_count++;
			// Drained and unhealthy backends leave the table; the
			// dataplanes keep a drained backend's existing flows. So
			// does a backend whose next hop is still being resolved
			// (one just added): a packet Maglev gave it could only be
			// dropped, so its share goes to the others until its MAC
			// is known and the next snapshot takes it in.
			const bool awaiting_mac = !mac && in.resolving_next_hops;
			const bool in_table = healthy && b.weight > 0 && !awaiting_mac;
			if (in_table)
				members.push_back(maglev_backend{b.address, b.weight, bid});
			described.push_back({b.address, b.weight, healthy, in_table});
		}
		rec.live_count = static_cast<uint32_t>(members.size());

		cached_table &ct = cache_[vid];
		if (ct.ring_size != v.ring_size || !same_members(ct.members, members) ||
		    ct.table.size() != v.ring_size) {
			ct.ring_size = v.ring_size;
			ct.members = members;
			ct.table = maglev_build(members, v.ring_size);
			ct.table_hash = table_hash(ct.members, ct.table);
		}
		summaries[vid] = {table_digest(v, std::move(described), ct.table_hash),
				  static_cast<uint32_t>(members.size())};
		if (static_cast<uint64_t>(ring_used) + v.ring_size > SLUICE_RING_POOL)
			throw error("ring_size: the VIPs' tables exceed the snapshot's {} entries",
				    SLUICE_RING_POOL);
		rec.ring_offset = ring_used;
		std::memcpy(&out.rings[ring_used], ct.table.data(), v.ring_size * sizeof(uint32_t));
		ring_used += v.ring_size;

		hash_entries.push_back({rec.addr, rec.family, rec.proto, rec.port_be, vid});
		// The address entry (port 0, protocol 0), once per address.
		std::array<uint8_t, 16> a;
		std::memcpy(a.data(), rec.addr, 16);
		if (addresses.insert({rec.family, a}).second)
			hash_entries.push_back({rec.addr, rec.family, 0, 0, vid});
	}
	fill_vip_hash(out, hash_entries);
	// Forget tables of VIPs that are gone, so a new VIP reusing the id
	// cannot be handed a stale one.
	for (auto it = cache_.begin(); it != cache_.end();)
		it = live_vips.count(it->first) ? std::next(it) : cache_.erase(it);

	summaries_ = std::move(summaries);
	out.hdr.vip_count = static_cast<uint32_t>(c.vips.size());
	out.hdr.backend_count = backend_count;
	out.hdr.ring_used = ring_used;
}

} // namespace sluice
