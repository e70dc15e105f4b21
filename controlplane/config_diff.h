// SPDX-License-Identifier: Apache-2.0
// What replacing one configuration with another changes: the VIPs, backends
// and node settings added, removed and changed, field by field. A pure
// function of the two configurations, so `sluicectl diff`, `apply
// --dry-run` and `apply` show the same lines, and a test needs no service.
#pragma once

#include "config.h"

#include <string>
#include <vector>

namespace sluice {

struct config_change {
	enum class op { added, removed, changed };
	op what = op::changed;
	// "node", "VIP 10.200.1.1:80/tcp", "backend 10.0.0.11 of VIP 10.200.1.1:80/tcp"
	std::string object;
	// added: its settings ("mode ipip, ring_size 65537"); removed: what goes
	// with it; changed: each field that differs ("weight 100 -> 50").
	std::string detail;

	// One line: "+ OBJECT: DETAIL", "- OBJECT", "~ OBJECT: DETAIL".
	std::string line() const;
	bool operator==(const config_change &) const = default;
};

// Node settings first, then the VIPs removed, then the VIPs of `to` in its
// order, each followed by its backends removed, added and changed. Empty:
// the same configuration.
std::vector<config_change> diff_configs(const config &from, const config &to);

// "2 added, 1 removed, 3 changed", or "no changes".
std::string diff_summary(const std::vector<config_change> &changes);

} // namespace sluice
