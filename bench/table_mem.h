// SPDX-License-Identifier: Apache-2.0
// The memory a benchmark's connection table lives in, the same for the
// pipeline (bench_pipeline) and the floor it is compared with (bench_floor):
// anonymous memory in transparent huge pages, as a DPDK deployment has its
// table in hugepages, or in 4 KiB pages (--pages=4k), as sluice-dpdk
// --no-huge has it.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sluice::bench {

// One mapping for every table of the run, grown when a bigger one is
// needed: faulting a GiB into huge pages (compaction included) costs
// seconds, clearing it again a tenth of that. 2 MiB-aligned so the whole
// table can sit in huge pages.
struct table_arena {
	const char *who;
	bool thp = true;
	void *raw = nullptr;
	size_t len = 0;
	void *aligned = nullptr;
	size_t usable = 0;

	void *get(size_t bytes)
	{
		const size_t huge = 2u << 20;
		if (bytes > usable) {
			if (raw)
				munmap(raw, len);
			len = (bytes + 2 * huge - 1) / huge * huge;
			raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (raw == MAP_FAILED) {
				std::fprintf(stderr, "%s: mmap of %zu bytes: %s\n", who, len, std::strerror(errno));
				std::exit(1);
			}
			aligned = reinterpret_cast<void *>((reinterpret_cast<uintptr_t>(raw) + huge - 1) &
							   ~(huge - 1));
			usable = len - huge;
			madvise(aligned, usable, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		}
		std::memset(aligned, 0, bytes); // faulted in here, not in a timed run
		return aligned;
	}

	// --pages=4k | --pages=thp, taken from a benchmark's command line:
	// true if `arg` was one of them.
	bool take_pages_option(const char *arg)
	{
		if (std::strcmp(arg, "--pages=4k") == 0 || std::strcmp(arg, "--pages=thp") == 0) {
			thp = std::strcmp(arg, "--pages=thp") == 0;
			return true;
		}
		return false;
	}
};

// The process's AnonHugePages: how much of the table the kernel did put in
// huge pages (reported beside every figure: a VM may have none to give).
inline uint64_t anon_huge_bytes()
{
	FILE *f = std::fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return 0;
	char line[256];
	uint64_t kb = 0;
	while (std::fgets(line, sizeof(line), f))
		if (std::sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			break;
	std::fclose(f);
	return kb * 1024;
}

} // namespace sluice::bench
