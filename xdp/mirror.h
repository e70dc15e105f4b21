// SPDX-License-Identifier: Apache-2.0
// Snapshot -> BPF maps, and BPF counters -> the worker record: the two
// directions sluice-xdp keeps in step. The layout and the bank switch are
// described in maps.h.
#pragma once

#include "maps.h"
#include "program.h"

#include <sluice/shm.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace sluice::xdp {

class mirror {
public:
	// Maps the banked arrays of `prog` into this process and creates the
	// map-in-map used to wait for RCU grace periods. Throws sluice::error.
	explicit mirror(const program &prog);
	mirror(const mirror &) = delete;
	mirror &operator=(const mirror &) = delete;
	~mirror();

	// Fills a bank no program run reads from `s` and switches the program
	// to it; the bank it leaves is free again one RCU grace period later
	// (waited for on a thread of its own). Waits only if no bank is free:
	// a fourth snapshot within one grace period. A snapshot the maps cannot
	// hold, one that fails its checksum, or one whose generation is not
	// above the last one mirrored changes nothing the program reads: false,
	// *why set, and refusal() says which kind (SLUICE_REFUSED_*).
	bool apply(const sluice_snapshot &s, std::string *why);
	uint32_t refusal() const { return refusal_; } // of the last apply() that refused

	uint64_t generation() const { return generation_; } // last mirrored, 0: none
	uint32_t bank() const { return bank_; }              // the active bank
	uint64_t last_latency_ns() const { return last_latency_ns_; } // publish -> switch
	uint64_t last_grace_ns() const { return last_grace_ns_.load(); } // the last RCU wait

	// The active bank's view, for tests and tools: the backend record the
	// program reads for `id`, and the Maglev entry at ring position `pos`.
	sluice_backend backend(uint32_t id) const;
	uint32_t ring(uint32_t pos) const;

private:
	struct region {
		void *addr = nullptr;
		size_t len = 0;
	};
	region map_region(bpf_map *m);
	uint32_t free_bank(bool have_active, uint32_t active_bank);
	void retire(uint32_t bank);

	const program &prog_;
	region state_, banks_, rings_;
	int sync_inner_fd_ = -1;
	int sync_outer_fd_ = -1;
	uint32_t ring_entries_ = 0;
	uint64_t generation_ = 0;
	uint32_t refusal_ = SLUICE_REFUSED_NONE;
	uint32_t bank_ = 0;
	uint64_t last_latency_ns_ = 0;
	std::atomic<uint64_t> last_grace_ns_{0};
	// Grace periods: a bank left by a switch is busy until a grace period
	// that started after the switch has passed, waited for by its own
	// thread (concurrent waits share the kernel's grace periods).
	std::mutex mu_;
	std::condition_variable cv_;
	uint64_t retirements_ = 0;
	std::array<bool, SLUICE_XDP_BANKS> busy_{};
	std::array<uint64_t, SLUICE_XDP_BANKS> retired_seq_{}; // when each was left
	std::array<std::thread, SLUICE_XDP_BANKS> waiter_;
	std::string grace_error_;
};

// Per-CPU BPF counters, summed.
struct totals {
	uint64_t counters[SLUICE_COUNTER_SLOTS] = {};
	sluice_obj_counters vip[SLUICE_MAX_VIPS] = {};
	sluice_obj_counters backend[SLUICE_MAX_BACKENDS] = {};
};

// Sums a program's per-CPU counter maps (sl_cpu, sl_vip_cnt, sl_be_cnt):
// ours, or by their fds, those of the program a restart replaces
// (handover.h).
class counter_reader {
public:
	explicit counter_reader(const program &prog);
	counter_reader(int cpu_fd, int vip_fd, int backend_fd, uint32_t cpus)
		: cpu_fd_(cpu_fd), vip_fd_(vip_fd), backend_fd_(backend_fd), cpus_(cpus)
	{
	}
	void sum(totals &out) const; // throws sluice::error if a map cannot be read
private:
	int cpu_fd_, vip_fd_, backend_fd_;
	uint32_t cpus_;
};

// Copies the program's counters into a worker record: the record keeps what
// it held when claimed (an earlier owner's totals stay in the sums sluiced
// shows) and adds what this program counted.
class counter_copier {
public:
	counter_copier(const program &prog, sluice_worker &rec);
	void copy();
	// What the record held besides this program's counts: its totals when
	// claimed, or (handover.h) those a restart carried over.
	const totals &base() const { return *base_; }
	void set_base(const totals &b) { *base_ = b; }
	// Counts what the program never saw (sluice-xdp --pcap's runts).
	void add(uint32_t counter, uint64_t n) { base_->counters[counter % SLUICE_COUNTER_SLOTS] += n; }

private:
	counter_reader reader_;
	sluice_worker &rec_;
	std::unique_ptr<totals> base_;
	std::unique_ptr<totals> now_;
};

} // namespace sluice::xdp
