// SPDX-License-Identifier: Apache-2.0
// sluice-xdp: loads the XDP program (sluice.bpf.c), attaches it, and keeps
// its maps in step with the snapshots sluiced publishes; or, with --decap,
// the backend-side decap program; or, with --pcap, runs a capture through
// the program with BPF_PROG_TEST_RUN the way `sluice-dpdk --pcap` does.
#include "attach.h"
#include "decap.h"
#include "counter_names.h"
#include "ct_options.h"
#include "error.h"
#include "mirror.h"
#include "pcap.h"
#include "program.h"
#include "shm_segment.h"
#include "show.h"

#include "decap.skel.h"
#include "sluice.skel.h"

#include <sluice/flow.h>
#include <sluice/packet.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <boost/program_options.hpp>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <sched.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <thread>

namespace po = boost::program_options;
using namespace sluice;
using namespace sluice::xdp;

namespace {

volatile std::sig_atomic_t stop_signal = 0;

void on_signal(int sig) { stop_signal = sig; }

// Housekeeping cadence. The segment is polled every millisecond so that a
// snapshot is in the maps well within 10 ms of its publication (the switch
// itself is one store; filling a bank takes ~0.1 ms per 65,537-entry
// table). The heartbeat is far inside sluiced's worker timeout (1 s by
// default); counters reach the segment ten times a second, as the DPDK
// housekeeping lcore copies them.
constexpr auto poll_interval = std::chrono::milliseconds(1);
constexpr auto heartbeat_interval = std::chrono::milliseconds(10);
constexpr auto counters_interval = std::chrono::milliseconds(100);
constexpr auto self_refresh_interval = std::chrono::seconds(1);

struct options {
	std::string iface;
	std::string shm_name = "sluice";
	std::string mode;
	std::string pin_dir;
	bool unpin = false;
	bool show = false;
	bool show_ct = false;
	bool decap = false;
	uint16_t gue_port = 6080;
	std::vector<std::string> vips;
	std::vector<std::string> from;
	std::string pcap;
	std::string mac = "02:00:00:00:00:01";
	uint32_t mtu = 1500;
	bool json = false;
	uint32_t ct_entries = 0;
	uint32_t ring_entries = SLUICE_XDP_DEFAULT_RING_ENTRIES;
	sluice_ct_timeouts ct_timeouts = sluice_ct_default_timeouts();
	uint32_t wait_shm_ms = 10000;
	bool verbose = false;
	std::string log_level = "info";
};

options parse(int argc, char **argv)
{
	options o;
	po::options_description desc(
		"Usage: sluice-xdp --iface IF [options]          forward VIP traffic on IF\n"
		"       sluice-xdp --iface IF --unpin [--pin-dir DIR]  detach and remove the pinned maps\n"
		"       sluice-xdp --iface IF --show [--show-ct]       the attached program's maps as JSON\n"
		"       sluice-xdp --decap --iface IF [--gue-port P] [--vip ADDR]... [--from PREFIX]...  on a backend\n"
		"       sluice-xdp --pcap IN.pcap:OUT.pcap [options]  run a capture through the program\n\n"
		"The XDP dataplane: the same decisions as sluice-dpdk, in an XDP program whose maps\n"
		"mirror the snapshots sluiced publishes in shared memory.\n\nOptions");
	desc.add_options()
		("help,h", "show this help")
		("iface", po::value(&o.iface), "interface to attach to")
		("shm", po::value(&o.shm_name)->default_value(o.shm_name), "shared-memory segment of sluiced (/dev/shm/NAME)")
		("mode", po::value(&o.mode), "native or generic (default: native, generic if the driver refuses)")
		("pin-dir", po::value(&o.pin_dir), "bpffs directory of the pinned connection table (default /sys/fs/bpf/sluice/IF)")
		("unpin", po::bool_switch(&o.unpin), "detach sluice's program from IF, remove the pinned maps, exit")
		("show", po::bool_switch(&o.show), "print what the program on IF forwards with (from its maps) as JSON, exit")
		("show-ct", po::bool_switch(&o.show_ct), "with --show: count the connection tables' entries per backend too")
		("decap", po::bool_switch(&o.decap), "run the backend-side decap program instead")
		("gue-port", po::value(&o.gue_port)->default_value(o.gue_port), "with --decap: UDP port of GUE (0: none)")
		("vip", po::value(&o.vips)->composing(), "with --decap: open only tunnels to this inner destination (repeat)")
		("from", po::value(&o.from)->composing(), "with --decap: open only tunnels from this source PREFIX, e.g. 10.0.0.0/24 (repeat); others are dropped and counted")
		("pcap", po::value(&o.pcap), "IN.pcap:OUT.pcap: run IN through the program once, in order; XDP_TX to OUT, XDP_PASS to OUT.exception.pcap; print the counters and exit")
		("mac", po::value(&o.mac)->default_value(o.mac), "with --pcap: the port's MAC")
		("mtu", po::value(&o.mtu)->default_value(o.mtu), "with --pcap: the port's MTU")
		("json", po::bool_switch(&o.json), "with --pcap: print counters and per-packet verdicts as JSON")
		("ring-entries", po::value(&o.ring_entries)->default_value(o.ring_entries), "Maglev entries the maps hold, over all VIPs")
		("wait-shm-ms", po::value(&o.wait_shm_ms)->default_value(o.wait_shm_ms), "wait this long for the segment (and, with --pcap, its first snapshot)")
		("verbose", po::bool_switch(&o.verbose), "print libbpf's messages (the verifier log on a refusal)")
		("log-level", po::value(&o.log_level)->default_value(o.log_level), "trace, debug, info, warn, error");
	add_ct_options(desc, o.ct_entries, o.ct_timeouts,
		       "connection-table entries per CPU (default 262144; 65536 with --pcap)");
	po::variables_map vm;
	try {
		po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
		po::notify(vm);
	} catch (const po::error &e) {
		throw error("{} (see --help)", e.what());
	}
	if (vm.count("help")) {
		std::cout << desc << "\n";
		std::exit(0);
	}
	if (!o.mode.empty() && o.mode != "native" && o.mode != "generic")
		throw error("--mode '{}': native or generic", o.mode);
	if (o.pcap.empty() && o.iface.empty())
		throw error("--iface is required (or --pcap IN:OUT)");
	if (!o.pcap.empty() && (o.decap || o.unpin))
		throw error("--pcap runs the forwarding program: not with --decap or --unpin");
	if (o.decap && o.unpin)
		throw error("--unpin removes the forwarding program's pins: not with --decap");
	if (!o.from.empty() && !o.decap)
		throw error("--from is for --decap");
	if (!o.vips.empty() && !o.decap)
		throw error("--vip is for --decap");
	check_ct_options(vm, o.ct_entries, o.pcap.empty() ? SLUICE_XDP_DEFAULT_CT_ENTRIES : (1u << 16));
	if (o.pin_dir.empty() && !o.iface.empty())
		o.pin_dir = default_pin_dir(o.iface);
	return o;
}

std::array<uint8_t, 6> parse_mac(const std::string &s)
{
	std::array<uint8_t, 6> m{};
	unsigned b[6];
	char tail;
	if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
			&tail) != 6)
		throw error("--mac '{}': not a MAC address (aa:bb:cc:dd:ee:ff)", s);
	for (int i = 0; i < 6; i++) {
		if (b[i] > 0xFF)
			throw error("--mac '{}': not a MAC address (aa:bb:cc:dd:ee:ff)", s);
		m[i] = static_cast<uint8_t>(b[i]);
	}
	return m;
}

void housekeeping_sleep() { std::this_thread::sleep_for(poll_interval); }

// Mirrors whatever the segment has that the maps do not. Returns whether the
// maps hold a snapshot.
bool mirror_latest(worker_handle &h, mirror &m, uint64_t &refused)
{
	const sluice_snapshot *s = h.acquire();
	if (!s)
		return m.generation() != 0;
	const uint64_t gen = s->hdr.generation;
	if (gen == m.generation() || gen == refused)
		return m.generation() != 0;
	std::string why;
	if (m.apply(*s, &why)) {
		h.applied(gen, SLUICE_REFUSED_NONE);
		spdlog::debug("generation {} in the maps (bank {}), {} us after its publication; "
			      "grace period {} us",
			      gen, m.bank(), m.last_latency_ns() / 1000, m.last_grace_ns() / 1000);
	} else {
		// sluiced shows this worker stale, with the reason, until a
		// later generation fits.
		h.applied(m.generation(), m.refusal());
		spdlog::error("{}: still forwarding by generation {}", why, m.generation());
		refused = gen;
	}
	return m.generation() != 0;
}

attach_mode mode_of(const options &o)
{
	if (o.mode == "native")
		return attach_mode::native;
	if (o.mode == "generic")
		return attach_mode::generic;
	return attach_mode::automatic;
}

int run_forwarder(const options &o)
{
	const iface_info ii = query_iface(o.iface);
	shm_segment seg = shm_segment::attach_wait(o.shm_name, std::chrono::milliseconds(o.wait_shm_ms));

	program_settings ps;
	ps.port_mac = ii.mac;
	ps.port_mtu = ii.mtu;
	ps.ct_entries = o.ct_entries;
	ps.ring_entries = o.ring_entries;
	ps.ct_timeouts = o.ct_timeouts;
	ps.pin_dir = o.pin_dir;
	program prog = program::load(ps);
	spdlog::info("{}: program loaded; connection table {} ({} entries per CPU x {} CPUs){}",
		     o.iface, prog.ct_pin_path(), (uint64_t)prog.ct_buckets() * SLUICE_CT_WAYS, prog.cpus(),
		     prog.ct_reused() ? ", reused with its flows" : "");
	mirror m(prog);

	worker_handle h = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_XDP, 0, "xdp " + o.iface);
	h.report_applied_separately();
	counter_copier counters(prog, h.record());

	// The program goes on the interface only once it has a snapshot: before
	// that it would drop every IP packet (drop_no_snapshot, as the DPDK
	// worker), SSH to the box included.
	uint64_t refused = 0;
	bool said_waiting = false;
	auto next_heartbeat = std::chrono::steady_clock::now();
	while (!stop_signal && !mirror_latest(h, m, refused)) {
		if (!said_waiting) {
			spdlog::info("waiting for sluiced's first snapshot on /dev/shm/{}", seg.name());
			said_waiting = true;
		}
		if (std::chrono::steady_clock::now() >= next_heartbeat) {
			h.heartbeat();
			next_heartbeat += heartbeat_interval;
		}
		housekeeping_sleep();
	}
	if (stop_signal) {
		h.release();
		return 0;
	}

	attachment att = attachment::attach(o.iface, prog.prog_fd(), SLUICE_XDP_PROG_NAME, mode_of(o));
	spdlog::info("{}: attached in {} mode, forwarding by generation {} (MTU {}, MAC "
		     "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
		     o.iface, att.generic() ? "generic" : "native", m.generation(), ii.mtu, ii.mac[0],
		     ii.mac[1], ii.mac[2], ii.mac[3], ii.mac[4], ii.mac[5]);

	auto next_counters = std::chrono::steady_clock::now();
	while (!stop_signal) {
		mirror_latest(h, m, refused);
		const auto now = std::chrono::steady_clock::now();
		if (now >= next_heartbeat) {
			h.heartbeat();
			next_heartbeat = now + heartbeat_interval;
		}
		if (now >= next_counters) {
			counters.copy();
			next_counters = now + counters_interval;
		}
		housekeeping_sleep();
	}
	spdlog::info("signal {}: detaching from {}; the connection table stays pinned at {} "
		     "(`sluice-xdp --iface {} --unpin` removes it)",
		     (int)stop_signal, o.iface, prog.ct_pin_path(), o.iface);
	att.detach();
	counters.copy();
	h.release();
	return 0;
}

int run_unpin(const options &o)
{
	if (detach_named(o.iface, SLUICE_XDP_PROG_NAME))
		spdlog::info("{}: detached sluice's XDP program", o.iface);
	unpin(o.pin_dir);
	spdlog::info("removed the pins under {}", o.pin_dir);
	return 0;
}

// ----------------------------------------------------------------- --pcap

const char *verdict_name(uint32_t v)
{
	switch (v) {
	case XDP_TX:
		return "tx";
	case XDP_PASS:
		return "pass";
	case XDP_DROP:
		return "drop";
	case XDP_ABORTED:
		return "aborted";
	}
	return "other";
}

std::string exception_path(const std::string &out)
{
	const std::string ext = ".pcap";
	if (out.size() > ext.size() && out.compare(out.size() - ext.size(), ext.size(), ext) == 0)
		return out.substr(0, out.size() - ext.size()) + ".exception.pcap";
	return out + ".exception.pcap";
}

int run_pcap(const options &o)
{
	auto colon = o.pcap.find(':');
	if (colon == std::string::npos || colon == 0 || colon + 1 == o.pcap.size())
		throw error("--pcap '{}': IN.pcap:OUT.pcap", o.pcap);
	const std::string in = o.pcap.substr(0, colon);
	const std::string out = o.pcap.substr(colon + 1);
	bool ns = false;
	const std::vector<pcap_packet> pkts = read_pcap(in, &ns);

	// The connection table is per CPU: run every packet on this one, as
	// one DPDK worker sees a whole capture.
	int cpu = sched_getcpu();
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu < 0 ? 0 : cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		throw error("pinning to CPU {}: {}", cpu, std::strerror(errno));

	shm_segment seg = shm_segment::attach_wait(o.shm_name, std::chrono::milliseconds(o.wait_shm_ms));
	program_settings ps;
	ps.port_mac = parse_mac(o.mac);
	ps.port_mtu = o.mtu;
	ps.ct_entries = o.ct_entries;
	ps.ring_entries = o.ring_entries;
	ps.ct_timeouts = o.ct_timeouts;
	ps.replay = true;
	program prog = program::load(ps);
	mirror m(prog);
	worker_handle h = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_XDP, 0, "xdp pcap");
	h.report_applied_separately();
	counter_copier counters(prog, h.record());

	uint64_t refused = 0;
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.wait_shm_ms);
	while (!mirror_latest(h, m, refused)) {
		if (std::chrono::steady_clock::now() >= deadline)
			throw error("no usable snapshot on /dev/shm/{} within {} ms: is sluiced running with "
				    "--shm {}?",
				    seg.name(), o.wait_shm_ms, seg.name());
		h.heartbeat();
		housekeeping_sleep();
	}

	pcap_writer tx(out, ns);
	pcap_writer kernel(exception_path(out), ns);
	std::vector<std::string> verdicts;
	std::vector<uint8_t> buf(8192);
	uint64_t runts = 0, runt_bytes = 0;
	for (const pcap_packet &p : pkts) {
		if (p.data.size() < sizeof(sluice_eth_hdr)) {
			// No driver hands XDP a frame shorter than its Ethernet
			// header, and BPF_PROG_TEST_RUN refuses one: count it as the
			// program's parse would (drop_truncated) without running it.
			verdicts.push_back("drop");
			runts++;
			runt_bytes += p.data.size();
			continue;
		}
		LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = p.data.data(), .data_out = buf.data(),
			    .data_size_in = (uint32_t)p.data.size(),
			    .data_size_out = (uint32_t)buf.size(), .repeat = 1);
		int err = bpf_prog_test_run_opts(prog.prog_fd(), &run);
		if (err)
			throw error("BPF_PROG_TEST_RUN of packet {} ({} bytes): {}", verdicts.size() + 1,
				    p.data.size(), std::strerror(-err));
		verdicts.push_back(verdict_name(run.retval));
		if (run.retval == XDP_TX)
			tx.write(p, buf.data(), run.data_size_out);
		else if (run.retval == XDP_PASS)
			kernel.write(p, buf.data(), run.data_size_out);
		h.heartbeat();
	}
	tx.close();
	kernel.close();
	counters.add(SLUICE_CNT_rx_packets, runts);
	counters.add(SLUICE_CNT_rx_bytes, runt_bytes);
	counters.add(SLUICE_CNT_drop_truncated, runts);
	counters.copy();
	totals t;
	counter_reader(prog).sum(t);
	t.counters[SLUICE_CNT_rx_packets] += runts;
	t.counters[SLUICE_CNT_rx_bytes] += runt_bytes;
	t.counters[SLUICE_CNT_drop_truncated] += runts;
	h.release();

	if (o.json) {
		// Names and numbers only: no escaping needed.
		std::string j = fmt::format("{{\"generation\":{},\"counters\":{{", m.generation());
		for (uint32_t i = 0; i < SLUICE_CNT__COUNT; i++)
			j += fmt::format("{}\"{}\":{}", i ? "," : "", counter_table[i].name, t.counters[i]);
		j += "},\"verdicts\":[";
		for (size_t i = 0; i < verdicts.size(); i++)
			j += fmt::format("{}\"{}\"", i ? "," : "", verdicts[i]);
		std::cout << j << "]}\n";
	} else {
		for (uint32_t i = 0; i < SLUICE_CNT__COUNT; i++)
			if (t.counters[i])
				std::cout << counter_table[i].name << " " << t.counters[i] << "\n";
	}
	return 0;
}

// ---------------------------------------------------------------- --decap

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

// This host's addresses, every interface: the outer destinations a tunnel
// to this host carries.
std::vector<sluice_decap_addr> host_addresses()
{
	std::vector<sluice_decap_addr> out;
	ifaddrs *list = nullptr;
	if (getifaddrs(&list) != 0)
		throw error("listing this host's addresses: {}", std::strerror(errno));
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
			throw error("sl_dc_self: update: {}", std::strerror(errno));
	for (const auto &h : held)
		if (std::none_of(now.begin(), now.end(), [&](const auto &a) { return same(a, h); }))
			bpf_map_delete_elem(fd, &h);
	held = std::move(now);
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

int run_decap(const options &o)
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
			throw error("sl_dc_from: update: {}", std::strerror(errno));
	for (const auto &v : vips)
		if (bpf_map_update_elem(bpf_map__fd(prog.skel()->maps.sl_dc_vips), &v, &one, BPF_ANY) != 0)
			throw error("sl_dc_vips: update: {}", std::strerror(errno));
	const int self_fd = bpf_map__fd(prog.skel()->maps.sl_dc_self);
	std::vector<sluice_decap_addr> held;
	refresh_self(self_fd, held);

	attachment att =
		attachment::attach(o.iface, prog.prog_fd(), SLUICE_XDP_DECAP_PROG_NAME, mode_of(o));
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
	// The counters, summed over CPUs, for the operator's log.
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
	spdlog::info("signal {}: detached from {}; rx_packets {} decap_ipip {} decap_gue {} "
		     "pass_not_tunnel {} pass_not_local {} pass_malformed {} drop_foreign {}",
		     (int)stop_signal, o.iface, sum.rx_packets, sum.decap_ipip, sum.decap_gue,
		     sum.pass_not_tunnel, sum.pass_not_local, sum.pass_malformed, sum.drop_foreign);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	// Logs on stderr: stdout carries --pcap's counters (and --json).
	spdlog::set_default_logger(spdlog::stderr_color_mt("sluice-xdp"));
	spdlog::set_pattern("sluice-xdp: %^%l%$: %v");
	options o;
	try {
		o = parse(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluice-xdp: %s\n", e.what());
		return 2;
	}
	spdlog::set_level(spdlog::level::from_str(o.log_level));
	set_libbpf_verbose(o.verbose);
	on_stop_signals(on_signal);
	try {
		if (!o.pcap.empty())
			return run_pcap(o);
		if (o.unpin)
			return run_unpin(o);
		if (o.show || o.show_ct) {
			std::cout << show(o.iface, o.show_ct).dump() << "\n";
			return 0;
		}
		if (o.decap)
			return run_decap(o);
		return run_forwarder(o);
	} catch (const std::exception &e) {
		spdlog::error("{}", e.what());
		return 1;
	}
}
