// SPDX-License-Identifier: Apache-2.0
#include "shm_segment.h"

#include "error.h"
#include "ownership.h"
#include "unique_fd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>

namespace sluice {

namespace {

constexpr uint64_t ns_per_ms = 1000000;

// A worker record's pid while a claimer fills it in: a lock held for a few
// stores, so that two claimers of one dead record (including two threads of
// one process, whose pids are equal) cannot both take it. Never a real pid:
// pid_max is at most 2^22.
constexpr uint32_t pid_claiming = SLUICE_WORKER_PID_CLAIMING;

// A record's packet counts (node, VIP and backend counters), zeroed while
// its claim lock is held, when readers skip it.
void zero_counts(sluice_worker &rec)
{
	std::memset(static_cast<void *>(rec.counters), 0, sizeof(rec.counters));
	std::memset(static_cast<void *>(rec.vip), 0, sizeof(rec.vip));
	std::memset(static_cast<void *>(rec.backend), 0, sizeof(rec.backend));
}

// How long a record whose pid no longer exists may stay silent before a
// claimer takes it. kill(pid, 0) alone is not trusted: in another pid
// namespace, or for tests' simulated workers, a live owner's pid can look
// absent; a live owner still heartbeats every housekeeping tick.
constexpr uint64_t esrch_grace_ns = 500 * ns_per_ms;

// Polling interval of attach_wait(): a dataplane started with sluiced sees
// the segment within one tick, and 20 opens a second cost nothing.
constexpr std::chrono::milliseconds attach_poll{50};

std::string dev_path(const std::string &name) { return "/dev/shm/" + name; }

// shm_open wants "/NAME" with no other slash; accept "NAME" or "/NAME".
std::string shm_name(const std::string &name)
{
	std::string bare = name.starts_with('/') ? name.substr(1) : name;
	if (bare.empty() || bare.find('/') != std::string::npos || bare.size() > NAME_MAX - 1 ||
	    bare == "." || bare == "..")
		throw error("shm segment name \"{}\": must be one file name under /dev/shm", name);
	return "/" + bare;
}

std::string bare_name(const std::string &name) { return shm_name(name).substr(1); }

sluice_shm_header expected_header()
{
	sluice_shm_header h;
	sluice_shm_header_init(&h);
	return h;
}

enum class header_state { valid, uninitialised };

// Checks an existing segment against this build; throws the one line a user
// reads when it is of another kind. `who` is "this sluiced" or "this
// sluice-dpdk"; `remedy` what that user should do about it.
header_state check_header(int fd, const std::string &path, const char *who, const char *remedy)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		throw error("shm segment {}: {}", path, errno_text(errno));
	sluice_shm_header h;
	std::memset(&h, 0, sizeof(h));
	if (st.st_size > 0 && pread(fd, &h, sizeof(h), 0) < 0)
		throw error("shm segment {}: {}", path, errno_text(errno));
	// The creator writes the magic last: zero means it is still being
	// created (or its creator died doing so), not that it is foreign.
	if ((size_t)st.st_size < sizeof(h) || h.magic == 0)
		return header_state::uninitialised;

	const sluice_shm_header want = expected_header();
	if (h.magic != want.magic)
		throw error("shm segment {} has magic {:#018x}, {} expects {:#018x}: not a sluice "
			    "segment? ({})",
			    path, h.magic, who, want.magic, remedy);
	// The version before the sizes: a segment of another version usually
	// has other sizes too, and the version is what tells the user why.
	if (h.abi_version != want.abi_version)
		throw error("shm segment {} has ABI version {}, {} speaks {} ({})", path,
			    h.abi_version, who, want.abi_version, remedy);
	struct field {
		const char *name;
		uint64_t have, want;
	};
	const field fields[] = {
		{"header_size", h.header_size, want.header_size},
		{"segment_size", h.segment_size, want.segment_size},
		{"max_vips", h.max_vips, want.max_vips},
		{"max_backends", h.max_backends, want.max_backends},
		{"max_workers", h.max_workers, want.max_workers},
		{"snapshot_slots", h.snapshot_slots, want.snapshot_slots},
		{"ring_pool", h.ring_pool, want.ring_pool},
		{"counter_slots", h.counter_slots, want.counter_slots},
	};
	for (const field &f : fields)
		if (f.have != f.want)
			throw error("shm segment {} (ABI version {}) has {} {}, {} expects {} ({})",
				    path, h.abi_version, f.name, f.have, who, f.want, remedy);
	if ((uint64_t)st.st_size != sizeof(sluice_shm))
		throw error("shm segment {} is {} bytes, {} expects {} ({})", path,
			    (uint64_t)st.st_size, who, sizeof(sluice_shm), remedy);
	return header_state::valid;
}

sluice_shm *map_segment(int fd, const std::string &path)
{
	void *p = mmap(nullptr, sizeof(sluice_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		throw error("shm segment {}: mmap of {} bytes: {}", path, sizeof(sluice_shm),
			    errno_text(errno));
	return static_cast<sluice_shm *>(p);
}

// Sizes a new (or abandoned, never finished) segment and writes its header.
// ftruncate on tmpfs reserves nothing: pages are backed once written.
sluice_shm *initialise(int fd, const std::string &path)
{
	// tmpfs lets a file be sized past its free space and then kills the
	// writer with SIGBUS on the first page it cannot back: refuse up front.
	struct statvfs vfs;
	if (fstatvfs(fd, &vfs) == 0) {
		uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
		if (free_bytes < sizeof(sluice_shm))
			throw error("shm segment {}: needs {} MiB but its filesystem has {} MiB free "
				    "(enlarge /dev/shm)",
				    path, sizeof(sluice_shm) >> 20, free_bytes >> 20);
	}
	// Through zero so that whatever a crashed creator left is gone.
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, sizeof(sluice_shm)) != 0)
		throw error("shm segment {}: sizing to {} bytes: {}", path, sizeof(sluice_shm),
			    errno_text(errno));
	// The umask may have taken the group bits; dataplanes run as the group.
	(void)fchmod(fd, 0660);
	sluice_shm *shm = map_segment(fd, path);
	sluice_shm_header h = expected_header();
	h.magic = 0;
	std::memcpy(&shm->hdr, &h, sizeof(h));
	// Last, with release: a process that sees the magic sees the rest.
	__atomic_store_n(&shm->hdr.magic, SLUICE_SHM_MAGIC, __ATOMIC_RELEASE);
	return shm;
}

const char *program_name() { return program_invocation_short_name; }

// attach() without throwing for the conditions attach_wait() waits out
// (missing, still being created): those come back as *retry_reason.
std::optional<shm_segment> try_attach(const std::string &name, std::string *retry_reason,
				      shm_segment (*make)(sluice_shm *, std::string))
{
	const std::string bare = bare_name(name);
	const std::string path = dev_path(bare);
	unique_fd fd(shm_open(shm_name(name).c_str(), O_RDWR, 0));
	if (fd.fd < 0) {
		if (errno == ENOENT) {
			*retry_reason = fmt::format("no shm segment {}: is sluiced running with --shm {}?",
						    path, bare);
			return std::nullopt;
		}
		throw error("shm segment {}: {}", path, errno_text(errno));
	}
	// The dataplanes run as root: a segment another user could write
	// would let them choose where traffic goes.
	require_trusted(fd.fd, "shm segment", path, segment_reader_rule(),
			"remove it and restart sluiced");
	const std::string who = std::string("this ") + program_name();
	if (check_header(fd.fd, path, who.c_str(), "run sluiced and the dataplanes from one release") ==
	    header_state::uninitialised) {
		*retry_reason = fmt::format("shm segment {} is not initialised yet: is sluiced still "
					    "starting?",
					    path);
		return std::nullopt;
	}
	return make(map_segment(fd.fd, path), bare);
}

} // namespace

// ---------------------------------------------------------------- shm_segment

shm_segment::shm_segment(shm_segment &&other) noexcept
	: shm_(std::exchange(other.shm_, nullptr)), name_(std::move(other.name_)),
	  adopted_(other.adopted_), lock_fd_(std::exchange(other.lock_fd_, -1))
{
}

shm_segment &shm_segment::operator=(shm_segment &&other) noexcept
{
	if (this != &other) {
		if (shm_)
			munmap(shm_, sizeof(sluice_shm));
		if (lock_fd_ >= 0)
			close(lock_fd_);
		shm_ = std::exchange(other.shm_, nullptr);
		name_ = std::move(other.name_);
		adopted_ = other.adopted_;
		lock_fd_ = std::exchange(other.lock_fd_, -1);
	}
	return *this;
}

shm_segment::~shm_segment()
{
	if (shm_)
		munmap(shm_, sizeof(sluice_shm));
	if (lock_fd_ >= 0)
		close(lock_fd_);
}

void shm_segment::check_name(const std::string &name) { shm_name(name); }

shm_segment shm_segment::create_or_adopt(const std::string &name)
{
	const std::string sname = shm_name(name);
	const std::string bare = sname.substr(1);
	const std::string path = dev_path(bare);
	// Open first, create if missing; retried because another process may
	// create or remove it between the two calls.
	for (int attempt = 0; attempt < 8; attempt++) {
		bool created = false;
		int raw = shm_open(sname.c_str(), O_RDWR, 0);
		if (raw < 0) {
			if (errno != ENOENT)
				throw error("shm segment {}: {}", path, errno_text(errno));
			raw = shm_open(sname.c_str(), O_RDWR | O_CREAT | O_EXCL, 0660);
			if (raw < 0) {
				if (errno == EEXIST)
					continue;
				throw error("shm segment {}: create: {}", path, errno_text(errno));
			}
			created = true;
		}
		unique_fd fd(raw);
		// Before reading a byte of it: a segment someone else made first
		// (an empty file, mode 0666) would hand them our backends and
		// next-hop MACs.
		if (!created)
			require_trusted(fd.fd, "shm segment", path, own_rule(),
					"remove it and start sluiced again");
		// One writer for the segment's lifetime, held until this process
		// exits (the kernel drops it on a crash). Taken before the header
		// is looked at: two sluiced started together must not both decide
		// to initialise it. A failure here never removes the segment: the
		// holder may have just created it.
		if (flock(fd.fd, LOCK_EX | LOCK_NB) != 0) {
			if (errno != EWOULDBLOCK)
				throw error("shm segment {}: lock: {}", path, errno_text(errno));
			uint32_t pid = 0;
			(void)!pread(fd.fd, &pid, sizeof(pid), SLUICE_OFFSETOF(sluice_shm, ctl.writer_pid));
			throw error("shm segment {} is held by another sluiced{}: one sluiced per segment "
				    "(stop it, or give this one another --shm)",
				    path, pid ? fmt::format(" (pid {})", pid) : std::string());
		}
		try {
			const bool adopt = !created && check_header(fd.fd, path, "this sluiced",
								   "stop the dataplanes and remove it") ==
								      header_state::valid;
			// New, or a creator died before writing the magic: nothing
			// in it is worth keeping, and no dataplane attaches to it.
			sluice_shm *shm = adopt ? map_segment(fd.fd, path) : initialise(fd.fd, path);
			return shm_segment(shm, bare, adopt, std::exchange(fd.fd, -1));
		} catch (...) {
			// Leave no half-made segment for a dataplane to wait on.
			if (created)
				shm_unlink(sname.c_str());
			throw;
		}
	}
	throw error("shm segment {}: keeps appearing and disappearing: is another sluiced "
		    "starting with --shm {}?",
		    path, bare);
}

shm_segment shm_segment::attach(const std::string &name)
{
	std::string reason;
	auto make = [](sluice_shm *shm, std::string n) { return shm_segment(shm, std::move(n), true); };
	std::optional<shm_segment> seg = try_attach(name, &reason, make);
	if (!seg)
		throw error(reason);
	return std::move(*seg);
}

shm_segment shm_segment::attach_wait(const std::string &name, std::chrono::milliseconds timeout)
{
	auto make = [](sluice_shm *shm, std::string n) { return shm_segment(shm, std::move(n), true); };
	const auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		std::string reason;
		std::optional<shm_segment> seg = try_attach(name, &reason, make);
		if (seg)
			return std::move(*seg);
		auto now = std::chrono::steady_clock::now();
		if (now >= deadline)
			throw error("{} (gave up after {} ms)", reason, timeout.count());
		std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
			attach_poll, deadline - now));
	}
}

void shm_segment::unlink(const std::string &name)
{
	if (shm_unlink(shm_name(name).c_str()) != 0 && errno != ENOENT)
		throw error("shm segment {}: remove: {}", dev_path(bare_name(name)), errno_text(errno));
}

// ------------------------------------------------------------ snapshot_writer

snapshot_writer::snapshot_writer(sluice_shm *shm, std::chrono::milliseconds worker_timeout)
	: shm_(shm), timeout_ns_((uint64_t)worker_timeout.count() * ns_per_ms)
{
	// Two writers would fill the same free slot at once. A writer is still
	// there if it heartbeats and its pid exists (both: the pid alone may be
	// a stranger's after a restart in another pid namespace).
	const uint32_t pid = __atomic_load_n(&shm_->ctl.writer_pid, __ATOMIC_RELAXED);
	const uint64_t hb = __atomic_load_n(&shm_->ctl.writer_heartbeat_ns, __ATOMIC_RELAXED);
	const uint64_t now = monotonic_ns();
	const bool fresh = hb >= now || now - hb <= timeout_ns_;
	if (pid != 0 && pid != (uint32_t)getpid() && pid <= (uint32_t)INT_MAX && fresh &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM))
		throw error("another sluiced (pid {}) is publishing to this shm segment", pid);

	const uint64_t active = __atomic_load_n(&shm_->ctl.active, __ATOMIC_ACQUIRE);
	generation_ = sluice_active_generation(active);
	// A writer that died between filling a slot and switching `active` left
	// a slot with a generation above the active one; never reuse a number.
	next_ = generation_;
	for (uint32_t s = 0; s < SLUICE_SNAPSHOT_SLOTS; s++)
		next_ = std::max(next_, __atomic_load_n(&shm_->ctl.slot_generation[s], __ATOMIC_RELAXED));
	heartbeat();
}

void snapshot_writer::heartbeat()
{
	__atomic_store_n(&shm_->ctl.writer_pid, (uint32_t)getpid(), __ATOMIC_RELAXED);
	__atomic_store_n(&shm_->ctl.writer_heartbeat_ns, monotonic_ns(), __ATOMIC_RELAXED);
}

bool snapshot_writer::worker_live(const sluice_worker_info &info, uint64_t now) const
{
	if (__atomic_load_n(&info.state, __ATOMIC_ACQUIRE) != SLUICE_WORKER_LIVE)
		return false;
	// Acquire: a claimer stores generation_seen = 0 before the heartbeat
	// that makes its record count again.
	const uint64_t hb = __atomic_load_n(&info.heartbeat_ns, __ATOMIC_ACQUIRE);
	// A heartbeat stored after we read the clock is fresh, not 584 years old.
	return hb >= now || now - hb <= timeout_ns_;
}

std::vector<uint32_t> snapshot_writer::live_workers() const
{
	std::vector<uint32_t> live;
	const uint64_t now = monotonic_ns();
	for (uint32_t i = 0; i < SLUICE_MAX_WORKERS; i++)
		if (worker_live(shm_->workers[i].info, now))
			live.push_back(i);
	return live;
}

int snapshot_writer::free_slot() const
{
	// Pairs with the fence in worker_handle::acquire() (and claim()):
	// either a worker's second look at `active` sees our last publish (and
	// it moves on), or we see here the generation it named. Without it a
	// store buffer could hide a worker that already reads the slot we are
	// about to reuse.
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	const uint64_t now = monotonic_ns();
	uint64_t named[SLUICE_MAX_WORKERS];
	uint32_t n_named = 0;
	for (uint32_t i = 0; i < SLUICE_MAX_WORKERS; i++) {
		const sluice_worker_info &info = shm_->workers[i].info;
		if (!worker_live(info, now))
			continue;
		// Acquire: the worker's reads of a slot happen before it names a
		// later generation; our writes to that slot come after this.
		named[n_named++] = __atomic_load_n(&info.generation_seen, __ATOMIC_ACQUIRE);
	}

	const uint64_t active = __atomic_load_n(&shm_->ctl.active, __ATOMIC_RELAXED);
	int best = -1;
	uint64_t best_gen = UINT64_MAX;
	for (uint32_t s = 0; s < SLUICE_SNAPSHOT_SLOTS; s++) {
		if (active != SLUICE_ACTIVE_NONE && s == sluice_active_slot(active))
			continue;
		const uint64_t gen = __atomic_load_n(&shm_->ctl.slot_generation[s], __ATOMIC_RELAXED);
		// A slot is read only by a worker that names its generation: one
		// that names another has moved past it (or, never having seen it,
		// can only find the active one). A slot never published (0) was
		// never reachable through `active`.
		bool in_use = false;
		for (uint32_t w = 0; w < n_named && gen != 0; w++)
			in_use = in_use || named[w] == gen;
		if (in_use)
			continue;
		// The oldest free slot first.
		if (best < 0 || gen < best_gen) {
			best = (int)s;
			best_gen = gen;
		}
	}
	return best;
}

std::string snapshot_writer::holders() const
{
	const uint64_t now = monotonic_ns();
	std::string out;
	for (uint32_t i = 0; i < SLUICE_MAX_WORKERS; i++) {
		const sluice_worker_info &info = shm_->workers[i].info;
		if (!worker_live(info, now))
			continue;
		const uint64_t seen = __atomic_load_n(&info.generation_seen, __ATOMIC_ACQUIRE);
		if (seen == generation_)
			continue;
		out += fmt::format("{}\"{}\" (pid {}) at generation {}", out.empty() ? "" : ", ",
				   std::string(info.name, strnlen(info.name, sizeof(info.name))),
				   __atomic_load_n(&info.pid, __ATOMIC_RELAXED), seen);
	}
	return out;
}

uint64_t snapshot_writer::publish(const std::function<void(sluice_snapshot &)> &fill)
{
	// A worker holds only the slot it names, so with four slots a free one
	// exists unless three live workers each name a different older
	// generation and none moves on. Dead workers stop counting after the
	// timeout; a live one that never moves on (a stalled dataplane) is
	// waited for at most that long too, then the publish fails naming it,
	// rather than holding every caller (API, health, metrics) forever. A
	// few yields first, since a worker's burst lasts microseconds, then
	// sleeps backing off from 50 us to 1 ms (a scheduler tick).
	int slot;
	std::chrono::microseconds pause{50};
	const uint64_t give_up = monotonic_ns() + timeout_ns_;
	for (int tries = 0; (slot = free_slot()) < 0; tries++) {
		if (tries < 16) {
			std::this_thread::yield();
			continue;
		}
		if (monotonic_ns() > give_up)
			throw error("no snapshot slot came free in {} ms: held by {}, which do not move on "
				    "(stalled dataplanes? see `sluicectl status`)",
				    timeout_ns_ / ns_per_ms, holders());
		heartbeat();
		std::this_thread::sleep_for(pause);
		pause = std::min(pause * 2, std::chrono::microseconds{1000});
	}

	sluice_snapshot &s = shm_->slots[slot];
	// The slot holds a snapshot several generations old: a filler that
	// writes only the VIPs and backends present must not inherit the rest.
	// The rings stay: only ring_used entries count, and zeroing 64 MB would
	// back every tmpfs page of the pool.
	std::memset(&s, 0, SLUICE_OFFSETOF(sluice_snapshot, rings));
	fill(s);

	// The checksum walks rings[0 .. ring_used): a count past the pool
	// would read beyond the slot.
	if (s.hdr.ring_used > SLUICE_RING_POOL || s.hdr.vip_count > SLUICE_MAX_VIPS ||
	    s.hdr.backend_count > SLUICE_MAX_BACKENDS)
		throw error("snapshot has {} VIPs, {} backends, {} ring entries: the shm segment holds "
			    "at most {}, {}, {}",
			    s.hdr.vip_count, s.hdr.backend_count, s.hdr.ring_used, SLUICE_MAX_VIPS,
			    SLUICE_MAX_BACKENDS, SLUICE_RING_POOL);

	const uint64_t gen = next_ + 1;
	s.hdr.generation = gen;
	s.hdr.checksum = sluice_snapshot_checksum(&s);
	s.hdr.published_ns = realtime_ns();
	__atomic_store_n(&shm_->ctl.slot_generation[slot], gen, __ATOMIC_RELAXED);
	// The switch: a worker that loads this (acquire) sees the whole slot.
	__atomic_store_n(&shm_->ctl.active, sluice_active_pack(gen, (uint32_t)slot), __ATOMIC_RELEASE);
	generation_ = next_ = gen;
	heartbeat();
	return gen;
}

// -------------------------------------------------------------- worker_handle

namespace {

// Whether a claimed record's owner is gone. Only the owner moves state to
// LIVE or its heartbeat forward, and a gone owner does neither, so "gone"
// can be re-checked under the claim lock without racing the owner.
bool owner_gone(const sluice_worker_info &info, uint32_t pid, uint64_t now, uint64_t stale_ns)
{
	if (__atomic_load_n(&info.state, __ATOMIC_ACQUIRE) != SLUICE_WORKER_LIVE)
		return true;
	const uint64_t hb = __atomic_load_n(&info.heartbeat_ns, __ATOMIC_ACQUIRE);
	const uint64_t age = hb >= now ? 0 : now - hb;
	if (age > stale_ns)
		return true;
	return age > std::min(stale_ns, esrch_grace_ns) && pid <= (uint32_t)INT_MAX &&
	       kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

} // namespace

worker_handle worker_handle::claim(sluice_shm *shm, uint32_t kind, uint32_t queue,
				   const std::string &name, uint32_t pid,
				   std::chrono::milliseconds stale)
{
	if (pid == 0 || pid == pid_claiming)
		throw error("worker pid {} is not a process id", pid);
	const uint64_t stale_ns = (uint64_t)stale.count() * ns_per_ms;

	// First the record this same worker left (a restart: same kind and
	// name), then free records, then any whose owner is gone. A record's
	// counters belong to its last owner's totals, which the summing reader
	// keeps showing, so taking over a gone owner's record keeps them; and a
	// restarted dataplane shows as one worker in `sluicectl status`, not two.
	for (int pass = 0; pass < 3; pass++) {
		for (uint32_t i = 0; i < SLUICE_MAX_WORKERS; i++) {
			sluice_worker_info &info = shm->workers[i].info;
			uint32_t owner = __atomic_load_n(&info.pid, __ATOMIC_ACQUIRE);
			const bool free_record = owner == 0;
			if (owner == pid_claiming || free_record != (pass == 1))
				continue;
			if (pass == 0 && (info.kind != kind ||
					  std::strncmp(info.name, name.c_str(), sizeof(info.name) - 1) != 0))
				continue;
			// A replay takes no gone dataplane's record: zeroing it
			// (below) would take that dataplane's packets out of the
			// node's totals.
			if (pass == 2 && kind == SLUICE_WORKER_KIND_REPLAY && info.kind != SLUICE_WORKER_KIND_REPLAY)
				continue;
			if (owner != 0 && !owner_gone(info, owner, monotonic_ns(), stale_ns))
				continue;
			if (!__atomic_compare_exchange_n(&info.pid, &owner, pid_claiming, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
				continue;
			// Under the lock: between our look and the CAS the record
			// may have been claimed and released to the same pid.
			if (owner != 0 && !owner_gone(info, owner, monotonic_ns(), stale_ns)) {
				__atomic_store_n(&info.pid, owner, __ATOMIC_RELEASE);
				continue;
			}

			// generation_seen = 0 before the heartbeat: once the writer
			// counts this record again it must not see the last owner's
			// name for a slot (it would keep that slot for nobody); the
			// new owner names its slot in its first acquire().
			__atomic_store_n(&info.generation_seen, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&info.generation_applied, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&info.refused, SLUICE_REFUSED_NONE, __ATOMIC_RELAXED);
			// The last owner's connection counts were of its tables:
			// this record counts nothing until our first sweep is done.
			__atomic_store_n(&info.conn_seq, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&info.conn_sweep_ms, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&info.heartbeat_ns, monotonic_ns(), __ATOMIC_RELEASE);
			// A replay's counts are its own: from zero, and never left
			// to a dataplane that takes its record (readers skip a
			// record while it is being claimed).
			if (kind == SLUICE_WORKER_KIND_REPLAY || info.kind == SLUICE_WORKER_KIND_REPLAY)
				zero_counts(shm->workers[i]);
			info.kind = kind;
			info.queue = queue;
			std::memset(info.name, 0, sizeof(info.name));
			std::memcpy(info.name, name.data(), std::min(name.size(), sizeof(info.name) - 1));
			__atomic_store_n(&info.state, SLUICE_WORKER_LIVE, __ATOMIC_RELEASE);
			// Pairs with the fence in snapshot_writer::free_slot(): our
			// first acquire() comes after this.
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			// Unlock only once LIVE: a claimer that saw our pid with
			// the old STOPPED state would take the record from us.
			__atomic_store_n(&info.pid, pid, __ATOMIC_RELEASE);
			return worker_handle(shm, i);
		}
	}
	throw error("all {} worker records of the shm segment are taken by live workers: too many "
		    "dataplane workers on this segment?",
		    SLUICE_MAX_WORKERS);
}

worker_handle::worker_handle(worker_handle &&other) noexcept
	: shm_(std::exchange(other.shm_, nullptr)), rec_(std::exchange(other.rec_, nullptr)),
	  index_(other.index_), pid_(other.pid_), seen_(other.seen_),
	  applies_what_it_sees_(other.applies_what_it_sees_)
{
}

worker_handle &worker_handle::operator=(worker_handle &&other) noexcept
{
	if (this != &other) {
		release();
		shm_ = std::exchange(other.shm_, nullptr);
		rec_ = std::exchange(other.rec_, nullptr);
		index_ = other.index_;
		pid_ = other.pid_;
		seen_ = other.seen_;
		applies_what_it_sees_ = other.applies_what_it_sees_;
	}
	return *this;
}

void worker_handle::applied(uint64_t generation, uint32_t refused)
{
	__atomic_store_n(&rec_->info.generation_applied, generation, __ATOMIC_RELAXED);
	__atomic_store_n(&rec_->info.refused, refused, __ATOMIC_RELAXED);
}

void worker_handle::adopted(uint64_t generation)
{
	__atomic_store_n(&rec_->info.generation_seen, generation, __ATOMIC_RELEASE);
	__atomic_store_n(&rec_->info.generation_applied, generation, __ATOMIC_RELAXED);
	__atomic_store_n(&rec_->info.refused, SLUICE_REFUSED_NONE, __ATOMIC_RELAXED);
	seen_ = generation;
}

void worker_handle::seen(uint64_t generation)
{
	__atomic_store_n(&rec_->info.generation_seen, generation, __ATOMIC_RELEASE);
	seen_ = generation;
}

void worker_handle::heartbeat()
{
	__atomic_store_n(&rec_->info.heartbeat_ns, monotonic_ns(), __ATOMIC_RELEASE);
}

void worker_handle::hand_over()
{
	if (!rec_)
		return;
	__atomic_store_n(&rec_->info.heartbeat_ns, monotonic_ns(), __ATOMIC_RELEASE);
	__atomic_store_n(&rec_->info.state, SLUICE_WORKER_HANDED_OVER, __ATOMIC_RELEASE);
	shm_ = nullptr;
	rec_ = nullptr;
}

void worker_handle::release()
{
	if (!rec_)
		return;
	if (rec_->info.kind == SLUICE_WORKER_KIND_REPLAY) {
		// A replay that exits leaves nothing behind: no "stopped" worker
		// whose heartbeat ages for ever, no counts. Under the claim lock,
		// as a claimer fills a record (readers skip it meanwhile); only
		// if it is still ours (a claimer may have judged us gone).
		uint32_t owner = pid_;
		if (__atomic_compare_exchange_n(&rec_->info.pid, &owner, pid_claiming, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			zero_counts(*rec_);
			__atomic_store_n(&rec_->info.conn_seq, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&rec_->info.conn_sweep_ms, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&rec_->info.state, SLUICE_WORKER_FREE, __ATOMIC_RELEASE);
			__atomic_store_n(&rec_->info.pid, 0u, __ATOMIC_RELEASE);
			shm_ = nullptr;
			rec_ = nullptr;
			return;
		}
	}
	// Release: every read of a snapshot is done before the writer can see
	// that this record holds nothing.
	__atomic_store_n(&rec_->info.state, SLUICE_WORKER_STOPPED, __ATOMIC_RELEASE);
	shm_ = nullptr;
	rec_ = nullptr;
}

} // namespace sluice
