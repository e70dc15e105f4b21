// SPDX-License-Identifier: Apache-2.0
#include "program.h"

#include "error.h"
#include "libbpf_log.h"
#include "ownership.h"
#include "sys.h"

#include <sluice/conntrack.h>

#include "sluice.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

namespace sluice::xdp {

namespace {

uint32_t next_pow2(uint64_t v)
{
	uint64_t n = 1;
	while (n < v)
		n <<= 1;
	return static_cast<uint32_t>(n);
}

// A pin directory must be on a bpf filesystem: pins elsewhere fail with a
// confusing EPERM deep inside libbpf.
void make_pin_dir(const std::string &dir)
{
	std::error_code ec;
	std::filesystem::create_directories(dir, ec);
	if (ec)
		throw error("--pin-dir {}: {}", dir, ec.message());
	struct statfs fs;
	if (statfs(dir.c_str(), &fs) != 0)
		throw error("--pin-dir {}: {}", dir, errno_text(errno));
	if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC)
		throw error("--pin-dir {} is not on a bpf filesystem (mount -t bpf bpf {})", dir, dir);
	// Its maps are the connection table and the backends this program
	// forwards to: a directory another user made or may write could hand
	// us their maps.
	trust_rule rule;
	rule.owners = {0, geteuid()};
	require_trusted("--pin-dir", dir, rule, "remove it, or use another --pin-dir");
}

struct ct_geometry {
	uint32_t buckets;
	bool reused;
};

// What is pinned at a path: its map's type and sizes, or nullopt when
// nothing is.
std::optional<bpf_map_info> pinned_map(const std::string &path)
{
	int fd = bpf_obj_get(path.c_str());
	if (fd < 0)
		return std::nullopt;
	bpf_map_info info;
	std::memset(&info, 0, sizeof(info));
	uint32_t len = sizeof(info);
	int err = bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (err) // not a map (a program pinned by hand): no layout of ours
		std::memset(&info, 0, sizeof(info));
	return info;
}

// A pinned map this program cannot use. Its flows cannot be carried over:
// refuse to start (the program a --keep-attached stop left keeps
// forwarding meanwhile) and name the two ways on, or, with
// --replace-pinned, remove the pin so this program makes a new, empty map.
// The old program holds its own reference to the old map, so it forwards
// on it until this one replaces it; only then are its flows gone.
void layout_mismatch(const program_settings &s, const std::string &path, const bpf_map_info &info,
		     const std::string &want)
{
	const std::string found = fmt::format("{} map, {}-byte keys, {}-byte values, {} entries",
					      info.type == BPF_MAP_TYPE_ARRAY ? "array" : "another",
					      info.key_size, info.value_size, info.max_entries);
	if (!s.replace_pinned)
		throw error("{}: the pinned map has another layout ({}; this sluice-xdp needs {}), from "
			    "another sluice-xdp version: its flows cannot be carried over. Start with "
			    "--replace-pinned to swap in place onto a new, empty table (established flows "
			    "are re-picked by Maglev), or run `sluice-xdp --iface {} --unpin --pin-dir {}` "
			    "first (traffic goes to the kernel until the start)",
			    path, found, want, s.iface.empty() ? "IF" : s.iface, s.pin_dir);
	spdlog::warn("{}: the pinned map has another layout ({}; this sluice-xdp needs {}): "
		     "--replace-pinned: replacing it, established flows are re-picked by Maglev",
		     path, found, want);
	if (unlink(path.c_str()) != 0)
		throw error("{}: cannot remove the old pin: {}", path, errno_text(errno));
}

// What to do with a connection table already pinned at `path`: reuse it
// when its layout is this program's (its size wins, so its flows stay);
// refuse or replace it otherwise (layout_mismatch).
ct_geometry plan_ct(const program_settings &s, const std::string &path, uint32_t cpus,
		    uint32_t want_buckets)
{
	const std::optional<bpf_map_info> info = pinned_map(path);
	if (!info)
		return {want_buckets, false};
	// Any bucket count per CPU (conntrack.h's index is a multiply-shift).
	const bool layout = info->type == BPF_MAP_TYPE_ARRAY && info->key_size == 4 &&
			    info->value_size == sizeof(sluice_ct_bucket) && info->max_entries >= cpus &&
			    info->max_entries % cpus == 0;
	if (!layout) {
		layout_mismatch(s, path, *info,
				fmt::format("an array of {}-byte buckets, 4-byte keys, a multiple of {} "
					    "entries",
					    sizeof(sluice_ct_bucket), cpus));
		return {want_buckets, false};
	}
	uint32_t buckets = info->max_entries / cpus;
	if (buckets != want_buckets)
		spdlog::warn("{}: keeping the pinned connection table's {} entries per CPU so its flows "
			     "stay; --ct-entries {} applies after `sluice-xdp --unpin`",
			     path, (uint64_t)buckets * SLUICE_CT_WAYS, (uint64_t)want_buckets * SLUICE_CT_WAYS);
	return {buckets, true};
}

// The connection table's key (conntrack.h sluice_ct_hash) lives beside its
// pin, in a one-entry array map of its own: the program reads it from
// rodata, and the next start needs it to find the pinned table's flows.
constexpr const char *ct_key_pin_name = "/sl_ct_key";

// The key the table pinned in `dir` was filled with; nullopt if none is
// pinned (a table from before keys, or a crash between the two pins).
std::optional<uint64_t> read_ct_key(const program_settings &s, const std::string &dir)
{
	const std::string path = dir + ct_key_pin_name;
	// A lookup copies value_size bytes into `key`: a key map of another
	// layout is refused (or replaced) before it is read.
	const std::optional<bpf_map_info> info = pinned_map(path);
	if (!info)
		return std::nullopt;
	if (info->type != BPF_MAP_TYPE_ARRAY || info->key_size != 4 || info->value_size != 8 ||
	    info->max_entries != 1) {
		layout_mismatch(s, path, *info, "an array of one 8-byte value");
		return std::nullopt;
	}
	int fd = bpf_obj_get(path.c_str());
	if (fd < 0)
		return std::nullopt;
	uint32_t zero = 0;
	uint64_t key = 0;
	const int err = bpf_map_lookup_elem(fd, &zero, &key);
	close(fd);
	if (err)
		return std::nullopt;
	return key;
}

void pin_ct_key(const std::string &dir, uint64_t key)
{
	const std::string path = dir + ct_key_pin_name;
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_ct_key", 4, 8, 1, nullptr);
	if (fd < 0)
		throw error("creating {}: {}", path, errno_text(errno));
	uint32_t zero = 0;
	int err = bpf_map_update_elem(fd, &zero, &key, BPF_ANY);
	if (!err) {
		(void)unlink(path.c_str());
		err = bpf_obj_pin(fd, path.c_str());
	}
	const int saved = errno;
	close(fd);
	if (err)
		throw error("pinning {}: {}", path, errno_text(saved));
}

} // namespace

std::string default_pin_dir(const std::string &iface) { return "/sys/fs/bpf/sluice/" + iface; }

program program::load(const program_settings &s)
{
	program p;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		throw error("cannot count the possible CPUs: {}", errno_text(ncpu));
	p.cpus_ = static_cast<uint32_t>(ncpu);

	if (s.ring_entries > SLUICE_XDP_MAX_RING_ENTRIES)
		throw error("--ring-entries {}: at most {} (the segment's ring pool)", s.ring_entries,
			    SLUICE_XDP_MAX_RING_ENTRIES);
	p.ring_entries_ = std::max<uint32_t>(next_pow2(s.ring_entries), SLUICE_XDP_RING_CHUNK);
	if (s.ct_entries == 0)
		throw error("--ct-entries must be at least 1");
	uint32_t want_buckets = sluice_ct_table_buckets_for(s.ct_entries);
	std::optional<uint64_t> key; // the connection table's, kept with it

	if (!s.pin_dir.empty()) {
		make_pin_dir(s.pin_dir);
		p.ct_pin_ = s.pin_dir + "/sl_ct";
		ct_geometry g = plan_ct(s, p.ct_pin_, p.cpus_, want_buckets);
		if (g.reused) {
			key = read_ct_key(s, s.pin_dir);
			if (!key) {
				spdlog::warn("{}: the pinned connection table has no key beside it (an older "
					     "sluice-xdp?): replacing it, established flows are re-picked by "
					     "Maglev",
					     p.ct_pin_);
				if (unlink(p.ct_pin_.c_str()) != 0)
					throw error("{}: cannot remove the old pin: {}", p.ct_pin_,
						    errno_text(errno));
				g = {want_buckets, false};
			}
		}
		want_buckets = g.buckets;
		p.ct_reused_ = g.reused;
	}
	if (!key)
		key = s.replay ? SLUICE_CT_REPLAY_KEY : random_u64();
	p.ct_buckets_ = want_buckets;
	// An array map holds less than 4 GiB (kernel/bpf/arraymap.c).
	const uint64_t ct_bytes = (uint64_t)p.cpus_ * p.ct_buckets_ * sizeof(sluice_ct_bucket);
	if (ct_bytes >= (4ull << 30) - 4096)
		throw error("--ct-entries {}: {} CPUs x {} buckets of {} bytes do not fit one BPF array "
			    "(4 GiB)",
			    s.ct_entries, p.cpus_, p.ct_buckets_, sizeof(sluice_ct_bucket));

	p.skel_ = sluice_bpf__open();
	if (!p.skel_)
		throw error("opening the XDP program: {}", errno_text(errno));
	auto *ro = p.skel_->rodata;
	std::memcpy(ro->cfg_port_mac, s.port_mac.data(), 6);
	ro->cfg_port_mtu = s.port_mtu;
	ro->cfg_ct_buckets = p.ct_buckets_;
	ro->cfg_ring_entries = p.ring_entries_;
	ro->cfg_ct_timeouts = s.ct_timeouts;
	ro->cfg_ct_secret = *key;
	if (s.replay)
		ro->cfg_replay_now_s = SLUICE_CT_REPLAY_NOW_S;

	int err = bpf_map__set_max_entries(p.skel_->maps.sl_ct, p.cpus_ * p.ct_buckets_);
	if (!err)
		err = bpf_map__set_max_entries(p.skel_->maps.sl_rings,
					       SLUICE_XDP_BANKS * p.ring_entries_ / SLUICE_XDP_RING_CHUNK);
	if (!err && !p.ct_pin_.empty())
		err = bpf_map__set_pin_path(p.skel_->maps.sl_ct, p.ct_pin_.c_str());
	if (err)
		throw error("configuring the XDP program: {}", errno_text(err));

	err = sluice_bpf__load(p.skel_);
	if (err)
		throw error(load_failure("the XDP program", err));
	// After the table's pin exists: a table without its key is replaced at
	// the next start, never read with another one.
	if (!p.ct_pin_.empty() && !p.ct_reused_)
		pin_ct_key(s.pin_dir, *key);
	return p;
}

program::program(program &&other) noexcept
	: skel_(std::exchange(other.skel_, nullptr)), cpus_(other.cpus_),
	  ct_buckets_(other.ct_buckets_), ring_entries_(other.ring_entries_),
	  ct_reused_(other.ct_reused_), ct_pin_(std::move(other.ct_pin_))
{
}

program &program::operator=(program &&other) noexcept
{
	if (this != &other) {
		if (skel_)
			sluice_bpf__destroy(skel_);
		skel_ = std::exchange(other.skel_, nullptr);
		cpus_ = other.cpus_;
		ct_buckets_ = other.ct_buckets_;
		ring_entries_ = other.ring_entries_;
		ct_reused_ = other.ct_reused_;
		ct_pin_ = std::move(other.ct_pin_);
	}
	return *this;
}

program::~program()
{
	// Destroying the skeleton closes our fds; pinned maps live on in bpffs.
	if (skel_)
		sluice_bpf__destroy(skel_);
}

int program::prog_fd() const { return bpf_program__fd(skel_->progs.sluice_xdp); }

int program::map_fd(bpf_map *m) const { return bpf_map__fd(m); }

void unpin(const std::string &dir)
{
	std::error_code ec;
	if (!std::filesystem::exists(dir, ec))
		return;
	for (const auto &entry : std::filesystem::directory_iterator(dir, ec)) {
		const std::string name = entry.path().filename().string();
		if (name.starts_with("sl_") && unlink(entry.path().c_str()) != 0)
			throw error("{}: cannot remove: {}", entry.path().string(), errno_text(errno));
	}
	if (rmdir(dir.c_str()) != 0 && errno != ENOENT)
		throw error("{}: cannot remove the pin directory: {}", dir, errno_text(errno));
}

} // namespace sluice::xdp
