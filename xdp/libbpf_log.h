// SPDX-License-Identifier: Apache-2.0
// libbpf's messages, for both loaders (sluice-xdp's forwarding program and
// sluice-decap's): all of them with --verbose, else none; the last warning
// is kept so that a failed load says why in its one error line.
#pragma once

#include <string>

namespace sluice::xdp {

// Routes libbpf's messages through us; call before opening a skeleton.
void set_libbpf_verbose(bool verbose);
std::string last_libbpf_warning();

// The one line a failed load prints: the errno, libbpf's last warning, and
// what to do (root or capabilities; --verbose for the verifier log).
std::string load_failure(const char *what, int err);

} // namespace sluice::xdp
