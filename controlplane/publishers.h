// SPDX-License-Identifier: Apache-2.0
// The two publishers the service is handed: the shared-memory segment
// (sluiced) and plain memory (unit tests: no root, no segment).
#pragma once

#include "service.h"
#include "shm_segment.h"

#include <memory>

namespace sluice {

class shm_publisher final : public publisher {
public:
	shm_publisher(sluice_shm *shm, std::chrono::milliseconds worker_timeout)
		: shm_(shm), writer_(shm, worker_timeout), timeout_(worker_timeout)
	{
	}
	uint64_t publish(const std::function<void(sluice_snapshot &)> &fill) override
	{
		return writer_.publish(fill);
	}
	uint64_t generation() const override { return writer_.generation(); }
	const sluice_shm *segment() const override { return shm_; }
	sluice_shm *request_segment() override { return shm_; }
	std::chrono::milliseconds worker_timeout() const override { return timeout_; }
	snapshot_writer &writer() { return writer_; }

private:
	sluice_shm *shm_;
	snapshot_writer writer_;
	std::chrono::milliseconds timeout_;
};

// Keeps the last snapshot in (lazily zeroed) private anonymous memory.
class memory_publisher final : public publisher {
public:
	memory_publisher();
	uint64_t publish(const std::function<void(sluice_snapshot &)> &fill) override;
	uint64_t generation() const override { return generation_; }
	const sluice_shm *segment() const override { return nullptr; }
	std::chrono::milliseconds worker_timeout() const override { return std::chrono::seconds(1); }
	const sluice_snapshot &last() const { return *snap_; }

private:
	struct unmap_deleter {
		void operator()(sluice_snapshot *p) const;
	};
	std::unique_ptr<sluice_snapshot, unmap_deleter> snap_;
	uint64_t generation_ = 0;
};

} // namespace sluice
