/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What happens to a parsed packet: the one decision both dataplanes run.
 *
 * Given the parsed packet (parse.h), the snapshot and the connection table,
 * sluice_decide() returns a verdict: forward to a backend (which VIP, which
 * backend, the hash that gives the outer headers their entropy, how many
 * bytes of outer headers), answer the client (an echo reply, or "too big"
 * with the MTU to report), hand to the kernel, or drop (counted by reason).
 * The VIP lookup and its memo, the connection-table lookup, refresh, insert
 * and re-pick, first and later fragments, ICMP errors matched on their
 * quote, echo against too-big — all of it is here, once. What stays with
 * each dataplane is only what differs: reading its packet into struct
 * sluice_pkt, applying the verdict to an mbuf or an xdp_md (encap.h writes
 * the bytes), and counting what it sent.
 *
 * The decision is split in two so a burst can overlap its memory latency
 * (the DPDK worker runs sluice_classify over the whole burst, prefetching
 * each flow's bucket, before it decides any packet); the XDP program calls
 * both for its one packet.
 *
 * Where the two dataplanes keep their state differently, the decision goes
 * through four hooks on struct sluice_dp: the Maglev ring entry at a
 * position, the connection-table bucket of a hash, counting, and a new
 * flow's per-object counts. The default ones below read a snapshot and a
 * connection table in plain memory and count into a worker record (the
 * DPDK worker, the native fixture runner, tests). The XDP program, whose
 * rings and tables are BPF maps, defines SLUICE_DP_HOOKS and its own
 * struct sluice_dp and hooks before including this header.
 */
#pragma once

#include "compiler.h"
#include "conntrack.h"
#include "counters.h"
#include "encap.h"
#include "maglev.h"
#include "parse.h"
#include "shm.h"
#include "vip.h"

#ifndef SLUICE_DP_HOOKS
/* The plain environment: one connection table, one worker record. */
struct sluice_dp {
	struct sluice_ct_bucket *buckets; /* the table's (sluice_ct_table's, on the DPDK path) */
	uint32_t n_buckets;
	struct sluice_worker *rec; /* counters */
	uint64_t hits;             /* conn_hit, written out by the caller once per burst */
};

SLUICE_INLINE uint32_t sluice_dp_ring(struct sluice_dp *dp, const struct sluice_snapshot *s, uint32_t pos)
{
	(void)dp;
	return s->rings[pos & (SLUICE_RING_POOL - 1)];
}

SLUICE_INLINE struct sluice_ct_bucket *sluice_dp_bucket(struct sluice_dp *dp, uint32_t ct_hash)
{
	return &dp->buckets[sluice_ct_bucket_index(ct_hash, dp->n_buckets)];
}

SLUICE_INLINE void sluice_dp_count(struct sluice_dp *dp, uint32_t counter)
{
	dp->rec->counters[counter & (SLUICE_COUNTER_SLOTS - 1)]++;
}

SLUICE_INLINE void sluice_dp_hit(struct sluice_dp *dp)
{
	dp->hits++;
}

SLUICE_INLINE void sluice_dp_new_flow(struct sluice_dp *dp, uint32_t vid, uint32_t bid)
{
	dp->rec->vip[vid & (SLUICE_MAX_VIPS - 1)].new_flows++;
	dp->rec->backend[bid & (SLUICE_MAX_BACKENDS - 1)].new_flows++;
}
#endif

/* What a decision reads besides the packet. */
struct sluice_env {
	const struct sluice_snapshot *s; /* NULL: nothing published yet */
	struct sluice_dp *dp;
	struct sluice_ct_timeouts to;
	uint32_t now_s; /* the connection table's coarse clock */
	uint32_t mtu;   /* the largest IP packet sent: sluice_env_mtu() */
	uint64_t ct_secret; /* the connection table's key (conntrack.h sluice_ct_hash) */
};

/* The port's MTU, lowered by the snapshot's node.mtu: set once per burst
 * (or packet) with the snapshot it reads. */
SLUICE_INLINE uint32_t sluice_env_mtu(uint32_t port_mtu, const struct sluice_snapshot *s)
{
	return s && s->node.mtu && s->node.mtu < port_mtu ? s->node.mtu : port_mtu;
}

/* ------------------------------------------------------- classification */

/* What the first pass over a packet finds: its VIP, and for a VIP service's
 * packet its flow hash and connection-table bucket (to prefetch). */
struct sluice_flow {
	struct sluice_vip_match m;
	uint32_t hash;                   /* the flow hash (Maglev, outer entropy); with a service only */
	struct sluice_ct_bucket *bucket; /* NULL without a service, or if the table has none */
	uint16_t tag;                    /* sluice_ct_tag() of the keyed ct hash, with a service only */
};

SLUICE_INLINE void sluice_classify(const struct sluice_env *env, struct sluice_vip_memo *memo, uint64_t active,
				   const struct sluice_pkt *p, struct sluice_flow *f)
{
	/* hash and tag are set only with a service, the only case that reads them. */
	f->m.service = SLUICE_MAX_VIPS;
	f->m.address = 0;
	f->bucket = 0;
	if (!env->s || p->kind == SLUICE_PKT_NOT_IP)
		return;
	if (p->kind == SLUICE_PKT_L4 || p->kind == SLUICE_PKT_ICMP_ERROR) {
		f->m = sluice_vip_match_memo(env->s, memo, active, p);
		if (f->m.service != SLUICE_MAX_VIPS) {
			f->hash = sluice_flow_hash(&p->key);
			const uint32_t ct = sluice_ct_hash(&p->key, env->ct_secret);
			f->tag = sluice_ct_tag(ct);
			f->bucket = sluice_dp_bucket(env->dp, ct);
		}
	} else {
		f->m.address = sluice_vip_find_address(env->s, p->key.dst, p->key.family) != SLUICE_MAX_VIPS;
	}
}

/* ---------------------------------------------------------------- verdict */

enum sluice_act {
	SLUICE_ACT_DROP,    /* counted by reason already */
	SLUICE_ACT_KERNEL,  /* not a VIP's: the kernel's, unchanged */
	SLUICE_ACT_FORWARD, /* encapsulate (or rewrite L2) to `backend` */
	SLUICE_ACT_ECHO,    /* answer the echo request in place */
	SLUICE_ACT_TOO_BIG, /* answer fragmentation-needed / packet-too-big with `mtu` */
};

struct sluice_verdict {
	uint8_t act;     /* enum sluice_act */
	uint8_t mode;    /* FORWARD: the VIP's enum sluice_mode */
	uint16_t enc;    /* FORWARD: bytes of outer headers (sluice_encap_len) */
	uint32_t vip;    /* FORWARD: whose counters (a later fragment's is its entry's) */
	uint32_t backend; /* FORWARD: index in backends[] */
	uint32_t hash;   /* FORWARD: the outer headers' entropy */
	uint32_t mtu;    /* TOO_BIG: the MTU the message reports */
};

SLUICE_INLINE struct sluice_verdict sluice_verdict_of(uint8_t act)
{
	struct sluice_verdict v;
	v.act = act;
	v.mode = 0;
	v.enc = 0;
	v.vip = SLUICE_MAX_VIPS;
	v.backend = 0;
	v.hash = 0;
	v.mtu = 0;
	return v;
}

SLUICE_INLINE struct sluice_verdict sluice_drop(struct sluice_dp *dp, uint32_t reason)
{
	sluice_dp_count(dp, reason);
	return sluice_verdict_of(SLUICE_ACT_DROP);
}

/* Sends the packet to backend `bid` of VIP `vid` the VIP's way, if it fits:
 * an L4 packet that does not is answered with the room there is, anything
 * else (a later fragment, an ICMP error) is dropped. IPv4 without DF too:
 * RFC 2003 §5.1 lets the encapsulator fragment the outer packet or answer,
 * and an XDP program cannot make two packets of one, so both dataplanes
 * answer fragmentation-needed (as for DF). A client's stack takes the MTU
 * it reports for the path whatever DF said (Linux: ipv4_update_pmtu on any
 * ICMP_FRAG_NEEDED) and fragments its next datagrams to fit, and those
 * fragments sluice forwards; without an answer every oversized datagram
 * would vanish with no sign. */
SLUICE_INLINE struct sluice_verdict sluice_forward(const struct sluice_env *env, const struct sluice_pkt *p,
						   uint32_t vid, uint32_t bid, uint32_t hash)
{
	const struct sluice_snapshot *s = env->s;
	const struct sluice_vip *v = &s->vips[vid & (SLUICE_MAX_VIPS - 1)];
	const uint32_t b_idx = bid & (SLUICE_MAX_BACKENDS - 1);
	const struct sluice_backend *b = &s->backends[b_idx];
	if (SLUICE_UNLIKELY(!(b->flags & SLUICE_BACKEND_HAS_MAC)))
		return sluice_drop(env->dp, SLUICE_CNT_drop_no_nexthop);
	const uint16_t enc = sluice_encap_len(v->mode, b->family);
	const uint32_t mtu = env->mtu;
	if (SLUICE_UNLIKELY((uint32_t)p->l3_len + enc > mtu)) {
		if (p->kind != SLUICE_PKT_L4)
			return sluice_drop(env->dp, SLUICE_CNT_drop_too_big);
		struct sluice_verdict t = sluice_verdict_of(SLUICE_ACT_TOO_BIG);
		t.mtu = mtu - enc;
		if (p->key.family == SLUICE_AF_INET6 && t.mtu < SLUICE_IPV6_MIN_MTU)
			t.mtu = SLUICE_IPV6_MIN_MTU;
		return t;
	}
	struct sluice_verdict f = sluice_verdict_of(SLUICE_ACT_FORWARD);
	f.mode = v->mode;
	f.enc = enc;
	f.vip = vid & (SLUICE_MAX_VIPS - 1);
	f.backend = b_idx;
	f.hash = hash;
	return f;
}

/* The backend of a flow: its connection's if that backend still takes it,
 * else Maglev's pick (inserted, unless the packet is an ICMP error, which
 * never opens a connection; a flow whose backend was removed or went down
 * moves once, counted conn_repick). SLUICE_MAGLEV_EMPTY: none. */
SLUICE_INLINE uint32_t sluice_pick_backend(const struct sluice_env *env, const struct sluice_pkt *p,
					   const struct sluice_flow *f)
{
	const struct sluice_snapshot *s = env->s;
	struct sluice_dp *dp = env->dp;
	const uint32_t vid = f->m.service & (SLUICE_MAX_VIPS - 1);
	struct sluice_ct_entry *e = 0;
	if (SLUICE_LIKELY(f->bucket != 0))
		e = sluice_ct_find(f->bucket, &p->key, f->tag, env->now_s, &env->to);
	if (SLUICE_LIKELY(e != 0)) {
		const uint32_t id = e->backend_id;
		const struct sluice_backend *b = &s->backends[id & (SLUICE_MAX_BACKENDS - 1)];
		if (SLUICE_LIKELY(id < SLUICE_MAX_BACKENDS && sluice_backend_keeps_flows(b, vid))) {
			if (p->kind == SLUICE_PKT_L4)
				sluice_ct_update(e, p->tcp_flags, env->now_s);
			sluice_dp_hit(dp);
			return id;
		}
	}
	const struct sluice_vip *v = &s->vips[vid];
	const uint32_t slot = sluice_maglev_slot(f->hash, v->ring_inv, v->ring_size);
	const uint32_t bid = sluice_dp_ring(dp, s, v->ring_offset + slot);
	if (bid == SLUICE_MAGLEV_EMPTY)
		return bid;
	if (e) {
		e->backend_id = bid;
		e->vip_id = vid;
		sluice_ct_update(e, p->tcp_flags, env->now_s);
		sluice_dp_count(dp, SLUICE_CNT_conn_repick);
		return bid;
	}
	if (p->kind != SLUICE_PKT_L4 || !f->bucket)
		return bid;
	bool evicted = false;
	if (!sluice_ct_insert(f->bucket, &p->key, f->tag, bid, vid,
			      sluice_ct_initial_state(p->key.proto, p->tcp_flags), env->now_s, &env->to, &evicted))
		sluice_dp_count(dp, SLUICE_CNT_conn_syn_untracked);
	sluice_dp_count(dp, SLUICE_CNT_conn_new);
	if (evicted)
		sluice_dp_count(dp, SLUICE_CNT_conn_evict);
	sluice_dp_new_flow(dp, vid, bid);
	return bid;
}

/* The fragment key's bucket (and *tag there): where a first fragment's
 * datagram went. *h: the key's flow hash, for the outer entropy. */
SLUICE_INLINE struct sluice_ct_bucket *sluice_frag_bucket(const struct sluice_env *env, const struct sluice_pkt *p,
							  struct sluice_flow_key *fk, uint32_t *h, uint16_t *tag)
{
	sluice_frag_key(fk, p->key.family, p->key.src, p->key.dst, p->frag_id, p->key.proto);
	*h = sluice_flow_hash(fk);
	const uint32_t ct = sluice_ct_hash(fk, env->ct_secret);
	*tag = sluice_ct_tag(ct);
	return sluice_dp_bucket(env->dp, ct);
}

/* A first fragment went to `bid`: the later ones of its datagram follow. */
SLUICE_INLINE void sluice_remember_fragment(const struct sluice_env *env, const struct sluice_pkt *p,
					    uint32_t vid, uint32_t bid)
{
	struct sluice_flow_key fk;
	uint32_t h;
	uint16_t tag;
	struct sluice_ct_bucket *b = sluice_frag_bucket(env, p, &fk, &h, &tag);
	if (b)
		sluice_ct_insert(b, &fk, tag, bid, vid, SLUICE_CT_FRAG, env->now_s, &env->to, 0);
	sluice_dp_count(env->dp, SLUICE_CNT_frag_first);
}

/* A later fragment follows its first. It carries no ports, so its outer
 * entropy (GUE source port, flow label) comes from the fragment key's hash:
 * one datagram's later fragments still share one outer flow. The VIP is the
 * entry's. */
SLUICE_INLINE struct sluice_verdict sluice_later_fragment(const struct sluice_env *env,
							  const struct sluice_pkt *p)
{
	struct sluice_flow_key fk;
	uint32_t h;
	uint16_t tag;
	struct sluice_ct_bucket *b = sluice_frag_bucket(env, p, &fk, &h, &tag);
	struct sluice_ct_entry *e = b ? sluice_ct_find(b, &fk, tag, env->now_s, &env->to) : 0;
	if (!e)
		return sluice_drop(env->dp, SLUICE_CNT_drop_frag_no_first);
	sluice_ct_update(e, 0, env->now_s);
	sluice_dp_count(env->dp, SLUICE_CNT_frag_followed);
	return sluice_forward(env, p, e->vip_id & (SLUICE_MAX_VIPS - 1), e->backend_id, h);
}

/* What is not a VIP service's packet but is for a VIP address: later
 * fragments, echo requests, unmatched ICMP errors, other protocols. */
SLUICE_INLINE struct sluice_verdict sluice_vip_address_packet(const struct sluice_env *env,
							      const struct sluice_pkt *p)
{
	switch (p->kind) {
	case SLUICE_PKT_FRAG:
		return sluice_later_fragment(env, p);
	case SLUICE_PKT_ICMP_ECHO:
		return sluice_verdict_of(SLUICE_ACT_ECHO);
	case SLUICE_PKT_ICMP_ERROR:
		return sluice_drop(env->dp, SLUICE_CNT_drop_icmp_unmatched);
	default:
		return sluice_drop(env->dp, SLUICE_CNT_drop_vip_proto);
	}
}

/* The decision for a packet sluice_classify() has seen. Counts the drops
 * and the connection-table and fragment events; the caller counts what it
 * sends (rx/tx, the objects' packets and bytes, the replies it builds). */
SLUICE_INLINE struct sluice_verdict sluice_decide(const struct sluice_env *env, const struct sluice_pkt *p,
						  const struct sluice_flow *f)
{
	if (SLUICE_LIKELY(f->m.service != SLUICE_MAX_VIPS)) {
		const uint32_t vid = f->m.service & (SLUICE_MAX_VIPS - 1);
		const uint32_t bid = sluice_pick_backend(env, p, f);
		if (SLUICE_UNLIKELY(bid == SLUICE_MAGLEV_EMPTY))
			return sluice_drop(env->dp, SLUICE_CNT_drop_no_backend);
		if (SLUICE_UNLIKELY(p->kind == SLUICE_PKT_ICMP_ERROR))
			sluice_dp_count(env->dp, SLUICE_CNT_icmp_error_forwarded);
		else if (SLUICE_UNLIKELY(p->first_frag))
			sluice_remember_fragment(env, p, vid, bid);
		return sluice_forward(env, p, vid, bid, f->hash);
	}
	if (p->kind == SLUICE_PKT_NOT_IP) {
		sluice_dp_count(env->dp, SLUICE_CNT_pass_not_vip);
		return sluice_verdict_of(SLUICE_ACT_KERNEL);
	}
	if (SLUICE_UNLIKELY(!env->s))
		return sluice_drop(env->dp, SLUICE_CNT_drop_no_snapshot);
	/* Not a VIP service: a VIP address still keeps what is not for the kernel. */
	if (!f->m.address) {
		sluice_dp_count(env->dp, SLUICE_CNT_pass_not_vip);
		return sluice_verdict_of(SLUICE_ACT_KERNEL);
	}
	return sluice_vip_address_packet(env, p);
}
