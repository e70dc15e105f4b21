// SPDX-License-Identifier: Apache-2.0
// The lcore loops around the packet path: each worker lcore polls its RX
// queue, runs process_burst (worker.h) and transmits what it returns; the
// main lcore keeps house (TAP relay, the stop flag, the end of a pcap).
#pragma once

#include "shm_segment.h"
#include "worker.h"

#include <rte_common.h>

#include <atomic>
#include <cstdint>

namespace sluice {

// Set by SIGINT/SIGTERM or the end of a pcap; every loop polls it.
extern std::atomic<bool> stop_requested;

// One worker lcore's everything, on its own cache lines.
struct alignas(RTE_CACHE_LINE_SIZE) worker_lcore {
	worker_state state;
	worker_handle handle;       // its record in the segment
	uint16_t port = 0;          // data port; RX and TX queue `queue`
	uint16_t tx_port = 0;       // where forwarded traffic goes (TX queue `queue`): port, or --tx-port
	uint16_t queue = 0;
	uint16_t exception = UINT16_MAX; // exception port, TX queue `queue`; UINT16_MAX: none
	bool filter_other_hosts = false; // af_packet: drop frames for other MACs first
	// Frames taken from the RX queue and done with (transmitted, handed on
	// or freed): the main lcore's measure of the end of a pcap. Written by
	// the worker only, read by the main lcore.
	alignas(RTE_CACHE_LINE_SIZE) uint64_t rx_done = 0;
	uint64_t baseline[SLUICE_CNT__COUNT] = {}; // the record's counters at claim
};

// rte_eal_remote_launch entry: arg is a worker_lcore.
int worker_main(void *arg);

// The main lcore's TAP → data port relay: what the kernel sends on the
// exception TAP (any of its `queues` RX queues) goes out of the data port on
// TX queue `txq`. Returns the frames moved this call.
uint32_t relay_kernel_tx(uint16_t tap, uint16_t queues, uint16_t data, uint16_t txq);

} // namespace sluice
