// SPDX-License-Identifier: Apache-2.0
#include "housekeeping.h"

#include "note.h"
#include "report.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>

#include <chrono>
#include <thread>

namespace sluice {

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
	while (!stop_requested.load(std::memory_order_relaxed)) {
		if (rte_rdtsc() >= next_stats) {
			print_progress(rt, double(rte_rdtsc() - launched_at) / double(hz));
			next_stats += stats_ticks;
		}
		rt.keeper->poll();
		const uint32_t moved = rt.relay ? rt.relay->poll() : 0;
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
