/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The BPF maps of the XDP program as both sides see them: sluice.bpf.c
 * (clang -target bpf) reads them, sluice-xdp (g++) fills them from the
 * snapshot. Only what is particular to the XDP path lives here; every record
 * the maps hold is a struct of include/sluice/ (struct sluice_vip,
 * sluice_backend, sluice_node, sluice_ct_bucket, sluice_obj_counters), so
 * the program and the DPDK worker read the same bytes.
 *
 * Whole-snapshot switch. Every configuration map holds four banks; the
 * mirror fills a bank that no program run can be reading, then stores
 * `active` (one 64-bit word, generation << 2 | bank). The program loads
 * `active` once per packet, as the DPDK worker loads the segment's active
 * slot once per burst, and reads only that bank: a packet never sees half of
 * one snapshot and half of another, and a Maglev table is never edited under
 * a lookup. A bank the program switched away from is written again only
 * after an RCU grace period has passed since the switch (xdp/mirror.cpp: an
 * ARRAY_OF_MAPS update returns after one, kernel/bpf/syscall.c
 * maybe_wait_bpf_programs()). The mirror waits for that on threads of its
 * own, one per bank left: with four banks, snapshots that follow each other
 * closely still go in at once (a grace period is 5-20 ms on the test VM).
 *
 * Map            type              key                   value
 * sl_state       ARRAY[1]          0                     struct sluice_xdp_state
 * sl_banks       ARRAY[4]          bank                  struct sluice_xdp_bank (the snapshot up to rings[])
 * sl_rings       ARRAY[4*R/16]     (bank*R + i) / 16     struct sluice_xdp_ring_chunk
 * sl_ct          ARRAY[cpus*B]     cpu*B + bucket        struct sluice_ct_bucket   (pinned)
 * sl_cpu         PERCPU_ARRAY[1]   0                     struct sluice_xdp_cpu (counters, clock, VIP memo)
 * sl_vip_cnt     PERCPU_ARRAY[4096] VIP id               struct sluice_obj_counters
 * sl_be_cnt      PERCPU_ARRAY[4096] backend id           struct sluice_obj_counters
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/counters.h>
#include <sluice/flow.h>
#include <sluice/shm.h>
#include <sluice/vip.h>

#define SLUICE_XDP_BANKS 4u
#define SLUICE_XDP_BANK_BITS 2u

/* active = generation << 2 | bank; 0: nothing mirrored yet (the program
 * counts drop_no_snapshot, as the DPDK worker does before the first
 * publish). */
struct sluice_xdp_state {
	uint64_t active;
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_xdp_state) == 8, "xdp state is one word");

SLUICE_INLINE uint32_t sluice_xdp_active_bank(uint64_t active)
{
	return (uint32_t)(active & ((1u << SLUICE_XDP_BANK_BITS) - 1));
}

SLUICE_INLINE uint64_t sluice_xdp_active_generation(uint64_t active)
{
	return active >> SLUICE_XDP_BANK_BITS;
}

SLUICE_INLINE uint64_t sluice_xdp_active_pack(uint64_t generation, uint32_t bank)
{
	return generation << SLUICE_XDP_BANK_BITS | bank;
}

/*
 * A bank of sl_banks: the snapshot from its header up to (not including)
 * rings[], at the snapshot's own offsets: the node, the VIP hash, the VIPs
 * and the backends. The program reads it as a struct sluice_snapshot, so the
 * VIP lookups are shm.h's own sluice_vip_find_exact() and
 * sluice_vip_find_address() over the same bytes the DPDK worker reads (one
 * map lookup per packet for all of it); the Maglev tables, which a bank
 * value could not hold, are in sl_rings at the same offsets.
 */
struct sluice_xdp_bank {
	struct sluice_snapshot_header hdr;
	struct sluice_node node;
	uint16_t vip_hash[SLUICE_VIP_HASH_SIZE];
	struct sluice_vip vips[SLUICE_MAX_VIPS];
	struct sluice_backend backends[SLUICE_MAX_BACKENDS];
};
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_xdp_bank, node) ==
			     SLUICE_OFFSETOF(struct sluice_snapshot, node) &&
			     SLUICE_OFFSETOF(struct sluice_xdp_bank, vip_hash) ==
				     SLUICE_OFFSETOF(struct sluice_snapshot, vip_hash) &&
			     SLUICE_OFFSETOF(struct sluice_xdp_bank, vips) ==
				     SLUICE_OFFSETOF(struct sluice_snapshot, vips) &&
			     SLUICE_OFFSETOF(struct sluice_xdp_bank, backends) ==
				     SLUICE_OFFSETOF(struct sluice_snapshot, backends),
		     "a bank lays out the snapshot's fields at the snapshot's offsets");
SLUICE_STATIC_ASSERT(sizeof(struct sluice_xdp_bank) == SLUICE_OFFSETOF(struct sluice_snapshot, rings),
		     "a bank is the snapshot up to rings[]");

/* Maglev entries per sl_rings value. An ARRAY map stores each value at an
 * 8-byte stride, so one u32 per value would double the memory and break the
 * mmap'd copy; 16 entries are one cache line. */
#define SLUICE_XDP_RING_CHUNK 16u
struct sluice_xdp_ring_chunk {
	uint32_t e[SLUICE_XDP_RING_CHUNK];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_xdp_ring_chunk) == 64, "ring chunk is one cache line");

/* Ring entries per bank: a power of two, at least the snapshot's ring_used.
 * The default holds 16 VIPs at the default M = 65,537 (16 MiB for the
 * four banks); --ring-entries raises it up to the segment's pool. */
#define SLUICE_XDP_DEFAULT_RING_ENTRIES (1u << 20)
#define SLUICE_XDP_MAX_RING_ENTRIES SLUICE_RING_POOL

struct sluice_xdp_counters {
	uint64_t c[SLUICE_COUNTER_SLOTS]; /* enum sluice_counter */
};

/*
 * The connection table's clock, kept per CPU: now_s is
 * bpf_ktime_get_coarse_ns() / 10^9, and second_ns that second's start, so a
 * packet in the same second reuses now_s instead of dividing (BPF has no
 * multiply-high, so a division by a constant is a real 64-bit divide).
 * Exact: a packet whose time is not in [second_ns, second_ns + 10^9)
 * divides again.
 */
struct sluice_xdp_clock {
	uint64_t second_ns;
	uint64_t now_s;
};

/* The CPU's VIP memo is vip.h's struct sluice_vip_memo, kept across
 * packets under the `active` word it was found in. A bank's bytes never
 * change while it is active, and the mirror only takes generations above the
 * last one it took (a segment never reuses one), so the same key under the
 * same `active` has the same answer. */

/* sl_cpu's value: one lookup per packet for the CPU's counters, clock and
 * VIP memo. */
struct sluice_xdp_cpu {
	struct sluice_xdp_counters cnt;
	struct sluice_xdp_clock clock;
	struct sluice_vip_memo memo;
};

/* Connection-table entries per CPU when --ct-entries is not given: 2^18
 * entries are 16 MiB per CPU. */
#define SLUICE_XDP_DEFAULT_CT_ENTRIES (1u << 18)

/* The XDP entry point's name, which sluice-xdp also looks for on an
 * interface to tell its own program from someone else's. */
#define SLUICE_XDP_PROG_NAME "sluice_xdp"
#define SLUICE_XDP_DECAP_PROG_NAME "sluice_decap"
