// SPDX-License-Identifier: Apache-2.0
// What a worker's connection table costs in memory: the entry and bucket
// sizes from the definition (include/sluice/conntrack.h), the table the
// worker allocates for --ct-entries N (sluice_ct_table_bytes: N / 4 buckets
// of 4 ways, rounded up to a whole bucket), and the resident memory of this process
// once such a table is filled with N random flows of one family, read from
// /proc/self/status (VmRSS) before and after. The table sits in 4 KiB pages
// (no transparent huge pages), so a page is resident only once touched.
//
// bench_ct_memory [--flows N] [--entries N] [--family 4|6]   (one JSON object)
#include <sluice/conntrack.h>

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

uint64_t vm_rss_bytes()
{
	FILE *f = std::fopen("/proc/self/status", "r");
	if (!f)
		return 0;
	char line[256];
	unsigned long kb = 0;
	while (std::fgets(line, sizeof(line), f))
		if (std::sscanf(line, "VmRSS: %lu kB", &kb) == 1)
			break;
	std::fclose(f);
	return static_cast<uint64_t>(kb) * 1024;
}

uint64_t splitmix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

// Flow i of one family: a random client, one VIP, TCP.
sluice_flow_key flow(uint64_t i, int family)
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	const uint64_t r = splitmix64(i);
	if (family == 4) {
		std::memcpy(k.src, &r, 4);
		const uint8_t vip[4] = {10, 200, 1, 1};
		std::memcpy(k.dst, vip, 4);
		k.family = SLUICE_AF_INET;
	} else {
		std::memcpy(k.src, &r, 8);
		std::memcpy(k.src + 8, &i, 8);
		k.dst[0] = 0xfd;
		k.dst[15] = 1;
		k.family = SLUICE_AF_INET6;
	}
	k.sport_be = static_cast<uint16_t>(r >> 48);
	k.dport_be = 0x5000; // 80, big-endian
	k.proto = SLUICE_IPPROTO_TCP;
	return k;
}

} // namespace

int main(int argc, char **argv)
{
	uint32_t flows = 10000000, entries = 0;
	int family = 4;
	for (int i = 1; i + 1 < argc; i += 2) {
		const std::string k = argv[i];
		const unsigned long v = std::strtoul(argv[i + 1], nullptr, 0);
		if (k == "--flows")
			flows = static_cast<uint32_t>(v);
		else if (k == "--entries")
			entries = static_cast<uint32_t>(v);
		else if (k == "--family" && (v == 4 || v == 6))
			family = static_cast<int>(v);
		else {
			std::fprintf(stderr, "usage: bench_ct_memory [--flows N] [--entries N] [--family 4|6]\n");
			return 2;
		}
	}
	if (argc % 2 == 0) {
		std::fprintf(stderr, "usage: bench_ct_memory [--flows N] [--entries N] [--family 4|6]\n");
		return 2;
	}
	if (entries == 0)
		entries = flows; // as `sluice-dpdk --ct-entries N` for N flows

	const uint64_t bytes = sluice_ct_table_bytes(entries);
	const uint64_t rss_before = vm_rss_bytes();
	void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		std::perror("bench_ct_memory: mmap");
		return 1;
	}
	madvise(mem, bytes, MADV_NOHUGEPAGE);
	auto *t = static_cast<sluice_ct_table *>(mem);
	sluice_ct_table_init(t, entries, nullptr, 0x9E3779B97F4A7C15ull);
	uint64_t evicted = 0;
	for (uint32_t i = 0; i < flows; i++) {
		const sluice_flow_key k = flow(i, family);
		bool ev = false;
		const uint32_t h = sluice_ct_hash(&k, t->secret);
		sluice_ct_insert(sluice_ct_table_bucket(t, h), &k, sluice_ct_tag(h), i & 15, 0, SLUICE_CT_EST, 1,
				 &t->to, &ev);
		evicted += ev;
	}
	const uint64_t rss_after = vm_rss_bytes();
	uint64_t live = 0;
	const uint64_t buckets = t->n_buckets;
	for (uint64_t b = 0; b < buckets; b++)
		for (int w = 0; w < SLUICE_CT_WAYS; w++)
			live += t->buckets[b].way[w].state != SLUICE_CT_FREE;

	std::printf("{\"family\": %d, \"entry_bytes\": %zu, \"bucket_bytes\": %zu, \"ways\": %d, "
		    "\"flows\": %u, \"ct_entries_asked\": %u, \"table_entries\": %llu, \"table_bytes\": %llu, "
		    "\"flows_kept\": %llu, \"flows_evicted\": %llu, \"rss_before_bytes\": %llu, "
		    "\"rss_after_bytes\": %llu, \"rss_table_bytes\": %llu}\n",
		    family, sizeof(sluice_ct_entry), sizeof(sluice_ct_bucket), SLUICE_CT_WAYS, flows, entries,
		    static_cast<unsigned long long>(sluice_ct_table_entries(t)),
		    static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(live),
		    static_cast<unsigned long long>(evicted), static_cast<unsigned long long>(rss_before),
		    static_cast<unsigned long long>(rss_after),
		    static_cast<unsigned long long>(rss_after - rss_before));
	munmap(mem, bytes);
	return 0;
}
