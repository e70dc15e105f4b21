// SPDX-License-Identifier: Apache-2.0
#include "address.h"

#include <arpa/inet.h>

#include <cstdio>

namespace sluice {

std::optional<ip_address> ip_address::parse(std::string_view text)
{
	// inet_pton needs a NUL-terminated string and refuses leading zeros,
	// short forms ("10.1") and trailing junk, which is what we want.
	if (text.empty() || text.size() > INET6_ADDRSTRLEN)
		return std::nullopt;
	std::string s(text);
	ip_address a;
	if (s.find(':') == std::string::npos) {
		if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1)
			return std::nullopt;
		a.family = SLUICE_AF_INET;
	} else {
		if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1)
			return std::nullopt;
		a.family = SLUICE_AF_INET6;
	}
	return a;
}

ip_address ip_address::v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	ip_address r;
	r.family = SLUICE_AF_INET;
	r.bytes[0] = a;
	r.bytes[1] = b;
	r.bytes[2] = c;
	r.bytes[3] = d;
	return r;
}

std::string ip_address::str() const
{
	char buf[INET6_ADDRSTRLEN] = {};
	if (family == SLUICE_AF_INET)
		inet_ntop(AF_INET, bytes.data(), buf, sizeof(buf));
	else if (family == SLUICE_AF_INET6)
		inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
	return buf;
}

std::optional<mac_address> mac_address::parse(std::string_view text)
{
	// Exactly six colon-separated pairs of hex digits.
	if (text.size() != 17)
		return std::nullopt;
	mac_address m;
	for (size_t i = 0; i < 6; i++) {
		auto hex = [](char c) -> int {
			if (c >= '0' && c <= '9')
				return c - '0';
			if (c >= 'a' && c <= 'f')
				return c - 'a' + 10;
			if (c >= 'A' && c <= 'F')
				return c - 'A' + 10;
			return -1;
		};
		int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
			return std::nullopt;
		m.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
	}
	return m;
}

std::string mac_address::str() const
{
	char buf[18];
	std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1],
		      bytes[2], bytes[3], bytes[4], bytes[5]);
	return buf;
}

} // namespace sluice
