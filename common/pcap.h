// SPDX-License-Identifier: Apache-2.0
// Classic pcap files (the format tcpdump and scapy write: a 24-byte file
// header, a 16-byte header per record), Ethernet only: what `sluice-xdp
// --pcap` reads and writes, as `sluice-dpdk --pcap` does.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sluice {

struct pcap_packet {
	uint32_t ts_sec = 0;
	uint32_t ts_frac = 0; // microseconds (or nanoseconds, as the file says)
	std::vector<uint8_t> data;
};

// Reads every record of an Ethernet pcap file. Throws sluice::error with
// one line on a missing, foreign or truncated file.
std::vector<pcap_packet> read_pcap(const std::string &path, bool *nanosecond = nullptr);

// Complete packet records in a pcap file (either byte order, microsecond or
// nanosecond magic) or a pcapng file (enhanced, simple and obsolete packet
// blocks): what libpcap, and so net_pcap, will return — sluice-dpdk --pcap
// knows the end of its input by it. A record cut short by the end of the
// file is not counted (libpcap stops there). Throws sluice::error naming the
// file on anything it cannot read.
uint64_t count_capture_packets(const std::string &path);

class pcap_writer {
public:
	pcap_writer(const std::string &path, bool nanosecond = false); // throws sluice::error
	pcap_writer(const pcap_writer &) = delete;
	pcap_writer &operator=(const pcap_writer &) = delete;
	~pcap_writer();
	void write(const pcap_packet &p, const uint8_t *data, size_t len);
	void close(); // flushes; throws on a write error

private:
	std::string path_;
	FILE *f_ = nullptr;
};

} // namespace sluice
