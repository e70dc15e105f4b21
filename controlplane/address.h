// SPDX-License-Identifier: Apache-2.0
// IP and MAC addresses as the control plane holds them: the same 16-byte
// layout the shared headers use (IPv4 in the first 4 bytes), so a value goes
// into a snapshot record or a hash without conversion.
#pragma once

#include <sluice/flow.h>

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

struct ip_address {
	uint8_t family = 0; // SLUICE_AF_INET, SLUICE_AF_INET6, or 0 (unset)
	std::array<uint8_t, 16> bytes{};

	static std::optional<ip_address> parse(std::string_view text);
	static ip_address v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);

	bool is_v4() const { return family == SLUICE_AF_INET; }
	bool is_v6() const { return family == SLUICE_AF_INET6; }
	bool empty() const { return family == 0; }
	std::string str() const;

	auto operator<=>(const ip_address &) const = default;
};

struct mac_address {
	std::array<uint8_t, 6> bytes{};

	static std::optional<mac_address> parse(std::string_view text);
	std::string str() const;

	auto operator<=>(const mac_address &) const = default;
};

} // namespace sluice
