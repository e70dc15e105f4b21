/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What sluice writes into packets, once for both dataplanes: the outer
 * headers of each forwarding mode, and the ICMP messages the LB itself
 * sends (echo replies, fragmentation-needed, packet-too-big). With the same
 * inputs both paths write the same bytes from the IP header on — what lets
 * DPDK and XDP LBs share one ECMP group.
 *
 * Callers hand in pointers they have checked: every writer touches exactly
 * the bytes its header type covers, at constant offsets.
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/flow.h>
#include <sluice/packet.h>
#include <sluice/shm.h>

/* The outer header acts as a router would: a fresh TTL, DF set so paths
 * with a smaller MTU answer with ICMP instead of fragmenting, DSCP and ECN
 * copied from the inner header (RFC 2983 uniform model, RFC 6040). IPv4 id 0
 * is allowed for atomic (DF) datagrams (RFC 6864 §4.1). */
#define SLUICE_OUTER_TTL 64

/* How much of the original packet an ICMP error sluice sends quotes. It
 * always covers the IP header and the ports (RFC 792 asks for the header and
 * 8 bytes); a fixed bound keeps the BPF checksum loop bounded and the two
 * paths' messages the same. */
#define SLUICE_ICMP_QUOTE_MAX 128u

/* Bytes of outer headers in front of the inner IP packet. */
SLUICE_INLINE uint16_t sluice_encap_len(uint8_t mode, uint8_t backend_family)
{
	if (mode == SLUICE_MODE_L2DSR)
		return 0;
	uint16_t n = backend_family == SLUICE_AF_INET6 ? (uint16_t)sizeof(struct sluice_ipv6_hdr)
						       : (uint16_t)sizeof(struct sluice_ipv4_hdr);
	if (mode == SLUICE_MODE_GUE)
		n += (uint16_t)SLUICE_ENCAP_GUE_EXTRA;
	return n;
}

/* The protocol number an outer header gives an inner IP packet. */
SLUICE_INLINE uint8_t sluice_inner_proto(uint8_t inner_family)
{
	return inner_family == SLUICE_AF_INET6 ? SLUICE_IPPROTO_IPV6 : SLUICE_IPPROTO_IPIP;
}

/* ---------------------------------------------------------------- checksums */

SLUICE_INLINE uint16_t sluice_csum_fold(uint64_t sum)
{
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Sums `len` bytes (len <= max, both even or the last byte padded) of
 * [p, end) as 16-bit words in memory order; a word that would cross `end`
 * stops the sum. `max` is a constant at every call, which bounds the loop
 * for the verifier. */
SLUICE_INLINE uint64_t sluice_csum_add(uint64_t sum, const uint8_t *p, const uint8_t *end,
				       uint32_t len, uint32_t max)
{
	for (uint32_t i = 0; i < max; i += 2) {
		if (i >= len)
			break;
		if (i + 1 < len) {
			if (p + i + 2 > end)
				break;
			uint16_t w;
			__builtin_memcpy(&w, p + i, 2);
			sum += w;
		} else {
			if (p + i + 1 > end)
				break;
			uint8_t last[2] = {p[i], 0};
			uint16_t w;
			__builtin_memcpy(&w, last, 2);
			sum += w;
		}
	}
	return sum;
}

/* An option-less IPv4 header's checksum: five 32-bit words summed, which
 * folds to what summing its ten 16-bit words does (2^16 is 1 modulo
 * 2^16 - 1, and the sum is never zero: version_ihl is not). */
SLUICE_INLINE uint16_t sluice_ipv4_csum(const struct sluice_ipv4_hdr *h)
{
	const uint8_t *b = (const uint8_t *)h;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < sizeof(*h); i += 4) {
		uint32_t w;
		__builtin_memcpy(&w, b + i, 4);
		sum += w;
	}
	return sluice_csum_fold(sum);
}

/* The IPv6 pseudo-header (RFC 8200 §8.1), before the upper-layer bytes. */
SLUICE_INLINE uint64_t sluice_ipv6_pseudo_sum(const uint8_t src[16], const uint8_t dst[16],
					      uint32_t upper_len, uint8_t nh)
{
	uint64_t sum = sluice_csum_add(0, src, src + 16, 16, 16);
	sum = sluice_csum_add(sum, dst, dst + 16, 16, 16);
	sum += sluice_htonl(upper_len) & 0xFFFF;
	sum += sluice_htonl(upper_len) >> 16;
	sum += sluice_htons((uint16_t)nh);
	return sum;
}

/* --------------------------------------------------------- outer headers */

SLUICE_INLINE void sluice_write_outer_ipv4(struct sluice_ipv4_hdr *o, const struct sluice_node *node,
					   const struct sluice_backend *b, uint8_t proto,
					   uint8_t tos, uint16_t total_len, bool software_csum)
{
	/* The header is built in registers and its checksum summed from them
	 * (sluice_ipv4_csum()'s five words), not read back from the packet. */
	const uint8_t w0[2] = {0x45, tos}, w4[2] = {SLUICE_OUTER_TTL, proto};
	uint16_t vi_tos, ttl_proto;
	__builtin_memcpy(&vi_tos, w0, 2);
	__builtin_memcpy(&ttl_proto, w4, 2);
	const uint16_t len_be = sluice_htons(total_len), frag_be = sluice_htons(SLUICE_IPV4_DF);
	uint32_t saddr, daddr;
	__builtin_memcpy(&saddr, node->source_ipv4, 4);
	__builtin_memcpy(&daddr, b->addr, 4);
	__builtin_memcpy(&o->version_ihl, &vi_tos, 2);
	o->total_len_be = len_be;
	o->id_be = 0;
	o->frag_off_be = frag_be;
	__builtin_memcpy(&o->ttl, &ttl_proto, 2);
	o->check_be = 0;
	o->saddr_be = saddr;
	o->daddr_be = daddr;
	if (software_csum)
		o->check_be = sluice_csum_fold((uint64_t)vi_tos + len_be + frag_be + ttl_proto + saddr +
					       daddr);
}

/* The flow label carries the flow hash (RFC 6438), so the fabric can spread
 * IPv6 tunnels by flow without looking inside. */
SLUICE_INLINE void sluice_write_outer_ipv6(struct sluice_ipv6_hdr *o, const struct sluice_node *node,
					   const struct sluice_backend *b, uint8_t nexthdr,
					   uint8_t tclass, uint16_t payload_len, uint32_t flow_hash)
{
	o->vtc_flow_be = sluice_htonl(6u << 28 | (uint32_t)tclass << 20 | (flow_hash & 0xFFFFF));
	o->payload_len_be = sluice_htons(payload_len);
	o->nexthdr = nexthdr;
	o->hop_limit = SLUICE_OUTER_TTL;
	__builtin_memcpy(o->saddr, node->source_ipv6, 16);
	__builtin_memcpy(o->daddr, b->addr, 16);
}

/* GUE variant 0 (draft-ietf-intarea-gue §3.1) over UDP. The UDP checksum is
 * zero: allowed over IPv4 (RFC 768) and for tunnels over IPv6 (RFC 6935,
 * 6936), and what keeps both paths from summing the whole inner packet. */
SLUICE_INLINE void sluice_write_gue(struct sluice_udp_hdr *u, struct sluice_gue_hdr *g,
				    uint16_t gue_port_be, uint32_t flow_hash, uint8_t inner_family,
				    uint16_t inner_len)
{
	u->source_be = sluice_htons(sluice_gue_source_port(flow_hash));
	u->dest_be = gue_port_be;
	u->len_be = sluice_htons((uint16_t)(SLUICE_ENCAP_GUE_EXTRA + inner_len));
	u->check_be = 0;
	g->ver_c_hlen = 0;
	g->proto = sluice_inner_proto(inner_family);
	g->flags_be = 0;
}

/*
 * Writes the outer headers for `mode` at `outer`, which has
 * sluice_encap_len(mode, b->family) bytes in front of the inner IP packet of
 * `inner_len` bytes. Nothing to write for L2 DSR.
 */
SLUICE_INLINE void sluice_encap_write(uint8_t *outer, uint8_t mode, const struct sluice_node *node,
				      const struct sluice_backend *b, uint16_t gue_port_be,
				      uint32_t flow_hash, uint8_t inner_family, uint8_t inner_tos,
				      uint16_t inner_len, bool software_csum)
{
	if (mode == SLUICE_MODE_L2DSR)
		return;
	bool gue = mode == SLUICE_MODE_GUE;
	uint16_t extra = gue ? (uint16_t)SLUICE_ENCAP_GUE_EXTRA : 0;
	uint8_t proto = gue ? SLUICE_IPPROTO_UDP : sluice_inner_proto(inner_family);
	uint16_t ip_len;
	if (b->family == SLUICE_AF_INET6) {
		ip_len = (uint16_t)sizeof(struct sluice_ipv6_hdr);
		sluice_write_outer_ipv6((struct sluice_ipv6_hdr *)outer, node, b, proto, inner_tos,
					(uint16_t)(extra + inner_len), flow_hash);
	} else {
		ip_len = (uint16_t)sizeof(struct sluice_ipv4_hdr);
		sluice_write_outer_ipv4((struct sluice_ipv4_hdr *)outer, node, b, proto, inner_tos,
					(uint16_t)(ip_len + extra + inner_len), software_csum);
	}
	if (gue)
		sluice_write_gue((struct sluice_udp_hdr *)(outer + ip_len),
				 (struct sluice_gue_hdr *)(outer + ip_len + sizeof(struct sluice_udp_hdr)),
				 gue_port_be, flow_hash, inner_family, inner_len);
}

/* ------------------------------------------------------------- ICMP replies */

/* Echo request to echo reply, in place: addresses swapped, a fresh TTL, the
 * type changed and both checksums updated. */
/* RFC 1624 eqn. 3: the checksum after one 16-bit word changed, every value
 * as it lies in memory. */
SLUICE_INLINE uint16_t sluice_csum_replace(uint16_t check, uint16_t old_word, uint16_t new_word)
{
	uint64_t sum = (uint16_t)~check;
	sum += (uint16_t)~old_word;
	sum += new_word;
	return sluice_csum_fold(sum);
}

SLUICE_INLINE void sluice_icmp4_echo_reply(struct sluice_ipv4_hdr *ip, struct sluice_icmp_hdr *icmp)
{
	uint32_t a = ip->saddr_be;
	ip->saddr_be = ip->daddr_be;
	ip->daddr_be = a;
	/* Swapping the addresses keeps the sum; the TTL word changes. Updated,
	 * not recomputed, so a header with options stays right. */
	uint16_t old_word, new_word;
	__builtin_memcpy(&old_word, &ip->ttl, 2);
	ip->ttl = SLUICE_OUTER_TTL;
	__builtin_memcpy(&new_word, &ip->ttl, 2);
	ip->check_be = sluice_csum_replace(ip->check_be, old_word, new_word);
	/* RFC 1624 incremental update: the type word goes from 8 << 8 to 0. */
	uint64_t sum = (uint16_t)~icmp->check_be;
	sum += (uint16_t)~sluice_htons(SLUICE_ICMP_ECHO_REQUEST << 8);
	sum += sluice_htons(SLUICE_ICMP_ECHO_REPLY << 8);
	icmp->type = SLUICE_ICMP_ECHO_REPLY;
	icmp->check_be = sluice_csum_fold(sum);
}

/* The pseudo-header sums the same with source and destination swapped, so
 * only the type word changes the checksum. */
SLUICE_INLINE void sluice_icmp6_echo_reply(struct sluice_ipv6_hdr *ip, struct sluice_icmp_hdr *icmp)
{
	uint8_t a[16];
	__builtin_memcpy(a, ip->saddr, 16);
	__builtin_memcpy(ip->saddr, ip->daddr, 16);
	__builtin_memcpy(ip->daddr, a, 16);
	ip->hop_limit = SLUICE_OUTER_TTL;
	uint64_t sum = (uint16_t)~icmp->check_be;
	sum += (uint16_t)~sluice_htons(SLUICE_ICMPV6_ECHO_REQUEST << 8);
	sum += sluice_htons(SLUICE_ICMPV6_ECHO_REPLY << 8);
	icmp->type = SLUICE_ICMPV6_ECHO_REPLY;
	icmp->check_be = sluice_csum_fold(sum);
}

/* Bytes of the original packet an error quotes. */
SLUICE_INLINE uint16_t sluice_icmp_quote_len(uint16_t l3_len)
{
	return l3_len < SLUICE_ICMP_QUOTE_MAX ? l3_len : (uint16_t)SLUICE_ICMP_QUOTE_MAX;
}

/*
 * Fragmentation needed (RFC 792, RFC 1191): from the VIP the client sent to,
 * back to the client, telling it `mtu`. `ip` and `icmp` are the 28 bytes
 * right in front of `quote`, the original IP packet, of which quote_len
 * bytes are kept; [quote, end) must hold them.
 */
SLUICE_INLINE void sluice_icmp4_frag_needed(struct sluice_ipv4_hdr *ip, struct sluice_icmp_hdr *icmp,
					    const uint8_t *quote, const uint8_t *end,
					    uint16_t quote_len, uint16_t mtu)
{
	const struct sluice_ipv4_hdr *orig = (const struct sluice_ipv4_hdr *)quote;
	ip->version_ihl = 0x45;
	ip->tos = 0xC0; /* internetwork control, as routers mark their ICMP */
	ip->total_len_be = sluice_htons((uint16_t)(sizeof(*ip) + sizeof(*icmp) + quote_len));
	ip->id_be = 0;
	ip->frag_off_be = 0;
	ip->ttl = SLUICE_OUTER_TTL;
	ip->protocol = SLUICE_IPPROTO_ICMP;
	ip->saddr_be = orig->daddr_be;
	ip->daddr_be = orig->saddr_be;
	ip->check_be = 0;
	ip->check_be = sluice_ipv4_csum(ip);
	icmp->type = SLUICE_ICMP_DEST_UNREACH;
	icmp->code = SLUICE_ICMP_FRAG_NEEDED;
	icmp->check_be = 0;
	icmp->rest_be = sluice_htonl((uint32_t)mtu); /* unused(16) | next-hop MTU(16) */
	uint64_t sum = 0;
	sum = sluice_csum_add(sum, (const uint8_t *)icmp, (const uint8_t *)icmp + sizeof(*icmp),
			      sizeof(*icmp), sizeof(*icmp));
	sum = sluice_csum_add(sum, quote, end, quote_len, SLUICE_ICMP_QUOTE_MAX);
	icmp->check_be = sluice_csum_fold(sum);
}

/* Packet too big (RFC 4443 §3.2), the IPv6 counterpart: 48 bytes in front of
 * the quote. */
SLUICE_INLINE void sluice_icmp6_too_big(struct sluice_ipv6_hdr *ip, struct sluice_icmp_hdr *icmp,
					const uint8_t *quote, const uint8_t *end, uint16_t quote_len,
					uint32_t mtu)
{
	const struct sluice_ipv6_hdr *orig = (const struct sluice_ipv6_hdr *)quote;
	uint16_t upper = (uint16_t)(sizeof(*icmp) + quote_len);
	ip->vtc_flow_be = sluice_htonl(6u << 28);
	ip->payload_len_be = sluice_htons(upper);
	ip->nexthdr = SLUICE_IPPROTO_ICMPV6;
	ip->hop_limit = SLUICE_OUTER_TTL;
	__builtin_memcpy(ip->saddr, orig->daddr, 16);
	__builtin_memcpy(ip->daddr, orig->saddr, 16);
	icmp->type = SLUICE_ICMPV6_PKT_TOOBIG;
	icmp->code = 0;
	icmp->check_be = 0;
	icmp->rest_be = sluice_htonl(mtu);
	uint64_t sum = sluice_ipv6_pseudo_sum(ip->saddr, ip->daddr, upper, SLUICE_IPPROTO_ICMPV6);
	sum = sluice_csum_add(sum, (const uint8_t *)icmp, (const uint8_t *)icmp + sizeof(*icmp),
			      sizeof(*icmp), sizeof(*icmp));
	sum = sluice_csum_add(sum, quote, end, quote_len, SLUICE_ICMP_QUOTE_MAX);
	icmp->check_be = sluice_csum_fold(sum);
}

/* The IPv6 minimum link MTU (RFC 8200 §5): a PTB never advertises less. */
#define SLUICE_IPV6_MIN_MTU 1280u
