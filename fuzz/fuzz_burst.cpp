// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary frames through the DPDK worker's process_burst, as
// real mbufs from a real mempool (EAL without hugepages or PCI, no PMD),
// against the fixed snapshot of world.h and a small connection table the
// frames of one input share. The input is fuzz_packet's (frames, each a
// 16-bit little-endian length and its bytes), all in one burst, so the
// burst's two passes (classify and prefetch every packet, then decide and
// write) see each other's flows. Checks beyond ASan/UBSan: every mbuf is
// either sent, handed to the kernel or dropped and freed (the pool is whole
// again after each input), rx_packets counts every frame, and each frame
// sent is a whole, well-formed mbuf.
#include "world.h"
#include "worker.h"

#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

using namespace sluice;

namespace {

constexpr uint32_t ct_entries = 64; // small: inputs reach full buckets and eviction

struct world {
	rte_mempool *pool = nullptr;
	std::unique_ptr<sluice_snapshot> snap = fuzz::build_snapshot();
	std::unique_ptr<sluice_worker> rec = std::make_unique<sluice_worker>();
	worker_state st;

	world()
	{
		static std::string prefix = "sluice-fuzz-burst-" + std::to_string(getpid());
		const char *eal[] = {"fuzz_burst", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
				     "-m", "256", "--file-prefix", prefix.c_str(), "--log-level", "error", "-l", "0"};
		if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char **>(eal)) < 0) {
			std::fprintf(stderr, "fuzz_burst: rte_eal_init failed\n");
			std::abort();
		}
		// Room for a whole burst of the largest frames an input can hold.
		pool = rte_pktmbuf_pool_create("fuzz", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
		st.ct = static_cast<sluice_ct_table *>(
			rte_zmalloc("ct", sluice_ct_table_bytes(ct_entries), RTE_CACHE_LINE_SIZE));
		if (!pool || !st.ct) {
			std::fprintf(stderr, "fuzz_burst: no mempool or connection table\n");
			std::abort();
		}
		st.stats = rec.get();
		const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x01};
		std::memcpy(st.params.port_mac.addr_bytes, mac, 6);
	}
};

void check_sent(const rte_mbuf *m)
{
	// One segment, its length within the buffer, the packet length its
	// data length: what a PMD's transmit reads.
	if (m->nb_segs != 1 || m->next || m->pkt_len != m->data_len ||
	    (uint32_t)m->data_off + m->data_len > m->buf_len || m->data_len < sizeof(sluice_eth_hdr))
		std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static world w;
	// A fresh table and counters per input, so a finding replays from its
	// input alone.
	std::memset(static_cast<void *>(w.st.ct), 0, sluice_ct_table_bytes(ct_entries));
	sluice_ct_table_init(w.st.ct, ct_entries, nullptr, SLUICE_CT_REPLAY_KEY);
	std::memset(w.rec.get(), 0, sizeof(sluice_worker));
	w.st.now_s = SLUICE_CT_REPLAY_NOW_S;

	rte_mbuf *pkts[burst_size];
	uint16_t n = 0;
	size_t off = 0;
	while (n < burst_size && off + 2 <= size) {
		size_t len = data[off] | (size_t)data[off + 1] << 8;
		off += 2;
		len = std::min({len, size - off, (size_t)RTE_MBUF_DEFAULT_DATAROOM});
		rte_mbuf *m = rte_pktmbuf_alloc(w.pool);
		if (!m)
			std::abort();
		// Exactly the frame's bytes, as a PMD hands them over. A read past
		// data_len stays inside the mbuf's buffer, where ASan cannot see
		// it: the parser's bounds are fuzz_packet's to check, on a
		// buffer of exactly the frame.
		char *d = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
		std::memcpy(d, data + off, len);
		off += len;
		pkts[n++] = m;
	}
	burst_result out;
	process_burst(w.st, w.snap.get(), pkts, n, out);
	for (uint16_t i = 0; i < out.n_tx; i++) {
		check_sent(out.tx[i]);
		rte_pktmbuf_free(out.tx[i]);
	}
	for (uint16_t i = 0; i < out.n_kernel; i++)
		rte_pktmbuf_free(out.kernel[i]);
	if (rte_mempool_in_use_count(w.pool) != 0)
		std::abort(); // an mbuf neither sent, handed on nor freed
	if (w.rec->counters[SLUICE_CNT_rx_packets] != n)
		std::abort();
	return 0;
}
