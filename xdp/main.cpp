// SPDX-License-Identifier: Apache-2.0
// sluice-xdp: loads the XDP program (sluice.bpf.c), attaches it, and keeps
// its maps in step with the snapshots sluiced publishes (forward.cpp); or
// detaches it and removes its pins, or only detaches it (unpin.cpp); or
// prints what its maps hold (show.cpp); or runs a capture through it
// (pcap_replay.cpp). The
// backend-side decap is its own program, sluice-decap; `sluice-xdp --decap`
// still runs it, with sluice-decap's options.
#include "decap_run.h"
#include "libbpf_log.h"
#include "log_level.h"
#include "modes.h"
#include "show.h"
#include "sys.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <iostream>
#include <vector>

namespace sluice::xdp {

volatile std::sig_atomic_t stop_signal = 0;

namespace {

void on_signal(int sig) { stop_signal = sig; }

// `sluice-xdp ... --decap ...`: argv without --decap, for sluice-decap's
// parser; nullopt when --decap is not there.
std::optional<std::vector<char *>> decap_argv(int argc, char **argv)
{
	std::vector<char *> rest;
	bool decap = false;
	for (int i = 0; i < argc; i++) {
		if (i > 0 && std::strcmp(argv[i], "--decap") == 0)
			decap = true;
		else
			rest.push_back(argv[i]);
	}
	if (!decap)
		return std::nullopt;
	rest.push_back(nullptr);
	return rest;
}

} // namespace

} // namespace sluice::xdp

using namespace sluice;
using namespace sluice::xdp;

int main(int argc, char **argv)
{
	if (auto rest = decap_argv(argc, argv))
		return decap_main((int)rest->size() - 1, rest->data(), "sluice-xdp --decap");

	// Logs on stderr: stdout carries --pcap's counters (and --json).
	spdlog::set_default_logger(spdlog::stderr_color_mt("sluice-xdp"));
	spdlog::set_pattern("sluice-xdp: %^%l%$: %v");
	options o;
	try {
		if (!parse_options(argc, argv, o))
			return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluice-xdp: %s (see --help)\n", e.what());
		return 2;
	}
	spdlog::set_level(log_level_from_name(o.log_level));
	set_libbpf_verbose(o.verbose);
	on_stop_signals(on_signal);
	try {
		if (!o.pcap.empty())
			return run_pcap(o);
		if (o.unpin)
			return run_unpin(o);
		if (o.detach)
			return run_detach(o);
		if (o.show || o.show_ct) {
			std::cout << show(o.iface, o.show_ct).dump() << "\n";
			return 0;
		}
		return run_forwarder(o);
	} catch (const std::exception &e) {
		spdlog::error("{}", e.what());
		return 1;
	}
}
