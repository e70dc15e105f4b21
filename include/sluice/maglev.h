/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maglev (Eisenbud et al., NSDI'16, §3.4): the lookup both dataplanes run,
 * and the two per-backend hashes the control plane builds tables from.
 * Table generation itself is control-plane C++ (controlplane/maglev.cpp).
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/hash.h>

#define SLUICE_MAGLEV_MIN_SIZE 251u
#define SLUICE_MAGLEV_MAX_SIZE 4194301u /* largest prime below 2^22 */

/* A slot holding this value has no backend (a VIP with no live backend). */
#define SLUICE_MAGLEV_EMPTY 0xFFFFFFFFu

/*
 * hash % m without a division (Lemire, Kaser, Kurz, "Faster remainder by
 * direct computation", 2019): with inv = floor((2^64 - 1) / m) + 1, the
 * remainder is the high 64 bits of (inv * hash mod 2^64) * m, exact for
 * 32-bit hash and m. BPF has no 128-bit multiply, so the high part of the
 * 64x32 product is assembled from two 32x32 products.
 */
SLUICE_INLINE uint64_t sluice_fastmod_inverse(uint32_t m)
{
	return 0xFFFFFFFFFFFFFFFFULL / m + 1;
}

SLUICE_INLINE uint32_t sluice_fastmod(uint32_t hash, uint64_t inv, uint32_t m)
{
	uint64_t low = inv * hash;
	uint64_t lo_part = ((low & 0xFFFFFFFFULL) * m) >> 32;
	uint64_t hi_part = (low >> 32) * m;
	return (uint32_t)((hi_part + lo_part) >> 32);
}

/* The Maglev lookup: table[hash % M]. */
SLUICE_INLINE uint32_t sluice_maglev_slot(uint32_t flow_hash, uint64_t inv, uint32_t m)
{
	return sluice_fastmod(flow_hash, inv, m);
}

/*
 * A backend's identity for the permutation is its address (family and the
 * 16-byte field, IPv4 in the first 4 bytes), never its position in a list:
 * so insertion order cannot change a table, and two LBs with the same set
 * build the same one. Three little-endian words: addr[0..7], addr[8..15],
 * family.
 */
SLUICE_INLINE uint64_t sluice_maglev_backend_hash(const uint8_t addr[16], uint8_t family,
						  uint64_t seed)
{
	const uint64_t *w = (const uint64_t *)(const void *)addr;
	uint64_t h = sluice_hash_init(3, seed);
	h = sluice_hash_step(h, w[0]);
	h = sluice_hash_step(h, w[1]);
	h = sluice_hash_step(h, (uint64_t)family);
	return sluice_fmix64(h);
}

/* offset in [0, M), skip in [1, M) (§3.4). */
SLUICE_INLINE uint32_t sluice_maglev_offset(const uint8_t addr[16], uint8_t family, uint32_t m)
{
	return (uint32_t)(sluice_maglev_backend_hash(addr, family, SLUICE_MAGLEV_OFFSET_SEED) % m);
}

SLUICE_INLINE uint32_t sluice_maglev_skip(const uint8_t addr[16], uint8_t family, uint32_t m)
{
	return (uint32_t)(sluice_maglev_backend_hash(addr, family, SLUICE_MAGLEV_SKIP_SEED) % (m - 1)) + 1;
}
