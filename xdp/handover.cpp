// SPDX-License-Identifier: Apache-2.0
#include "handover.h"

#include "error.h"
#include "sys.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sluice::xdp {

// sl_copied's one value.
struct copied_pin::layout {
	uint64_t magic;    // copied_magic: this layout
	uint32_t record;   // worker record index
	uint32_t prog_id;  // the program whose counters `t` are
	uint64_t complete; // 0 while a write is under way
	totals t;
};

namespace {

constexpr uint64_t copied_magic = 0x31646569706F436CULL; // "lCopied1"
constexpr const char *copied_pin_name = "/sl_copied";

struct fd_guard {
	int fd = -1;
	~fd_guard()
	{
		if (fd >= 0)
			close(fd);
	}
};

} // namespace

copied_pin copied_pin::open(const std::string &dir)
{
	const std::string path = dir + copied_pin_name;
	fd_guard fd{bpf_obj_get(path.c_str())};
	if (fd.fd >= 0) {
		bpf_map_info info;
		std::memset(&info, 0, sizeof(info));
		uint32_t len = sizeof(info);
		const bool ok = bpf_obj_get_info_by_fd(fd.fd, &info, &len) == 0 &&
				info.type == BPF_MAP_TYPE_ARRAY && info.key_size == 4 &&
				info.value_size == sizeof(layout) && info.max_entries == 1 &&
				(info.map_flags & BPF_F_MMAPABLE);
		if (!ok) {
			spdlog::info("{}: of another layout (another sluice-xdp version): replacing it", path);
			close(fd.fd);
			fd.fd = -1;
			if (unlink(path.c_str()) != 0)
				throw error("{}: cannot remove the old pin: {}", path, errno_text(errno));
		}
	}
	if (fd.fd < 0) {
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
		fd.fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_copied", 4, sizeof(layout), 1, &opts);
		if (fd.fd < 0)
			throw error("creating {}: {}", path, errno_text(errno));
		if (bpf_obj_pin(fd.fd, path.c_str()) != 0)
			throw error("pinning {}: {}", path, errno_text(errno));
	}
	copied_pin p;
	p.len_ = (sizeof(layout) + 4095) & ~size_t(4095);
	void *a = mmap(nullptr, p.len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
	if (a == MAP_FAILED)
		throw error("mapping {}: {}", path, errno_text(errno));
	p.rec_ = static_cast<layout *>(a);
	return p;
}

copied_pin::copied_pin(copied_pin &&other) noexcept
	: rec_(std::exchange(other.rec_, nullptr)), len_(other.len_)
{
}

copied_pin &copied_pin::operator=(copied_pin &&other) noexcept
{
	if (this != &other) {
		if (rec_)
			munmap(rec_, len_);
		rec_ = std::exchange(other.rec_, nullptr);
		len_ = other.len_;
	}
	return *this;
}

copied_pin::~copied_pin()
{
	if (rec_)
		munmap(rec_, len_);
}

void copied_pin::write(uint32_t record, uint32_t prog_id, const totals &t)
{
	if (!rec_)
		return;
	// The reader is the next run, after this process has ended (or been
	// killed): `complete` tells it whether the write before was cut short.
	__atomic_store_n(&rec_->complete, 0, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	rec_->magic = copied_magic;
	rec_->record = record;
	rec_->prog_id = prog_id;
	std::memcpy(&rec_->t, &t, sizeof(t));
	__atomic_store_n(&rec_->complete, 1, __ATOMIC_RELEASE);
}

bool copied_pin::read(uint32_t &record, uint32_t &prog_id, totals &t) const
{
	if (!rec_ || __atomic_load_n(&rec_->complete, __ATOMIC_ACQUIRE) != 1 || rec_->magic != copied_magic)
		return false;
	record = rec_->record;
	prog_id = rec_->prog_id;
	std::memcpy(&t, &rec_->t, sizeof(t));
	return true;
}

std::unique_ptr<previous_counters> previous_counters::open(uint32_t prog_id, uint32_t cpus)
{
	fd_guard prog{bpf_prog_get_fd_by_id(prog_id)};
	if (prog.fd < 0)
		return nullptr;
	uint32_t ids[64] = {};
	bpf_prog_info info;
	std::memset(&info, 0, sizeof(info));
	info.nr_map_ids = 64;
	info.map_ids = reinterpret_cast<uint64_t>(ids);
	uint32_t len = sizeof(info);
	if (bpf_obj_get_info_by_fd(prog.fd, &info, &len) != 0)
		return nullptr;
	std::unique_ptr<previous_counters> p(new previous_counters());
	p->cpus_ = cpus;
	// Found by name, taken only with this version's value sizes: a program
	// of another version counts in another layout, and is not carried over.
	const struct {
		const char *name;
		uint32_t value_size, entries;
	} want[3] = {{"sl_cpu", sizeof(sluice_xdp_cpu), 1},
		     {"sl_vip_cnt", sizeof(sluice_obj_counters), SLUICE_MAX_VIPS},
		     {"sl_be_cnt", sizeof(sluice_obj_counters), SLUICE_MAX_BACKENDS}};
	for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 64); i++) {
		int fd = bpf_map_get_fd_by_id(ids[i]);
		if (fd < 0)
			continue;
		bpf_map_info mi;
		std::memset(&mi, 0, sizeof(mi));
		uint32_t mlen = sizeof(mi);
		bool taken = false;
		if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) == 0 && mi.type == BPF_MAP_TYPE_PERCPU_ARRAY)
			for (int k = 0; k < 3; k++)
				if (p->fds_[k] < 0 && std::strcmp(mi.name, want[k].name) == 0 &&
				    mi.value_size == want[k].value_size && mi.max_entries == want[k].entries) {
					p->fds_[k] = fd;
					taken = true;
				}
		if (!taken)
			close(fd);
	}
	for (int fd : p->fds_)
		if (fd < 0)
			return nullptr;
	return p;
}

previous_counters::~previous_counters()
{
	for (int fd : fds_)
		if (fd >= 0)
			close(fd);
}

void wait_grace_period()
{
	// Updating an ARRAY_OF_MAPS from user space returns only after an RCU
	// grace period (kernel/bpf/syscall.c, maybe_wait_bpf_programs()), as
	// the mirror waits before reusing a bank.
	fd_guard inner{bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_sync_in", 4, 4, 1, nullptr)};
	if (inner.fd < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = (uint32_t)inner.fd);
	fd_guard outer{bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "sl_sync", 4, 4, 1, &opts)};
	if (outer.fd < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	uint32_t zero = 0;
	uint32_t v = static_cast<uint32_t>(inner.fd);
	if (bpf_map_update_elem(outer.fd, &zero, &v, BPF_ANY) != 0)
		throw error("waiting for an RCU grace period: {}", errno_text(errno));
}

uint64_t carry_over_counts(const previous_counters &prev, uint32_t prev_id, const copied_pin &pin,
			   uint32_t record, counter_copier &copier)
{
	auto copied = std::make_unique<totals>();
	uint32_t rec = 0, id = 0;
	if (!pin.read(rec, id, *copied) || id != prev_id || rec != record) {
		spdlog::debug("the replaced program's counts are not carried over: the pin is of program {}, "
			      "record {} (replaced {}, record {})",
			      id, rec, prev_id, record);
		return 0;
	}
	// Its last runs may still be counting: wait until they are done.
	wait_grace_period();
	auto final_ = std::make_unique<totals>();
	prev.sum(*final_);
	auto more = std::make_unique<totals>();
	bool sane = true;
	auto diff = [&sane](uint64_t now, uint64_t then) {
		sane = sane && now >= then;
		return now - then;
	};
	for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
		more->counters[i] = diff(final_->counters[i], copied->counters[i]);
	auto obj = [&diff](sluice_obj_counters &out, const sluice_obj_counters &a, const sluice_obj_counters &b) {
		out.packets = diff(a.packets, b.packets);
		out.bytes = diff(a.bytes, b.bytes);
		out.new_flows = diff(a.new_flows, b.new_flows);
	};
	for (uint32_t i = 0; i < SLUICE_MAX_VIPS; i++)
		obj(more->vip[i], final_->vip[i], copied->vip[i]);
	for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++)
		obj(more->backend[i], final_->backend[i], copied->backend[i]);
	if (!sane) {
		// Counters only grow: a pin that says more than the program counted
		// is not this program's copy after all.
		spdlog::warn("the replaced program (id {}) counted less than its pin says it copied: its last "
			     "counts are not carried over",
			     prev_id);
		return 0;
	}
	copier.add_to_base(*more);
	return more->counters[SLUICE_CNT_rx_packets];
}

} // namespace sluice::xdp
