// SPDX-License-Identifier: Apache-2.0
// What sluice-dpdk starts after EAL, brought up in order and torn down in
// reverse whichever way run() leaves: mbuf pools, the ports, one worker
// lcore per RX queue (its connection table, its way to the kernel, its
// record in the segment), the workers launched, the TAP relay.
#pragma once

#include "lcore.h"
#include "options.h"
#include "ports.h"
#include "shm_segment.h"

#include <rte_mempool.h>
#include <rte_ring.h>

#include <memory>
#include <vector>

namespace sluice {

struct runtime {
	bool eal = false; // rte_eal_cleanup() at the end
	bool launched = false;
	port_layout ports;
	std::vector<unsigned> lcores; // worker q runs on lcores[q]
	std::vector<std::unique_ptr<worker_lcore>> workers;
	std::vector<rte_mempool *> pools;
	std::vector<rte_ring *> rings;
	std::unique_ptr<exception_relay> relay; // with a TAP
	std::unique_ptr<snapshot_keeper> keeper; // the workers' checked copies of the snapshots

	runtime() = default;
	runtime(const runtime &) = delete;
	runtime &operator=(const runtime &) = delete;
	// Workers joined, records released, ports stopped and closed (the pcap
	// files flushed, the TAP removed), memory freed, EAL cleaned up.
	~runtime();

	// Stops the workers and waits for their lcores to return.
	void join_workers();
	// Releases the records, stops the relay and closes the ports, so that
	// the output files are complete before the counters are printed.
	void close();
};

// Finds and starts the ports (o.workers queues), with a pool per worker on
// its lcore's socket and one for the TAP. Says what it set up on stderr.
data_port bring_up_ports(const options &o, runtime &rt);

// Creates the workers (connection table, ring to the main lcore with a
// TAP) and claims their records in the segment.
void create_workers(const options &o, const data_port &data, shm_segment &segment, runtime &rt);

// Waits until the segment has a snapshot, heartbeating the workers'
// records meanwhile; throws after --wait-shm-ms or on a stop signal. For
// --pcap, whose first packet must not meet an empty snapshot.
void wait_first_snapshot(const options &o, runtime &rt);

// Launches every worker on its lcore, then the TAP relay.
void launch_workers(const data_port &data, runtime &rt);

} // namespace sluice
