// SPDX-License-Identifier: Apache-2.0
#include "publishers.h"

#include <cstdlib>
#include <new>

namespace sluice {

void memory_publisher::free_deleter::operator()(sluice_snapshot *p) const
{
	std::free(p);
}

memory_publisher::memory_publisher()
	// calloc of a large block maps fresh zero pages: the 64 MiB ring pool
	// costs only what a test writes.
	: snap_(static_cast<sluice_snapshot *>(std::calloc(1, sizeof(sluice_snapshot))))
{
	if (!snap_)
		throw std::bad_alloc();
}

uint64_t memory_publisher::publish(const std::function<void(sluice_snapshot &)> &fill)
{
	fill(*snap_);
	snap_->hdr.generation = ++generation_;
	snap_->hdr.checksum = sluice_snapshot_checksum(snap_.get());
	return generation_;
}

} // namespace sluice
