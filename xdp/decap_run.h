// SPDX-License-Identifier: Apache-2.0
// sluice-decap: the backend-side program that opens sluice's tunnels (IPIP,
// IPv6-in-IPv6, IPv4-in-IPv6, GUE) addressed to this host, so the backend
// sees the client's packet and answers it directly. A program of its own,
// with its own options; `sluice-xdp --decap ...` runs the same code for
// those who started it that way.
#pragma once

namespace sluice::xdp {

// Parses argv (argv[0] is the program's name as the user knows it: the
// messages and --help use `name`), loads, attaches and runs until SIGINT or
// SIGTERM. Returns the process's exit status: 0, 1 on a failure, 2 on bad
// options.
int decap_main(int argc, char **argv, const char *name);

} // namespace sluice::xdp
