// SPDX-License-Identifier: Apache-2.0
// The packet path of one worker lcore: a pure function from a burst of
// received mbufs to the mbufs to transmit, to hand to the kernel, and the
// counters — no I/O, no lock, no allocation, no system call. The lcore loop
// (lcore.cpp) does the I/O around it; tests drive it directly.
#pragma once

#include <sluice/conntrack.h>
#include <sluice/parse.h>
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
// The same as prepare_burst() then finish_burst() with one snapshot.
void process_burst(worker_state &state, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out);

// A burst between its two stages. prepare_burst() parses it, finds its
// VIPs, hashes its flows and starts fetching their connection-table
// buckets; finish_burst() decides and rewrites. The lcore loop prepares the
// burst it just received, then finishes the one before: a bucket in DRAM
// (and its TLB walk) then has a whole burst's work to arrive in, not only
// the parse of the rest of its own burst.
struct prepared_burst {
	enum class action : uint8_t { drop, kernel, forward, reply };
	struct packet {
		sluice_pkt p;
		uint32_t hash;
		uint32_t vip; // SLUICE_MAX_VIPS: none
		sluice_ct_bucket *bucket; // nullptr until the flow is hashed
		uint16_t tag;             // sluice_ct_tag(hash)
		action act;
		// Set when forwarded: whose counters the packet moves (a later
		// fragment has no VIP of its own in `vip`).
		uint32_t fwd_vip;
		uint32_t fwd_backend;
	};
	packet pkt[burst_size];
	rte_mbuf *m[burst_size];
	uint16_t n = 0;
	uint64_t generation = 0; // of the snapshot its VIPs were found in; 0: none
};

// Takes pkts[0..n) (n <= burst_size) into `b`; counts rx and parse drops.
void prepare_burst(worker_state &state, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   prepared_burst &b);

// Decides b's packets against `snap`; if that is not the snapshot they were
// prepared under, their VIPs are looked up again in it first.
void finish_burst(worker_state &state, const sluice_snapshot *snap, prepared_burst &b, burst_result &out);

} // namespace sluice
