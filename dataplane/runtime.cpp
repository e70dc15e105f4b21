// SPDX-License-Identifier: Apache-2.0
#include "runtime.h"

#include "error.h"
#include "note.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace sluice {

runtime::~runtime()
{
	join_workers();
	close();
	for (rte_ring *r : rings)
		rte_ring_free(r);
	for (auto &w : workers)
		if (!w->ct_store.table())
			rte_free(w->state.ct); // a kept table is unmapped, marked clean, by ~ct_file
	for (rte_mempool *mp : pools)
		rte_mempool_free(mp);
	if (eal)
		rte_eal_cleanup();
}

void runtime::join_workers()
{
	stop_requested.store(true);
	if (launched)
		rte_eal_mp_wait_lcore();
	launched = false;
}

void runtime::close()
{
	for (auto &w : workers)
		w->handle.release();
	relay.reset();
	close_port(ports.data);
	close_port(ports.exception);
	close_port(ports.tx);
}

data_port bring_up_ports(const options &o, runtime &rt)
{
	const uint32_t workers = o.workers;
	rt.ports = find_ports(o);
	std::vector<rte_mempool *> rx_pools;
	for (uint32_t q = 0; q < workers; q++) {
		rx_pools.push_back(make_pool(fmt::format("sluice_rx{}", q), o.mbufs ? o.mbufs : default_mbufs,
					     static_cast<int>(rte_lcore_to_socket_id(rt.lcores[q])),
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
	data_port data = setup_data_port(o, rt.ports, rx_pools, rt.ports.tap);
	if (rt.ports.tx != no_port)
		setup_tx_port(o, rt.ports, data);
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
	return data;
}

namespace {

// Worker q's table in process memory (hugepages where EAL has them).
sluice_ct_table *table_in_memory(const options &o, uint32_t q, int socket, uint64_t secret)
{
	const uint64_t bytes = sluice_ct_table_bytes(o.ct_entries);
	const std::string name = fmt::format("sluice_ct{}", q);
	void *ct = rte_zmalloc_socket(name.c_str(), bytes, RTE_CACHE_LINE_SIZE, socket);
	if (!ct)
		ct = rte_zmalloc_socket(name.c_str(), bytes, RTE_CACHE_LINE_SIZE, SOCKET_ID_ANY);
	if (!ct)
		throw error("cannot allocate worker {}'s connection table ({} MiB for {} entries): "
			    "reserve more hugepages or lower --ct-entries",
			    q, (bytes + (1u << 20) - 1) >> 20, o.ct_entries);
	auto *t = static_cast<sluice_ct_table *>(ct);
	sluice_ct_table_init(t, o.ct_entries, &o.ct_timeouts, secret);
	return t;
}

// Where the kept tables of this segment and port live (ct_store.h).
ct_place kept_tables(const options &o, const std::string &port_name)
{
	ct_place p;
	p.dir = o.ct_dir.empty() ? default_ct_dir(uint64_t(o.workers) * sluice_ct_table_bytes(o.ct_entries))
				 : o.ct_dir;
	std::string port = port_name;
	for (char &c : port)
		if (c == '/' || c == ' ')
			c = '_';
	p.stem = fmt::format("sluice-ct.{}.{}", o.shm_name, port);
	p.workers = o.workers;
	p.entries = o.ct_entries;
	p.timeouts = o.ct_timeouts;
	p.fresh = o.ct_fresh;
	return p;
}

// Opens every worker's kept table at once: re-attaching one reads all of
// it (ct_scrub), which is the restart's wait; the workers' tables are
// independent.
void open_kept_tables(const options &o, const ct_place &place, runtime &rt)
{
	const uint32_t now_s = o.mode == port_mode::pcap ? SLUICE_CT_REPLAY_NOW_S
							  : static_cast<uint32_t>(monotonic_ns() / 1000000000u);
	std::vector<std::string> failed(rt.workers.size());
	std::vector<std::thread> threads;
	for (uint32_t q = 0; q < rt.workers.size(); q++)
		threads.emplace_back([&, q] {
			try {
				const int socket = static_cast<int>(rte_lcore_to_socket_id(rt.lcores[q]));
				const uint64_t secret = o.mode == port_mode::pcap ? SLUICE_CT_REPLAY_KEY : random_u64();
				rt.workers[q]->ct_store = ct_file::open(place, q, secret, socket, now_s);
				rt.workers[q]->state.ct = rt.workers[q]->ct_store.table();
			} catch (const std::exception &e) {
				failed[q] = e.what();
			}
		});
	for (auto &t : threads)
		t.join();
	for (const std::string &f : failed)
		if (!f.empty())
			throw error("{}", f);
	if (unsigned n = remove_surplus_ct_files(place))
		note("removed {} kept connection table{} of workers beyond this run's {}", n, n > 1 ? "s" : "",
		     place.workers);
	if (o.mode == port_mode::eal && o.ct_dir.empty() && place.dir == "/dev/shm")
		note("connection tables in /dev/shm on 4 KiB pages: no hugetlbfs mount has the {} MiB free "
		     "(reserve more huge pages, or give --ct-dir)",
		     (uint64_t(o.workers) * sluice_ct_table_bytes(o.ct_entries) + (1u << 20) - 1) >> 20);
	for (const auto &w : rt.workers) {
		const ct_found &f = w->ct_store.found();
		note("worker {}: connection table {}: {}; {} flows kept, {} expired, {} invalid entries dropped",
		     w->queue, w->ct_store.path(), f.how, f.kept, f.expired, f.invalid);
	}
}

} // namespace

void create_workers(const options &o, const data_port &data, shm_segment &segment, runtime &rt)
{
	const uint32_t workers = o.workers;
	for (uint32_t q = 0; q < workers; q++) {
		auto w = std::make_unique<worker_lcore>();
		const int socket = static_cast<int>(rte_lcore_to_socket_id(rt.lcores[q]));
		// A replay's key is fixed (reproducible, and alike in sluice-xdp
		// --pcap); a live table's is secret.
		if (!o.ct_persist)
			w->state.ct = table_in_memory(o, q, socket,
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
	if (o.ct_persist)
		open_kept_tables(o, kept_tables(o, rt.ports.data_name), rt);
	rt.keeper = std::make_unique<snapshot_keeper>(segment.get());
	std::vector<worker_lcore *> all;
	for (uint32_t q = 0; q < workers; q++) {
		worker_lcore &w = *rt.workers[q];
		// A replay's packets are not the node's: counted apart (shm.h).
		w.handle = worker_handle::claim(segment.get(),
						w.replay ? SLUICE_WORKER_KIND_REPLAY : SLUICE_WORKER_KIND_DPDK, q,
						fmt::format("dpdk {} q{}", rt.ports.data_name, q));
		w.state.stats = &w.handle.record();
		std::memcpy(w.baseline, w.state.stats->counters, sizeof(w.baseline));
		w.keeper = rt.keeper.get();
		all.push_back(&w);
	}
	rt.keeper->set_workers(std::move(all));
	note("{} worker{} on /dev/shm/{}, {} connection-table entries each", workers,
	     workers > 1 ? "s" : "", o.shm_name, sluice_ct_table_entries(rt.workers[0]->state.ct));
}

void wait_first_snapshot(const options &o, runtime &rt)
{
	const uint64_t deadline = monotonic_ns() + uint64_t(o.wait_shm_ms) * 1000000;
	for (;;) {
		// Heartbeat as the workers will, so the writer does not take
		// their records for dead meanwhile.
		for (auto &w : rt.workers)
			w->handle.heartbeat();
		if (rt.keeper->poll())
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

void launch_workers(const data_port &data, runtime &rt)
{
	for (uint32_t q = 0; q < rt.workers.size(); q++) {
		int ret = rte_eal_remote_launch(worker_main, rt.workers[q].get(), rt.lcores[q]);
		if (ret != 0)
			throw error("cannot launch worker {} on lcore {}: {}", q, rt.lcores[q], rte_strerror(-ret));
		rt.launched = true;
	}
	if (rt.ports.tap)
		rt.relay = std::make_unique<exception_relay>(
			rt.ports.exception, rt.ports.tx != no_port ? rt.ports.tx : rt.ports.data, data.main_txq,
			rt.rings);
}

} // namespace sluice
