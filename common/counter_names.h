// SPDX-License-Identifier: Apache-2.0
// The dataplane counters' names, kinds and help, from counters.def: what
// /metrics, `sluicectl stats` and a dataplane's exit report call them.
#pragma once

#include <sluice/counters.h>

namespace sluice {

struct counter_info {
	const char *name;
	const char *kind; // rx, tx, pass, drop, event
	const char *help;
};

inline constexpr counter_info counter_table[SLUICE_CNT__COUNT] = {
#define SLUICE_COUNTER(n, k, h) {#n, #k, h},
#include <sluice/counters.def>
#undef SLUICE_COUNTER
};

} // namespace sluice
