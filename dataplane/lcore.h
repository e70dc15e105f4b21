// SPDX-License-Identifier: Apache-2.0
// The lcore loops around the packet path: each worker lcore polls its RX
// queue, runs process_burst (worker.h) and transmits what it returns; the
// main lcore keeps house (TAP relay, the stop flag, the end of a pcap).
#pragma once

#include "ct_store.h"
#include "shm_segment.h"
#include "snapshot_keeper.h"
#include "worker.h"

#include <rte_common.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace sluice {

// Set by SIGINT/SIGTERM or the end of a pcap; every loop polls it.
extern std::atomic<bool> stop_requested;

// One worker lcore's everything, on its own cache lines.
struct alignas(RTE_CACHE_LINE_SIZE) worker_lcore {
	worker_state state;
	worker_handle handle;       // its record in the segment: heartbeat, counters, generation
	const snapshot_keeper *keeper = nullptr; // the checked copies it forwards by
	const snapshot_keeper::bank *bank = nullptr; // the one it uses (worker only)
	uint16_t port = 0;          // data port; RX and TX queue `queue`
	uint16_t tx_port = 0;       // where forwarded traffic goes (TX queue `queue`): port, or --tx-port
	uint16_t queue = 0;
	uint16_t exception = UINT16_MAX; // --pcap: exception port, TX queue `queue`; UINT16_MAX: none
	// With a TAP, kernel-bound packets go to the main lcore over this
	// ring (exception_relay): a TAP takes one fd per queue and
	// DPDK 22.11's net_tap passes them all in one multi-process message
	// limited to 8 fds, so it cannot have a queue per worker.
	rte_ring *to_kernel = nullptr;
	bool filter_other_hosts = false; // af_packet: drop frames for other MACs first
	bool replay = false;             // --pcap: the connection-table clock is frozen (conntrack.h)
	// The file state.ct lives in when it outlives the process (ct_store.h);
	// empty: state.ct is rte_zmalloc'ed (--pcap, --no-ct-persist).
	ct_file ct_store;
	// Frames taken from the RX queue and done with (transmitted, handed on
	// or freed): the main lcore's measure of the end of a pcap. Written by
	// the worker only, read by the main lcore.
	alignas(RTE_CACHE_LINE_SIZE) uint64_t rx_done = 0;
	// The generation of the bank it took: the keeper reuses the other bank
	// once every worker has taken the current one. Written by the worker
	// (release) when it changes banks, read by the main lcore.
	uint64_t taken = 0;
	uint64_t baseline[SLUICE_CNT__COUNT] = {}; // the record's counters at claim
};

// The connection-table clock in whole seconds of CLOCK_MONOTONIC, as the
// worker reads it from the TSC: (tsc + offset) / hz. CLOCK_MONOTONIC, not
// the TSC alone: a restarted process (another TSC calibration) must read
// the ages its predecessor wrote into a kept table on the same clock.
uint64_t ct_clock_offset(uint64_t hz);

// rte_eal_remote_launch entry: arg is a worker_lcore.
int worker_main(void *arg);

// Kernel-bound packets per worker ring: far more than the kernel's share of
// a burst loop's traffic (ARP, BGP, SSH), enough to ride out the main
// lcore's 100 us naps at line rate.
inline constexpr unsigned to_kernel_ring_size = 1024;

// The main lcore's side of the TAP, both ways: the workers' kernel-bound
// packets (their to_kernel rings) go out on the TAP's one TX queue, and what
// the kernel sends on the TAP's one RX queue goes out of the data port on TX
// queue `data_txq`. A TAP that is not draining leaves packets in the rings,
// and the workers count what no longer fits (drop_exception_full).
class exception_relay {
public:
	exception_relay(uint16_t tap, uint16_t data, uint16_t data_txq, std::vector<rte_ring *> rings);
	~exception_relay();
	exception_relay(const exception_relay &) = delete;
	exception_relay &operator=(const exception_relay &) = delete;

	// One pass both ways; returns the frames moved.
	uint32_t poll();

private:
	struct pending {
		rte_mbuf *pkts[burst_size];
		uint16_t n = 0, sent = 0;
	};
	uint16_t tap_, data_, data_txq_;
	std::vector<rte_ring *> rings_;
	std::vector<pending> held_; // per ring: dequeued, not yet taken by the TAP
};

} // namespace sluice
