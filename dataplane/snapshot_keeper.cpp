// SPDX-License-Identifier: Apache-2.0
#include "snapshot_keeper.h"

#include "lcore.h"
#include "note.h"
#include "snapshot_verify.h"

#include <rte_common.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace sluice {

namespace {

constexpr size_t rings_offset = offsetof(sluice_snapshot, rings);

// Ring entries to allocate for `used`: a power of two, at least 65,536, so
// a growing configuration reallocates a few times, not at every publish.
uint32_t capacity_for(uint32_t used)
{
	uint32_t c = 1u << 16;
	while (c < used && c < SLUICE_RING_POOL)
		c <<= 1;
	return c;
}

} // namespace

snapshot_keeper::snapshot_keeper(sluice_shm *shm) : shm_(shm) {}

snapshot_keeper::~snapshot_keeper()
{
	for (bank &b : banks_)
		std::free(b.snap);
}

bool snapshot_keeper::free_bank_is_free() const
{
	// The free bank is the one that is not current; a worker still on it
	// has not taken the current generation yet.
	for (const worker_lcore *w : workers_)
		if (__atomic_load_n(&w->taken, __ATOMIC_ACQUIRE) != current_gen_)
			return false;
	return true;
}

void snapshot_keeper::refuse(uint64_t generation, uint32_t reason, const std::string &why)
{
	refused_gen_ = generation;
	note("{}: still forwarding by generation {}", why, current_gen_);
	// sluiced shows every worker stale, with the reason, until a later
	// generation is taken. No worker changes banks meanwhile (the keeper
	// takes a generation only once all have taken the current one), so
	// these stores do not race theirs.
	for (worker_lcore *w : workers_) {
		w->handle.seen(generation);
		w->handle.applied(current_gen_, reason);
	}
}

bool snapshot_keeper::take(uint64_t active, bank &into)
{
	const uint64_t gen = sluice_active_generation(active);
	const uint32_t slot = sluice_active_slot(active);
	if (slot >= SLUICE_SNAPSHOT_SLOTS) {
		refuse(gen, SLUICE_REFUSED_CORRUPT,
		       fmt::format("snapshot generation {}: slot {} of {} (a corrupt segment?)", gen, slot,
				   SLUICE_SNAPSHOT_SLOTS));
		return false;
	}
	const sluice_snapshot &src = shm_->slots[slot];
	// The header once: every count is bounded before it sizes a copy, and
	// what is checked is what is used, whatever the slot says later.
	sluice_snapshot_header hd;
	std::memcpy(&hd, const_cast<const sluice_snapshot_header *>(&src.hdr), sizeof(hd));
	std::string why;
	if (hd.generation != gen) {
		// Being rewritten, or written by someone who is not sluiced; a
		// newer `active` will say which.
		if (__atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE) == active)
			refuse(gen, SLUICE_REFUSED_CORRUPT,
			       fmt::format("snapshot generation {}: its slot holds generation {} (a corrupt "
					   "segment?)",
					   gen, hd.generation));
		return false;
	}
	if (uint32_t r = check_snapshot_header(hd, current_gen_, &why); r != SLUICE_REFUSED_NONE) {
		refuse(gen, r, why);
		return false;
	}
	if (into.capacity < hd.ring_used || !into.snap) {
		const uint32_t cap = capacity_for(hd.ring_used);
		void *mem = std::aligned_alloc(RTE_CACHE_LINE_SIZE,
					       RTE_ALIGN_CEIL(rings_offset + 4ull * cap, RTE_CACHE_LINE_SIZE));
		if (!mem) {
			note("snapshot generation {}: no memory for a copy of {} ring entries; still "
			     "forwarding by generation {}",
			     gen, hd.ring_used, current_gen_);
			return false; // tried again at the next poll
		}
		std::free(into.snap);
		into.snap = static_cast<sluice_snapshot *>(mem);
		into.capacity = cap;
	}
	std::memcpy(static_cast<void *>(into.snap), &src, rings_offset);
	std::memcpy(into.snap->rings, src.rings, 4ull * hd.ring_used);
	// The slot is reused only once it is no longer active (and no worker
	// names it): still active now means it was active, unchanged, all the
	// while the copy was made. Otherwise the copy may be torn; the next poll
	// takes the newer one.
	if (__atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE) != active)
		return false;
	into.snap->hdr = hd;
	if (uint32_t r = check_snapshot_copy(hd, *into.snap, into.snap->rings, &why); r != SLUICE_REFUSED_NONE) {
		refuse(gen, r, why);
		return false;
	}
	into.generation = gen;
	return true;
}

bool snapshot_keeper::poll()
{
	const uint64_t active = __atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE);
	const uint64_t gen = sluice_active_generation(active);
	if (active == SLUICE_ACTIVE_NONE || gen == current_gen_ || gen == refused_gen_ || !free_bank_is_free())
		return current_gen_ != 0;
	bank &into = current_.load(std::memory_order_relaxed) == &banks_[0] ? banks_[1] : banks_[0];
	if (take(active, into)) {
		if (refused_gen_)
			note("snapshot generation {} taken", gen);
		refused_gen_ = 0;
		current_gen_ = gen;
		current_.store(&into, std::memory_order_release);
	}
	return current_gen_ != 0;
}

} // namespace sluice
