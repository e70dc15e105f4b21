// SPDX-License-Identifier: Apache-2.0
#include "housekeeping.h"

#include "conn_sweep.h"
#include "note.h"
#include "report.h"
#include "sys.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>

#include <chrono>
#include <thread>
#include <vector>

namespace sluice {

namespace {

// A step per pass counts at most this many buckets (256 KiB of table): a
// pass stays short for the TAP relay beside it, and at the default 2 s a
// 2^20-entry table needs ~13 buckets per 100 us pass.
constexpr uint64_t sweep_step_buckets = 1024;

// One worker's table, counted for sluiced into that worker's record.
struct table_sweep {
	worker_lcore *w;
	conn_sweep sweep;
	conn_lister lister;
};

std::vector<table_sweep> plan_sweeps(const options &o, runtime &rt)
{
	std::vector<table_sweep> out;
	// A replay's clock is frozen and its worker short-lived: nothing to count.
	if (o.mode == port_mode::pcap || o.conn_sweep_s <= 0)
		return out;
	const auto period_ns = static_cast<uint64_t>(o.conn_sweep_s * 1e9);
	for (auto &w : rt.workers) {
		out.push_back({w.get(), conn_sweep(w->state.ct->n_buckets, period_ns, sweep_step_buckets), {}});
		out.back().sweep.set_capacity(uint64_t(w->state.ct->n_buckets) * SLUICE_CT_WAYS);
		out.back().sweep.announce(w->handle.record());
	}
	return out;
}

// The workers write their tables meanwhile; conn_sweep reads each field
// with one relaxed load. Clock: CLOCK_MONOTONIC seconds, the workers' own
// (lcore.h ct_clock_offset).
void sweep_step(std::vector<table_sweep> &sweeps)
{
	const uint64_t now_ns = monotonic_ns();
	const auto now_s = static_cast<uint32_t>(now_ns / 1000000000u);
	for (table_sweep &ts : sweeps) {
		sluice_worker &rec = ts.w->handle.record();
		const sluice_ct_table *t = ts.w->state.ct;
		// A listing sluiced asked for: the whole table in one go (about
		// 8 ms per million entries), as its answer is waited for.
		if (ts.lister.requested(ts.w->handle.segment(), rec)) {
			ts.lister.add(t->buckets, t->n_buckets, now_s, t->to, rec);
			ts.lister.answer(rec);
		}
		const conn_sweep::step st =
			ts.sweep.due(now_ns, __atomic_load_n(&rec.info.generation_applied, __ATOMIC_RELAXED));
		if (st.count == 0)
			continue;
		if (ts.sweep.counted(&t->buckets[st.first], st.count, now_s, t->to))
			ts.sweep.publish(rec, now_ns);
	}
}

} // namespace

pcap_progress keep_house(const options &o, runtime &rt, uint64_t expected)
{
	// The workers heartbeat on their own; the snapshots they forward by are
	// the keeper's copies, checked here.
	const uint64_t hz = rte_get_tsc_hz();
	uint64_t last_progress = rte_rdtsc();
	uint64_t last_seen = 0;
	pcap_progress end;
	const uint64_t launched_at = rte_rdtsc();
	const uint64_t stats_ticks = uint64_t(o.stats_period_s) * hz;
	uint64_t next_stats = o.stats_period_s ? launched_at + stats_ticks : UINT64_MAX;
	std::vector<table_sweep> sweeps = plan_sweeps(o, rt);
	while (!stop_requested.load(std::memory_order_relaxed)) {
		if (rte_rdtsc() >= next_stats) {
			print_progress(rt, double(rte_rdtsc() - launched_at) / double(hz));
			next_stats += stats_ticks;
		}
		rt.keeper->poll();
		const uint32_t moved = rt.relay ? rt.relay->poll() : 0;
		if (!sweeps.empty())
			sweep_step(sweeps);
		if (o.mode == port_mode::pcap) {
			end.done = __atomic_load_n(&rt.workers[0]->rx_done, __ATOMIC_ACQUIRE);
			if (end.done >= expected)
				break;
			// Records libpcap failed to turn into mbufs are counted
			// as errors and never arrive: the end is then when the
			// driver has read everything and we have done it all.
			rte_eth_stats st;
			if (rte_eth_stats_get(rt.ports.data, &st) == 0) {
				const uint64_t read = st.ipackets + st.ierrors;
				if (read >= expected && end.done >= st.ipackets) {
					note("{} of the input's {} packets could not be read by the pcap driver",
					     expected - end.done, expected);
					break;
				}
				if (read + end.done != last_seen) {
					last_seen = read + end.done;
					last_progress = rte_rdtsc();
				} else if (rte_rdtsc() - last_progress > 10 * hz) {
					end.stalled = true;
					break;
				}
			}
		}
		if (moved == 0)
			std::this_thread::sleep_for(std::chrono::microseconds(100));
	}
	return end;
}

} // namespace sluice
