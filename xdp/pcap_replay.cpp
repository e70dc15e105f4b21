// SPDX-License-Identifier: Apache-2.0
// sluice-xdp --pcap IN:OUT: a capture through the program with
// BPF_PROG_TEST_RUN, in order, on one CPU, the way `sluice-dpdk --pcap` runs
// one through a worker: the fixture tests and the parity test compare the
// two outputs byte for byte.
#include "modes.h"

#include "counter_names.h"
#include "error.h"
#include "mirror.h"
#include "pcap.h"
#include "program.h"
#include "shm_segment.h"
#include "sys.h"

#include <sluice/packet.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <fmt/format.h>

#include <iostream>
#include <thread>
#include <vector>

namespace sluice::xdp {

namespace {

const char *verdict_name(uint32_t v)
{
	switch (v) {
	case XDP_TX:
		return "tx";
	case XDP_PASS:
		return "pass";
	case XDP_DROP:
		return "drop";
	case XDP_ABORTED:
		return "aborted";
	}
	return "other";
}

std::string exception_path(const std::string &out)
{
	const std::string ext = ".pcap";
	if (out.size() > ext.size() && out.compare(out.size() - ext.size(), ext.size(), ext) == 0)
		return out.substr(0, out.size() - ext.size()) + ".exception.pcap";
	return out + ".exception.pcap";
}

} // namespace

int run_pcap(const options &o)
{
	auto colon = o.pcap.find(':');
	if (colon == std::string::npos || colon == 0 || colon + 1 == o.pcap.size())
		throw error("--pcap '{}': IN.pcap:OUT.pcap", o.pcap);
	const std::string in = o.pcap.substr(0, colon);
	const std::string out = o.pcap.substr(colon + 1);
	bool ns = false;
	const std::vector<pcap_packet> pkts = read_pcap(in, &ns);

	// The connection table is per CPU: run every packet on this one, as
	// one DPDK worker sees a whole capture.
	int cpu = sched_getcpu();
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu < 0 ? 0 : cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		throw error("pinning to CPU {}: {}", cpu, errno_text(errno));

	shm_segment seg = shm_segment::attach_wait(o.shm_name, std::chrono::milliseconds(o.wait_shm_ms));
	program_settings ps;
	ps.port_mac = o.mac;
	ps.port_mtu = o.mtu;
	ps.ct_entries = o.ct_entries;
	ps.ring_entries = o.ring_entries;
	ps.ct_timeouts = o.ct_timeouts;
	ps.replay = true;
	program prog = program::load(ps);
	mirror m(prog);
	worker_handle h = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_REPLAY, 0, "xdp pcap");
	h.report_applied_separately();
	counter_copier counters(prog, h.record());

	uint64_t refused = 0;
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.wait_shm_ms);
	while (!mirror_latest(h, m, refused)) {
		if (std::chrono::steady_clock::now() >= deadline)
			throw error("no usable snapshot on /dev/shm/{} within {} ms: is sluiced running with "
				    "--shm {}?",
				    seg.name(), o.wait_shm_ms, seg.name());
		h.heartbeat();
		std::this_thread::sleep_for(poll_interval);
	}

	pcap_writer tx(out, ns);
	pcap_writer kernel(exception_path(out), ns);
	std::vector<std::string> verdicts;
	std::vector<uint8_t> buf(8192);
	uint64_t runts = 0, runt_bytes = 0;
	for (const pcap_packet &p : pkts) {
		if (p.data.size() < sizeof(sluice_eth_hdr)) {
			// No driver hands XDP a frame shorter than its Ethernet
			// header, and BPF_PROG_TEST_RUN refuses one: count it as the
			// program's parse would (drop_truncated) without running it.
			verdicts.push_back("drop");
			runts++;
			runt_bytes += p.data.size();
			continue;
		}
		LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = p.data.data(), .data_out = buf.data(),
			    .data_size_in = (uint32_t)p.data.size(),
			    .data_size_out = (uint32_t)buf.size(), .repeat = 1);
		int err = bpf_prog_test_run_opts(prog.prog_fd(), &run);
		if (err)
			throw error("BPF_PROG_TEST_RUN of packet {} ({} bytes): {}", verdicts.size() + 1,
				    p.data.size(), errno_text(err));
		verdicts.push_back(verdict_name(run.retval));
		if (run.retval == XDP_TX)
			tx.write(p, buf.data(), run.data_size_out);
		else if (run.retval == XDP_PASS)
			kernel.write(p, buf.data(), run.data_size_out);
		h.heartbeat();
	}
	tx.close();
	kernel.close();
	counters.add(SLUICE_CNT_rx_packets, runts);
	counters.add(SLUICE_CNT_rx_bytes, runt_bytes);
	counters.add(SLUICE_CNT_drop_truncated, runts);
	counters.copy();
	totals t;
	counter_reader(prog).sum(t);
	t.counters[SLUICE_CNT_rx_packets] += runts;
	t.counters[SLUICE_CNT_rx_bytes] += runt_bytes;
	t.counters[SLUICE_CNT_drop_truncated] += runts;
	h.release();

	if (o.json) {
		// Names and numbers only: no escaping needed.
		std::string j = fmt::format("{{\"generation\":{},\"counters\":{{", m.generation());
		for (uint32_t i = 0; i < SLUICE_CNT__COUNT; i++)
			j += fmt::format("{}\"{}\":{}", i ? "," : "", counter_table[i].name, t.counters[i]);
		j += "},\"verdicts\":[";
		for (size_t i = 0; i < verdicts.size(); i++)
			j += fmt::format("{}\"{}\"", i ? "," : "", verdicts[i]);
		std::cout << j << "]}\n";
	} else {
		for (uint32_t i = 0; i < SLUICE_CNT__COUNT; i++)
			if (t.counters[i])
				std::cout << counter_table[i].name << " " << t.counters[i] << "\n";
	}
	return 0;
}

} // namespace sluice::xdp
