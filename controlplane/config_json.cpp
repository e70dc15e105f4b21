// SPDX-License-Identifier: Apache-2.0
#include "config_io.h"

#include "error.h"

#include <charconv>
#include <initializer_list>
#include <limits>

namespace sluice {

namespace {

std::string show(const json &v)
{
	if (v.is_string())
		return "'" + v.get<std::string>() + "'";
	return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Whether `s` is a number as the configuration writes one: decimal digits,
// no sign, no leading zero ("080" could be octal to a reader of YAML 1.1).
bool plain_decimal(const std::string &s)
{
	return !s.empty() && s.size() <= 20 && s.find_first_not_of("0123456789") == std::string::npos &&
	       (s.size() == 1 || s[0] != '0');
}

// Reads one mapping strictly: the caller lists every field it knows first,
// so an unknown field is refused before anything else is looked at.
//
// by_position: a file's tree (YAML or JSON): `where` is the mapping's
// path ("vips[0]"), numbers are numbers ("50" in quotes is refused).
// by_option: a verb's arguments, which sluicectl sends as the text typed:
// `where` is the field prefix within the object ("" or "check."), fields
// are named by their option (--weight), and numbers may be that text.
class reader {
public:
	reader(const json &j, std::string where, std::initializer_list<const char *> fields)
		: reader(j, std::move(where), field_names::by_position, fields)
	{
	}
	reader(const json &j, std::string where, field_names names, std::initializer_list<const char *> fields)
		: j_(j), where_(std::move(where)), names_(names)
	{
		if (!j.is_object())
			throw error("{}: expected a mapping, got {}", self(), show(j));
		for (auto it = j.begin(); it != j.end(); ++it) {
			bool known = false;
			for (const char *f : fields)
				known = known || it.key() == f;
			if (!known)
				throw error("{}: unknown field '{}'", path(it.key()), it.key());
		}
	}

	std::string path(std::string_view key) const
	{
		if (names_ == field_names::by_option) {
			std::string opt = option_for_field(where_ + std::string(key));
			return opt.empty() ? std::string(key) : opt;
		}
		return where_.empty() ? std::string(key) : where_ + "." + std::string(key);
	}

	// How the mapping itself is named.
	std::string self() const
	{
		if (names_ == field_names::by_option)
			return where_.empty() ? "arguments" : option_for_field(where_.substr(0, where_.size() - 1));
		return where_.empty() ? "config" : where_;
	}

	bool by_option() const { return names_ == field_names::by_option; }

	const json *find(const char *key) const
	{
		auto it = j_.find(key);
		if (it == j_.end() || it->is_null())
			return nullptr;
		return &*it;
	}

	bool has(const char *key) const { return find(key) != nullptr; }

	uint64_t uint(const char *key, uint64_t lo, uint64_t hi, uint64_t dflt) const
	{
		const json *v = find(key);
		if (!v)
			return dflt;
		uint64_t out = 0;
		if (v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0)) {
			out = v->get<uint64_t>();
		} else if (v->is_string()) {
			// Text: what a command line gives, or a quoted or odd number
			// in a file. Only plain decimal is a number, and in a file
			// only unquoted: docs/configuration.md promises both.
			const std::string &s = v->get_ref<const std::string &>();
			if (s.size() > 1 && s[0] == '0' && s.find_first_not_of("0123456789") == std::string::npos)
				throw error("{}: '{}' has a leading zero: write {} (numbers are plain decimal)",
					    path(key), s, s.substr(s.find_first_not_of('0') == std::string::npos
									   ? s.size() - 1
									   : s.find_first_not_of('0')));
			if (!plain_decimal(s))
				throw error("{}: {} is not a non-negative integer", path(key), show(*v));
			auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
			if (ec != std::errc())
				throw error("{}: {} is out of range {}-{}", path(key), s, lo, hi);
			if (!by_option())
				throw error("{}: '{}' is quoted: write the number without quotes", path(key), s);
		} else {
			throw error("{}: {} is not a non-negative integer", path(key), show(*v));
		}
		if (out < lo || out > hi)
			throw error("{}: {} is out of range {}-{}", path(key), out, lo, hi);
		return out;
	}

	std::string str(const char *key, const std::string &dflt) const
	{
		const json *v = find(key);
		if (!v)
			return dflt;
		// A YAML scalar that reads as a number (send: 123) is a number in
		// the tree (yaml_to_json); as text it is its digits.
		if (v->is_number_unsigned())
			return std::to_string(v->get<uint64_t>());
		if (!v->is_string())
			throw error("{}: {} is not a string", path(key), show(*v));
		return v->get<std::string>();
	}

	std::optional<std::string> opt_str(const char *key) const
	{
		if (!has(key))
			return std::nullopt;
		return str(key, "");
	}

	bool boolean(const char *key, bool dflt) const
	{
		const json *v = find(key);
		if (!v)
			return dflt;
		if (v->is_boolean())
			return v->get<bool>();
		if (v->is_string() && (*v == "true" || *v == "false"))
			return *v == "true";
		throw error("{}: {} is not true or false", path(key), show(*v));
	}

	ip_address address(const char *key, bool required) const
	{
		auto s = opt_str(key);
		if (!s) {
			if (required)
				throw error("{}: missing", path(key));
			return {};
		}
		auto a = ip_address::parse(*s);
		if (!a)
			throw error("{}: '{}' is not an IPv4 or IPv6 address", path(key), *s);
		return *a;
	}

	std::optional<mac_address> mac(const char *key) const
	{
		auto s = opt_str(key);
		if (!s)
			return std::nullopt;
		auto m = mac_address::parse(*s);
		if (!m)
			throw error("{}: '{}' is not a MAC address (like 02:00:00:00:00:fe)", path(key),
				    *s);
		return m;
	}

	const json &raw() const { return j_; }

private:
	const json &j_;
	std::string where_;
	field_names names_;
};

} // namespace

check_config check_from_json(const json &j, const std::string &where, field_names names)
{
	reader r(j, names == field_names::by_option ? "check." : where, names,
		 {"type", "port", "interval_ms", "timeout_ms", "rise", "fall", "path", "expect_status",
		  "send", "expect"});
	check_config c;
	std::string type = r.str("type", "none");
	auto t = parse_check_type(type);
	if (!t)
		throw error("{}: '{}' is not one of none, tcp, http, udp", r.path("type"), type);
	c.type = *t;
	c.port = static_cast<uint16_t>(r.uint("port", 0, 65535, 0));
	c.interval_ms = static_cast<uint32_t>(r.uint("interval_ms", 0, UINT32_MAX, c.interval_ms));
	c.timeout_ms = static_cast<uint32_t>(r.uint("timeout_ms", 0, UINT32_MAX, c.timeout_ms));
	c.rise = static_cast<uint32_t>(r.uint("rise", 0, UINT32_MAX, c.rise));
	c.fall = static_cast<uint32_t>(r.uint("fall", 0, UINT32_MAX, c.fall));
	c.path = r.str("path", c.path);
	c.expect_status = static_cast<int>(r.uint("expect_status", 0, 999, c.expect_status));
	c.send = r.str("send", "");
	c.expect = r.str("expect", "");
	// An option the check's type does not use would be accepted, then
	// silently gone from `dump` and the state file (found by
	// fuzz/fuzz_config): refuse it, naming what it needs.
	auto given = [&](const char *k) {
		const json *v = r.find(k);
		return v && !v->is_null();
	};
	const bool opt = r.by_option();
	for (const char *k : {"port", "interval_ms", "timeout_ms", "rise", "fall", "path", "expect_status", "send",
			      "expect"})
		if (c.type == check_type::none && given(k))
			throw error("{}: a check with no type takes no options ({} tcp, http or udp)", r.path(k),
				    opt ? "give --check" : "set type:");
	for (const char *k : {"path", "expect_status"})
		if (c.type != check_type::http && given(k))
			throw error("{}: only for an http check{}", r.path(k), opt ? " (--check http)" : "");
	for (const char *k : {"send", "expect"})
		if (c.type != check_type::udp && given(k))
			throw error("{}: only for a udp check{}", r.path(k), opt ? " (--check udp)" : "");
	return c;
}

backend_config backend_from_json(const json &j, const std::string &where, field_names names)
{
	reader r(j, names == field_names::by_option ? "" : where, names, {"address", "weight", "check", "mac"});
	backend_config b;
	b.address = r.address("address", true);
	b.weight = static_cast<uint32_t>(r.uint("weight", 0, UINT32_MAX, b.weight));
	if (const json *c = r.find("check"))
		b.check = check_from_json(*c, r.path("check"), names);
	b.mac = r.mac("mac");
	return b;
}

vip_config vip_from_json(const json &j, const std::string &where, field_names names)
{
	reader r(j, names == field_names::by_option ? "" : where, names,
		 {"address", "port", "protocol", "mode", "ring_size", "gue_port", "backends"});
	vip_config v;
	v.key.address = r.address("address", true);
	v.key.port = static_cast<uint16_t>(r.uint("port", 0, 65535, 0));
	std::string proto = r.str("protocol", "tcp");
	auto p = parse_l4_proto(proto);
	if (!p)
		throw error("{}: '{}' is not one of tcp, udp", r.path("protocol"), proto);
	v.key.proto = *p;
	std::string mode = r.str("mode", "ipip");
	auto m = parse_vip_mode(mode);
	if (!m)
		throw error("{}: '{}' is not one of ipip, gue, l2dsr", r.path("mode"), mode);
	v.mode = *m;
	v.ring_size = static_cast<uint32_t>(r.uint("ring_size", 0, UINT32_MAX, v.ring_size));
	v.gue_port = static_cast<uint16_t>(r.uint("gue_port", 0, 65535, v.gue_port));
	// Only a GUE VIP has one: accepted elsewhere it would mean nothing, and
	// vanish from `dump` (found by fuzz_config: such a file did not survive
	// its own dump).
	if (r.find("gue_port") && v.mode != vip_mode::gue)
		throw error("{}: only a VIP of mode gue has a GUE port (this one is {})", r.path("gue_port"),
			    to_string(v.mode));
	if (const json *bs = r.find("backends")) {
		if (!bs->is_array())
			throw error("{}: expected a list of backends", r.path("backends"));
		for (size_t i = 0; i < bs->size(); i++)
			v.backends.push_back(backend_from_json((*bs)[i], fmt::format("{}[{}]", r.path("backends"), i),
							       names));
	}
	return v;
}

bgp_config bgp_from_json(const json &j)
{
	reader r(j, "node.bgp",
		 {"enabled", "bird_socket", "include_file", "protocol", "communities", "heartbeat_timeout_ms"});
	bgp_config b;
	b.enabled = r.boolean("enabled", b.enabled);
	b.bird_socket = r.str("bird_socket", b.bird_socket);
	b.include_file = r.str("include_file", b.include_file);
	b.protocol = r.str("protocol", b.protocol);
	if (const json *cs = r.find("communities")) {
		if (!cs->is_array())
			throw error("{}: expected a list of communities (like [\"65010:100\"])", r.path("communities"));
		for (size_t i = 0; i < cs->size(); i++) {
			const json &v = (*cs)[i];
			if (!v.is_string())
				throw error("{}[{}]: {} is not a community (A:B or A:B:C)", r.path("communities"), i,
					    show(v));
			b.communities.push_back(v.get<std::string>());
		}
	}
	b.heartbeat_timeout_ms =
		static_cast<uint32_t>(r.uint("heartbeat_timeout_ms", 0, UINT32_MAX, b.heartbeat_timeout_ms));
	return b;
}

json bgp_to_json(const bgp_config &b)
{
	// Every field written out: a node's BGP settings are few, and dump
	// shows what runs rather than what was left to a default.
	return json{{"enabled", b.enabled},
		    {"bird_socket", b.bird_socket},
		    {"include_file", b.include_file},
		    {"protocol", b.protocol},
		    {"communities", b.communities},
		    {"heartbeat_timeout_ms", b.heartbeat_timeout_ms}};
}

config config_from_json(const json &j)
{
	config c;
	if (j.is_null())
		return c; // an empty file: no VIPs yet
	reader r(j, "", {"node", "vips"});
	if (const json *n = r.find("node")) {
		reader nr(*n, "node", {"source_ipv4", "source_ipv6", "gateway_mac", "mtu", "bgp"});
		if (nr.has("source_ipv4"))
			c.node.source_ipv4 = nr.address("source_ipv4", true);
		if (nr.has("source_ipv6"))
			c.node.source_ipv6 = nr.address("source_ipv6", true);
		c.node.gateway_mac = nr.mac("gateway_mac");
		c.node.mtu = static_cast<uint32_t>(nr.uint("mtu", 0, UINT32_MAX, 0));
		if (const json *b = nr.find("bgp"))
			c.node.bgp = bgp_from_json(*b);
	}
	if (const json *vs = r.find("vips")) {
		if (!vs->is_array())
			throw error("vips: expected a list of VIPs");
		for (size_t i = 0; i < vs->size(); i++)
			c.vips.push_back(vip_from_json((*vs)[i], fmt::format("vips[{}]", i)));
	}
	validate(c);
	return c;
}

json check_to_json(const check_config &c)
{
	json j;
	j["type"] = to_string(c.type);
	if (c.type == check_type::none)
		return j;
	if (c.port)
		j["port"] = c.port;
	j["interval_ms"] = c.interval_ms;
	j["timeout_ms"] = c.timeout_ms;
	j["rise"] = c.rise;
	j["fall"] = c.fall;
	if (c.type == check_type::http) {
		j["path"] = c.path;
		j["expect_status"] = c.expect_status;
	}
	if (c.type == check_type::udp) {
		j["send"] = c.send;
		if (!c.expect.empty())
			j["expect"] = c.expect;
	}
	return j;
}

json backend_to_json(const backend_config &b)
{
	json j;
	j["address"] = b.address.str();
	j["weight"] = b.weight;
	if (b.check.type != check_type::none)
		j["check"] = check_to_json(b.check);
	if (b.mac)
		j["mac"] = b.mac->str();
	return j;
}

json vip_to_json(const vip_config &v, bool with_backends)
{
	json j;
	j["address"] = v.key.address.str();
	j["port"] = v.key.port;
	j["protocol"] = to_string(v.key.proto);
	j["mode"] = to_string(v.mode);
	j["ring_size"] = v.ring_size;
	if (v.mode == vip_mode::gue)
		j["gue_port"] = v.gue_port;
	if (with_backends) {
		j["backends"] = json::array();
		for (const auto &b : v.backends)
			j["backends"].push_back(backend_to_json(b));
	}
	return j;
}

json config_to_json(const config &c)
{
	json j;
	json node = json::object();
	if (c.node.source_ipv4)
		node["source_ipv4"] = c.node.source_ipv4->str();
	if (c.node.source_ipv6)
		node["source_ipv6"] = c.node.source_ipv6->str();
	if (c.node.gateway_mac)
		node["gateway_mac"] = c.node.gateway_mac->str();
	if (c.node.mtu)
		node["mtu"] = c.node.mtu;
	if (c.node.bgp)
		node["bgp"] = bgp_to_json(*c.node.bgp);
	j["node"] = node;
	j["vips"] = json::array();
	for (const auto &v : c.vips)
		j["vips"].push_back(vip_to_json(v, true));
	return j;
}

} // namespace sluice
