/* SPDX-License-Identifier: Apache-2.0 */
/* The template bench.bpf.c's wrapper restores before every repetition. */
#pragma once

#include <sluice/compiler.h>

/* Every benchmark frame is this long: Ethernet, IPv4, TCP and 10 bytes of
 * payload, no padding (the program under test never trims it). */
#define SLUICE_BENCH_FRAME 64

enum sluice_bench_mode {
	SLUICE_BENCH_FIXED = 0, /* the template's flow, every time */
	SLUICE_BENCH_NEW = 1,   /* a client address of 10/8 per repetition, none twice in 2^24 */
	SLUICE_BENCH_LIST = 2,  /* the client addresses of bench_flows[0, nflows), in turn */
	/* LIST, where each repetition first frees the connection of the flow
	 * `lead` places ahead in the list (bench_buckets holds its bucket):
	 * new flows forever, each into a free way. */
	SLUICE_BENCH_LIST_NEW = 3,
};

struct sluice_bench_template {
	uint8_t frame[SLUICE_BENCH_FRAME];
	uint32_t mode;
	uint32_t nflows;
	uint32_t lead; /* LIST_NEW: < nflows */
	uint32_t pad;
};

/* Client addresses bench_flows holds at most (a list per run). */
#define SLUICE_BENCH_MAX_FLOWS (1u << 22)
