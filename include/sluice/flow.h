/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow key and the flow hash.
 *
 * A flow is always written in the client-to-VIP direction: src is the client,
 * dst the VIP. An ICMP error about a packet the backend sent quotes that
 * packet (VIP to client); the parser swaps it back before hashing, so the
 * error lands on the backend that owns the flow.
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/hash.h>

#define SLUICE_AF_INET 4
#define SLUICE_AF_INET6 6

/* 40 bytes, five 64-bit words. An IPv4 address occupies the first 4 bytes of
 * its 16-byte field and the other 12 are zero, so one hash covers both
 * families and a v4 key never equals a v6 key (family differs). */
struct sluice_flow_key {
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t sport_be;
	uint16_t dport_be;
	uint8_t proto;
	uint8_t family; /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	uint8_t pad[2]; /* always zero: hashed and compared */
} SLUICE_ALIGNED(8);
SLUICE_STATIC_ASSERT(sizeof(struct sluice_flow_key) == 40, "flow key is 40 bytes");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_flow_key, sport_be) == 32, "ports at 32");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_flow_key, proto) == 36, "proto at 36");

#define SLUICE_FLOW_KEY_WORDS 5

/* sluice_hash (hash.h) of the five words of the key under `seed`, folded
 * to 32 bits. Written out rather than looped so the BPF verifier sees five
 * fixed-offset loads. */
SLUICE_INLINE uint32_t sluice_flow_key_hash(const struct sluice_flow_key *key, uint64_t seed)
{
	const uint64_t *w = (const uint64_t *)key;
	uint64_t h = sluice_hash_init(SLUICE_FLOW_KEY_WORDS, seed);
	h = sluice_hash_step(h, w[0]);
	h = sluice_hash_step(h, w[1]);
	h = sluice_hash_step(h, w[2]);
	h = sluice_hash_step(h, w[3]);
	h = sluice_hash_step(h, w[4]);
	h = sluice_fmix64(h);
	return (uint32_t)(h ^ (h >> 32));
}

/* The flow hash, the same on every node (Maglev's pick, outer entropy): the
 * key under the public flow seed. */
SLUICE_INLINE uint32_t sluice_flow_hash(const struct sluice_flow_key *key)
{
	return sluice_flow_key_hash(key, SLUICE_FLOW_HASH_SEED);
}

SLUICE_INLINE bool sluice_flow_key_equal(const struct sluice_flow_key *a,
					 const struct sluice_flow_key *b)
{
	const uint64_t *x = (const uint64_t *)a;
	const uint64_t *y = (const uint64_t *)b;
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

/* GUE outer source port from the flow hash (RFC 7605 dynamic range
 * 49152-65535), so the fabric's ECMP and the backend's RSS spread flows. */
SLUICE_INLINE uint16_t sluice_gue_source_port(uint32_t flow_hash)
{
	return (uint16_t)(0xC000u | (flow_hash & 0x3FFFu));
}
