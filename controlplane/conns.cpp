// SPDX-License-Identifier: Apache-2.0
#include "conns.h"

#include <algorithm>
#include <memory>

namespace sluice {

conn_totals sum_conns(const std::vector<const sluice_worker *> &live)
{
	conn_totals t;
	auto one = std::make_unique<conn_tally>(); // 32 KiB: not on the stack
	for (const sluice_worker *rec : live) {
		conn_reading meta;
		if (!read_conns(*rec, meta, *one)) {
			// Counts, but no sweep done yet (just started), or a
			// writer we never caught between two sweeps: its table is
			// not in the sum, so nothing may look done.
			if (meta.period_ms > 0)
				t.pending++;
			continue;
		}
		if (t.by_backend.empty())
			t.by_backend.assign(SLUICE_MAX_BACKENDS, sluice_conn_count{});
		for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++) {
			t.by_backend[i].active += one->by_backend[i].active;
			t.by_backend[i].inactive += one->by_backend[i].inactive;
		}
		t.min_sweep_generation = t.counting == 0 ? meta.sweep_generation
							 : std::min(t.min_sweep_generation, meta.sweep_generation);
		t.counting++;
	}
	return t;
}

const char *drain_progress_name(drain_progress p)
{
	switch (p) {
	case drain_progress::unknown:
		return "unknown";
	case drain_progress::waiting:
		return "waiting";
	case drain_progress::done:
		return "done";
	}
	return "unknown";
}

drain_progress drain_state(const conn_totals &t, uint32_t backend_id, uint64_t drained_at)
{
	if (!t.known())
		return t.pending ? drain_progress::waiting : drain_progress::unknown;
	// A sweep begun before the drain reached a dataplane may have passed a
	// bucket before a new flow to this backend landed in it.
	if (t.pending || t.min_sweep_generation < drained_at)
		return drain_progress::waiting;
	const sluice_conn_count c = t.of(backend_id);
	return c.active == 0 && c.inactive == 0 ? drain_progress::done : drain_progress::waiting;
}

} // namespace sluice
