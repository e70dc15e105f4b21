// SPDX-License-Identifier: Apache-2.0
#include "show.h"

#include "attach.h"
#include "error.h"
#include "sys.h"
#include "maps.h"

#include <sluice/conntrack.h>
#include <sluice/maglev.h>
#include <sluice/flow.h>
#include <sluice/packet.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

namespace sluice::xdp {

namespace {

struct owned_fd {
	int fd = -1;
	owned_fd() = default;
	explicit owned_fd(int f) : fd(f) {}
	owned_fd(owned_fd &&o) noexcept : fd(o.fd) { o.fd = -1; }
	owned_fd &operator=(owned_fd &&o) noexcept
	{
		std::swap(fd, o.fd);
		return *this;
	}
	~owned_fd()
	{
		if (fd >= 0)
			close(fd);
	}
};

struct mapped {
	void *addr = MAP_FAILED;
	size_t len = 0;
	mapped(int fd, const bpf_map_info &info)
	{
		size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
		size_t n = ((info.value_size + 7) & ~7u) * (size_t)info.max_entries;
		len = (n + page - 1) / page * page;
		addr = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
		if (addr == MAP_FAILED)
			throw error("mapping BPF map {}: {}", info.name, errno_text(errno));
	}
	~mapped()
	{
		if (addr != MAP_FAILED)
			munmap(addr, len);
	}
	template <typename T> const T *as() const { return static_cast<const T *>(addr); }
};

std::string addr_str(const uint8_t *a, uint8_t family)
{
	char buf[INET6_ADDRSTRLEN] = "";
	inet_ntop(family == SLUICE_AF_INET6 ? AF_INET6 : AF_INET, a, buf, sizeof(buf));
	return buf;
}

const char *mode_str(uint8_t m)
{
	switch (m) {
	case SLUICE_MODE_IPIP:
		return "ipip";
	case SLUICE_MODE_GUE:
		return "gue";
	case SLUICE_MODE_L2DSR:
		return "l2dsr";
	}
	return "none";
}

} // namespace

nlohmann::json show(const std::string &iface, bool with_ct)
{
	const iface_info ii = query_iface(iface);
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	int err = bpf_xdp_query(ii.ifindex, 0, &q);
	if (err)
		throw error("{}: querying its XDP programs: {}", iface, errno_text(err));
	uint32_t prog_id = q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id;
	if (!prog_id)
		throw error("{} runs no XDP program", iface);
	owned_fd prog(bpf_prog_get_fd_by_id(prog_id));
	if (prog.fd < 0)
		throw error("{}: XDP program {}: {}", iface, prog_id, errno_text(errno));
	bpf_prog_info pinfo;
	std::memset(&pinfo, 0, sizeof(pinfo));
	uint32_t map_ids[32];
	pinfo.nr_map_ids = 32;
	pinfo.map_ids = reinterpret_cast<uint64_t>(map_ids);
	uint32_t plen = sizeof(pinfo);
	if (bpf_obj_get_info_by_fd(prog.fd, &pinfo, &plen) != 0)
		throw error("{}: XDP program {}: {}", iface, prog_id, errno_text(errno));
	if (std::string(pinfo.name) != SLUICE_XDP_PROG_NAME)
		throw error("{} runs XDP program '{}', not sluice's", iface, pinfo.name);

	std::map<std::string, std::pair<owned_fd, bpf_map_info>> maps;
	for (uint32_t i = 0; i < std::min<uint32_t>(pinfo.nr_map_ids, 32); i++) {
		owned_fd fd(bpf_map_get_fd_by_id(map_ids[i]));
		if (fd.fd < 0)
			continue;
		bpf_map_info info;
		std::memset(&info, 0, sizeof(info));
		uint32_t len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd.fd, &info, &len) != 0)
			continue;
		std::string name = info.name;
		maps.emplace(name, std::make_pair(std::move(fd), info));
	}
	for (const char *need : {"sl_state", "sl_banks", "sl_rings", "sl_ct"})
		if (!maps.count(need))
			throw error("{}: the sluice program has no map {} (another version?)", iface, need);

	// The mirror may switch banks while we read: read the state before and
	// after, and read again if it moved.
	nlohmann::json out;
	for (int attempt = 0; attempt < 20; attempt++) {
		mapped state(maps["sl_state"].first.fd, maps["sl_state"].second);
		const uint64_t active = __atomic_load_n(&state.as<sluice_xdp_state>()->active, __ATOMIC_ACQUIRE);
		const uint32_t bank = sluice_xdp_active_bank(active);
		out = nlohmann::json::object();
		out["program_id"] = prog_id;
		out["mode"] = q.drv_prog_id ? "native" : "generic";
		out["generation"] = sluice_xdp_active_generation(active);
		out["bank"] = bank;

		mapped banks(maps["sl_banks"].first.fd, maps["sl_banks"].second);
		mapped rings(maps["sl_rings"].first.fd, maps["sl_rings"].second);
		const uint32_t ring_entries =
			maps["sl_rings"].second.max_entries * SLUICE_XDP_RING_CHUNK / SLUICE_XDP_BANKS;
		const uint32_t *ring = rings.as<uint32_t>() + (size_t)bank * ring_entries;
		const sluice_xdp_bank &bk = banks.as<sluice_xdp_bank>()[bank & (SLUICE_XDP_BANKS - 1)];
		// The bank read as the snapshot it copies, as the program reads it.
		const auto *snap = reinterpret_cast<const sluice_snapshot *>(&bk);

		// The lookup keys of the active bank: what sluice_vip_find_exact()
		// and sluice_vip_find_address() answer for each VIP of the hash.
		std::map<std::tuple<std::string, uint16_t, uint8_t>, nlohmann::json> by_key;
		for (uint32_t slot = 0; slot < SLUICE_VIP_HASH_SIZE; slot++) {
			const uint16_t e = bk.vip_hash[slot];
			if (e == 0)
				continue;
			const uint32_t id = (e - 1u) & (SLUICE_MAX_VIPS - 1);
			const sluice_vip &v = bk.vips[id];
			const std::string a = addr_str(v.addr, v.family);
			if (sluice_vip_find_exact(snap, v.addr, v.family, v.port_be, v.proto) == id)
				by_key[{a, ntohs(v.port_be), v.proto}] = {{"address", a},
									  {"port", ntohs(v.port_be)},
									  {"proto", v.proto},
									  {"vip_id", id},
									  {"kind", "service"}};
			const uint32_t at = sluice_vip_find_address(snap, v.addr, v.family);
			if (at != SLUICE_MAX_VIPS)
				by_key[{a, 0, 0}] = {{"address", a}, {"port", 0}, {"proto", 0},
						     {"vip_id", at}, {"kind", "address"}};
		}
		nlohmann::json keys = nlohmann::json::array();
		for (auto &[k, j] : by_key)
			keys.push_back(std::move(j));
		out["keys"] = keys;

		nlohmann::json vj = nlohmann::json::array();
		const sluice_vip *vb = bk.vips;
		for (uint32_t id = 0; id < SLUICE_MAX_VIPS; id++) {
			const sluice_vip &v = vb[id];
			if (v.family == 0)
				continue;
			std::map<std::string, uint32_t> share;
			for (uint32_t s = 0; s < v.ring_size && (uint64_t)v.ring_offset + s < ring_entries; s++) {
				uint32_t b = ring[v.ring_offset + s];
				share[b == SLUICE_MAGLEV_EMPTY ? "empty" : std::to_string(b)]++;
			}
			vj.push_back({{"id", id},
				      {"address", addr_str(v.addr, v.family)},
				      {"port", ntohs(v.port_be)},
				      {"proto", v.proto},
				      {"mode", mode_str(v.mode)},
				      {"ring_size", v.ring_size},
				      {"live_count", v.live_count},
				      {"ring", share}});
		}
		out["vips"] = vj;

		nlohmann::json bj = nlohmann::json::array();
		const sluice_backend *bb = bk.backends;
		for (uint32_t id = 0; id < SLUICE_MAX_BACKENDS; id++) {
			const sluice_backend &b = bb[id];
			if (b.family == 0)
				continue;
			bj.push_back({{"id", id},
				      {"address", addr_str(b.addr, b.family)},
				      {"vip_id", b.vip_id},
				      {"weight", b.weight},
				      {"present", (b.flags & SLUICE_BACKEND_PRESENT) != 0},
				      {"healthy", (b.flags & SLUICE_BACKEND_HEALTHY) != 0},
				      {"draining", (b.flags & SLUICE_BACKEND_DRAINING) != 0},
				      {"has_mac", (b.flags & SLUICE_BACKEND_HAS_MAC) != 0}});
		}
		out["backends"] = bj;
		if (__atomic_load_n(&state.as<sluice_xdp_state>()->active, __ATOMIC_ACQUIRE) == active)
			break;
	}

	if (with_ct) {
		// Not mmap'able (it needs no user-space writer): read bucket by
		// bucket. For tests and small tables; a large one takes a while.
		const auto &[fd, info] = maps["sl_ct"];
		std::map<std::string, uint64_t> by_backend;
		uint64_t live = 0;
		sluice_ct_bucket b;
		for (uint32_t i = 0; i < info.max_entries; i++) {
			if (bpf_map_lookup_elem(fd.fd, &i, &b) != 0)
				break;
			for (const auto &e : b.way)
				if (e.state != SLUICE_CT_FREE && e.key.pad[0] != SLUICE_CT_FRAG_MARK) {
					live++;
					by_backend[std::to_string(e.backend_id)]++;
				}
		}
		out["ct"] = {{"buckets", info.max_entries}, {"entries", live}, {"by_backend", by_backend}};
	}
	return out;
}

} // namespace sluice::xdp
