// SPDX-License-Identifier: Apache-2.0
#include "mirror.h"
#include "snapshot_check.h"

#include "error.h"
#include "sys.h"
#include "shm_segment.h"

#include <sluice/conntrack.h>

#include "sluice.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace sluice::xdp {

namespace {

// ARRAY maps store values at an 8-byte stride; mmap covers whole pages.
size_t array_bytes(bpf_map *m)
{
	size_t stride = (bpf_map__value_size(m) + 7) & ~size_t(7);
	size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
	size_t n = stride * bpf_map__max_entries(m);
	return (n + page - 1) / page * page;
}

} // namespace

mirror::mirror(const program &prog) : prog_(prog)
{
	sluice_bpf *skel = prog.skel();
	state_ = map_region(skel->maps.sl_state);
	banks_ = map_region(skel->maps.sl_banks);
	rings_ = map_region(skel->maps.sl_rings);
	ring_entries_ = prog.ring_entries();

	// Updating an ARRAY_OF_MAPS from user space returns only after an RCU
	// grace period (kernel/bpf/syscall.c, maybe_wait_bpf_programs()): every
	// XDP run that started before it has finished. That is how the mirror
	// knows nobody reads the bank it switched away from.
	sync_inner_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_sync_in", 4, 4, 1, nullptr);
	if (sync_inner_fd_ < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = (uint32_t)sync_inner_fd_);
	sync_outer_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "sl_sync", 4, 4, 1, &opts);
	if (sync_outer_fd_ < 0)
		throw error("creating the grace-period map: {}", errno_text(errno));
	// The program's state is fresh (its maps are not pinned): nothing active.
	generation_ = sluice_xdp_active_generation(
		__atomic_load_n(&static_cast<sluice_xdp_state *>(state_.addr)->active, __ATOMIC_ACQUIRE));
}

mirror::~mirror()
{
	// Each waiter ends within one grace period.
	for (std::thread &t : waiter_)
		if (t.joinable())
			t.join();
	for (region *r : {&state_, &banks_, &rings_})
		if (r->addr)
			munmap(r->addr, r->len);
	if (sync_outer_fd_ >= 0)
		close(sync_outer_fd_);
	if (sync_inner_fd_ >= 0)
		close(sync_inner_fd_);
}

mirror::region mirror::map_region(bpf_map *m)
{
	region r;
	r.len = array_bytes(m);
	r.addr = mmap(nullptr, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
	if (r.addr == MAP_FAILED)
		throw error("mapping BPF map {} ({} bytes): {}", bpf_map__name(m), r.len, errno_text(errno));
	return r;
}

void mirror::retire(uint32_t bank)
{
	std::thread done;
	{
		std::lock_guard lk(mu_);
		busy_[bank] = true;
		retired_seq_[bank] = ++retirements_;
		// The bank was free, so its previous waiter has finished.
		done = std::move(waiter_[bank]);
	}
	if (done.joinable())
		done.join();
	waiter_[bank] = std::thread([this, bank] {
		// The update returns only after a grace period that started after
		// this call, so after the switch that retired the bank.
		uint32_t zero = 0;
		uint32_t fd = static_cast<uint32_t>(sync_inner_fd_);
		const uint64_t t0 = monotonic_ns();
		const int err = bpf_map_update_elem(sync_outer_fd_, &zero, &fd, BPF_ANY);
		const int saved = errno;
		last_grace_ns_ = monotonic_ns() - t0;
		std::lock_guard lk(mu_);
		if (err != 0)
			grace_error_ = fmt::format("waiting for an RCU grace period: {}", errno_text(saved));
		else
			busy_[bank] = false;
		cv_.notify_all();
	});
}

uint32_t mirror::free_bank(bool have_active, uint32_t active_bank)
{
	std::unique_lock lk(mu_);
	for (;;) {
		if (!grace_error_.empty())
			throw error(grace_error_);
		int best = -1;
		for (uint32_t b = 0; b < SLUICE_XDP_BANKS; b++) {
			if ((have_active && b == active_bank) || busy_[b])
				continue;
			// The one left longest ago.
			if (best < 0 || retired_seq_[b] < retired_seq_[best])
				best = static_cast<int>(b);
		}
		if (best >= 0)
			return static_cast<uint32_t>(best);
		cv_.wait(lk);
	}
}

bool mirror::apply(const sluice_snapshot &s, std::string *why)
{
	// One read of the header, then only this copy: the slot is shared
	// memory that a writer which took our record for dead, or a corrupt
	// segment, may change while we read it. Every count is bounded here
	// before it sizes a read; the checksum is verified on what was copied,
	// so a torn copy is refused, never installed.
	sluice_snapshot_header hd;
	std::memcpy(&hd, &s.hdr, sizeof(hd));
	const uint64_t gen = hd.generation;
	if ((refusal_ = check_header(hd, ring_entries_, generation_, why)) != SLUICE_REFUSED_NONE)
		return false;

	const uint64_t active = __atomic_load_n(&static_cast<sluice_xdp_state *>(state_.addr)->active,
						__ATOMIC_ACQUIRE);
	const uint32_t old_bank = sluice_xdp_active_bank(active);
	const uint32_t bank = free_bank(active != 0, old_bank);

	// Plain copies into the bank nobody reads: the snapshot up to rings[],
	// and the rings at their offsets. A refusal below leaves it unused.
	sluice_xdp_bank *b = static_cast<sluice_xdp_bank *>(banks_.addr) + bank;
	uint32_t *rings = static_cast<uint32_t *>(rings_.addr) + (size_t)bank * ring_entries_;
	std::memcpy(b, &s, sizeof(sluice_xdp_bank));
	b->hdr = hd;
	std::memcpy(rings, s.rings, (size_t)hd.ring_used * sizeof(uint32_t));
	if ((refusal_ = check_bank(hd, *b, rings, why)) != SLUICE_REFUSED_NONE)
		return false;

	// The switch. Every read of the bank in the program depends on the bank
	// number it loaded (an address computed from it), so the
	// release store is all the ordering the reader needs.
	__atomic_store_n(&static_cast<sluice_xdp_state *>(state_.addr)->active,
			 sluice_xdp_active_pack(gen, bank), __ATOMIC_RELEASE);
	const uint64_t now = realtime_ns();
	last_latency_ns_ = now > hd.published_ns ? now - hd.published_ns : 0;
	generation_ = gen;
	bank_ = bank;
	// Runs that loaded the old bank may still read it: it is free again
	// after the next grace period that starts from now.
	if (active != 0)
		retire(old_bank);
	return true;
}

sluice_backend mirror::backend(uint32_t id) const
{
	return static_cast<const sluice_xdp_bank *>(banks_.addr)[bank_].backends[id & (SLUICE_MAX_BACKENDS - 1)];
}

uint32_t mirror::ring(uint32_t pos) const
{
	return static_cast<const uint32_t *>(rings_.addr)[(size_t)bank_ * ring_entries_ +
							  (pos & (ring_entries_ - 1))];
}

// ------------------------------------------------------------- counters

namespace {

// Sums a per-CPU array of `n` values of T (each CPU's value at an 8-byte
// stride) into out[0..n). One batch call where the kernel has it.
template <typename T, typename Add>
void sum_percpu(int fd, uint32_t n, uint32_t cpus, T *out, Add add)
{
	const size_t stride = (sizeof(T) + 7) & ~size_t(7);
	std::vector<uint8_t> values((size_t)n * cpus * stride);
	std::vector<uint32_t> keys(n);
	uint32_t count = n;
	uint32_t out_batch = 0;
	int err = bpf_map_lookup_batch(fd, nullptr, &out_batch, keys.data(), values.data(), &count,
				       nullptr);
	if (err && errno != ENOENT) {
		// No batch support: one lookup per key.
		for (uint32_t k = 0; k < n; k++) {
			if (bpf_map_lookup_elem(fd, &k, values.data() + (size_t)k * cpus * stride) != 0)
				throw error("reading BPF counters: {}", errno_text(errno));
			keys[k] = k;
		}
		count = n;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t k = keys[i];
		if (k >= n)
			continue;
		T acc{};
		for (uint32_t c = 0; c < cpus; c++) {
			T v;
			std::memcpy(&v, values.data() + ((size_t)i * cpus + c) * stride, sizeof(T));
			add(acc, v);
		}
		out[k] = acc;
	}
}

void add_obj(sluice_obj_counters &a, const sluice_obj_counters &b)
{
	a.packets += b.packets;
	a.bytes += b.bytes;
	a.new_flows += b.new_flows;
}

} // namespace

counter_reader::counter_reader(const program &prog)
	: counter_reader(bpf_map__fd(prog.skel()->maps.sl_cpu), bpf_map__fd(prog.skel()->maps.sl_vip_cnt),
			 bpf_map__fd(prog.skel()->maps.sl_be_cnt), prog.cpus())
{
}

void counter_reader::sum(totals &out) const
{
	const uint32_t cpus = cpus_;
	sluice_xdp_cpu sum{};
	sum_percpu<sluice_xdp_cpu>(cpu_fd_, 1, cpus, &sum,
				   [](sluice_xdp_cpu &a, const sluice_xdp_cpu &b) {
					   for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
						   a.cnt.c[i] += b.cnt.c[i];
				   });
	std::memcpy(out.counters, sum.cnt.c, sizeof(out.counters));
	sum_percpu<sluice_obj_counters>(vip_fd_, SLUICE_MAX_VIPS, cpus, out.vip, add_obj);
	sum_percpu<sluice_obj_counters>(backend_fd_, SLUICE_MAX_BACKENDS, cpus, out.backend, add_obj);
}

counter_copier::counter_copier(const program &prog, sluice_worker &rec)
	: reader_(prog), rec_(rec), base_(std::make_unique<totals>()), now_(std::make_unique<totals>())
{
	for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
		base_->counters[i] = __atomic_load_n(&rec.counters[i], __ATOMIC_RELAXED);
	std::memcpy(base_->vip, rec.vip, sizeof(rec.vip));
	std::memcpy(base_->backend, rec.backend, sizeof(rec.backend));
}

void counter_copier::copy()
{
	reader_.sum(*now_);
	// Relaxed stores of whole words: the summing reader loads them relaxed.
	for (uint32_t i = 0; i < SLUICE_COUNTER_SLOTS; i++)
		__atomic_store_n(&rec_.counters[i], base_->counters[i] + now_->counters[i], __ATOMIC_RELAXED);
	auto store = [](sluice_obj_counters &dst, const sluice_obj_counters &b, const sluice_obj_counters &n) {
		__atomic_store_n(&dst.packets, b.packets + n.packets, __ATOMIC_RELAXED);
		__atomic_store_n(&dst.bytes, b.bytes + n.bytes, __ATOMIC_RELAXED);
		__atomic_store_n(&dst.new_flows, b.new_flows + n.new_flows, __ATOMIC_RELAXED);
	};
	for (uint32_t i = 0; i < SLUICE_MAX_VIPS; i++)
		store(rec_.vip[i], base_->vip[i], now_->vip[i]);
	for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++)
		store(rec_.backend[i], base_->backend[i], now_->backend[i]);
}

} // namespace sluice::xdp
