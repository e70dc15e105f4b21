// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary frames through the shared packet path (parse,
// classify, decide, and the verdict applied with encap.h's writers) with a
// fixed snapshot of every VIP kind and a small connection table that the
// frames of one input share. An input is frames, each a 16-bit length
// (little endian) and that many bytes.
#include "native_path.h"
#include "world.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

using namespace sluice;

namespace {

struct world {
	std::unique_ptr<sluice_snapshot> snap = fuzz::build_snapshot();
	std::vector<uint8_t> table_mem;
	sluice_ct_table *ct = nullptr;
	std::unique_ptr<sluice_worker> rec = std::make_unique<sluice_worker>();

	world()
	{
		const uint32_t entries = 64; // small: inputs reach full buckets and eviction
		table_mem.resize(sluice_ct_table_bytes(entries) + SLUICE_CACHE_LINE);
		ct = reinterpret_cast<sluice_ct_table *>(
			(reinterpret_cast<uintptr_t>(table_mem.data()) + SLUICE_CACHE_LINE - 1) &
			~uintptr_t(SLUICE_CACHE_LINE - 1));
	}
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static world w;
	// A fresh table per input, so a finding replays from its input alone.
	std::memset(static_cast<void *>(w.ct), 0, sluice_ct_table_bytes(64));
	sluice_ct_table_init(w.ct, 64, nullptr, SLUICE_CT_REPLAY_KEY);
	std::memset(w.rec.get(), 0, sizeof(sluice_worker));
	sluice_dp dp{w.ct->buckets, w.ct->n_buckets, w.rec.get(), 0};
	sluice_env env{w.snap.get(), &dp, w.ct->to, 1000, sluice_env_mtu(1500, w.snap.get()), w.ct->secret};
	sluice_vip_memo memo{};
	const uint8_t port_mac[6] = {2, 0, 0, 0, 0, 1};

	size_t off = 0;
	for (int n = 0; n < 16 && off + 2 <= size; n++) {
		size_t len = data[off] | (size_t)data[off + 1] << 8;
		off += 2;
		len = std::min(len, size - off);
		native::frame fr(std::vector<uint8_t>(data + off, data + off + len));
		off += len;
		sluice_pkt p;
		if (sluice_parse(fr.data(), fr.data() + fr.len, &p) != SLUICE_PARSE_OK)
			continue;
		sluice_flow f;
		sluice_classify(&env, &memo, 1, &p, &f);
		const sluice_verdict v = sluice_decide(&env, &p, &f);
		if (v.act == SLUICE_ACT_FORWARD)
			native::apply_forward(fr, *w.snap, p, v, port_mac);
		else if (v.act == SLUICE_ACT_ECHO)
			native::apply_echo(fr, p, port_mac);
		else if (v.act == SLUICE_ACT_TOO_BIG)
			native::apply_too_big(fr, p, v.mtu, port_mac);
	}
	return 0;
}
