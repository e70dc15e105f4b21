// SPDX-License-Identifier: Apache-2.0
// --log-level for every process that logs through spdlog. spdlog's own
// from_str turns a name it does not know ("WARN", "verbose") into "off",
// which silences the process without a word: refuse instead.
#pragma once

#include "error.h"

#include <spdlog/spdlog.h>

#include <string>

namespace sluice {

inline spdlog::level::level_enum log_level_from_name(const std::string &name)
{
	static constexpr struct {
		const char *name;
		spdlog::level::level_enum level;
	} levels[] = {
		{"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
		{"info", spdlog::level::info},   {"warn", spdlog::level::warn},
		{"error", spdlog::level::err},
	};
	for (const auto &l : levels)
		if (name == l.name)
			return l.level;
	throw error("--log-level: '{}' is not one of trace, debug, info, warn, error", name);
}

} // namespace sluice
