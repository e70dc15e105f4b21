// SPDX-License-Identifier: Apache-2.0
// Live connections per backend over the dataplanes that count them (their
// worker records' conns[], common/conn_sweep.h), and when a draining backend
// is done: the two decisions behind `sluicectl stats`' connection columns,
// sluice_backend_connections and the "drained" event, kept pure so unit
// tests drive them with real records.
#pragma once

#include "conn_sweep.h"

#include <sluice/shm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

struct conn_totals {
	uint32_t counting = 0; // live records with a completed sweep, summed below
	uint32_t pending = 0;  // live records that count but have no sweep done yet
	// The oldest generation any summed record's last sweep began at: every
	// flow those sweeps missed was inserted by it or a later one.
	uint64_t min_sweep_generation = 0;
	std::vector<sluice_conn_count> by_backend; // SLUICE_MAX_BACKENDS; empty while counting == 0

	bool known() const { return counting > 0; }
	sluice_conn_count of(uint32_t backend_id) const
	{
		return backend_id < by_backend.size() ? by_backend[backend_id] : sluice_conn_count{};
	}
};

// Sums the records of live workers (the caller leaves out stopped and dead
// ones: their tables are gone or no longer forward). A record that does not
// count (--conn-sweep-s 0, or a test worker) adds nothing.
conn_totals sum_conns(const std::vector<const sluice_worker *> &live);

// Where the drain of a backend stands: unknown (no live dataplane counts),
// waiting (connections left, or not every counting dataplane has finished a
// sweep begun at the drain's generation or later), done (none left).
enum class drain_progress { unknown, waiting, done };
const char *drain_progress_name(drain_progress p);

// drained_at: the generation published with the backend's weight 0 (or a
// later one: sluiced notes the one it sees first).
drain_progress drain_state(const conn_totals &t, uint32_t backend_id, uint64_t drained_at);

} // namespace sluice
