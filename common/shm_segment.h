// SPDX-License-Identifier: Apache-2.0
// The shared-memory segment of include/sluice/shm.h as processes hold it:
// the mapping (shm_segment), the one writer of snapshots (snapshot_writer,
// in sluiced) and the readers (worker_handle, in each dataplane worker).
// The protocol is the one in shm.h's top comment; the pieces it leaves
// implicit are written down here where they are implemented.
#pragma once

#include "sys.h"

#include <sluice/shm.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sluice {

// RAII mapping of the POSIX shm segment /dev/shm/NAME (MAP_SHARED, read and
// write: dataplanes write their own worker records). Movable, not copyable.
class shm_segment {
public:
	shm_segment() = default;
	shm_segment(shm_segment &&other) noexcept;
	shm_segment &operator=(shm_segment &&other) noexcept;
	shm_segment(const shm_segment &) = delete;
	shm_segment &operator=(const shm_segment &) = delete;
	~shm_segment();

	// sluiced: adopts NAME if it exists and is valid (its content is kept,
	// so running dataplanes carry on with the active snapshot), else creates
	// it (O_EXCL, mode 0660, sparse) and writes the header, magic last. A
	// segment of another magic, ABI version or size throws one line naming
	// both sides; so does one this uid does not own or that others (or
	// another group) may write. Holds an exclusive lock on the segment for
	// the object's lifetime: a second create_or_adopt of NAME, in this
	// process or another, throws "held by another sluiced".
	static shm_segment create_or_adopt(const std::string &name);
	// Dataplanes and tools: NAME must exist and be valid, owned by root, this
	// uid or user `sluice`, and writable by no one else (see ownership.h).
	static shm_segment attach(const std::string &name);
	// attach(), retried every 50 ms while the segment is missing or still
	// being created, for processes started together with sluiced. A segment
	// of the wrong version fails at once: waiting will not fix it.
	static shm_segment attach_wait(const std::string &name, std::chrono::milliseconds timeout);
	// No error if NAME does not exist.
	static void unlink(const std::string &name);
	// Throws the line every call above gives for a NAME that is not one
	// file name under /dev/shm, without touching anything: for option
	// checks before a process creates what it needs.
	static void check_name(const std::string &name);

	sluice_shm *get() const { return shm_; }
	sluice_shm *operator->() const { return shm_; }
	const std::string &name() const { return name_; }
	bool adopted() const { return adopted_; } // existed before create_or_adopt

private:
	shm_segment(sluice_shm *shm, std::string name, bool adopted, int lock_fd = -1)
		: shm_(shm), name_(std::move(name)), adopted_(adopted), lock_fd_(lock_fd)
	{
	}

	sluice_shm *shm_ = nullptr;
	std::string name_;
	bool adopted_ = false;
	int lock_fd_ = -1; // create_or_adopt's flock, held while this lives
};

// The one writer of snapshots (sluiced). publish() and generation() need
// one thread at a time; heartbeat() is two atomic stores and may run on a
// housekeeping thread beside them.
class snapshot_writer {
public:
	// worker_timeout: a worker whose heartbeat is older holds nothing. On an
	// adopted segment the generations continue from what it holds. Throws if
	// another live process is publishing to the segment.
	snapshot_writer(sluice_shm *shm, std::chrono::milliseconds worker_timeout);

	// Fills a free slot through fill() and makes it active; returns its
	// generation. Waits while every non-active slot is named by a live
	// worker: until one moves on or the worker timeout passes, then throws
	// naming the workers that hold them. If fill throws, nothing is
	// published and the exception propagates.
	uint64_t publish(const std::function<void(sluice_snapshot &)> &fill);

	uint64_t generation() const { return generation_; } // last published or adopted
	void heartbeat();                                    // ctl.writer_heartbeat_ns, writer_pid
	std::vector<uint32_t> live_workers() const;          // indices into shm->workers

private:
	bool worker_live(const sluice_worker_info &info, uint64_t now) const;
	int free_slot() const; // -1 if none
	std::string holders() const; // the live workers not on generation_, for the error

	sluice_shm *shm_;
	uint64_t timeout_ns_;
	uint64_t generation_ = 0; // what ctl.active names
	uint64_t next_ = 0;       // highest generation any slot ever held
};

// A reader of snapshots that owns one worker record (a dataplane worker, or
// a test's simulated one). Movable RAII: releases its record on destruction.
class worker_handle {
public:
	// A record whose owner's heartbeat is older than this is free to take.
	static constexpr std::chrono::milliseconds default_stale{3000};

	worker_handle() = default;
	worker_handle(worker_handle &&other) noexcept;
	worker_handle &operator=(worker_handle &&other) noexcept;
	worker_handle(const worker_handle &) = delete;
	worker_handle &operator=(const worker_handle &) = delete;
	~worker_handle() { release(); }

	// Takes a free record, else one whose owner is gone (stopped, or silent
	// for `stale`), keeping its counters so totals stay monotonic across
	// dataplane restarts. Throws if all SLUICE_MAX_WORKERS records are live.
	// `pid` lets tests run several simulated workers in one process.
	static worker_handle claim(sluice_shm *shm, uint32_t kind, uint32_t queue,
				   const std::string &name, uint32_t pid = (uint32_t)getpid(),
				   std::chrono::milliseconds stale = default_stale);

	// Once per poll of the burst loop, empty polls included (a worker that
	// stops acquiring while it heartbeats keeps every slot it could read
	// from being reused). Returns the active snapshot, or nullptr before the
	// first publish; use it for the whole burst. No syscall, no lock, no
	// allocation.
	const sluice_snapshot *acquire()
	{
		uint64_t active = __atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE);
		uint64_t gen = sluice_active_generation(active);
		// The release store tells the writer every read of the slots this
		// worker used before is done, and names the one it reads now (a
		// hazard pointer): the writer reuses no slot a live worker names.
		// After the store, a fence and a second look: if `active` moved
		// meanwhile, the writer may have checked the names before ours
		// landed and reused the slot we loaded, so take the new one. Only
		// when the generation changed: the writer cannot free the slot we
		// still name, and not storing keeps the line shared with a
		// scanning writer.
		if (gen != seen_) {
			for (;;) {
				__atomic_store_n(&rec_->info.generation_seen, gen, __ATOMIC_RELEASE);
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
				const uint64_t again = __atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE);
				if (again == active)
					break;
				active = again;
				gen = sluice_active_generation(active);
			}
			if (applies_what_it_sees_)
				__atomic_store_n(&rec_->info.generation_applied, gen, __ATOMIC_RELAXED);
			seen_ = gen;
		}
		uint32_t slot = sluice_active_slot(active);
		if (SLUICE_UNLIKELY(active == SLUICE_ACTIVE_NONE || slot >= SLUICE_SNAPSHOT_SLOTS))
			return nullptr;
		return &shm_->slots[slot];
	}

	void heartbeat(); // every housekeeping tick, well within the writer's timeout
	// For a reader that copies each snapshot elsewhere and may refuse one
	// (sluice-xdp's maps): from now on it says itself which generation it
	// forwards by, and why not the one it has seen.
	void report_applied_separately() { applies_what_it_sees_ = false; }
	void applied(uint64_t generation, uint32_t refused);
	// For a reader that never reads the slots itself but forwards by a
	// checked copy (sluice-dpdk's workers, dataplane/snapshot_keeper.h):
	// the generation of the copy it now uses, seen and applied at once.
	void adopted(uint64_t generation);
	// ... and the newer generation it saw and refused (with applied()).
	void seen(uint64_t generation);
	sluice_worker &record() { return *rec_; }
	// The segment, for what sluiced asks of every record (conn_list).
	const sluice_shm &segment() const { return *shm_; }
	uint32_t index() const { return index_; } // in shm->workers
	bool owned() const { return rec_ != nullptr; }
	// Marks the record STOPPED (it then holds no slot); keeps pid and
	// counters for the summing reader and the next claimer.
	void release();
	// Marks it HANDED_OVER instead, stamped now: this process exits but
	// what it set up keeps forwarding until the next run takes over.
	void hand_over();

private:
	worker_handle(sluice_shm *shm, uint32_t index)
		: shm_(shm), rec_(&shm->workers[index]), index_(index),
		  pid_(__atomic_load_n(&rec_->info.pid, __ATOMIC_RELAXED))
	{
	}

	sluice_shm *shm_ = nullptr;
	sluice_worker *rec_ = nullptr;
	uint32_t index_ = 0;
	uint32_t pid_ = 0; // the owner this handle claimed the record as
	uint64_t seen_ = 0; // our last generation_seen store
	bool applies_what_it_sees_ = true;
};

} // namespace sluice
