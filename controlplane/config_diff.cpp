// SPDX-License-Identifier: Apache-2.0
#include "config_diff.h"

#include "config_io.h"

#include <fmt/format.h>

#include <algorithm>

namespace sluice {

namespace {

// A value as an operator reads it: text without quotes, a mapping in YAML's
// flow form ({type: tcp, interval_ms: 1000}), an absent one as "none".
std::string text(const json *v)
{
	if (!v || v->is_null())
		return "none";
	if (v->is_string())
		return v->get<std::string>();
	if (v->is_object()) {
		std::string out;
		for (auto it = v->begin(); it != v->end(); ++it)
			out += fmt::format("{}{}: {}", out.empty() ? "" : ", ", it.key(), text(&it.value()));
		return "{" + out + "}";
	}
	return v->dump();
}

const json *field(const json &o, const std::string &k)
{
	auto it = o.find(k);
	return it == o.end() ? nullptr : &*it;
}

// "name from -> to" for each field of `names` that differs between a and b.
// A check whose type changes reads best whole; one that keeps its type, by
// the options that changed.
void field_diffs(const json &a, const json &b, const std::vector<std::string> &names,
		 std::vector<std::string> &out)
{
	for (const auto &k : names) {
		const json *x = field(a, k), *y = field(b, k);
		if ((x ? *x : json()) == (y ? *y : json()))
			continue;
		// node.bgp, present on both sides, reads best by its fields too.
		const bool by_field = k == "bgp" && x && y && x->is_object() && y->is_object();
		if (by_field || (k == "check" && x && y && field(*x, "type") && field(*y, "type") &&
				 *field(*x, "type") == *field(*y, "type"))) {
			std::vector<std::string> keys;
			for (const json *c : {x, y})
				for (auto it = c->begin(); it != c->end(); ++it)
					if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
						keys.push_back(it.key());
			std::vector<std::string> sub;
			field_diffs(*x, *y, keys, sub);
			for (auto &s : sub)
				out.push_back(k + "." + s);
			continue;
		}
		out.push_back(fmt::format("{} {} -> {}", k, text(x), text(y)));
	}
}

// The settings of an object being added, without the fields that name it.
std::string settings(const json &o, const std::vector<std::string> &names)
{
	std::string out;
	for (const auto &k : names)
		if (const json *v = field(o, k))
			out += fmt::format("{}{} {}", out.empty() ? "" : ", ", k, text(v));
	return out;
}

std::string join(const std::vector<std::string> &parts)
{
	std::string out;
	for (const auto &p : parts)
		out += (out.empty() ? "" : ", ") + p;
	return out;
}

const std::vector<std::string> node_fields = {"source_ipv4", "source_ipv6", "gateway_mac", "mtu", "bgp"};
const std::vector<std::string> vip_fields = {"mode", "ring_size", "gue_port"};
const std::vector<std::string> backend_fields = {"weight", "check", "mac"};

std::string backend_name(const backend_config &b, const vip_config &v)
{
	return fmt::format("backend {} of VIP {}", b.address.str(), v.key.str());
}

} // namespace

std::string config_change::line() const
{
	const char *sign = what == op::added ? "+" : what == op::removed ? "-" : "~";
	return detail.empty() ? fmt::format("{} {}", sign, object) : fmt::format("{} {}: {}", sign, object, detail);
}

std::vector<config_change> diff_configs(const config &from, const config &to)
{
	using op = config_change::op;
	std::vector<config_change> out;
	{
		const json a = config_to_json(from)["node"], b = config_to_json(to)["node"];
		std::vector<std::string> d;
		field_diffs(a, b, node_fields, d);
		if (!d.empty())
			out.push_back({op::changed, "node", join(d)});
	}
	for (const auto &v : from.vips)
		if (!to.find_vip(v.key))
			out.push_back({op::removed, fmt::format("VIP {}", v.key.str()),
				       v.backends.empty() ? ""
				       : fmt::format("with its {} backend{}", v.backends.size(),
						     v.backends.size() == 1 ? "" : "s")});
	for (const auto &v : to.vips) {
		const vip_config *old = from.find_vip(v.key);
		const json vj = vip_to_json(v, false);
		if (!old) {
			out.push_back({op::added, fmt::format("VIP {}", v.key.str()), settings(vj, vip_fields)});
			for (const auto &b : v.backends)
				out.push_back({op::added, backend_name(b, v),
					       settings(backend_to_json(b), backend_fields)});
			continue;
		}
		std::vector<std::string> d;
		field_diffs(vip_to_json(*old, false), vj, vip_fields, d);
		if (!d.empty())
			out.push_back({op::changed, fmt::format("VIP {}", v.key.str()), join(d)});
		for (const auto &b : old->backends)
			if (!v.find_backend(b.address))
				out.push_back({op::removed, backend_name(b, v), ""});
		for (const auto &b : v.backends) {
			const backend_config *ob = old->find_backend(b.address);
			const json bj = backend_to_json(b);
			if (!ob) {
				out.push_back({op::added, backend_name(b, v), settings(bj, backend_fields)});
				continue;
			}
			std::vector<std::string> bd;
			field_diffs(backend_to_json(*ob), bj, backend_fields, bd);
			if (!bd.empty())
				out.push_back({op::changed, backend_name(b, v), join(bd)});
		}
	}
	return out;
}

std::string diff_summary(const std::vector<config_change> &changes)
{
	size_t n[3] = {};
	for (const auto &c : changes)
		n[static_cast<size_t>(c.what)]++;
	if (changes.empty())
		return "no changes";
	return fmt::format("{} added, {} removed, {} changed", n[0], n[1], n[2]);
}

} // namespace sluice
