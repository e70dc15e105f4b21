// SPDX-License-Identifier: Apache-2.0
// A prototype of a leaner dataplane/worker.cpp process_burst, for the
// benchmark only (bench_pipeline --with-proto): what docs/performance.md's
// proposals would buy, measured beside the real packet path in the same run.
// Not used by sluice-dpdk. Same decisions, same bytes out, same counters and
// connection table as process_burst (bench_pipeline checks that before it
// measures), for the common packet: untagged Ethernet, IPv4 without options
// or fragmentation or IPv6 without extension headers, TCP or UDP, to a VIP
// in IPIP or GUE mode. Every other packet goes through process_burst itself.
#pragma once

#include "worker.h"

namespace sluice::proto {

void process_burst(worker_state &st, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out);

} // namespace sluice::proto
