// SPDX-License-Identifier: Apache-2.0
// Formats: pcap, https://www.tcpdump.org/manpages/pcap-savefile.5.html;
// pcapng, RFC draft-ietf-opsawg-pcapng (section header, packet blocks).
#include "pcap_file.h"

#include "error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace sluice {

namespace {

struct file_closer {
	void operator()(FILE *f) const { std::fclose(f); }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

uint32_t bswap(uint32_t v) { return __builtin_bswap32(v); }

constexpr uint32_t pcap_magic_us = 0xa1b2c3d4;
constexpr uint32_t pcap_magic_ns = 0xa1b23c4d;
constexpr uint32_t pcapng_shb = 0x0a0d0d0a;
constexpr uint32_t pcapng_bom = 0x1a2b3c4d;
constexpr uint32_t pcapng_pb = 2, pcapng_spb = 3, pcapng_epb = 6;

// Records whose header and bytes are all within the file's `size` bytes.
uint64_t count_pcap(FILE *f, long size, bool swapped)
{
	long pos = 24; // magic, version 2+2, thiszone, sigfigs, snaplen, network
	uint64_t n = 0;
	while (pos + 16 <= size) {
		uint32_t rec[4]; // ts_sec, ts_frac, incl_len, orig_len
		if (std::fseek(f, pos, SEEK_SET) != 0 || std::fread(rec, 1, sizeof(rec), f) != sizeof(rec))
			break;
		const uint32_t incl = swapped ? bswap(rec[2]) : rec[2];
		if (pos + 16 + (long)incl > size)
			break;
		pos += 16 + (long)incl;
		n++;
	}
	return n;
}

uint64_t count_pcapng(FILE *f, long size)
{
	long pos = 0;
	uint64_t n = 0;
	bool swapped = false;
	while (pos + 12 <= size) {
		uint32_t hdr[3]; // block type, total length, first body word
		if (std::fseek(f, pos, SEEK_SET) != 0 || std::fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr))
			break;
		uint32_t type = hdr[0]; // the section header's type reads the same both ways
		if (type == pcapng_shb)
			swapped = hdr[2] != pcapng_bom; // its byte-order magic sets the section's
		if (swapped)
			type = bswap(type);
		const uint32_t len = swapped ? bswap(hdr[1]) : hdr[1];
		if (len < 12 || len % 4 != 0 || pos + (long)len > size)
			break;
		if (type == pcapng_epb || type == pcapng_spb || type == pcapng_pb)
			n++;
		pos += len;
	}
	return n;
}

} // namespace

uint64_t count_capture_packets(const std::string &path)
{
	file_ptr f(std::fopen(path.c_str(), "rb"));
	if (!f)
		throw error("--pcap input {}: {}", path, std::strerror(errno));
	uint32_t magic;
	if (std::fread(&magic, 1, 4, f.get()) != 4)
		throw error("--pcap input {}: too short for a pcap file", path);
	if (std::fseek(f.get(), 0, SEEK_END) != 0)
		throw error("--pcap input {}: {}", path, std::strerror(errno));
	const long size = std::ftell(f.get());
	if (magic == pcap_magic_us || magic == pcap_magic_ns)
		return count_pcap(f.get(), size, false);
	if (magic == bswap(pcap_magic_us) || magic == bswap(pcap_magic_ns))
		return count_pcap(f.get(), size, true);
	if (magic == pcapng_shb)
		return count_pcapng(f.get(), size);
	throw error("--pcap input {}: not a pcap or pcapng file (magic {:#010x})", path, magic);
}

} // namespace sluice
