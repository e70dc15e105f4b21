// SPDX-License-Identifier: Apache-2.0
// The snapshots sluice-dpdk's workers forward by: private copies the main
// lcore makes of what sluiced publishes, checked before any worker sees
// them. The segment is shared memory another process writes; a worker that
// read its slots directly could only mask what it indexes, not refuse a
// corrupt snapshot. So, as sluice-xdp does with its maps' banks, the keeper
// copies the active slot into a bank of its own, checks the copy
// (common/snapshot_verify.h) and only then hands it to the workers; a
// snapshot that fails is refused (logged once, and each worker's record
// says which generation it forwards by and why not the newer one), and the
// workers go on with the bank they have.
//
// Two banks. The keeper fills the one no worker uses: each worker says
// which generation it took (its `taken` word, written once per change), and
// the older bank is free once every worker has taken the newer one. A
// worker picks up the current bank with one load per poll, no lock.
#pragma once

#include "shm_segment.h"

#include <sluice/shm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice {

struct worker_lcore;

class snapshot_keeper {
public:
	struct bank {
		uint64_t generation = 0;
		sluice_snapshot *snap = nullptr; // the snapshot up to rings[capacity]
		uint32_t capacity = 0;           // ring entries the allocation holds
	};

	explicit snapshot_keeper(sluice_shm *shm);
	~snapshot_keeper();
	snapshot_keeper(const snapshot_keeper &) = delete;
	snapshot_keeper &operator=(const snapshot_keeper &) = delete;

	// The records the refusals are written to (the workers', once claimed).
	void set_workers(std::vector<worker_lcore *> workers) { workers_ = std::move(workers); }

	// Main lcore: takes a newer generation than the current bank's if the
	// segment has one and the free bank is free. Returns whether the
	// workers have a snapshot to forward by.
	bool poll();

	// Worker: the bank to use for this burst (nullptr before the first).
	const bank *current() const { return current_.load(std::memory_order_acquire); }

	uint64_t generation() const { return current_gen_; } // main lcore only

private:
	bool free_bank_is_free() const;
	bool take(uint64_t active, bank &into);
	void refuse(uint64_t generation, uint32_t reason, const std::string &why);

	sluice_shm *shm_;
	bank banks_[2];
	std::atomic<const bank *> current_{nullptr};
	uint64_t current_gen_ = 0;
	uint64_t refused_gen_ = 0;
	std::vector<worker_lcore *> workers_;
};

} // namespace sluice
