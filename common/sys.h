// SPDX-License-Identifier: Apache-2.0
// The small system helpers every process needs once: errno as text, the
// clocks, and the stop signals.
#pragma once

#include <cstdint>
#include <string>

namespace sluice {

// strerror of an errno value, positive or negated (libbpf and DPDK return
// -errno).
std::string errno_text(int err);

// CLOCK_MONOTONIC (heartbeats, timeouts) and CLOCK_REALTIME (what a person
// reads: published_ns, last check), in ns.
uint64_t monotonic_ns();
uint64_t realtime_ns();

// 64 random bits from the kernel (getrandom): the connection tables' keys.
// Throws if the kernel has none to give.
uint64_t random_u64();

// SIGINT and SIGTERM call `handler` (async-signal-safe work only: set a
// flag). No SA_RESTART: a blocking call returns EINTR so a loop sees it.
void on_stop_signals(void (*handler)(int));

} // namespace sluice
