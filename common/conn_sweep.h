// SPDX-License-Identifier: Apache-2.0
// Live connections per backend, counted off a connection table by a
// dataplane's non-worker thread and published in a worker record
// (include/sluice/shm.h: conns[], info.conn_*), then summed by sluiced.
//
// The sweep reads a table its worker writes at the same time: each field it
// uses is one relaxed atomic load, so a torn entry (a way being rewritten
// under the read) miscounts that one entry for one sweep, never more. It
// counts into a private array and publishes the whole array once a sweep of
// the table is complete, so a reader never sees half a sweep.
//
// Pacing: a sweep of B buckets is spread over the period P, by time: at
// each step it counts up to the share of B that the time since the sweep
// began gives (bounded per step, so one step never holds the thread long).
// What a sweep costs is its memory traffic: B x 256 bytes (4 ways x 64) per
// P per table, read once.
#pragma once

#include <sluice/conntrack.h>
#include <sluice/shm.h>

#include <cstdint>
#include <memory>

namespace sluice {

// The counts of one table as one sweep saw them, by backend id.
struct conn_tally {
	sluice_conn_count by_backend[SLUICE_MAX_BACKENDS];
	// Live entries of every state (fragments' included) over all copies,
	// each copy's counted apart: how full the table is.
	uint64_t live_entries;
};

// Adds the live entries of buckets b[0..n) to `t`: active (SYN, EST, UDP)
// and inactive (FIN), by conntrack.h's sluice_ct_expired() at now_s with
// timeouts `to`. FRAG entries and entries naming no backend id in range are
// not connections. Reads each field with one relaxed atomic load.
void conn_count_buckets(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
			conn_tally &t);

// The same over `copies` tables of one flow space (sluice-xdp's per-CPU
// tables: a veth, or RPS, spreads one flow's packets over CPUs, and each
// CPU's table then holds an entry for it): bucket i of copy c is
// b[c * stride + i]. A flow found in several copies counts once: its latest
// FIN closes it (the close's last ACKs may refresh an EST copy on another
// CPU), else its most recently seen copy gives its state.
void conn_count_across(const sluice_ct_bucket *b, uint32_t copies, uint64_t stride, uint64_t n,
		       uint32_t now_s, const sluice_ct_timeouts &to, conn_tally &t);

// One table's sweep, paced over `period_ns`.
class conn_sweep {
public:
	// buckets: the table's (one CPU's for sluice-xdp, whose steps cover
	// every CPU's copy of those buckets); period_ns > 0.
	conn_sweep(uint64_t buckets, uint64_t period_ns, uint64_t max_step = 4096);

	// The next bucket to count and how many to count now (0: none due).
	// The first call starts the first sweep, and so does the first call
	// after publish(): a sweep notes the generation the worker forwards by
	// when it begins, which sluiced compares with the one that drained a
	// backend (every flow the sweep does not see was inserted by that
	// generation or a later one). A step is at most max_step buckets and
	// never crosses the table's end.
	struct step {
		uint64_t first = 0;
		uint64_t count = 0;
	};
	step due(uint64_t now_ns, uint64_t generation);

	// Says in the record, before the first sweep completes, that this
	// dataplane counts (info.conn_sweep_ms): sluiced then waits for its
	// first sweep before it calls a drain done, instead of leaving its
	// table out of the sum.
	void announce(sluice_worker &rec) const;

	// Counts what due() gave (the caller hands the buckets: in memory for
	// sluice-dpdk, read from the map for sluice-xdp, `copies` of them at
	// `stride` as conn_count_across() takes them). Returns true when that
	// completed a sweep: publish() it.
	bool counted(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
		     uint32_t copies = 1, uint64_t stride = 0);

	// Copies the completed sweep into the record under shm.h's sequence
	// lock, with the generation noted when it began, then starts the next
	// sweep's tally from zero.
	void publish(sluice_worker &rec, uint64_t now_ns);

	// Whether the last due() began a sweep.
	bool sweep_begun() const { return begun_now_; }

	uint64_t sweeps() const { return sweeps_; }
	uint64_t buckets() const { return buckets_; }

	// The ways the table has over all its copies (info.ct_capacity);
	// set before the first publish().
	void set_capacity(uint64_t ways) { capacity_ = ways; }

private:
	uint64_t buckets_, period_ns_, max_step_;
	uint64_t capacity_ = 0;
	uint64_t cursor_ = 0;   // next bucket of the sweep under way
	uint64_t begun_ns_ = 0; // 0: no sweep begun yet
	uint64_t begin_generation_ = 0;
	uint64_t sweeps_ = 0;
	bool begun_now_ = false;
	std::unique_ptr<conn_tally> tally_;
};

// What a reader (sluiced) takes from one record: the last completed
// sweep's counts, consistent under the sequence lock. Returns false if the
// record has no completed sweep (meta.period_ms > 0 then says one is under
// way) or stayed mid-write for every try.
struct conn_reading {
	uint32_t sweeps = 0;
	uint64_t sweep_generation = 0;
	uint64_t begun_ns = 0;
	uint64_t done_ns = 0;
	uint32_t period_ms = 0;
	uint32_t ct_live = 0;     // the table's live entries (all copies)
	uint32_t ct_capacity = 0; // and its ways
};
bool read_conns(const sluice_worker &rec, conn_reading &meta, conn_tally &out);

// A listing of live connections on request (`sluicectl conn list`, shm.h
// sluice_conn_list_request): the dataplane's side. Its housekeeping asks
// requested() every pass; when sluiced has posted a request this record
// has not answered, it reads the whole table (in memory, or from the map
// in pieces) through add() and then answer()s, all off the packet path.
// The same relaxed reads and cross-CPU rule as the count: a flow held by
// several copies is listed once, as its current copy.
class conn_lister {
public:
	bool requested(const sluice_shm &shm, const sluice_worker &rec);
	void add(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
		 sluice_worker &rec, uint32_t copies = 1, uint64_t stride = 0);
	void answer(sluice_worker &rec);

private:
	sluice_conn_list_request req_{};
	uint32_t rows_ = 0, matched_ = 0;
};

// sluiced's side: posts a request (a filter and the next seq) and returns
// its seq; then a record has answered it once conn_list_answered().
uint32_t post_conn_list(sluice_shm &shm, uint32_t vip_id, uint32_t backend_id, uint32_t limit);
bool conn_list_answered(const sluice_worker &rec, uint32_t seq);

} // namespace sluice
