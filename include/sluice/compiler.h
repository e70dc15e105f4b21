/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few portability pieces every shared header needs, so that each of them
 * compiles unchanged as C11 (gcc), as C++20 (g++) and with clang -target bpf.
 *
 * BPF has no libc: <stdint.h> from glibc drags in headers that do not exist
 * for the bpf target, so there the fixed-width types come from the compiler's
 * own predefined macros instead.
 */
#pragma once

#if defined(__bpf__)
typedef __UINT8_TYPE__ uint8_t;
typedef __UINT16_TYPE__ uint16_t;
typedef __UINT32_TYPE__ uint32_t;
typedef __UINT64_TYPE__ uint64_t;
typedef __INT32_TYPE__ int32_t;
typedef __INT64_TYPE__ int64_t;
#ifndef __cplusplus
#ifndef bool
#define bool _Bool
#define true 1
#define false 0
#endif
#endif
#else
#include <stdint.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif
#endif

#ifdef __cplusplus
#define SLUICE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define SLUICE_OFFSETOF(type, member) __builtin_offsetof(type, member)
#else
#define SLUICE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define SLUICE_OFFSETOF(type, member) __builtin_offsetof(type, member)
#endif

/* Every decision helper is inlined: the BPF verifier sees straight-line code
 * and the DPDK worker pays no call per packet. */
#define SLUICE_INLINE static inline __attribute__((always_inline))

#define SLUICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SLUICE_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define SLUICE_CACHE_LINE 64
#define SLUICE_ALIGNED(n) __attribute__((aligned(n)))
#define SLUICE_PACKED __attribute__((packed))

/* Byte order. Wire fields keep network order and say so in their name
 * (`_be`); these convert at the edge. Both x86-64 and bpfel are little
 * endian, but the helpers are written for either. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SLUICE_BIG_ENDIAN 1
#define sluice_htons(x) ((uint16_t)(x))
#define sluice_ntohs(x) ((uint16_t)(x))
#define sluice_htonl(x) ((uint32_t)(x))
#define sluice_ntohl(x) ((uint32_t)(x))
#define sluice_le64(x) __builtin_bswap64(x)
#else
#define SLUICE_BIG_ENDIAN 0
#define sluice_htons(x) ((uint16_t)__builtin_bswap16((uint16_t)(x)))
#define sluice_ntohs(x) ((uint16_t)__builtin_bswap16((uint16_t)(x)))
#define sluice_htonl(x) ((uint32_t)__builtin_bswap32((uint32_t)(x)))
#define sluice_ntohl(x) ((uint32_t)__builtin_bswap32((uint32_t)(x)))
/* Loads a 64-bit word that the hash treats as little endian. */
#define sluice_le64(x) ((uint64_t)(x))
#endif
