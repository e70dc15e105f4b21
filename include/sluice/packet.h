/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire formats, once, for both dataplanes. Multi-byte fields hold network
 * byte order and end in `_be`. Every struct is packed to its wire size and
 * asserted, so a compiler can never pad one differently from another.
 */
#pragma once

#include <sluice/compiler.h>

#define SLUICE_ETH_ALEN 6
#define SLUICE_ETH_P_IPV4 0x0800
#define SLUICE_ETH_P_IPV6 0x86DD
#define SLUICE_ETH_P_ARP 0x0806
#define SLUICE_ETH_P_8021Q 0x8100
#define SLUICE_ETH_P_8021AD 0x88A8

#define SLUICE_IPPROTO_HOPOPTS 0
#define SLUICE_IPPROTO_ICMP 1
#define SLUICE_IPPROTO_IPIP 4
#define SLUICE_IPPROTO_TCP 6
#define SLUICE_IPPROTO_UDP 17
#define SLUICE_IPPROTO_IPV6 41
#define SLUICE_IPPROTO_ROUTING 43
#define SLUICE_IPPROTO_FRAGMENT 44
#define SLUICE_IPPROTO_ESP 50
#define SLUICE_IPPROTO_AH 51
#define SLUICE_IPPROTO_ICMPV6 58
#define SLUICE_IPPROTO_NONE 59
#define SLUICE_IPPROTO_DSTOPTS 60
#define SLUICE_IPPROTO_MH 135

struct sluice_eth_hdr {
	uint8_t dst[SLUICE_ETH_ALEN];
	uint8_t src[SLUICE_ETH_ALEN];
	uint16_t type_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_eth_hdr) == 14, "ethernet header is 14 bytes");

/* 802.1Q tag as it follows the outer ethertype. */
struct sluice_vlan_hdr {
	uint16_t tci_be;
	uint16_t type_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_vlan_hdr) == 4, "802.1Q tag is 4 bytes");

struct sluice_ipv4_hdr {
	uint8_t version_ihl; /* version << 4 | header length in 32-bit words */
	uint8_t tos;         /* DSCP << 2 | ECN */
	uint16_t total_len_be;
	uint16_t id_be;
	uint16_t frag_off_be; /* flags (reserved, DF, MF) << 13 | offset in 8-byte units */
	uint8_t ttl;
	uint8_t protocol;
	uint16_t check_be;
	uint32_t saddr_be;
	uint32_t daddr_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ipv4_hdr) == 20, "IPv4 header is 20 bytes");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ipv4_hdr, saddr_be) == 12, "IPv4 saddr at 12");

#define SLUICE_IPV4_DF 0x4000
#define SLUICE_IPV4_MF 0x2000
#define SLUICE_IPV4_OFFSET_MASK 0x1FFF

struct sluice_ipv6_hdr {
	uint32_t vtc_flow_be; /* version << 28 | traffic class << 20 | flow label */
	uint16_t payload_len_be;
	uint8_t nexthdr;
	uint8_t hop_limit;
	uint8_t saddr[16];
	uint8_t daddr[16];
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ipv6_hdr) == 40, "IPv6 header is 40 bytes");
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_ipv6_hdr, saddr) == 8, "IPv6 saddr at 8");

/* The common shape of hop-by-hop, routing and destination options headers. */
struct sluice_ipv6_opt_hdr {
	uint8_t nexthdr;
	uint8_t hdrlen; /* in 8-byte units, not counting the first 8 bytes */
} SLUICE_PACKED;

struct sluice_ipv6_frag_hdr {
	uint8_t nexthdr;
	uint8_t reserved;
	uint16_t frag_off_be; /* offset << 3 | M flag */
	uint32_t id_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_ipv6_frag_hdr) == 8, "IPv6 fragment header is 8 bytes");

struct sluice_tcp_hdr {
	uint16_t source_be;
	uint16_t dest_be;
	uint32_t seq_be;
	uint32_t ack_seq_be;
	uint8_t doff_res; /* data offset << 4 */
	uint8_t flags;
	uint16_t window_be;
	uint16_t check_be;
	uint16_t urg_ptr_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_tcp_hdr) == 20, "TCP header is 20 bytes");

#define SLUICE_TCP_FIN 0x01
#define SLUICE_TCP_SYN 0x02
#define SLUICE_TCP_RST 0x04
#define SLUICE_TCP_PSH 0x08
#define SLUICE_TCP_ACK 0x10

struct sluice_udp_hdr {
	uint16_t source_be;
	uint16_t dest_be;
	uint16_t len_be;
	uint16_t check_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_udp_hdr) == 8, "UDP header is 8 bytes");

/* ICMP and ICMPv6 share this 8-byte head; `rest` is the echo id/sequence, the
 * next-hop MTU (frag-needed: low 16 bits) or the PTB MTU (ICMPv6: 32 bits). */
struct sluice_icmp_hdr {
	uint8_t type;
	uint8_t code;
	uint16_t check_be;
	uint32_t rest_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_icmp_hdr) == 8, "ICMP header is 8 bytes");

#define SLUICE_ICMP_ECHO_REPLY 0
#define SLUICE_ICMP_DEST_UNREACH 3
#define SLUICE_ICMP_FRAG_NEEDED 4 /* code of DEST_UNREACH */
#define SLUICE_ICMP_ECHO_REQUEST 8
#define SLUICE_ICMP_TIME_EXCEEDED 11

#define SLUICE_ICMPV6_DEST_UNREACH 1
#define SLUICE_ICMPV6_PKT_TOOBIG 2
#define SLUICE_ICMPV6_TIME_EXCEEDED 3
#define SLUICE_ICMPV6_ECHO_REQUEST 128
#define SLUICE_ICMPV6_ECHO_REPLY 129
#define SLUICE_ICMPV6_ND_FIRST 133 /* router solicitation */
#define SLUICE_ICMPV6_ND_LAST 137  /* redirect */

/*
 * Generic UDP Encapsulation, variant 0 (draft-ietf-intarea-gue §3.1): a
 * 4-byte header after the outer UDP header. `proto` carries the inner IP
 * protocol number (4 for IPv4, 41 for IPv6), hlen is 0 (no optional fields).
 */
struct sluice_gue_hdr {
	uint8_t ver_c_hlen; /* version(2) << 6 | control(1) << 5 | hlen(5) */
	uint8_t proto;
	uint16_t flags_be;
} SLUICE_PACKED;
SLUICE_STATIC_ASSERT(sizeof(struct sluice_gue_hdr) == 4, "GUE header is 4 bytes");

/* Bytes each mode adds in front of the inner IP header. */
#define SLUICE_ENCAP_IPV4_LEN (sizeof(struct sluice_ipv4_hdr))
#define SLUICE_ENCAP_IPV6_LEN (sizeof(struct sluice_ipv6_hdr))
#define SLUICE_ENCAP_GUE_EXTRA (sizeof(struct sluice_udp_hdr) + sizeof(struct sluice_gue_hdr))
