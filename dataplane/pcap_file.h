// SPDX-License-Identifier: Apache-2.0
// Counting a capture's packets before replaying it, so --pcap mode knows
// when the whole file has gone through the worker (net_pcap just stops
// returning packets at the end; it says nothing).
#pragma once

#include <cstdint>
#include <string>

namespace sluice {

// Complete packet records in a pcap file (either byte order, microsecond or
// nanosecond magic) or a pcapng file (enhanced, simple and obsolete packet
// blocks): what libpcap, and so net_pcap, will return. A record cut short by
// the end of the file is not counted (libpcap stops there). Throws
// sluice::error naming the file on anything it cannot read.
uint64_t count_capture_packets(const std::string &path);

} // namespace sluice
