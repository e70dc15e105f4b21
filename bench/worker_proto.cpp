// SPDX-License-Identifier: Apache-2.0
// See worker_proto.h. What differs from dataplane/worker.cpp, each a
// proposal of docs/performance.md:
//  1. a parser for the common packet that writes the flow key's five words
//     directly (no 64-byte memset, no VLAN/extension/ICMP branches);
//  2. the VIP lookup of the previous packet reused when the destination,
//     port and protocol are the same (one compare instead of two hashes and
//     probes);
//  3. forwarding inlined, the mbuf trimmed and prepended in one step, the
//     Ethernet header written whole instead of memmove'd and patched;
//  4. the outer IPv4 checksum summed as five 32-bit words instead of the
//     BPF-shaped loop of ten 16-bit ones;
//  5. counters summed per burst in registers: rx/tx packets and bytes,
//     conn_hit, and the VIP's packets and bytes while consecutive packets
//     share a VIP.
// The connection table, the flow hash, Maglev and the outer header writers
// are the shared ones from include/sluice/, unchanged.
#include "worker_proto.h"

#include <sluice/encap.h>
#include <sluice/maglev.h>
#include <sluice/parse.h>

#include <rte_branch_prediction.h>
#include <rte_prefetch.h>

#include <cstring>

namespace sluice::proto {

namespace {

// The most a forwarding mode adds: outer IPv6 and GUE (40 + 12).
constexpr uint16_t max_encap = 52;

struct fast_pkt {
	sluice_flow_key key;
	uint32_t hash;
	uint32_t vip;
	sluice_ct_bucket *bucket;
	uint16_t l3_len;
	uint8_t tcp_flags;
	uint8_t tos;
};

inline uint16_t load16(const uint8_t *p)
{
	uint16_t v;
	std::memcpy(&v, p, 2);
	return v;
}

inline uint32_t load32(const uint8_t *p)
{
	uint32_t v;
	std::memcpy(&v, p, 4);
	return v;
}

// Ethernet (untagged) + IPv4 (no options, not a fragment) or IPv6 (no
// extension header) + TCP or UDP, whole in the first segment. Anything else:
// false, and process_burst parses it.
inline bool parse_fast(const uint8_t *d, uint32_t len, fast_pkt &f)
{
	uint64_t *w = reinterpret_cast<uint64_t *>(&f.key);
	const uint16_t type = load16(d + 12);
	const uint8_t *l4;
	uint32_t l4_room; // bytes of the IP packet from the transport header on
	uint8_t proto;
	if (likely(type == sluice_htons(SLUICE_ETH_P_IPV4))) {
		const uint8_t *ip = d + 14;
		if (unlikely(len < 14 + 20 || ip[0] != 0x45))
			return false;
		const uint32_t total = sluice_ntohs(load16(ip + 2));
		if (unlikely(total < 20 || 14 + total > len ||
			     (sluice_ntohs(load16(ip + 6)) & (SLUICE_IPV4_MF | SLUICE_IPV4_OFFSET_MASK))))
			return false;
		proto = ip[9];
		w[0] = load32(ip + 12);
		w[1] = 0;
		w[2] = load32(ip + 16);
		w[3] = 0;
		f.l3_len = static_cast<uint16_t>(total);
		f.tos = ip[1];
		l4 = ip + 20;
		l4_room = total - 20;
		w[4] = static_cast<uint64_t>(SLUICE_AF_INET) << 40;
	} else if (type == sluice_htons(SLUICE_ETH_P_IPV6)) {
		const uint8_t *ip = d + 14;
		if (unlikely(len < 14 + 40))
			return false;
		const uint32_t vtc = sluice_ntohl(load32(ip));
		const uint32_t total = 40 + sluice_ntohs(load16(ip + 4));
		if (unlikely((vtc >> 28) != 6 || 14 + total > len))
			return false;
		proto = ip[6];
		std::memcpy(&w[0], ip + 8, 32);
		f.l3_len = static_cast<uint16_t>(total);
		f.tos = static_cast<uint8_t>(vtc >> 20);
		l4 = ip + 40;
		l4_room = total - 40;
		w[4] = static_cast<uint64_t>(SLUICE_AF_INET6) << 40;
	} else {
		return false;
	}
	if (proto == SLUICE_IPPROTO_TCP) {
		if (unlikely(l4_room < 20))
			return false;
		const uint32_t doff = static_cast<uint32_t>(l4[12] >> 4) * 4;
		if (unlikely(doff < 20 || doff > l4_room))
			return false;
		f.tcp_flags = l4[13];
	} else if (proto == SLUICE_IPPROTO_UDP) {
		if (unlikely(l4_room < 8))
			return false;
		f.tcp_flags = 0;
	} else {
		return false;
	}
	w[4] |= static_cast<uint64_t>(load32(l4)) | static_cast<uint64_t>(proto) << 32;
	return true;
}

// sluice_ipv4_csum() of a 20-byte header, as five 32-bit words: the same
// one's-complement sum, folded the same way.
inline uint16_t ipv4_csum_fast(const uint8_t *h)
{
	uint64_t s = static_cast<uint64_t>(load32(h)) + load32(h + 4) + load32(h + 8) + load32(h + 12) +
		     load32(h + 16);
	s = (s & 0xFFFFFFFF) + (s >> 32);
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	return static_cast<uint16_t>(~s);
}

} // namespace

void process_burst(worker_state &st, const sluice_snapshot *snap, rte_mbuf **pkts, uint16_t n,
		   burst_result &out)
{
	fast_pkt fp[burst_size];
	rte_mbuf *slow[burst_size];
	uint16_t fast_idx[burst_size];
	uint16_t n_fast = 0, n_slow = 0;
	out.n_tx = 0;
	out.n_kernel = 0;
	if (unlikely(!snap)) {
		sluice::process_burst(st, snap, pkts, n, out);
		return;
	}
	uint32_t mtu = st.params.port_mtu;
	if (snap->node.mtu && snap->node.mtu < mtu)
		mtu = snap->node.mtu;

	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));

	// Stage 1: parse, find the VIP (the previous packet's, usually), hash,
	// prefetch the bucket.
	uint64_t rx_bytes = 0;
	uint64_t last_vip_key[3] = {~0ull, ~0ull, ~0ull};
	uint32_t last_vip = SLUICE_MAX_VIPS;
	for (uint16_t i = 0; i < n; i++) {
		rte_mbuf *m = pkts[i];
		fast_pkt &f = fp[n_fast];
		const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
		if (unlikely(m->nb_segs != 1 || rte_pktmbuf_headroom(m) < max_encap ||
			     !parse_fast(d, m->data_len, f) || uint32_t{f.l3_len} + max_encap > mtu)) {
			slow[n_slow++] = m;
			continue;
		}
		const uint64_t *w = reinterpret_cast<const uint64_t *>(&f.key);
		const uint64_t port_proto_family = w[4] & 0xFFFFFFFF0000ull;
		if (w[2] != last_vip_key[0] || w[3] != last_vip_key[1] || port_proto_family != last_vip_key[2]) {
			last_vip = sluice_vip_find(snap, f.key.dst, f.key.family, f.key.dport_be, f.key.proto);
			last_vip_key[0] = w[2];
			last_vip_key[1] = w[3];
			last_vip_key[2] = port_proto_family;
		}
		if (unlikely(last_vip == SLUICE_MAX_VIPS ||
			     (snap->vips[last_vip].mode != SLUICE_MODE_IPIP &&
			      snap->vips[last_vip].mode != SLUICE_MODE_GUE))) {
			slow[n_slow++] = m;
			continue;
		}
		f.vip = last_vip;
		f.hash = sluice_flow_hash(&f.key);
		f.bucket = sluice_ct_table_bucket(st.ct, f.hash);
		sluice_ct_prefetch(f.bucket);
		rx_bytes += m->pkt_len;
		fast_idx[n_fast++] = i;
	}

	// Stage 2: the backend, the headers, the counters.
	uint64_t *cnt = st.stats->counters;
	const sluice_ct_timeouts &to = st.ct->to;
	const uint32_t now = st.now_s;
	const bool sw_csum = !st.params.tx_ipv4_cksum_offload;
	uint64_t hits = 0, tx_bytes = 0;
	uint32_t run_vip = SLUICE_MAX_VIPS;
	uint64_t run_packets = 0, run_bytes = 0;
	uint8_t port_mac[6];
	std::memcpy(port_mac, st.params.port_mac.addr_bytes, 6);
	for (uint16_t k = 0; k < n_fast; k++) {
		fast_pkt &f = fp[k];
		rte_mbuf *m = pkts[fast_idx[k]];
		const sluice_vip &v = snap->vips[f.vip];
		sluice_ct_entry *e = sluice_ct_find(f.bucket, &f.key, now, &to);
		uint32_t bid;
		if (likely(e && e->backend_id < SLUICE_MAX_BACKENDS &&
			   sluice_backend_keeps_flows(&snap->backends[e->backend_id], f.vip))) {
			sluice_ct_update(e, f.tcp_flags, now);
			hits++;
			bid = e->backend_id;
		} else {
			const uint32_t slot = sluice_maglev_slot(f.hash, v.ring_inv, v.ring_size);
			bid = snap->rings[(v.ring_offset + slot) & (SLUICE_RING_POOL - 1)];
			if (unlikely(bid == SLUICE_MAGLEV_EMPTY)) {
				cnt[SLUICE_CNT_drop_no_backend]++;
				rte_pktmbuf_free(m);
				continue;
			}
			if (e) {
				e->backend_id = bid;
				e->vip_id = f.vip;
				sluice_ct_update(e, f.tcp_flags, now);
				cnt[SLUICE_CNT_conn_repick]++;
			} else {
				bool evicted = false;
				sluice_ct_insert(f.bucket, &f.key, bid, f.vip,
						 sluice_ct_initial_state(f.key.proto, f.tcp_flags), now, &to,
						 &evicted);
				cnt[SLUICE_CNT_conn_new]++;
				cnt[SLUICE_CNT_conn_evict] += evicted;
				st.stats->vip[f.vip].new_flows++;
				st.stats->backend[bid & (SLUICE_MAX_BACKENDS - 1)].new_flows++;
			}
		}
		const sluice_backend &b = snap->backends[bid & (SLUICE_MAX_BACKENDS - 1)];
		if (unlikely(!(b.flags & SLUICE_BACKEND_HAS_MAC))) {
			cnt[SLUICE_CNT_drop_no_nexthop]++;
			rte_pktmbuf_free(m);
			continue;
		}
		// Trim the frame's padding and open the outer headers' room in one step.
		const uint16_t enc = sluice_encap_len(v.mode, b.family);
		const uint16_t len = static_cast<uint16_t>(14 + f.l3_len + enc);
		m->data_off = static_cast<uint16_t>(m->data_off - enc);
		m->data_len = len;
		m->pkt_len = len;
		uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
		uint8_t *outer = frame + 14;
		sluice_encap_write(outer, v.mode, &snap->node, &b, v.gue_port_be, f.hash, f.key.family, f.tos,
				   f.l3_len, false);
		const uint16_t type = sluice_htons(b.family == SLUICE_AF_INET6 ? SLUICE_ETH_P_IPV6
									   : SLUICE_ETH_P_IPV4);
		if (b.family == SLUICE_AF_INET) {
			if (sw_csum) {
				const uint16_t c = ipv4_csum_fast(outer);
				std::memcpy(outer + 10, &c, 2);
			} else {
				m->l2_len = 14;
				m->l3_len = sizeof(sluice_ipv4_hdr);
				m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
			}
		}
		std::memcpy(frame, b.mac, 6);
		std::memcpy(frame + 6, port_mac, 6);
		std::memcpy(frame + 12, &type, 2);

		if (f.vip != run_vip) {
			if (run_vip != SLUICE_MAX_VIPS) {
				st.stats->vip[run_vip].packets += run_packets;
				st.stats->vip[run_vip].bytes += run_bytes;
			}
			run_vip = f.vip;
			run_packets = run_bytes = 0;
		}
		run_packets++;
		run_bytes += f.l3_len;
		sluice_obj_counters &bc = st.stats->backend[bid & (SLUICE_MAX_BACKENDS - 1)];
		bc.packets++;
		bc.bytes += f.l3_len;
		tx_bytes += len;
		out.tx[out.n_tx++] = m;
	}
	if (run_vip != SLUICE_MAX_VIPS) {
		st.stats->vip[run_vip].packets += run_packets;
		st.stats->vip[run_vip].bytes += run_bytes;
	}
	cnt[SLUICE_CNT_rx_packets] += n_fast;
	cnt[SLUICE_CNT_rx_bytes] += rx_bytes;
	cnt[SLUICE_CNT_conn_hit] += hits;
	cnt[SLUICE_CNT_tx_packets] += out.n_tx;
	cnt[SLUICE_CNT_tx_bytes] += tx_bytes;

	if (unlikely(n_slow)) {
		burst_result rest;
		sluice::process_burst(st, snap, slow, n_slow, rest);
		for (uint16_t i = 0; i < rest.n_tx; i++)
			out.tx[out.n_tx++] = rest.tx[i];
		for (uint16_t i = 0; i < rest.n_kernel; i++)
			out.kernel[out.n_kernel++] = rest.kernel[i];
	}
}

} // namespace sluice::proto
