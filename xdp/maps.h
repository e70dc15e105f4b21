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
 * sl_nodes       ARRAY[4]          bank                  struct sluice_node
 * sl_vips        HASH              sluice_xdp_vip_key    struct sluice_vip
 * sl_vip_ids     ARRAY[4*256]      bank*256 + VIP id     struct sluice_vip
 * sl_backends    ARRAY[4*4096]     bank*4096 + id        struct sluice_backend
 * sl_rings       ARRAY[4*R/16]     (bank*R + i) / 16     struct sluice_xdp_ring_chunk
 * sl_ct          ARRAY[cpus*B]     cpu*B + bucket        struct sluice_ct_bucket   (pinned)
 * sl_counters    PERCPU_ARRAY[1]   0                     struct sluice_xdp_counters
 * sl_vip_cnt     PERCPU_ARRAY[256] VIP id                struct sluice_obj_counters
 * sl_be_cnt      PERCPU_ARRAY[4096] backend id           struct sluice_obj_counters
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/counters.h>
#include <sluice/shm.h>

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
 * Key of sl_vips: what sluice_vip_find_exact() matches (address, family,
 * port, protocol), plus the bank. The snapshot's vip_hash holds two kinds of
 * entries and so does this map: a service (port, TCP/UDP; port 0 for every
 * port) and, once per VIP address, the address entry (port 0, protocol 0)
 * that tells "a VIP address without this service" from "not a VIP".
 */
struct sluice_xdp_vip_key {
	uint8_t addr[16];
	uint16_t port_be;
	uint8_t proto;
	uint8_t family;
	uint32_t bank;
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_xdp_vip_key) == 24, "vip key is 24 bytes, no padding");

#define SLUICE_XDP_MAX_VIP_KEYS (SLUICE_XDP_BANKS * 2u * SLUICE_MAX_VIPS)

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

/* Connection-table entries per CPU when --ct-entries is not given: 2^18
 * entries are 16 MiB per CPU. */
#define SLUICE_XDP_DEFAULT_CT_ENTRIES (1u << 18)

/* The XDP entry point's name, which sluice-xdp also looks for on an
 * interface to tell its own program from someone else's. */
#define SLUICE_XDP_PROG_NAME "sluice_xdp"
#define SLUICE_XDP_DECAP_PROG_NAME "sluice_decap"
