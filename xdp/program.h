// SPDX-License-Identifier: Apache-2.0
// The XDP program as sluice-xdp holds it: the libbpf skeleton of
// sluice.bpf.c, opened, configured (rodata, map sizes, pins) and loaded,
// owned in RAII. Loading does not attach (attach.h does that).
#pragma once

#include "maps.h"

#include <sluice/conntrack.h>

#include <array>
#include <cstdint>
#include <string>

struct sluice_bpf;
struct bpf_map;

namespace sluice::xdp {

struct program_settings {
	std::array<uint8_t, 6> port_mac{};          // source MAC of everything sent
	uint32_t port_mtu = 1500;                   // largest IP packet sent (node.mtu overrides when smaller)
	uint32_t ct_entries = SLUICE_XDP_DEFAULT_CT_ENTRIES;     // per CPU
	uint32_t ring_entries = SLUICE_XDP_DEFAULT_RING_ENTRIES; // Maglev entries per bank
	sluice_ct_timeouts ct_timeouts = sluice_ct_default_timeouts();
	std::string pin_dir; // empty: nothing pinned (replays, benchmarks)
	std::string iface;   // for messages only
	// Pinned maps of another layout (another sluice version): replaced by
	// new, empty ones (their flows are lost) rather than refused.
	bool replace_pinned = false;
	// --pcap: the connection table's key is SLUICE_CT_REPLAY_KEY and its
	// clock frozen at SLUICE_CT_REPLAY_NOW_S, as in sluice-dpdk --pcap, so
	// a replay is reproducible and both dataplanes decide alike.
	bool replay = false;
};

// Directory of an interface's pinned maps when --pin-dir is not given.
std::string default_pin_dir(const std::string &iface);

class program {
public:
	// Opens and loads sluice.bpf.o with these settings. With a pin
	// directory the connection table is pinned there as sl_ct, and a table
	// already pinned (by an earlier sluice-xdp) is reused so flows survive:
	// its size wins over settings.ct_entries, saying so. A pinned table (or
	// key) of another layout is refused, naming the ways on, unless
	// settings.replace_pinned. Throws sluice::error with one line.
	static program load(const program_settings &settings);

	program() = default;
	program(program &&other) noexcept;
	program &operator=(program &&other) noexcept;
	program(const program &) = delete;
	program &operator=(const program &) = delete;
	~program();

	sluice_bpf *skel() const { return skel_; }
	int prog_fd() const;
	int map_fd(bpf_map *m) const;

	uint32_t cpus() const { return cpus_; }
	uint32_t ct_buckets() const { return ct_buckets_; }     // per CPU
	uint32_t ring_entries() const { return ring_entries_; } // per bank
	bool ct_reused() const { return ct_reused_; }
	const std::string &ct_pin_path() const { return ct_pin_; }

private:
	sluice_bpf *skel_ = nullptr;
	uint32_t cpus_ = 0;
	uint32_t ct_buckets_ = 0;
	uint32_t ring_entries_ = 0;
	bool ct_reused_ = false;
	std::string ct_pin_;
};

// Removes the pins of `dir` (sl_ct and any other sl_* file) and the
// directory itself. No error if it does not exist.
void unpin(const std::string &dir);

} // namespace sluice::xdp
