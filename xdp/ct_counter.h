// SPDX-License-Identifier: Apache-2.0
// sluice-xdp's count of live connections per backend for sluiced: its
// housekeeping loop sweeps the pinned sl_ct map (every CPU's buckets) a
// step per pass, paced over --conn-sweep-s, and publishes each completed
// sweep in its worker record (common/conn_sweep.h; shm.h conns[]).
#pragma once

#include "program.h"

#include "conn_sweep.h"

#include <sluice/conntrack.h>
#include <sluice/shm.h>

#include <cstdint>
#include <vector>

namespace sluice::xdp {

class ct_counter {
public:
	// period_s 0: counts nothing (the record says so). Timeouts: the
	// program's own (its rodata), so "live" means what it means there.
	// Listings sluiced asks for in `shm` are answered in `rec` too.
	ct_counter(const program &prog, const sluice_ct_timeouts &to, double period_s, const sluice_shm &shm,
		   sluice_worker &rec);

	// One step of the sweep, if one is due; `generation` is what the maps
	// forward by now (noted when a sweep begins). At most one map read of
	// read_buckets buckets, unless sluiced asked for a listing: that reads
	// the whole table.
	void poll(uint64_t generation);

private:
	// Buckets first..first+n of every CPU into buf_ (CPU c's at c * step_);
	// false: the map refused.
	bool read(uint32_t first, uint32_t n);
	bool read_run(uint32_t key, uint32_t n, sluice_ct_bucket *out);
	void list(uint32_t now_s);
	int fd_ = -1;
	uint32_t cpus_, per_cpu_, step_;
	sluice_ct_timeouts to_;
	const sluice_shm &shm_;
	sluice_worker &rec_;
	bool on_ = false;
	bool batch_ = true; // bpf_map_lookup_batch works here (Linux 5.6+)
	bool read_failing_ = false; // said so once
	conn_sweep sweep_;
	conn_lister lister_;
	std::vector<sluice_ct_bucket> buf_;
	std::vector<uint32_t> keys_;
};

} // namespace sluice::xdp
