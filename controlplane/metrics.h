// SPDX-License-Identifier: Apache-2.0
// Counter names from counters.def, and the Prometheus text rendering of a
// stats view for sluiced's /metrics.
#pragma once

#include "service.h"

#include <sluice/counters.h>

#include <string>

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

// Prometheus text exposition format 0.0.4.
std::string render_metrics(const stats_view &sv);

} // namespace sluice
