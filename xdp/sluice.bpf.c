// SPDX-License-Identifier: Apache-2.0
/*
 * The XDP packet path: include/sluice/decide.h's decision, the one the DPDK
 * worker runs, for one packet at a time. This file only reads the xdp_md
 * into struct sluice_pkt (parse.h), gives the decision its hooks over this
 * program's maps, and applies the verdict to the frame with encap.h's
 * writers — so that for the same packet and snapshot both dataplanes pick
 * the same backend and write the same bytes from the IP header on. The maps
 * are laid out in maps.h; sluice-xdp fills them from the snapshot.
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
/* The connection table's key (conntrack.h sluice_ct_hash): drawn with the
 * table, kept beside its pin (sl_ct_key) so a restart finds its flows. */
const volatile uint64_t cfg_ct_secret = 0;
/* Non-zero: a replay (--pcap, BPF_PROG_TEST_RUN), whose connection-table
 * clock is frozen at this second (conntrack.h SLUICE_CT_REPLAY_NOW_S). */
const volatile uint32_t cfg_replay_now_s = 0;
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

/* decide.h's hooks over this program's maps: the active bank's rings
 * (sl_rings), this CPU's buckets (sl_ct), its counters (sl_cpu) and the
 * per-object counts (sl_vip_cnt, sl_be_cnt). */
#define SLUICE_DP_HOOKS
struct sluice_dp {
	struct sluice_xdp_counters *cnt;
	uint32_t bank; /* the active bank (maps.h) */
};

static __always_inline void sluice_dp_count(struct sluice_dp *dp, uint32_t c)
{
	dp->cnt->c[c & (SLUICE_COUNTER_SLOTS - 1)]++;
}

static __always_inline void sluice_dp_hit(struct sluice_dp *dp)
{
	sluice_dp_count(dp, SLUICE_CNT_conn_hit);
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

static __always_inline uint32_t sluice_dp_ring(struct sluice_dp *dp, const struct sluice_snapshot *s,
					      uint32_t pos)
{
	/* s->rings[pos]: the mirror copies rings[0, ring_used) to the same
	 * offsets of the bank and refuses a snapshot whose tables reach past
	 * cfg_ring_entries, so for every published snapshot this is the entry
	 * the DPDK worker reads at (pos & (SLUICE_RING_POOL - 1)). */
	(void)s;
	uint32_t i = dp->bank * cfg_ring_entries + (pos & (cfg_ring_entries - 1));
	uint32_t k = i / SLUICE_XDP_RING_CHUNK;
	const struct sluice_xdp_ring_chunk *c = bpf_map_lookup_elem(&sl_rings, &k);
	if (!c)
		return SLUICE_MAGLEV_EMPTY;
	return c->e[i & (SLUICE_XDP_RING_CHUNK - 1)];
}

static __always_inline struct sluice_ct_bucket *sluice_dp_bucket(struct sluice_dp *dp, uint32_t ct_hash)
{
	(void)dp;
	uint32_t k = bpf_get_smp_processor_id() * cfg_ct_buckets +
		     sluice_ct_bucket_index(ct_hash, cfg_ct_buckets);
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

static __always_inline void sluice_dp_new_flow(struct sluice_dp *dp, uint32_t vid, uint32_t bid)
{
	(void)dp;
	struct sluice_obj_counters *vc = vip_counters(vid);
	struct sluice_obj_counters *bc = backend_counters(bid);
	if (vc)
		vc->new_flows++;
	if (bc)
		bc->new_flows++;
}

/* The decision itself, over the hooks above. */
#include <sluice/decide.h>

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

/* What an action returns when it was applied; else the counter of why not. */
#define APPLIED 0xFFFFFFFFu

/* SLUICE_ACT_TOO_BIG: tell the client, from the VIP, that `mtu` fits
 * (worker.cpp reply_too_big). */
static __always_inline uint32_t reply_too_big(struct xdp_md *xdp, const struct sluice_pkt *p, uint32_t mtu)
{
	uint16_t quote = sluice_icmp_quote_len(p->l3_len);
	uint32_t l2 = l2_of(p);
	if (p->key.family == SLUICE_AF_INET) {
		const uint32_t hdr = sizeof(struct sluice_ipv4_hdr) + sizeof(struct sluice_icmp_hdr);
		if (bpf_xdp_adjust_head(xdp, -(int)hdr) || !move_l2(xdp, hdr, l2) ||
		    trim_to(xdp, l2 + hdr + quote))
			return SLUICE_CNT_drop_too_big;
		uint8_t *data = pkt_data(xdp);
		uint8_t *end = pkt_end(xdp);
		uint8_t *ip = data + l2;
		uint8_t *q = ip + hdr;
		/* The original header's addresses are read from the quote. */
		if (q + sizeof(struct sluice_ipv4_hdr) > end)
			return SLUICE_CNT_drop_too_big;
		sluice_icmp4_frag_needed((struct sluice_ipv4_hdr *)ip,
					 (struct sluice_icmp_hdr *)(ip + sizeof(struct sluice_ipv4_hdr)),
					 q, end, quote, (uint16_t)mtu);
	} else {
		const uint32_t hdr = sizeof(struct sluice_ipv6_hdr) + sizeof(struct sluice_icmp_hdr);
		if (bpf_xdp_adjust_head(xdp, -(int)hdr) || !move_l2(xdp, hdr, l2) ||
		    trim_to(xdp, l2 + hdr + quote))
			return SLUICE_CNT_drop_too_big;
		uint8_t *data = pkt_data(xdp);
		uint8_t *end = pkt_end(xdp);
		uint8_t *ip = data + l2;
		uint8_t *q = ip + hdr;
		if (q + sizeof(struct sluice_ipv6_hdr) > end)
			return SLUICE_CNT_drop_too_big;
		sluice_icmp6_too_big((struct sluice_ipv6_hdr *)ip,
				     (struct sluice_icmp_hdr *)(ip + sizeof(struct sluice_ipv6_hdr)), q,
				     end, quote, mtu);
	}
	if (!reply_l2(xdp))
		return SLUICE_CNT_drop_too_big;
	return APPLIED;
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

/* SLUICE_ACT_FORWARD: the outer headers in front, the Ethernet header to
 * the backend's next hop (worker.cpp encapsulate). */
static __always_inline uint32_t encapsulate(struct xdp_md *xdp, const struct sluice_snapshot *s,
					    const struct sluice_pkt *p, const struct sluice_verdict *vd)
{
	const struct sluice_backend *b = &s->backends[vd->backend & (SLUICE_MAX_BACKENDS - 1)];
	const struct sluice_vip *v = &s->vips[vd->vip & (SLUICE_MAX_VIPS - 1)];
	uint32_t l2 = l2_of(p);
	uint16_t enc = vd->enc;
	if (trim_to(xdp, l2 + p->l3_len))
		return SLUICE_CNT_drop_truncated; /* cannot happen: the frame holds the packet */
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
		/* No headroom: what the worker's failed prepend counts. */
		if (err || !write_outer(xdp, l2, v, &s->node, b, p, vd->hash))
			return SLUICE_CNT_drop_too_big;
	}
	uint8_t *data = pkt_data(xdp);
	if (data + sizeof(struct sluice_eth_hdr) > pkt_end(xdp))
		return SLUICE_CNT_drop_truncated; /* cannot happen: checked above */
	eth_put_dst(data, b->mac);
	eth_put_src(data);
	return APPLIED;
}

/* SLUICE_ACT_ECHO: the echo request becomes its reply, in place
 * (worker.cpp reply_echo). */
static __always_inline uint32_t reply_echo(struct xdp_md *xdp, const struct sluice_pkt *p)
{
	uint32_t l2 = l2_of(p);
	if (trim_to(xdp, l2 + p->l3_len))
		return SLUICE_CNT_drop_truncated; /* cannot happen: the frame holds the packet */
	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	uint8_t *ip = data + l2;
	/* l4_off is at most 18 + 40 + 4 * 2048 (IPv6 with the longest walk):
	 * the mask keeps it and bounds it. */
	uint8_t *l4 = data + (p->l4_off & 0x3FFF);
	if (l4 + sizeof(struct sluice_icmp_hdr) > end)
		return SLUICE_CNT_drop_truncated;
	if (p->key.family == SLUICE_AF_INET) {
		if (ip + sizeof(struct sluice_ipv4_hdr) > end)
			return SLUICE_CNT_drop_truncated;
		sluice_icmp4_echo_reply((struct sluice_ipv4_hdr *)ip, (struct sluice_icmp_hdr *)l4);
	} else {
		if (ip + sizeof(struct sluice_ipv6_hdr) > end)
			return SLUICE_CNT_drop_truncated;
		sluice_icmp6_echo_reply((struct sluice_ipv6_hdr *)ip, (struct sluice_icmp_hdr *)l4);
	}
	if (!reply_l2(xdp))
		return SLUICE_CNT_drop_truncated;
	return APPLIED;
}

/* -------------------------------------------------------------- program */

SEC("xdp")
int sluice_xdp(struct xdp_md *xdp)
{
	uint32_t zero = 0;
	struct sluice_xdp_cpu *cpu = bpf_map_lookup_elem(&sl_cpu, &zero);
	if (!cpu)
		return XDP_ABORTED; /* cannot happen: a one-entry array */
	struct sluice_dp dp;
	dp.cnt = &cpu->cnt;
	dp.bank = 0;
	struct sluice_env env;
	env.s = 0;
	env.dp = &dp;
	/* The connection table's coarse clock, as the worker sets now_s per
	 * burst. CLOCK_MONOTONIC, so a restarted sluice-xdp reads the pinned
	 * table's ages right. */
	env.now_s = cfg_replay_now_s ? cfg_replay_now_s : now_seconds(&cpu->clock);
	env.to.syn_s = cfg_ct_timeouts.syn_s;
	env.to.est_s = cfg_ct_timeouts.est_s;
	env.to.fin_s = cfg_ct_timeouts.fin_s;
	env.to.udp_s = cfg_ct_timeouts.udp_s;
	env.to.frag_s = cfg_ct_timeouts.frag_s;
	env.mtu = cfg_port_mtu;
	env.ct_secret = cfg_ct_secret;

	uint8_t *data = pkt_data(xdp);
	uint8_t *end = pkt_end(xdp);
	dp.cnt->c[SLUICE_CNT_rx_packets]++;
	dp.cnt->c[SLUICE_CNT_rx_bytes] += (uint64_t)(end - data);

	struct sluice_pkt p;
	uint32_t reason = sluice_parse(data, end, &p);
	if (reason != SLUICE_PARSE_OK) {
		sluice_dp_count(&dp, reason);
		return XDP_DROP;
	}
	/* The active bank, read as the snapshot it copies (maps.h): shm.h's
	 * lookups take a snapshot, and only touch what a bank holds. None yet:
	 * env.s stays NULL, which sluice_decide() counts drop_no_snapshot. */
	uint64_t active = 0;
	if (p.kind != SLUICE_PKT_NOT_IP) {
		const struct sluice_xdp_state *st = bpf_map_lookup_elem(&sl_state, &zero);
		active = st ? *(volatile const uint64_t *)&st->active : 0;
		if (active) {
			dp.bank = sluice_xdp_active_bank(active);
			env.s = bpf_map_lookup_elem(&sl_banks, &dp.bank); /* the mirror writes banks 0-3 */
			env.mtu = sluice_env_mtu(cfg_port_mtu, env.s);
		}
	}
	struct sluice_flow f;
	sluice_classify(&env, &cpu->memo, active, &p, &f);
	struct sluice_verdict v = sluice_decide(&env, &p, &f);
	uint32_t why;
	switch (v.act) {
	case SLUICE_ACT_FORWARD: {
		why = encapsulate(xdp, env.s, &p, &v);
		if (why != APPLIED)
			break;
		struct sluice_obj_counters *vc = vip_counters(v.vip);
		struct sluice_obj_counters *bc = backend_counters(v.backend);
		if (vc) {
			vc->packets++;
			vc->bytes += p.l3_len;
		}
		if (bc) {
			bc->packets++;
			bc->bytes += p.l3_len;
		}
		dp.cnt->c[SLUICE_CNT_tx_packets]++;
		dp.cnt->c[SLUICE_CNT_tx_bytes] += (uint64_t)(pkt_end(xdp) - pkt_data(xdp));
		return XDP_TX;
	}
	case SLUICE_ACT_ECHO:
		why = reply_echo(xdp, &p);
		if (why != APPLIED)
			break;
		sluice_dp_count(&dp, SLUICE_CNT_icmp_echo_replied);
		return XDP_TX;
	case SLUICE_ACT_TOO_BIG:
		why = reply_too_big(xdp, &p, v.mtu);
		if (why != APPLIED)
			break;
		sluice_dp_count(&dp, SLUICE_CNT_icmp_too_big_sent);
		return XDP_TX;
	case SLUICE_ACT_KERNEL:
		return XDP_PASS;
	default: /* SLUICE_ACT_DROP, counted by reason */
		return XDP_DROP;
	}
	sluice_dp_count(&dp, why);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Apache-2.0";
