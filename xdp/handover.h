// SPDX-License-Identifier: Apache-2.0
// Counting across a restart that replaces the program in place. A run's
// worker record holds a base (what the record held when claimed) plus what
// its program counted, copied every 100 ms; the program a --keep-attached
// stop (or a SIGKILL) leaves on the interface forwards, and counts, until
// the next run swaps it out, and without this those packets would be
// missing from sluiced's totals (measured: ~0.5 s of traffic per restart).
// So each run pins its base beside the connection table (sl_count_base:
// which record, which program, the base), once, after its attach; a run
// that replaces that very program reads what that run last copied (its
// record less its base) and adds the rest of what the old program counted
// to its own base. Exact however the old run ended, even killed between
// two copies.
#pragma once

#include "mirror.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::xdp {

class count_base_pin {
public:
	// sl_count_base under dir, made if missing; one of another layout is
	// replaced (it holds bookkeeping, no flows). Throws sluice::error.
	static count_base_pin open(const std::string &dir);

	count_base_pin() = default;
	count_base_pin(count_base_pin &&other) noexcept;
	count_base_pin &operator=(count_base_pin &&other) noexcept;
	count_base_pin(const count_base_pin &) = delete;
	count_base_pin &operator=(const count_base_pin &) = delete;
	~count_base_pin();

	// This run's record, program and base.
	void write(uint32_t record, uint32_t prog_id, const totals &base);
	// The last complete write; false if none (or one cut short).
	bool read(uint32_t &record, uint32_t &prog_id, totals &t) const;

private:
	struct layout;
	layout *rec_ = nullptr;
	size_t len_ = 0;
};

// The counter maps of the program with this id, held open so that they
// outlive its replacement. nullptr when they are not this version's layout
// (then nothing is carried over).
class previous_counters {
public:
	static std::unique_ptr<previous_counters> open(uint32_t prog_id, uint32_t cpus);
	~previous_counters();
	void sum(totals &out) const { counter_reader(fds_[0], fds_[1], fds_[2], cpus_).sum(out); }

private:
	previous_counters() = default;
	int fds_[3] = {-1, -1, -1};
	uint32_t cpus_ = 0;
};

// Returns after an RCU grace period: every XDP run begun before the call
// (of a program just replaced, say) has finished. Throws sluice::error.
void wait_grace_period();

// After a run replaced `prev` (opened before the swap, with prev_id) in
// place: adds to `copier`'s base what that program counted beyond what its
// run last copied into its worker record (the record in `shm` the pin
// names, less the pinned base), and returns the packets that adds; 0,
// adding nothing, when the pin is not that program's or does not fit its
// record (a segment sluiced made anew).
uint64_t carry_over_counts(const previous_counters &prev, uint32_t prev_id, const count_base_pin &pin,
			   const sluice_shm &shm, counter_copier &copier);

} // namespace sluice::xdp
