// SPDX-License-Identifier: Apache-2.0
// sluice-dpdk's own lines on stderr, prefixed like its errors; stdout is
// for the counters (report.h).
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <utility>

namespace sluice {

template <typename... Args>
void note(fmt::format_string<Args...> f, Args &&...args)
{
	std::fprintf(stderr, "sluice-dpdk: %s\n", fmt::format(f, std::forward<Args>(args)...).c_str());
}

} // namespace sluice
