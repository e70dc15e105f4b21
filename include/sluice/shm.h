/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory segment between sluiced (the one writer of snapshots)
 * and the dataplanes (readers of snapshots, writers of their own worker
 * records). Plain data at fixed offsets, no pointers: any process maps it
 * anywhere. Every size and offset is asserted; changing any of them means
 * bumping SLUICE_ABI_VERSION, and a process refuses a segment whose magic or
 * version differs from its own.
 *
 * Publishing (docs/controlplane.md, "The shared-memory contract"):
 *  1. sluiced picks a slot that is not active and whose generation no live
 *     worker names in generation_seen (a hazard pointer per worker);
 *  2. fills it, including its checksum;
 *  3. stores `active` = generation << 8 | slot with release semantics.
 * A worker loads `active` (acquire) at every poll, empty ones included, and
 * uses that slot for the whole burst. When the generation changed it first
 * names it: stores it in generation_seen, a full fence, and loads `active`
 * again; if that moved, it names the new one instead. The writer puts a
 * full fence between its store of `active` and its reads of the names, so
 * either the worker's second load sees the new `active` or the writer sees
 * the name: a slot a worker reads is never reused under it, and a worker
 * holds one slot however long it stays behind. A slot that never held a
 * snapshot (generation 0) is always free. A worker whose heartbeat is older
 * than the writer's timeout is dead and holds nothing; with every slot held
 * by live workers a publish fails after that timeout, naming them.
 *
 * Claiming a worker record: CAS info.pid from 0 (or a dead owner's pid) to
 * SLUICE_WORKER_PID_CLAIMING, fill the record, then store the real pid.
 * Readers of the segment skip records holding that value.
 *
 * Addresses passed to the helpers below are 8-byte aligned (the flow key's
 * and the records' are): they are read as 64-bit words.
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/counters.h>
#include <sluice/flow.h>
#include <sluice/hash.h>

#define SLUICE_SHM_MAGIC 0x4D53454349554C53ULL /* "SLUICESM" read little endian */
/* 2: worker records say which generation they forward by; 4,096 VIPs,
 * found through a seeded VIP hash. 3: worker records carry live connections
 * per backend (conns[], the conn_* fields of the info). 4: a connection
 * listing on request (the conn_list line after the control line, rows[] and
 * the conn_list_* fields of each record) and each table's fill (ct_live,
 * ct_capacity). */
#define SLUICE_ABI_VERSION 4u

#define SLUICE_MAX_VIPS 4096u
#define SLUICE_MAX_BACKENDS 4096u /* over all VIPs; also the backend id space */
#define SLUICE_MAX_WORKERS 64u
#define SLUICE_SNAPSHOT_SLOTS 4u
/* Maglev entries over all VIPs of one snapshot: 255 VIPs at the default
 * M = 65,537, 4,096 at M = 4,093, or 16 at M = 1,048,573. tmpfs pages are
 * only backed once written, so unused room costs address space, not
 * memory. */
#define SLUICE_RING_POOL (1u << 24)
/* Open addressing: at most 2 x SLUICE_MAX_VIPS entries (a VIP and its
 * address) in 4 x that many slots. At a load of 1/4 a linear probe rarely
 * runs past 8; the builder tries seeds (hdr.vip_seed) until every entry is
 * within SLUICE_VIP_HASH_PROBES, so every configuration validation accepts
 * is published. */
#define SLUICE_VIP_HASH_SIZE (8u * SLUICE_MAX_VIPS) /* power of two */
#define SLUICE_VIP_HASH_PROBES 16u

/* `active` packs the generation with the slot so one 64-bit load gives both. */
#define SLUICE_ACTIVE_SLOT_BITS 8u
#define SLUICE_ACTIVE_NONE 0ULL /* generation 0 is never published */

SLUICE_INLINE uint32_t sluice_active_slot(uint64_t active)
{
	return (uint32_t)(active & ((1u << SLUICE_ACTIVE_SLOT_BITS) - 1));
}

SLUICE_INLINE uint64_t sluice_active_generation(uint64_t active)
{
	return active >> SLUICE_ACTIVE_SLOT_BITS;
}

SLUICE_INLINE uint64_t sluice_active_pack(uint64_t generation, uint32_t slot)
{
	return (generation << SLUICE_ACTIVE_SLOT_BITS) | slot;
}

/* Forwarding modes (the VIP's `mode`). */
enum sluice_mode {
	SLUICE_MODE_IPIP = 1,  /* IPIP, IPv6-in-IPv6 or IPv4-in-IPv6 by the families */
	SLUICE_MODE_GUE = 2,   /* IP-in-GUE-in-UDP to gue_port */
	SLUICE_MODE_L2DSR = 3, /* destination MAC rewritten to the backend's */
};

/* ---------------------------------------------------------------- records */

#define SLUICE_NODE_HAS_IPV4 0x01
#define SLUICE_NODE_HAS_IPV6 0x02
#define SLUICE_NODE_HAS_GATEWAY_MAC 0x04

struct sluice_node {
	uint8_t source_ipv4[4];  /* outer source for IPv4 encapsulation */
	uint8_t source_ipv6[16]; /* outer source for IPv6 encapsulation */
	uint8_t gateway_mac[6];  /* if set, every encapsulated packet goes here */
	uint8_t flags;           /* SLUICE_NODE_* */
	uint8_t pad0;
	uint32_t mtu;            /* largest IP packet sluice may send; 0: the port's own */
	uint8_t pad1[32];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_node) == 64, "node record is one cache line");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_node, gateway_mac) == 20, "node.gateway_mac at 20");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_node, mtu) == 28, "node.mtu at 28");

#define SLUICE_VIP_PRESENT 0x01

/* vips[] is indexed by the VIP's stable id, which sluiced keeps across
 * changes and restarts so counters stay attached to their VIP. */
struct sluice_vip {
	uint8_t addr[16];
	uint16_t port_be;     /* 0: every port */
	uint8_t proto;        /* SLUICE_IPPROTO_TCP or _UDP */
	uint8_t family;       /* SLUICE_AF_INET or _INET6; 0: slot unused */
	uint8_t mode;         /* enum sluice_mode */
	uint8_t flags;        /* SLUICE_VIP_* */
	uint16_t gue_port_be; /* GUE outer destination port */
	uint32_t id;          /* == index in vips[] */
	uint32_t ring_offset; /* first entry of this VIP's Maglev table in rings[] */
	uint32_t ring_size;   /* M, prime */
	uint32_t live_count;  /* backends in the table; 0: drop_no_backend */
	uint32_t backend_count;
	uint32_t pad0;
	uint64_t ring_inv;    /* sluice_fastmod_inverse(ring_size) */
	uint8_t pad1[8];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_vip) == 64, "VIP record is one cache line");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_vip, port_be) == 16, "vip.port_be at 16");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_vip, id) == 24, "vip.id at 24");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_vip, ring_inv) == 48, "vip.ring_inv at 48");

#define SLUICE_BACKEND_PRESENT 0x01
#define SLUICE_BACKEND_HEALTHY 0x02  /* health checks pass (or check: none) */
#define SLUICE_BACKEND_DRAINING 0x04 /* weight 0: keeps its flows, gets no new ones */
#define SLUICE_BACKEND_HAS_MAC 0x08  /* `mac` is the next hop's MAC */

/* backends[] is indexed by the backend's stable id; Maglev tables and the
 * connection tables hold that id. A flow whose backend is no longer present,
 * no longer healthy, or now belongs to another VIP is re-picked; a draining
 * one stays. */
struct sluice_backend {
	uint8_t addr[16];
	uint8_t family; /* 0: slot unused */
	uint8_t flags;  /* SLUICE_BACKEND_* */
	uint8_t mac[6]; /* next-hop MAC: the backend's own (l2dsr) or its gateway's */
	uint32_t weight;
	uint32_t vip_id;
	uint32_t id;    /* == index in backends[] */
	uint8_t pad[28];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_backend) == 64, "backend record is one cache line");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_backend, mac) == 18, "backend.mac at 18");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_backend, weight) == 24, "backend.weight at 24");

SLUICE_INLINE bool sluice_backend_keeps_flows(const struct sluice_backend *b, uint32_t vip_id)
{
	return (b->flags & (SLUICE_BACKEND_PRESENT | SLUICE_BACKEND_HEALTHY)) ==
		       (SLUICE_BACKEND_PRESENT | SLUICE_BACKEND_HEALTHY) &&
	       b->vip_id == vip_id;
}

struct sluice_snapshot_header {
	uint64_t generation;   /* > 0, strictly increasing */
	uint64_t checksum;     /* sluice_snapshot_checksum() of this slot */
	uint64_t published_ns; /* CLOCK_REALTIME when it became active */
	uint32_t vip_count;
	uint32_t backend_count;
	uint32_t ring_used;    /* entries of rings[] in use */
	uint32_t vip_seed;     /* sluice_vip_hash()'s seed for vip_hash[] */
	uint8_t pad[24];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_snapshot_header) == 64, "snapshot header is one line");

/* One immutable configuration, as the dataplanes see it. */
struct sluice_snapshot {
	struct sluice_snapshot_header hdr;
	struct sluice_node node;
	uint16_t vip_hash[SLUICE_VIP_HASH_SIZE]; /* vip id + 1; 0: empty */
	struct sluice_vip vips[SLUICE_MAX_VIPS];
	struct sluice_backend backends[SLUICE_MAX_BACKENDS];
	uint32_t rings[SLUICE_RING_POOL]; /* backend ids or SLUICE_MAGLEV_EMPTY */
};
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_snapshot, node) == 64, "snapshot.node at 64");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_snapshot, vip_hash) == 128, "snapshot.vip_hash at 128");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_snapshot, vips) == 65664, "snapshot.vips at 65664");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_snapshot, backends) == 327808, "snapshot.backends");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_snapshot, rings) == 589952, "snapshot.rings");
SLUICE_STATIC_ASSERT(sizeof(struct sluice_snapshot) == 589952 + 4ull * SLUICE_RING_POOL, "snapshot size");

#define SLUICE_WORKER_PID_CLAIMING 0xFFFFFFFFu /* a claim in progress */

#define SLUICE_WORKER_FREE 0u
#define SLUICE_WORKER_LIVE 1u
#define SLUICE_WORKER_STOPPED 2u /* exited cleanly: holds no slot */
/* Exited cleanly leaving its forwarding in place for the next run to take
 * over (sluice-xdp --keep-attached: the program stays attached on its
 * maps): holds no slot, like STOPPED; heartbeat_ns is when it left, so a
 * reader can bound how long it trusts the hand-over. */
#define SLUICE_WORKER_HANDED_OVER 3u

#define SLUICE_WORKER_KIND_DPDK 1u
#define SLUICE_WORKER_KIND_XDP 2u
#define SLUICE_WORKER_KIND_TEST 3u
/* A --pcap replay (sluice-dpdk or sluice-xdp) attached to a segment to take
 * its snapshots: sluiced counts its packets apart from what the node
 * forwarded (never in the VIP, backend or node totals) and its record is
 * freed, counters zeroed, when it exits cleanly. */
#define SLUICE_WORKER_KIND_REPLAY 4u

/* Why a worker forwards by an older generation than the one it has seen:
 * sluice-xdp copies each snapshot into its maps and refuses one they
 * cannot hold or that does not verify (the DPDK worker reads the slot
 * itself, so it applies what it sees). */
#define SLUICE_REFUSED_NONE 0u
#define SLUICE_REFUSED_CORRUPT 1u      /* a count or table out of range */
#define SLUICE_REFUSED_CHECKSUM 2u     /* torn or foreign write */
#define SLUICE_REFUSED_RING_ENTRIES 3u /* Maglev tables larger than its --ring-entries */
#define SLUICE_REFUSED_GENERATION 4u   /* not after the one applied: another segment */

/* Written only by the worker that owns it (claimed by CAS on pid). */
struct sluice_worker_info {
	uint64_t generation_seen;    /* release store; the generation of the slot in use */
	uint64_t heartbeat_ns;       /* CLOCK_MONOTONIC, every housekeeping tick */
	uint32_t pid;                /* owner; 0: free */
	uint32_t state;              /* SLUICE_WORKER_* */
	uint32_t kind;               /* SLUICE_WORKER_KIND_* */
	uint32_t queue;              /* RX queue (DPDK) or 0 (XDP: one mirror per interface) */
	char name[32];               /* e.g. "dpdk eth0 q0", NUL-terminated */
	/* Second line: what the housekeeping thread reports, apart from the
	 * hot line the writer scans. */
	uint64_t generation_applied; /* what it forwards by; below generation_seen: refused */
	uint32_t refused;            /* SLUICE_REFUSED_* of generation_seen, while not applied */
	/* The connection counts (conns[] of the record), published by the
	 * dataplane's non-worker thread once per completed sweep of the
	 * worker's connection table, under a sequence lock: odd while conns[]
	 * and the three fields below are written, so a reader that sees the
	 * same even value before and after its copy has one sweep's counts.
	 * conn_seq / 2 is the number of completed sweeps; 0: this dataplane
	 * does not count (yet, or --conn-sweep-s 0, or a replay). */
	uint32_t conn_seq;
	uint64_t conn_sweep_generation; /* generation_applied when that sweep began */
	uint64_t conn_sweep_begun_ns;   /* CLOCK_MONOTONIC when it began */
	uint64_t conn_sweep_done_ns;    /* CLOCK_MONOTONIC when it completed */
	uint32_t conn_sweep_ms;         /* how long a sweep is paced to take; set at
					 * start, before the first sweep: 0, no counting */
	/* The table's fill as of that sweep (under conn_seq too): live
	 * entries of every state over all its copies (sluice-xdp: one per
	 * CPU), and the ways those copies have. */
	uint32_t ct_live;
	uint32_t ct_capacity;
	/* The answer to the control block's conn_list request: rows[0..rows)
	 * of `matched` live connections the filter matched; written before
	 * conn_list_done is set (release) to the request's seq. */
	uint32_t conn_list_done;
	uint32_t conn_list_rows;
	uint32_t conn_list_matched;
};
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_worker_info, generation_applied) == 64,
		     "generation_applied on the second line");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_worker_info, conn_seq) == 76, "info.conn_seq at 76");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_worker_info, conn_sweep_generation) == 80,
		     "info.conn_sweep_generation at 80");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_worker_info, conn_sweep_ms) == 104,
		     "info.conn_sweep_ms at 104");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_worker_info, conn_list_done) == 116,
		     "info.conn_list_done at 116");
SLUICE_STATIC_ASSERT(sizeof(struct sluice_worker_info) == 128, "worker info is two lines");

/* Live entries of one backend in one worker's connection table, as IPVS
 * counts a real server's: active are SYN, EST and UDP entries, inactive FIN
 * ones (conntrack.h states); FRAG entries are no connections. */
struct sluice_conn_count {
	uint32_t active;
	uint32_t inactive;
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_conn_count) == 8, "conn count is two words");

/* One connection of a listing (`sluicectl conn list`), as the dataplane's
 * table held it when it answered. */
#define SLUICE_CONN_LIST_ROWS 1024u /* per record and request */
#define SLUICE_CONN_ANY 0xFFFFFFFFu /* a filter that matches every id */
struct sluice_conn_row {
	struct sluice_flow_key key; /* client to VIP */
	uint32_t backend_id;
	uint32_t vip_id;
	uint32_t age_s;    /* since the flow's last packet */
	uint32_t expire_s; /* until its entry expires unless another comes */
	uint8_t state;     /* enum sluice_ct_state */
	uint8_t pad[7];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_conn_row) == 64, "conn row is one line");

/* A worker's record: its own cache lines, so counting needs no atomics. */
struct sluice_worker {
	struct sluice_worker_info info;
	uint64_t counters[SLUICE_COUNTER_SLOTS];                  /* enum sluice_counter */
	struct sluice_obj_counters vip[SLUICE_MAX_VIPS];          /* by VIP id */
	struct sluice_obj_counters backend[SLUICE_MAX_BACKENDS];  /* by backend id */
	/* By backend id, as of the last completed sweep (info.conn_seq).
	 * Written by the dataplane's housekeeping, never by the packet path. */
	struct sluice_conn_count conns[SLUICE_MAX_BACKENDS];
	/* The last conn_list answer (info.conn_list_*). */
	struct sluice_conn_row rows[SLUICE_CONN_LIST_ROWS];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_worker) ==
			     128 + 8 * SLUICE_COUNTER_SLOTS + 24 * (SLUICE_MAX_VIPS + SLUICE_MAX_BACKENDS) +
				     8 * SLUICE_MAX_BACKENDS + 64 * SLUICE_CONN_LIST_ROWS,
		     "worker record size");
SLUICE_STATIC_ASSERT(sizeof(struct sluice_worker) % SLUICE_CACHE_LINE == 0, "worker records line up");

/* Fixed when the segment is created; a reader checks all of it. */
struct sluice_shm_header {
	uint64_t magic;
	uint32_t abi_version;
	uint32_t header_size;     /* sizeof(struct sluice_shm_header) */
	uint64_t segment_size;    /* sizeof(struct sluice_shm) */
	uint32_t max_vips;
	uint32_t max_backends;
	uint32_t max_workers;
	uint32_t snapshot_slots;
	uint32_t ring_pool;
	uint32_t counter_slots;
	uint8_t pad[16];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_shm_header) == 64, "shm header is one line");

/* Written by sluiced only. */
struct sluice_shm_control {
	uint64_t active;              /* generation << 8 | slot; SLUICE_ACTIVE_NONE before the first */
	uint64_t writer_heartbeat_ns; /* CLOCK_MONOTONIC */
	uint32_t writer_pid;
	uint32_t pad0;
	uint64_t slot_generation[SLUICE_SNAPSHOT_SLOTS]; /* what each slot holds; 0: never used */
	uint8_t pad1[8];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_shm_control) == 64, "shm control is one line");

/* A request for a listing of live connections, written by sluiced only:
 * the filter, then seq (release). Each dataplane that counts connections
 * answers in its records (info.conn_list_*, rows[]) from one pass over its
 * table, off the packet path. sluiced posts one request at a time and reads
 * a record's rows only once it has answered that seq. */
struct sluice_conn_list_request {
	uint32_t seq;        /* 0: none posted yet */
	uint32_t vip_id;     /* SLUICE_CONN_ANY: every VIP */
	uint32_t backend_id; /* SLUICE_CONN_ANY: every backend */
	uint32_t limit;      /* rows wanted, at most SLUICE_CONN_LIST_ROWS */
	uint8_t pad[48];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_conn_list_request) == 64, "conn list request is one line");

struct sluice_shm {
	struct sluice_shm_header hdr;
	struct sluice_shm_control ctl;
	struct sluice_conn_list_request conn_list;
	struct sluice_worker workers[SLUICE_MAX_WORKERS];
	struct sluice_snapshot slots[SLUICE_SNAPSHOT_SLOTS];
};
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_shm, ctl) == 64, "shm.ctl at 64");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_shm, conn_list) == 128, "shm.conn_list at 128");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_shm, workers) == 192, "shm.workers at 192");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_shm, slots) % SLUICE_CACHE_LINE == 0,
		     "snapshot slots line up");

/* The header this build writes and expects, magic included; a segment
 * whose header differs in any field is of another layout. */
SLUICE_INLINE void sluice_shm_header_init(struct sluice_shm_header *h)
{
	__builtin_memset(h, 0, sizeof(*h));
	h->magic = SLUICE_SHM_MAGIC;
	h->abi_version = SLUICE_ABI_VERSION;
	h->header_size = sizeof(struct sluice_shm_header);
	h->segment_size = sizeof(struct sluice_shm);
	h->max_vips = SLUICE_MAX_VIPS;
	h->max_backends = SLUICE_MAX_BACKENDS;
	h->max_workers = SLUICE_MAX_WORKERS;
	h->snapshot_slots = SLUICE_SNAPSHOT_SLOTS;
	h->ring_pool = SLUICE_RING_POOL;
	h->counter_slots = SLUICE_COUNTER_SLOTS;
}

/* ------------------------------------------------------------- VIP lookup */

/* Hash of a VIP's (address, family, port, protocol) for vip_hash, under the
 * snapshot's seed. */
SLUICE_INLINE uint32_t sluice_vip_hash(const uint8_t addr[16], uint8_t family, uint16_t port_be,
				       uint8_t proto, uint32_t seed)
{
	const uint64_t *w = (const uint64_t *)(const void *)addr;
	uint64_t h = sluice_hash_init(3, SLUICE_FLOW_HASH_SEED ^ seed);
	h = sluice_hash_step(h, w[0]);
	h = sluice_hash_step(h, w[1]);
	h = sluice_hash_step(h, (uint64_t)port_be | (uint64_t)proto << 16 | (uint64_t)family << 24);
	h = sluice_fmix64(h);
	return (uint32_t)h;
}

SLUICE_INLINE bool sluice_vip_matches(const struct sluice_vip *v, const uint8_t addr[16],
				      uint8_t family, uint16_t port_be, uint8_t proto)
{
	const uint64_t *a = (const uint64_t *)(const void *)v->addr;
	const uint64_t *b = (const uint64_t *)(const void *)addr;
	return a[0] == b[0] && a[1] == b[1] && v->family == family && v->port_be == port_be &&
	       v->proto == proto;
}

/* Exact (address, port, protocol) match; SLUICE_MAX_VIPS if none. */
SLUICE_INLINE uint32_t sluice_vip_find_exact(const struct sluice_snapshot *s,
					     const uint8_t addr[16], uint8_t family,
					     uint16_t port_be, uint8_t proto)
{
	uint32_t i = sluice_vip_hash(addr, family, port_be, proto, s->hdr.vip_seed);
	for (uint32_t probe = 0; probe < SLUICE_VIP_HASH_PROBES; probe++) {
		uint16_t e = s->vip_hash[(i + probe) & (SLUICE_VIP_HASH_SIZE - 1)];
		if (e == 0)
			break;
		if (sluice_vip_matches(&s->vips[(e - 1) & (SLUICE_MAX_VIPS - 1)], addr, family,
				       port_be, proto))
			return (uint32_t)(e - 1);
	}
	return SLUICE_MAX_VIPS;
}

/* vip_hash also holds one entry per VIP address, keyed (address, port 0,
 * protocol 0) and naming one VIP of that address: it tells "a VIP address,
 * but no service on this port" (counted drop, echo answered) from "not a
 * VIP" (the kernel's) in one more probe. */
SLUICE_INLINE uint32_t sluice_vip_find_address(const struct sluice_snapshot *s,
					       const uint8_t addr[16], uint8_t family)
{
	uint32_t i = sluice_vip_hash(addr, family, 0, 0, s->hdr.vip_seed);
	for (uint32_t probe = 0; probe < SLUICE_VIP_HASH_PROBES; probe++) {
		uint16_t e = s->vip_hash[(i + probe) & (SLUICE_VIP_HASH_SIZE - 1)];
		if (e == 0)
			break;
		const struct sluice_vip *v = &s->vips[(e - 1) & (SLUICE_MAX_VIPS - 1)];
		const uint64_t *a = (const uint64_t *)(const void *)v->addr;
		const uint64_t *b = (const uint64_t *)(const void *)addr;
		if (a[0] == b[0] && a[1] == b[1] && v->family == family)
			return (uint32_t)(e - 1);
	}
	return SLUICE_MAX_VIPS;
}

/* The VIP for (address, port, protocol): the exact one, else the address's
 * port-0 VIP (every port); SLUICE_MAX_VIPS if neither. */
SLUICE_INLINE uint32_t sluice_vip_find(const struct sluice_snapshot *s, const uint8_t addr[16],
				       uint8_t family, uint16_t port_be, uint8_t proto)
{
	uint32_t id = sluice_vip_find_exact(s, addr, family, port_be, proto);
	if (id != SLUICE_MAX_VIPS)
		return id;
	return sluice_vip_find_exact(s, addr, family, 0, proto);
}

/* ---------------------------------------------------------------- checksum */

/* Covers everything a reader uses: node, VIP hash, VIPs, backends and the
 * used part of the rings, and the counts in the header. Not for the packet
 * path: tests and a dataplane's snapshot switch verify it. Never inlined,
 * unlike the decision helpers: it runs once per snapshot, and a call of its
 * own keeps its 74,000-step loop out of the fuzz targets' coverage
 * (fuzz/coverage_ignore.txt names it). */
static __attribute__((noinline, unused)) uint64_t sluice_checksum_words(uint64_t h, const uint64_t *w, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		h = sluice_hash_step(h, w[i]);
	return h;
}

/* The checksum of a snapshot held in two pieces, as sluice-xdp copies it
 * (its banks hold the snapshot up to rings[], its ring map the rings): `h`
 * gives generation and counts, `body` the bytes from node up to rings[],
 * `rings` the h->ring_used entries. The caller bounds ring_used first. */
SLUICE_INLINE uint64_t sluice_snapshot_checksum_parts(const struct sluice_snapshot_header *hd,
						      const void *body, const uint32_t *rings)
{
	uint64_t h = sluice_hash_init(0, hd->generation);
	h = sluice_hash_step(h, (uint64_t)hd->vip_count | (uint64_t)hd->backend_count << 32);
	h = sluice_hash_step(h, hd->ring_used | (uint64_t)hd->vip_seed << 32);
	h = sluice_checksum_words(h, (const uint64_t *)body,
				  (SLUICE_OFFSETOF(struct sluice_snapshot, rings) -
				   SLUICE_OFFSETOF(struct sluice_snapshot, node)) / 8);
	h = sluice_checksum_words(h, (const uint64_t *)(const void *)rings, (uint64_t)hd->ring_used / 2);
	if (hd->ring_used & 1)
		h = sluice_hash_step(h, rings[hd->ring_used - 1]);
	return sluice_fmix64(h);
}

SLUICE_INLINE uint64_t sluice_snapshot_checksum(const struct sluice_snapshot *s)
{
	return sluice_snapshot_checksum_parts(&s->hdr, &s->node, s->rings);
}
