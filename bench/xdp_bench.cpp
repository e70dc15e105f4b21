// SPDX-License-Identifier: Apache-2.0
// ns per packet of the XDP program (xdp/sluice.bpf.c) under BPF_PROG_TEST_RUN:
// established flows, new flows (into an empty table, and into a full one
// where every insert evicts), traffic that is not for a VIP; beside a minimal
// parse + swap-MAC + XDP_TX program. A benchmark, not a test (root).
//
// Method (TESTBED.md): a test run's repetitions share one frame, so every
// case runs xdp/bench.bpf.c's wrapper first, which restores the frame,
// stamps the flow and tail-calls the program under test; the wrapper's own
// cost, measured in front of an XDP_TX-only program, is subtracted. The
// snapshot is built in process by the control-plane library (no sluiced) and
// mirrored into the maps by the same code as sluice-xdp. Each figure is the
// median of --runs runs of --repeat repetitions on one CPU.
#include "bench.h"
#include "config_io.h"
#include "error.h"
#include "mirror.h"
#include "program.h"
#include "snapshot_builder.h"
#include "state.h"

#include "bench.skel.h"
#include "sluice.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace sluice;
using namespace sluice::xdp;

namespace {

const char *const config_text = R"(
node:
  source_ipv4: 10.0.0.2
  source_ipv6: fd00::2
  gateway_mac: 02:00:00:00:00:fe
vips:
  - address: 10.200.1.1
    port: 80
    protocol: tcp
    mode: ipip
    backends:
      - address: 10.1.0.1
      - address: 10.1.0.2
      - address: 10.1.0.3
      - address: 10.1.0.4
      - address: 10.1.0.5
      - address: 10.1.0.6
      - address: 10.1.0.7
      - address: 10.1.0.8
  - address: 10.200.1.2
    port: 80
    protocol: tcp
    mode: gue
    backends:
      - address: 10.1.0.9
      - address: 10.1.0.10
)";

struct args {
	uint32_t repeat = 1u << 20;
	uint32_t runs = 5;
	uint32_t flows = 10000;
};

struct snapshot_deleter {
	void operator()(sluice_snapshot *s) const { std::free(s); }
};

std::unique_ptr<sluice_snapshot, snapshot_deleter> build_snapshot()
{
	// calloc: the 64 MiB ring pool is only touched where tables are.
	auto *s = static_cast<sluice_snapshot *>(std::calloc(1, sizeof(sluice_snapshot)));
	if (!s)
		throw error("out of memory for a snapshot");
	std::unique_ptr<sluice_snapshot, snapshot_deleter> snap(s);
	config cfg = config_from_yaml(config_text);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	snapshot_builder b;
	b.build(snapshot_inputs{cfg, ids, [](uint32_t) { return true; },
				[](uint32_t) -> std::optional<mac_address> { return std::nullopt; }},
		*snap);
	snap->hdr.generation = 1;
	snap->hdr.checksum = sluice_snapshot_checksum(snap.get());
	return snap;
}

// Ethernet + IPv4 + TCP + 10 bytes, to dst:80.
std::vector<uint8_t> frame(uint32_t dst, uint8_t tcp_flags)
{
	std::vector<uint8_t> f(SLUICE_BENCH_FRAME, 0);
	const uint8_t eth[14] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00};
	std::memcpy(f.data(), eth, 14);
	sluice_ipv4_hdr ip{};
	ip.version_ihl = 0x45;
	ip.total_len_be = sluice_htons(SLUICE_BENCH_FRAME - 14);
	ip.frag_off_be = sluice_htons(SLUICE_IPV4_DF);
	ip.ttl = 64;
	ip.protocol = SLUICE_IPPROTO_TCP;
	ip.saddr_be = sluice_htonl(0x0A400001);
	ip.daddr_be = sluice_htonl(dst);
	std::memcpy(f.data() + 14, &ip, sizeof(ip));
	sluice_tcp_hdr tcp{};
	tcp.source_be = sluice_htons(40000);
	tcp.dest_be = sluice_htons(80);
	tcp.doff_res = 5 << 4;
	tcp.flags = tcp_flags;
	tcp.window_be = sluice_htons(64240);
	std::memcpy(f.data() + 34, &tcp, sizeof(tcp));
	std::memset(f.data() + 54, 'x', 10);
	return f;
}

class bench {
public:
	bench(const program &target_prog) : target_(target_prog)
	{
		skel_ = bench_bpf__open_and_load();
		if (!skel_)
			throw error("loading bench.bpf.o: {}", std::strerror(errno));
	}
	~bench() { bench_bpf__destroy(skel_); }

	int tx_fd() const { return bpf_program__fd(skel_->progs.bench_tx); }
	int swap_fd() const { return bpf_program__fd(skel_->progs.bench_swap); }

	// ns per repetition of wrapper + prog_fd, and the verdict.
	std::pair<double, uint32_t> run(int prog_fd, const std::vector<uint8_t> &f, uint32_t mode,
					uint32_t nflows, uint32_t repeat)
	{
		uint32_t zero = 0;
		if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bench_progs), &zero, &prog_fd, BPF_ANY))
			throw error("bench_progs: {}", std::strerror(errno));
		sluice_bench_template t{};
		std::memcpy(t.frame, f.data(), SLUICE_BENCH_FRAME);
		t.mode = mode;
		t.nflows = nflows;
		if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bench_tpl), &zero, &t, BPF_ANY))
			throw error("bench_tpl: {}", std::strerror(errno));
		std::vector<uint8_t> out(512);
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = f.data(), .data_out = out.data(),
			    .data_size_in = (uint32_t)f.size(), .data_size_out = (uint32_t)out.size(),
			    .repeat = (int)repeat);
		int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.bench_wrap), &o);
		if (err)
			throw error("BPF_PROG_TEST_RUN: {}", std::strerror(-err));
		return {(double)o.duration, o.retval};
	}

private:
	const program &target_;
	bench_bpf *skel_ = nullptr;
};

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v[v.size() / 2];
}

const char *verdict(uint32_t v)
{
	switch (v) {
	case XDP_TX:
		return "XDP_TX";
	case XDP_PASS:
		return "XDP_PASS";
	case XDP_DROP:
		return "XDP_DROP";
	}
	return "XDP_ABORTED";
}

} // namespace

int main(int argc, char **argv)
{
	args a;
	for (int i = 1; i + 1 < argc; i += 2) {
		std::string k = argv[i];
		uint32_t v = (uint32_t)std::strtoul(argv[i + 1], nullptr, 0);
		if (k == "--repeat")
			a.repeat = v;
		else if (k == "--runs")
			a.runs = std::max(1u, v);
		else if (k == "--flows")
			a.flows = std::max(1u, v);
		else {
			std::fprintf(stderr, "usage: bench_xdp [--repeat N] [--runs N] [--flows N]\n");
			return 2;
		}
	}
	try {
		// One CPU: the connection table is per CPU.
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(std::max(0, sched_getcpu()), &set);
		sched_setaffinity(0, sizeof(set), &set);

		auto snap = build_snapshot();
		struct load {
			program prog;
			std::unique_ptr<mirror> m;
		};
		auto loaded = [&](uint32_t ct_entries) {
			program_settings ps;
			ps.ct_entries = ct_entries;
			load l{program::load(ps), nullptr};
			l.m = std::make_unique<mirror>(l.prog);
			std::string why;
			if (!l.m->apply(*snap, &why))
				throw error("{}", why);
			return l;
		};
		const uint32_t vip = 0x0AC80101, gue_vip = 0x0AC80102, other = 0x0A090909;
		const auto ack = frame(vip, SLUICE_TCP_ACK), syn = frame(vip, SLUICE_TCP_SYN);
		const auto gue_ack = frame(gue_vip, SLUICE_TCP_ACK), pass = frame(other, SLUICE_TCP_ACK);

		load big = loaded(1u << 20); // per CPU: new flows land in free ways
		bench b(big.prog);
		const int sluice_fd = big.prog.prog_fd();

		struct row {
			std::string name;
			double ns;
			const char *verdict;
		};
		std::vector<row> rows;
		auto measure = [&](const std::string &name, int fd, const std::vector<uint8_t> &f, uint32_t mode,
				   uint32_t nflows, uint32_t repeat) {
			std::vector<double> v;
			uint32_t ret = 0;
			for (uint32_t r = 0; r < a.runs; r++) {
				auto [ns, rv] = b.run(fd, f, mode, nflows, repeat);
				v.push_back(ns);
				ret = rv;
			}
			rows.push_back({name, median(v), verdict(ret)});
			return rows.back().ns;
		};

		const double wrap = measure("wrapper + XDP_TX only (subtracted below)", b.tx_fd(), ack,
					    SLUICE_BENCH_FIXED, 0, a.repeat);
		measure("minimal: parse, swap MACs, XDP_TX", b.swap_fd(), ack, SLUICE_BENCH_FIXED, 0, a.repeat);
		measure("sluice: not a VIP (XDP_PASS)", sluice_fd, pass, SLUICE_BENCH_FIXED, 0, a.repeat);
		// Warm the table with every flow once, then time hits over all of them.
		b.run(sluice_fd, ack, SLUICE_BENCH_ROTATE, a.flows, a.flows);
		measure(fmt::format("sluice: established, 1 flow (IPIP)"), sluice_fd, ack, SLUICE_BENCH_FIXED, 0,
			a.repeat);
		measure(fmt::format("sluice: established, {} flows (IPIP)", a.flows), sluice_fd, ack,
			SLUICE_BENCH_ROTATE, a.flows, a.repeat);
		b.run(sluice_fd, gue_ack, SLUICE_BENCH_ROTATE, a.flows, a.flows);
		measure(fmt::format("sluice: established, {} flows (GUE)", a.flows), sluice_fd, gue_ack,
			SLUICE_BENCH_ROTATE, a.flows, a.repeat);
		// As many flows as make the table's 64 MiB the working set: the
		// memory a new flow's bucket costs, for a hit.
		const uint32_t many = 1u << 19;
		b.run(sluice_fd, ack, SLUICE_BENCH_ROTATE, many, many);
		measure(fmt::format("sluice: established, {} flows (IPIP)", many), sluice_fd, ack,
			SLUICE_BENCH_ROTATE, many, a.repeat);
		// New flows into a table of 2^20 entries per CPU: a run inserts at
		// most a quarter of that, into free ways.
		measure("sluice: new flow (SYN), table filling", sluice_fd, syn, SLUICE_BENCH_NEW, 0,
			std::min(a.repeat, (1u << 20) / (4 * a.runs)));

		// A small table kept full: every insert evicts the oldest way.
		load small = loaded(1u << 14);
		b.run(small.prog.prog_fd(), syn, SLUICE_BENCH_NEW, 0, 1u << 16);
		measure("sluice: new flow (SYN), table full: evicting", small.prog.prog_fd(), syn,
			SLUICE_BENCH_NEW, 0, a.repeat);

		totals t;
		counter_reader(big.prog).sum(t);
		std::printf("XDP program under BPF_PROG_TEST_RUN, 64-byte IPv4 TCP frames, median of %u runs "
			    "of %u repetitions, one CPU\n\n",
			    a.runs, a.repeat);
		std::printf("%-52s %10s %10s  %s\n", "case", "ns/pkt", "net ns", "verdict");
		for (const row &r : rows)
			std::printf("%-52s %10.1f %10.1f  %s\n", r.name.c_str(), r.ns, r.ns - wrap, r.verdict);
		std::printf("\n(net: minus the wrapper's own %.1f ns)\n", wrap);
		std::printf("program counters (2^20-entry table): conn_new %lu conn_hit %lu conn_evict %lu "
			    "tx_packets %lu pass_not_vip %lu\n",
			    (unsigned long)t.counters[SLUICE_CNT_conn_new],
			    (unsigned long)t.counters[SLUICE_CNT_conn_hit],
			    (unsigned long)t.counters[SLUICE_CNT_conn_evict],
			    (unsigned long)t.counters[SLUICE_CNT_tx_packets],
			    (unsigned long)t.counters[SLUICE_CNT_pass_not_vip]);
		totals ts;
		counter_reader(small.prog).sum(ts);
		std::printf("program counters (2^14-entry table): conn_new %lu conn_evict %lu\n",
			    (unsigned long)ts.counters[SLUICE_CNT_conn_new],
			    (unsigned long)ts.counters[SLUICE_CNT_conn_evict]);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "bench_xdp: %s\n", e.what());
		return 1;
	}
	return 0;
}
