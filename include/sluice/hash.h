/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one hash sluice uses for decisions: the flow hash (which backend a flow
 * goes to, the GUE source port) and the Maglev permutation of each backend.
 *
 * Definition (fixed; changing it moves every flow, so it is part of the ABI):
 *   words  : the input read as little-endian 64-bit words w[0..n-1]
 *   h      : seed ^ (n * K1)
 *   step   : h = rotl64((h ^ w[i]) * K1, 29)       for each word in order
 *   final  : MurmurHash3's fmix64(h)
 * with K1 = 0x9E3779B97F4A7C15 (2^64 / golden ratio). The multiply-rotate
 * chain makes every input bit reach the high bits; fmix64 (Appleby,
 * MurmurHash3) avalanches them into all 64, so `hash % M` for a prime M is
 * uniform. Only integer multiply, xor, shift: the same in C, C++ and BPF, on
 * every machine, so every LB of a fleet — DPDK or XDP — sends a flow to the
 * same backend.
 */
#pragma once

#include <sluice/compiler.h>

#define SLUICE_HASH_K1 0x9E3779B97F4A7C15ULL

/* Seeds. The flow seed is a constant, not a per-host secret: ECMP across
 * several LBs needs them all to agree. */
#define SLUICE_FLOW_HASH_SEED 0x736C756963650001ULL      /* "sluice" 01 */
#define SLUICE_MAGLEV_OFFSET_SEED 0x736C756963650002ULL  /* Maglev §3.4 h1 */
#define SLUICE_MAGLEV_SKIP_SEED 0x736C756963650003ULL    /* Maglev §3.4 h2 */

SLUICE_INLINE uint64_t sluice_rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* MurmurHash3 fmix64 finalizer. */
SLUICE_INLINE uint64_t sluice_fmix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDULL;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ULL;
	h ^= h >> 33;
	return h;
}

/* MurmurHash3 fmix32 finalizer. */
SLUICE_INLINE uint32_t sluice_fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	h *= 0xC2B2AE35u;
	h ^= h >> 16;
	return h;
}

SLUICE_INLINE uint64_t sluice_hash_step(uint64_t h, uint64_t w)
{
	return sluice_rotl64((h ^ sluice_le64(w)) * SLUICE_HASH_K1, 29);
}

SLUICE_INLINE uint64_t sluice_hash_init(unsigned n_words, uint64_t seed)
{
	return seed ^ ((uint64_t)n_words * SLUICE_HASH_K1);
}
