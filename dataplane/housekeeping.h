// SPDX-License-Identifier: Apache-2.0
// The main lcore while the workers forward: it relays the kernel's traffic
// to and from the TAP, prints --stats-period lines, and watches for the end
// (a stop signal, or with --pcap the whole input gone through).
#pragma once

#include "options.h"
#include "runtime.h"

#include <cstdint>

namespace sluice {

// How a --pcap run ended; zero for the others.
struct pcap_progress {
	uint64_t done = 0;     // frames the workers took and are done with
	bool stalled = false;  // nothing moved for 10 s before the input's end
};

// Returns when stop_requested is set, or, with --pcap, once `expected`
// frames went through (or the driver could read no more, saying so), or
// the run stalled.
pcap_progress keep_house(const options &o, runtime &rt, uint64_t expected);

} // namespace sluice
