// SPDX-License-Identifier: Apache-2.0
// The packet path of a worker lcore. Stages run over the whole burst so
// memory latency overlaps: parse every packet and prefetch its connection
// bucket, then decide and rewrite. Every decision comes from include/sluice/
// (parse, flow hash, VIP lookup, Maglev, connection table, encapsulation),
// the same code the XDP program runs.
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
	uint16_t tag; // sluice_ct_tag(hash)
	// Set by forward(): whose counters the packet moves (a later fragment
	// has no VIP of its own in `vip`).
	uint32_t fwd_vip;
	uint32_t fwd_backend;
};

// What every packet of a burst reads. The counters that every packet moves
// are summed in process_burst's locals instead, so they stay in registers.
struct burst {
	worker_state &st;
	const sluice_snapshot *snap;
	uint32_t mtu; // the smaller of the port's and the node's

	burst(worker_state &s, const sluice_snapshot *sn) : st(s), snap(sn), mtu(s.params.port_mtu)
	{
		if (sn && sn->node.mtu && sn->node.mtu < mtu)
			mtu = sn->node.mtu;
	}

	void count(sluice_counter c) const { st.stats->counters[c]++; }
};

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

// Too big to encapsulate: tell the client, from the VIP, how much fits.
[[gnu::noinline]] action too_big(const burst &bu, rte_mbuf *m, const sluice_pkt &p, uint32_t room)
{
	uint16_t quote = sluice_icmp_quote_len(p.l3_len);
	if (p.key.family == SLUICE_AF_INET && !p.df) {
		bu.count(SLUICE_CNT_drop_too_big);
		return action::drop;
	}
	trim_to_ip(m, p);
	const bool v4 = p.key.family == SLUICE_AF_INET;
	const uint16_t hdr = static_cast<uint16_t>(
		(v4 ? sizeof(sluice_ipv4_hdr) : sizeof(sluice_ipv6_hdr)) + sizeof(sluice_icmp_hdr));
	uint8_t *gap = open_gap(m, p.l2_len, hdr);
	if (!gap) {
		bu.count(SLUICE_CNT_drop_too_big);
		return action::drop;
	}
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - (p.l2_len + hdr + quote)));
	const uint8_t *q = gap + hdr;
	if (v4) {
		sluice_icmp4_frag_needed(reinterpret_cast<sluice_ipv4_hdr *>(gap),
					 reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv4_hdr)),
					 q, q + quote, quote, static_cast<uint16_t>(room));
	} else {
		uint32_t mtu = room < SLUICE_IPV6_MIN_MTU ? SLUICE_IPV6_MIN_MTU : room;
		sluice_icmp6_too_big(reinterpret_cast<sluice_ipv6_hdr *>(gap),
				     reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv6_hdr)), q,
				     q + quote, quote, mtu);
	}
	reply_l2(frame, bu.st.params.port_mac);
	bu.count(SLUICE_CNT_icmp_too_big_sent);
	return action::reply;
}

// Sends the packet to backend `bid` of VIP `vid` the VIP's way.
[[gnu::always_inline]] inline action forward(const burst &bu, rte_mbuf *m, pkt_ctx &c, uint32_t vid,
					     uint32_t bid, uint32_t hash)
{
	const sluice_pkt &p = c.p;
	const sluice_snapshot *s = bu.snap;
	const sluice_vip &v = s->vips[vid];
	const uint32_t b_idx = bid & (SLUICE_MAX_BACKENDS - 1);
	const sluice_backend &b = s->backends[b_idx];
	if (unlikely(!(b.flags & SLUICE_BACKEND_HAS_MAC))) {
		bu.count(SLUICE_CNT_drop_no_nexthop);
		return action::drop;
	}
	const uint16_t enc = sluice_encap_len(v.mode, b.family);
	if (unlikely(static_cast<uint32_t>(p.l3_len) + enc > bu.mtu)) {
		if (p.kind == SLUICE_PKT_L4)
			return too_big(bu, m, p, bu.mtu - enc);
		bu.count(SLUICE_CNT_drop_too_big);
		return action::drop;
	}
	if (unlikely(rte_pktmbuf_headroom(m) < enc)) {
		bu.count(SLUICE_CNT_drop_too_big); // what a failed prepend is counted as
		return action::drop;
	}
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
		const bool sw_csum = !bu.st.params.tx_ipv4_cksum_offload;
		sluice_encap_write(frame + l2, v.mode, &s->node, &b, v.gue_port_be, hash, p.key.family,
				   p.tos, p.l3_len, sw_csum);
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
	std::memcpy(frame + SLUICE_ETH_ALEN, bu.st.params.port_mac.addr_bytes, SLUICE_ETH_ALEN);

	c.fwd_vip = vid;
	c.fwd_backend = b_idx;
	return action::forward;
}

// The backend of a flow: its connection's if that backend still takes it,
// else Maglev's pick (inserted, unless the packet is an ICMP error, which
// never opens a connection). SLUICE_MAGLEV_EMPTY: none.
[[gnu::always_inline]] inline uint32_t pick_backend(const burst &bu, pkt_ctx &c, uint64_t &hits)
{
	worker_state &st = bu.st;
	const sluice_snapshot *s = bu.snap;
	const sluice_ct_timeouts &to = st.ct->to;
	sluice_ct_entry *e = sluice_ct_find(c.bucket, &c.p.key, c.tag, st.now_s, &to);
	if (likely(e != nullptr)) {
		const sluice_backend &b = s->backends[e->backend_id & (SLUICE_MAX_BACKENDS - 1)];
		if (likely(e->backend_id < SLUICE_MAX_BACKENDS && sluice_backend_keeps_flows(&b, c.vip))) {
			if (c.p.kind == SLUICE_PKT_L4)
				sluice_ct_update(e, c.p.tcp_flags, st.now_s);
			hits++;
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
		bu.count(SLUICE_CNT_conn_repick);
		return bid;
	}
	if (c.p.kind != SLUICE_PKT_L4)
		return bid;
	bool evicted = false;
	sluice_ct_insert(c.bucket, &c.p.key, c.tag, bid, c.vip,
			 sluice_ct_initial_state(c.p.key.proto, c.p.tcp_flags), st.now_s, &to, &evicted);
	bu.count(SLUICE_CNT_conn_new);
	if (evicted)
		bu.count(SLUICE_CNT_conn_evict);
	st.stats->vip[c.vip].new_flows++;
	st.stats->backend[bid & (SLUICE_MAX_BACKENDS - 1)].new_flows++;
	return bid;
}

// A first fragment went to `bid`: the later ones of its datagram follow.
[[gnu::noinline]] void remember_fragment(const burst &bu, const sluice_pkt &p, uint32_t vid, uint32_t bid)
{
	worker_state &st = bu.st;
	sluice_flow_key fk;
	sluice_frag_key(&fk, p.key.family, p.key.src, p.key.dst, p.frag_id, p.key.proto);
	const uint32_t h = sluice_flow_hash(&fk);
	sluice_ct_insert(sluice_ct_table_bucket(st.ct, h), &fk, sluice_ct_tag(h), bid, vid, SLUICE_CT_FRAG,
			 st.now_s, &st.ct->to, nullptr);
	bu.count(SLUICE_CNT_frag_first);
}

// What is not a VIP service's packet but is for a VIP address: later
// fragments, echo requests, unmatched ICMP errors, other protocols. Rare, so
// out of line.
[[gnu::noinline]] action vip_address_packet(const burst &bu, rte_mbuf *m, pkt_ctx &c)
{
	const sluice_pkt &p = c.p;
	worker_state &st = bu.st;
	switch (p.kind) {
	case SLUICE_PKT_FRAG: {
		sluice_flow_key fk;
		sluice_frag_key(&fk, p.key.family, p.key.src, p.key.dst, p.frag_id, p.key.proto);
		uint32_t h = sluice_flow_hash(&fk);
		sluice_ct_entry *e = sluice_ct_find(sluice_ct_table_bucket(st.ct, h), &fk, sluice_ct_tag(h),
						    st.now_s, &st.ct->to);
		if (!e) {
			bu.count(SLUICE_CNT_drop_frag_no_first);
			return action::drop;
		}
		sluice_ct_update(e, 0, st.now_s);
		// Later fragments carry no ports, so their outer entropy (GUE
		// source port, flow label) comes from the fragment key's hash:
		// one datagram's later fragments still share one outer flow.
		bu.count(SLUICE_CNT_frag_followed);
		return forward(bu, m, c, e->vip_id & (SLUICE_MAX_VIPS - 1), e->backend_id, h);
	}
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
		bu.count(SLUICE_CNT_icmp_echo_replied);
		return action::reply;
	}
	case SLUICE_PKT_ICMP_ERROR:
		bu.count(SLUICE_CNT_drop_icmp_unmatched);
		return action::drop;
	default:
		bu.count(SLUICE_CNT_drop_vip_proto);
		return action::drop;
	}
}

[[gnu::always_inline]] inline action decide(const burst &bu, rte_mbuf *m, pkt_ctx &c, uint64_t &hits)
{
	const sluice_pkt &p = c.p;
	if (likely(c.vip != SLUICE_MAX_VIPS)) {
		uint32_t bid = pick_backend(bu, c, hits);
		if (unlikely(bid == SLUICE_MAGLEV_EMPTY)) {
			bu.count(SLUICE_CNT_drop_no_backend);
			return action::drop;
		}
		if (unlikely(p.kind == SLUICE_PKT_ICMP_ERROR))
			bu.count(SLUICE_CNT_icmp_error_forwarded);
		else if (unlikely(p.first_frag))
			remember_fragment(bu, p, c.vip, bid);
		return forward(bu, m, c, c.vip, bid, c.hash);
	}
	if (p.kind == SLUICE_PKT_NOT_IP) {
		bu.count(SLUICE_CNT_pass_not_vip);
		return action::kernel;
	}
	if (unlikely(!bu.snap)) {
		bu.count(SLUICE_CNT_drop_no_snapshot);
		return action::drop;
	}
	// Not a VIP service: a VIP address still keeps what is not for the kernel.
	if (!is_vip_address(bu.snap, p)) {
		bu.count(SLUICE_CNT_pass_not_vip);
		return action::kernel;
	}
	return vip_address_packet(bu, m, c);
}

// The VIP service of the last packet looked up, by the key words that
// select it: the destination address, and the word holding the destination
// port, protocol and family (flow.h's layout; its source port masked out).
struct vip_memo {
	uint64_t dst0 = 0, dst1 = 0;
	uint64_t rest = ~0ull; // matches no parsed packet: its family byte is 0xFF
	uint32_t vip = SLUICE_MAX_VIPS;
};

constexpr uint64_t memo_rest_mask = 0x0000FFFFFFFF0000ull; // dport, proto, family

inline uint32_t find_vip(const sluice_snapshot *s, const sluice_flow_key &k, vip_memo &memo)
{
	uint64_t w[5];
	std::memcpy(w, &k, sizeof(w));
	const uint64_t rest = w[4] & memo_rest_mask;
	if (w[2] != memo.dst0 || w[3] != memo.dst1 || rest != memo.rest) {
		memo.vip = sluice_vip_find(s, k.dst, k.family, k.dport_be, k.proto);
		memo.dst0 = w[2];
		memo.dst1 = w[3];
		memo.rest = rest;
	}
	return memo.vip;
}

} // namespace

void process_burst(worker_state &st, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out)
{
	static_assert(sizeof(sluice_flow_key) == 40 && offsetof(sluice_flow_key, dport_be) == 34 &&
			      offsetof(sluice_flow_key, proto) == 36 && offsetof(sluice_flow_key, family) == 37,
		      "vip_memo's mask names dport, proto and family in the key's fifth word");
	pkt_ctx ctx[burst_size];
	action act[burst_size];
	burst bu(st, snap);
	out.n_tx = 0;
	out.n_kernel = 0;

	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));

	// Stage 1: parse, find the VIP, hash, prefetch the bucket's tag line.
	uint64_t rx_bytes = 0;
	vip_memo memo;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		pkt_ctx &c = ctx[i];
		rx_bytes += m->pkt_len;
		const uint8_t *data = rte_pktmbuf_mtod(m, const uint8_t *);
		uint32_t r = sluice_parse(data, data + m->data_len, &c.p);
		c.vip = SLUICE_MAX_VIPS;
		if (unlikely(r != SLUICE_PARSE_OK)) {
			bu.count(static_cast<sluice_counter>(r));
			act[i] = action::drop;
			continue;
		}
		act[i] = action::kernel; // decided in stage 2
		if (likely(snap != nullptr) &&
		    likely(c.p.kind == SLUICE_PKT_L4 || c.p.kind == SLUICE_PKT_ICMP_ERROR)) {
			c.vip = find_vip(snap, c.p.key, memo);
			if (likely(c.vip != SLUICE_MAX_VIPS)) {
				c.hash = sluice_flow_hash(&c.p.key);
				c.bucket = sluice_ct_table_bucket(st.ct, c.hash);
				c.tag = sluice_ct_tag(c.hash);
				sluice_ct_prefetch(c.bucket);
			}
		}
	}
	// Stage 1b: the tag lines have arrived meanwhile; prefetch the line of
	// the way each flow is in, if not the tag line itself.
	for (uint16_t i = 0; i < n; i++)
		if (ctx[i].vip != SLUICE_MAX_VIPS)
			sluice_ct_prefetch_ways(ctx[i].bucket, ctx[i].tag);
	st.stats->counters[SLUICE_CNT_rx_packets] += n;
	st.stats->counters[SLUICE_CNT_rx_bytes] += rx_bytes;

	// Stage 2: decide and rewrite.
	uint64_t hits = 0, tx_packets = 0, tx_bytes = 0;
	uint32_t run_vip = SLUICE_MAX_VIPS; // the VIP of the current run of forwarded packets
	uint64_t run_packets = 0, run_bytes = 0;
	sluice_obj_counters *const vip_cnt = st.stats->vip;
	sluice_obj_counters *const backend_cnt = st.stats->backend;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		pkt_ctx &c = ctx[i];
		if (act[i] != action::drop)
			act[i] = decide(bu, m, c, hits);
		switch (act[i]) {
		case action::forward: {
			tx_packets++;
			tx_bytes += m->pkt_len;
			// Consecutive packets mostly share a VIP: its counters are
			// written once per run of them.
			if (c.fwd_vip != run_vip) {
				if (run_vip != SLUICE_MAX_VIPS) {
					vip_cnt[run_vip].packets += run_packets;
					vip_cnt[run_vip].bytes += run_bytes;
				}
				run_vip = c.fwd_vip;
				run_packets = run_bytes = 0;
			}
			run_packets++;
			run_bytes += c.p.l3_len;
			sluice_obj_counters &bc = backend_cnt[c.fwd_backend];
			bc.packets++;
			bc.bytes += c.p.l3_len;
			out.tx[out.n_tx++] = m;
			break;
		}
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
	if (run_vip != SLUICE_MAX_VIPS) {
		vip_cnt[run_vip].packets += run_packets;
		vip_cnt[run_vip].bytes += run_bytes;
	}
	uint64_t *cnt = st.stats->counters;
	cnt[SLUICE_CNT_tx_packets] += tx_packets;
	cnt[SLUICE_CNT_tx_bytes] += tx_bytes;
	cnt[SLUICE_CNT_conn_hit] += hits;
}

} // namespace sluice
