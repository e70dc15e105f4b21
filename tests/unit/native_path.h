// SPDX-License-Identifier: Apache-2.0
// The packet path in a plain process, as tests/unit/decide_runner and
// fuzz/fuzz_packet run it: a byte buffer with headroom standing in for an
// mbuf, and a verdict of include/sluice/decide.h applied with encap.h's
// writers, as the dataplanes apply it. Only the buffer arithmetic
// (headroom, trim) is here; the decisions and the header writers are the
// shared ones.
#pragma once

#include <sluice/decide.h>
#include <sluice/encap.h>
#include <sluice/parse.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace sluice::native {

// A frame with room in front for outer headers or an ICMP message, as an
// mbuf has (RTE_PKTMBUF_HEADROOM).
struct frame {
	static constexpr size_t headroom = 128;
	std::vector<uint8_t> buf;
	size_t off = headroom, len = 0;

	explicit frame(const std::vector<uint8_t> &data) : buf(headroom + data.size()), len(data.size())
	{
		std::copy(data.begin(), data.end(), buf.begin() + static_cast<std::ptrdiff_t>(off));
	}
	uint8_t *data() { return buf.data() + off; }
	// Opens n bytes in front; the first `keep` bytes (the L2 header) move
	// to the new front. Returns the gap, after them.
	uint8_t *open(size_t n, size_t keep)
	{
		off -= n;
		len += n;
		std::memmove(data(), data() + n, keep);
		return data() + keep;
	}
};

inline void reply_l2(uint8_t *f, const uint8_t port_mac[6])
{
	std::memcpy(f, f + 6, 6);
	std::memcpy(f + 6, port_mac, 6);
}

inline void apply_forward(frame &fr, const sluice_snapshot &s, const sluice_pkt &p, const sluice_verdict &v,
		   const uint8_t port_mac[6])
{
	const sluice_backend &b = s.backends[v.backend];
	fr.len = p.l2_len + p.l3_len; // the padding is not the packet's
	uint8_t *outer = fr.open(v.enc, p.l2_len);
	uint8_t *f = fr.data();
	if (v.enc) {
		sluice_encap_write(outer, v.mode, &s.node, &b, s.vips[v.vip].gue_port_be, v.hash, p.key.family,
				   p.tos, p.l3_len, true);
		const uint16_t type_be = sluice_htons(b.family == SLUICE_AF_INET6 ? SLUICE_ETH_P_IPV6 : SLUICE_ETH_P_IPV4);
		std::memcpy(f + p.l2_len - 2, &type_be, 2);
	}
	std::memcpy(f, b.mac, 6);
	std::memcpy(f + 6, port_mac, 6);
}

inline void apply_too_big(frame &fr, const sluice_pkt &p, uint32_t mtu, const uint8_t port_mac[6])
{
	const uint16_t quote = sluice_icmp_quote_len(p.l3_len);
	const bool v4 = p.key.family == SLUICE_AF_INET;
	const size_t hdr = (v4 ? sizeof(sluice_ipv4_hdr) : sizeof(sluice_ipv6_hdr)) + sizeof(sluice_icmp_hdr);
	uint8_t *gap = fr.open(hdr, p.l2_len);
	fr.len = p.l2_len + hdr + quote;
	const uint8_t *q = gap + hdr;
	if (v4)
		sluice_icmp4_frag_needed(reinterpret_cast<sluice_ipv4_hdr *>(gap),
					 reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv4_hdr)), q, q + quote,
					 quote, static_cast<uint16_t>(mtu));
	else
		sluice_icmp6_too_big(reinterpret_cast<sluice_ipv6_hdr *>(gap),
				     reinterpret_cast<sluice_icmp_hdr *>(gap + sizeof(sluice_ipv6_hdr)), q, q + quote,
				     quote, mtu);
	reply_l2(fr.data(), port_mac);
}

inline void apply_echo(frame &fr, const sluice_pkt &p, const uint8_t port_mac[6])
{
	fr.len = p.l2_len + p.l3_len;
	uint8_t *f = fr.data();
	auto *icmp = reinterpret_cast<sluice_icmp_hdr *>(f + p.l4_off);
	if (p.key.family == SLUICE_AF_INET)
		sluice_icmp4_echo_reply(reinterpret_cast<sluice_ipv4_hdr *>(f + p.l2_len), icmp);
	else
		sluice_icmp6_echo_reply(reinterpret_cast<sluice_ipv6_hdr *>(f + p.l2_len), icmp);
	reply_l2(f, port_mac);
}

} // namespace sluice::native
