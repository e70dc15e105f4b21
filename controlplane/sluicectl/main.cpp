// SPDX-License-Identifier: Apache-2.0
// sluicectl: drives sluiced over its Unix socket. NOUN VERB commands (like
// iproute2 and xdp-tools) from sluiced's own verb table (verbs.def); every
// read verb has --json.
//
// Exit status: 0 done; 1 sluiced refused (its one-line reason printed);
// 2 usage error, or sluiced could not be reached.
#include "api_socket.h"
#include "config_io.h"
#include "error.h"
#include "rates.h"
#include "sluice_version.h"
#include "verbs.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include <unistd.h>

namespace po = boost::program_options;
using sluice::json;

namespace {

constexpr int exit_refused = 1;
constexpr int exit_usage = 2;

struct usage_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};

// Not the command line's fault (a file that cannot be read): exit 1, and no
// "see --help".
struct failure : std::runtime_error {
	using std::runtime_error::runtime_error;
};

// sluiced answered {"ok": false}: exit 1 with its line.
struct refused : std::runtime_error {
	using std::runtime_error::runtime_error;
};

constexpr const char *default_socket = "/run/sluice/sluiced.sock";

struct globals {
	std::string socket = default_socket;
	bool json_out = false;
	uint32_t timeout_ms = 10000;
};

// One request to sluiced for the verb being run: its result; throws
// sluice::error when sluiced cannot be reached, `refused` when it says no.
using call_fn = std::function<json(const json &args)>;

// What the command line adds to a verb of the table (verbs.h): its
// positional arguments, options, how they become the request, and how a
// result is printed.
struct cli_verb {
	std::vector<const char *> positional;
	std::function<void(po::options_description &)> options;
	// Builds the request's args from the parsed options.
	std::function<json(const po::variables_map &)> request;
	// Prints a successful result for people (read verbs); nullptr: "ok".
	std::function<void(const json &)> print;
	// Set for commands that ask more than once (--follow, --watch): runs
	// the whole command instead of one request and print; its exit status.
	std::function<int(const po::variables_map &, const globals &, const call_fn &)> loop = nullptr;
};

// SIGINT or SIGTERM during --follow or --watch: finish the line, exit 0.
volatile std::sig_atomic_t interrupted = 0;

void on_interrupt(int) { interrupted = 1; }

void catch_interrupts()
{
	struct sigaction sa{};
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
}

// Sleeps `seconds` unless interrupted (a signal cuts nanosleep short).
void pause_for(double seconds)
{
	if (interrupted)
		return;
	timespec ts{static_cast<time_t>(seconds), static_cast<long>((seconds - static_cast<time_t>(seconds)) * 1e9)};
	nanosleep(&ts, nullptr);
}

// Wall-clock nanoseconds as UTC ISO 8601 with milliseconds.
std::string utc_time(uint64_t ns)
{
	time_t secs = static_cast<time_t>(ns / 1000000000);
	tm t{};
	gmtime_r(&secs, &t);
	char buf[32];
	std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &t);
	return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ns / 1000000 % 1000));
}

// ------------------------------------------------------------ printing

std::string pad(const std::string &s, size_t w)
{
	return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}

void print_table(const std::vector<std::string> &head, const std::vector<std::vector<std::string>> &rows)
{
	std::vector<size_t> w(head.size());
	for (size_t i = 0; i < head.size(); i++)
		w[i] = head[i].size();
	for (const auto &r : rows)
		for (size_t i = 0; i < r.size() && i < w.size(); i++)
			w[i] = std::max(w[i], r[i].size());
	auto line = [&](const std::vector<std::string> &r) {
		std::string out;
		for (size_t i = 0; i < r.size(); i++)
			out += (i + 1 == r.size() ? r[i] : pad(r[i], w[i] + 2));
		std::puts(out.c_str());
	};
	line(head);
	for (const auto &r : rows)
		line(r);
}

std::string num(const json &j)
{
	return j.is_number_float() ? fmt::format("{:.1f}", j.get<double>()) : j.dump();
}

std::string check_text(const json &b)
{
	if (!b.contains("check"))
		return "none";
	const json &c = b["check"];
	std::string s = c["type"].get<std::string>();
	if (c.contains("port"))
		s += ":" + c["port"].dump();
	return s;
}

void print_vips(const json &r)
{
	std::vector<std::vector<std::string>> rows;
	for (const auto &v : r)
		rows.push_back({v["vip"], v["mode"], num(v["ring_size"]),
				fmt::format("{}/{}", num(v["in_table"]), num(v["backends"]))});
	print_table({"VIP", "MODE", "RING", "IN-TABLE/BACKENDS"}, rows);
}

// "-" while no live dataplane counts connections (conns is null).
std::string conns_part(const json &b, const char *which)
{
	const json c = b.value("conns", json());
	return c.is_object() ? num(c[which]) : "-";
}

// A draining backend whose connections are all gone reads "drained"
// (its drain is done: safe to take down).
std::string state_text(const json &b)
{
	std::string st = b["state"];
	if (b.value("drain", "") == "done") {
		const auto at = st.find("draining");
		if (at != std::string::npos)
			st.replace(at, 8, "drained");
	}
	return st;
}

std::vector<std::string> backend_row(const json &b, bool with_vip)
{
	std::vector<std::string> r;
	if (with_vip)
		r.push_back(b["vip"]);
	r.push_back(b["address"]);
	r.push_back(num(b["weight"]));
	r.push_back(state_text(b));
	r.push_back(conns_part(b, "active") + "/" + conns_part(b, "inactive"));
	r.push_back(check_text(b));
	std::string hop = b.value("next_hop_mac", "");
	r.push_back(hop.empty() ? "-" : hop);
	// Both can hold at once (a failing check to an unresolved neighbour):
	// each its own clause, never run together.
	std::string err = b.value("last_error", "");
	if (std::string hop_err = b.value("next_hop_error", ""); !hop_err.empty())
		err += (err.empty() ? "" : "; ") + hop_err;
	r.push_back(err.empty() ? "-" : err);
	return r;
}

void print_backends(const json &r)
{
	std::vector<std::vector<std::string>> rows;
	for (const auto &b : r)
		rows.push_back(backend_row(b, true));
	print_table({"VIP", "BACKEND", "WEIGHT", "STATE", "CONNS", "CHECK", "NEXT-HOP", "ERROR"}, rows);
}

// The connection table's fill at the worker's last sweep, "18/1.0M (0%)";
// "-" for a worker that does not count (conn sweeps off, none done yet).
std::string table_fill(const json &w)
{
	if (!w.contains("ct_live") || w["ct_live"].is_null() || !w["ct_capacity"].is_number())
		return "-";
	const double live = w["ct_live"].get<double>(), cap = w["ct_capacity"].get<double>();
	const std::string c = cap >= 1e6 ? fmt::format("{:.1f}M", cap / 1e6)
			    : cap >= 1e3 ? fmt::format("{:.0f}k", cap / 1e3)
					 : fmt::format("{:.0f}", cap);
	return fmt::format("{:.0f}/{} ({:.0f}%)", live, c, cap > 0 ? 100 * live / cap : 0.0);
}

void print_workers(const json &ws)
{
	if (ws.empty()) {
		std::puts("dataplanes: none attached");
		return;
	}
	std::vector<std::vector<std::string>> rows;
	for (const auto &w : ws)
		rows.push_back({w["name"], w["kind"], num(w["pid"]), w["state"],
				fmt::format("{:.1f}s", w["heartbeat_age_s"].get<double>()),
				num(w["generation_applied"]), table_fill(w), w["stale"]});
	print_table({"WORKER", "KIND", "PID", "STATE", "HEARTBEAT", "GENERATION", "TABLE", "STALE"}, rows);
}

void print_status(const json &r)
{
	std::printf("generation %s\n\n", num(r["generation"]).c_str());
	for (const auto &v : r["vips"]) {
		std::printf("%s  mode %s  ring %s  %s of %zu backends in the table  digest %s\n",
			    v["vip"].get<std::string>().c_str(), v["mode"].get<std::string>().c_str(),
			    num(v["ring_size"]).c_str(), num(v["in_table"]).c_str(), v["backends"].size(),
			    v.value("digest", "-").c_str());
		std::vector<std::vector<std::string>> rows;
		for (const auto &b : v["backends"])
			rows.push_back(backend_row(b, false));
		if (!rows.empty())
			print_table({"  BACKEND", "WEIGHT", "STATE", "CONNS", "CHECK", "NEXT-HOP", "ERROR"}, [&] {
				for (auto &row : rows)
					row[0] = "  " + row[0];
				return rows;
			}());
		std::puts("");
	}
	if (r["vips"].empty())
		std::puts("no VIPs\n");
	print_workers(r["workers"]);
}

void print_stats(const json &r)
{
	std::printf("generation %s\n\n", num(r["generation"]).c_str());
	std::vector<std::vector<std::string>> rows;
	for (const auto &v : r["vips"]) {
		rows.push_back({v["vip"], "", "", num(v["packets"]), num(v["bytes"]), num(v["new_flows"]),
				conns_part(v, "active"), conns_part(v, "inactive")});
		for (const auto &b : v["backends"])
			rows.push_back({"", b["address"], state_text(b), num(b["packets"]), num(b["bytes"]),
					num(b["new_flows"]), conns_part(b, "active"), conns_part(b, "inactive")});
	}
	// ACTIVE/INACTIVE: ipvsadm's ActiveConn/InActConn, from the dataplanes'
	// last sweeps of their connection tables.
	print_table({"VIP", "BACKEND", "STATE", "PACKETS", "BYTES", "NEW-FLOWS", "ACTIVE", "INACTIVE"}, rows);
	std::puts("");
	std::vector<std::vector<std::string>> crows;
	for (auto it = r["counters"].begin(); it != r["counters"].end(); ++it)
		if (it.value().get<uint64_t>() != 0)
			crows.push_back({it.key(), num(it.value())});
	if (crows.empty())
		std::puts("dataplane counters: all zero");
	else
		print_table({"COUNTER", "VALUE"}, crows);
	std::puts("");
	print_workers(r["workers"]);
}

// ------------------------------------------------------------ options

std::string need(const po::variables_map &vm, const char *name)
{
	if (!vm.count(name))
		throw usage_error(fmt::format("missing {}", name == std::string("vip") ? "VIP (ADDRESS:PORT/PROTO)" : name == std::string("address") ? "backend ADDRESS" : name));
	return vm[name].as<std::string>();
}

void put_if(json &j, const po::variables_map &vm, const char *opt, const char *field)
{
	if (vm.count(opt))
		j[field] = vm[opt].as<std::string>();
}

void vip_options(po::options_description &d)
{
	d.add_options()("mode", po::value<std::string>(), "ipip (default), gue or l2dsr")(
		"ring-size", po::value<std::string>(), "Maglev table size, a prime (default 65537)")(
		"gue-port", po::value<std::string>(), "GUE outer UDP port (default 6080)");
}

void backend_options(po::options_description &d, bool for_set)
{
	// `backend set` changes only what it is given: its help says so rather
	// than `add`'s defaults, which would read as what set falls back to.
	auto dflt = [for_set](const char *what, const char *add_default) {
		return fmt::format("{} ({})", what, for_set ? "default: unchanged" : add_default);
	};
	d.add_options()("weight", po::value<std::string>(), dflt("relative weight; 0 drains", "default 100").c_str());
	if (for_set)
		d.add_options()("drain", "weight 0: keep existing flows, take no new ones");
	d.add_options()("check", po::value<std::string>(),
			dflt("health check: none, tcp, http, udp", "default none").c_str())(
		"check-port", po::value<std::string>(), dflt("port to check", "default: the VIP's").c_str())(
		"interval-ms", po::value<std::string>(), dflt("between checks", "default 1000").c_str())(
		"timeout-ms", po::value<std::string>(), dflt("per check", "default 500").c_str())(
		"rise", po::value<std::string>(), dflt("successes to come up", "default 2").c_str())(
		"fall", po::value<std::string>(), dflt("failures to go down", "default 3").c_str())(
		"path", po::value<std::string>(), dflt("http: path to GET", "default /").c_str())(
		"expect-status", po::value<std::string>(), dflt("http: status meaning healthy", "default 200").c_str())(
		"send", po::value<std::string>(), dflt("udp: payload to send", "required for udp").c_str())(
		"expect", po::value<std::string>(), dflt("udp: text the reply must contain", "default: any reply").c_str())(
		"mac", po::value<std::string>(), dflt("backend MAC for l2dsr", "default: resolved").c_str());
}

json backend_request(const po::variables_map &vm)
{
	json a{{"vip", need(vm, "vip")}, {"address", need(vm, "address")}};
	put_if(a, vm, "weight", "weight");
	put_if(a, vm, "mac", "mac");
	if (vm.count("drain"))
		a["drain"] = true;
	json check = json::object();
	put_if(check, vm, "check", "type");
	put_if(check, vm, "check-port", "port");
	put_if(check, vm, "interval-ms", "interval_ms");
	put_if(check, vm, "timeout-ms", "timeout_ms");
	put_if(check, vm, "rise", "rise");
	put_if(check, vm, "fall", "fall");
	put_if(check, vm, "path", "path");
	put_if(check, vm, "expect-status", "expect_status");
	put_if(check, vm, "send", "send");
	put_if(check, vm, "expect", "expect");
	if (!check.empty())
		a["check"] = check;
	return a;
}

void no_options(po::options_description &) {}

json no_args(const po::variables_map &) { return json::object(); }

// One function per verb of verbs.def, named after its id: a verb added there
// without its command line here does not compile.
cli_verb cli_vip_add()
{
	return {{"vip"}, vip_options,
		[](const po::variables_map &vm) {
			json a{{"vip", need(vm, "vip")}};
			put_if(a, vm, "mode", "mode");
			put_if(a, vm, "ring-size", "ring_size");
			put_if(a, vm, "gue-port", "gue_port");
			return a;
		},
		nullptr};
}

cli_verb cli_vip_del()
{
	return {{"vip"}, no_options,
		[](const po::variables_map &vm) { return json{{"vip", need(vm, "vip")}}; }, nullptr};
}

cli_verb cli_vip_list() { return {{}, no_options, no_args, print_vips}; }

cli_verb cli_backend_add()
{
	return {{"vip", "address"}, [](po::options_description &d) { backend_options(d, false); },
		backend_request, nullptr};
}

cli_verb cli_backend_set()
{
	return {{"vip", "address"}, [](po::options_description &d) { backend_options(d, true); },
		backend_request, nullptr};
}

cli_verb cli_backend_del()
{
	return {{"vip", "address"}, no_options,
		[](const po::variables_map &vm) {
			return json{{"vip", need(vm, "vip")}, {"address", need(vm, "address")}};
		},
		nullptr};
}

cli_verb cli_backend_list()
{
	return {{"vip"}, no_options,
		[](const po::variables_map &vm) {
			json a = json::object();
			put_if(a, vm, "vip", "vip");
			return a;
		},
		print_backends};
}

cli_verb cli_status() { return {{}, no_options, no_args, print_status}; }

// `conn list`: one line per connection, as ipvsadm -Lnc prints them (the
// protocol, state, seconds to expiry, then the addresses), with the age
// since the flow's last packet and the worker whose table holds it.
void print_conns(const json &r)
{
	std::vector<std::vector<std::string>> rows;
	for (const auto &c : r["connections"])
		rows.push_back({c["protocol"], c["state"], num(c["age_s"]), num(c["expire_s"]), c["client"], c["vip"],
				c["backend"], c["worker"]});
	if (!rows.empty())
		print_table({"PRO", "STATE", "AGE", "EXPIRE", "CLIENT", "VIP", "BACKEND", "WORKER"}, rows);
	const json &d = r["dataplanes"];
	if (d["asked"].get<uint64_t>() == 0) {
		std::puts("no live dataplane counts connections (sluice-dpdk and sluice-xdp do unless started with "
			  "--conn-sweep-s 0, or replaying --pcap)");
		return;
	}
	std::printf("%s of %s matching connections shown (--limit %s)\n", num(json(rows.size())).c_str(),
		    num(r["matched"]).c_str(), num(r["limit"]).c_str());
	for (const auto &w : d["unanswered"])
		std::fprintf(stderr, "sluicectl: dataplane %s did not answer within 2 s: its connections are "
				     "left out\n",
			     w.get<std::string>().c_str());
}

cli_verb cli_conn_list()
{
	return {{"vip"},
		[](po::options_description &d) {
			d.add_options()("backend", po::value<std::string>(),
					"only connections to this backend ADDRESS")(
				"limit", po::value<std::string>(),
				"show at most N connections (1 to 1024; default 100)");
		},
		[](const po::variables_map &vm) {
			json a = json::object();
			put_if(a, vm, "vip", "vip");
			put_if(a, vm, "backend", "backend");
			put_if(a, vm, "limit", "limit");
			return a;
		},
		print_conns};
}

// A rate as the live view shows it: "-" when unknown, else three figures
// with a k/M/G suffix past a thousand.
std::string rate_text(const json &r)
{
	if (!r.is_number())
		return "-";
	double v = r.get<double>();
	const char *suffix = "";
	for (const char *s : {"k", "M", "G", "T"}) {
		if (v < 1000)
			break;
		v /= 1000;
		suffix = s;
	}
	return v < 10 && *suffix ? fmt::format("{:.2f}{}", v, suffix) : fmt::format("{:.1f}{}", v, suffix);
}

// One frame of `stats --watch`: per VIP and backend, per drop reason that
// is not zero, per worker.
std::vector<std::string> watch_frame(const json &stats, const json &rates, double every)
{
	std::vector<std::string> out;
	out.push_back(fmt::format("sluice  generation {}  {}  every {:g} s{}", num(stats["generation"]),
				  utc_time(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
					  std::chrono::system_clock::now().time_since_epoch()).count())),
				  every, rates["interval_s"].is_null() ? "  (rates after the next reading)" : ""));
	out.push_back("");
	std::vector<std::vector<std::string>> rows;
	for (const auto &v : rates["vips"]) {
		rows.push_back({v["vip"], "", "", rate_text(v["packets_per_s"]), rate_text(v["bits_per_s"]),
				rate_text(v["new_flows_per_s"])});
		for (const auto &b : v["backends"])
			rows.push_back({"", b["address"], b["state"], rate_text(b["packets_per_s"]),
					rate_text(b["bits_per_s"]), rate_text(b["new_flows_per_s"])});
	}
	auto table = [&out](const std::vector<std::string> &head, const std::vector<std::vector<std::string>> &rs) {
		std::vector<size_t> w(head.size());
		for (size_t i = 0; i < head.size(); i++)
			w[i] = head[i].size();
		for (const auto &r : rs)
			for (size_t i = 0; i < r.size(); i++)
				w[i] = std::max(w[i], r[i].size());
		auto line = [&](const std::vector<std::string> &r) {
			std::string l;
			for (size_t i = 0; i < r.size(); i++)
				l += i + 1 == r.size() ? r[i] : pad(r[i], w[i] + 2);
			out.push_back(l);
		};
		line(head);
		for (const auto &r : rs)
			line(r);
	};
	if (rows.empty())
		out.push_back("no VIPs");
	else
		table({"VIP", "BACKEND", "STATE", "PKT/S", "BIT/S", "NEW-FLOWS/S"}, rows);
	out.push_back("");
	std::vector<std::vector<std::string>> drows;
	for (auto it = rates["drops_per_s"].begin(); it != rates["drops_per_s"].end(); ++it)
		if (it.value().is_number() && it.value().get<double>() > 0)
			drows.push_back({it.key(), rate_text(it.value())});
	if (drows.empty())
		out.push_back(rates["interval_s"].is_null() ? "drops/s: -" : "drops/s: none");
	else
		table({"DROP-REASON", "DROPS/S"}, drows);
	out.push_back("");
	std::vector<std::vector<std::string>> wrows;
	for (const auto &w : rates["workers"])
		wrows.push_back({w["name"], w["kind"], w["state"], rate_text(w["rx_packets_per_s"]),
				 rate_text(w["tx_packets_per_s"]),
				 fmt::format("{:.1f}s", w["heartbeat_age_s"].get<double>())});
	if (wrows.empty())
		out.push_back("dataplanes: none attached");
	else
		table({"WORKER", "KIND", "STATE", "RX-PKT/S", "TX-PKT/S", "HEARTBEAT"}, wrows);
	return out;
}

// --watch SECONDS: 0.1 to 3600.
double watch_interval(const std::string &text)
{
	double s = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s);
	if (ec != std::errc() || end != text.data() + text.size() || !(s >= 0.1 && s <= 3600))
		throw usage_error(fmt::format("--watch: '{}' is not a number of seconds from 0.1 to 3600", text));
	return s;
}

// `stats --watch`: reads stats every interval and shows the rates between
// consecutive readings. On a terminal the frame is redrawn in place (like
// top); otherwise each frame is a block of lines after a blank one, and with
// --json each reading after the first is one line: the stats with "rates".
int watch_stats(const po::variables_map &vm, const globals &g, const call_fn &call)
{
	if (vm.count("seconds") && !vm.count("watch"))
		throw usage_error(fmt::format("'{}': give the interval with --watch, as in `sluicectl stats --watch "
					      "{}`",
					      vm["seconds"].as<std::string>(), vm["seconds"].as<std::string>()));
	if (!vm.count("watch")) {
		json r = call(json::object());
		if (g.json_out)
			std::puts(r.dump(2).c_str());
		else
			print_stats(r);
		return 0;
	}
	const double every = watch_interval(vm.count("seconds") ? vm["seconds"].as<std::string>()
							      : vm["watch"].as<std::string>());
	const bool tty = ::isatty(STDOUT_FILENO) && !g.json_out;
	catch_interrupts();
	json before;
	auto before_at = std::chrono::steady_clock::now();
	bool first = true;
	while (!interrupted) {
		json now = call(json::object());
		const auto now_at = std::chrono::steady_clock::now();
		const double seconds = std::chrono::duration<double>(now_at - before_at).count();
		json rates = sluice::stats_rates(before, now, seconds);
		if (g.json_out) {
			if (!before.is_null()) {
				json line = now;
				line["rates"] = rates;
				std::puts(line.dump().c_str());
			}
		} else if (tty) {
			// Home, each line cleared to its end, the rest of the screen
			// cleared: redrawn in place without flicker.
			std::string frame = "\033[H";
			for (const auto &l : watch_frame(now, rates, every))
				frame += l + "\033[K\n";
			std::fputs((frame + "\033[J").c_str(), stdout);
		} else {
			if (!first)
				std::puts("");
			for (const auto &l : watch_frame(now, rates, every))
				std::puts(l.c_str());
		}
		std::fflush(stdout);
		first = false;
		before = std::move(now);
		before_at = now_at;
		pause_for(every);
	}
	return 0;
}

cli_verb cli_stats()
{
	return {{"seconds"},
		[](po::options_description &d) {
			d.add_options()("watch", po::value<std::string>()->implicit_value("1"),
					"refresh every SECONDS (default 1): packets/s, bits/s and new flows/s per VIP "
					"and backend, drops/s by reason, per worker; until interrupted");
		},
		no_args, print_stats, watch_stats};
}

// apply's and diff's file: -f FILE, or - for standard input.
json file_request(const po::variables_map &vm, const char *verb)
{
	// "file-given-bare": a file named without -f (`apply x.yaml`), caught
	// to say how, instead of "too many positional options".
	if (vm.count("file-given-bare"))
		throw usage_error(fmt::format("give the file with -f: `sluicectl {} -f {}`", verb,
					      vm["file-given-bare"].as<std::string>()));
	std::string path = need(vm, "file");
	std::stringstream ss;
	if (path == "-") {
		ss << std::cin.rdbuf();
	} else {
		std::ifstream in(path);
		if (!in)
			throw failure(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
		ss << in.rdbuf();
	}
	return json{{"yaml", ss.str()}};
}

void file_option(po::options_description &d)
{
	d.add_options()("file,f", po::value<std::string>(), "YAML configuration (- for stdin)");
}

// The lines of what changes ("+ VIP ...", "~ backend ...: weight 50 -> 100"),
// then one line saying what became of them.
void print_changes(const json &r, const char *outcome)
{
	for (const auto &l : r["changes"])
		std::puts(l.get<std::string>().c_str());
	std::printf("%s: %s (generation %s)\n", r["summary"].get<std::string>().c_str(), outcome,
		    num(r["generation"]).c_str());
}

cli_verb cli_apply()
{
	return {{"file-given-bare"},
		[](po::options_description &d) {
			file_option(d);
			d.add_options()("dry-run", "validate and show what would change; change nothing");
		},
		[](const po::variables_map &vm) {
			json a = file_request(vm, "apply");
			if (vm.count("dry-run"))
				a["dry_run"] = true;
			return a;
		},
		[](const json &r) {
			print_changes(r, r.value("dry_run", false) ? "dry run, nothing applied"
					 : r.value("applied", false) ? "applied"
								     : "nothing to publish");
		}};
}

cli_verb cli_diff()
{
	return {{"file-given-bare"}, file_option,
		[](const po::variables_map &vm) { return file_request(vm, "diff"); },
		[](const json &r) { print_changes(r, "against the running configuration"); }};
}

// One event as `sluicectl events` prints it: its time (UTC), its sequence
// number, then its key=value fields, so every line greps like the journal's.
void print_event(const json &e, bool as_json)
{
	if (as_json)
		std::puts(e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
	else
		std::printf("%s seq=%s %s\n", utc_time(e["time_ns"].get<uint64_t>()).c_str(), num(e["seq"]).c_str(),
			    e["line"].get<std::string>().c_str());
}

void print_events(const json &r, bool as_json)
{
	if (r.value("lost", 0) > 0)
		std::fprintf(stderr, "sluicectl: %s earlier events were overwritten (sluiced keeps the last %s)\n",
			     num(r["lost"]).c_str(), num(r["capacity"]).c_str());
	for (const auto &e : r["events"])
		print_event(e, as_json);
	std::fflush(stdout);
}

// `events [--since N] [--follow]`: what sluiced recorded, oldest first; with
// --follow, asks again every half second for what came since. Once it has
// answered, a sluiced that goes away is waited for (said once), and one that
// restarted is read from its first event.
int run_events(const po::variables_map &vm, const globals &g, const call_fn &call)
{
	json args = json::object();
	if (vm.count("since"))
		args["since"] = vm["since"].as<std::string>();
	json r = call(args);
	print_events(r, g.json_out);
	if (!vm.count("follow"))
		return 0;
	catch_interrupts();
	json instance = r["instance"];
	uint64_t since = r["last_seq"].get<uint64_t>();
	bool waiting = false;
	while (!interrupted) {
		pause_for(0.5);
		if (interrupted)
			break;
		try {
			r = call(json{{"since", since}});
		} catch (const sluice::error &e) {
			if (!waiting)
				std::fprintf(stderr, "sluicectl: %s: waiting for it to come back\n", e.what());
			waiting = true;
			continue;
		}
		if (r["instance"] != instance) {
			std::fprintf(stderr, "sluicectl: sluiced restarted: its events start again\n");
			instance = r["instance"];
			r = call(json{{"since", 0}});
		} else if (waiting) {
			std::fprintf(stderr, "sluicectl: sluiced answers again\n");
		}
		waiting = false;
		print_events(r, g.json_out);
		since = r["last_seq"].get<uint64_t>();
	}
	return 0;
}

cli_verb cli_events()
{
	return {{},
		[](po::options_description &d) {
			d.add_options()("since", po::value<std::string>(),
					"only events after sequence number N (the seq= of the last one seen)")(
				"follow", "keep printing new events as they come (every 0.5 s), until interrupted");
		},
		no_args, nullptr, run_events};
}

// `node status` (and what drain and undrain answer): the node's state,
// BIRD's, then one line per VIP with why it is announced or withdrawn.
void print_node_status(const json &r)
{
	const json &b = r["bgp"];
	std::printf("node %s\n", r["drained"].get<bool>() ? "drained (sluicectl node undrain to announce again)"
							    : "not drained");
	if (!b["enabled"].get<bool>()) {
		std::puts("bgp: off (node.bgp.enabled is not true): sluiced tells BIRD nothing");
	} else {
		std::printf("bgp: BIRD on %s %s; include file %s, protocols %s4/%s6; %s\n",
			    b["bird_socket"].get<std::string>().c_str(),
			    b["bird_reachable"].get<bool>() ? "reachable" : "NOT reachable",
			    b["include_file"].get<std::string>().c_str(), b["protocol"].get<std::string>().c_str(),
			    b["protocol"].get<std::string>().c_str(),
			    b["in_sync"].get<bool>() ? "in sync" : "NOT in sync");
		if (!b["error"].get<std::string>().empty())
			std::printf("bgp: error: %s\n", b["error"].get<std::string>().c_str());
		std::string ann;
		for (const auto &a : b["announced"])
			ann += (ann.empty() ? "" : " ") + a.get<std::string>();
		std::printf("bgp: BIRD holds from sluiced: %s\n", ann.empty() ? "nothing" : ann.c_str());
	}
	std::puts("");
	std::vector<std::vector<std::string>> rows;
	for (const auto &v : r["vips"])
		rows.push_back({v["vip"], v["announce"].get<bool>() ? "announced" : "withdrawn", v["digest"], v["reason"]});
	if (rows.empty())
		std::puts("no VIPs");
	else
		print_table({"VIP", "BGP", "DIGEST", "WHY"}, rows);
}

cli_verb cli_node_drain() { return {{}, no_options, no_args, print_node_status}; }
cli_verb cli_node_undrain() { return {{}, no_options, no_args, print_node_status}; }
cli_verb cli_node_status() { return {{}, no_options, no_args, print_node_status}; }

cli_verb cli_dump()
{
	return {{}, no_options, no_args,
		[](const json &r) { std::fputs(r["yaml"].get<std::string>().c_str(), stdout); }};
}

// Indexed like sluice::verb_table.
const std::array<cli_verb (*)(), sluice::verb_count> cli_verbs = {
#define SLUICE_VERB(id, ...) cli_##id,
#include "verbs.def"
#undef SLUICE_VERB
};

std::string synopsis(const sluice::verb_def &v)
{
	std::string s(v.noun);
	if (!v.word.empty())
		s += " " + std::string(v.word);
	if (!v.args.empty())
		s += " " + std::string(v.args);
	return s;
}

// Global options and the long options of a command line (cli_verb), as
// completion offers them.
const char *const global_options = "--socket --json --wait-ms --version --help";

std::string long_options(const cli_verb &cli)
{
	po::options_description d;
	cli.options(d);
	std::string out;
	for (const auto &o : d.options())
		out += (out.empty() ? "--" : " --") + o->long_name();
	return out; // --help is among the global options
}

// `sluicectl completion bash`: the script bash-completion loads, made from
// the verb table and each command's own options, so a verb or option added
// there completes without anyone editing a script. meson generates it at
// build time into share/bash-completion/completions/sluicectl.
void print_bash_completion()
{
	std::map<std::string, std::vector<const sluice::verb_def *>> by_noun;
	std::vector<std::string> nouns;
	for (const auto &v : sluice::verb_table) {
		std::string noun(v.noun);
		if (!by_noun.count(noun))
			nouns.push_back(noun);
		by_noun[noun].push_back(&v);
	}
	std::string noun_words;
	for (const auto &n : nouns)
		noun_words += n + " ";
	std::string cases;
	for (const auto &n : nouns) {
		const auto &vs = by_noun[n];
		if (vs.size() == 1 && vs[0]->word.empty()) {
			cases += fmt::format("\t{}) words=\"{}\" ;;\n", n,
					     long_options(cli_verbs[static_cast<size_t>(vs[0]->id)]()));
			continue;
		}
		std::string verbs, per_verb;
		for (const auto *v : vs) {
			verbs += std::string(v->word) + " ";
			per_verb += fmt::format("\t\t{}) words=\"{}\" ;;\n", v->word,
						long_options(cli_verbs[static_cast<size_t>(v->id)]()));
		}
		cases += fmt::format("\t{}) case \"$verb\" in\n\t\t\"\") words=\"{}\" ;;\n{}\t\tesac ;;\n", n,
				     verbs.substr(0, verbs.size() - 1), per_verb);
	}
	std::printf(R"(# bash completion for sluicectl, generated by `sluicectl completion bash` (sluice %s)
_sluicectl() {
	local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
	local noun="" verb="" words="" i w
	# The noun and verb typed so far: the first words that are not options
	# (nor the value of one that takes a value).
	for ((i = 1; i < COMP_CWORD; i++)); do
		w="${COMP_WORDS[i]}"
		case "$w" in
		--socket|--wait-ms|-f|--file) ((i++)); continue ;;
		-*) continue ;;
		esac
		if [[ -z $noun ]]; then noun=$w; elif [[ -z $verb ]]; then verb=$w; fi
	done
	case "$prev" in
	--socket|-f|--file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--wait-ms) return ;;
	esac
	case "$noun" in
	"") words="%scompletion" ;;
	completion) words="bash" ;;
%s	esac
	COMPREPLY=($(compgen -W "$words %s" -- "$cur"))
}
complete -F _sluicectl sluicectl
)",
		    SLUICE_VERSION, noun_words.c_str(), cases.c_str(), global_options);
}

void print_usage(const char *noun)
{
	std::printf("Usage: sluicectl [--socket PATH] [--json] %s\n\nCommands:\n",
		    noun ? fmt::format("{} VERB ...", noun).c_str() : "NOUN VERB ...");
	for (const auto &v : sluice::verb_table) {
		if (noun && v.noun != noun)
			continue;
		std::printf("  %s%s\n", pad(synopsis(v), 34).c_str(), std::string(v.help).c_str());
	}
	std::puts("\nGlobal options:\n  --socket PATH   sluiced's API socket (default $SLUICE_SOCKET, else "
		  "/run/sluice/sluiced.sock)\n"
		  "  --json          machine-readable output of read verbs\n"
		  "  --wait-ms N     how long to wait for sluiced (default 10000)\n"
		  "  --version       print the version and exit\n"
		  "  --help          help for any level, e.g. `sluicectl backend add --help`\n\n"
		  "Shell completion: `sluicectl completion bash` prints the script (installed by meson\n"
		  "into share/bash-completion/completions).\n\n"
		  "Exit status: 0 done, 1 refused or failed, 2 usage or connection error.");
}

int run(int argc, char **argv)
{
	globals g;
	// --socket beats $SLUICE_SOCKET beats the default: a shell (or
	// scripts/topology) points every command at one sluiced once.
	if (const char *env = std::getenv("SLUICE_SOCKET"); env && *env)
		g.socket = env;
	bool help = false, version = false;
	po::options_description global;
	global.add_options()("socket", po::value(&g.socket))("json", po::bool_switch(&g.json_out))(
		"wait-ms", po::value(&g.timeout_ms))("help,h", po::bool_switch(&help))(
		"version", po::bool_switch(&version))("args", po::value<std::vector<std::string>>());
	po::positional_options_description pos;
	pos.add("args", -1);
	// Global options are taken anywhere on the line; the rest (noun, verb,
	// their arguments and options) is parsed again against the command.
	po::parsed_options parsed = po::command_line_parser(argc, argv)
					    .options(global)
					    .positional(pos)
					    .allow_unregistered()
					    .run();
	po::variables_map gvm;
	po::store(parsed, gvm);
	po::notify(gvm);
	std::vector<std::string> rest = po::collect_unrecognized(parsed.options, po::include_positional);

	if (version) {
		std::printf("sluicectl %s\n", SLUICE_VERSION);
		return 0;
	}
	// Not one of sluiced's verbs: answered here, without a socket.
	if (!rest.empty() && rest[0] == "completion") {
		if (help) {
			std::puts("Usage: sluicectl completion bash\nprint the bash completion script for sluicectl\n\n"
				  "Options:\n  --help");
			return 0;
		}
		if (rest.size() != 2 || rest[1] != "bash")
			throw usage_error("completion: give the shell: `sluicectl completion bash`");
		print_bash_completion();
		return 0;
	}
	if (rest.empty()) {
		print_usage(nullptr);
		return help ? 0 : exit_usage;
	}
	const sluice::verb_def *cmd = nullptr;
	bool noun_known = false;
	for (const auto &v : sluice::verb_table) {
		if (rest[0] != v.noun)
			continue;
		noun_known = true;
		if (v.word.empty() || (rest.size() > 1 && rest[1] == v.word))
			cmd = &v;
	}
	if (!noun_known)
		throw usage_error(fmt::format("unknown command '{}'", rest[0]));
	if (!cmd) {
		if (help || rest.size() == 1) {
			print_usage(rest[0].c_str());
			return help ? 0 : exit_usage;
		}
		throw usage_error(fmt::format("unknown verb '{} {}'", rest[0], rest[1]));
	}
	rest.erase(rest.begin(), rest.begin() + (cmd->word.empty() ? 1 : 2));
	const cli_verb cli = cli_verbs[static_cast<size_t>(cmd->id)]();

	po::options_description desc(
		fmt::format("Usage: sluicectl {} [options]\n{}\n\nOptions", synopsis(*cmd), cmd->help));
	cli.options(desc);
	if (help) {
		std::cout << desc << "\n";
		return 0;
	}
	po::options_description all;
	all.add(desc);
	po::positional_options_description cpos;
	for (const char *p : cli.positional) {
		all.add_options()(p, po::value<std::string>());
		cpos.add(p, 1);
	}
	po::variables_map vm;
	po::store(po::command_line_parser(rest).options(all).positional(cpos).run(), vm);
	po::notify(vm);

	if (cli.loop) {
		const std::string name = cmd->api_name();
		call_fn call = [&](const json &args) {
			json req{{"verb", name}, {"args", args}};
			std::string line = sluice::api_call(
				g.socket, req.dump(-1, ' ', false, json::error_handler_t::replace),
				std::chrono::milliseconds(g.timeout_ms));
			json resp = json::parse(line, nullptr, false);
			if (resp.is_discarded() || !resp.is_object())
				throw sluice::error("sluiced sent a malformed answer");
			if (!resp.value("ok", false))
				throw refused(resp.value("error", std::string("refused")));
			return resp["result"];
		};
		try {
			return cli.loop(vm, g, call);
		} catch (const sluice::error &e) {
			std::fprintf(stderr, "sluicectl: %s\n", e.what());
			return exit_usage;
		}
	}

	json req{{"verb", cmd->api_name()}, {"args", cli.request(vm)}};
	std::string line;
	try {
		// Arguments are bytes from the command line: never let one that is
		// not UTF-8 throw here (sluiced refuses it as what it is).
		line = sluice::api_call(g.socket, req.dump(-1, ' ', false, json::error_handler_t::replace),
					std::chrono::milliseconds(g.timeout_ms));
	} catch (const sluice::error &e) {
		std::fprintf(stderr, "sluicectl: %s\n", e.what());
		return exit_usage;
	}
	json resp = json::parse(line, nullptr, false);
	if (resp.is_discarded() || !resp.is_object()) {
		std::fprintf(stderr, "sluicectl: sluiced sent a malformed answer\n");
		return exit_usage;
	}
	if (!resp.value("ok", false)) {
		std::fprintf(stderr, "sluicectl: %s\n", resp.value("error", std::string("refused")).c_str());
		return exit_refused;
	}
	const json &result = resp["result"];
	if (g.json_out)
		std::puts(result.dump(2).c_str());
	else if (cli.print)
		cli.print(result);
	else
		std::printf("ok (generation %s)\n", num(result.value("generation", json(0))).c_str());
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	try {
		return run(argc, argv);
	} catch (const usage_error &e) {
		std::fprintf(stderr, "sluicectl: %s (see --help)\n", e.what());
	} catch (const po::error &e) {
		std::fprintf(stderr, "sluicectl: %s (see --help)\n", e.what());
	} catch (const failure &e) {
		std::fprintf(stderr, "sluicectl: %s\n", e.what());
		return exit_refused;
	} catch (const refused &e) {
		std::fprintf(stderr, "sluicectl: %s\n", e.what());
		return exit_refused;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluicectl: %s\n", e.what());
	}
	return exit_usage;
}
