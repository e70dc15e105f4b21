// SPDX-License-Identifier: Apache-2.0
// The packet path of one worker lcore: a pure function from a burst of
// received mbufs to the mbufs to transmit, to hand to the kernel, and the
// counters — no I/O, no lock, no allocation, no system call. The lcore loop
// (lcore.cpp) does the I/O around it; tests drive it directly.
#pragma once

#include <sluice/conntrack.h>
#include <sluice/shm.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>

namespace sluice {

inline constexpr uint16_t burst_size = 32;

// What the worker may do to packets, fixed at start-up.
struct worker_params {
	rte_ether_addr port_mac{};  // source MAC of everything sent out of the port
	uint32_t port_mtu = 1500;   // largest IP packet the port sends (node.mtu overrides when smaller)
	bool tx_ipv4_cksum_offload = false; // else outer IPv4 checksums in software
	// With an af_packet port the kernel already sees every received frame:
	// what is not for a VIP is then dropped here instead of injected twice.
	bool kernel_sees_rx = false;
};

// Per-worker state, owned by one lcore.
struct worker_state {
	worker_params params;
	sluice_ct_table *ct = nullptr; // this worker's connection table (conntrack.h)
	sluice_worker *stats = nullptr; // this worker's record in the segment: counters
	uint32_t now_s = 0;             // coarse clock for the connection table, set per burst
};

// Where each packet of a burst went. Packets not listed were dropped (freed
// and counted by reason).
struct burst_result {
	rte_mbuf *tx[burst_size];     // forwarded to a backend, or an ICMP reply to a client
	uint16_t n_tx = 0;
	rte_mbuf *kernel[burst_size]; // not for a VIP: to the exception port, unchanged
	uint16_t n_kernel = 0;
};

// Processes pkts[0..n) (n <= burst_size) against `snap` (nullptr: nothing
// published yet — non-IP frames still go to the kernel, every IP packet is
// counted drop_no_snapshot, since which are VIPs' is not known). Counts rx/tx/drops into state.stats.
void process_burst(worker_state &state, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out);

} // namespace sluice
