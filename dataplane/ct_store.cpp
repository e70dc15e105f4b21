// SPDX-License-Identifier: Apache-2.0
#include "ct_store.h"

#include "error.h"
#include "sys.h"
#include "unique_fd.h"

#include <sluice/shm.h>

#include <fcntl.h>
#include <mntent.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

namespace sluice {
namespace {

constexpr char magic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'C', 'T'};

// The file's size: header and table, rounded up to the file system's page
// (hugetlbfs maps and allocates whole huge pages).
uint64_t file_bytes(int fd, uint64_t table_bytes)
{
	struct statfs fs;
	uint64_t page = 4096;
	if (fstatfs(fd, &fs) == 0 && fs.f_bsize > 0)
		page = static_cast<uint64_t>(fs.f_bsize);
	const uint64_t want = ct_header_bytes + table_bytes;
	return (want + page - 1) / page * page;
}

// Asks the kernel for pages on `socket` for the range (MPOL_PREFERRED):
// best effort, a single-node machine has nothing to choose.
void prefer_node(void *addr, uint64_t bytes, int socket)
{
	if (socket < 0 || socket >= 64)
		return;
	const unsigned long mask = 1ul << socket;
	constexpr int mpol_preferred = 1;
	(void)syscall(SYS_mbind, addr, bytes, mpol_preferred, &mask, 64ul, 0u);
}

// Why a file found at start cannot be worker q's table as it stands ("" if
// it can, maybe after a rehash). st: its size.
std::string unusable(const ct_file_header &h, uint64_t size, const ct_place &place, uint32_t q)
{
	if (size < ct_header_bytes)
		return fmt::format("truncated ({} bytes, less than its header)", size);
	if (std::memcmp(h.magic, magic, sizeof(magic)) != 0)
		return "not a sluice connection table (wrong magic)";
	if (h.layout != ct_layout_version)
		return fmt::format("layout version {}, this build reads {}", h.layout, ct_layout_version);
	if (h.header_bytes != ct_header_bytes || h.entry_bytes != sizeof(sluice_ct_entry) ||
	    h.ways != SLUICE_CT_WAYS)
		return fmt::format("entries of {} bytes in {} ways after {} bytes, this build has {} in {} after {}",
				   h.entry_bytes, h.ways, h.header_bytes, sizeof(sluice_ct_entry), SLUICE_CT_WAYS,
				   ct_header_bytes);
	if (h.worker != q)
		return fmt::format("made for worker {}", h.worker);
	if (h.workers != place.workers)
		return fmt::format("made for {} workers, this run has {} (each flow's worker follows the "
				   "NIC's hash over the worker count)",
				   h.workers, place.workers);
	if (h.n_buckets == 0 || h.n_buckets > sluice_ct_table_buckets_for(UINT32_MAX))
		return fmt::format("bucket count {} out of range", h.n_buckets);
	const uint64_t table = sizeof(sluice_ct_table) + uint64_t(h.n_buckets) * sizeof(sluice_ct_bucket);
	if (h.table_bytes != table)
		return fmt::format("header says {} table bytes for {} buckets, which take {}", h.table_bytes,
				   h.n_buckets, table);
	if (size < ct_header_bytes + table)
		return fmt::format("truncated ({} bytes, its {} buckets take {})", size, h.n_buckets,
				   ct_header_bytes + table);
	return "";
}

// Maps fd's `bytes` read-write.
void *map_file(int fd, uint64_t bytes, const std::string &path)
{
	void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		throw error("{}: mmap of {} bytes: {}", path, bytes, errno_text(errno));
	return p;
}

// Locks fd for this process; says who holds it if another does.
void lock_file(int fd, const std::string &path)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return;
	const int err = errno;
	ct_file_header h{};
	if (err != EWOULDBLOCK)
		throw error("{}: locking it: {}", path, errno_text(err));
	if (pread(fd, &h, sizeof(h), 0) == sizeof(h) && std::memcmp(h.magic, magic, sizeof(magic)) == 0 &&
	    h.state == ct_file_state::in_use && h.pid > 0)
		throw error("{}: in use by another sluice-dpdk (pid {}): one dataplane per segment and port",
			    path, h.pid);
	throw error("{}: locked by another process: one dataplane per segment and port", path);
}

// Sizes fd for a table of `entries` and reserves its pages, so that running
// out of huge pages or /dev/shm is this one line, not a SIGBUS on first
// touch. Returns the mapped bytes.
uint64_t size_file(int fd, uint32_t entries, const std::string &path)
{
	const uint64_t bytes = file_bytes(fd, sluice_ct_table_bytes(entries));
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0)
		throw error("{}: sizing it to {} bytes: {}", path, bytes, errno_text(errno));
	int err = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
	if (err && err != EOPNOTSUPP && err != EINVAL)
		throw error("{}: reserving {} MiB for the connection table: {} (lower --ct-entries, or "
			    "give --ct-dir a file system with room)",
			    path, (bytes + (1u << 20) - 1) >> 20, errno_text(err));
	return bytes;
}

void write_header(ct_file_header *h, uint32_t entries, uint32_t q, uint32_t workers)
{
	std::memset(h, 0, sizeof(*h));
	h->layout = ct_layout_version;
	h->header_bytes = ct_header_bytes;
	h->entry_bytes = sizeof(sluice_ct_entry);
	h->ways = SLUICE_CT_WAYS;
	h->n_buckets = sluice_ct_table_buckets_for(entries);
	h->worker = q;
	h->workers = workers;
	h->table_bytes = sluice_ct_table_bytes(entries);
	h->state = ct_file_state::in_use;
	h->pid = getpid();
	// The magic last: a file cut short while being made is never ours.
	std::memcpy(h->magic, magic, sizeof(magic));
}

} // namespace

std::string ct_file_path(const ct_place &place, uint32_t q)
{
	return fmt::format("{}/{}.{}", place.dir, place.stem, q);
}

void ct_scrub(sluice_ct_table *t, uint32_t now_s, ct_found &found)
{
	for (uint32_t bi = 0; bi < t->n_buckets; bi++) {
		for (int w = 0; w < SLUICE_CT_WAYS; w++) {
			const sluice_ct_entry &e = t->buckets[bi].way[w];
			if (!sluice_ct_way_sound(t, bi, w) || e.vip_id >= SLUICE_MAX_VIPS ||
			    e.backend_id >= SLUICE_MAX_BACKENDS) {
				sluice_ct_clear_way(t, bi, w);
				found.invalid++;
			} else if (e.state == SLUICE_CT_FREE) {
				continue;
			} else if (sluice_ct_expired(&e, now_s, &t->to)) {
				sluice_ct_clear_way(t, bi, w);
				found.expired++;
			} else {
				found.kept++;
			}
		}
	}
}

ct_file ct_file::open(const ct_place &place, uint32_t q, uint64_t secret, int socket, uint32_t now_s)
{
	ct_file f;
	f.path_ = ct_file_path(place, q);
	unique_fd fd{::open(f.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)};
	if (fd.fd < 0)
		throw error("{}: {} (--ct-dir)", f.path_, errno_text(errno));
	lock_file(fd.fd, f.path_);
	struct stat st;
	if (fstat(fd.fd, &st) != 0)
		throw error("{}: {}", f.path_, errno_text(errno));
	if (!S_ISREG(st.st_mode))
		throw error("{}: not a regular file", f.path_);
	// /dev/shm is anyone's to write in: a file another user made (or may
	// still write) is never mapped, whatever it holds, since it carries
	// its own hash key and would steer flows as its writer pleases.
	if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)))
		throw error("{}: owned by uid {} with mode {:o}, not this process's (uid {}) and private: "
			    "refusing it (remove it, or give --ct-dir a directory only sluice-dpdk's user "
			    "writes)",
			    f.path_, st.st_uid, st.st_mode & 07777, geteuid());
	const uint64_t size = static_cast<uint64_t>(st.st_size);

	ct_file_header old{};
	std::string why;
	if (place.fresh)
		why = size ? "--ct-fresh" : "";
	else if (size == 0)
		why = "";
	else if (pread(fd.fd, &old, sizeof(old), 0) != static_cast<ssize_t>(sizeof(old)))
		why = fmt::format("truncated ({} bytes, less than its header)", size);
	else
		why = unusable(old, size, place, q);
	const bool reuse = size != 0 && why.empty() && !place.fresh;
	const uint32_t want_buckets = sluice_ct_table_buckets_for(place.entries);

	if (reuse && old.n_buckets != want_buckets) {
		// Another --ct-entries: rehash the old entries into a new file of
		// the new size, then put it in the old one's place.
		const std::string tmp = f.path_ + ".new";
		unique_fd nfd{::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)};
		if (nfd.fd < 0)
			throw error("{}: {}", tmp, errno_text(errno));
		lock_file(nfd.fd, tmp);
		const uint64_t old_bytes = ct_header_bytes + old.table_bytes;
		void *om = map_file(fd.fd, old_bytes, f.path_);
		auto *ot = reinterpret_cast<sluice_ct_table *>(static_cast<char *>(om) + ct_header_bytes);
		const uint64_t bytes = size_file(nfd.fd, place.entries, tmp);
		void *nm = map_file(nfd.fd, bytes, tmp);
		prefer_node(nm, bytes, socket);
		auto *nt = reinterpret_cast<sluice_ct_table *>(static_cast<char *>(nm) + ct_header_bytes);
		sluice_ct_table_init(nt, place.entries, &place.timeouts, ot->secret);
		ot->to = place.timeouts;
		ot->n_buckets = old.n_buckets; // the header's, checked above, not the table's own word
		ct_found scrubbed;
		ct_scrub(ot, now_s, scrubbed);
		uint64_t moved = 0, lost = 0;
		for (uint32_t bi = 0; bi < ot->n_buckets; bi++) {
			for (int w = 0; w < SLUICE_CT_WAYS; w++) {
				const sluice_ct_entry &e = ot->buckets[bi].way[w];
				if (e.state == SLUICE_CT_FREE)
					continue;
				const uint32_t h = sluice_ct_hash(&e.key, nt->secret);
				sluice_ct_entry *n = sluice_ct_insert(sluice_ct_table_bucket(nt, h), &e.key,
								      sluice_ct_tag(h), e.backend_id, e.vip_id,
								      e.state, e.last_seen_s, &nt->to, nullptr);
				// A smaller table may lack room: its bucket keeps what fits.
				if (n)
					moved++;
				else
					lost++;
			}
		}
		munmap(om, old_bytes);
		write_header(static_cast<ct_file_header *>(nm), place.entries, q, place.workers);
		if (rename(tmp.c_str(), f.path_.c_str()) != 0) {
			munmap(nm, bytes);
			throw error("{}: replacing it with its rehashed table: {}", f.path_, errno_text(errno));
		}
		f.fd_ = nfd.take();
		f.map_ = nm;
		f.map_bytes_ = bytes;
		f.header_ = static_cast<ct_file_header *>(nm);
		f.table_ = nt;
		f.found_ = scrubbed;
		// What the new table holds is re-counted: a full bucket keeps what fits.
		f.found_.kept = 0;
		ct_found recount;
		ct_scrub(nt, now_s, recount);
		f.found_.kept = recount.kept;
		f.found_.how = fmt::format("rehashed from {} to {} entries ({} moved{})",
					   uint64_t(old.n_buckets) * SLUICE_CT_WAYS, sluice_ct_table_entries(nt), moved,
					   lost ? fmt::format(", {} did not fit", lost) : "");
		return f;
	}

	if (reuse) {
		const uint64_t bytes = ct_header_bytes + old.table_bytes;
		void *m = map_file(fd.fd, bytes, f.path_);
		f.fd_ = fd.take();
		f.map_ = m;
		f.map_bytes_ = bytes;
		f.header_ = static_cast<ct_file_header *>(m);
		f.table_ = reinterpret_cast<sluice_ct_table *>(static_cast<char *>(m) + ct_header_bytes);
		// The header's bucket count was checked against the file's size;
		// the table's own word is only trusted once equal to it.
		f.table_->n_buckets = old.n_buckets;
		f.table_->to = place.timeouts;
		f.found_.how = old.state == ct_file_state::clean
				       ? "re-attached after a clean stop"
				       : fmt::format("re-attached after pid {} stopped without closing it", old.pid);
		ct_scrub(f.table_, now_s, f.found_);
		f.header_->state = ct_file_state::in_use;
		f.header_->pid = getpid();
		return f;
	}

	const uint64_t bytes = size_file(fd.fd, place.entries, f.path_);
	void *m = map_file(fd.fd, bytes, f.path_);
	prefer_node(m, bytes, socket);
	f.fd_ = fd.take();
	f.map_ = m;
	f.map_bytes_ = bytes;
	f.header_ = static_cast<ct_file_header *>(m);
	f.table_ = reinterpret_cast<sluice_ct_table *>(static_cast<char *>(m) + ct_header_bytes);
	sluice_ct_table_init(f.table_, place.entries, &place.timeouts, secret);
	write_header(f.header_, place.entries, q, place.workers);
	f.found_.how = why.empty() ? "new" : fmt::format("new: the one there was {}", why);
	return f;
}

ct_file::ct_file(ct_file &&other) noexcept
	: fd_(std::exchange(other.fd_, -1)), map_(std::exchange(other.map_, nullptr)),
	  map_bytes_(std::exchange(other.map_bytes_, 0)), header_(std::exchange(other.header_, nullptr)),
	  table_(std::exchange(other.table_, nullptr)), found_(std::move(other.found_)),
	  path_(std::move(other.path_))
{
}

ct_file &ct_file::operator=(ct_file &&other) noexcept
{
	if (this != &other) {
		release();
		fd_ = std::exchange(other.fd_, -1);
		map_ = std::exchange(other.map_, nullptr);
		map_bytes_ = std::exchange(other.map_bytes_, 0);
		header_ = std::exchange(other.header_, nullptr);
		table_ = std::exchange(other.table_, nullptr);
		found_ = std::move(other.found_);
		path_ = std::move(other.path_);
	}
	return *this;
}

ct_file::~ct_file()
{
	release();
}

void ct_file::release()
{
	if (header_) {
		header_->state = ct_file_state::clean;
		header_->pid = 0;
	}
	if (map_)
		munmap(map_, map_bytes_);
	if (fd_ >= 0)
		::close(fd_);
	fd_ = -1;
	map_ = nullptr;
	header_ = nullptr;
	table_ = nullptr;
}

std::string default_ct_dir(uint64_t bytes)
{
	FILE *mounts = setmntent("/proc/mounts", "r");
	std::string found;
	if (mounts) {
		while (mntent *m = getmntent(mounts)) {
			if (std::strcmp(m->mnt_type, "hugetlbfs") != 0)
				continue;
			struct statfs fs;
			if (statfs(m->mnt_dir, &fs) != 0 || fs.f_type != HUGETLBFS_MAGIC || fs.f_bsize <= 0)
				continue;
			// Free huge pages in this mount's size: enough for the table?
			// (statfs counts a mount's size= limit; the pool is global.)
			const uint64_t page = static_cast<uint64_t>(fs.f_bsize);
			const uint64_t need = (ct_header_bytes + bytes + page - 1) / page;
			const std::string pool = fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
							     page >> 10);
			FILE *f = std::fopen(pool.c_str(), "r");
			unsigned long free_pages = 0;
			if (f) {
				if (std::fscanf(f, "%lu", &free_pages) != 1)
					free_pages = 0;
				std::fclose(f);
			}
			if (free_pages >= need && access(m->mnt_dir, W_OK) == 0) {
				found = m->mnt_dir;
				break;
			}
		}
		endmntent(mounts);
	}
	return found.empty() ? "/dev/shm" : found;
}

unsigned remove_surplus_ct_files(const ct_place &place)
{
	unsigned removed = 0;
	for (uint32_t q = place.workers; q < SLUICE_MAX_WORKERS; q++) {
		std::error_code ec;
		if (std::filesystem::remove(ct_file_path(place, q), ec))
			removed++;
	}
	return removed;
}

} // namespace sluice
