/* SPDX-License-Identifier: Apache-2.0 */
/* The counter enum, generated from counters.def. */
#pragma once

#include <sluice/compiler.h>

enum sluice_counter {
#define SLUICE_COUNTER(name, kind, help) SLUICE_CNT_##name,
#include <sluice/counters.def>
#undef SLUICE_COUNTER
	SLUICE_CNT__COUNT
};

/* Room reserved in the segment: appending counters keeps the layout. */
#define SLUICE_COUNTER_SLOTS 64
SLUICE_STATIC_ASSERT(SLUICE_CNT__COUNT <= SLUICE_COUNTER_SLOTS, "counter block full");

/* Per-VIP and per-backend counters, indexed by the object's stable id. */
struct sluice_obj_counters {
	uint64_t packets;
	uint64_t bytes;
	uint64_t new_flows;
};
SLUICE_STATIC_ASSERT(sizeof(struct sluice_obj_counters) == 24, "object counters are 24 bytes");
