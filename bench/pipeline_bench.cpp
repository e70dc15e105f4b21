// SPDX-License-Identifier: Apache-2.0
// The DPDK worker's packet path alone (dataplane/worker.cpp process_burst),
// no PMD: ns per packet over bursts of 32, with 1K to 10M active flows in
// the connection table, for packets of those flows (established: a table
// hit) and for SYNs of flows not in it (new: a miss, a Maglev pick and an
// insert). IPv4 and IPv6 clients, IPIP and GUE VIPs, 16 backends each.
//
// Method:
//  - 32 real mbufs from a real mempool (EAL without hugepages or PCI, as
//    tests/unit/worker_test.cpp), recycled: before each burst every mbuf gets its
//    frame back (data offset, lengths, flags, the template's bytes) and the
//    client address and port of the next flow, so every packet of a burst is
//    a different flow. That restore is outside the timed region: the clock
//    (TSC) brackets process_burst only. Its own cost is reported beside
//    (restore_ns) and not subtracted from anything.
//  - The table is the worker's: sluice_ct_table_bytes() for the smallest
//    power of two at or above 1.5 x flows (2,048 / 262,144 / 2,097,152 /
//    16,777,216 entries: 128 KiB, 16 MiB, 128 MiB, 1 GiB), in transparent
//    huge pages as a DPDK deployment has it in hugepages (--pages=4k for
//    4 KiB pages, as sluice-dpdk --no-huge has it). Filled with exactly
//    `flows` flows (a candidate whose bucket is full is skipped), each with
//    the backend Maglev gives it, then established packets visit them in a
//    random order: each packet is a random bucket of the whole table.
//  - New flows are other flows, chosen at start-up so their bucket has a
//    free way and no two of one burst share a bucket: an insert, never an
//    eviction (the table is sized for its flows; bench_conntrack measures a
//    full table). After each burst, outside the clock, the entries it
//    inserted are freed again, so the table stays at `flows` and the next
//    lap's SYNs are new again.
//  - Every run checks the worker's own counters: established runs must be
//    all conn_hit, new runs all conn_new without conn_evict, and every packet
//    forwarded; otherwise the benchmark reports an error.
//
//  - --rounds=N registers every case N times, established and new
//    alternating on one table (the comparison interleaved, as scripts/bench
//    wants on a noisy machine); each run starts with its own warm-up of
//    2,000 bursts.
//
// bench_pipeline [--pages=4k] [--rounds=N] [--benchmark_filter=...] [Google Benchmark flags]
// Names: pipeline/<v4|v6>_<ipip|gue>/<established|new>/<flows>; the figure
// is the counter ns_per_pkt (real_time is per burst of 32).
#include "config_io.h"
#include "publishers.h"
#include "service.h"
#include "table_mem.h"
#include "table_size.h"
#include "worker.h"

#include <sluice/conntrack.h>
#include <sluice/maglev.h>
#include <sluice/packet.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace sluice;

namespace {

constexpr uint16_t burst = burst_size;
constexpr uint32_t now_s = 1000; // nothing expires during a run
constexpr uint32_t backends_per_vip = 16;

rte_mempool *pool;

// One VIP per variant, 16 backends of the VIP's family each; the gateway MAC
// gives every backend a next hop, as sluiced's resolver would.
std::string config_text()
{
	std::string y = "node: {source_ipv4: 10.0.0.2, source_ipv6: 'fd00::2', gateway_mac: "
			"'02:00:00:00:00:fe'}\nvips:\n";
	const char *vips[] = {"10.200.1.1", "10.200.1.2", "fd00:200::1", "fd00:200::2"};
	const char *modes[] = {"ipip", "gue", "ipip", "gue"};
	for (int v = 0; v < 4; v++) {
		y += std::string("  - {address: '") + vips[v] + "', port: 80, protocol: tcp, mode: " +
		     modes[v] + ", backends: [";
		for (uint32_t b = 1; b <= backends_per_vip; b++) {
			y += b > 1 ? ", " : "";
			y += v < 2 ? "{address: '10.1." + std::to_string(v) + "." + std::to_string(b) + "'}"
				   : "{address: 'fd00:1:" + std::to_string(v) + "::" + std::to_string(b) + "'}";
		}
		y += "]}\n";
	}
	return y;
}

struct variant {
	const char *name;
	uint8_t family;
	const char *vip;
	uint8_t vip16[16]; // the VIP as a flow key holds it; set in main()
};
variant variants[] = {
	{"v4_ipip", SLUICE_AF_INET, "10.200.1.1", {}},
	{"v4_gue", SLUICE_AF_INET, "10.200.1.2", {}},
	{"v6_ipip", SLUICE_AF_INET6, "fd00:200::1", {}},
	{"v6_gue", SLUICE_AF_INET6, "fd00:200::2", {}},
};

// The control plane's snapshot, built by its own builder into memory.
struct control_plane {
	memory_publisher pub;
	std::unique_ptr<service> svc;
	std::filesystem::path dir;

	control_plane()
	{
		dir = std::filesystem::temp_directory_path() / ("sluice-pipeline-" + std::to_string(getpid()));
		std::filesystem::remove_all(dir);
		std::filesystem::create_directories(dir);
		svc = std::make_unique<service>(pub, dir.string(), config_from_yaml(config_text()));
	}
	~control_plane()
	{
		svc.reset();
		std::filesystem::remove_all(dir);
	}
	const sluice_snapshot *snap() const { return &pub.last(); }
};

control_plane *cp;

// Client side of flow i: IPv4 100.64.0.0/10 (i >> 4) and port 40000 + (i & 15),
// i < 2^26; IPv6 2001:db8::/96 with i in the last 32 bits, the same port.
void client_of(uint8_t family, uint32_t i, uint8_t src16[16], uint16_t *sport_be)
{
	std::memset(src16, 0, 16);
	if (family == SLUICE_AF_INET) {
		uint32_t a = htonl(0x64400000u + (i >> 4));
		std::memcpy(src16, &a, 4);
	} else {
		src16[0] = 0x20;
		src16[1] = 0x01;
		src16[2] = 0x0d;
		src16[3] = 0xb8;
		uint32_t a = htonl(i);
		std::memcpy(src16 + 12, &a, 4);
	}
	*sport_be = htons(static_cast<uint16_t>(40000 + (i & 15)));
}

// The frame a client sends to the VIP: 60 bytes for IPv4 (a 64-byte frame
// with its FCS), 74 for IPv6; TCP without options.
struct frame_template {
	std::vector<uint8_t> bytes;
	uint16_t src_off; // client address in the frame
	uint16_t src_len;
	uint16_t sport_off;
};

frame_template make_frame(const variant &v, uint8_t tcp_flags)
{
	frame_template t;
	const bool v4 = v.family == SLUICE_AF_INET;
	const size_t l3 = v4 ? 20 : 40;
	t.bytes.assign(v4 ? 60 : 74, 0);
	uint8_t *f = t.bytes.data();
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(f);
	const uint8_t router[6] = {0x02, 0, 0, 0, 0, 0x01}, lb[6] = {0x02, 0, 0, 0, 0, 0x02};
	std::memcpy(eth->src, router, 6);
	std::memcpy(eth->dst, lb, 6);
	if (v4) {
		eth->type_be = htons(SLUICE_ETH_P_IPV4);
		auto *ip = reinterpret_cast<sluice_ipv4_hdr *>(f + 14);
		ip->version_ihl = 0x45;
		ip->total_len_be = htons(40);
		ip->frag_off_be = htons(SLUICE_IPV4_DF);
		ip->ttl = 61;
		ip->protocol = SLUICE_IPPROTO_TCP;
		inet_pton(AF_INET, v.vip, &ip->daddr_be);
		t.src_off = 14 + 12;
		t.src_len = 4;
	} else {
		eth->type_be = htons(SLUICE_ETH_P_IPV6);
		auto *ip = reinterpret_cast<sluice_ipv6_hdr *>(f + 14);
		ip->vtc_flow_be = htonl(6u << 28);
		ip->payload_len_be = htons(20);
		ip->nexthdr = SLUICE_IPPROTO_TCP;
		ip->hop_limit = 61;
		inet_pton(AF_INET6, v.vip, ip->daddr);
		t.src_off = 14 + 8;
		t.src_len = 16;
	}
	auto *tcp = reinterpret_cast<sluice_tcp_hdr *>(f + 14 + l3);
	tcp->dest_be = htons(80);
	tcp->doff_res = 5 << 4;
	tcp->flags = tcp_flags;
	t.sport_off = static_cast<uint16_t>(14 + l3);
	return t;
}

// The key the parser makes of flow i's packets.
sluice_flow_key key_of(const variant &v, uint32_t i)
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	client_of(v.family, i, k.src, &k.sport_be);
	std::memcpy(k.dst, v.vip16, 16);
	k.dport_be = htons(80);
	k.proto = SLUICE_IPPROTO_TCP;
	k.family = v.family;
	return k;
}

using bench::table_entries_for;

bench::table_arena tables{"bench_pipeline"};

// A worker's connection table holding exactly `flows` flows of one variant,
// the order established packets visit them in, and new flows for SYNs.
struct fixture {
	uint32_t flows = 0;
	const variant *v = nullptr;
	sluice_ct_table *table = nullptr;
	uint32_t vip_id = 0;
	std::vector<uint32_t> present; // flow ids in the table, shuffled
	std::vector<uint32_t> fresh;   // flow ids not in it, in bursts without a shared bucket
	size_t pos_present = 0, pos_fresh = 0;
	uint64_t skipped = 0;          // candidates whose bucket was full at fill time
	uint64_t table_bytes = 0;
	uint64_t thp_bytes = 0;        // the process's AnonHugePages once the table is in place
};


bool bucket_has_free_way(const sluice_ct_bucket *b)
{
	for (int w = 0; w < SLUICE_CT_WAYS; w++)
		if (b->way[w].state == SLUICE_CT_FREE)
			return true;
	return false;
}

// Candidates are looked at in groups: hashed, their buckets prefetched, then
// checked, so building a 10M table waits on DRAM once per group.
constexpr uint32_t group = 64;

std::unique_ptr<fixture> build(uint32_t flows, const variant &v)
{
	auto f = std::make_unique<fixture>();
	f->flows = flows;
	f->v = &v;
	const uint32_t entries = table_entries_for(flows);
	f->table_bytes = sluice_ct_table_bytes(entries);
	f->table = static_cast<sluice_ct_table *>(tables.get(f->table_bytes));
	f->thp_bytes = bench::anon_huge_bytes();
	sluice_ct_table_init(f->table, entries, nullptr, 0x9E3779B97F4A7C15ull);

	const sluice_snapshot *s = cp->snap();
	f->vip_id = sluice_vip_find(s, v.vip16, v.family, htons(80), SLUICE_IPPROTO_TCP);
	if (f->vip_id == SLUICE_MAX_VIPS) {
		std::fprintf(stderr, "bench_pipeline: VIP %s not in the snapshot\n", v.vip);
		std::exit(1);
	}
	const sluice_vip &vip = s->vips[f->vip_id];

	sluice_flow_key k[group];
	uint32_t h[group], c[group];
	sluice_ct_bucket *b[group];
	auto locate = [&](uint32_t first) {
		for (uint32_t j = 0; j < group; j++) {
			k[j] = key_of(v, first + j);
			h[j] = sluice_flow_hash(&k[j]);
			c[j] = sluice_ct_hash(&k[j], f->table->secret);
			b[j] = sluice_ct_table_bucket(f->table, c[j]);
			__builtin_prefetch(b[j]);
		}
	};

	// Flow ids 0.. fill the table; new flows come from 2^25 up.
	f->present.reserve(flows);
	for (uint32_t i = 0; f->present.size() < flows; i += group) {
		locate(i);
		for (uint32_t j = 0; j < group && f->present.size() < flows; j++) {
			if (!bucket_has_free_way(b[j])) {
				f->skipped++;
				continue;
			}
			const uint32_t bid =
				s->rings[(vip.ring_offset + sluice_maglev_slot(h[j], vip.ring_inv, vip.ring_size)) &
					 (SLUICE_RING_POOL - 1)];
			sluice_ct_insert(b[j], &k[j], sluice_ct_tag(c[j]), bid, f->vip_id, SLUICE_CT_EST, now_s,
					 &f->table->to, nullptr);
			f->present.push_back(i + j);
		}
	}
	std::mt19937_64 rng(flows * 31 + v.family);
	std::shuffle(f->present.begin(), f->present.end(), rng);

	// As many new flows as established ones, up to 2M: their buckets (512
	// MiB) do not fit in the last-level cache either.
	const uint32_t n_fresh = std::clamp<uint32_t>(flows / burst * burst, 64 * burst, 1u << 21);
	f->fresh.reserve(n_fresh);
	std::vector<const sluice_ct_bucket *> in_burst;
	for (uint32_t i = 1u << 25; f->fresh.size() < n_fresh; i += group) {
		locate(i);
		for (uint32_t j = 0; j < group && f->fresh.size() < n_fresh; j++) {
			if (!bucket_has_free_way(b[j]) ||
			    std::find(in_burst.begin(), in_burst.end(), b[j]) != in_burst.end())
				continue;
			f->fresh.push_back(i + j);
			in_burst.push_back(b[j]);
			if (in_burst.size() == burst)
				in_burst.clear();
		}
	}
	return f;
}

// One fixture at a time: a 10M table is 1 GiB.
fixture &fixture_for(uint32_t flows, const variant &v)
{
	static std::unique_ptr<fixture> cur;
	if (!cur || cur->flows != flows || cur->v != &v) {
		cur.reset();
		const auto t0 = std::chrono::steady_clock::now();
		cur = build(flows, v);
		std::fprintf(stderr, "bench_pipeline: %s table of %u flows built in %.1f s (%lu candidates skipped)\n",
			     v.name, flows,
			     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
			     static_cast<unsigned long>(cur->skipped));
	}
	return *cur;
}

// The mbufs of a burst, their frames restored before each burst.
struct burst_mbufs {
	rte_mbuf *m[burst];
	burst_mbufs()
	{
		if (rte_pktmbuf_alloc_bulk(pool, m, burst) != 0) {
			std::fprintf(stderr, "bench_pipeline: no mbufs\n");
			std::exit(1);
		}
	}
	~burst_mbufs() { rte_pktmbuf_free_bulk(m, burst); }

	void restore(const frame_template &t, uint8_t family, const uint32_t *ids)
	{
		const uint16_t len = static_cast<uint16_t>(t.bytes.size());
		for (uint16_t j = 0; j < burst; j++) {
			rte_mbuf *x = m[j];
			x->data_off = RTE_PKTMBUF_HEADROOM;
			x->data_len = len;
			x->pkt_len = len;
			x->ol_flags = 0;
			uint8_t *d = rte_pktmbuf_mtod(x, uint8_t *);
			std::memcpy(d, t.bytes.data(), len);
			uint8_t src[16];
			uint16_t sport_be;
			client_of(family, ids[j], src, &sport_be);
			std::memcpy(d + t.src_off, src, t.src_len);
			std::memcpy(d + t.sport_off, &sport_be, 2);
		}
	}
};

enum class kind { established, new_flow };

// Bursts process_burst ran in the benchmarks (warm-ups and Google Benchmark's
// trial runs included), printed at exit: scripts/bench --only profile
// divides callgrind's instruction counts by them.
uint64_t bursts_run;

void bm_pipeline(benchmark::State &state, const variant *v, kind k, uint32_t flows)
{
	fixture &f = fixture_for(flows, *v);
	const frame_template t = make_frame(*v, k == kind::established ? SLUICE_TCP_ACK : SLUICE_TCP_SYN);
	const sluice_snapshot *snap = cp->snap();
	auto *stats = static_cast<sluice_worker *>(std::calloc(1, sizeof(sluice_worker)));
	worker_state st;
	st.ct = f.table;
	st.stats = stats;
	st.now_s = now_s;
	const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x02};
	std::memcpy(st.params.port_mac.addr_bytes, mac, 6);
	burst_mbufs mb;
	burst_result out;
	const double ns_per_tick = 1e9 / static_cast<double>(rte_get_tsc_hz());

	std::vector<uint32_t> &ids = k == kind::established ? f.present : f.fresh;
	size_t &pos = k == kind::established ? f.pos_present : f.pos_fresh;
	const size_t n = ids.size() / burst * burst;
	uint64_t timed = 0, restore = 0, packets = 0, bad = 0;

	auto one = [&](bool measure) {
		const uint32_t *b = &ids[pos];
		pos = pos + burst >= n ? 0 : pos + burst;
		const uint64_t r0 = rte_rdtsc();
		mb.restore(t, v->family, b);
		const uint64_t t0 = rte_rdtsc();
		process_burst(st, snap, mb.m, burst, out);
		bursts_run++;
		const uint64_t t1 = rte_rdtsc();
		if (out.n_tx != burst)
			bad++;
		if (k == kind::new_flow) {
			// Outside the clock: free what this burst inserted.
			for (uint16_t j = 0; j < burst; j++) {
				const sluice_flow_key key = key_of(*v, b[j]);
				const uint32_t h = sluice_ct_hash(&key, f.table->secret);
				sluice_ct_bucket *bk = sluice_ct_table_bucket(f.table, h);
				sluice_ct_entry *e = sluice_ct_find(bk, &key, sluice_ct_tag(h), now_s, &f.table->to);
				if (e)
					sluice_ct_remove(bk, static_cast<int>(e - bk->way));
			}
		}
		if (measure) {
			timed += t1 - t0;
			restore += t0 - r0;
			packets += burst;
		}
		return (t1 - t0) * ns_per_tick * 1e-9;
	};
	// Warm-up: code, branch predictors, the TLB.
	for (int i = 0; i < 2000; i++)
		one(false);
	std::memset(stats->counters, 0, sizeof(stats->counters));
	for (auto _ : state)
		state.SetIterationTime(one(true));

	const uint64_t *c = stats->counters;
	const uint64_t want = k == kind::established ? c[SLUICE_CNT_conn_hit] : c[SLUICE_CNT_conn_new];
	if (bad || want != packets || c[SLUICE_CNT_conn_evict] || c[SLUICE_CNT_tx_packets] != packets) {
		char why[200];
		std::snprintf(why, sizeof(why),
			      "not the case measured: %lu packets, %lu tx, %lu hit, %lu new, %lu evict",
			      (unsigned long)packets, (unsigned long)c[SLUICE_CNT_tx_packets],
			      (unsigned long)c[SLUICE_CNT_conn_hit], (unsigned long)c[SLUICE_CNT_conn_new],
			      (unsigned long)c[SLUICE_CNT_conn_evict]);
		state.SkipWithError(why);
	}
	std::free(stats);
	const double pk = static_cast<double>(packets ? packets : 1);
	state.counters["ns_per_pkt"] = static_cast<double>(timed) * ns_per_tick / pk;
	state.counters["restore_ns"] = static_cast<double>(restore) * ns_per_tick / pk;
	state.counters["flows"] = flows;
	state.counters["table_entries"] = static_cast<double>(sluice_ct_table_entries(f.table));
	state.counters["table_MiB"] = static_cast<double>(f.table_bytes) / (1 << 20);
	state.counters["thp_MiB"] = static_cast<double>(f.thp_bytes) / (1 << 20);
}

std::string flows_name(uint32_t n)
{
	if (n >= 1000000 && n % 1000000 == 0)
		return std::to_string(n / 1000000) + "m";
	if (n >= 1000 && n % 1000 == 0)
		return std::to_string(n / 1000) + "k";
	return std::to_string(n);
}

} // namespace

int main(int argc, char **argv)
{
	std::vector<char *> rest;
	int rounds = 1;
	for (int i = 0; i < argc; i++) {
		if (tables.take_pages_option(argv[i]))
			continue;
		if (std::strncmp(argv[i], "--rounds=", 9) == 0)
			rounds = std::max(1, std::atoi(argv[i] + 9));
		else
			rest.push_back(argv[i]);
	}
	int rargc = static_cast<int>(rest.size());
	benchmark::Initialize(&rargc, rest.data());
	if (benchmark::ReportUnrecognizedArguments(rargc, rest.data()))
		return 2;

	const std::string prefix = "sluice-pipeline-" + std::to_string(getpid());
	const char *eal[] = {"bench_pipeline", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
			     "-m", "64", "--file-prefix", prefix.c_str(), "--log-level", "error", "-l", "0"};
	if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char **>(eal)) < 0) {
		std::fprintf(stderr, "bench_pipeline: rte_eal_init failed\n");
		return 1;
	}
	const std::string runtime_dir = rte_eal_get_runtime_dir();
	pool = rte_pktmbuf_pool_create("pipeline", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
	if (!pool) {
		std::fprintf(stderr, "bench_pipeline: no mempool\n");
		return 1;
	}
	cp = new control_plane();
	for (variant &v : variants)
		inet_pton(v.family == SLUICE_AF_INET ? AF_INET : AF_INET6, v.vip, v.vip16);

	for (uint32_t flows : {1000u, 100000u, 1000000u, 10000000u})
		for (const variant &v : variants)
			for (int r = 0; r < rounds; r++)
				for (kind k : {kind::established, kind::new_flow}) {
					const std::string name = std::string("pipeline/") + v.name + "/" +
								 (k == kind::established ? "established" : "new") +
								 "/" + flows_name(flows);
					benchmark::RegisterBenchmark(name.c_str(), bm_pipeline, &v, k, flows)
						->UseManualTime()
						->Unit(benchmark::kNanosecond);
				}
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	std::fprintf(stderr, "bench_pipeline: bursts: %lu through process_burst\n",
		     static_cast<unsigned long>(bursts_run));

	delete cp;
	rte_mempool_free(pool);
	rte_eal_cleanup();
	rmdir(runtime_dir.c_str());
	return 0;
}
