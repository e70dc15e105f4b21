// SPDX-License-Identifier: Apache-2.0
// Counter names from counters.def, and the Prometheus text rendering of a
// stats view for sluiced's /metrics.
#pragma once

#include "counter_names.h"
#include "service.h"

#include <string>

namespace sluice {

// Prometheus text exposition format 0.0.4.
std::string render_metrics(const stats_view &sv);

} // namespace sluice
