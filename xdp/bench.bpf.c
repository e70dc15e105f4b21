// SPDX-License-Identifier: Apache-2.0
/*
 * Programs for bench/xdp_bench.cpp, which times XDP programs with
 * BPF_PROG_TEST_RUN and `repeat`. A test run hands every repetition the
 * frame the previous one left (TESTBED.md), so bench_wrap runs first each
 * time: it undoes what the program under test did to the frame (moves the
 * head back after an encapsulation), writes the template frame again, stamps
 * the flow the mode asks for, and tail-calls the program under test
 * (bench_progs[0]). Its own cost is measured in front of bench_tx and
 * subtracted.
 *
 * bench_swap is the reference a fast XDP forwarder is compared with: parse
 * Ethernet, IPv4/IPv6 and the ports, swap the MACs, XDP_TX.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <sluice/packet.h>

#include "bench.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_bench_template);
} bench_tpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, uint64_t);
} bench_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, uint32_t);
} bench_progs SEC(".maps");

SEC("xdp")
int bench_wrap(struct xdp_md *xdp)
{
	uint32_t zero = 0;
	const struct sluice_bench_template *t = bpf_map_lookup_elem(&bench_tpl, &zero);
	uint64_t *seq = bpf_map_lookup_elem(&bench_seq, &zero);
	if (!t || !seq)
		return XDP_ABORTED;
	int len = (int)((long)xdp->data_end - (long)xdp->data);
	/* The program under test opened room in front (an encapsulation):
	 * give it back, so the frame starts where the template does. */
	if (len != SLUICE_BENCH_FRAME && bpf_xdp_adjust_head(xdp, len - SLUICE_BENCH_FRAME))
		return XDP_ABORTED;
	uint8_t *data = (uint8_t *)(long)xdp->data;
	uint8_t *end = (uint8_t *)(long)xdp->data_end;
	if (data + SLUICE_BENCH_FRAME > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, t->frame, SLUICE_BENCH_FRAME);
	uint64_t n = (*seq)++;
	if (t->mode != SLUICE_BENCH_FIXED) {
		/* A client address of 10.64.0.0/10 per flow: every repetition a
		 * new one, or one of nflows in turn. */
		uint32_t f = (uint32_t)n;
		if (t->mode == SLUICE_BENCH_ROTATE)
			f = (uint32_t)(n % (t->nflows ? t->nflows : 1));
		uint32_t src = sluice_htonl(0x0A400000u | (f & 0x3FFFFFu));
		__builtin_memcpy(data + sizeof(struct sluice_eth_hdr) + SLUICE_OFFSETOF(struct sluice_ipv4_hdr, saddr_be),
				 &src, 4);
	}
	bpf_tail_call(xdp, &bench_progs, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int bench_tx(struct xdp_md *xdp)
{
	(void)xdp;
	return XDP_TX;
}

SEC("xdp")
int bench_swap(struct xdp_md *xdp)
{
	uint8_t *data = (uint8_t *)(long)xdp->data;
	uint8_t *end = (uint8_t *)(long)xdp->data_end;
	struct sluice_eth_hdr *eth = (struct sluice_eth_hdr *)data;
	if (data + sizeof(*eth) > end)
		return XDP_DROP;
	uint8_t *l4;
	uint8_t proto;
	if (eth->type_be == sluice_htons(SLUICE_ETH_P_IPV4)) {
		struct sluice_ipv4_hdr *ip = (struct sluice_ipv4_hdr *)(eth + 1);
		if ((uint8_t *)(ip + 1) > end)
			return XDP_DROP;
		l4 = (uint8_t *)ip + (ip->version_ihl & 0x0F) * 4;
		proto = ip->protocol;
	} else if (eth->type_be == sluice_htons(SLUICE_ETH_P_IPV6)) {
		struct sluice_ipv6_hdr *ip = (struct sluice_ipv6_hdr *)(eth + 1);
		if ((uint8_t *)(ip + 1) > end)
			return XDP_DROP;
		l4 = (uint8_t *)(ip + 1);
		proto = ip->nexthdr;
	} else {
		return XDP_PASS;
	}
	if (proto != SLUICE_IPPROTO_TCP && proto != SLUICE_IPPROTO_UDP)
		return XDP_PASS;
	if (l4 + 4 > end)
		return XDP_DROP;
	/* The ports, as a forwarder reads them for its flow key. */
	volatile uint32_t ports;
	__builtin_memcpy((void *)&ports, l4, 4);
	uint8_t tmp[SLUICE_ETH_ALEN];
	__builtin_memcpy(tmp, eth->dst, SLUICE_ETH_ALEN);
	__builtin_memcpy(eth->dst, eth->src, SLUICE_ETH_ALEN);
	__builtin_memcpy(eth->src, tmp, SLUICE_ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Apache-2.0";
