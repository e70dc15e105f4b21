// SPDX-License-Identifier: Apache-2.0
// Random flow keys for the connection-table tests and benchmarks: one
// generator, so a benchmark's keys are the ones the tests proved distinct.
#pragma once

#include <sluice/flow.h>
#include <sluice/packet.h>

#include <cstdint>
#include <cstring>

namespace sluice::testing {

inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

// Key number i of a stream: random bits everywhere, and i itself in a field,
// so two indexes never give the same key (no false hit can come from the
// generator). Half IPv4, half IPv6; TCP and UDP.
inline sluice_flow_key random_key(uint64_t i)
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	const uint64_t r0 = splitmix64(i * 4), r1 = splitmix64(i * 4 + 1), r2 = splitmix64(i * 4 + 2);
	const uint32_t id = (uint32_t)i;
	if (r2 & 1) {
		std::memcpy(k.src, &id, 4);
		std::memcpy(k.dst, &r0, 4);
		k.family = SLUICE_AF_INET;
	} else {
		std::memcpy(k.src, &r0, 8);
		std::memcpy(k.src + 8, &r1, 8);
		std::memcpy(k.dst, &r2, 8);
		std::memcpy(k.dst + 8, &id, 4);
		k.dst[0] = 0x20; // 2000::/3, so it is plainly an IPv6 address
		k.family = SLUICE_AF_INET6;
	}
	k.sport_be = (uint16_t)(r1 >> 16);
	k.dport_be = (uint16_t)(r1 >> 32);
	k.proto = (r2 & 2) ? SLUICE_IPPROTO_TCP : SLUICE_IPPROTO_UDP;
	return k;
}

} // namespace sluice::testing
