/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The packet parser both dataplanes run: Ethernet, one 802.1Q tag, IPv4
 * (options allowed, never trusted), IPv6 with a bounded walk over extension
 * headers, TCP, UDP, and the ICMP/ICMPv6 messages sluice acts on.
 *
 * Written over a bounded byte range [data, end) for the BPF verifier: every
 * read is preceded by a check against `end` of exactly the bytes it touches,
 * offsets are bounded integers, and the only loop has a constant bound. The
 * DPDK worker calls it on the mbuf's first segment with the same bytes, so
 * both paths classify every packet the same way.
 */
#pragma once

#include <sluice/compiler.h>
#include <sluice/counters.h>
#include <sluice/flow.h>
#include <sluice/packet.h>

/* Extension headers walked before the transport header; more is a counted
 * drop. Real traffic carries at most one or two (a fragment header, a
 * destination option); long chains are an attack on parsers (RFC 7112). */
#define SLUICE_IPV6_EXT_MAX 4

/* What the packet is, for the dataplane's decision. */
enum sluice_pkt_kind {
	SLUICE_PKT_NOT_IP = 0, /* not IPv4/IPv6 (ARP, LLDP, ...) or IPv6 ND: the kernel's */
	SLUICE_PKT_L4,         /* TCP or UDP, whole or a first fragment: key complete */
	SLUICE_PKT_FRAG,       /* a later fragment: key has addresses and proto, ports 0 */
	SLUICE_PKT_ICMP_ERROR, /* ICMP(v6) error: key is the quoted flow, client to VIP */
	SLUICE_PKT_ICMP_ECHO,  /* echo request: key has addresses */
	SLUICE_PKT_OTHER,      /* another protocol or ICMP type: key has addresses and proto */
};

#define SLUICE_PARSE_OK 0xFFFFu

struct sluice_pkt {
	struct sluice_flow_key key;
	uint32_t frag_id;   /* IPv4 id or IPv6 fragment id, for fragments */
	uint16_t l2_len;    /* 14, or 18 with a VLAN tag: the IP header's offset */
	uint16_t l4_off;    /* the TCP/UDP/ICMP header's offset in the frame */
	uint16_t l3_len;    /* bytes of the IP packet; the frame may hold padding after */
	uint8_t kind;       /* enum sluice_pkt_kind */
	uint8_t tcp_flags;
	uint8_t tos;        /* DSCP and ECN of the IP header (v6: traffic class) */
	uint8_t first_frag; /* 1: the first fragment of a fragmented datagram */
	uint8_t df;         /* IPv4 don't-fragment bit */
	uint8_t icmp_type;
	uint8_t pad[4];
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_pkt) == 64, "parsed packet is one cache line");

SLUICE_INLINE bool sluice_ipv6_is_ext(uint8_t nh)
{
	return nh == SLUICE_IPPROTO_HOPOPTS || nh == SLUICE_IPPROTO_ROUTING ||
	       nh == SLUICE_IPPROTO_DSTOPTS || nh == SLUICE_IPPROTO_FRAGMENT ||
	       nh == SLUICE_IPPROTO_AH || nh == SLUICE_IPPROTO_MH;
}

/* The quoted packet of an ICMP error: the IP header the backend sent (VIP to
 * client) and the first 8 bytes after it, where the ports are. The key is
 * written the other way round, client to VIP, as the flow was hashed. The
 * key is only written once the whole quote checked out: on false the
 * caller still holds the outer addresses (an error for the host itself goes
 * to the kernel). Checked against `end` for the verifier and against the
 * IP packet's own end for the truth. */
SLUICE_INLINE bool sluice_parse_quote4(const uint8_t *q, const uint8_t *ip_end, const uint8_t *end,
				       struct sluice_pkt *p)
{
	const struct sluice_ipv4_hdr *ip = (const struct sluice_ipv4_hdr *)q;
	if (q + sizeof(*ip) > end || q + sizeof(*ip) > ip_end)
		return false;
	uint32_t ihl = (uint32_t)(ip->version_ihl & 0x0F) * 4;
	if ((ip->version_ihl >> 4) != 4 || ihl < 20)
		return false;
	const uint8_t *l4 = q + ihl;
	if (l4 + 4 > end || l4 + 4 > ip_end)
		return false;
	if (ip->protocol != SLUICE_IPPROTO_TCP && ip->protocol != SLUICE_IPPROTO_UDP)
		return false;
	/* An error goes back to the quoted packet's source: one addressed
	 * elsewhere (the host itself) is not about a VIP flow. */
	uint32_t quoted_src, outer_dst;
	__builtin_memcpy(&quoted_src, &ip->saddr_be, 4);
	__builtin_memcpy(&outer_dst, p->key.dst, 4);
	if (quoted_src != outer_dst)
		return false;
	__builtin_memcpy(p->key.src, &ip->daddr_be, 4);
	__builtin_memcpy(p->key.dst, &ip->saddr_be, 4);
	const uint16_t *ports = (const uint16_t *)l4;
	p->key.sport_be = ports[1];
	p->key.dport_be = ports[0];
	p->key.proto = ip->protocol;
	return true;
}

SLUICE_INLINE bool sluice_parse_quote6(const uint8_t *q, const uint8_t *ip_end, const uint8_t *end,
				       struct sluice_pkt *p)
{
	const struct sluice_ipv6_hdr *ip = (const struct sluice_ipv6_hdr *)q;
	if (q + sizeof(*ip) + 4 > end || q + sizeof(*ip) + 4 > ip_end)
		return false;
	if (ip->nexthdr != SLUICE_IPPROTO_TCP && ip->nexthdr != SLUICE_IPPROTO_UDP)
		return false;
	/* Word loads, not memcmp: BPF has no memcmp to call. */
	uint64_t q0, q1, o0, o1;
	__builtin_memcpy(&q0, ip->saddr, 8);
	__builtin_memcpy(&q1, ip->saddr + 8, 8);
	__builtin_memcpy(&o0, p->key.dst, 8);
	__builtin_memcpy(&o1, p->key.dst + 8, 8);
	if (((q0 ^ o0) | (q1 ^ o1)) != 0)
		return false;
	__builtin_memcpy(p->key.src, ip->daddr, 16);
	__builtin_memcpy(p->key.dst, ip->saddr, 16);
	const uint16_t *ports = (const uint16_t *)(q + sizeof(*ip));
	p->key.sport_be = ports[1];
	p->key.dport_be = ports[0];
	p->key.proto = ip->nexthdr;
	return true;
}

/* TCP, UDP or ICMP at `l4` inside the IP packet ending at `ip_end`. */
SLUICE_INLINE uint32_t sluice_parse_l4(const uint8_t *data, const uint8_t *l4, const uint8_t *ip_end,
				       const uint8_t *end, uint8_t proto, struct sluice_pkt *p)
{
	p->l4_off = (uint16_t)(l4 - data);
	p->key.proto = proto;
	if (proto == SLUICE_IPPROTO_TCP) {
		const struct sluice_tcp_hdr *tcp = (const struct sluice_tcp_hdr *)l4;
		if (l4 + sizeof(*tcp) > end || l4 + sizeof(*tcp) > ip_end)
			return SLUICE_CNT_drop_truncated;
		uint32_t doff = (uint32_t)(tcp->doff_res >> 4) * 4;
		if (doff < sizeof(*tcp) || l4 + doff > ip_end)
			return SLUICE_CNT_drop_bad_tcp_doff;
		p->key.sport_be = tcp->source_be;
		p->key.dport_be = tcp->dest_be;
		p->tcp_flags = tcp->flags;
		p->kind = SLUICE_PKT_L4;
		return SLUICE_PARSE_OK;
	}
	if (proto == SLUICE_IPPROTO_UDP) {
		const struct sluice_udp_hdr *udp = (const struct sluice_udp_hdr *)l4;
		if (l4 + sizeof(*udp) > end || l4 + sizeof(*udp) > ip_end)
			return SLUICE_CNT_drop_truncated;
		p->key.sport_be = udp->source_be;
		p->key.dport_be = udp->dest_be;
		p->kind = SLUICE_PKT_L4;
		return SLUICE_PARSE_OK;
	}
	if (proto == SLUICE_IPPROTO_ICMP || proto == SLUICE_IPPROTO_ICMPV6) {
		const struct sluice_icmp_hdr *icmp = (const struct sluice_icmp_hdr *)l4;
		if (l4 + sizeof(*icmp) > end || l4 + sizeof(*icmp) > ip_end)
			return SLUICE_CNT_drop_truncated;
		p->icmp_type = icmp->type;
		p->kind = SLUICE_PKT_OTHER;
		if (proto == SLUICE_IPPROTO_ICMP) {
			if (icmp->type == SLUICE_ICMP_ECHO_REQUEST) {
				p->kind = SLUICE_PKT_ICMP_ECHO;
			} else if (icmp->type == SLUICE_ICMP_DEST_UNREACH ||
				   icmp->type == SLUICE_ICMP_TIME_EXCEEDED) {
				if (sluice_parse_quote4(l4 + sizeof(*icmp), ip_end, end, p))
					p->kind = SLUICE_PKT_ICMP_ERROR;
			}
		} else {
			/* Neighbour discovery (RFC 4861: router/neighbour
			 * solicitation and advertisement, redirect) is link
			 * level, like ARP: the kernel's, even for a VIP. */
			if (icmp->type >= SLUICE_ICMPV6_ND_FIRST && icmp->type <= SLUICE_ICMPV6_ND_LAST) {
				p->kind = SLUICE_PKT_NOT_IP;
				return SLUICE_PARSE_OK;
			}
			if (icmp->type == SLUICE_ICMPV6_ECHO_REQUEST) {
				p->kind = SLUICE_PKT_ICMP_ECHO;
			} else if (icmp->type == SLUICE_ICMPV6_DEST_UNREACH ||
				   icmp->type == SLUICE_ICMPV6_PKT_TOOBIG ||
				   icmp->type == SLUICE_ICMPV6_TIME_EXCEEDED) {
				if (sluice_parse_quote6(l4 + sizeof(*icmp), ip_end, end, p))
					p->kind = SLUICE_PKT_ICMP_ERROR;
			}
		}
		return SLUICE_PARSE_OK;
	}
	p->kind = SLUICE_PKT_OTHER;
	return SLUICE_PARSE_OK;
}

SLUICE_INLINE uint32_t sluice_parse_ipv4(const uint8_t *data, const uint8_t *end, struct sluice_pkt *p)
{
	const uint8_t *l3 = data + p->l2_len;
	const struct sluice_ipv4_hdr *ip = (const struct sluice_ipv4_hdr *)l3;
	if (l3 + sizeof(*ip) > end)
		return SLUICE_CNT_drop_truncated;
	if ((ip->version_ihl >> 4) != 4)
		return SLUICE_CNT_drop_bad_ip_version;
	uint32_t ihl = (uint32_t)(ip->version_ihl & 0x0F) * 4;
	if (ihl < sizeof(*ip) || l3 + ihl > end)
		return SLUICE_CNT_drop_bad_ipv4_ihl;
	uint32_t total = sluice_ntohs(ip->total_len_be);
	if (total < ihl || l3 + total > end)
		return SLUICE_CNT_drop_bad_ip_length;
	p->l3_len = (uint16_t)total;
	p->key.family = SLUICE_AF_INET;
	__builtin_memcpy(p->key.src, &ip->saddr_be, 4);
	__builtin_memcpy(p->key.dst, &ip->daddr_be, 4);
	p->key.proto = ip->protocol;
	p->tos = ip->tos;
	uint16_t frag = sluice_ntohs(ip->frag_off_be);
	p->df = (frag & SLUICE_IPV4_DF) ? 1 : 0;
	if (frag & (SLUICE_IPV4_MF | SLUICE_IPV4_OFFSET_MASK)) {
		p->frag_id = sluice_ntohs(ip->id_be);
		if (frag & SLUICE_IPV4_OFFSET_MASK) {
			/* No transport header here: it followed the first fragment. */
			p->kind = SLUICE_PKT_FRAG;
			p->l4_off = (uint16_t)(p->l2_len + ihl);
			return SLUICE_PARSE_OK;
		}
		p->first_frag = 1;
	}
	return sluice_parse_l4(data, l3 + ihl, l3 + total, end, ip->protocol, p);
}

SLUICE_INLINE uint32_t sluice_parse_ipv6(const uint8_t *data, const uint8_t *end, struct sluice_pkt *p)
{
	const uint8_t *l3 = data + p->l2_len;
	const struct sluice_ipv6_hdr *ip = (const struct sluice_ipv6_hdr *)l3;
	if (l3 + sizeof(*ip) > end)
		return SLUICE_CNT_drop_truncated;
	uint32_t vtc = sluice_ntohl(ip->vtc_flow_be);
	if ((vtc >> 28) != 6)
		return SLUICE_CNT_drop_bad_ip_version;
	uint32_t total = sizeof(*ip) + sluice_ntohs(ip->payload_len_be);
	if (l3 + total > end)
		return SLUICE_CNT_drop_bad_ip_length;
	const uint8_t *ip_end = l3 + total;
	p->l3_len = (uint16_t)total;
	p->key.family = SLUICE_AF_INET6;
	__builtin_memcpy(p->key.src, ip->saddr, 16);
	__builtin_memcpy(p->key.dst, ip->daddr, 16);
	p->tos = (uint8_t)(vtc >> 20);

	uint8_t nh = ip->nexthdr;
	uint32_t off = sizeof(*ip); /* from l3; bounded: each step adds at most 2,048 */
	for (int i = 0; i < SLUICE_IPV6_EXT_MAX; i++) {
		if (!sluice_ipv6_is_ext(nh))
			break;
		const uint8_t *h = l3 + off;
		if (h + 8 > end || h + 8 > ip_end)
			return SLUICE_CNT_drop_truncated;
		if (nh == SLUICE_IPPROTO_FRAGMENT) {
			const struct sluice_ipv6_frag_hdr *f = (const struct sluice_ipv6_frag_hdr *)h;
			uint16_t fo = sluice_ntohs(f->frag_off_be);
			p->frag_id = sluice_ntohl(f->id_be);
			nh = f->nexthdr;
			off += 8;
			if (fo & 0xFFF8) {
				p->key.proto = nh;
				p->kind = SLUICE_PKT_FRAG;
				p->l4_off = (uint16_t)(p->l2_len + off);
				return SLUICE_PARSE_OK;
			}
			if (fo & 1)
				p->first_frag = 1;
			continue;
		}
		const struct sluice_ipv6_opt_hdr *o = (const struct sluice_ipv6_opt_hdr *)h;
		/* AH counts its length in 4-byte words minus 2, the others in 8-byte words minus 1. */
		uint32_t len = nh == SLUICE_IPPROTO_AH ? ((uint32_t)o->hdrlen + 2) * 4
						       : ((uint32_t)o->hdrlen + 1) * 8;
		nh = o->nexthdr;
		off += len;
	}
	if (sluice_ipv6_is_ext(nh))
		return SLUICE_CNT_drop_ipv6_ext_limit;
	if (off > total)
		return SLUICE_CNT_drop_truncated;
	return sluice_parse_l4(data, l3 + off, ip_end, end, nh, p);
}

/*
 * Parses the frame [data, end) into *p. Returns SLUICE_PARSE_OK, or the
 * counter (enum sluice_counter) of the reason it must be dropped. A frame
 * that is not IPv4/IPv6 is OK with kind SLUICE_PKT_NOT_IP.
 */
SLUICE_INLINE uint32_t sluice_parse(const uint8_t *data, const uint8_t *end, struct sluice_pkt *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	const struct sluice_eth_hdr *eth = (const struct sluice_eth_hdr *)data;
	if (data + sizeof(*eth) > end)
		return SLUICE_CNT_drop_truncated;
	uint16_t type = eth->type_be;
	p->l2_len = sizeof(*eth);
	if (type == sluice_htons(SLUICE_ETH_P_8021Q)) {
		const struct sluice_vlan_hdr *vlan = (const struct sluice_vlan_hdr *)(data + sizeof(*eth));
		if (data + sizeof(*eth) + sizeof(*vlan) > end)
			return SLUICE_CNT_drop_truncated;
		type = vlan->type_be;
		p->l2_len = sizeof(*eth) + sizeof(*vlan);
	}
	if (type == sluice_htons(SLUICE_ETH_P_IPV4))
		return sluice_parse_ipv4(data, end, p);
	if (type == sluice_htons(SLUICE_ETH_P_IPV6))
		return sluice_parse_ipv6(data, end, p);
	p->kind = SLUICE_PKT_NOT_IP;
	return SLUICE_PARSE_OK;
}
