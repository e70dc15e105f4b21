// SPDX-License-Identifier: Apache-2.0
// Counting across a restart that replaces the program in place. A run
// copies its program's counters into its worker record every 100 ms; the
// program a --keep-attached stop (or a SIGKILL) leaves on the interface
// forwards, and counts, until the next run swaps it out, and without this
// those packets would be missing from sluiced's totals (measured: ~0.5 s
// of traffic per restart). So every copy is also written to a pin beside
// the connection table (sl_copied: which record, which program, the totals
// copied), and a run that replaces that very program adds what it counted
// after that copy to its own record's base.
#pragma once

#include "mirror.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::xdp {

class copied_pin {
public:
	// sl_copied under dir, made if missing; one of another layout is
	// replaced (it holds bookkeeping, no flows). Throws sluice::error.
	static copied_pin open(const std::string &dir);

	copied_pin() = default;
	copied_pin(copied_pin &&other) noexcept;
	copied_pin &operator=(copied_pin &&other) noexcept;
	copied_pin(const copied_pin &) = delete;
	copied_pin &operator=(const copied_pin &) = delete;
	~copied_pin();

	// What was just copied (before it is stored in the record: a kill in
	// between then counts a copy interval too little, never twice).
	void write(uint32_t record, uint32_t prog_id, const totals &t);
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
// place: adds to `copier` what that program counted after its run's last
// copy into the same record, and returns the packets that adds; 0 (adding
// nothing) when the pin is not that program's and that record's.
uint64_t carry_over_counts(const previous_counters &prev, uint32_t prev_id, const copied_pin &pin,
			   uint32_t record, counter_copier &copier);

} // namespace sluice::xdp
