// SPDX-License-Identifier: Apache-2.0
// sluice-dpdk: the kernel-bypass dataplane. Attaches to sluiced's segment,
// brings up EAL (eal.cpp) and the ports, runs one worker lcore per RX queue
// (runtime.cpp; lcore.cpp around worker.cpp's packet path) and keeps house
// on the main lcore (housekeeping.cpp) until SIGINT/SIGTERM, or with --pcap
// until the file has gone through; then prints this run's counters
// (report.cpp).
//
// Exit status: 0 done; 1 start-up failed (its one line printed) or a --pcap
// run did not finish; 2 usage error.
#include "eal.h"
#include "error.h"
#include "housekeeping.h"
#include "note.h"
#include "options.h"
#include "pcap.h"
#include "report.h"
#include "runtime.h"
#include "shm_segment.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sluice {
namespace {

std::atomic<int> signal_seen{0};

void on_signal(int sig)
{
	signal_seen.store(sig, std::memory_order_relaxed);
	stop_requested.store(true, std::memory_order_relaxed);
}

// Fails early with a clear line instead of EAL's "cannot attach device".
void check_writable(const std::string &path)
{
	FILE *f = std::fopen(path.c_str(), "wb");
	if (!f)
		throw error("--pcap output {}: {}", path, std::strerror(errno));
	std::fclose(f);
}

int run(const options &o)
{
	uint64_t expected = 0;
	if (o.mode == port_mode::pcap) {
		expected = count_capture_packets(o.pcap_in);
		check_writable(o.pcap_out);
		check_writable(o.pcap_exception_out);
	}
	shm_segment segment = shm_segment::attach_wait(o.shm_name, std::chrono::milliseconds(o.wait_shm_ms));

	runtime rt;
	start_eal(o);
	rt.eal = true;
	on_stop_signals(on_signal);
	rt.lcores = worker_lcores(o);
	options eff = o;
	eff.workers = static_cast<uint32_t>(rt.lcores.size());

	const data_port data = bring_up_ports(eff, rt);
	create_workers(eff, data, segment, rt);
	if (o.mode == port_mode::pcap)
		wait_first_snapshot(o, rt);
	else
		rt.keeper->poll(); // what sluiced has published already, from the first packet on
	launch_workers(data, rt);

	const pcap_progress end = keep_house(o, rt, expected);
	const int sig = signal_seen.load();
	if (sig)
		note("signal {}: stopping", sig);
	rt.join_workers();
	const run_counters total = sum_run_counters(rt);
	rt.close();
	print_run_counters(total);

	if (o.mode == port_mode::pcap) {
		if (end.stalled)
			throw error("{} of the input's {} packets went through, then nothing for 10 s: "
				    "output incomplete",
				    end.done, expected);
		if (sig)
			throw error("interrupted after {} of the input's {} packets: output incomplete",
				    end.done, expected);
	}
	return 0;
}

} // namespace
} // namespace sluice

int main(int argc, char **argv)
{
	sluice::options o;
	try {
		o = sluice::parse_options(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluice-dpdk: %s (see --help)\n", e.what());
		return 2;
	}
	try {
		return sluice::run(o);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluice-dpdk: %s\n", e.what());
		return 1;
	}
}
