// SPDX-License-Identifier: Apache-2.0
#include "options.h"

#include "command_line.h"
#include "ct_options.h"
#include "error.h"
#include "log_level.h"
#include "program.h"

#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <vector>

namespace po = boost::program_options;

namespace sluice::xdp {

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

bool parse_options(int argc, char **argv, options &o)
{
	std::string mode, mac = "02:00:00:00:00:01";
	po::options_description desc(
		"Usage: sluice-xdp --iface IF [options]          forward VIP traffic on IF\n"
		"       sluice-xdp --iface IF --unpin [--pin-dir DIR]  detach and remove the pinned maps\n"
		"       sluice-xdp --iface IF --detach                 detach, keep the pinned maps\n"
		"       sluice-xdp --iface IF --show [--show-ct]       the attached program's maps as JSON\n"
		"       sluice-xdp --pcap IN.pcap:OUT.pcap [options]  run a capture through the program\n"
		"       sluice-xdp --decap --iface IF [...]           the same as sluice-decap (on a backend)\n\n"
		"The XDP dataplane: the same decisions as sluice-dpdk, in an XDP program whose maps\n"
		"mirror the snapshots sluiced publishes in shared memory.\n\nOptions");
	desc.add_options()
		("help,h", "show this help")
		("version", "print the version and exit")
		("iface", po::value(&o.iface), "interface to attach to")
		("shm", po::value(&o.shm_name)->default_value(o.shm_name), "shared-memory segment of sluiced (/dev/shm/NAME)")
		("mode", po::value(&mode), "native or generic (default: native, generic if the driver refuses)")
		("pin-dir", po::value(&o.pin_dir), "bpffs directory of the pinned connection table (default /sys/fs/bpf/sluice/IF)")
		("unpin", po::bool_switch(&o.unpin), "detach sluice's program from IF, remove the pinned maps, exit")
		("detach", po::bool_switch(&o.detach), "detach sluice's program from IF (after a --keep-attached stop), keep the pinned maps, exit")
		("keep-attached", po::bool_switch(&o.keep_attached), "on SIGTERM/SIGINT leave the program attached and forwarding by its last snapshot, for the next sluice-xdp to replace in place (a restart loses no packet)")
		("replace-pinned", po::bool_switch(&o.replace_pinned), "start on new maps when the pinned ones have another layout (their flows are lost) instead of refusing to start")
		("show", po::bool_switch(&o.show), "print what the program on IF forwards with (from its maps) as JSON, exit")
		("show-ct", po::bool_switch(&o.show_ct), "with --show: count the connection tables' entries per backend too")
		("pcap", po::value(&o.pcap), "IN.pcap:OUT.pcap: run IN through the program once, in order; XDP_TX to OUT, XDP_PASS to OUT.exception.pcap; print the counters and exit")
		("mac", po::value(&mac)->default_value(mac), "with --pcap: the port's MAC")
		("mtu", po::value(&o.mtu)->default_value(o.mtu), "with --pcap: the port's MTU")
		("json", po::bool_switch(&o.json), "with --pcap: print counters and per-packet verdicts as JSON")
		("ring-entries", po::value(&o.ring_entries)->default_value(o.ring_entries), "Maglev entries the maps hold, over all VIPs")
		("wait-shm-ms", po::value(&o.wait_shm_ms)->default_value(o.wait_shm_ms), "wait this long for the segment (and, with --pcap, its first snapshot)")
		("verbose", po::bool_switch(&o.verbose), "print libbpf's messages (the verifier log on a refusal)")
		("log-level", po::value(&o.log_level)->default_value(o.log_level), "trace, debug, info, warn, error");
	add_ct_options(desc, o.ct_entries, o.ct_timeouts,
		       "connection-table entries per CPU (default 262144; 65536 with --pcap)");
	add_conn_sweep_option(desc, o.conn_sweep_s);
	// The decap program's options, on sluice-xdp without --decap: say where
	// they belong rather than "unrecognised option".
	std::vector<std::string> decap_only;
	po::options_description hidden;
	hidden.add_options()
		("gue-port", po::value<std::vector<std::string>>())
		("vip", po::value<std::vector<std::string>>())
		("from", po::value<std::vector<std::string>>());
	po::options_description all;
	all.add(desc).add(hidden);
	po::variables_map vm;
	if (!parse_command_line(argc, argv, all, desc, vm, "sluice-xdp"))
		return false;
	for (const char *flag : {"gue-port", "vip", "from"})
		if (vm.count(flag))
			throw error("--{} is for the backend-side decap: sluice-decap (or sluice-xdp --decap)", flag);
	o.mode = parse_attach_mode(mode);
	o.mac = parse_mac(mac);
	log_level_from_name(o.log_level);
	if (o.pcap.empty() && o.iface.empty())
		throw error("--iface is required (or --pcap IN:OUT)");
	if (!o.pcap.empty() && (o.unpin || o.detach))
		throw error("--pcap runs the forwarding program: not with --{}", o.unpin ? "unpin" : "detach");
	if (o.unpin && o.detach)
		throw error("--detach keeps the pinned maps, --unpin removes them (and detaches): give one");
	if (o.keep_attached && (!o.pcap.empty() || o.unpin || o.detach || o.show || o.show_ct))
		throw error("--keep-attached is for forwarding on --iface: not with --{}",
			    !o.pcap.empty() ? "pcap" : o.unpin ? "unpin" : o.detach ? "detach" : "show");
	check_ct_options(vm, o.ct_entries, o.pcap.empty() ? SLUICE_XDP_DEFAULT_CT_ENTRIES : (1u << 16));
	check_conn_sweep_option(o.conn_sweep_s);
	if (!o.pcap.empty() && !vm["conn-sweep-s"].defaulted())
		throw error("--conn-sweep-s: a --pcap replay counts no connections: drop it");
	if (o.pin_dir.empty() && !o.iface.empty())
		o.pin_dir = default_pin_dir(o.iface);
	return true;
}

} // namespace sluice::xdp
