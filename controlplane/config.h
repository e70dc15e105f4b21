// SPDX-License-Identifier: Apache-2.0
// The configuration model (docs/configuration.md's YAML schema) and its validation.
// One model for every way in: the YAML file, `sluicectl apply -f`, the
// single-object API verbs, and the persisted state.
#pragma once

#include "address.h"
#include "health.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

enum class vip_mode : uint8_t { ipip, gue, l2dsr };
enum class l4_proto : uint8_t { tcp, udp };

std::string to_string(vip_mode m);
std::string to_string(l4_proto p);
std::optional<vip_mode> parse_vip_mode(std::string_view text);
std::optional<l4_proto> parse_l4_proto(std::string_view text);

// A backend's health check as written in the configuration. `port` 0 means
// the VIP's port; the address is always the backend's.
struct check_config {
	check_type type = check_type::none;
	uint16_t port = 0;
	uint32_t interval_ms = 1000;
	uint32_t timeout_ms = 500;
	uint32_t rise = 2;
	uint32_t fall = 3;
	std::string path = "/";
	int expect_status = 200;
	std::string send;
	std::string expect;

	bool operator==(const check_config &) const = default;
};

struct backend_config {
	ip_address address;
	uint32_t weight = 100; // 0: drained (keeps its flows, gets no new ones)
	check_config check;
	std::optional<mac_address> mac; // next-hop MAC for l2dsr; else resolved

	bool operator==(const backend_config &) const = default;
};

// What identifies a VIP: address, port (0: every port) and protocol.
struct vip_key {
	ip_address address;
	uint16_t port = 0;
	l4_proto proto = l4_proto::tcp;

	// "10.200.1.1:80/tcp", "[fd00::1]:443/tcp", "10.200.1.1:0/udp"
	static vip_key parse(std::string_view text);
	std::string str() const;
	auto operator<=>(const vip_key &) const = default;
};

struct vip_config {
	vip_key key;
	vip_mode mode = vip_mode::ipip;
	uint32_t ring_size = 65537;
	uint16_t gue_port = 6080;
	std::vector<backend_config> backends;

	const backend_config *find_backend(const ip_address &a) const;
	backend_config *find_backend(const ip_address &a);
	bool operator==(const vip_config &) const = default;
};

// node.bgp: how sluiced tells BIRD which VIPs this node announces
// (controlplane/bgp.h decides, controlplane/bird.h tells). BIRD keeps the
// sessions, timers, BFD and graceful restart; sluiced only writes the VIP
// routes into include_file and has BIRD reload its configuration.
struct bgp_config {
	bool enabled = false;
	std::string bird_socket = "/run/bird/bird.ctl";
	// BIRD includes it (`include "/run/sluice/bird/*.conf";`): /run, so a
	// rebooted node announces nothing before sluiced has decided.
	std::string include_file = "/run/sluice/bird/sluice.conf";
	// Static protocols PROTOCOL4 and PROTOCOL6 in include_file; bird.conf's
	// BGP export filters name them.
	std::string protocol = "sluice_vips";
	// Added to every announced route: "A:B" (RFC 1997) or "A:B:C" (RFC 8092
	// large), as written; validate() checks them.
	std::vector<std::string> communities;
	// A worker whose heartbeat is older than this counts as not forwarding
	// for announcing (the dataplanes beat every 10 ms); far below
	// --worker-timeout-ms so that a killed dataplane is withdrawn within 1 s.
	uint32_t heartbeat_timeout_ms = 300;

	bool operator==(const bgp_config &) const = default;
};

struct node_config {
	std::optional<ip_address> source_ipv4;
	std::optional<ip_address> source_ipv6;
	std::optional<mac_address> gateway_mac;
	uint32_t mtu = 0; // largest IP packet to send; 0: the port's MTU
	std::optional<bgp_config> bgp; // absent: sluiced does not talk to BIRD

	bool operator==(const node_config &) const = default;
};

struct config {
	node_config node;
	std::vector<vip_config> vips;

	const vip_config *find_vip(const vip_key &k) const;
	vip_config *find_vip(const vip_key &k);
	bool operator==(const config &) const = default;
};

// How an error names a field. Files name it by its place
// ("vips[1].ring_size: 65536 is not a prime ..."); the single-object verbs
// by the objects a user typed and the sluicectl option that sets it
// ("VIP 10.200.1.1:80/tcp --ring-size: ..."), since that is what they
// typed, not the YAML field.
enum class field_names { by_position, by_option };

// The sluicectl option that sets a VIP's or a backend's field: "ring_size"
// -> "--ring-size", "check.type" -> "--check", "check.port" ->
// "--check-port", "check.interval_ms" -> "--interval-ms"; empty for the
// address, which is positional.
std::string option_for_field(std::string_view field);

// Checks a whole configuration; throws sluice::error naming the first
// offending field and value.
void validate(const config &c, field_names names = field_names::by_position);

// The health-check spec the monitor runs for one backend of one VIP.
health_check_spec make_check_spec(const vip_config &vip, const backend_config &b);

} // namespace sluice
