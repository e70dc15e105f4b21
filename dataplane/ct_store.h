// SPDX-License-Identifier: Apache-2.0
// Each worker's connection table in a file that outlives the process, so a
// restarted sluice-dpdk (an upgrade, a crash) goes on with every flow where
// it was, even one whose backend Maglev would now pick differently.
//
// One file per worker, <dir>/sluice-ct.<segment>.<port>.<worker>, in a
// hugetlbfs mount (2 MiB pages, as rte_zmalloc gave before) or, where none
// has pages free, /dev/shm. A 4 KiB header (ct_file_header) comes first:
// magic, layout version, entry size, ways, bucket count, the worker index
// and count, and whether the last process stopped cleanly; the table
// (struct sluice_ct_table, conntrack.h) follows. The file is locked
// (flock) while mapped: one process per table.
//
// On start, per file:
//  - none, --ct-fresh, or one that cannot be this table (not ours, another
//    layout version, another worker index or count, truncated): a new,
//    empty table, and a line saying why (a flow's worker follows the NIC's
//    RSS over the worker count, so another count leaves each flow's entry
//    in the wrong table);
//  - another --ct-entries: its entries rehashed into a table of the new
//    size (same worker count: each flow stays on its worker);
//  - else re-attached. Either way every way is read through
//    sluice_ct_way_sound() first: whatever a crash, a full disk or a stray
//    write left, an entry that insert could not have written is cleared and
//    counted, expired ones are freed, and the rest is kept. A kept entry's
//    backend is checked against the snapshot on every hit (decide.h), as
//    always.
#pragma once

#include <sluice/conntrack.h>

#include <cstdint>
#include <string>

namespace sluice {

// The file's first bytes. Bump ct_layout_version when it or struct
// sluice_ct_table / sluice_ct_entry change.
inline constexpr uint32_t ct_layout_version = 1;
inline constexpr uint32_t ct_header_bytes = 4096;

enum class ct_file_state : uint32_t {
	in_use = 1, // mapped by pid; found so at start: that process did not stop cleanly
	clean = 2,  // its process unmapped it on an orderly stop
};

struct ct_file_header {
	char magic[8]; // "SLUICECT"
	uint32_t layout;
	uint32_t header_bytes; // where the table starts
	uint32_t entry_bytes;
	uint32_t ways;
	uint32_t n_buckets;
	uint32_t worker;
	uint32_t workers;
	ct_file_state state;
	int32_t pid;
	uint32_t pad;
	uint64_t table_bytes;
};

// Where this run's tables are and what they must be.
struct ct_place {
	std::string dir;  // --ct-dir
	std::string stem; // sluice-ct.<segment>.<port>
	uint32_t workers = 1;
	uint32_t entries = 0;
	sluice_ct_timeouts timeouts = sluice_ct_default_timeouts();
	bool fresh = false; // --ct-fresh
};

// What a start did with a worker's file, for its one line.
struct ct_found {
	std::string how; // "re-attached after a clean stop", "new: ...", ...
	uint64_t kept = 0, expired = 0, invalid = 0;
};

class ct_file {
public:
	// Worker q's table, made, rehashed or re-attached as above. secret keys
	// a new table (a re-attached one keeps its own); socket: the NUMA node
	// its pages should come from (-1: any); now_s: the worker clock.
	static ct_file open(const ct_place &place, uint32_t q, uint64_t secret, int socket, uint32_t now_s);

	ct_file() = default;
	ct_file(ct_file &&other) noexcept;
	ct_file &operator=(ct_file &&other) noexcept;
	ct_file(const ct_file &) = delete;
	ct_file &operator=(const ct_file &) = delete;
	// Marks the table clean and unmaps it: only an orderly stop runs this.
	~ct_file();

	sluice_ct_table *table() const { return table_; }
	const ct_found &found() const { return found_; }
	const std::string &path() const { return path_; }

private:
	void release();

	int fd_ = -1;
	void *map_ = nullptr;
	uint64_t map_bytes_ = 0;
	ct_file_header *header_ = nullptr;
	sluice_ct_table *table_ = nullptr;
	ct_found found_;
	std::string path_;
};

// --ct-dir's default: the first hugetlbfs mount with room for `bytes`
// (fallocate tells), else /dev/shm.
std::string default_ct_dir(uint64_t bytes);

// Removes <dir>/<stem>.<q> for q >= workers: a run with fewer workers than
// the last. Returns how many.
unsigned remove_surplus_ct_files(const ct_place &place);

// The file's path for worker q.
std::string ct_file_path(const ct_place &place, uint32_t q);

// Clears what sluice_ct_way_sound() refuses, frees what expired by now_s,
// and counts (found's kept, expired, invalid).
void ct_scrub(sluice_ct_table *t, uint32_t now_s, ct_found &found);

} // namespace sluice
