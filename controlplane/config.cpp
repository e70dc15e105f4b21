// SPDX-License-Identifier: Apache-2.0
#include "config.h"

#include "error.h"
#include "maglev.h"

#include <sluice/maglev.h>
#include <sluice/shm.h>

#include <charconv>
#include <set>
#include <utility>

namespace sluice {

std::string to_string(vip_mode m)
{
	switch (m) {
	case vip_mode::ipip:
		return "ipip";
	case vip_mode::gue:
		return "gue";
	case vip_mode::l2dsr:
		return "l2dsr";
	}
	return "?";
}

std::string to_string(l4_proto p)
{
	return p == l4_proto::tcp ? "tcp" : "udp";
}

std::optional<vip_mode> parse_vip_mode(std::string_view t)
{
	if (t == "ipip")
		return vip_mode::ipip;
	if (t == "gue")
		return vip_mode::gue;
	if (t == "l2dsr")
		return vip_mode::l2dsr;
	return std::nullopt;
}

std::optional<l4_proto> parse_l4_proto(std::string_view t)
{
	if (t == "tcp")
		return l4_proto::tcp;
	if (t == "udp")
		return l4_proto::udp;
	return std::nullopt;
}

vip_key vip_key::parse(std::string_view text)
{
	// ADDRESS:PORT/PROTO, with IPv6 addresses in brackets.
	auto bad = [&](const char *why) {
		return error("VIP '{}': {} (expected ADDRESS:PORT/tcp|udp, IPv6 as [ADDRESS]:PORT/tcp)",
			     text, why);
	};
	auto slash = text.rfind('/');
	if (slash == std::string_view::npos)
		throw bad("no /protocol");
	auto proto = parse_l4_proto(text.substr(slash + 1));
	if (!proto)
		throw bad("protocol must be tcp or udp");
	std::string_view hostport = text.substr(0, slash);
	std::string_view host, port;
	if (!hostport.empty() && hostport.front() == '[') {
		auto close = hostport.find(']');
		if (close == std::string_view::npos || close + 1 >= hostport.size() ||
		    hostport[close + 1] != ':')
			throw bad("unterminated [IPv6] or no :port");
		host = hostport.substr(1, close - 1);
		port = hostport.substr(close + 2);
	} else {
		auto colon = hostport.rfind(':');
		if (colon == std::string_view::npos)
			throw bad("no :port");
		host = hostport.substr(0, colon);
		port = hostport.substr(colon + 1);
		if (host.find(':') != std::string_view::npos)
			throw bad("IPv6 addresses go in brackets");
	}
	auto addr = ip_address::parse(host);
	if (!addr)
		throw bad("bad address");
	unsigned p = 0;
	auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
	if (ec != std::errc() || end != port.data() + port.size() || port.empty() || p > 65535)
		throw bad("port must be 0-65535");
	return vip_key{*addr, static_cast<uint16_t>(p), *proto};
}

std::string vip_key::str() const
{
	if (address.is_v6())
		return fmt::format("[{}]:{}/{}", address.str(), port, to_string(proto));
	return fmt::format("{}:{}/{}", address.str(), port, to_string(proto));
}

const backend_config *vip_config::find_backend(const ip_address &a) const
{
	for (const auto &b : backends)
		if (b.address == a)
			return &b;
	return nullptr;
}

backend_config *vip_config::find_backend(const ip_address &a)
{
	return const_cast<backend_config *>(std::as_const(*this).find_backend(a));
}

const vip_config *config::find_vip(const vip_key &k) const
{
	for (const auto &v : vips)
		if (v.key == k)
			return &v;
	return nullptr;
}

vip_config *config::find_vip(const vip_key &k)
{
	return const_cast<vip_config *>(std::as_const(*this).find_vip(k));
}

// Bounds an operator would find odd to cross; each names its reason.
constexpr uint32_t max_weight = 1'000'000;     // relative turns; more adds nothing
constexpr uint32_t min_interval_ms = 10;       // below this a check is a load test
constexpr uint32_t max_interval_ms = 3'600'000;
constexpr uint32_t max_rise_fall = 1000;
constexpr uint32_t min_mtu = 576;              // RFC 791 minimum datagram every host takes
constexpr uint32_t max_mtu = 9216;             // jumbo frames

static void validate_check(const std::string &where, const vip_config &v, const check_config &c)
{
	if (c.type == check_type::none)
		return;
	if (c.port == 0 && v.key.port == 0)
		throw error("{}.port: 0 on a VIP of every port (port 0): give the port to check",
			    where);
	if (c.interval_ms < min_interval_ms || c.interval_ms > max_interval_ms)
		throw error("{}.interval_ms: {} is out of range {}-{}", where, c.interval_ms,
			    min_interval_ms, max_interval_ms);
	if (c.timeout_ms == 0 || c.timeout_ms > c.interval_ms)
		throw error("{}.timeout_ms: {} must be 1-{} (at most interval_ms)", where,
			    c.timeout_ms, c.interval_ms);
	if (c.rise == 0 || c.rise > max_rise_fall)
		throw error("{}.rise: {} is out of range 1-{}", where, c.rise, max_rise_fall);
	if (c.fall == 0 || c.fall > max_rise_fall)
		throw error("{}.fall: {} is out of range 1-{}", where, c.fall, max_rise_fall);
	if (c.type == check_type::http) {
		if (c.path.empty() || c.path.front() != '/' ||
		    c.path.find_first_of(" \r\n") != std::string::npos)
			throw error("{}.path: '{}' must start with / and hold no spaces", where,
				    c.path);
		if (c.expect_status < 100 || c.expect_status > 599)
			throw error("{}.expect_status: {} is not an HTTP status (100-599)", where,
				    c.expect_status);
	}
	if (c.type == check_type::udp && c.send.empty())
		throw error("{}.send: a udp check needs a payload to send", where);
	if (c.type == check_type::udp && v.key.proto != l4_proto::udp && c.port == 0)
		throw error("{}.port: a udp check on a tcp VIP needs its own port", where);
}

void validate(const config &c, field_names names)
{
	bool by_key = names == field_names::by_key;
	if (c.node.source_ipv4 && !c.node.source_ipv4->is_v4())
		throw error("node.source_ipv4: {} is not an IPv4 address", c.node.source_ipv4->str());
	if (c.node.source_ipv6 && !c.node.source_ipv6->is_v6())
		throw error("node.source_ipv6: {} is not an IPv6 address", c.node.source_ipv6->str());
	if (c.node.mtu != 0 && (c.node.mtu < min_mtu || c.node.mtu > max_mtu))
		throw error("node.mtu: {} is out of range {}-{} (or 0 for the port's own)", c.node.mtu,
			    min_mtu, max_mtu);
	if (c.vips.size() > SLUICE_MAX_VIPS)
		throw error("vips: {} VIPs, at most {} fit in a snapshot", c.vips.size(),
			    SLUICE_MAX_VIPS);

	std::set<vip_key> seen;
	uint64_t ring_total = 0;
	size_t backend_total = 0;
	for (size_t i = 0; i < c.vips.size(); i++) {
		const vip_config &v = c.vips[i];
		std::string where = by_key ? fmt::format("VIP {}", v.key.str()) : fmt::format("vips[{}]", i);
		const char *dot = by_key ? " " : ".";
		if (v.key.address.empty())
			throw error("{}{}address: missing", where, dot);
		if (!seen.insert(v.key).second)
			throw error("{}: duplicate VIP {}", where, v.key.str());
		if (!is_prime(v.ring_size) || v.ring_size < SLUICE_MAGLEV_MIN_SIZE ||
		    v.ring_size > SLUICE_MAGLEV_MAX_SIZE)
			throw error("{}{}ring_size: {} is not a prime from {} to {}", where, dot, v.ring_size,
				    SLUICE_MAGLEV_MIN_SIZE, SLUICE_MAGLEV_MAX_SIZE);
		ring_total += v.ring_size;
		if (v.mode == vip_mode::gue && v.gue_port == 0)
			throw error("{}{}gue_port: 0 is not a UDP port", where, dot);

		std::set<ip_address> addrs;
		for (size_t j = 0; j < v.backends.size(); j++) {
			const backend_config &b = v.backends[j];
			std::string bw = by_key ? fmt::format("{} backend {}", where, b.address.str())
						: fmt::format("{}.backends[{}]", where, j);
			if (b.address.empty())
				throw error("{}{}address: missing", bw, dot);
			if (!addrs.insert(b.address).second)
				throw error("{}{}address: duplicate backend {} in VIP {}", bw, dot,
					    b.address.str(), v.key.str());
			if (b.weight > max_weight)
				throw error("{}{}weight: {} is above {}", bw, dot, b.weight, max_weight);
			if (v.mode == vip_mode::l2dsr && b.address.family != v.key.address.family)
				throw error("{}{}address: {} for VIP {}: l2dsr forwards the packet "
					    "unchanged, so the backend must be of the VIP's family",
					    bw, dot, b.address.str(), v.key.str());
			if (v.mode != vip_mode::l2dsr && b.address.is_v4() && !c.node.source_ipv4)
				throw error("{}{}address: {} needs node.source_ipv4 as the outer source "
					    "of {} packets",
					    bw, dot, b.address.str(), to_string(v.mode));
			if (v.mode != vip_mode::l2dsr && b.address.is_v6() && !c.node.source_ipv6)
				throw error("{}{}address: {} needs node.source_ipv6 as the outer source "
					    "of {} packets",
					    bw, dot, b.address.str(), to_string(v.mode));
			validate_check(bw + dot + "check", v, b.check);
		}
		backend_total += v.backends.size();
	}
	if (backend_total > SLUICE_MAX_BACKENDS)
		throw error("backends: {} in all, at most {} fit in a snapshot", backend_total,
			    SLUICE_MAX_BACKENDS);
	if (ring_total > SLUICE_RING_POOL)
		throw error("ring_size: the VIPs' tables add up to {} entries, a snapshot holds {}",
			    ring_total, SLUICE_RING_POOL);
}

health_check_spec make_check_spec(const vip_config &vip, const backend_config &b)
{
	health_check_spec s;
	s.type = b.check.type;
	s.address = b.address;
	s.port = b.check.port ? b.check.port : vip.key.port;
	s.interval_ms = b.check.interval_ms;
	s.timeout_ms = b.check.timeout_ms;
	s.rise = b.check.rise;
	s.fall = b.check.fall;
	s.http_path = b.check.path;
	s.http_expect_status = b.check.expect_status;
	s.udp_send = b.check.send;
	s.udp_expect = b.check.expect;
	return s;
}

} // namespace sluice
