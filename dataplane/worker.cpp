// SPDX-License-Identifier: Apache-2.0
// The packet path of a worker lcore. Stages run over the whole burst so
// memory latency overlaps: parse and classify every packet (its VIP, flow
// hash and connection bucket, prefetched), prefetch the ways, then decide
// and rewrite. Every decision is include/sluice/decide.h's, the same code
// the XDP program runs; this file reads mbufs into it and applies its
// verdicts to them.
//
// What is this file's own is how cheaply it applies them, measured by
// bench_pipeline and callgrind (docs/performance.md):
//  - the VIP of the previous packet is reused when the destination, port,
//    protocol and family are the same (a burst is mostly one VIP's);
//  - a forwarded packet's trim and prepend are one write of the mbuf's
//    lengths, and its Ethernet header is written whole, not moved;
//  - the counters every packet touches (rx, tx, conn_hit, the VIP's) are
//    summed in registers and written once per burst.
#include "worker.h"

#include <sluice/decide.h>
#include <sluice/encap.h>
#include <sluice/parse.h>

#include <rte_branch_prediction.h>
#include <rte_prefetch.h>

#include <cstring>

namespace sluice {

namespace {

// Ethernet of a packet sent back where it came from (ICMP replies).
inline void reply_l2(uint8_t *frame, const rte_ether_addr &port_mac)
{
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(frame);
	std::memcpy(eth->dst, eth->src, SLUICE_ETH_ALEN);
	std::memcpy(eth->src, port_mac.addr_bytes, SLUICE_ETH_ALEN);
}

// Keeps exactly the Ethernet header and the IP packet: trailing padding of
// short frames is not part of the packet and must not be encapsulated. The
// parser read the packet from the first segment, so any further segments
// hold only what follows it.
inline void trim_to_ip(rte_mbuf *m, const sluice_pkt &p)
{
	if (unlikely(m->nb_segs != 1)) {
		rte_pktmbuf_free(m->next);
		m->next = nullptr;
		m->nb_segs = 1;
	}
	const uint16_t len = static_cast<uint16_t>(p.l2_len + p.l3_len);
	m->data_len = len;
	m->pkt_len = len;
}

// Opens `len` bytes between the Ethernet header and the IP packet. Returns
// the start of the gap, or nullptr if the mbuf has no headroom.
inline uint8_t *open_gap(rte_mbuf *m, uint16_t l2_len, uint16_t len)
{
	char *front = rte_pktmbuf_prepend(m, len);
	if (unlikely(!front))
		return nullptr;
	std::memmove(front, front + len, l2_len);
	return reinterpret_cast<uint8_t *>(front) + l2_len;
}

// SLUICE_ACT_TOO_BIG: tells the client, from the VIP, how much fits.
[[gnu::noinline]] bool reply_too_big(const worker_state &st, rte_mbuf *m, const sluice_pkt &p, uint32_t mtu)
{
	const uint16_t quote = sluice_icmp_quote_len(p.l3_len);
	trim_to_ip(m, p);
	const bool v4 = p.key.family == SLUICE_AF_INET;
	const uint16_t hdr = static_cast<uint16_t>(
		(v4 ? sizeof(sluice_ipv4_hdr) : sizeof(sluice_ipv6_hdr)) + sizeof(sluice_icmp_hdr));
	uint8_t *gap = open_gap(m, p.l2_len, hdr);
	if (!gap)
		return false;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - (p.l2_len + hdr + quote)));
	const uint8_t *q = gap + hdr;
	if (v4)
		sluice_icmp4_frag_needed(reinterpret_cast<sluice_ipv4_hdr *>(gap),
					 reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv4_hdr)),
					 q, q + quote, quote, static_cast<uint16_t>(mtu));
	else
		sluice_icmp6_too_big(reinterpret_cast<sluice_ipv6_hdr *>(gap),
				     reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv6_hdr)), q,
				     q + quote, quote, mtu);
	reply_l2(frame, st.params.port_mac);
	return true;
}

// SLUICE_ACT_ECHO: the echo request becomes its reply, in place.
[[gnu::noinline]] void reply_echo(const worker_state &st, rte_mbuf *m, const sluice_pkt &p)
{
	trim_to_ip(m, p);
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint8_t *l3 = frame + p.l2_len;
	auto *icmp = reinterpret_cast<sluice_icmp_hdr *>(frame + p.l4_off);
	if (p.key.family == SLUICE_AF_INET)
		sluice_icmp4_echo_reply(reinterpret_cast<sluice_ipv4_hdr *>(l3), icmp);
	else
		sluice_icmp6_echo_reply(reinterpret_cast<sluice_ipv6_hdr *>(l3), icmp);
	reply_l2(frame, st.params.port_mac);
}

// SLUICE_ACT_FORWARD: the outer headers in front of the IP packet, the
// Ethernet header to the backend's next hop. False: no headroom.
[[gnu::always_inline]] inline bool encapsulate(const worker_state &st, const sluice_snapshot *s, rte_mbuf *m,
					       const sluice_pkt &p, const sluice_verdict &v)
{
	const sluice_backend &b = s->backends[v.backend];
	const uint16_t enc = v.enc;
	if (unlikely(rte_pktmbuf_headroom(m) < enc))
		return false;
	// Trim to the IP packet and open room for the outer headers in front
	// of it: two writes of the mbuf's lengths, no copy of the packet.
	trim_to_ip(m, p);
	m->data_off = static_cast<uint16_t>(m->data_off - enc);
	m->data_len = static_cast<uint16_t>(m->data_len + enc);
	m->pkt_len += enc;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	const uint16_t l2 = p.l2_len;
	if (enc) {
		// The Ethernet header is rewritten whole below; a VLAN tag
		// (TPID and TCI, bytes 12-15) is carried over from where the
		// frame began. enc >= 20, so the ranges never overlap.
		if (unlikely(l2 != sizeof(sluice_eth_hdr)))
			std::memcpy(frame + 12, frame + enc + 12, 4);
		const bool sw_csum = !st.params.tx_ipv4_cksum_offload;
		sluice_encap_write(frame + l2, v.mode, &s->node, &b, s->vips[v.vip].gue_port_be, v.hash,
				   p.key.family, p.tos, p.l3_len, sw_csum);
		// The ethertype is the last field of the L2 header, tagged or not.
		const uint16_t type_be = sluice_htons(b.family == SLUICE_AF_INET6 ? SLUICE_ETH_P_IPV6
										  : SLUICE_ETH_P_IPV4);
		std::memcpy(frame + l2 - 2, &type_be, 2);
		if (!sw_csum && b.family == SLUICE_AF_INET) {
			m->l2_len = l2;
			m->l3_len = sizeof(sluice_ipv4_hdr);
			m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
		}
	}
	std::memcpy(frame, b.mac, SLUICE_ETH_ALEN);
	std::memcpy(frame + SLUICE_ETH_ALEN, st.params.port_mac.addr_bytes, SLUICE_ETH_ALEN);
	return true;
}

} // namespace

void process_burst(worker_state &st, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out)
{
	sluice_pkt pkt[burst_size];
	sluice_flow flow[burst_size];
	bool parsed[burst_size];
	out.n_tx = 0;
	out.n_kernel = 0;

	sluice_dp dp{st.ct->buckets, st.ct->n_buckets, st.stats, 0};
	sluice_env env{snap, &dp, st.ct->to, st.now_s, sluice_env_mtu(st.params.port_mtu, snap), st.ct->secret};
	// One memo per burst: a burst reads one snapshot, so `active` is a
	// constant here.
	sluice_vip_memo memo{};
	uint64_t *const cnt = st.stats->counters;

	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));

	// Stage 1: parse every packet of the burst.
	uint64_t rx_bytes = 0;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		rx_bytes += m->pkt_len;
		const uint8_t *data = rte_pktmbuf_mtod(m, const uint8_t *);
		const uint32_t r = sluice_parse(data, data + m->data_len, &pkt[i]);
		parsed[i] = r == SLUICE_PARSE_OK;
		if (unlikely(!parsed[i]))
			cnt[r & (SLUICE_COUNTER_SLOTS - 1)]++;
	}
	// Stage 1a: classify (VIP, hash, bucket) and prefetch the bucket's tag
	// line. A pass of its own: the parser writes the flow key a field at a
	// time and the VIP memo and the hashes read it a word at a time; read
	// right after the writes, each word waits for the stores in flight to
	// reach the cache (a failed store-to-load forward), a burst later they
	// are there.
	for (uint16_t i = 0; i < n; i++) {
		if (unlikely(!parsed[i]))
			continue;
		sluice_classify(&env, &memo, 1, &pkt[i], &flow[i]);
		if (flow[i].bucket)
			sluice_ct_prefetch(flow[i].bucket);
	}
	// Stage 1b: the tag lines have arrived meanwhile; prefetch the line of
	// the way each flow is in, if not the tag line itself.
	for (uint16_t i = 0; i < n; i++)
		if (parsed[i] && flow[i].bucket)
			sluice_ct_prefetch_ways(flow[i].bucket, flow[i].tag);
	cnt[SLUICE_CNT_rx_packets] += n;
	cnt[SLUICE_CNT_rx_bytes] += rx_bytes;

	// Stage 2: decide and apply.
	uint64_t tx_packets = 0, tx_bytes = 0;
	uint32_t run_vip = SLUICE_MAX_VIPS; // the VIP of the current run of forwarded packets
	uint64_t run_packets = 0, run_bytes = 0;
	sluice_obj_counters *const vip_cnt = st.stats->vip;
	sluice_obj_counters *const backend_cnt = st.stats->backend;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		if (unlikely(!parsed[i])) {
			rte_pktmbuf_free(m);
			continue;
		}
		const sluice_pkt &p = pkt[i];
		const sluice_verdict v = sluice_decide(&env, &p, &flow[i]);
		switch (v.act) {
		case SLUICE_ACT_FORWARD: {
			if (unlikely(!encapsulate(st, snap, m, p, v))) {
				cnt[SLUICE_CNT_drop_too_big]++; // what a failed prepend is counted as
				rte_pktmbuf_free(m);
				break;
			}
			tx_packets++;
			tx_bytes += m->pkt_len;
			// Consecutive packets mostly share a VIP: its counters are
			// written once per run of them.
			if (v.vip != run_vip) {
				if (run_vip != SLUICE_MAX_VIPS) {
					vip_cnt[run_vip].packets += run_packets;
					vip_cnt[run_vip].bytes += run_bytes;
				}
				run_vip = v.vip;
				run_packets = run_bytes = 0;
			}
			run_packets++;
			run_bytes += p.l3_len;
			sluice_obj_counters &bc = backend_cnt[v.backend];
			bc.packets++;
			bc.bytes += p.l3_len;
			out.tx[out.n_tx++] = m;
			break;
		}
		case SLUICE_ACT_ECHO:
			reply_echo(st, m, p);
			cnt[SLUICE_CNT_icmp_echo_replied]++;
			out.tx[out.n_tx++] = m;
			break;
		case SLUICE_ACT_TOO_BIG:
			if (unlikely(!reply_too_big(st, m, p, v.mtu))) {
				cnt[SLUICE_CNT_drop_too_big]++;
				rte_pktmbuf_free(m);
				break;
			}
			cnt[SLUICE_CNT_icmp_too_big_sent]++;
			out.tx[out.n_tx++] = m;
			break;
		case SLUICE_ACT_KERNEL:
			if (st.params.kernel_sees_rx)
				rte_pktmbuf_free(m);
			else
				out.kernel[out.n_kernel++] = m;
			break;
		default: // SLUICE_ACT_DROP, counted by reason
			rte_pktmbuf_free(m);
			break;
		}
	}
	if (run_vip != SLUICE_MAX_VIPS) {
		vip_cnt[run_vip].packets += run_packets;
		vip_cnt[run_vip].bytes += run_bytes;
	}
	cnt[SLUICE_CNT_tx_packets] += tx_packets;
	cnt[SLUICE_CNT_tx_bytes] += tx_bytes;
	cnt[SLUICE_CNT_conn_hit] += dp.hits;
}

} // namespace sluice
