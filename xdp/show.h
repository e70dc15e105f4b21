// SPDX-License-Identifier: Apache-2.0
// `sluice-xdp --iface IF --show`: what the attached program forwards with,
// read back from its maps (the active bank: generation, VIP keys, backends,
// each Maglev table's share per backend; with ct, the connection tables'
// live entries per backend). For operators, and for the tests that check
// the mirror.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace sluice::xdp {

// Throws sluice::error if IF runs no sluice program.
nlohmann::json show(const std::string &iface, bool with_ct);

} // namespace sluice::xdp
