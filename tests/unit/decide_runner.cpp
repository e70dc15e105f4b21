// SPDX-License-Identifier: Apache-2.0
// The packet-fixture table's native runner: every frame of a capture through
// include/sluice/decide.h in this process — no DPDK, no BPF, no root — with
// the snapshot the control-plane library builds from the fixture
// configuration, one empty connection table and a plain byte buffer per
// packet. Its outputs are what the other runners give the checker
// (tests/fixtures/README.md): what is sent, what goes to the kernel, the
// counters.
//
// The verdict is applied with encap.h's writers, as the dataplanes apply
// it; this file owns only the buffer arithmetic (headroom, trim), so what
// the checker judges is the shared decision and the shared writers.
//
// usage: decide_runner CONFIG.yaml IN.pcap OUT.pcap PORT_MAC [MTU]
//   writes OUT.pcap (sent) and OUT.exception.pcap (the kernel's), prints
//   `name value` per counter.
#include "config_io.h"
#include "error.h"
#include "metrics.h"
#include "pcap.h"
#include "snapshot_builder.h"
#include "state.h"
#include "sys.h"
#include "native_path.h"

#include <sluice/decide.h>
#include <sluice/encap.h>
#include <sluice/parse.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace sluice;
using namespace sluice::native;

int run(int argc, char **argv)
{
	if (argc < 5 || argc > 6)
		throw error("usage: decide_runner CONFIG.yaml IN.pcap OUT.pcap PORT_MAC [MTU]");
	const std::string out = argv[3];
	const std::string exc = out.size() > 5 && out.compare(out.size() - 5, 5, ".pcap") == 0
					? out.substr(0, out.size() - 5) + ".exception.pcap"
					: out + ".exception.pcap";
	const auto mac = mac_address::parse(argv[4]);
	if (!mac)
		throw error("PORT_MAC '{}': not a MAC address", argv[4]);
	const uint32_t mtu = argc == 6 ? static_cast<uint32_t>(std::stoul(argv[5])) : 1500;

	// The snapshot sluiced would publish for this configuration, before
	// any health check has run: every backend healthy, next hops from the
	// configuration (gateway_mac, or the backend's own mac for L2 DSR).
	const config cfg = load_config_file(argv[1]);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	auto snap = std::make_unique<sluice_snapshot>();
	snapshot_builder builder;
	builder.build(snapshot_inputs{cfg, ids, [](uint32_t) { return true; },
				      [](uint32_t) -> std::optional<mac_address> { return std::nullopt; }, false},
		      *snap);

	const uint32_t entries = 65536;
	std::vector<uint8_t> table_mem(sluice_ct_table_bytes(entries) + SLUICE_CACHE_LINE);
	auto *ct = reinterpret_cast<sluice_ct_table *>(
		(reinterpret_cast<uintptr_t>(table_mem.data()) + SLUICE_CACHE_LINE - 1) & ~uintptr_t(SLUICE_CACHE_LINE - 1));
	// A key as a dataplane draws one: no decision may depend on it.
	sluice_ct_table_init(ct, entries, nullptr, sluice::random_u64());
	auto rec = std::make_unique<sluice_worker>();
	std::memset(rec.get(), 0, sizeof(*rec));

	sluice_dp dp{ct->buckets, ct->n_buckets, rec.get(), 0};
	sluice_env env{snap.get(), &dp, ct->to, 1000, sluice_env_mtu(mtu, snap.get()), ct->secret};
	sluice_vip_memo memo{};
	uint8_t port_mac[6];
	std::memcpy(port_mac, mac->bytes.data(), 6);

	pcap_writer tx(out), kernel(exc);
	uint64_t *cnt = rec->counters;
	for (const pcap_packet &pk : read_pcap(argv[2])) {
		cnt[SLUICE_CNT_rx_packets]++;
		cnt[SLUICE_CNT_rx_bytes] += pk.data.size();
		frame fr(pk.data);
		sluice_pkt p;
		const uint32_t r = sluice_parse(fr.data(), fr.data() + fr.len, &p);
		if (r != SLUICE_PARSE_OK) {
			cnt[r]++;
			continue;
		}
		sluice_flow f;
		sluice_classify(&env, &memo, 1, &p, &f);
		const sluice_verdict v = sluice_decide(&env, &p, &f);
		switch (v.act) {
		case SLUICE_ACT_FORWARD:
			apply_forward(fr, *snap, p, v, port_mac);
			cnt[SLUICE_CNT_tx_packets]++;
			cnt[SLUICE_CNT_tx_bytes] += fr.len;
			rec->vip[v.vip].packets++;
			rec->vip[v.vip].bytes += p.l3_len;
			rec->backend[v.backend].packets++;
			rec->backend[v.backend].bytes += p.l3_len;
			tx.write(pk, fr.data(), fr.len);
			break;
		case SLUICE_ACT_ECHO:
			apply_echo(fr, p, port_mac);
			cnt[SLUICE_CNT_icmp_echo_replied]++;
			tx.write(pk, fr.data(), fr.len);
			break;
		case SLUICE_ACT_TOO_BIG:
			apply_too_big(fr, p, v.mtu, port_mac);
			cnt[SLUICE_CNT_icmp_too_big_sent]++;
			tx.write(pk, fr.data(), fr.len);
			break;
		case SLUICE_ACT_KERNEL:
			kernel.write(pk, pk.data.data(), pk.data.size());
			break;
		default:
			break;
		}
	}
	cnt[SLUICE_CNT_conn_hit] += dp.hits;
	tx.close();
	kernel.close();
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
		std::printf("%s %llu\n", counter_table[i].name, static_cast<unsigned long long>(cnt[i]));
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	try {
		return run(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "decide_runner: %s\n", e.what());
		return 1;
	}
}
