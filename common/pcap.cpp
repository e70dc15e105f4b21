// SPDX-License-Identifier: Apache-2.0
#include "pcap.h"

#include "error.h"

#include <cerrno>
#include <cstring>
#include <memory>

namespace sluice {

namespace {

constexpr uint32_t magic_us = 0xA1B2C3D4;
constexpr uint32_t magic_ns = 0xA1B23C4D;
constexpr uint32_t linktype_ethernet = 1;
constexpr uint32_t snaplen = 65535;

struct file_header {
	uint32_t magic;
	uint16_t major, minor;
	int32_t thiszone;
	uint32_t sigfigs, snaplen, linktype;
};
static_assert(sizeof(file_header) == 24);

struct record_header {
	uint32_t ts_sec, ts_frac, caplen, len;
};
static_assert(sizeof(record_header) == 16);

uint32_t swap32(uint32_t v) { return __builtin_bswap32(v); }

// pcapng, draft-ietf-opsawg-pcapng: section header, packet blocks.
constexpr uint32_t pcapng_shb = 0x0a0d0d0a;
constexpr uint32_t pcapng_bom = 0x1a2b3c4d;
constexpr uint32_t pcapng_pb = 2, pcapng_spb = 3, pcapng_epb = 6;

struct file_closer {
	void operator()(FILE *f) const { std::fclose(f); }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

// Records whose header and bytes are all within the file's `size` bytes.
uint64_t count_pcap(FILE *f, long size, bool swapped)
{
	long pos = sizeof(file_header);
	uint64_t n = 0;
	while (pos + long(sizeof(record_header)) <= size) {
		record_header r;
		if (std::fseek(f, pos, SEEK_SET) != 0 || std::fread(&r, 1, sizeof(r), f) != sizeof(r))
			break;
		const uint32_t incl = swapped ? swap32(r.caplen) : r.caplen;
		if (pos + long(sizeof(r)) + (long)incl > size)
			break;
		pos += long(sizeof(r)) + (long)incl;
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
			type = swap32(type);
		const uint32_t len = swapped ? swap32(hdr[1]) : hdr[1];
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
	if (magic == magic_us || magic == magic_ns)
		return count_pcap(f.get(), size, false);
	if (magic == swap32(magic_us) || magic == swap32(magic_ns))
		return count_pcap(f.get(), size, true);
	if (magic == pcapng_shb)
		return count_pcapng(f.get(), size);
	throw error("--pcap input {}: not a pcap or pcapng file (magic {:#010x})", path, magic);
}

std::vector<pcap_packet> read_pcap(const std::string &path, bool *nanosecond)
{
	FILE *f = std::fopen(path.c_str(), "rb");
	if (!f)
		throw error("{}: {}", path, std::strerror(errno));
	std::vector<pcap_packet> out;
	try {
		file_header h;
		if (std::fread(&h, sizeof(h), 1, f) != 1)
			throw error("{}: not a pcap file (shorter than its header)", path);
		bool swapped = false;
		bool ns = false;
		if (h.magic == magic_us || h.magic == magic_ns) {
			ns = h.magic == magic_ns;
		} else if (swap32(h.magic) == magic_us || swap32(h.magic) == magic_ns) {
			swapped = true;
			ns = swap32(h.magic) == magic_ns;
		} else {
			throw error("{}: not a pcap file (magic {:#010x}; pcapng is not read)", path, h.magic);
		}
		uint32_t lt = swapped ? swap32(h.linktype) : h.linktype;
		if ((lt & 0xFFFF) != linktype_ethernet)
			throw error("{}: link type {}, only Ethernet (1) is read", path, lt);
		if (nanosecond)
			*nanosecond = ns;
		for (;;) {
			record_header r;
			size_t n = std::fread(&r, 1, sizeof(r), f);
			if (n == 0)
				break;
			if (n != sizeof(r))
				throw error("{}: truncated record header after {} packets", path, out.size());
			if (swapped) {
				r.ts_sec = swap32(r.ts_sec);
				r.ts_frac = swap32(r.ts_frac);
				r.caplen = swap32(r.caplen);
				r.len = swap32(r.len);
			}
			if (r.caplen > snaplen)
				throw error("{}: record {} claims {} bytes", path, out.size() + 1, r.caplen);
			pcap_packet p;
			p.ts_sec = r.ts_sec;
			p.ts_frac = r.ts_frac;
			p.data.resize(r.caplen);
			if (r.caplen && std::fread(p.data.data(), r.caplen, 1, f) != 1)
				throw error("{}: truncated record {}", path, out.size() + 1);
			out.push_back(std::move(p));
		}
	} catch (...) {
		std::fclose(f);
		throw;
	}
	std::fclose(f);
	return out;
}

pcap_writer::pcap_writer(const std::string &path, bool nanosecond) : path_(path)
{
	f_ = std::fopen(path.c_str(), "wb");
	if (!f_)
		throw error("{}: {}", path, std::strerror(errno));
	file_header h{nanosecond ? magic_ns : magic_us, 2, 4, 0, 0, snaplen, linktype_ethernet};
	if (std::fwrite(&h, sizeof(h), 1, f_) != 1)
		throw error("{}: {}", path, std::strerror(errno));
}

pcap_writer::~pcap_writer()
{
	if (f_)
		std::fclose(f_);
}

void pcap_writer::write(const pcap_packet &p, const uint8_t *data, size_t len)
{
	record_header r{p.ts_sec, p.ts_frac, static_cast<uint32_t>(len), static_cast<uint32_t>(len)};
	if (std::fwrite(&r, sizeof(r), 1, f_) != 1 || (len && std::fwrite(data, len, 1, f_) != 1))
		throw error("{}: {}", path_, std::strerror(errno));
}

void pcap_writer::close()
{
	if (!f_)
		return;
	int err = std::fclose(f_);
	f_ = nullptr;
	if (err != 0)
		throw error("{}: {}", path_, std::strerror(errno));
}

} // namespace sluice
