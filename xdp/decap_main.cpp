// SPDX-License-Identifier: Apache-2.0
// sluice-decap: the backend side of sluice's tunnels (decap_run.h).
#include "decap_run.h"

int main(int argc, char **argv) { return sluice::xdp::decap_main(argc, argv, "sluice-decap"); }
