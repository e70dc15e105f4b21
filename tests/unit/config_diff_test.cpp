// SPDX-License-Identifier: Apache-2.0
// diff_configs: the lines `sluicectl diff`, `apply --dry-run` and `apply`
// print, from two configurations alone.
#include "config_diff.h"
#include "config_io.h"

#include <gtest/gtest.h>

using namespace sluice;

namespace {

const std::string base_yaml = R"(node: {source_ipv4: 10.0.0.2}
vips:
  - address: 10.200.1.1
    port: 80
    backends:
      - address: 10.0.0.11
        check: {type: tcp}
      - address: 10.0.0.12
        weight: 50
  - address: 10.200.1.2
    port: 53
    protocol: udp
    mode: gue
    backends:
      - address: 10.0.0.21
)";

std::vector<std::string> lines(const std::string &from, const std::string &to)
{
	std::vector<std::string> out;
	for (const auto &c : diff_configs(config_from_yaml(from), config_from_yaml(to)))
		out.push_back(c.line());
	return out;
}

std::string edit(std::string s, const std::string &what, const std::string &with)
{
	auto at = s.find(what);
	EXPECT_NE(at, std::string::npos) << what;
	return s.replace(at, what.size(), with);
}

TEST(ConfigDiff, TheSameConfigurationChangesNothing)
{
	EXPECT_EQ(lines(base_yaml, base_yaml), std::vector<std::string>{});
	// Written differently (defaults spelled out, other order of fields): the same.
	const std::string spelled = edit(base_yaml, "    port: 80\n", "    protocol: tcp\n    port: 80\n    mode: ipip\n    ring_size: 65537\n");
	EXPECT_EQ(lines(base_yaml, spelled), std::vector<std::string>{});
	EXPECT_EQ(diff_summary({}), "no changes");
}

TEST(ConfigDiff, WeightsChecksAndMacsOfABackend)
{
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "weight: 50", "weight: 100")),
		  std::vector<std::string>{"~ backend 10.0.0.12 of VIP 10.200.1.1:80/tcp: weight 50 -> 100"});
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "{type: tcp}", "{type: tcp, interval_ms: 200, timeout_ms: 100}")),
		  std::vector<std::string>{"~ backend 10.0.0.11 of VIP 10.200.1.1:80/tcp: check.interval_ms 1000 -> "
					   "200, check.timeout_ms 500 -> 100"});
	// A check of another type reads whole; so does one taken away.
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "{type: tcp}", "{type: http, path: /healthz}")),
		  std::vector<std::string>{"~ backend 10.0.0.11 of VIP 10.200.1.1:80/tcp: check {type: tcp, "
					   "interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3} -> {type: http, "
					   "interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3, path: /healthz, "
					   "expect_status: 200}"});
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "        check: {type: tcp}\n", "")),
		  std::vector<std::string>{"~ backend 10.0.0.11 of VIP 10.200.1.1:80/tcp: check {type: tcp, "
					   "interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3} -> none"});
}

TEST(ConfigDiff, VipsAndBackendsAddedAndRemoved)
{
	const std::string to = edit(edit(base_yaml, "      - address: 10.0.0.12\n        weight: 50\n",
					 "      - address: 10.0.0.13\n"),
				    "  - address: 10.200.1.2\n    port: 53\n    protocol: udp\n    mode: gue\n    backends:\n      - address: 10.0.0.21\n",
				    "  - address: 10.200.1.3\n    port: 443\n    ring_size: 251\n    backends:\n      - address: 10.0.0.31\n        weight: 7\n");
	const std::vector<std::string> want = {
		"- VIP 10.200.1.2:53/udp: with its 1 backend",
		"- backend 10.0.0.12 of VIP 10.200.1.1:80/tcp",
		"+ backend 10.0.0.13 of VIP 10.200.1.1:80/tcp: weight 100",
		"+ VIP 10.200.1.3:443/tcp: mode ipip, ring_size 251",
		"+ backend 10.0.0.31 of VIP 10.200.1.3:443/tcp: weight 7",
	};
	EXPECT_EQ(lines(base_yaml, to), want);
	EXPECT_EQ(diff_summary(diff_configs(config_from_yaml(base_yaml), config_from_yaml(to))),
		  "3 added, 2 removed, 0 changed");
	// Everything removed, backends with their VIPs.
	EXPECT_EQ(lines(base_yaml, "node: {source_ipv4: 10.0.0.2}\n"),
		  (std::vector<std::string>{"- VIP 10.200.1.1:80/tcp: with its 2 backends",
					    "- VIP 10.200.1.2:53/udp: with its 1 backend"}));
}

TEST(ConfigDiff, VipSettingsAndNodeSettings)
{
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "    protocol: udp\n    mode: gue\n",
					"    protocol: udp\n    mode: gue\n    gue_port: 7000\n")),
		  std::vector<std::string>{"~ VIP 10.200.1.2:53/udp: gue_port 6080 -> 7000"});
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "    protocol: udp\n    mode: gue\n", "    protocol: udp\n")),
		  std::vector<std::string>{"~ VIP 10.200.1.2:53/udp: mode gue -> ipip, gue_port 6080 -> none"});
	EXPECT_EQ(lines(base_yaml, edit(base_yaml, "node: {source_ipv4: 10.0.0.2}",
					"node: {source_ipv4: 10.0.0.3, source_ipv6: 'fd00::2', mtu: 1500}")),
		  std::vector<std::string>{"~ node: source_ipv4 10.0.0.2 -> 10.0.0.3, source_ipv6 none -> fd00::2, "
					   "mtu none -> 1500"});
}

} // namespace
