// SPDX-License-Identifier: Apache-2.0
#include "options.h"

#include "ct_options.h"
#include "command_line.h"
#include "error.h"

#include <sluice/shm.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>

namespace po = boost::program_options;

namespace sluice {

namespace {

// Room -m must give besides the per-worker pools and tables: EAL's own
// structures, descriptor rings, mempool caches, the PMDs' queues. Measured
// with net_pcap and net_af_packet: ~40 MiB; doubled, then rounded.
constexpr uint64_t eal_base_mib = 128;
// A worker's share besides its pool and table: descriptor rings, the PMD's
// per-queue state, its lcore's mempool caches. Measured with net_af_packet
// at 64 workers: 4 MiB each fails at the 47th table, 6 starts; 8 for margin.
constexpr uint64_t queue_mib = 8;
// An mbuf besides its data room: struct rte_mbuf (128) and the mempool's
// object header (64).
constexpr uint64_t mbuf_overhead = 192;
// The largest mbuf data room an mbuf pool takes (uint16_t).
constexpr uint32_t max_mbuf_size = 65535;

uint64_t mib_ceil(uint64_t bytes) { return (bytes + (1u << 20) - 1) >> 20; }

// A worker's mbuf pool: its mbufs, and 5 MiB for its ring, caches and
// header (24 MiB for the default 8191 mbufs of 2176 bytes, as measured).
uint64_t pool_mib(const options &o)
{
	const uint64_t size = o.mbuf_size ? o.mbuf_size : 2176;
	return mib_ceil((o.mbufs ? o.mbufs : default_mbufs) * (size + mbuf_overhead)) + 5;
}

// `--vdev` arguments are comma-separated key=value lists: a comma in a path
// would silently cut it.
void check_devarg_path(const char *what, const std::string &path)
{
	if (path.empty())
		throw error("{}: empty path", what);
	if (path.find_first_of(",") != std::string::npos)
		throw error("{} '{}': a path with ',' cannot be passed to the pcap driver", what, path);
}

std::string exception_path(const std::string &out)
{
	const std::string ext = ".pcap";
	if (out.size() > ext.size() && out.compare(out.size() - ext.size(), ext.size(), ext) == 0)
		return out.substr(0, out.size() - ext.size()) + ".exception.pcap";
	return out + ".exception.pcap";
}

// The CPUs this process may run on (taskset, cgroups), in order.
std::vector<int> allowed_cpus()
{
	cpu_set_t set;
	CPU_ZERO(&set);
	std::vector<int> cpus;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				cpus.push_back(c);
	}
	if (cpus.empty())
		cpus.push_back(0);
	return cpus;
}

// Lcore 0 is the main (housekeeping) lcore, 1..workers the workers.
// `-l 0-N` when CPUs 0..N are ours; otherwise lcores mapped onto the CPUs
// we have, sharing them when there are fewer than lcores (a test box with
// 2 CPUs and 2 workers: slower, but it runs).
std::vector<std::string> lcore_arguments(uint32_t workers)
{
	const std::vector<int> cpus = allowed_cpus();
	bool contiguous = cpus.size() >= workers + 1;
	for (uint32_t i = 0; contiguous && i <= workers; i++)
		contiguous = cpus[i] == static_cast<int>(i);
	if (contiguous)
		return {"-l", fmt::format("0-{}", workers)};
	std::string map;
	for (uint32_t i = 0; i <= workers; i++)
		map += fmt::format("{}{}@{}", i ? "," : "", i, cpus[i % cpus.size()]);
	return {"--lcores", map};
}

} // namespace

options parse_options(int argc, char **argv)
{
	options o;
	// Everything after the first `--` is EAL's.
	int ours = argc;
	for (int i = 1; i < argc; i++) {
		if (std::strcmp(argv[i], "--") == 0) {
			ours = i;
			break;
		}
	}
	for (int i = ours + 1; i < argc; i++)
		o.eal_user.emplace_back(argv[i]);

	std::string pcap;
	po::options_description desc(
		"Usage: sluice-dpdk [options] [-- EAL arguments]\n\n"
		"The DPDK dataplane: forwards VIP traffic to backends by the snapshots sluiced\n"
		"publishes in shared memory. --pcap and --iface run without hugepages or PCI;\n"
		"with EAL arguments (e.g. `-- -a 0000:3b:00.0 -l 2-9`) it drives the first\n"
		"port and hands kernel-bound traffic to a TAP (--tap).\n\nOptions");
	desc.add_options()
		("help,h", "show this help")
		("version", "print the version and exit")
		("shm", po::value(&o.shm_name)->default_value(o.shm_name), "shared-memory segment of sluiced (/dev/shm/NAME)")
		("pcap", po::value(&pcap), "IN.pcap:OUT.pcap: forward IN once, in order, to OUT; kernel-bound packets to OUT.exception.pcap; print the counters and exit")
		("iface", po::value(&o.iface), "IFNAME: run on a kernel interface through af_packet (the kernel keeps seeing every frame)")
		("tap", po::value(&o.tap_name)->default_value(o.tap_name), "with EAL arguments: name of the TAP interface that gets kernel-bound traffic")
		("workers", po::value(&o.workers), "worker lcores, one RX/TX queue each (default: 1 with --pcap/--iface, else every worker lcore EAL gives)")
		("wait-shm-ms", po::value(&o.wait_shm_ms)->default_value(o.wait_shm_ms), "wait this long for the segment (and, with --pcap, its first snapshot)")
		("tx-port", po::value(&o.tx_port), "with EAL arguments: transmit forwarded traffic on this ethdev (e.g. net_null0) instead of the data port, which then only receives (benchmarks: a net_pcap source, a net_null sink)")
		("mbufs", po::value(&o.mbufs), "mbufs in each worker's pool (default 8191; a net_pcap infinite_rx source keeps its whole file in it)")
		("mbuf-size", po::value(&o.mbuf_size), "mbuf data room in bytes, headroom included (default 2176)")
		("stats-period", po::value(&o.stats_period_s), "every N seconds print `stats elapsed_s=... rx_packets=... tx_packets=...` for this run");

	add_ct_options(desc, o.ct_entries, o.ct_timeouts,
		       "connection-table entries per worker (default 1048576; 65536 with --pcap/--iface)");
	desc.add_options()
		("ct-dir", po::value(&o.ct_dir), "DIR: keep each worker's connection table in a file here, so a restart goes on with every flow (default: a hugetlbfs mount with free pages, else /dev/shm; with --pcap: not kept unless given)")
		("ct-fresh", "start with empty connection tables, throwing away the kept ones")
		("no-ct-persist", "keep the connection tables in process memory only: a restart starts empty");
	po::variables_map vm;
	if (!parse_command_line(ours, argv, desc, vm, "sluice-dpdk"))
		std::exit(0);

	if (vm.count("pcap") && vm.count("iface"))
		throw error("--pcap and --iface exclude each other");
	if (vm.count("pcap")) {
		o.mode = port_mode::pcap;
		auto colon = pcap.rfind(':');
		if (colon == std::string::npos)
			throw error("--pcap '{}': expected IN.pcap:OUT.pcap", pcap);
		o.pcap_in = pcap.substr(0, colon);
		o.pcap_out = pcap.substr(colon + 1);
		check_devarg_path("--pcap input", o.pcap_in);
		check_devarg_path("--pcap output", o.pcap_out);
		o.pcap_exception_out = exception_path(o.pcap_out);
		if (o.pcap_out == o.pcap_in)
			throw error("--pcap '{}': the output would overwrite the input", pcap);
		if (o.workers > 1)
			throw error("--pcap runs one worker (the file is forwarded in order): drop --workers {}",
				    o.workers);
	} else if (vm.count("iface")) {
		o.mode = port_mode::iface;
		if (o.iface.empty() || o.iface.find_first_of(",= ") != std::string::npos)
			throw error("--iface '{}': not an interface name", o.iface);
		if (if_nametoindex(o.iface.c_str()) == 0)
			throw error("--iface {}: no such interface in this network namespace", o.iface);
	}
	if (vm.count("workers") && (o.workers == 0 || o.workers > SLUICE_MAX_WORKERS))
		throw error("--workers {}: give 1 to {}", o.workers, SLUICE_MAX_WORKERS);
	if (o.mode != port_mode::eal && o.workers == 0)
		o.workers = 1;
	if (vm.count("tx-port") && (o.mode != port_mode::eal || o.tx_port.empty()))
		throw error("--tx-port needs EAL arguments (not --pcap or --iface) and an ethdev name");
	if (vm.count("mbufs") && o.mbufs < 1024)
		throw error("--mbufs {}: give at least 1024 (an RX ring's worth)", o.mbufs);
	if (vm.count("mbuf-size") && (o.mbuf_size < 256 || o.mbuf_size > max_mbuf_size))
		throw error("--mbuf-size {}: give 256 to {}", o.mbuf_size, max_mbuf_size);
	if (vm.count("stats-period") && o.stats_period_s == 0)
		throw error("--stats-period 0: give a period in seconds");
	check_ct_options(vm, o.ct_entries, o.mode == port_mode::eal ? default_ct_entries : default_ct_entries_shortcut);
	o.ct_fresh = vm.count("ct-fresh") > 0;
	o.ct_persist = vm.count("no-ct-persist") == 0 && (o.mode != port_mode::pcap || vm.count("ct-dir"));
	if (vm.count("no-ct-persist") && (vm.count("ct-dir") || o.ct_fresh))
		throw error("--no-ct-persist keeps no tables: drop --ct-dir and --ct-fresh");
	if (vm.count("ct-dir")) {
		struct stat st;
		if (o.ct_dir.empty() || stat(o.ct_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
			throw error("--ct-dir '{}': not a directory", o.ct_dir);
	}
	if (o.mode == port_mode::eal &&
	    (o.tap_name.empty() || o.tap_name.size() >= IFNAMSIZ ||
	     o.tap_name.find_first_of(",= /") != std::string::npos))
		throw error("--tap '{}': not an interface name", o.tap_name);
	return o;
}

std::vector<std::string> eal_arguments(const options &o)
{
	std::vector<std::string> a{"sluice-dpdk"};
	if (o.mode != port_mode::eal) {
		// Kept tables are files of their own, outside EAL's memory.
		const uint64_t ct_mib = o.ct_persist ? 0 : mib_ceil(sluice_ct_table_bytes(o.ct_entries)) + 1;
		uint64_t mem = eal_base_mib + o.workers * (pool_mib(o) + ct_mib + queue_mib);
		mem = (mem + 63) / 64 * 64;
		a.insert(a.end(), {"--no-huge", "--no-pci", "--no-shconf", "-m", std::to_string(mem),
				   "--file-prefix", fmt::format("sluice-{}", getpid())});
		auto l = lcore_arguments(o.workers);
		a.insert(a.end(), l.begin(), l.end());
		if (o.mode == port_mode::pcap) {
			a.push_back("--vdev");
			a.push_back(fmt::format("net_pcap0,rx_pcap={},tx_pcap={}", o.pcap_in, o.pcap_out));
			a.push_back("--vdev");
			a.push_back(fmt::format("net_pcap1,tx_pcap={}", o.pcap_exception_out));
		} else {
			a.push_back("--vdev");
			a.push_back(fmt::format("net_af_packet0,iface={},qpairs={}", o.iface, o.workers));
		}
		a.insert(a.end(), o.eal_user.begin(), o.eal_user.end());
		return a;
	}
	a.insert(a.end(), o.eal_user.begin(), o.eal_user.end());
	bool has_tap = false;
	for (size_t i = 0; i < o.eal_user.size(); i++) {
		const std::string &s = o.eal_user[i];
		if ((s == "--vdev" && i + 1 < o.eal_user.size() &&
		     o.eal_user[i + 1].rfind("net_tap", 0) == 0) ||
		    s.rfind("--vdev=net_tap", 0) == 0)
			has_tap = true;
	}
	if (!has_tap) {
		a.push_back("--vdev");
		a.push_back(fmt::format("net_tap0,iface={}", o.tap_name));
	}
	return a;
}

std::string join_args(const std::vector<std::string> &args)
{
	std::string s;
	for (const auto &x : args) {
		if (!s.empty())
			s += ' ';
		s += x;
	}
	return s;
}

} // namespace sluice
