/* SPDX-License-Identifier: Apache-2.0 */
/* The template bench.bpf.c's wrapper restores before every repetition. */
#pragma once

#include <sluice/compiler.h>

/* Every benchmark frame is this long: Ethernet, IPv4, TCP and 10 bytes of
 * payload, no padding (the program under test never trims it). */
#define SLUICE_BENCH_FRAME 64

enum sluice_bench_mode {
	SLUICE_BENCH_FIXED = 0,  /* the template's flow, every time */
	SLUICE_BENCH_NEW = 1,    /* a new client address every repetition */
	SLUICE_BENCH_ROTATE = 2, /* nflows client addresses in turn */
};

struct sluice_bench_template {
	uint8_t frame[SLUICE_BENCH_FRAME];
	uint32_t mode;
	uint32_t nflows;
};
