// SPDX-License-Identifier: Apache-2.0
#include "handover.h"

#include "error.h"
#include "sys.h"
#include "unique_fd.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sluice::xdp {

// sl_count_base's one value.
struct count_base_pin::layout {
	uint64_t magic;    // base_magic: this layout
	uint32_t record;   // worker record index
	uint32_t prog_id;  // the program whose counts are added to `base`
	uint64_t complete; // 0 while a write is under way
	totals base;
};

namespace {

constexpr uint64_t base_magic = 0x3165736142746E43ULL; // "CntBase1"
constexpr const char *count_base_pin_name = "/sl_count_base";

void add_obj(sluice_obj_counters &a, const sluice_obj_counters &b)
{
	a.packets += b.packets;
	a.bytes += b.bytes;
	a.new_flows += b.new_flows;
}

} // namespace

count_base_pin count_base_pin::open(const std::string &dir)
{
	const std::string path = dir + count_base_pin_name;
	unique_fd fd{bpf_obj_get(path.c_str())};
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
			fd.reset();
			if (unlink(path.c_str()) != 0)
				throw error("{}: cannot remove the old pin: {}", path, errno_text(errno));
		}
	}
	if (fd.fd < 0) {
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
		fd.fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_count_base", 4, sizeof(layout), 1, &opts);
		if (fd.fd < 0)
			throw error("creating {}: {}", path, errno_text(errno));
		if (bpf_obj_pin(fd.fd, path.c_str()) != 0)
			throw error("pinning {}: {}", path, errno_text(errno));
	}
	count_base_pin p;
	p.len_ = (sizeof(layout) + 4095) & ~size_t(4095);
	void *a = mmap(nullptr, p.len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
	if (a == MAP_FAILED)
		throw error("mapping {}: {}", path, errno_text(errno));
	p.rec_ = static_cast<layout *>(a);
	return p;
}

count_base_pin::count_base_pin(count_base_pin &&other) noexcept
	: rec_(std::exchange(other.rec_, nullptr)), len_(other.len_)
{
}

count_base_pin &count_base_pin::operator=(count_base_pin &&other) noexcept
{
	if (this != &other) {
		if (rec_)
			munmap(rec_, len_);
		rec_ = std::exchange(other.rec_, nullptr);
		len_ = other.len_;
	}
	return *this;
}

count_base_pin::~count_base_pin()
{
	if (rec_)
		munmap(rec_, len_);
}

void count_base_pin::write(uint32_t record, uint32_t prog_id, const totals &base)
{
	if (!rec_)
		return;
	// The reader is the next run, after this process has ended (or been
	// killed): `complete` tells it whether the write before was cut short.
	__atomic_store_n(&rec_->complete, 0, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	rec_->magic = base_magic;
	rec_->record = record;
	rec_->prog_id = prog_id;
	std::memcpy(&rec_->base, &base, sizeof(base));
	__atomic_store_n(&rec_->complete, 1, __ATOMIC_RELEASE);
}

bool count_base_pin::read(uint32_t &record, uint32_t &prog_id, totals &t) const
{
	if (!rec_ || __atomic_load_n(&rec_->complete, __ATOMIC_ACQUIRE) != 1 || rec_->magic != base_magic)
		return false;
	record = rec_->record;
	prog_id = rec_->prog_id;
	std::memcpy(&t, &rec_->base, sizeof(t));
	return true;
}

std::unique_ptr<previous_counters> previous_counters::open(uint32_t prog_id, uint32_t cpus)
{
	unique_fd prog{bpf_prog_get_fd_by_id(prog_id)};
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
	unique_fd inner{bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_sync_in", 4, 4, 1, nullptr)};
	if (inner.fd < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = (uint32_t)inner.fd);
	unique_fd outer{bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "sl_sync", 4, 4, 1, &opts)};
	if (outer.fd < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	uint32_t zero = 0;
	uint32_t v = static_cast<uint32_t>(inner.fd);
	if (bpf_map_update_elem(outer.fd, &zero, &v, BPF_ANY) != 0)
		throw error("waiting for an RCU grace period: {}", errno_text(errno));
}

uint64_t carry_over_counts(const previous_counters &prev, uint32_t prev_id, const count_base_pin &pin,
			   const sluice_shm &shm, counter_copier &copier)
{
	auto old_base = std::make_unique<totals>();
	uint32_t rec = 0, id = 0;
	if (!pin.read(rec, id, *old_base) || id != prev_id || rec >= SLUICE_MAX_WORKERS) {
		spdlog::debug("the replaced program's counts are not carried over: the pin is of program {} "
			      "(replaced {})",
			      id, prev_id);
		return 0;
	}
	// Its last runs may still be counting: wait until they are done.
	wait_grace_period();
	auto counted = std::make_unique<totals>();
	prev.sum(*counted);
	// What the old run last copied is its record less its base. That record
	// need not be ours: after a kill -9 the dead run's record still looks
	// live for a while and this run claims another; sluiced sums both.
	const sluice_worker &w = shm.workers[rec];
	auto more = std::make_unique<totals>();
	bool fits = true;
	auto extra = [&fits](uint64_t held, uint64_t base, uint64_t all) {
		// held = base + copied, and copied <= all: else the record is not
		// the one the pin speaks of any more (a segment sluiced made anew).
		if (held < base || held - base > all) {
			fits = false;
			return uint64_t{0};
		}
		return all - (held - base);
	};
	for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
		more->counters[i] = extra(__atomic_load_n(&w.counters[i], __ATOMIC_RELAXED),
					  old_base->counters[i], counted->counters[i]);
	auto obj = [&extra](sluice_obj_counters &out, const sluice_obj_counters &held,
			    const sluice_obj_counters &base, const sluice_obj_counters &all) {
		out.packets = extra(__atomic_load_n(&held.packets, __ATOMIC_RELAXED), base.packets, all.packets);
		out.bytes = extra(__atomic_load_n(&held.bytes, __ATOMIC_RELAXED), base.bytes, all.bytes);
		out.new_flows =
			extra(__atomic_load_n(&held.new_flows, __ATOMIC_RELAXED), base.new_flows, all.new_flows);
	};
	for (uint32_t i = 0; i < SLUICE_MAX_VIPS; i++)
		obj(more->vip[i], w.vip[i], old_base->vip[i], counted->vip[i]);
	for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++)
		obj(more->backend[i], w.backend[i], old_base->backend[i], counted->backend[i]);
	if (!fits) {
		spdlog::info("worker record {} does not hold what the replaced program's run pinned (a new "
			     "segment?): its last counts are not carried over",
			     rec);
		return 0;
	}
	auto next = std::make_unique<totals>(copier.base());
	for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
		next->counters[i] += more->counters[i];
	for (uint32_t i = 0; i < SLUICE_MAX_VIPS; i++)
		add_obj(next->vip[i], more->vip[i]);
	for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++)
		add_obj(next->backend[i], more->backend[i]);
	copier.set_base(*next);
	return more->counters[SLUICE_CNT_rx_packets];
}

} // namespace sluice::xdp
