/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection table: which backend each flow already went to, so a flow
 * keeps its backend when the Maglev table changes under it (Maglev §3.3:
 * connection tracking plus consistent hashing).
 *
 * One definition for both dataplanes. The table is an array of 4-way
 * set-associative buckets of 64-byte entries, as many buckets as asked for
 * (no rounding to a power of two, so memory follows the configured size):
 *  - the DPDK worker keeps one struct sluice_ct_table per worker lcore in
 *    hugepage memory (rte_zmalloc_socket of sluice_ct_table_bytes());
 *  - the XDP program lays struct sluice_ct_bucket over the values of a BPF
 *    array map, one set of buckets per CPU, gets a bucket pointer from
 *    bpf_map_lookup_elem and calls the same sluice_ct_find/_insert/_update.
 * Each table has exactly one writer (its lcore, its CPU), so nothing here is
 * atomic. now_s is a coarse monotonic clock in seconds that the writer sets
 * once per burst; ages are computed modulo 2^32, so it may wrap.
 *
 * A bucket's first line also holds a 16-bit tag per way, from the flow
 * hash: a lookup reads that line, then only the ways whose tag matches
 * (almost always one: its own, or none for a new flow), and an insert finds
 * a free way there too. The DPDK worker prefetches the tag line a burst
 * ahead, then the matching way's line, so a lookup in a table far larger
 * than the caches costs two overlapped line fetches, not four.
 *
 * A full bucket evicts a SYN-only (embryonic) entry first, the least
 * recently seen one, and only for a flow past its SYN the least recently
 * seen entry of any state; a SYN that finds its bucket full of flows past
 * their SYNs is forwarded untracked (conn_syn_untracked): its next packet
 * is picked up as established. So a SYN flood from random sources cannot
 * push out established flows, and a full table never stops forwarding: an
 * evicted flow is picked again by Maglev, which gives the same backend
 * unless the backend set changed since (counted as conn_evict).
 *
 * Bucket and tag come from sluice_ct_hash(), keyed by a secret drawn when
 * the table is made (kept with it across restarts), not from the public,
 * unkeyed flow hash that Maglev needs (every node must pick alike): a sender
 * who can compute where a flow lives could aim packets at its bucket.
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/flow.h>
#include <sluice/hash.h>
#include <sluice/packet.h>

/* ------------------------------------------------------------------ entry */

/* SLUICE_CT_FREE is 0, so zeroed memory is an empty table. */
enum sluice_ct_state {
	SLUICE_CT_FREE = 0,
	SLUICE_CT_SYN,  /* client SYN seen, no ACK yet */
	SLUICE_CT_EST,  /* client ACK seen after its SYN (or mid-stream pickup) */
	SLUICE_CT_FIN,  /* client FIN or RST seen */
	SLUICE_CT_UDP,  /* UDP and every other non-TCP protocol */
	SLUICE_CT_FRAG, /* a datagram's fragments: keyed by sluice_frag_key() */
};

/* One cache line: a lookup that hits reads the key and the backend from the
 * same line. */
struct sluice_ct_entry {
	struct sluice_flow_key key; /* client-to-VIP direction (flow.h) */
	uint32_t backend_id;        /* stable backend id (shm.h backends[]) */
	uint32_t vip_id;            /* stable VIP id: a backend now in another VIP is re-picked */
	uint32_t last_seen_s;       /* now_s of the last packet */
	uint8_t state;              /* enum sluice_ct_state */
	uint8_t pad[3];             /* always zero */
	/* In way 0 only, the bucket's tags: tags[i] is sluice_ct_tag() of way
	 * i's flow while way i is in use, 0 while it is free. Zero in the
	 * other ways. */
	uint16_t tags[4];
} SLUICE_ALIGNED(SLUICE_CACHE_LINE);
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ct_entry) == SLUICE_CACHE_LINE,
		     "connection entry is one cache line");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_entry, backend_id) == 40, "ct.backend_id at 40");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_entry, vip_id) == 44, "ct.vip_id at 44");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_entry, last_seen_s) == 48, "ct.last_seen_s at 48");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_entry, state) == 52, "ct.state at 52");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_entry, tags) == 56, "ct.tags at 56");

/* Four ways, a 256-byte bucket. With flows landing Poisson-distributed over
 * the buckets, a table sized at twice its concurrent flows keeps 96% of
 * them (a direct-mapped one 79%), one filled to capacity 80% (63%): size it
 * at twice the expected flows. */
#define SLUICE_CT_WAYS 4
SLUICE_STATIC_ASSERT((SLUICE_CT_WAYS & (SLUICE_CT_WAYS - 1)) == 0,
		     "ways are a power of two: way indexes are masked for the verifier");
SLUICE_STATIC_ASSERT(SLUICE_CT_WAYS == 4, "way 0 holds one tag per way: four 16-bit tags");

struct sluice_ct_bucket {
	struct sluice_ct_entry way[SLUICE_CT_WAYS];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ct_bucket) == SLUICE_CT_WAYS * SLUICE_CACHE_LINE,
		     "a bucket is its ways, no overhead");

/* Loops over the ways have a constant bound. Under BPF they are unrolled
 * anyway, so that every way is a fixed offset from the bucket pointer the
 * verifier checks against the map's value size, and so kernels before 5.3
 * (no bounded loops) accept them. */
#if defined(__bpf__)
#define SLUICE_CT_UNROLL _Pragma("unroll")
#else
#define SLUICE_CT_UNROLL
#endif

/* --------------------------------------------------------------- timeouts */

/*
 * Idle timeouts in seconds, by state. TCP and UDP follow IPVS's defaults
 * (net/netfilter/ipvs/ip_vs_proto_tcp.c tcp_timeouts[], ip_vs_proto_udp.c
 * udp_timeouts[]; `ipvsadm --set tcp tcpfin udp` shows 900 120 300), which
 * like sluice in direct server return sees the client's packets only:
 *   SYN  60 s: IP_VS_TCP_S_SYN_RECV (a SYN with no ACK after it);
 *   EST 900 s: IP_VS_TCP_S_ESTABLISHED, ipvsadm's "tcp";
 *   FIN 120 s: IP_VS_TCP_S_FIN_WAIT, ipvsadm's "tcpfin" (IPVS gives RST's
 *              CLOSE 10 s; one FIN state keeps late retransmits on their
 *              backend for the same 2 minutes);
 *   UDP 300 s: IP_VS_UDP_S_NORMAL, ipvsadm's "udp".
 * FRAG 2 s is sluice's own: the fragments of one datagram leave the sender
 * back to back, and the key is a 16-bit IPv4 id that a busy host reuses
 * within seconds (RFC 4963 §2), so the entry must not outlive its datagram.
 */
#define SLUICE_CT_TIMEOUT_SYN_S 60u
#define SLUICE_CT_TIMEOUT_EST_S 900u
#define SLUICE_CT_TIMEOUT_FIN_S 120u
#define SLUICE_CT_TIMEOUT_UDP_S 300u
#define SLUICE_CT_TIMEOUT_FRAG_S 2u

struct sluice_ct_timeouts {
	uint32_t syn_s;
	uint32_t est_s;
	uint32_t fin_s;
	uint32_t udp_s;
	uint32_t frag_s;
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ct_timeouts) == 20, "timeouts are five words");

SLUICE_INLINE struct sluice_ct_timeouts sluice_ct_default_timeouts(void)
{
	struct sluice_ct_timeouts to = {
		SLUICE_CT_TIMEOUT_SYN_S, SLUICE_CT_TIMEOUT_EST_S, SLUICE_CT_TIMEOUT_FIN_S,
		SLUICE_CT_TIMEOUT_UDP_S, SLUICE_CT_TIMEOUT_FRAG_S,
	};
	return to;
}

/* An if-chain, not a switch: no jump table for the BPF backend to refuse. */
SLUICE_INLINE uint32_t sluice_ct_timeout(const struct sluice_ct_timeouts *to, uint8_t state)
{
	if (state == SLUICE_CT_EST)
		return to->est_s;
	if (state == SLUICE_CT_SYN)
		return to->syn_s;
	if (state == SLUICE_CT_FIN)
		return to->fin_s;
	if (state == SLUICE_CT_UDP)
		return to->udp_s;
	if (state == SLUICE_CT_FRAG)
		return to->frag_s;
	return 0;
}

/* A live entry is one seen at most its timeout ago: it lives at least that
 * many seconds, and with a whole-second clock less than one more. Given by
 * its fields, for a reader that loads them one by one (the connection
 * counts, common/conn_sweep.cpp). */
SLUICE_INLINE bool sluice_ct_expired_at(uint32_t last_seen_s, uint8_t state, uint32_t now_s,
					const struct sluice_ct_timeouts *to)
{
	return (uint32_t)(now_s - last_seen_s) > sluice_ct_timeout(to, state);
}

SLUICE_INLINE bool sluice_ct_expired(const struct sluice_ct_entry *e, uint32_t now_s,
				     const struct sluice_ct_timeouts *to)
{
	return sluice_ct_expired_at(e->last_seen_s, e->state, now_s, to);
}

/* ---------------------------------------------------------------- keys */

/*
 * The key of an IP datagram's fragments: only the first fragment carries the
 * ports, so the worker stores the backend the first one went to under this
 * key, and later fragments (no ports) find it. src16/dst16 are 16-byte
 * address fields as in the flow key (IPv4 in the first 4 bytes, the rest
 * zero); frag_id is the IPv4 identification or the IPv6 fragment header's
 * identification, in host order; proto is the datagram's upper-layer protocol.
 * pad[0] = 1 marks it: flow keys always have zero pad, so a fragment key
 * never equals any flow key, whatever the id and ports.
 */
#define SLUICE_CT_FRAG_MARK 1

SLUICE_INLINE void sluice_frag_key(struct sluice_flow_key *out, uint8_t family,
				   const uint8_t src16[16], const uint8_t dst16[16],
				   uint32_t frag_id, uint8_t proto)
{
	uint64_t *o = (uint64_t *)out;
	const uint64_t *s = (const uint64_t *)(const void *)src16;
	const uint64_t *d = (const uint64_t *)(const void *)dst16;
	o[0] = s[0];
	o[1] = s[1];
	o[2] = d[0];
	o[3] = d[1];
	o[4] = 0;
	out->sport_be = (uint16_t)(frag_id >> 16);
	out->dport_be = (uint16_t)frag_id;
	out->proto = proto;
	out->family = family;
	out->pad[0] = SLUICE_CT_FRAG_MARK;
}

/* -------------------------------------------------------------- buckets */

/* The connection-table hash of a key: the flow hash's chain (hash.h) seeded
 * with the table's secret instead of the public flow seed. Not a MAC, but
 * without the secret no one can tell which keys share a bucket, and the
 * secret is never sent anywhere. A second chain beside the flow hash's, not
 * a remix of it: equal flow hashes (2^32 tries to find) would otherwise
 * share a bucket whatever the secret. */
SLUICE_INLINE uint32_t sluice_ct_hash(const struct sluice_flow_key *key, uint64_t secret)
{
	return sluice_flow_key_hash(key, secret);
}

/* The key of a capture replay's tables (`--pcap` on either dataplane):
 * fixed, so that a replay is reproducible and both dataplanes evict alike.
 * A live table's key is random (getrandom), drawn when it is made. */
#define SLUICE_CT_REPLAY_KEY 0x736C756963650001ull
/* A replay's connection-table clock, frozen: entries age by nothing during
 * it, so which entry a full bucket gives up never depends on where a
 * second boundary fell in the run, and both dataplanes decide alike. */
#define SLUICE_CT_REPLAY_NOW_S 1000u

/* The bucket of a flow: its ct hash scaled to [0, buckets) by a multiply
 * and a shift (Lemire's "fastrange"), which uses its high bits: any bucket
 * count, no division. buckets >= 1. */
SLUICE_INLINE uint32_t sluice_ct_bucket_index(uint32_t ct_hash, uint32_t buckets)
{
	return (uint32_t)(((uint64_t)ct_hash * buckets) >> 32);
}

/* The tag of a flow in its bucket: the ct hash's low 16 bits (not the ones
 * that chose the bucket), never 0, which marks a free way. Two flows of a
 * bucket share a tag with probability 2^-15: a tag only says which ways to
 * compare keys with. */
SLUICE_INLINE uint16_t sluice_ct_tag(uint32_t ct_hash)
{
	return (uint16_t)(ct_hash | 1u);
}

/* The bucket's four tags as one word: way i's in bits 16i..16i+15. */
SLUICE_INLINE uint64_t sluice_ct_tags(const struct sluice_ct_bucket *b)
{
	uint64_t tags;
	__builtin_memcpy(&tags, b->way[0].tags, sizeof(tags));
	return tags;
}

SLUICE_INLINE uint16_t sluice_ct_tag_at(uint64_t tags, int way)
{
	return (uint16_t)(tags >> (16 * way));
}

/* Frees way w of bucket b. */
SLUICE_INLINE void sluice_ct_remove(struct sluice_ct_bucket *b, int w)
{
	b->way[w & (SLUICE_CT_WAYS - 1)].state = SLUICE_CT_FREE;
	b->way[0].tags[w & (SLUICE_CT_WAYS - 1)] = 0;
}

/* The live entry for k (whose tag is `tag`: sluice_ct_tag() of the hash
 * that chose b), or NULL. Reads the tag line, then only the ways whose tag
 * matches. An expired entry for k is freed on the way (lazy expiry: nothing
 * sweeps the table). Does not refresh the entry: the caller checks the
 * backend, then calls sluice_ct_update(). */
SLUICE_INLINE struct sluice_ct_entry *sluice_ct_find(struct sluice_ct_bucket *b,
						     const struct sluice_flow_key *k, uint16_t tag,
						     uint32_t now_s, const struct sluice_ct_timeouts *to)
{
	const uint64_t tags = sluice_ct_tags(b);
	SLUICE_CT_UNROLL
	for (int i = 0; i < SLUICE_CT_WAYS; i++) {
		if (sluice_ct_tag_at(tags, i) != tag)
			continue;
		struct sluice_ct_entry *e = &b->way[i];
		if (e->state == SLUICE_CT_FREE || !sluice_flow_key_equal(&e->key, k))
			continue;
		if (sluice_ct_expired(e, now_s, to)) {
			sluice_ct_remove(b, i);
			return 0;
		}
		return e;
	}
	return 0;
}

/*
 * Stores k (tag `tag`) -> (backend_id, vip_id) in state `state` and returns
 * its entry. The way taken is, in order: k's own (an insert replaces), a
 * free one, an expired one, the least recently seen SYN-only one, else, for
 * a state past SYN, the least recently seen one. Taking a live flow's way
 * evicts it (*evicted set, if evicted is not NULL). NULL only for a SYN
 * whose bucket is full of live flows past their SYNs: nothing is stored, and
 * the caller forwards it untracked. The first two are found from the tag
 * line; only a full bucket reads every way.
 */
SLUICE_INLINE struct sluice_ct_entry *sluice_ct_insert(struct sluice_ct_bucket *b,
						       const struct sluice_flow_key *k, uint16_t tag,
						       uint32_t backend_id, uint32_t vip_id,
						       uint8_t state, uint32_t now_s,
						       const struct sluice_ct_timeouts *to,
						       bool *evicted)
{
	const uint64_t tags = sluice_ct_tags(b);
	int same = -1, free_way = -1, expired = -1, oldest = 0, oldest_syn = -1;
	uint32_t oldest_age = 0, oldest_syn_age = 0;
	SLUICE_CT_UNROLL
	for (int i = 0; i < SLUICE_CT_WAYS; i++) {
		const uint16_t t = sluice_ct_tag_at(tags, i);
		if (t == tag && same < 0 && b->way[i].state != SLUICE_CT_FREE &&
		    sluice_flow_key_equal(&b->way[i].key, k))
			same = i;
		if (t == 0 && free_way < 0)
			free_way = i;
	}
	if (same < 0 && free_way < 0) {
		/* A full bucket: every way is in use. */
		SLUICE_CT_UNROLL
		for (int i = 0; i < SLUICE_CT_WAYS; i++) {
			const struct sluice_ct_entry *e = &b->way[i];
			if (sluice_ct_expired(e, now_s, to)) {
				if (expired < 0)
					expired = i;
				continue;
			}
			uint32_t age = now_s - e->last_seen_s;
			if (age >= oldest_age) { /* >=: way 0 is the fallback even at age 0 */
				oldest_age = age;
				oldest = i;
			}
			if (e->state == SLUICE_CT_SYN && (oldest_syn < 0 || age >= oldest_syn_age)) {
				oldest_syn_age = age;
				oldest_syn = i;
			}
		}
	}
	const bool full = same < 0 && free_way < 0 && expired < 0;
	if (full && oldest_syn < 0 && state == SLUICE_CT_SYN) {
		if (evicted)
			*evicted = false;
		return 0;
	}
	int w = same >= 0 ? same : free_way >= 0 ? free_way : expired >= 0 ? expired
		: oldest_syn >= 0 ? oldest_syn : oldest;
	if (evicted)
		*evicted = full;
	/* w is in [0, WAYS) already; the mask tells the verifier so. */
	w &= SLUICE_CT_WAYS - 1;
	struct sluice_ct_entry *e = &b->way[w];
	uint64_t *dst = (uint64_t *)&e->key;
	const uint64_t *src = (const uint64_t *)k;
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	e->backend_id = backend_id;
	e->vip_id = vip_id;
	e->last_seen_s = now_s;
	e->state = state;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	b->way[0].tags[w] = tag;
	return e;
}

/* --------------------------------------------------------------- states */

/* The state of a flow's first packet. A TCP packet other than a SYN is a
 * flow already open (the table was full, this LB restarted, or ECMP moved the
 * flow here): it is picked up as established, as Maglev §3.3 expects. */
SLUICE_INLINE uint8_t sluice_ct_initial_state(uint8_t proto, uint8_t tcp_flags)
{
	if (proto != SLUICE_IPPROTO_TCP)
		return SLUICE_CT_UDP;
	if (tcp_flags & (SLUICE_TCP_FIN | SLUICE_TCP_RST))
		return SLUICE_CT_FIN;
	if ((tcp_flags & (SLUICE_TCP_SYN | SLUICE_TCP_ACK)) == SLUICE_TCP_SYN)
		return SLUICE_CT_SYN;
	return SLUICE_CT_EST;
}

/*
 * A packet of e's flow arrived: refresh it and move its TCP state. With
 * direct server return the LB sees the client's half only (IPVS's
 * "input only" table), so:
 *   SYN --ACK without SYN--> EST;  any --FIN or RST--> FIN;
 *   FIN --SYN without ACK--> SYN   (the client reuses the port: a new
 *                                   connection, same backend);
 * a SYN on EST is a retransmit or a probe and changes nothing. UDP and FRAG
 * entries keep their state. tcp_flags is 0 for non-TCP packets.
 */
SLUICE_INLINE void sluice_ct_update(struct sluice_ct_entry *e, uint8_t tcp_flags, uint32_t now_s)
{
	e->last_seen_s = now_s;
	uint8_t s = e->state;
	if (s != SLUICE_CT_SYN && s != SLUICE_CT_EST && s != SLUICE_CT_FIN)
		return;
	uint8_t syn_ack = tcp_flags & (SLUICE_TCP_SYN | SLUICE_TCP_ACK);
	if (tcp_flags & (SLUICE_TCP_FIN | SLUICE_TCP_RST))
		e->state = SLUICE_CT_FIN;
	else if (s == SLUICE_CT_FIN && syn_ack == SLUICE_TCP_SYN)
		e->state = SLUICE_CT_SYN;
	else if (s == SLUICE_CT_SYN && syn_ack == SLUICE_TCP_ACK)
		e->state = SLUICE_CT_EST;
}

/* ---------------------------------------------------------- DPDK table */

#ifndef __bpf__
/*
 * A worker's table: a 64-byte header, then the buckets. The caller allocates
 * sluice_ct_table_bytes(entries) zeroed, 64-byte aligned bytes (hugepages:
 * rte_zmalloc_socket) and calls sluice_ct_table_init().
 */
struct sluice_ct_table {
	uint32_t n_buckets; /* >= 1 */
	uint32_t pad0;
	struct sluice_ct_timeouts to;
	uint32_t pad1;
	uint64_t secret; /* sluice_ct_hash()'s key, drawn when the table is made */
	uint8_t pad2[24];
	struct sluice_ct_bucket buckets[];
};
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_table, to) == 8, "ct_table.to at 8");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_table, secret) == 32, "ct_table.secret at 32");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ct_table, buckets) == SLUICE_CACHE_LINE,
		     "buckets start on the second cache line");

/* Buckets for `entries`: entries / WAYS rounded up, at least 1 (so at most
 * 2^30 for entries up to 2^32 - 1). */
SLUICE_INLINE uint32_t sluice_ct_table_buckets_for(uint32_t entries)
{
	uint32_t n = (uint32_t)(((uint64_t)entries + SLUICE_CT_WAYS - 1) / SLUICE_CT_WAYS);
	return n ? n : 1;
}

SLUICE_INLINE uint64_t sluice_ct_table_bytes(uint32_t entries)
{
	return sizeof(struct sluice_ct_table) +
	       (uint64_t)sluice_ct_table_buckets_for(entries) * sizeof(struct sluice_ct_bucket);
}

/* to may be NULL: the defaults. secret: random, from the caller (getrandom):
 * this header has no way to draw one in BPF and C alike. */
SLUICE_INLINE void sluice_ct_table_init(struct sluice_ct_table *t, uint32_t entries,
					const struct sluice_ct_timeouts *to, uint64_t secret)
{
	t->n_buckets = sluice_ct_table_buckets_for(entries);
	t->pad0 = 0;
	t->to = to ? *to : sluice_ct_default_timeouts();
	t->secret = secret;
}

SLUICE_INLINE uint64_t sluice_ct_table_entries(const struct sluice_ct_table *t)
{
	return (uint64_t)t->n_buckets * SLUICE_CT_WAYS;
}

SLUICE_INLINE struct sluice_ct_bucket *sluice_ct_table_bucket(struct sluice_ct_table *t,
							      uint32_t ct_hash)
{
	return &t->buckets[sluice_ct_bucket_index(ct_hash, t->n_buckets)];
}

/* The worker computes a burst's hashes and prefetches every bucket's tag
 * line (sluice_ct_prefetch), then, once those have arrived, the lines of
 * the ways whose tag matches (sluice_ct_prefetch_ways), then looks up. */
/*
 * Whether way w of bucket `bi` holds what sluice_ct_insert() could have
 * written there: a state it knows, zero padding, a key of a family it knows
 * (a fragment key with its mark, a flow key with none) whose ct hash picks
 * this very bucket and whose tag is the one the tag line has for the way;
 * a way past 0 keeps its tags field zero. A table that outlived its process
 * (sluice-dpdk keeps them in files across restarts) is read through this
 * before it is trusted: a way that fails is cleared, never followed. A free
 * way is sound when its tag is 0.
 */
SLUICE_INLINE bool sluice_ct_way_sound(const struct sluice_ct_table *t, uint32_t bi, int w)
{
	const struct sluice_ct_bucket *b = &t->buckets[bi];
	const struct sluice_ct_entry *e = &b->way[w];
	const uint16_t tag = b->way[0].tags[w];
	if (w != 0 && (e->tags[0] | e->tags[1] | e->tags[2] | e->tags[3]))
		return false;
	if (e->state == SLUICE_CT_FREE)
		return tag == 0;
	if (e->state > SLUICE_CT_FRAG || tag == 0 || e->pad[0] || e->pad[1] || e->pad[2])
		return false;
	if (e->key.family != SLUICE_AF_INET && e->key.family != SLUICE_AF_INET6)
		return false;
	const uint8_t mark = e->state == SLUICE_CT_FRAG ? SLUICE_CT_FRAG_MARK : 0;
	if (e->key.pad[0] != mark || e->key.pad[1] != 0)
		return false;
	const uint32_t h = sluice_ct_hash(&e->key, t->secret);
	return sluice_ct_bucket_index(h, t->n_buckets) == bi && sluice_ct_tag(h) == tag;
}

/* Empties way w of bucket bi whatever it held. */
SLUICE_INLINE void sluice_ct_clear_way(struct sluice_ct_table *t, uint32_t bi, int w)
{
	struct sluice_ct_bucket *b = &t->buckets[bi];
	uint16_t tags[SLUICE_CT_WAYS];
	__builtin_memcpy(tags, b->way[0].tags, sizeof(tags));
	__builtin_memset(&b->way[w], 0, sizeof(b->way[w]));
	if (w == 0)
		__builtin_memcpy(b->way[0].tags, tags, sizeof(tags));
	b->way[0].tags[w] = 0;
}

SLUICE_INLINE void sluice_ct_prefetch(const struct sluice_ct_bucket *b)
{
	__builtin_prefetch(b, 1, 3);
}

SLUICE_INLINE void sluice_ct_prefetch_ways(const struct sluice_ct_bucket *b, uint16_t tag)
{
	/* Way 0 is the tag line itself, already here. Else the first way
	 * with the flow's tag, or for a new flow the first free way, which
	 * sluice_ct_insert() will write. */
	const uint64_t tags = sluice_ct_tags(b);
	if (sluice_ct_tag_at(tags, 0) == tag)
		return;
	for (int i = 1; i < SLUICE_CT_WAYS; i++) {
		if (sluice_ct_tag_at(tags, i) == tag) {
			__builtin_prefetch(&b->way[i], 1, 3);
			return;
		}
	}
	if (sluice_ct_tag_at(tags, 0) == 0)
		return;
	for (int i = 1; i < SLUICE_CT_WAYS; i++) {
		if (sluice_ct_tag_at(tags, i) == 0) {
			__builtin_prefetch(&b->way[i], 1, 3);
			return;
		}
	}
}
#endif
