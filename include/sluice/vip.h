/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A packet's VIP, as both dataplanes find it (decide.h's first step): the
 * service it is for and whether its destination is a VIP address, through
 * shm.h's lookups, with a memo of the last answer.
 */
#pragma once

#include "compiler.h"
#include "parse.h"
#include "shm.h"

/* A packet's VIP: the service it is for, and whether its destination is a
 * VIP address at all (a VIP address with no service on the port keeps what
 * is not for the kernel: echo is answered, the rest dropped and counted). */
struct sluice_vip_match {
	uint32_t service; /* index in vips[]; SLUICE_MAX_VIPS: none */
	uint32_t address; /* 1: the destination is a VIP address */
};

/* The exact service, then the address entry, and the address's port-0
 * service only for a VIP address. A port-0 VIP always has its address entry
 * (the snapshot builder places one per VIP address), so this is
 * sluice_vip_find()'s answer, and traffic that is not for a VIP costs two
 * probes. */
SLUICE_INLINE struct sluice_vip_match sluice_vip_match_find(const struct sluice_snapshot *s,
							    const struct sluice_pkt *p)
{
	struct sluice_vip_match m;
	m.service = sluice_vip_find_exact(s, p->key.dst, p->key.family, p->key.dport_be, p->key.proto);
	m.address = 1;
	if (m.service == SLUICE_MAX_VIPS) {
		m.address = sluice_vip_find_address(s, p->key.dst, p->key.family) != SLUICE_MAX_VIPS;
		if (m.address)
			m.service = sluice_vip_find_exact(s, p->key.dst, p->key.family, 0, p->key.proto);
	}
	return m;
}

/* The answer for the last packet of the same destination, port, protocol
 * and family under the same snapshot: traffic to one service, which a burst
 * mostly is, hashes its key once. `active` names the snapshot (shm.h). */
struct sluice_vip_memo {
	uint64_t active; /* 0: nothing remembered (a published active is never 0) */
	uint64_t dst0, dst1;
	uint64_t rest; /* key word 4 & SLUICE_VIP_MEMO_REST */
	uint32_t service;
	uint32_t address;
};

/* dport, proto and family in the flow key's fifth word (flow.h), the source
 * port masked out. */
#define SLUICE_VIP_MEMO_REST 0x0000FFFFFFFF0000ull
SLUICE_STATIC_ASSERT(SLUICE_OFFSETOF(struct sluice_flow_key, dport_be) == 34 &&
			     SLUICE_OFFSETOF(struct sluice_flow_key, proto) == 36 &&
			     SLUICE_OFFSETOF(struct sluice_flow_key, family) == 37,
		     "SLUICE_VIP_MEMO_REST names dport, proto and family in the key's fifth word");

SLUICE_INLINE struct sluice_vip_match sluice_vip_match_memo(const struct sluice_snapshot *s,
							    struct sluice_vip_memo *memo, uint64_t active,
							    const struct sluice_pkt *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)&p->key;
	const uint64_t rest = w[4] & SLUICE_VIP_MEMO_REST;
	struct sluice_vip_match m;
	if (memo->active == active && memo->dst0 == w[2] && memo->dst1 == w[3] && memo->rest == rest) {
		m.service = memo->service;
		m.address = memo->address;
		return m;
	}
	m = sluice_vip_match_find(s, p);
	memo->active = active;
	memo->dst0 = w[2];
	memo->dst1 = w[3];
	memo->rest = rest;
	memo->service = m.service;
	memo->address = m.address;
	return m;
}

