// SPDX-License-Identifier: Apache-2.0
// sluice-dpdk: the kernel-bypass dataplane. Attaches to sluiced's segment,
// brings up EAL and the ports, runs one worker lcore per RX queue
// (lcore.cpp around worker.cpp's packet path) and keeps house on the main
// lcore until SIGINT/SIGTERM, or with --pcap until the file has gone through.
//
// Exit status: 0 done; 1 start-up failed (its one line printed) or a --pcap
// run did not finish; 2 usage error.
#include "error.h"
#include "lcore.h"
#include "counter_names.h"
#include "options.h"
#include "pcap.h"
#include "ports.h"
#include "shm_segment.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include <unistd.h>
#include <vector>

namespace sluice {
namespace {

std::atomic<int> signal_seen{0};

void on_signal(int sig)
{
	signal_seen.store(sig, std::memory_order_relaxed);
	stop_requested.store(true, std::memory_order_relaxed);
}

template <typename... Args>
void note(fmt::format_string<Args...> f, Args &&...args)
{
	std::fprintf(stderr, "sluice-dpdk: %s\n", fmt::format(f, std::forward<Args>(args)...).c_str());
}

// Everything started after EAL, torn down in reverse whichever way run()
// leaves: workers joined, records released, ports stopped and closed (the
// pcap files flushed, the TAP removed), memory freed, EAL cleaned up.
struct runtime {
	bool eal = false;
	bool launched = false;
	port_layout ports;
	std::vector<std::unique_ptr<worker_lcore>> workers;
	std::vector<rte_mempool *> pools;
	std::vector<rte_ring *> rings;
	std::unique_ptr<exception_relay> relay; // with a TAP

	~runtime()
	{
		stop_requested.store(true);
		if (launched)
			rte_eal_mp_wait_lcore();
		for (auto &w : workers)
			w->handle.release();
		relay.reset();
		close_port(ports.data);
		close_port(ports.exception);
		close_port(ports.tx);
		for (rte_ring *r : rings)
			rte_ring_free(r);
		for (auto &w : workers)
			rte_free(w->state.ct);
		for (rte_mempool *mp : pools)
			rte_mempool_free(mp);
		if (eal)
			rte_eal_cleanup();
	}
};

// Every shortcut run has its own --file-prefix, so its own runtime directory
// (/var/run/dpdk/sluice-<pid>), which EAL leaves behind; empty once its
// telemetry socket is unlinked at exit.
std::string runtime_dir_to_remove;

void remove_runtime_dir()
{
	if (!runtime_dir_to_remove.empty())
		rmdir(runtime_dir_to_remove.c_str());
}

// Fails early with a clear line instead of EAL's "cannot attach device".
void check_writable(const std::string &path)
{
	FILE *f = std::fopen(path.c_str(), "wb");
	if (!f)
		throw error("--pcap output {}: {}", path, std::strerror(errno));
	std::fclose(f);
}

void wait_first_snapshot(runtime &rt, const options &o)
{
	const uint64_t deadline = monotonic_ns() + uint64_t(o.wait_shm_ms) * 1000000;
	for (;;) {
		bool have = false;
		// Acquire and heartbeat as a worker would, so the writer neither
		// takes our records for dead nor frees what they may read.
		for (auto &w : rt.workers) {
			have = w->handle.acquire() != nullptr;
			w->handle.heartbeat();
		}
		if (have)
			return;
		if (stop_requested.load())
			throw error("interrupted while waiting for the first snapshot");
		if (monotonic_ns() >= deadline)
			throw error("no snapshot in /dev/shm/{} after {} ms: is sluiced running with "
				    "--shm {}? (--wait-shm-ms)",
				    o.shm_name, o.wait_shm_ms, o.shm_name);
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
}

// --stats-period: this run's packets so far, for a rate over a window
// measured in the process itself (scripts/bench). The workers count without
// atomics; an aligned 64-bit load sees one value or the other.
void print_progress(const runtime &rt, double elapsed_s)
{
	uint64_t rx = 0, tx = 0;
	for (const auto &w : rt.workers) {
		rx += __atomic_load_n(&w->state.stats->counters[SLUICE_CNT_rx_packets], __ATOMIC_RELAXED) -
		      w->baseline[SLUICE_CNT_rx_packets];
		tx += __atomic_load_n(&w->state.stats->counters[SLUICE_CNT_tx_packets], __ATOMIC_RELAXED) -
		      w->baseline[SLUICE_CNT_tx_packets];
	}
	std::printf("stats elapsed_s=%.6f rx_packets=%llu tx_packets=%llu\n", elapsed_s,
		    static_cast<unsigned long long>(rx), static_cast<unsigned long long>(tx));
	std::fflush(stdout);
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
	std::vector<std::string> args = eal_arguments(o);
	note("EAL arguments: {}", join_args(std::vector<std::string>(args.begin() + 1, args.end())));
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	// Registered before EAL's own exit handlers, so it runs after them.
	std::atexit(remove_runtime_dir);
	// EAL logs to stdout by default; stdout is for our counters.
	rte_openlog_stream(stderr);
	const int eal_ret = rte_eal_init(static_cast<int>(args.size()), argv.data());
	if (o.mode != port_mode::eal)
		runtime_dir_to_remove = rte_eal_get_runtime_dir();
	if (eal_ret < 0)
		throw error("EAL initialisation failed: {} (see EAL's messages above)",
			    rte_strerror(rte_errno));
	rt.eal = true;
	on_stop_signals(on_signal);

	std::vector<unsigned> lcores;
	unsigned lc;
	RTE_LCORE_FOREACH_WORKER(lc)
	lcores.push_back(lc);
	const uint32_t workers = o.workers ? o.workers : static_cast<uint32_t>(lcores.size());
	if (workers == 0)
		throw error("EAL gave no worker lcore: give at least two lcores (e.g. -l 0-1): the first "
			    "keeps house, the others forward");
	if (workers > lcores.size())
		throw error("--workers {} needs {} lcores besides the main one; EAL gave {} (-l)", workers,
			    workers, lcores.size());
	if (workers > SLUICE_MAX_WORKERS)
		throw error("{} workers: at most {} per segment", workers, SLUICE_MAX_WORKERS);
	options eff = o;
	eff.workers = workers;

	rt.ports = find_ports(eff);
	std::vector<rte_mempool *> rx_pools;
	for (uint32_t q = 0; q < workers; q++) {
		rx_pools.push_back(make_pool(fmt::format("sluice_rx{}", q), o.mbufs ? o.mbufs : default_mbufs,
					     static_cast<int>(rte_lcore_to_socket_id(lcores[q])),
					     static_cast<uint16_t>(o.mbuf_size ? o.mbuf_size
									       : RTE_MBUF_DEFAULT_BUF_SIZE)));
		rt.pools.push_back(rx_pools.back());
	}
	rte_mempool *tap_pool = nullptr;
	if (rt.ports.tap) {
		// The TAP's one RX queue holds 512 mbufs posted for the kernel;
		// the rest is what the relay has in flight.
		tap_pool = make_pool("sluice_tap", 4095, static_cast<int>(rte_socket_id()));
		rt.pools.push_back(tap_pool);
	}
	data_port data = setup_data_port(eff, rt.ports, rx_pools, rt.ports.tap);
	if (rt.ports.tx != no_port)
		setup_tx_port(eff, rt.ports, data);
	note("{}", data.capabilities);
	if (rt.ports.exception != no_port) {
		setup_exception_port(rt.ports, workers, tap_pool, data);
		if (rt.ports.tap)
			note("exception port {}: TAP {} (1 queue pair) with the port's MAC and MTU; the "
			     "{} worker{} hand{} kernel-bound packets to the main lcore over rings of {}, "
			     "which relays both ways",
			     rt.ports.exception, o.tap_name, workers, workers > 1 ? "s" : "",
			     workers > 1 ? "" : "s", to_kernel_ring_size);
		else
			note("exception port {}: kernel-bound packets to {}", rt.ports.exception,
			     o.pcap_exception_out);
	} else {
		note("no exception port: the kernel sees every frame on {} itself", o.iface);
	}

	for (uint32_t q = 0; q < workers; q++) {
		auto w = std::make_unique<worker_lcore>();
		const int socket = static_cast<int>(rte_lcore_to_socket_id(lcores[q]));
		const uint64_t bytes = sluice_ct_table_bytes(o.ct_entries);
		const std::string name = fmt::format("sluice_ct{}", q);
		void *ct = rte_zmalloc_socket(name.c_str(), bytes, RTE_CACHE_LINE_SIZE, socket);
		if (!ct)
			ct = rte_zmalloc_socket(name.c_str(), bytes, RTE_CACHE_LINE_SIZE, SOCKET_ID_ANY);
		if (!ct)
			throw error("cannot allocate worker {}'s connection table ({} MiB for {} entries): "
				    "reserve more hugepages or lower --ct-entries",
				    q, (bytes + (1u << 20) - 1) >> 20, o.ct_entries);
		w->state.ct = static_cast<sluice_ct_table *>(ct);
		// A replay's key is fixed (reproducible, and alike in sluice-xdp
		// --pcap); a live table's is secret.
		sluice_ct_table_init(w->state.ct, o.ct_entries, &o.ct_timeouts,
				     o.mode == port_mode::pcap ? SLUICE_CT_REPLAY_KEY : random_u64());
		w->state.params = data.params;
		w->port = rt.ports.data;
		w->tx_port = rt.ports.tx != no_port ? rt.ports.tx : rt.ports.data;
		w->queue = static_cast<uint16_t>(q);
		// One way to the kernel per worker: the --pcap exception file's TX
		// queue, or (a TAP) the ring to the main lcore.
		if (!rt.ports.tap) {
			w->exception = rt.ports.exception;
		} else {
			const std::string rname = fmt::format("sluice_kern{}", q);
			w->to_kernel = rte_ring_create(rname.c_str(), to_kernel_ring_size, socket,
						       RING_F_SP_ENQ | RING_F_SC_DEQ);
			if (!w->to_kernel)
				throw error("cannot create worker {}'s ring to the TAP: {}", q,
					    rte_strerror(rte_errno));
			rt.rings.push_back(w->to_kernel);
		}
		w->filter_other_hosts = data.af_packet;
		w->replay = o.mode == port_mode::pcap;
		rt.workers.push_back(std::move(w));
	}
	for (uint32_t q = 0; q < workers; q++) {
		worker_lcore &w = *rt.workers[q];
		w.handle = worker_handle::claim(segment.get(), SLUICE_WORKER_KIND_DPDK, q,
						fmt::format("dpdk {} q{}", rt.ports.data_name, q));
		w.state.stats = &w.handle.record();
		std::memcpy(w.baseline, w.state.stats->counters, sizeof(w.baseline));
	}
	note("{} worker{} on /dev/shm/{}, {} connection-table entries each", workers,
	     workers > 1 ? "s" : "", o.shm_name, sluice_ct_table_entries(rt.workers[0]->state.ct));

	if (o.mode == port_mode::pcap)
		wait_first_snapshot(rt, o);

	for (uint32_t q = 0; q < workers; q++) {
		int ret = rte_eal_remote_launch(worker_main, rt.workers[q].get(), lcores[q]);
		if (ret != 0)
			throw error("cannot launch worker {} on lcore {}: {}", q, lcores[q], rte_strerror(-ret));
		rt.launched = true;
	}

	if (rt.ports.tap)
		rt.relay = std::make_unique<exception_relay>(
			rt.ports.exception, rt.ports.tx != no_port ? rt.ports.tx : rt.ports.data, data.main_txq,
			rt.rings);

	// Housekeeping. The workers heartbeat and acquire on their own; this
	// lcore relays the kernel's traffic and watches for the end.
	const uint64_t hz = rte_get_tsc_hz();
	uint64_t last_progress = rte_rdtsc();
	uint64_t last_seen = 0;
	bool stalled = false;
	uint64_t done = 0;
	const uint64_t launched_at = rte_rdtsc();
	const uint64_t stats_ticks = uint64_t(o.stats_period_s) * hz;
	uint64_t next_stats = o.stats_period_s ? launched_at + stats_ticks : UINT64_MAX;
	while (!stop_requested.load(std::memory_order_relaxed)) {
		if (rte_rdtsc() >= next_stats) {
			print_progress(rt, double(rte_rdtsc() - launched_at) / double(hz));
			next_stats += stats_ticks;
		}
		const uint32_t moved = rt.relay ? rt.relay->poll() : 0;
		if (o.mode == port_mode::pcap) {
			done = __atomic_load_n(&rt.workers[0]->rx_done, __ATOMIC_ACQUIRE);
			if (done >= expected)
				break;
			// Records libpcap failed to turn into mbufs are counted
			// as errors and never arrive: the end is then when the
			// driver has read everything and we have done it all.
			rte_eth_stats st;
			if (rte_eth_stats_get(rt.ports.data, &st) == 0) {
				const uint64_t read = st.ipackets + st.ierrors;
				if (read >= expected && done >= st.ipackets) {
					note("{} of the input's {} packets could not be read by the pcap driver",
					     expected - done, expected);
					break;
				}
				if (read + done != last_seen) {
					last_seen = read + done;
					last_progress = rte_rdtsc();
				} else if (rte_rdtsc() - last_progress > 10 * hz) {
					stalled = true;
					break;
				}
			}
		}
		if (moved == 0)
			std::this_thread::sleep_for(std::chrono::microseconds(100));
	}
	const int sig = signal_seen.load();
	if (sig)
		note("signal {}: stopping", sig);
	stop_requested.store(true);
	rte_eal_mp_wait_lcore();
	rt.launched = false;

	// Counters of this run: the records may have been taken over from an
	// earlier run, whose counts they keep for sluiced's totals.
	uint64_t total[SLUICE_CNT__COUNT] = {};
	for (auto &w : rt.workers)
		for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
			total[i] += w->state.stats->counters[i] - w->baseline[i];
	for (auto &w : rt.workers)
		w->handle.release();
	rt.relay.reset();
	close_port(rt.ports.data);
	close_port(rt.ports.exception);
	close_port(rt.ports.tx);
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
		std::printf("%s %llu\n", counter_table[i].name, static_cast<unsigned long long>(total[i]));
	std::fflush(stdout);

	if (o.mode == port_mode::pcap) {
		if (stalled)
			throw error("{} of the input's {} packets went through, then nothing for 10 s: "
				    "output incomplete",
				    done, expected);
		if (sig)
			throw error("interrupted after {} of the input's {} packets: output incomplete",
				    done, expected);
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
