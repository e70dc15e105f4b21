// SPDX-License-Identifier: Apache-2.0
// sluice-dpdk's command line: our options before `--`, EAL arguments after
// it. --pcap and --iface build the EAL arguments themselves (no hugepages,
// no PCI, a private file prefix) so they run on any Linux box and beside
// another DPDK process; plain EAL arguments drive real NICs.
#pragma once

#include <sluice/conntrack.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

enum class port_mode {
	pcap,  // --pcap IN:OUT: net_pcap in, OUT and OUT.exception.pcap out
	iface, // --iface IF: net_af_packet; the kernel sees every frame itself
	eal,   // EAL arguments: the first ethdev, and a TAP for the kernel
};

struct options {
	std::string shm_name = "sluice";
	port_mode mode = port_mode::eal;
	std::string pcap_in, pcap_out, pcap_exception_out; // --pcap
	std::string iface;                                 // --iface
	std::string tap_name = "sluice0";                  // EAL mode: the exception TAP
	uint32_t workers = 0;    // 0: 1 with a shortcut, else one per worker lcore EAL gives
	uint32_t ct_entries = 0; // 0: the mode's default
	sluice_ct_timeouts ct_timeouts = sluice_ct_default_timeouts();
	// The connection tables outlive the process in files (ct_store.h):
	// on by default, as an operator upgrading or a crash expects flows to
	// stay put; off for --pcap (a replay starts empty, reproducibly)
	// unless --ct-dir is given.
	bool ct_persist = true;
	std::string ct_dir;     // --ct-dir; empty: default_ct_dir()
	bool ct_fresh = false;  // --ct-fresh: throw the kept tables away
	uint32_t wait_shm_ms = 10000;
	// Benchmarking (scripts/bench): an RX-only source and a sink, as testpmd's two ports.
	std::string tx_port;          // EAL mode: transmit forwarded traffic on this ethdev (by name)
	uint32_t mbufs = 0;           // per-worker mbuf pool; 0: default_mbufs
	uint32_t mbuf_size = 0;       // mbuf data room, headroom included; 0: DPDK's default (2176)
	uint32_t stats_period_s = 0;  // every N seconds print a `stats` line of this run's counters
	std::vector<std::string> eal_user; // after `--`
};

// Connection-table entries per worker when --ct-entries is not given.
inline constexpr uint32_t default_ct_entries = 1u << 20;          // real NICs (hugepages)
inline constexpr uint32_t default_ct_entries_shortcut = 1u << 16; // --pcap, --iface (-m)

// mbufs per worker pool when --mbufs is not given: 8191 = 2^13 - 1 (mempool
// rings hold 2^n - 1): the RX ring (1024), mbufs in flight on TX rings and
// caches, with room.
inline constexpr uint32_t default_mbufs = 8191;

// Parses argv. Prints --help and exits 0; a usage error throws sluice::error
// with the one line to print (the caller exits 2).
options parse_options(int argc, char **argv);

// The EAL argv (argv[0] included) for these options: for --pcap and --iface
// the generated arguments, then the user's; for EAL mode the user's, plus the
// TAP vdev unless they name a net_tap themselves.
std::vector<std::string> eal_arguments(const options &o);

// "a b c" for logs.
std::string join_args(const std::vector<std::string> &args);

} // namespace sluice
