// SPDX-License-Identifier: Apache-2.0
#include "lcore.h"

#include "sys.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

namespace sluice {

std::atomic<bool> stop_requested{false};

namespace {

// A heartbeat every 10 ms keeps a worker well inside sluiced's timeout
// (1 s by default) at the cost of one vDSO clock read per 10 ms.
constexpr uint64_t heartbeats_per_s = 100;

// af_packet also hands us the kernel's own outgoing frames and whatever a
// bridge floods (docs/testing.md): keep what is addressed to the port, and
// broadcast and multicast.
inline uint16_t keep_ours(rte_mbuf **pkts, uint16_t n, const rte_ether_addr &mac)
{
	uint16_t k = 0;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		const auto *eth = rte_pktmbuf_mtod(m, const rte_ether_hdr *);
		if (m->data_len < RTE_ETHER_ADDR_LEN || rte_is_multicast_ether_addr(&eth->dst_addr) ||
		    rte_is_same_ether_addr(&eth->dst_addr, &mac))
			pkts[k++] = m; // too short: process_burst counts it truncated
		else
			rte_pktmbuf_free(m);
	}
	return k;
}

// Transmits pkts[0..n) on (port, queue); frees and returns how many did not fit.
inline uint16_t send_or_free(uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n)
{
	if (n == 0)
		return 0;
	uint16_t sent = rte_eth_tx_burst(port, queue, pkts, n);
	if (unlikely(sent < n))
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	return static_cast<uint16_t>(n - sent);
}

} // namespace

uint64_t ct_clock_offset(uint64_t hz)
{
	const uint64_t tsc = rte_rdtsc();
	const auto mono_ticks = static_cast<uint64_t>(static_cast<double>(monotonic_ns()) * 1e-9 *
						      static_cast<double>(hz));
	return mono_ticks - tsc; // modulo 2^64: tsc + offset is CLOCK_MONOTONIC in ticks
}

int worker_main(void *arg)
{
	worker_lcore &w = *static_cast<worker_lcore *>(arg);
	worker_state &st = w.state;
	uint64_t *counters = st.stats->counters;
	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t heartbeat_ticks = hz / heartbeats_per_s;
	const uint64_t clock_offset = ct_clock_offset(hz);
	uint64_t next_heartbeat = 0;
	rte_mbuf *pkts[burst_size];
	burst_result res;

	while (!stop_requested.load(std::memory_order_relaxed)) {
		// Every poll, empty ones too: the keeper reuses the other bank
		// only once every worker has taken the current one.
		const snapshot_keeper::bank *bank = w.keeper->current();
		if (unlikely(bank != w.bank && bank)) {
			w.bank = bank;
			w.handle.adopted(bank->generation);
			__atomic_store_n(&w.taken, bank->generation, __ATOMIC_RELEASE);
		}
		const sluice_snapshot *snap = bank ? bank->snap : nullptr;
		const uint16_t got = rte_eth_rx_burst(w.port, w.queue, pkts, burst_size);
		const uint64_t tsc = rte_rdtsc();
		if (tsc >= next_heartbeat) {
			w.handle.heartbeat();
			next_heartbeat = tsc + heartbeat_ticks;
		}
		if (got == 0)
			continue;
		uint16_t n = got;
		if (w.filter_other_hosts)
			n = keep_ours(pkts, n, st.params.port_mac);
		st.now_s = w.replay ? SLUICE_CT_REPLAY_NOW_S : static_cast<uint32_t>((tsc + clock_offset) / hz);
		res.n_tx = 0;
		res.n_kernel = 0;
		process_burst(st, snap, pkts, n, res);

		counters[SLUICE_CNT_drop_tx_full] += send_or_free(w.tx_port, w.queue, res.tx, res.n_tx);
		if (w.to_kernel) {
			const unsigned q = rte_ring_sp_enqueue_burst(w.to_kernel, reinterpret_cast<void **>(res.kernel),
								     res.n_kernel, nullptr);
			if (unlikely(q < res.n_kernel)) {
				rte_pktmbuf_free_bulk(res.kernel + q, res.n_kernel - q);
				counters[SLUICE_CNT_drop_exception_full] += res.n_kernel - q;
			}
		} else if (w.exception != UINT16_MAX)
			counters[SLUICE_CNT_drop_exception_full] +=
				send_or_free(w.exception, w.queue, res.kernel, res.n_kernel);
		else if (res.n_kernel)
			rte_pktmbuf_free_bulk(res.kernel, res.n_kernel); // the kernel saw it already
		__atomic_store_n(&w.rx_done, w.rx_done + got, __ATOMIC_RELEASE);
	}
	return 0;
}

exception_relay::exception_relay(uint16_t tap, uint16_t data, uint16_t data_txq, std::vector<rte_ring *> rings)
	: tap_(tap), data_(data), data_txq_(data_txq), rings_(std::move(rings)), held_(rings_.size())
{
}

exception_relay::~exception_relay()
{
	for (pending &p : held_)
		if (p.n > p.sent)
			rte_pktmbuf_free_bulk(p.pkts + p.sent, p.n - p.sent);
	for (rte_ring *r : rings_) {
		void *m;
		while (rte_ring_sc_dequeue(r, &m) == 0)
			rte_pktmbuf_free(static_cast<rte_mbuf *>(m));
	}
}

uint32_t exception_relay::poll()
{
	uint32_t moved = 0;
	for (size_t i = 0; i < rings_.size(); i++) {
		pending &p = held_[i];
		if (p.sent == p.n) {
			p.n = static_cast<uint16_t>(rte_ring_sc_dequeue_burst(
				rings_[i], reinterpret_cast<void **>(p.pkts), RTE_DIM(p.pkts), nullptr));
			p.sent = 0;
		}
		if (p.sent < p.n) {
			const uint16_t s = rte_eth_tx_burst(tap_, 0, p.pkts + p.sent, static_cast<uint16_t>(p.n - p.sent));
			p.sent = static_cast<uint16_t>(p.sent + s);
			moved += s;
		}
	}
	rte_mbuf *pkts[burst_size];
	const uint16_t n = rte_eth_rx_burst(tap_, 0, pkts, burst_size);
	// Dropped when the data port's queue is full, as a NIC would.
	send_or_free(data_, data_txq_, pkts, n);
	return moved + n;
}

} // namespace sluice
