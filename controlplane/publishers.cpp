// SPDX-License-Identifier: Apache-2.0
#include "publishers.h"

#include <sys/mman.h>

#include <new>

namespace sluice {

void memory_publisher::unmap_deleter::operator()(sluice_snapshot *p) const
{
	munmap(p, sizeof(*p));
}

// Fresh anonymous pages, zero until written: the 64 MiB ring pool costs only
// what a test writes. Mapped rather than allocated so LeakSanitizer does not
// scan all 64 MiB for pointers (it holds none) at every leak check: that
// scan was most of what one fuzz_api input cost.
static sluice_snapshot *map_snapshot()
{
	void *p = mmap(nullptr, sizeof(sluice_snapshot), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		throw std::bad_alloc();
	return static_cast<sluice_snapshot *>(p);
}

memory_publisher::memory_publisher() : snap_(map_snapshot()) {}

uint64_t memory_publisher::publish(const std::function<void(sluice_snapshot &)> &fill)
{
	fill(*snap_);
	snap_->hdr.generation = ++generation_;
	snap_->hdr.checksum = sluice_snapshot_checksum(snap_.get());
	return generation_;
}

} // namespace sluice
