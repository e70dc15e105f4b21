// SPDX-License-Identifier: Apache-2.0
#include "bgp.h"

#include "error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

#include <sys/un.h>

namespace sluice {

std::optional<std::vector<uint32_t>> parse_bgp_community(std::string_view text)
{
	std::vector<uint32_t> parts;
	size_t start = 0;
	for (;;) {
		const size_t colon = text.find(':', start);
		const std::string_view part = text.substr(start, colon == std::string_view::npos ? text.npos : colon - start);
		uint64_t v = 0;
		auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
		// Plain decimal, as every other number of the configuration.
		if (part.empty() || ec != std::errc() || end != part.data() + part.size() ||
		    (part.size() > 1 && part[0] == '0') || v > UINT32_MAX)
			return std::nullopt;
		parts.push_back(static_cast<uint32_t>(v));
		if (colon == std::string_view::npos)
			break;
		start = colon + 1;
	}
	if (parts.size() == 2 && parts[0] <= 0xffff && parts[1] <= 0xffff)
		return parts;
	if (parts.size() == 3)
		return parts;
	return std::nullopt;
}

namespace {

// BIRD's symbol syntax ([A-Za-z_][A-Za-z0-9_]*); sluiced appends 4 and 6.
bool bird_symbol(const std::string &s)
{
	if (s.empty() || s.size() > 60 || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
		return false;
	return std::all_of(s.begin(), s.end(),
			   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// The heartbeat timeout's bounds: 20 ms is two of the dataplanes' 10 ms
// beats (less would withdraw on one late beat); 10 s is far past any
// stall worth riding out while still announcing.
constexpr uint32_t min_heartbeat_timeout_ms = 20;
constexpr uint32_t max_heartbeat_timeout_ms = 10'000;

std::string worker_problem(const bgp_worker &w, uint32_t timeout_ms)
{
	if (w.handed_over)
		return fmt::format("{} handed over {:.1f} s ago and not taken over", w.name, w.heartbeat_age_s);
	if (!w.live)
		return fmt::format("{} stopped", w.name);
	if (w.heartbeat_age_s * 1000 > timeout_ms)
		return fmt::format("{} silent for {:.1f} s", w.name, w.heartbeat_age_s);
	return fmt::format("{} {}", w.name, w.stale);
}

} // namespace

void validate_bgp(const bgp_config &b)
{
	sockaddr_un a;
	if (b.bird_socket.empty() || b.bird_socket[0] != '/' || b.bird_socket.size() >= sizeof(a.sun_path))
		throw error("node.bgp.bird_socket: '{}' must be an absolute path of at most {} bytes "
			    "(BIRD's control socket, e.g. /run/bird/bird.ctl)",
			    b.bird_socket, sizeof(a.sun_path) - 1);
	// A file BIRD includes from bird.conf: absolute, a plain file name.
	if (b.include_file.empty() || b.include_file[0] != '/' || b.include_file.back() == '/' ||
	    b.include_file.find_first_of("\"\n\r") != std::string::npos || b.include_file.size() > 4095)
		throw error("node.bgp.include_file: '{}' must be an absolute file path (BIRD includes it, e.g. "
			    "/run/sluice/bird/sluice.conf)",
			    b.include_file);
	if (!bird_symbol(b.protocol))
		throw error("node.bgp.protocol: '{}' is not a BIRD protocol name (letters, digits and _, not "
			    "starting with a digit, at most 60)",
			    b.protocol);
	for (size_t i = 0; i < b.communities.size(); i++)
		if (!parse_bgp_community(b.communities[i]))
			throw error("node.bgp.communities[{}]: '{}' is not a BGP community (A:B, each 0-65535, or a "
				    "large community A:B:C, each 0-4294967295)",
				    i, b.communities[i]);
	if (b.heartbeat_timeout_ms < min_heartbeat_timeout_ms || b.heartbeat_timeout_ms > max_heartbeat_timeout_ms)
		throw error("node.bgp.heartbeat_timeout_ms: {} is out of range {}-{}", b.heartbeat_timeout_ms,
			    min_heartbeat_timeout_ms, max_heartbeat_timeout_ms);
}

bool bgp_worker_forwards(const bgp_worker &w, uint32_t heartbeat_timeout_ms)
{
	if (w.handed_over)
		return w.heartbeat_age_s * 1000 <= bgp_handover_grace_ms;
	return w.live && w.heartbeat_age_s * 1000 <= heartbeat_timeout_ms && w.stale.empty();
}

std::vector<bgp_decision> bgp_decide(const bgp_inputs &in)
{
	// Node-wide first: a drain or no forwarding dataplane withdraws every VIP
	// with the same reason.
	std::optional<std::string> node_reason;
	size_t forwarding = 0;
	std::vector<std::string> problems;
	for (const auto &w : in.workers) {
		if (bgp_worker_forwards(w, in.heartbeat_timeout_ms))
			forwarding++;
		else
			problems.push_back(worker_problem(w, in.heartbeat_timeout_ms));
	}
	if (in.drained) {
		node_reason = "node drained (sluicectl node undrain announces again)";
	} else if (in.workers.empty()) {
		node_reason = "no dataplane attached";
	} else if (forwarding == 0) {
		std::string list;
		for (size_t i = 0; i < problems.size() && i < 3; i++)
			list += (i ? "; " : "") + problems[i];
		if (problems.size() > 3)
			list += fmt::format("; and {} more", problems.size() - 3);
		node_reason = fmt::format("no dataplane worker forwarding ({})", list);
	}

	std::vector<bgp_decision> out;
	for (const auto &v : in.vips) {
		bgp_decision d{v.key, false, ""};
		if (node_reason)
			d.reason = *node_reason;
		else if (v.backends == 0)
			d.reason = "no backends";
		else if (v.healthy == 0)
			d.reason = fmt::format("no healthy backend (0 of {} up)", v.backends);
		else if (v.in_table == 0)
			d.reason = fmt::format("no backend in the table ({} of {} healthy, but drained or next hop "
					       "unresolved)",
					       v.healthy, v.backends);
		else {
			d.announce = true;
			d.reason = fmt::format("{} of {} backends in the table, {} dataplane worker{} forwarding",
					       v.in_table, v.backends, forwarding, forwarding == 1 ? "" : "s");
		}
		out.push_back(std::move(d));
	}
	return out;
}

std::vector<ip_address> bgp_prefixes(const std::vector<bgp_decision> &decisions)
{
	std::set<ip_address> s;
	for (const auto &d : decisions)
		if (d.announce)
			s.insert(d.key.address);
	return {s.begin(), s.end()};
}

std::string render_bird_include(const bgp_config &b, const std::vector<ip_address> &prefixes)
{
	// The communities go in the static protocol's import filter, so every
	// route it originates carries them whatever bird.conf's export does.
	std::string filter;
	for (const auto &c : b.communities) {
		auto parts = parse_bgp_community(c);
		if (!parts)
			continue; // validate_bgp refused it already
		if (parts->size() == 2)
			filter += fmt::format("bgp_community.add(({},{})); ", (*parts)[0], (*parts)[1]);
		else
			filter += fmt::format("bgp_large_community.add(({},{},{})); ", (*parts)[0], (*parts)[1],
					      (*parts)[2]);
	}
	std::string out = fmt::format(
		"# Written by sluiced (node.bgp.include_file): the VIPs this node announces now.\n"
		"# Do not edit: sluiced rewrites it whenever its decision changes; `sluicectl node status`\n"
		"# says why each VIP is announced or withdrawn.\n");
	for (const bool v6 : {false, true}) {
		const char *ch = v6 ? "ipv6" : "ipv4";
		out += fmt::format("protocol static {}{} {{\n", b.protocol, v6 ? 6 : 4);
		if (filter.empty())
			out += fmt::format("\t{};\n", ch);
		else
			out += fmt::format("\t{} {{ import filter {{ {}accept; }}; }};\n", ch, filter);
		for (const auto &p : prefixes)
			if (p.is_v6() == v6)
				out += fmt::format("\troute {}/{} blackhole;\n", p.str(), v6 ? 128 : 32);
		out += "}\n";
	}
	return out;
}

} // namespace sluice
