// SPDX-License-Identifier: Apache-2.0
// The packet path of a worker lcore. Stages run over the whole burst so
// memory latency overlaps: parse every packet and prefetch its connection
// bucket, then decide and rewrite. Every decision comes from include/sluice/
// (parse, flow hash, VIP lookup, Maglev, connection table, encapsulation),
// the same code the XDP program runs.
#include "worker.h"

#include <sluice/encap.h>
#include <sluice/maglev.h>
#include <sluice/parse.h>

#include <rte_branch_prediction.h>
#include <rte_prefetch.h>

#include <cstring>

namespace sluice {

namespace {

enum class action : uint8_t { drop, kernel, forward, reply };

struct pkt_ctx {
	sluice_pkt p;
	uint32_t hash;
	uint32_t vip; // SLUICE_MAX_VIPS: none
	sluice_ct_bucket *bucket;
};

inline void count(worker_state &st, sluice_counter c)
{
	st.stats->counters[c]++;
}

inline bool is_vip_address(const sluice_snapshot *s, const sluice_pkt &p)
{
	return sluice_vip_find_address(s, p.key.dst, p.key.family) != SLUICE_MAX_VIPS;
}

// Ethernet of a packet sent back where it came from (ICMP replies).
inline void reply_l2(uint8_t *frame, const rte_ether_addr &port_mac)
{
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(frame);
	std::memcpy(eth->dst, eth->src, SLUICE_ETH_ALEN);
	std::memcpy(eth->src, port_mac.addr_bytes, SLUICE_ETH_ALEN);
}

// Keeps exactly the Ethernet header and the IP packet: trailing padding of
// short frames is not part of the packet and must not be encapsulated.
inline void trim_to_ip(rte_mbuf *m, const sluice_pkt &p)
{
	uint32_t want = static_cast<uint32_t>(p.l2_len) + p.l3_len;
	if (m->data_len > want)
		rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - want));
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

inline void set_ethertype(uint8_t *frame, uint16_t l2_len, uint16_t type_be)
{
	// The ethertype is the last field of the L2 header, tagged or not.
	std::memcpy(frame + l2_len - 2, &type_be, 2);
}

// Too big to encapsulate: tell the client, from the VIP, how much fits.
action too_big(worker_state &st, rte_mbuf *m, const sluice_pkt &p, uint32_t room)
{
	uint16_t quote = sluice_icmp_quote_len(p.l3_len);
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	if (p.key.family == SLUICE_AF_INET) {
		if (!p.df) {
			count(st, SLUICE_CNT_drop_too_big);
			return action::drop;
		}
		uint16_t hdr = sizeof(sluice_ipv4_hdr) + sizeof(sluice_icmp_hdr);
		uint8_t *gap = open_gap(m, p.l2_len, hdr);
		if (!gap) {
			count(st, SLUICE_CNT_drop_too_big);
			return action::drop;
		}
		frame = rte_pktmbuf_mtod(m, uint8_t *);
		rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - (p.l2_len + hdr + quote)));
		const uint8_t *q = gap + hdr;
		sluice_icmp4_frag_needed(reinterpret_cast<sluice_ipv4_hdr *>(gap),
					 reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv4_hdr)),
					 q, q + quote, quote, static_cast<uint16_t>(room));
	} else {
		uint16_t hdr = sizeof(sluice_ipv6_hdr) + sizeof(sluice_icmp_hdr);
		uint8_t *gap = open_gap(m, p.l2_len, hdr);
		if (!gap) {
			count(st, SLUICE_CNT_drop_too_big);
			return action::drop;
		}
		frame = rte_pktmbuf_mtod(m, uint8_t *);
		rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - (p.l2_len + hdr + quote)));
		const uint8_t *q = gap + hdr;
		uint32_t mtu = room < SLUICE_IPV6_MIN_MTU ? SLUICE_IPV6_MIN_MTU : room;
		sluice_icmp6_too_big(reinterpret_cast<sluice_ipv6_hdr *>(gap),
				     reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv6_hdr)), q,
				     q + quote, quote, mtu);
	}
	reply_l2(frame, st.params.port_mac);
	count(st, SLUICE_CNT_icmp_too_big_sent);
	return action::reply;
}

// Sends the packet to backend `bid` of VIP `vid` the VIP's way.
action forward(worker_state &st, const sluice_snapshot *s, rte_mbuf *m, const sluice_pkt &p,
	       uint32_t vid, uint32_t bid, uint32_t hash)
{
	const sluice_vip &v = s->vips[vid];
	const sluice_backend &b = s->backends[bid & (SLUICE_MAX_BACKENDS - 1)];
	if (unlikely(!(b.flags & SLUICE_BACKEND_HAS_MAC))) {
		count(st, SLUICE_CNT_drop_no_nexthop);
		return action::drop;
	}
	uint16_t enc = sluice_encap_len(v.mode, b.family);
	uint32_t mtu = st.params.port_mtu;
	if (s->node.mtu && s->node.mtu < mtu)
		mtu = s->node.mtu;
	if (unlikely(static_cast<uint32_t>(p.l3_len) + enc > mtu)) {
		if (p.kind == SLUICE_PKT_L4)
			return too_big(st, m, p, mtu - enc);
		count(st, SLUICE_CNT_drop_too_big);
		return action::drop;
	}
	uint32_t rx_bytes = p.l3_len;
	trim_to_ip(m, p);
	uint8_t *frame;
	if (enc) {
		uint8_t *outer = open_gap(m, p.l2_len, enc);
		if (unlikely(!outer)) {
			count(st, SLUICE_CNT_drop_too_big);
			return action::drop;
		}
		frame = rte_pktmbuf_mtod(m, uint8_t *);
		sluice_encap_write(outer, v.mode, &s->node, &b, v.gue_port_be, hash, p.key.family, p.tos,
				   p.l3_len, !st.params.tx_ipv4_cksum_offload);
		set_ethertype(frame, p.l2_len,
			      sluice_htons(b.family == SLUICE_AF_INET6 ? SLUICE_ETH_P_IPV6
								    : SLUICE_ETH_P_IPV4));
		if (st.params.tx_ipv4_cksum_offload && b.family == SLUICE_AF_INET) {
			m->l2_len = p.l2_len;
			m->l3_len = sizeof(sluice_ipv4_hdr);
			m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
		}
	} else {
		frame = rte_pktmbuf_mtod(m, uint8_t *);
	}
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(frame);
	std::memcpy(eth->dst, b.mac, SLUICE_ETH_ALEN);
	std::memcpy(eth->src, st.params.port_mac.addr_bytes, SLUICE_ETH_ALEN);

	sluice_obj_counters &vc = st.stats->vip[vid];
	sluice_obj_counters &bc = st.stats->backend[bid & (SLUICE_MAX_BACKENDS - 1)];
	vc.packets++;
	vc.bytes += rx_bytes;
	bc.packets++;
	bc.bytes += rx_bytes;
	return action::forward;
}

// The backend of a flow: its connection's if that backend still takes it,
// else Maglev's pick (inserted, unless the packet is an ICMP error, which
// never opens a connection). SLUICE_MAGLEV_EMPTY: none.
uint32_t pick_backend(worker_state &st, const sluice_snapshot *s, pkt_ctx &c)
{
	const sluice_ct_timeouts &to = st.ct->to;
	sluice_ct_entry *e = sluice_ct_find(c.bucket, &c.p.key, st.now_s, &to);
	if (e) {
		const sluice_backend &b = s->backends[e->backend_id & (SLUICE_MAX_BACKENDS - 1)];
		if (likely(e->backend_id < SLUICE_MAX_BACKENDS && sluice_backend_keeps_flows(&b, c.vip))) {
			if (c.p.kind == SLUICE_PKT_L4)
				sluice_ct_update(e, c.p.tcp_flags, st.now_s);
			count(st, SLUICE_CNT_conn_hit);
			return e->backend_id;
		}
	}
	const sluice_vip &v = s->vips[c.vip];
	uint32_t slot = sluice_maglev_slot(c.hash, v.ring_inv, v.ring_size);
	uint32_t bid = s->rings[(v.ring_offset + slot) & (SLUICE_RING_POOL - 1)];
	if (bid == SLUICE_MAGLEV_EMPTY)
		return bid;
	if (e) {
		// Its backend was removed or went down: the flow moves, once.
		e->backend_id = bid;
		e->vip_id = c.vip;
		sluice_ct_update(e, c.p.tcp_flags, st.now_s);
		count(st, SLUICE_CNT_conn_repick);
		return bid;
	}
	if (c.p.kind != SLUICE_PKT_L4)
		return bid;
	bool evicted = false;
	sluice_ct_insert(c.bucket, &c.p.key, bid, c.vip,
			 sluice_ct_initial_state(c.p.key.proto, c.p.tcp_flags), st.now_s, &to, &evicted);
	count(st, SLUICE_CNT_conn_new);
	if (evicted)
		count(st, SLUICE_CNT_conn_evict);
	st.stats->vip[c.vip].new_flows++;
	st.stats->backend[bid & (SLUICE_MAX_BACKENDS - 1)].new_flows++;
	return bid;
}

// A first fragment went to `bid`: the later ones of its datagram follow.
void remember_fragment(worker_state &st, const sluice_pkt &p, uint32_t vid, uint32_t bid)
{
	sluice_flow_key fk;
	sluice_frag_key(&fk, p.key.family, p.key.src, p.key.dst, p.frag_id, p.key.proto);
	sluice_ct_bucket *b = sluice_ct_table_bucket(st.ct, sluice_flow_hash(&fk));
	sluice_ct_insert(b, &fk, bid, vid, SLUICE_CT_FRAG, st.now_s, &st.ct->to, nullptr);
	count(st, SLUICE_CNT_frag_first);
}

action later_fragment(worker_state &st, const sluice_snapshot *s, rte_mbuf *m, const sluice_pkt &p)
{
	sluice_flow_key fk;
	sluice_frag_key(&fk, p.key.family, p.key.src, p.key.dst, p.frag_id, p.key.proto);
	uint32_t h = sluice_flow_hash(&fk);
	sluice_ct_entry *e = sluice_ct_find(sluice_ct_table_bucket(st.ct, h), &fk, st.now_s, &st.ct->to);
	if (!e) {
		count(st, SLUICE_CNT_drop_frag_no_first);
		return action::drop;
	}
	sluice_ct_update(e, 0, st.now_s);
	// Later fragments carry no ports, so their outer entropy (GUE source
	// port, flow label) comes from the fragment key's hash: one datagram's
	// later fragments still share one outer flow.
	count(st, SLUICE_CNT_frag_followed);
	return forward(st, s, m, p, e->vip_id & (SLUICE_MAX_VIPS - 1), e->backend_id, h);
}

action decide(worker_state &st, const sluice_snapshot *s, rte_mbuf *m, pkt_ctx &c)
{
	sluice_pkt &p = c.p;
	if (p.kind == SLUICE_PKT_NOT_IP) {
		count(st, SLUICE_CNT_pass_not_vip);
		return action::kernel;
	}
	if (unlikely(!s)) {
		count(st, SLUICE_CNT_drop_no_snapshot);
		return action::drop;
	}
	if (likely(c.vip != SLUICE_MAX_VIPS)) {
		uint32_t bid = pick_backend(st, s, c);
		if (unlikely(bid == SLUICE_MAGLEV_EMPTY)) {
			count(st, SLUICE_CNT_drop_no_backend);
			return action::drop;
		}
		if (p.kind == SLUICE_PKT_ICMP_ERROR)
			count(st, SLUICE_CNT_icmp_error_forwarded);
		else if (p.first_frag)
			remember_fragment(st, p, c.vip, bid);
		return forward(st, s, m, p, c.vip, bid, c.hash);
	}
	// Not a VIP service: a VIP address still keeps what is not for the kernel.
	bool vip_addr = is_vip_address(s, p);
	if (!vip_addr) {
		count(st, SLUICE_CNT_pass_not_vip);
		return action::kernel;
	}
	switch (p.kind) {
	case SLUICE_PKT_FRAG:
		return later_fragment(st, s, m, p);
	case SLUICE_PKT_ICMP_ECHO: {
		trim_to_ip(m, p);
		uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
		uint8_t *l3 = frame + p.l2_len;
		auto *icmp = reinterpret_cast<sluice_icmp_hdr *>(frame + p.l4_off);
		if (p.key.family == SLUICE_AF_INET)
			sluice_icmp4_echo_reply(reinterpret_cast<sluice_ipv4_hdr *>(l3), icmp);
		else
			sluice_icmp6_echo_reply(reinterpret_cast<sluice_ipv6_hdr *>(l3), icmp);
		reply_l2(frame, st.params.port_mac);
		count(st, SLUICE_CNT_icmp_echo_replied);
		return action::reply;
	}
	case SLUICE_PKT_ICMP_ERROR:
		count(st, SLUICE_CNT_drop_icmp_unmatched);
		return action::drop;
	default:
		count(st, SLUICE_CNT_drop_vip_proto);
		return action::drop;
	}
}

} // namespace

void process_burst(worker_state &st, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out)
{
	pkt_ctx ctx[burst_size];
	action act[burst_size];
	out.n_tx = 0;
	out.n_kernel = 0;

	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));

	// Stage 1: parse, find the VIP, hash, prefetch the connection bucket.
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		pkt_ctx &c = ctx[i];
		if (i + 4 < n)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 4], void *));
		st.stats->counters[SLUICE_CNT_rx_packets]++;
		st.stats->counters[SLUICE_CNT_rx_bytes] += m->pkt_len;
		const uint8_t *data = rte_pktmbuf_mtod(m, const uint8_t *);
		uint32_t r = sluice_parse(data, data + m->data_len, &c.p);
		c.vip = SLUICE_MAX_VIPS;
		c.bucket = nullptr;
		if (unlikely(r != SLUICE_PARSE_OK)) {
			count(st, static_cast<sluice_counter>(r));
			act[i] = action::drop;
			continue;
		}
		act[i] = action::kernel; // decided in stage 2
		if (snap && (c.p.kind == SLUICE_PKT_L4 || c.p.kind == SLUICE_PKT_ICMP_ERROR)) {
			c.vip = sluice_vip_find(snap, c.p.key.dst, c.p.key.family, c.p.key.dport_be,
						c.p.key.proto);
			if (c.vip != SLUICE_MAX_VIPS) {
				c.hash = sluice_flow_hash(&c.p.key);
				c.bucket = sluice_ct_table_bucket(st.ct, c.hash);
				sluice_ct_prefetch(c.bucket);
			}
		}
	}
	// Stage 2: decide and rewrite.
	for (uint16_t i = 0; i < n; i++) {
		if (act[i] != action::drop)
			act[i] = decide(st, snap, pkts[i], ctx[i]);
		rte_mbuf *m = pkts[i];
		switch (act[i]) {
		case action::forward:
			st.stats->counters[SLUICE_CNT_tx_packets]++;
			st.stats->counters[SLUICE_CNT_tx_bytes] += m->pkt_len;
			out.tx[out.n_tx++] = m;
			break;
		case action::reply: // counted by kind (icmp_echo_replied, icmp_too_big_sent)
			out.tx[out.n_tx++] = m;
			break;
		case action::kernel:
			if (st.params.kernel_sees_rx)
				rte_pktmbuf_free(m);
			else
				out.kernel[out.n_kernel++] = m;
			break;
		case action::drop:
			rte_pktmbuf_free(m);
			break;
		}
	}
}

} // namespace sluice
