// SPDX-License-Identifier: Apache-2.0
// sluice-xdp's modes, a file each; main.cpp parses the options and runs one.
// Each returns the exit status or throws sluice::error with one line.
#pragma once

#include "options.h"

#include <chrono>
#include <csignal>
#include <cstdint>

namespace sluice {
class worker_handle;
}

namespace sluice::xdp {

class mirror;

// Set by SIGINT/SIGTERM (main.cpp); the modes that run until stopped poll it.
extern volatile std::sig_atomic_t stop_signal;

// Housekeeping cadence. The segment is polled every millisecond so that a
// snapshot is in the maps well within 10 ms of its publication (the switch
// itself is one store; filling a bank takes ~0.1 ms per 65,537-entry
// table). The heartbeat is far inside sluiced's worker timeout (1 s by
// default); counters reach the segment ten times a second, as the DPDK
// housekeeping lcore copies them.
constexpr auto poll_interval = std::chrono::milliseconds(1);
constexpr auto heartbeat_interval = std::chrono::milliseconds(10);
constexpr auto counters_interval = std::chrono::milliseconds(100);

// Mirrors whatever the segment has that the maps do not, reporting the
// generation applied (or the refusal) in the worker record. `refused` holds
// the last generation the maps could not take, so it is not retried every
// poll. Returns whether the maps hold a snapshot.
bool mirror_latest(worker_handle &h, mirror &m, uint64_t &refused);

int run_forwarder(const options &o); // forward.cpp
int run_unpin(const options &o);     // unpin.cpp
int run_detach(const options &o);    // unpin.cpp
int run_pcap(const options &o);      // pcap_replay.cpp

} // namespace sluice::xdp
