// SPDX-License-Identifier: Apache-2.0
/*
 * The XDP packet path: dataplane/worker.cpp's decisions, one packet at a
 * time, over the same include/sluice/ code — parse (parse.h), VIP lookup
 * semantics (shm.h), flow hash (flow.h), connection table (conntrack.h),
 * Maglev slot (maglev.h), outer headers and ICMP messages (encap.h) — so
 * that for the same packet and snapshot both dataplanes pick the same
 * backend and write the same bytes from the IP header on. The maps are laid
 * out in maps.h; sluice-xdp fills them from the snapshot.
 *
 * Where the two paths must differ in form, they differ only in form:
 *  - the snapshot is read through maps (one bank of sl_banks, which holds
 *    the snapshot's bytes up to rings[], and of sl_rings, chosen once per
 *    packet: maps.h) instead of a pointer to the segment's slot;
 *  - mbuf prepend/trim become bpf_xdp_adjust_head/_tail, after which every
 *    packet pointer is reloaded and checked again;
 *  - the connection table is one set of buckets per CPU instead of per lcore.
 *
 * Verifier notes. Every access is preceded by a check against data_end of
 * exactly the bytes it touches. Offsets that come from struct sluice_pkt
 * (16-bit fields on the stack, so 0..65535 to the verifier) are masked to
 * the range they really have before they are added to a packet pointer:
 * the verifier learns nothing from a bounds check on a pointer whose offset
 * may exceed MAX_PACKET_OFF (0xffff) once the access size is added. Each
 * mask is lossless and says why.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <sluice/conntrack.h>
#include <sluice/encap.h>
#include <sluice/maglev.h>
#include <sluice/parse.h>
#include <sluice/shm.h>

#include "maps.h"

/* ------------------------------------------------------------ settings */

/* Set by sluice-xdp before load (skeleton rodata): the interface's MAC (its
 * six bytes in frame order, read as three 16-bit words: eth_put_src()) and
 * MTU, the connection table's geometry and timeouts, the rings' bank size.
 * Frozen at load, so the verifier knows them as constants. */
const volatile uint16_t cfg_port_mac[SLUICE_ETH_ALEN / 2] = {0};
const volatile uint32_t cfg_port_mtu = 1500;
const volatile uint32_t cfg_ct_buckets = 1;	/* per CPU; >= 1 */
const volatile uint32_t cfg_ring_entries = 16;	/* per bank; a power of two, >= 16 */
const volatile struct sluice_ct_timeouts cfg_ct_timeouts = {
	SLUICE_CT_TIMEOUT_SYN_S, SLUICE_CT_TIMEOUT_EST_S, SLUICE_CT_TIMEOUT_FIN_S,
	SLUICE_CT_TIMEOUT_UDP_S, SLUICE_CT_TIMEOUT_FRAG_S,
};

/* ---------------------------------------------------------------- maps */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, uint32_t);
	__type(value, struct sluice_xdp_state);
} sl_state SEC(".maps");

/* The snapshot up to rings[], per bank: node, VIP hash, VIPs, backends. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_XDP_BANKS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, uint32_t);
	__type(value, struct sluice_xdp_bank);
} sl_banks SEC(".maps");

/* max_entries set by sluice-xdp: 4 banks * cfg_ring_entries / 16. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, uint32_t);
	__type(value, struct sluice_xdp_ring_chunk);
} sl_rings SEC(".maps");

/* max_entries set by sluice-xdp: possible CPUs * cfg_ct_buckets. One array
 * rather than a PERCPU_ARRAY: a large per-CPU allocation is what the percpu
 * allocator refuses first, and one vmalloc'd array of buckets is what the
 * DPDK worker's table is. Each CPU writes only its own buckets. Pinned, so
 * flows survive a restart of sluice-xdp. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_ct_bucket);
} sl_ct SEC(".maps");

/* The CPU's counters, the connection table's clock and the last VIP
 * lookup (maps.h struct sluice_xdp_cpu). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_xdp_cpu);
} sl_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_MAX_VIPS);
	__type(key, uint32_t);
	__type(value, struct sluice_obj_counters);
} sl_vip_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_MAX_BACKENDS);
	__type(key, uint32_t);
	__type(value, struct sluice_obj_counters);
} sl_be_cnt SEC(".maps");

/* ------------------------------------------------------------- context */

enum action { ACT_DROP, ACT_KERNEL, ACT_FORWARD, ACT_REPLY };

/* What one packet's decision needs besides the packet: worker_state. */
struct run {
	struct sluice_xdp_counters *cnt;
	struct sluice_xdp_vip_memo *memo;
	/* The active bank, read as the snapshot it copies (maps.h): shm.h's
	 * lookups take a snapshot, and only touch what a bank holds. */
	const struct sluice_snapshot *s;
	uint32_t bank;
	uint32_t now_s;
	struct sluice_ct_timeouts to;
};

static __always_inline void count(struct run *r, uint32_t c)
{
	r->cnt->c[c & (SLUICE_COUNTER_SLOTS - 1)]++;
}

/* bpf_ktime_get_coarse_ns() / 10^9, dividing only when the second changed
 * (maps.h struct sluice_xdp_clock): a 64-bit divide per packet cost more
 * than the rest of the clock. */
static __always_inline uint32_t now_seconds(struct sluice_xdp_clock *c)
{
	uint64_t t = bpf_ktime_get_coarse_ns();
	if (t - c->second_ns >= 1000000000ull) {
		uint64_t sec = t / 1000000000ull;
		c->now_s = sec;
		c->second_ns = sec * 1000000000ull;
	}
	return (uint32_t)c->now_s;
}

static __always_inline uint8_t *pkt_data(struct xdp_md *xdp)
{
	return (uint8_t *)(long)xdp->data;
}

static __always_inline uint8_t *pkt_end(struct xdp_md *xdp)
{
	return (uint8_t *)(long)xdp->data_end;
}

/* l2_len is 14 or 18; & 0x1F keeps it and bounds it for the verifier. */
static __always_inline uint32_t l2_of(const struct sluice_pkt *p)
{
	return p->l2_len & 0x1F;
}

static __always_inline const struct sluice_backend *backend_of(const struct run *r, uint32_t bid)
{
	return &r->s->backends[bid & (SLUICE_MAX_BACKENDS - 1)];
}

/* s->rings[pos]: the mirror copies rings[0, ring_used) to the same offsets
 * of the bank and refuses a snapshot whose tables reach past
 * cfg_ring_entries, so for every published snapshot this is the entry the
 * DPDK worker reads at (pos & (SLUICE_RING_POOL - 1)). */
static __always_inline uint32_t ring_entry(const struct run *r, uint32_t pos)
{
	uint32_t i = r->bank * cfg_ring_entries + (pos & (cfg_ring_entries - 1));
	uint32_t k = i / SLUICE_XDP_RING_CHUNK;
	const struct sluice_xdp_ring_chunk *c = bpf_map_lookup_elem(&sl_rings, &k);
	if (!c)
		return SLUICE_MAGLEV_EMPTY;
	return c->e[i & (SLUICE_XDP_RING_CHUNK - 1)];
}

static __always_inline struct sluice_ct_bucket *ct_bucket(uint32_t flow_hash)
{
	uint32_t k = bpf_get_smp_processor_id() * cfg_ct_buckets +
		     sluice_ct_bucket_index(flow_hash, cfg_ct_buckets);
	return bpf_map_lookup_elem(&sl_ct, &k);
}

static __always_inline struct sluice_obj_counters *vip_counters(uint32_t vid)
{
	uint32_t k = vid & (SLUICE_MAX_VIPS - 1);
	return bpf_map_lookup_elem(&sl_vip_cnt, &k);
}

static __always_inline struct sluice_obj_counters *backend_counters(uint32_t bid)
{
	uint32_t k = bid & (SLUICE_MAX_BACKENDS - 1);
	return bpf_map_lookup_elem(&sl_be_cnt, &k);
}

/*
 * sluice_vip_find() and is_vip_address() (worker.cpp), with shm.h's own
 * lookups over the bank's copy of the snapshot's VIP hash. The order is the
 * only liberty taken: exact service, then the address entry, and the port-0
 * service only for a VIP address. A port-0 VIP always has its address entry
 * (the snapshot builder places one per VIP address; the mirror refuses a
 * snapshot without), so the answers are the worker's, and traffic that is
 * not for a VIP costs two lookups.
 */
struct vip_match {
	uint32_t service; /* index in vips[]; SLUICE_MAX_VIPS: no service */
	uint32_t address; /* 1: the destination is a VIP address */
};

static __always_inline const struct sluice_vip *vip_of(const struct run *r, uint32_t id)
{
	return &r->s->vips[id & (SLUICE_MAX_VIPS - 1)];
}

static __always_inline struct vip_match vip_find(const struct run *r, const struct sluice_pkt *p)
{
	struct vip_match m;
	m.service = sluice_vip_find_exact(r->s, p->key.dst, p->key.family, p->key.dport_be, p->key.proto);
	m.address = 1;
	if (m.service == SLUICE_MAX_VIPS) {
		m.address = sluice_vip_find_address(r->s, p->key.dst, p->key.family) != SLUICE_MAX_VIPS;
		if (m.address)
			m.service = sluice_vip_find_exact(r->s, p->key.dst, p->key.family, 0, p->key.proto);
	}
	return m;
}

/* vip_find(), or what it answered for the CPU's last packet of the same
 * destination, port, protocol and family under the same snapshot (maps.h
 * struct sluice_xdp_vip_memo): traffic to one service hashes its key once. */
static __always_inline struct vip_match vip_find_memo(const struct run *r, struct sluice_xdp_vip_memo *memo,
						      uint64_t active, const struct sluice_pkt *p)
{
	const uint64_t *w = (const uint64_t *)&p->key;
	const uint64_t rest = w[4] & SLUICE_XDP_MEMO_REST;
	struct vip_match m;
	if (memo->active == active && memo->dst0 == w[2] && memo->dst1 == w[3] && memo->rest == rest) {
		m.service = memo->service;
		m.address = memo->address;
		return m;
	}
	m = vip_find(r, p);
	memo->active = active;
	memo->dst0 = w[2];
	memo->dst1 = w[3];
	memo->rest = rest;
	memo->service = m.service;
	memo->address = m.address;
	return m;
}

/* --------------------------------------------------------- frame edits */

/* Keeps exactly the Ethernet header and the IP packet (worker.cpp
 * trim_to_ip): trailing padding of short frames is not part of the packet. */
static __always_inline int trim_to(struct xdp_md *xdp, uint32_t want)
{
	int len = (int)(pkt_end(xdp) - pkt_data(xdp));
	if (len > (int)want)
		return bpf_xdp_adjust_tail(xdp, (int)want - len);
	return 0;
}

/* After bpf_xdp_adjust_head opened `gap` bytes in front, moves the Ethernet
 * header (and VLAN tag) to the new front: worker.cpp open_gap(). gap is a
 * constant at every call and larger than the 18-byte header, so the two
 * ranges never overlap. */
static __always_inline bool move_l2(struct xdp_md *xdp, uint32_t gap, uint32_t l2)
{
	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	uint8_t *from = data + gap;
	if (l2 == 18) {
		if (data + 18 > end || from + 18 > end)
			return false;
		__builtin_memcpy(data, from, 18);
	} else {
		if (data + 14 > end || from + 14 > end)
			return false;
		__builtin_memcpy(data, from, 14);
	}
	return true;
}

/*
 * MACs are copied as three 16-bit words: a byte-wise memcpy (what clang
 * emits for a pointer it knows nothing about the alignment of) costs four
 * times the instructions. The Ethernet header starts 2-byte aligned: the
 * verifier of an architecture without efficient unaligned access checks
 * packet accesses against NET_IP_ALIGN (2), and a backend's `mac` is at
 * offset 18 of its record (shm.h).
 */
static __always_inline void eth_put_src(uint8_t *eth)
{
	uint16_t *d = (uint16_t *)(void *)eth;
	d[3] = cfg_port_mac[0];
	d[4] = cfg_port_mac[1];
	d[5] = cfg_port_mac[2];
}

static __always_inline void eth_put_dst(uint8_t *eth, const uint8_t mac[SLUICE_ETH_ALEN])
{
	uint16_t *d = (uint16_t *)(void *)eth;
	const uint16_t *m = (const uint16_t *)(const void *)mac;
	uint16_t m0 = m[0], m1 = m[1], m2 = m[2];
	d[0] = m0;
	d[1] = m1;
	d[2] = m2;
}

/* Ethernet of a packet sent back where it came from (worker.cpp reply_l2). */
static __always_inline bool reply_l2(struct xdp_md *xdp)
{
	uint8_t *data = pkt_data(xdp);
	if (data + sizeof(struct sluice_eth_hdr) > pkt_end(xdp))
		return false;
	eth_put_dst(data, data + SLUICE_ETH_ALEN);
	eth_put_src(data);
	return true;
}

/* ------------------------------------------------------------- actions */

/* Too big to encapsulate: tell the client, from the VIP, how much fits
 * (worker.cpp too_big). */
static __always_inline enum action too_big(struct run *r, struct xdp_md *xdp,
					   const struct sluice_pkt *p, uint32_t room)
{
	uint16_t quote = sluice_icmp_quote_len(p->l3_len);
	uint32_t l2 = l2_of(p);
	if (p->key.family == SLUICE_AF_INET) {
		const uint32_t hdr = sizeof(struct sluice_ipv4_hdr) + sizeof(struct sluice_icmp_hdr);
		if (!p->df) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
		if (bpf_xdp_adjust_head(xdp, -(int)hdr) || !move_l2(xdp, hdr, l2) ||
		    trim_to(xdp, l2 + hdr + quote)) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
		uint8_t *data = pkt_data(xdp);
		uint8_t *end = pkt_end(xdp);
		uint8_t *ip = data + l2;
		uint8_t *q = ip + hdr;
		/* The original header's addresses are read from the quote. */
		if (q + sizeof(struct sluice_ipv4_hdr) > end) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
		sluice_icmp4_frag_needed((struct sluice_ipv4_hdr *)ip,
					 (struct sluice_icmp_hdr *)(ip + sizeof(struct sluice_ipv4_hdr)),
					 q, end, quote, (uint16_t)room);
	} else {
		const uint32_t hdr = sizeof(struct sluice_ipv6_hdr) + sizeof(struct sluice_icmp_hdr);
		if (bpf_xdp_adjust_head(xdp, -(int)hdr) || !move_l2(xdp, hdr, l2) ||
		    trim_to(xdp, l2 + hdr + quote)) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
		uint8_t *data = pkt_data(xdp);
		uint8_t *end = pkt_end(xdp);
		uint8_t *ip = data + l2;
		uint8_t *q = ip + hdr;
		if (q + sizeof(struct sluice_ipv6_hdr) > end) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
		uint32_t mtu = room < SLUICE_IPV6_MIN_MTU ? SLUICE_IPV6_MIN_MTU : room;
		sluice_icmp6_too_big((struct sluice_ipv6_hdr *)ip,
				     (struct sluice_icmp_hdr *)(ip + sizeof(struct sluice_ipv6_hdr)), q,
				     end, quote, mtu);
	}
	if (!reply_l2(xdp)) {
		count(r, SLUICE_CNT_drop_too_big);
		return ACT_DROP;
	}
	count(r, SLUICE_CNT_icmp_too_big_sent);
	return ACT_REPLY;
}

/*
 * Writes the outer headers in front of the inner packet, which the caller
 * moved `enc` bytes back. sluice_encap_write() chooses the header by the
 * backend's family and the mode; the verifier cannot tie that choice to a
 * bounds check made outside it, so the check is made here per case, with
 * the case's own size, and the writer is called with the mode as a
 * constant: clang folds the writer's own branch on the family into the one
 * taken here (the same load, nothing stored in between). The mode constant
 * is the VIP's mode for GUE, and IPIP for any other encapsulating value,
 * which sluice_encap_write() treats alike.
 */
static __always_inline bool write_outer(struct xdp_md *xdp, uint32_t l2, const struct sluice_vip *v,
					const struct sluice_node *node,
					const struct sluice_backend *b, const struct sluice_pkt *p,
					uint32_t hash)
{
	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	uint8_t *outer = data + l2;
	bool gue = v->mode == SLUICE_MODE_GUE;
	if (b->family == SLUICE_AF_INET6) {
		if (gue) {
			if (outer + SLUICE_ENCAP_IPV6_LEN + SLUICE_ENCAP_GUE_EXTRA > end)
				return false;
			sluice_encap_write(outer, SLUICE_MODE_GUE, node, b, v->gue_port_be, hash,
					   p->key.family, p->tos, p->l3_len, true);
		} else {
			if (outer + SLUICE_ENCAP_IPV6_LEN > end)
				return false;
			sluice_encap_write(outer, SLUICE_MODE_IPIP, node, b, v->gue_port_be, hash,
					   p->key.family, p->tos, p->l3_len, true);
		}
	} else {
		if (gue) {
			if (outer + SLUICE_ENCAP_IPV4_LEN + SLUICE_ENCAP_GUE_EXTRA > end)
				return false;
			sluice_encap_write(outer, SLUICE_MODE_GUE, node, b, v->gue_port_be, hash,
					   p->key.family, p->tos, p->l3_len, true);
		} else {
			if (outer + SLUICE_ENCAP_IPV4_LEN > end)
				return false;
			sluice_encap_write(outer, SLUICE_MODE_IPIP, node, b, v->gue_port_be, hash,
					   p->key.family, p->tos, p->l3_len, true);
		}
	}
	/* The ethertype is the last field of the L2 header, tagged or not. */
	uint16_t type_be = sluice_htons(b->family == SLUICE_AF_INET6 ? SLUICE_ETH_P_IPV6
								     : SLUICE_ETH_P_IPV4);
	if (data + 18 > end)
		return false;
	if (l2 == 18)
		__builtin_memcpy(data + 16, &type_be, 2);
	else
		__builtin_memcpy(data + 12, &type_be, 2);
	return true;
}

/* Sends the packet to backend `bid` of VIP `v` the VIP's way (worker.cpp
 * forward). */
static __always_inline enum action forward(struct run *r, struct xdp_md *xdp,
					   const struct sluice_pkt *p, const struct sluice_vip *v,
					   uint32_t vid, uint32_t bid, uint32_t hash)
{
	const struct sluice_backend *b = backend_of(r, bid);
	if (!b || !(b->flags & SLUICE_BACKEND_HAS_MAC)) {
		count(r, SLUICE_CNT_drop_no_nexthop);
		return ACT_DROP;
	}
	uint16_t enc = sluice_encap_len(v->mode, b->family);
	uint32_t mtu = cfg_port_mtu;
	if (r->s->node.mtu && r->s->node.mtu < mtu)
		mtu = r->s->node.mtu;
	if ((uint32_t)p->l3_len + enc > mtu) {
		if (p->kind == SLUICE_PKT_L4)
			return too_big(r, xdp, p, mtu - enc);
		count(r, SLUICE_CNT_drop_too_big);
		return ACT_DROP;
	}
	uint32_t rx_bytes = p->l3_len;
	uint32_t l2 = l2_of(p);
	if (trim_to(xdp, l2 + p->l3_len)) {
		count(r, SLUICE_CNT_drop_truncated); /* cannot happen: the frame holds the packet */
		return ACT_DROP;
	}
	if (enc) {
		/* enc is 20, 32, 40 or 52; the adjust takes a constant per case
		 * so that move_l2() sees a constant gap. An untagged Ethernet
		 * header is not moved: every byte of it is written below (the
		 * ethertype by write_outer(), the addresses after it), as the
		 * worker writes it whole. */
		int err;
		if (enc == SLUICE_ENCAP_IPV4_LEN)
			err = bpf_xdp_adjust_head(xdp, -(int)SLUICE_ENCAP_IPV4_LEN) ||
			      (l2 != 14 && !move_l2(xdp, SLUICE_ENCAP_IPV4_LEN, l2));
		else if (enc == SLUICE_ENCAP_IPV4_LEN + SLUICE_ENCAP_GUE_EXTRA)
			err = bpf_xdp_adjust_head(xdp, -(int)(SLUICE_ENCAP_IPV4_LEN + SLUICE_ENCAP_GUE_EXTRA)) ||
			      (l2 != 14 && !move_l2(xdp, SLUICE_ENCAP_IPV4_LEN + SLUICE_ENCAP_GUE_EXTRA, l2));
		else if (enc == SLUICE_ENCAP_IPV6_LEN)
			err = bpf_xdp_adjust_head(xdp, -(int)SLUICE_ENCAP_IPV6_LEN) ||
			      (l2 != 14 && !move_l2(xdp, SLUICE_ENCAP_IPV6_LEN, l2));
		else
			err = bpf_xdp_adjust_head(xdp, -(int)(SLUICE_ENCAP_IPV6_LEN + SLUICE_ENCAP_GUE_EXTRA)) ||
			      (l2 != 14 && !move_l2(xdp, SLUICE_ENCAP_IPV6_LEN + SLUICE_ENCAP_GUE_EXTRA, l2));
		/* No headroom: what open_gap() failing counts. */
		if (err || !write_outer(xdp, l2, v, &r->s->node, b, p, hash)) {
			count(r, SLUICE_CNT_drop_too_big);
			return ACT_DROP;
		}
	}
	uint8_t *data = pkt_data(xdp);
	if (data + sizeof(struct sluice_eth_hdr) > pkt_end(xdp)) {
		count(r, SLUICE_CNT_drop_truncated); /* cannot happen: checked above */
		return ACT_DROP;
	}
	eth_put_dst(data, b->mac);
	eth_put_src(data);

	struct sluice_obj_counters *vc = vip_counters(vid);
	struct sluice_obj_counters *bc = backend_counters(bid);
	if (vc) {
		vc->packets++;
		vc->bytes += rx_bytes;
	}
	if (bc) {
		bc->packets++;
		bc->bytes += rx_bytes;
	}
	return ACT_FORWARD;
}

/* The backend of a flow: its connection's if that backend still takes it,
 * else Maglev's pick (inserted, unless the packet is an ICMP error, which
 * never opens a connection). SLUICE_MAGLEV_EMPTY: none. (worker.cpp
 * pick_backend) */
static __always_inline uint32_t pick_backend(struct run *r, const struct sluice_pkt *p,
					     const struct sluice_vip *v, uint32_t vid, uint32_t hash)
{
	struct sluice_ct_bucket *bucket = ct_bucket(hash);
	struct sluice_ct_entry *e = 0;
	if (bucket)
		e = sluice_ct_find(bucket, &p->key, sluice_ct_tag(hash), r->now_s, &r->to);
	if (e) {
		uint32_t id = e->backend_id;
		const struct sluice_backend *b = backend_of(r, id);
		if (b && id < SLUICE_MAX_BACKENDS && sluice_backend_keeps_flows(b, vid)) {
			if (p->kind == SLUICE_PKT_L4)
				sluice_ct_update(e, p->tcp_flags, r->now_s);
			count(r, SLUICE_CNT_conn_hit);
			return id;
		}
	}
	uint32_t slot = sluice_maglev_slot(hash, v->ring_inv, v->ring_size);
	uint32_t bid = ring_entry(r, v->ring_offset + slot);
	if (bid == SLUICE_MAGLEV_EMPTY)
		return bid;
	if (e) {
		/* Its backend was removed or went down: the flow moves, once. */
		e->backend_id = bid;
		e->vip_id = vid;
		sluice_ct_update(e, p->tcp_flags, r->now_s);
		count(r, SLUICE_CNT_conn_repick);
		return bid;
	}
	if (p->kind != SLUICE_PKT_L4 || !bucket)
		return bid;
	bool evicted = false;
	sluice_ct_insert(bucket, &p->key, sluice_ct_tag(hash), bid, vid,
			 sluice_ct_initial_state(p->key.proto, p->tcp_flags), r->now_s, &r->to, &evicted);
	count(r, SLUICE_CNT_conn_new);
	if (evicted)
		count(r, SLUICE_CNT_conn_evict);
	struct sluice_obj_counters *vc = vip_counters(vid);
	struct sluice_obj_counters *bc = backend_counters(bid);
	if (vc)
		vc->new_flows++;
	if (bc)
		bc->new_flows++;
	return bid;
}

/* A first fragment went to `bid`: the later ones of its datagram follow
 * (worker.cpp remember_fragment). */
static __always_inline void remember_fragment(struct run *r, const struct sluice_pkt *p, uint32_t vid,
					      uint32_t bid)
{
	struct sluice_flow_key fk;
	sluice_frag_key(&fk, p->key.family, p->key.src, p->key.dst, p->frag_id, p->key.proto);
	uint32_t h = sluice_flow_hash(&fk);
	struct sluice_ct_bucket *b = ct_bucket(h);
	if (b)
		sluice_ct_insert(b, &fk, sluice_ct_tag(h), bid, vid, SLUICE_CT_FRAG, r->now_s, &r->to, 0);
	count(r, SLUICE_CNT_frag_first);
}

/* worker.cpp later_fragment. */
static __always_inline enum action later_fragment(struct run *r, struct xdp_md *xdp,
						  const struct sluice_pkt *p)
{
	struct sluice_flow_key fk;
	sluice_frag_key(&fk, p->key.family, p->key.src, p->key.dst, p->frag_id, p->key.proto);
	uint32_t h = sluice_flow_hash(&fk);
	struct sluice_ct_bucket *b = ct_bucket(h);
	struct sluice_ct_entry *e = b ? sluice_ct_find(b, &fk, sluice_ct_tag(h), r->now_s, &r->to) : 0;
	if (!e) {
		count(r, SLUICE_CNT_drop_frag_no_first);
		return ACT_DROP;
	}
	sluice_ct_update(e, 0, r->now_s);
	/* Later fragments carry no ports, so their outer entropy comes from
	 * the fragment key's hash, as on the DPDK path. The VIP is the entry's,
	 * by id (s->vips[vid]). */
	count(r, SLUICE_CNT_frag_followed);
	uint32_t vid = e->vip_id & (SLUICE_MAX_VIPS - 1);
	uint32_t bid = e->backend_id;
	return forward(r, xdp, p, vip_of(r, vid), vid, bid, h);
}

/* Echo request to a VIP address: answered in place (worker.cpp decide). */
static __always_inline enum action echo_reply(struct run *r, struct xdp_md *xdp,
					      const struct sluice_pkt *p)
{
	uint32_t l2 = l2_of(p);
	if (trim_to(xdp, l2 + p->l3_len)) {
		count(r, SLUICE_CNT_drop_truncated); /* cannot happen: the frame holds the packet */
		return ACT_DROP;
	}
	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	uint8_t *ip = data + l2;
	/* l4_off is at most 18 + 40 + 4 * 2048 (IPv6 with the longest walk):
	 * the mask keeps it and bounds it. */
	uint8_t *l4 = data + (p->l4_off & 0x3FFF);
	if (l4 + sizeof(struct sluice_icmp_hdr) > end) {
		count(r, SLUICE_CNT_drop_truncated);
		return ACT_DROP;
	}
	if (p->key.family == SLUICE_AF_INET) {
		if (ip + sizeof(struct sluice_ipv4_hdr) > end) {
			count(r, SLUICE_CNT_drop_truncated);
			return ACT_DROP;
		}
		sluice_icmp4_echo_reply((struct sluice_ipv4_hdr *)ip, (struct sluice_icmp_hdr *)l4);
	} else {
		if (ip + sizeof(struct sluice_ipv6_hdr) > end) {
			count(r, SLUICE_CNT_drop_truncated);
			return ACT_DROP;
		}
		sluice_icmp6_echo_reply((struct sluice_ipv6_hdr *)ip, (struct sluice_icmp_hdr *)l4);
	}
	if (!reply_l2(xdp)) {
		count(r, SLUICE_CNT_drop_truncated);
		return ACT_DROP;
	}
	count(r, SLUICE_CNT_icmp_echo_replied);
	return ACT_REPLY;
}

/* worker.cpp decide(), after the parse. */
static __always_inline enum action decide(struct run *r, struct xdp_md *xdp, struct sluice_pkt *p)
{
	if (p->kind == SLUICE_PKT_NOT_IP) {
		count(r, SLUICE_CNT_pass_not_vip);
		return ACT_KERNEL;
	}
	uint32_t zero = 0;
	const struct sluice_xdp_state *st = bpf_map_lookup_elem(&sl_state, &zero);
	uint64_t active = st ? *(volatile const uint64_t *)&st->active : 0;
	if (active == 0) {
		count(r, SLUICE_CNT_drop_no_snapshot);
		return ACT_DROP;
	}
	r->bank = sluice_xdp_active_bank(active);
	r->s = bpf_map_lookup_elem(&sl_banks, &r->bank);
	if (!r->s) {
		count(r, SLUICE_CNT_drop_no_snapshot); /* cannot happen: the mirror writes banks 0-3 */
		return ACT_DROP;
	}

	struct vip_match m = {SLUICE_MAX_VIPS, 0};
	if (p->kind == SLUICE_PKT_L4 || p->kind == SLUICE_PKT_ICMP_ERROR)
		m = vip_find_memo(r, r->memo, active, p);
	else
		m.address = sluice_vip_find_address(r->s, p->key.dst, p->key.family) != SLUICE_MAX_VIPS;

	if (m.service != SLUICE_MAX_VIPS) {
		uint32_t vid = m.service & (SLUICE_MAX_VIPS - 1);
		const struct sluice_vip *v = vip_of(r, vid);
		uint32_t hash = sluice_flow_hash(&p->key);
		uint32_t bid = pick_backend(r, p, v, vid, hash);
		if (bid == SLUICE_MAGLEV_EMPTY) {
			count(r, SLUICE_CNT_drop_no_backend);
			return ACT_DROP;
		}
		if (p->kind == SLUICE_PKT_ICMP_ERROR)
			count(r, SLUICE_CNT_icmp_error_forwarded);
		else if (p->first_frag)
			remember_fragment(r, p, vid, bid);
		return forward(r, xdp, p, v, vid, bid, hash);
	}
	/* Not a VIP service: a VIP address still keeps what is not for the kernel. */
	if (!m.address) {
		count(r, SLUICE_CNT_pass_not_vip);
		return ACT_KERNEL;
	}
	if (p->kind == SLUICE_PKT_FRAG)
		return later_fragment(r, xdp, p);
	if (p->kind == SLUICE_PKT_ICMP_ECHO)
		return echo_reply(r, xdp, p);
	if (p->kind == SLUICE_PKT_ICMP_ERROR) {
		count(r, SLUICE_CNT_drop_icmp_unmatched);
		return ACT_DROP;
	}
	count(r, SLUICE_CNT_drop_vip_proto);
	return ACT_DROP;
}

SEC("xdp")
int sluice_xdp(struct xdp_md *xdp)
{
	uint32_t zero = 0;
	struct run r;
	struct sluice_xdp_cpu *cpu = bpf_map_lookup_elem(&sl_cpu, &zero);
	if (!cpu)
		return XDP_ABORTED; /* cannot happen: a one-entry array */
	r.cnt = &cpu->cnt;
	r.memo = &cpu->memo;
	r.s = 0;
	r.bank = 0;
	/* The connection table's coarse clock, as the worker sets now_s per
	 * burst. CLOCK_MONOTONIC, so a restarted sluice-xdp reads the pinned
	 * table's ages right. */
	r.now_s = now_seconds(&cpu->clock);
	r.to.syn_s = cfg_ct_timeouts.syn_s;
	r.to.est_s = cfg_ct_timeouts.est_s;
	r.to.fin_s = cfg_ct_timeouts.fin_s;
	r.to.udp_s = cfg_ct_timeouts.udp_s;
	r.to.frag_s = cfg_ct_timeouts.frag_s;

	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	r.cnt->c[SLUICE_CNT_rx_packets]++;
	r.cnt->c[SLUICE_CNT_rx_bytes] += (uint64_t)(end - data);

	struct sluice_pkt p;
	uint32_t reason = sluice_parse(data, end, &p);
	if (reason != SLUICE_PARSE_OK) {
		count(&r, reason);
		return XDP_DROP;
	}
	switch (decide(&r, xdp, &p)) {
	case ACT_FORWARD:
		r.cnt->c[SLUICE_CNT_tx_packets]++;
		r.cnt->c[SLUICE_CNT_tx_bytes] += (uint64_t)(pkt_end(xdp) - pkt_data(xdp));
		return XDP_TX;
	case ACT_REPLY: /* counted by kind (icmp_echo_replied, icmp_too_big_sent) */
		return XDP_TX;
	case ACT_KERNEL:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
}

char LICENSE[] SEC("license") = "Apache-2.0";
