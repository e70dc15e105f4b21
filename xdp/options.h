// SPDX-License-Identifier: Apache-2.0
// sluice-xdp's options: one struct for its modes (forward on an interface,
// --unpin, --show, --pcap), parsed and checked before anything is loaded.
#pragma once

#include "attach.h"
#include "maps.h"

#include <sluice/conntrack.h>

#include <array>
#include <cstdint>
#include <string>

namespace sluice::xdp {

struct options {
	std::string iface;
	std::string shm_name = "sluice";
	attach_mode mode = attach_mode::automatic;
	std::string pin_dir;
	bool unpin = false;
	bool detach = false;        // --detach: take sluice's program off IF, keep the pins
	bool keep_attached = false; // a stop leaves the program forwarding (a restart follows)
	bool replace_pinned = false; // pinned maps of another layout: start on new ones
	bool show = false;
	bool show_ct = false;
	std::string pcap;
	std::array<uint8_t, 6> mac{0x02, 0, 0, 0, 0, 0x01};
	uint32_t mtu = 1500;
	bool json = false;
	uint32_t ct_entries = 0;
	uint32_t ring_entries = SLUICE_XDP_DEFAULT_RING_ENTRIES;
	sluice_ct_timeouts ct_timeouts = sluice_ct_default_timeouts();
	double conn_sweep_s = 2.0; // ct_counter.h; 0: no counting
	uint32_t wait_shm_ms = 10000;
	bool verbose = false;
	std::string log_level = "info";
};

// Parses and checks argv. Returns false when --help was printed; throws
// sluice::error with one line naming the flag otherwise.
bool parse_options(int argc, char **argv, options &o);

// "aa:bb:cc:dd:ee:ff" (--mac); throws sluice::error.
std::array<uint8_t, 6> parse_mac(const std::string &s);

} // namespace sluice::xdp
