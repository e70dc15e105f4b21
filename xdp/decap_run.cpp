// SPDX-License-Identifier: Apache-2.0
#include "decap_run.h"

#include "attach.h"
#include "command_line.h"
#include "decap.h"
#include "decap_program.h"
#include "error.h"
#include "libbpf_log.h"
#include "log_level.h"
#include "sys.h"

#include "decap.skel.h"
#include "maps.h"

#include <sluice/flow.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <boost/program_options.hpp>
#include <ifaddrs.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

namespace po = boost::program_options;

namespace sluice::xdp {

namespace {

volatile std::sig_atomic_t stop_signal = 0;

void on_signal(int sig) { stop_signal = sig; }

// The host's addresses are read again this often, so an address added
// after start opens its tunnels without a restart.
constexpr auto self_refresh_interval = std::chrono::seconds(1);

struct decap_options {
	std::string iface;
	std::string mode;
	uint16_t gue_port = 6080;
	std::vector<std::string> vips;
	std::vector<std::string> from;
	bool verbose = false;
	std::string log_level = "info";
};

// Returns false when --help was printed.
bool parse(int argc, char **argv, const char *name, decap_options &o)
{
	po::options_description desc(fmt::format(
		"Usage: {} --iface IF [--gue-port P] [--vip ADDR]... [--from PREFIX]...\n\n"
		"On a backend: opens the tunnels sluice sends (IPIP, IPv6-in-IPv6, IPv4-in-IPv6\n"
		"and GUE) when they are addressed to this host, in an XDP program on IF, so the\n"
		"backend sees the client's packet and answers it directly. Runs until SIGINT or\n"
		"SIGTERM, then detaches and logs its counters.\n\nOptions",
		name));
	desc.add_options()
		("help,h", "show this help")
		("version", "print the version and exit")
		("iface", po::value(&o.iface), "interface the tunnels arrive on")
		("mode", po::value(&o.mode), "native or generic (default: native, generic if the driver refuses)")
		("gue-port", po::value(&o.gue_port)->default_value(o.gue_port), "UDP port of GUE (0: GUE is not opened)")
		("vip", po::value(&o.vips)->composing(), "open only tunnels to this inner destination (repeat)")
		("from", po::value(&o.from)->composing(), "open only tunnels from this source PREFIX, e.g. 10.0.0.0/24 (repeat; recommended: the load balancers' addresses); others are dropped and counted")
		("verbose", po::bool_switch(&o.verbose), "print libbpf's messages (the verifier log on a refusal)")
		("log-level", po::value(&o.log_level)->default_value(o.log_level), "trace, debug, info, warn, error");
	po::variables_map vm;
	if (!parse_command_line(argc, argv, desc, vm, name))
		return false;
	if (o.iface.empty())
		throw error("--iface is required");
	parse_attach_mode(o.mode);
	log_level_from_name(o.log_level);
	return true;
}

sluice_decap_addr parse_addr(const std::string &s)
{
	sluice_decap_addr a;
	std::memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, s.c_str(), a.addr) == 1)
		a.family = SLUICE_AF_INET;
	else if (inet_pton(AF_INET6, s.c_str(), a.addr) == 1)
		a.family = SLUICE_AF_INET6;
	else
		throw error("--vip '{}': not an IPv4 or IPv6 address", s);
	return a;
}

// --from PREFIX: ADDRESS/LEN (a bare address is the one host).
sluice_decap_prefix parse_prefix(const std::string &s)
{
	sluice_decap_prefix p;
	std::memset(&p, 0, sizeof(p));
	const size_t slash = s.find('/');
	const std::string addr = s.substr(0, slash);
	uint32_t max_len;
	if (inet_pton(AF_INET, addr.c_str(), p.addr) == 1) {
		p.family = SLUICE_AF_INET;
		max_len = 32;
	} else if (inet_pton(AF_INET6, addr.c_str(), p.addr) == 1) {
		p.family = SLUICE_AF_INET6;
		max_len = 128;
	} else {
		throw error("--from '{}': not an IPv4 or IPv6 prefix (ADDRESS/LENGTH)", s);
	}
	uint32_t len = max_len;
	if (slash != std::string::npos) {
		const std::string l = s.substr(slash + 1);
		if (l.empty() || l.size() > 3 || l.find_first_not_of("0123456789") != std::string::npos ||
		    std::stoul(l) > max_len)
			throw error("--from '{}': the prefix length must be 0-{}", s, max_len);
		len = (uint32_t)std::stoul(l);
	}
	p.prefixlen = 8 + len; // the family byte, then the address's first `len` bits
	return p;
}

// This host's addresses, every interface: the outer destinations a tunnel
// to this host carries.
std::vector<sluice_decap_addr> host_addresses()
{
	std::vector<sluice_decap_addr> out;
	ifaddrs *list = nullptr;
	if (getifaddrs(&list) != 0)
		throw error("listing this host's addresses: {}", errno_text(errno));
	for (ifaddrs *i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		sluice_decap_addr a;
		std::memset(&a, 0, sizeof(a));
		if (i->ifa_addr->sa_family == AF_INET) {
			std::memcpy(a.addr, &reinterpret_cast<sockaddr_in *>(i->ifa_addr)->sin_addr, 4);
			a.family = SLUICE_AF_INET;
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			std::memcpy(a.addr, &reinterpret_cast<sockaddr_in6 *>(i->ifa_addr)->sin6_addr, 16);
			a.family = SLUICE_AF_INET6;
		} else {
			continue;
		}
		out.push_back(a);
	}
	freeifaddrs(list);
	return out;
}

void refresh_self(int fd, std::vector<sluice_decap_addr> &held)
{
	std::vector<sluice_decap_addr> now = host_addresses();
	auto same = [](const sluice_decap_addr &a, const sluice_decap_addr &b) {
		return std::memcmp(&a, &b, sizeof(a)) == 0;
	};
	uint8_t one = 1;
	for (const auto &a : now)
		if (std::none_of(held.begin(), held.end(), [&](const auto &h) { return same(a, h); }) &&
		    bpf_map_update_elem(fd, &a, &one, BPF_ANY) != 0)
			throw error("sl_dc_self: update: {}", errno_text(errno));
	for (const auto &h : held)
		if (std::none_of(now.begin(), now.end(), [&](const auto &a) { return same(a, h); }))
			bpf_map_delete_elem(fd, &h);
	held = std::move(now);
}

sluice_decap_counters sum_counters(const decap_program &prog)
{
	const int ncpu = libbpf_num_possible_cpus();
	std::vector<sluice_decap_counters> per(ncpu > 0 ? ncpu : 1);
	uint32_t zero = 0;
	sluice_decap_counters sum{};
	if (bpf_map_lookup_elem(bpf_map__fd(prog.skel()->maps.sl_dc_cnt), &zero, per.data()) == 0)
		for (const auto &c : per) {
			sum.rx_packets += c.rx_packets;
			sum.decap_ipip += c.decap_ipip;
			sum.decap_gue += c.decap_gue;
			sum.pass_not_tunnel += c.pass_not_tunnel;
			sum.pass_not_local += c.pass_not_local;
			sum.pass_malformed += c.pass_malformed;
			sum.drop_foreign += c.drop_foreign;
		}
	return sum;
}

int run(const decap_options &o)
{
	query_iface(o.iface);
	std::vector<sluice_decap_addr> vips;
	for (const auto &v : o.vips)
		vips.push_back(parse_addr(v));
	std::vector<sluice_decap_prefix> from;
	for (const auto &f : o.from)
		from.push_back(parse_prefix(f));
	if (from.size() > SLUICE_DECAP_MAX_PREFIXES)
		throw error("--from: {} prefixes, at most {}", from.size(), SLUICE_DECAP_MAX_PREFIXES);
	decap_program prog = decap_program::load(o.gue_port, !vips.empty(), !from.empty());
	uint8_t one = 1;
	for (const auto &f : from)
		if (bpf_map_update_elem(bpf_map__fd(prog.skel()->maps.sl_dc_from), &f, &one, BPF_ANY) != 0)
			throw error("sl_dc_from: update: {}", errno_text(errno));
	for (const auto &v : vips)
		if (bpf_map_update_elem(bpf_map__fd(prog.skel()->maps.sl_dc_vips), &v, &one, BPF_ANY) != 0)
			throw error("sl_dc_vips: update: {}", errno_text(errno));
	const int self_fd = bpf_map__fd(prog.skel()->maps.sl_dc_self);
	std::vector<sluice_decap_addr> held;
	refresh_self(self_fd, held);

	attachment att = attachment::attach(o.iface, prog.prog_fd(), SLUICE_XDP_DECAP_PROG_NAME,
					    parse_attach_mode(o.mode));
	spdlog::info("{}: decap attached in {} mode: IPIP, IPv6-in-IPv6, IPv4-in-IPv6{} to this host{}{}",
		     o.iface, att.generic() ? "generic" : "native",
		     o.gue_port ? fmt::format(" and GUE on UDP port {}", o.gue_port) : std::string(),
		     vips.empty() ? "" : fmt::format(", inner destination one of {} --vip", vips.size()),
		     from.empty() ? ", from any source (see --from)"
				  : fmt::format(", outer source in one of {} --from", from.size()));
	auto next_refresh = std::chrono::steady_clock::now() + self_refresh_interval;
	while (!stop_signal) {
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
		if (std::chrono::steady_clock::now() >= next_refresh) {
			refresh_self(self_fd, held);
			next_refresh += self_refresh_interval;
		}
	}
	att.detach();
	const sluice_decap_counters sum = sum_counters(prog);
	spdlog::info("signal {}: detached from {}; rx_packets {} decap_ipip {} decap_gue {} "
		     "pass_not_tunnel {} pass_not_local {} pass_malformed {} drop_foreign {}",
		     (int)stop_signal, o.iface, sum.rx_packets, sum.decap_ipip, sum.decap_gue,
		     sum.pass_not_tunnel, sum.pass_not_local, sum.pass_malformed, sum.drop_foreign);
	return 0;
}

} // namespace

int decap_main(int argc, char **argv, const char *name)
{
	spdlog::set_default_logger(spdlog::stderr_color_mt(name));
	spdlog::set_pattern(fmt::format("{}: %^%l%$: %v", name));
	decap_options o;
	try {
		if (!parse(argc, argv, name, o))
			return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "%s: %s (see --help)\n", name, e.what());
		return 2;
	}
	spdlog::set_level(log_level_from_name(o.log_level));
	set_libbpf_verbose(o.verbose);
	on_stop_signals(on_signal);
	try {
		return run(o);
	} catch (const std::exception &e) {
		spdlog::error("{}", e.what());
		return 1;
	}
}

} // namespace sluice::xdp
