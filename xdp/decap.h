/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps of the backend-side decap program (decap.bpf.c) as both it and
 * sluice-xdp --decap see them.
 *
 * Map         type              key                       value
 * sl_dc_self  HASH              struct sluice_decap_addr  1 (this host's addresses: outer destinations)
 * sl_dc_vips  HASH              struct sluice_decap_addr  1 (--vip: inner destinations)
 * sl_dc_from  LPM_TRIE          struct sluice_decap_prefix 1 (--from: outer sources allowed)
 * sl_dc_cnt   PERCPU_ARRAY[1]   0                         struct sluice_decap_counters
 */
#pragma once

#include <sluice/compiler.h>

#define SLUICE_DECAP_MAX_ADDRS 1024u

/* An address as in the flow key: IPv4 in the first 4 bytes, the rest zero. */
struct sluice_decap_addr {
	uint8_t addr[16];
	uint8_t family; /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	uint8_t pad[3];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_decap_addr) == 20, "decap address key is 20 bytes");

/* An LPM trie key (the kernel's struct bpf_lpm_trie_key layout): the
 * family byte first, so an IPv4 prefix never matches an IPv6 source;
 * prefixlen counts its 8 bits plus the address prefix. */
#define SLUICE_DECAP_MAX_PREFIXES 256u
struct sluice_decap_prefix {
	uint32_t prefixlen;
	uint8_t family;
	uint8_t addr[16];
	uint8_t pad[3];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_decap_prefix) == 24, "decap prefix key is 24 bytes");

struct sluice_decap_counters {
	uint64_t rx_packets;
	uint64_t decap_ipip;      /* IPIP, IPv6-in-IPv6, IPv4-in-IPv6 opened */
	uint64_t decap_gue;       /* GUE opened */
	uint64_t pass_not_tunnel; /* not a tunnel to this host: untouched */
	uint64_t pass_not_local;  /* a tunnel, but its inner destination is no --vip */
	uint64_t pass_malformed;  /* a tunnel whose inner header is broken: untouched */
	uint64_t drop_foreign;    /* --from: a tunnel from a source outside every prefix */
};
