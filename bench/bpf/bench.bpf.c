// SPDX-License-Identifier: Apache-2.0
/*
 * Programs for bench/xdp_bench.cpp, which times XDP programs with
 * BPF_PROG_TEST_RUN and `repeat`. A test run hands every repetition the
 * frame the previous one left (docs/testing.md), so bench_wrap runs first each
 * time: it undoes what the program under test did to the frame (moves the
 * head back after an encapsulation), writes the template frame again, stamps
 * the flow the mode asks for, and tail-calls the program under test
 * (bench_progs[0]). Its own cost is measured in front of bench_tx, in each
 * mode, and subtracted for the "net" figures.
 *
 * bench_swap is the reference a fast XDP forwarder is compared with: parse
 * Ethernet, IPv4/IPv6 and the ports, swap the MACs, XDP_TX.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <sluice/conntrack.h>
#include <sluice/packet.h>

#include "bench.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_bench_template);
} bench_tpl SEC(".maps");

/* The position in the mode's sequence: the repetition number (NEW) or the
 * next index into bench_flows (LIST). Reset by the harness before a run. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, uint64_t);
} bench_seq SEC(".maps");

/* LIST mode's client addresses (network order), chosen by the harness: the
 * flows it filled the table with, or new flows whose buckets have a free
 * way. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_BENCH_MAX_FLOWS);
	__type(key, uint32_t);
	__type(value, uint32_t);
} bench_flows SEC(".maps");

/* LIST_NEW: the sl_ct key of each bench_flows entry's bucket, and sl_ct
 * itself (the harness hands in the program's map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_BENCH_MAX_FLOWS);
	__type(key, uint32_t);
	__type(value, uint32_t);
} bench_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, uint32_t);
	__type(value, struct sluice_ct_bucket);
} bench_ct SEC(".maps");

/* LIST_NEW: frees the connection of list entry k, if it has one (by its
 * client address: the list's flows differ only there). */
static __always_inline void free_flow(uint32_t k)
{
	const uint32_t *src = bpf_map_lookup_elem(&bench_flows, &k);
	const uint32_t *bk = bpf_map_lookup_elem(&bench_buckets, &k);
	if (!src || !bk)
		return;
	struct sluice_ct_bucket *b = bpf_map_lookup_elem(&bench_ct, bk);
	if (!b)
		return;
	for (int w = 0; w < SLUICE_CT_WAYS; w++) {
		uint32_t s;
		__builtin_memcpy(&s, b->way[w].key.src, 4);
		if (b->way[w].state != SLUICE_CT_FREE && s == *src)
			sluice_ct_remove(b, w);
	}
}

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
	uint32_t src = 0;
	if (t->mode == SLUICE_BENCH_NEW) {
		src = sluice_htonl(0x0A000000u | ((uint32_t)*seq & 0xFFFFFFu));
		*seq += 1;
	} else if (t->mode == SLUICE_BENCH_LIST || t->mode == SLUICE_BENCH_LIST_NEW) {
		/* No division: the index wraps by a compare. */
		uint32_t i = (uint32_t)*seq;
		if (i >= t->nflows)
			i = 0;
		*seq = i + 1;
		const uint32_t *a = bpf_map_lookup_elem(&bench_flows, &i);
		if (!a)
			return XDP_ABORTED;
		src = *a;
		if (t->mode == SLUICE_BENCH_LIST_NEW) {
			/* The flow `lead` ahead was inserted nflows - lead
			 * repetitions ago and comes again in `lead`: its way is
			 * free again by then, and its bucket is no warmer than
			 * any other when the program gets there. */
			uint32_t k = i + t->lead;
			if (k >= t->nflows)
				k -= t->nflows;
			free_flow(k);
		}
	}
	if (t->mode != SLUICE_BENCH_FIXED)
		__builtin_memcpy(data + sizeof(struct sluice_eth_hdr) + SLUICE_OFFSETOF(struct sluice_ipv4_hdr, saddr_be),
				 &src, 4);
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
