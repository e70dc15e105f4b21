// SPDX-License-Identifier: Apache-2.0
// Rates from two readings of the `stats` verb's result, for `sluicectl stats
// --watch`: the dataplanes only count, so what an operator watches (packets
// per second, bits per second, new flows per second, drops per second by
// reason, per worker) is the difference of two readings over the time
// between them. Pure: no clock, no socket.
#pragma once

#include "config_io.h"

namespace sluice {

// `after`'s VIPs, backends, drop reasons and workers, each with its rates
// over `seconds` since `before` (two `stats` results). A rate is null where
// there is nothing to compare with: no `before` (null), seconds <= 0, or an
// object `before` lacks (a VIP or backend just added, a worker that just
// attached: its record's counters may predate it). A counter that went down
// was reset (a backend deleted and added again, a segment made anew) and
// counts from zero, as Prometheus' rate() reads it.
//
// {"interval_s": S,
//  "vips": [{"vip", "packets_per_s", "bits_per_s", "new_flows_per_s",
//            "backends": [{"address", "state", "packets_per_s", "bits_per_s", "new_flows_per_s"}]}],
//  "drops_per_s": {"no_backend": R, ...},   // every drop reason, without drop_
//  "workers": [{"name", "kind", "index", "pid", "state", "heartbeat_age_s",
//               "rx_packets_per_s", "tx_packets_per_s"}]}
json stats_rates(const json &before, const json &after, double seconds);

} // namespace sluice
