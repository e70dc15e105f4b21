// SPDX-License-Identifier: Apache-2.0
// The control plane's one error type: its message is the one line a user
// reads ("vips[0].ring_size: 65536 is not prime"). Thrown inside the
// library, caught at the process boundary (the API handler, main()).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sluice {

class error : public std::runtime_error {
public:
	explicit error(const std::string &line) : std::runtime_error(line) {}

	template <typename... Args>
	explicit error(fmt::format_string<Args...> f, Args &&...args)
		: std::runtime_error(fmt::format(f, std::forward<Args>(args)...))
	{
	}
};

} // namespace sluice
