// SPDX-License-Identifier: Apache-2.0
// sluice-xdp --iface IF --unpin: detach sluice's program and remove its pins
// (the connection table with its flows): the way to start from nothing.
// --detach: only take the program off (after a --keep-attached stop that is
// not followed by a start); the pins stay for the next start.
#include "modes.h"

#include "attach.h"
#include "maps.h"
#include "program.h"

#include <spdlog/spdlog.h>

namespace sluice::xdp {

int run_unpin(const options &o)
{
	if (detach_named(o.iface, SLUICE_XDP_PROG_NAME))
		spdlog::info("{}: detached sluice's XDP program", o.iface);
	unpin(o.pin_dir);
	spdlog::info("removed the pins under {}", o.pin_dir);
	return 0;
}

int run_detach(const options &o)
{
	if (detach_named(o.iface, SLUICE_XDP_PROG_NAME))
		spdlog::info("{}: detached sluice's XDP program; the pins under {} stay (--unpin removes them)",
			     o.iface, o.pin_dir);
	else
		spdlog::info("{}: runs no sluice XDP program; nothing to detach", o.iface);
	return 0;
}

} // namespace sluice::xdp
