// SPDX-License-Identifier: Apache-2.0
/*
 * Backend-side decapsulation: `sluice-xdp --decap`. Strips the outer header
 * sluice put in front of a client's packet — IPv4 or IPv6 with protocol 4
 * (IPv4 inside) or 41 (IPv6 inside), or that plus UDP to the GUE port and a
 * GUE variant 0 header (encap.h) — and hands the inner packet to the kernel
 * on the same interface, which delivers it to the VIP on the loopback. The
 * reply then goes straight to the client (direct server return).
 *
 * Only tunnels addressed to this host are opened (the outer destination is
 * one of its addresses: sl_dc_self, kept current by sluice-xdp), and with
 * --vip only those whose inner destination is one of the VIPs (sl_dc_vips).
 * With --from, a tunnel from a source outside the given prefixes
 * (sl_dc_from) is dropped and counted.
 * Everything else passes untouched: the kernel sees exactly what it would
 * without this program. Verifier notes as in sluice.bpf.c.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <sluice/flow.h>
#include <sluice/packet.h>

#include "decap.h"

/* Set by sluice-xdp before load. */
const volatile uint16_t cfg_gue_port_be = 0;	/* 0: no GUE */
const volatile uint8_t cfg_check_inner = 0;	/* 1: the inner destination must be in sl_dc_vips */
const volatile uint8_t cfg_check_source = 0;	/* 1: the outer source must be in sl_dc_from */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_DECAP_MAX_ADDRS);
	__type(key, struct sluice_decap_addr);
	__type(value, uint8_t);
} sl_dc_self SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_DECAP_MAX_ADDRS);
	__type(key, struct sluice_decap_addr);
	__type(value, uint8_t);
} sl_dc_vips SEC(".maps");

/* --from: the load balancers' source prefixes. An LPM trie, not a
 * loop over rodata: any number of prefixes in one lookup, and the verifier
 * sees no loop. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_DECAP_MAX_PREFIXES);
	__type(key, struct sluice_decap_prefix);
	__type(value, uint8_t);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sl_dc_from SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_decap_counters);
} sl_dc_cnt SEC(".maps");

static __always_inline bool is_listed(void *map, const uint8_t *addr, uint32_t len, uint8_t family)
{
	struct sluice_decap_addr k;
	__builtin_memset(&k, 0, sizeof(k));
	if (len == 4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	k.family = family;
	return bpf_map_lookup_elem(map, &k) != 0;
}

/* Whether a tunnel's outer source is inside one of --from's prefixes. */
static __always_inline bool from_allowed(const uint8_t *addr, uint32_t len, uint8_t family)
{
	struct sluice_decap_prefix k;
	__builtin_memset(&k, 0, sizeof(k));
	k.prefixlen = 8 + len * 8;
	k.family = family;
	if (len == 4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&sl_dc_from, &k) != 0;
}

/* The tunnel header in front of the inner packet, if this is one of ours:
 * its length (outer IP + UDP + GUE), the inner family, and whether it was
 * GUE. */
struct tunnel {
	uint32_t outer_len; /* 0: not a tunnel to open */
	uint8_t inner_family;
	bool gue;
};

/* After the outer IP header (at `l4`, protocol `proto`): IPIP directly, or
 * UDP to the GUE port with a GUE variant 0 data message. */
static __always_inline struct tunnel tunnel_after(const uint8_t *l4, const uint8_t *end, uint8_t proto,
						  uint32_t ip_len)
{
	struct tunnel t = {0, 0, false};
	if (proto == SLUICE_IPPROTO_IPIP || proto == SLUICE_IPPROTO_IPV6) {
		t.outer_len = ip_len;
		t.inner_family = proto == SLUICE_IPPROTO_IPIP ? SLUICE_AF_INET : SLUICE_AF_INET6;
		return t;
	}
	if (proto != SLUICE_IPPROTO_UDP || cfg_gue_port_be == 0)
		return t;
	const struct sluice_udp_hdr *udp = (const struct sluice_udp_hdr *)l4;
	if (l4 + sizeof(*udp) + sizeof(struct sluice_gue_hdr) > end || udp->dest_be != cfg_gue_port_be)
		return t;
	const struct sluice_gue_hdr *g = (const struct sluice_gue_hdr *)(l4 + sizeof(*udp));
	/* Version 0, C = 0 (a data message); hlen words of options follow. */
	if ((g->ver_c_hlen & 0xE0) != 0)
		return t;
	if (g->proto != SLUICE_IPPROTO_IPIP && g->proto != SLUICE_IPPROTO_IPV6)
		return t;
	t.outer_len = ip_len + sizeof(*udp) + sizeof(*g) + (uint32_t)(g->ver_c_hlen & 0x1F) * 4;
	t.inner_family = g->proto == SLUICE_IPPROTO_IPIP ? SLUICE_AF_INET : SLUICE_AF_INET6;
	t.gue = true;
	return t;
}

SEC("xdp")
int sluice_decap(struct xdp_md *xdp)
{
	uint32_t zero = 0;
	struct sluice_decap_counters *cnt = bpf_map_lookup_elem(&sl_dc_cnt, &zero);
	if (!cnt)
		return XDP_PASS; /* cannot happen: a one-entry array */
	cnt->rx_packets++;

	uint8_t *data = (uint8_t *)(long)xdp->data;
	uint8_t *end = (uint8_t *)(long)xdp->data_end;
	const struct sluice_eth_hdr *eth = (const struct sluice_eth_hdr *)data;
	if (data + sizeof(*eth) + sizeof(struct sluice_vlan_hdr) > end)
		goto not_tunnel;
	uint16_t type = eth->type_be;
	uint32_t l2 = sizeof(*eth);
	if (type == sluice_htons(SLUICE_ETH_P_8021Q)) {
		type = ((const struct sluice_vlan_hdr *)(data + sizeof(*eth)))->type_be;
		l2 += sizeof(struct sluice_vlan_hdr);
	}
	const uint8_t *l3 = data + l2;
	struct tunnel t = {0, 0, false};
	if (type == sluice_htons(SLUICE_ETH_P_IPV4)) {
		const struct sluice_ipv4_hdr *ip = (const struct sluice_ipv4_hdr *)l3;
		if (l3 + sizeof(*ip) > end || (ip->version_ihl >> 4) != 4)
			goto not_tunnel;
		/* ihl is 4 bits of 32-bit words: at most 60 bytes. */
		uint32_t ihl = (uint32_t)(ip->version_ihl & 0x0F) * 4;
		if (ihl < sizeof(*ip) || l3 + ihl > end)
			goto not_tunnel;
		/* A fragment of a tunnel packet is the kernel's to reassemble. */
		if (sluice_ntohs(ip->frag_off_be) & (SLUICE_IPV4_MF | SLUICE_IPV4_OFFSET_MASK))
			goto not_tunnel;
		if (!is_listed(&sl_dc_self, (const uint8_t *)&ip->daddr_be, 4, SLUICE_AF_INET))
			goto not_tunnel;
		t = tunnel_after(l3 + ihl, end, ip->protocol, ihl);
		/* Anyone may send a tunnel to a backend; with --from only the
		 * load balancers' are opened. Dropped, not passed: a kernel with
		 * its own ipip module would open it anyway. */
		if (t.outer_len && cfg_check_source &&
		    !from_allowed((const uint8_t *)&ip->saddr_be, 4, SLUICE_AF_INET)) {
			cnt->drop_foreign++;
			return XDP_DROP;
		}
	} else if (type == sluice_htons(SLUICE_ETH_P_IPV6)) {
		const struct sluice_ipv6_hdr *ip = (const struct sluice_ipv6_hdr *)l3;
		if (l3 + sizeof(*ip) > end || (ip->vtc_flow_be & sluice_htonl(0xF0000000u)) != sluice_htonl(6u << 28))
			goto not_tunnel;
		if (!is_listed(&sl_dc_self, ip->daddr, 16, SLUICE_AF_INET6))
			goto not_tunnel;
		t = tunnel_after(l3 + sizeof(*ip), end, ip->nexthdr, sizeof(*ip));
		if (t.outer_len && cfg_check_source && !from_allowed(ip->saddr, 16, SLUICE_AF_INET6)) {
			cnt->drop_foreign++;
			return XDP_DROP;
		}
	}
	if (t.outer_len == 0)
		goto not_tunnel;

	/* outer_len is at most 60 + 8 + 4 + 124 bytes; the mask keeps it and
	 * bounds it for the verifier. */
	uint32_t outer = t.outer_len & 0xFF;
	const uint8_t *inner = l3 + outer;
	if (t.inner_family == SLUICE_AF_INET) {
		if (inner + sizeof(struct sluice_ipv4_hdr) > end || (inner[0] >> 4) != 4) {
			cnt->pass_malformed++;
			return XDP_PASS;
		}
		if (cfg_check_inner &&
		    !is_listed(&sl_dc_vips, inner + SLUICE_OFFSETOF(struct sluice_ipv4_hdr, daddr_be), 4,
			       SLUICE_AF_INET)) {
			cnt->pass_not_local++;
			return XDP_PASS;
		}
	} else {
		if (inner + sizeof(struct sluice_ipv6_hdr) > end || (inner[0] >> 4) != 6) {
			cnt->pass_malformed++;
			return XDP_PASS;
		}
		if (cfg_check_inner &&
		    !is_listed(&sl_dc_vips, inner + SLUICE_OFFSETOF(struct sluice_ipv6_hdr, daddr), 16,
			       SLUICE_AF_INET6)) {
			cnt->pass_not_local++;
			return XDP_PASS;
		}
	}

	/* Move the Ethernet header (and tag) up to the inner packet, give it
	 * the inner ethertype, then drop the bytes in front. outer >= 20 > 18:
	 * the two ranges never overlap. */
	uint16_t inner_type = sluice_htons(t.inner_family == SLUICE_AF_INET ? SLUICE_ETH_P_IPV4
									   : SLUICE_ETH_P_IPV6);
	uint8_t *to = data + outer;
	if (l2 == 18) {
		if (data + 18 > end || to + 18 > end)
			goto not_tunnel;
		__builtin_memcpy(to, data, 16);
		__builtin_memcpy(to + 16, &inner_type, 2);
	} else {
		if (data + 14 > end || to + 14 > end)
			goto not_tunnel;
		__builtin_memcpy(to, data, 12);
		__builtin_memcpy(to + 12, &inner_type, 2);
	}
	if (bpf_xdp_adjust_head(xdp, (int)outer))
		return XDP_DROP; /* cannot happen: the frame holds the bytes; the header is already moved */
	if (t.gue)
		cnt->decap_gue++;
	else
		cnt->decap_ipip++;
	return XDP_PASS;

not_tunnel:
	cnt->pass_not_tunnel++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
