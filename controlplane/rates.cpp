// SPDX-License-Identifier: Apache-2.0
#include "rates.h"

#include <string>

namespace sluice {

namespace {

uint64_t count(const json &obj, const char *field)
{
	auto it = obj.find(field);
	return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// (after - before) / seconds, a reset counting from zero; null without a
// before.
json per_s(const json *before, const json &after, const char *field, double seconds, double scale = 1)
{
	if (!before || seconds <= 0)
		return nullptr;
	const uint64_t a = count(after, field), b = count(*before, field);
	const uint64_t d = a >= b ? a - b : a;
	return static_cast<double>(d) * scale / seconds;
}

const json *find_by(const json &list, const char *key, const json &value)
{
	if (!list.is_array())
		return nullptr;
	for (const auto &x : list)
		if (x.is_object() && x.contains(key) && x[key] == value)
			return &x;
	return nullptr;
}

// A worker is its record and its process: a record another process took
// has counters that are not the new one's.
const json *find_worker(const json &list, const json &w)
{
	if (!list.is_array())
		return nullptr;
	for (const auto &x : list)
		if (x.value("index", -1) == w.value("index", -2) && x.value("pid", -1) == w.value("pid", -2))
			return &x;
	return nullptr;
}

} // namespace

json stats_rates(const json &before, const json &after, double seconds)
{
	const bool have = before.is_object();
	json out{{"interval_s", have ? json(seconds) : json(nullptr)}};
	json vips = json::array();
	for (const auto &v : after.value("vips", json::array())) {
		const json *bv = have ? find_by(before["vips"], "vip", v["vip"]) : nullptr;
		json jv{{"vip", v["vip"]},
			{"packets_per_s", per_s(bv, v, "packets", seconds)},
			{"bits_per_s", per_s(bv, v, "bytes", seconds, 8)},
			{"new_flows_per_s", per_s(bv, v, "new_flows", seconds)},
			{"backends", json::array()}};
		for (const auto &b : v.value("backends", json::array())) {
			const json *bb = bv ? find_by((*bv)["backends"], "address", b["address"]) : nullptr;
			jv["backends"].push_back(json{{"address", b["address"]},
						      {"state", b.value("state", "")},
						      {"packets_per_s", per_s(bb, b, "packets", seconds)},
						      {"bits_per_s", per_s(bb, b, "bytes", seconds, 8)},
						      {"new_flows_per_s", per_s(bb, b, "new_flows", seconds)}});
		}
		vips.push_back(std::move(jv));
	}
	out["vips"] = std::move(vips);

	json drops = json::object();
	const json counters = after.value("counters", json::object());
	const json *before_counters = have && before.contains("counters") ? &before["counters"] : nullptr;
	for (auto it = counters.begin(); it != counters.end(); ++it)
		if (it.key().rfind("drop_", 0) == 0)
			drops[it.key().substr(5)] = per_s(before_counters, counters, it.key().c_str(), seconds);
	out["drops_per_s"] = std::move(drops);

	json workers = json::array();
	for (const auto &w : after.value("workers", json::array())) {
		const json *bw = have ? find_worker(before["workers"], w) : nullptr;
		const json *bc = bw && bw->contains("counters") ? &(*bw)["counters"] : nullptr;
		const json wc = w.value("counters", json::object());
		workers.push_back(json{{"name", w.value("name", "")},
				       {"kind", w.value("kind", "")},
				       {"index", w.value("index", 0)},
				       {"pid", w.value("pid", 0)},
				       {"state", w.value("state", "")},
				       {"heartbeat_age_s", w.value("heartbeat_age_s", 0.0)},
				       {"rx_packets_per_s", per_s(bc, wc, "rx_packets", seconds)},
				       {"tx_packets_per_s", per_s(bc, wc, "tx_packets", seconds)}});
	}
	out["workers"] = std::move(workers);
	return out;
}

} // namespace sluice
