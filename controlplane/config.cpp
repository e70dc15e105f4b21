// SPDX-License-Identifier: Apache-2.0
#include "config.h"

#include "bgp.h"

#include "error.h"
#include "maglev.h"

#include <sluice/maglev.h>
#include <sluice/shm.h>

#include <algorithm>
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

std::string option_for_field(std::string_view field)
{
	if (field == "address")
		return "";
	if (field == "check" || field == "check.type")
		return "--check";
	if (field == "check.port")
		return "--check-port";
	if (field.starts_with("check."))
		field.remove_prefix(6);
	std::string out = "--" + std::string(field);
	std::replace(out.begin(), out.end(), '_', '-');
	return out;
}

// Bounds an operator would find odd to cross; each names its reason.
constexpr uint32_t max_weight = 1'000'000;     // relative turns; more adds nothing
constexpr uint32_t min_interval_ms = 10;       // below this a check is a load test
constexpr uint32_t max_interval_ms = 3'600'000;
constexpr uint32_t max_rise_fall = 1000;
constexpr uint32_t min_mtu = 576;              // RFC 791 minimum datagram every host takes
constexpr uint32_t max_mtu = 9216;             // jumbo frames

namespace {

// Names a field of the object at `where` ("vips[0]", "VIP 10.200.1.1:80/tcp")
// in the chosen style: "vips[0].ring_size", "VIP 10.200.1.1:80/tcp --ring-size".
struct field_namer {
	field_names names;
	std::string operator()(const std::string &where, std::string_view field) const
	{
		if (names == field_names::by_position)
			return where + "." + std::string(field);
		std::string opt = option_for_field(field);
		return opt.empty() ? where : where + " " + opt;
	}
};

void validate_check(const field_namer &at, const std::string &where, const vip_config &v,
		    const check_config &c)
{
	if (c.type == check_type::none)
		return;
	if (c.port == 0 && v.key.port == 0)
		throw error("{}: 0 on a VIP of every port (port 0): give the port to check",
			    at(where, "check.port"));
	if (c.interval_ms < min_interval_ms || c.interval_ms > max_interval_ms)
		throw error("{}: {} is out of range {}-{}", at(where, "check.interval_ms"), c.interval_ms,
			    min_interval_ms, max_interval_ms);
	if (c.timeout_ms == 0 || c.timeout_ms > c.interval_ms)
		throw error("{}: {} must be 1-{} (at most interval_ms)", at(where, "check.timeout_ms"),
			    c.timeout_ms, c.interval_ms);
	if (c.rise == 0 || c.rise > max_rise_fall)
		throw error("{}: {} is out of range 1-{}", at(where, "check.rise"), c.rise, max_rise_fall);
	if (c.fall == 0 || c.fall > max_rise_fall)
		throw error("{}: {} is out of range 1-{}", at(where, "check.fall"), c.fall, max_rise_fall);
	if (c.type == check_type::http) {
		if (c.path.empty() || c.path.front() != '/' ||
		    c.path.find_first_of(" \r\n") != std::string::npos)
			throw error("{}: '{}' must start with / and hold no spaces", at(where, "check.path"),
				    c.path);
		if (c.expect_status < 100 || c.expect_status > 599)
			throw error("{}: {} is not an HTTP status (100-599)", at(where, "check.expect_status"),
				    c.expect_status);
	}
	if (c.type == check_type::udp && c.send.empty())
		throw error("{}: a udp check needs a payload to send", at(where, "check.send"));
	if (c.type == check_type::udp && v.key.proto != l4_proto::udp && c.port == 0)
		throw error("{}: a udp check on a tcp VIP needs its own port", at(where, "check.port"));
}

} // namespace

void validate(const config &c, field_names names)
{
	const bool by_option = names == field_names::by_option;
	const field_namer at{names};
	if (c.node.source_ipv4 && !c.node.source_ipv4->is_v4())
		throw error("node.source_ipv4: {} is not an IPv4 address", c.node.source_ipv4->str());
	if (c.node.source_ipv6 && !c.node.source_ipv6->is_v6())
		throw error("node.source_ipv6: {} is not an IPv6 address", c.node.source_ipv6->str());
	if (c.node.mtu != 0 && (c.node.mtu < min_mtu || c.node.mtu > max_mtu))
		throw error("node.mtu: {} is out of range {}-{} (or 0 for the port's own)", c.node.mtu,
			    min_mtu, max_mtu);
	if (c.node.bgp)
		validate_bgp(*c.node.bgp);
	if (c.vips.size() > SLUICE_MAX_VIPS)
		throw error("vips: {} VIPs, at most {} fit in a snapshot", c.vips.size(),
			    SLUICE_MAX_VIPS);

	std::set<vip_key> seen;
	uint64_t ring_total = 0;
	size_t backend_total = 0;
	for (size_t i = 0; i < c.vips.size(); i++) {
		const vip_config &v = c.vips[i];
		std::string where = by_option ? fmt::format("VIP {}", v.key.str()) : fmt::format("vips[{}]", i);
		if (v.key.address.empty())
			throw error("{}: missing", at(where, "address"));
		if (!seen.insert(v.key).second)
			throw error("{}: duplicate VIP {}", where, v.key.str());
		if (!is_prime(v.ring_size) || v.ring_size < SLUICE_MAGLEV_MIN_SIZE ||
		    v.ring_size > SLUICE_MAGLEV_MAX_SIZE)
			throw error("{}: {} is not a prime from {} to {}", at(where, "ring_size"), v.ring_size,
				    SLUICE_MAGLEV_MIN_SIZE, SLUICE_MAGLEV_MAX_SIZE);
		ring_total += v.ring_size;
		if (v.mode == vip_mode::gue && v.gue_port == 0)
			throw error("{}: 0 is not a UDP port", at(where, "gue_port"));

		std::set<ip_address> addrs;
		for (size_t j = 0; j < v.backends.size(); j++) {
			const backend_config &b = v.backends[j];
			std::string bw = by_option ? fmt::format("{} backend {}", where, b.address.str())
						   : fmt::format("{}.backends[{}]", where, j);
			if (b.address.empty())
				throw error("{}: missing", at(bw, "address"));
			if (!addrs.insert(b.address).second)
				throw error("{}: duplicate backend {} in VIP {}", at(bw, "address"),
					    b.address.str(), v.key.str());
			// Its packets would come back to this VIP: a loop, not a backend.
			if (b.address == v.key.address)
				throw error("{}: {} is the VIP's own address: a backend is another host that "
					    "holds the VIP",
					    at(bw, "address"), b.address.str());
			if (b.weight > max_weight)
				throw error("{}: {} is above {}", at(bw, "weight"), b.weight, max_weight);
			if (v.mode == vip_mode::l2dsr && b.address.family != v.key.address.family)
				throw error("{}: {} for VIP {}: l2dsr forwards the packet "
					    "unchanged, so the backend must be of the VIP's family",
					    at(bw, "address"), b.address.str(), v.key.str());
			if (v.mode != vip_mode::l2dsr && b.address.is_v4() && !c.node.source_ipv4)
				throw error("{}: {} needs node.source_ipv4 as the outer source "
					    "of {} packets",
					    at(bw, "address"), b.address.str(), to_string(v.mode));
			if (v.mode != vip_mode::l2dsr && b.address.is_v6() && !c.node.source_ipv6)
				throw error("{}: {} needs node.source_ipv6 as the outer source "
					    "of {} packets",
					    at(bw, "address"), b.address.str(), to_string(v.mode));
			validate_check(at, bw, v, b.check);
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
