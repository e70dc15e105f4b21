/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps of the backend-side decap program (decap.bpf.c) as both it and
 * sluice-xdp --decap see them.
 *
 * Map         type              key                       value
 * sl_dc_self  HASH              struct sluice_decap_addr  1 (this host's addresses: outer destinations)
 * sl_dc_vips  HASH              struct sluice_decap_addr  1 (--vip: inner destinations)
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

struct sluice_decap_counters {
	uint64_t rx_packets;
	uint64_t decap_ipip;      /* IPIP, IPv6-in-IPv6, IPv4-in-IPv6 opened */
	uint64_t decap_gue;       /* GUE opened */
	uint64_t pass_not_tunnel; /* not a tunnel to this host: untouched */
	uint64_t pass_not_local;  /* a tunnel, but its inner destination is no --vip */
	uint64_t pass_malformed;  /* a tunnel whose inner header is broken: untouched */
};
