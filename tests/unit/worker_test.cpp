// SPDX-License-Identifier: Apache-2.0
// The DPDK worker's packet path, driven directly: real mbufs from a real
// mempool (EAL without hugepages or PCI), a snapshot built by the control
// plane's own builder, no PMD. The fixture suite (dpdk_fixture_test.py)
// checks every case through `sluice-dpdk --pcap`; these pin the decisions
// that depend on state across bursts: stickiness, drain, health, eviction.
#include "config_io.h"
#include "publishers.h"
#include "service.h"
#include "worker.h"

#include <sluice/encap.h>
#include <sluice/parse.h>

#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

using namespace sluice;

namespace {

rte_mempool *pool;

// Ethernet + IPv4 + TCP, as a client sends it to a VIP.
std::vector<uint8_t> tcp4(const char *src, uint16_t sport, const char *dst, uint16_t dport,
			  uint8_t flags, uint16_t payload = 16)
{
	std::vector<uint8_t> f(14 + 20 + 20 + payload, 0);
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(f.data());
	const uint8_t router[6] = {0x02, 0, 0, 0, 0, 0x01}, lb[6] = {0x02, 0, 0, 0, 0, 0x02};
	std::memcpy(eth->src, router, 6);
	std::memcpy(eth->dst, lb, 6);
	eth->type_be = htons(SLUICE_ETH_P_IPV4);
	auto *ip = reinterpret_cast<sluice_ipv4_hdr *>(f.data() + 14);
	ip->version_ihl = 0x45;
	ip->tos = 0x2e; // DSCP 11, ECN 2: copied to the outer header
	ip->total_len_be = htons(static_cast<uint16_t>(f.size() - 14));
	ip->frag_off_be = htons(SLUICE_IPV4_DF);
	ip->ttl = 61;
	ip->protocol = SLUICE_IPPROTO_TCP;
	inet_pton(AF_INET, src, &ip->saddr_be);
	inet_pton(AF_INET, dst, &ip->daddr_be);
	ip->check_be = sluice_ipv4_csum(ip);
	auto *tcp = reinterpret_cast<sluice_tcp_hdr *>(f.data() + 34);
	tcp->source_be = htons(sport);
	tcp->dest_be = htons(dport);
	tcp->doff_res = 5 << 4;
	tcp->flags = flags;
	return f;
}

rte_mbuf *mbuf_of(const std::vector<uint8_t> &f)
{
	rte_mbuf *m = rte_pktmbuf_alloc(pool);
	char *d = rte_pktmbuf_append(m, static_cast<uint16_t>(f.size()));
	std::memcpy(d, f.data(), f.size());
	return m;
}

class WorkerTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		dir = std::filesystem::temp_directory_path() / ("sluice-worker-" + std::to_string(getpid()));
		std::filesystem::remove_all(dir);
		std::filesystem::create_directories(dir);
		svc = std::make_unique<service>(pub, dir, config_from_yaml(R"(
node: {source_ipv4: 10.0.0.2, gateway_mac: "02:00:00:00:00:fe"}
vips:
  - address: 10.200.1.1
    port: 80
    ring_size: 251
    backends: [{address: 10.0.0.11}, {address: 10.0.0.12}, {address: 10.0.0.13}]
)"));
		stats = static_cast<sluice_worker *>(std::calloc(1, sizeof(sluice_worker)));
		uint32_t entries = 1024;
		st.ct = static_cast<sluice_ct_table *>(
			rte_zmalloc("ct", sluice_ct_table_bytes(entries), RTE_CACHE_LINE_SIZE));
		sluice_ct_table_init(st.ct, entries, nullptr, 0x9E3779B97F4A7C15ull);
		st.stats = stats;
		st.now_s = 1000;
		const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x02};
		std::memcpy(st.params.port_mac.addr_bytes, mac, 6);
	}
	void TearDown() override
	{
		svc.reset();
		rte_free(st.ct);
		std::free(stats);
		std::filesystem::remove_all(dir);
	}

	// Runs one packet; returns the output frame if sent, empty if not.
	std::vector<uint8_t> run(const std::vector<uint8_t> &f, bool *to_kernel = nullptr)
	{
		rte_mbuf *m = mbuf_of(f);
		burst_result out;
		process_burst(st, &pub.last(), &m, 1, out);
		std::vector<uint8_t> r;
		if (to_kernel)
			*to_kernel = out.n_kernel == 1;
		if (out.n_tx == 1)
			r.assign(rte_pktmbuf_mtod(out.tx[0], uint8_t *),
				 rte_pktmbuf_mtod(out.tx[0], uint8_t *) + out.tx[0]->data_len);
		for (uint16_t i = 0; i < out.n_tx; i++)
			rte_pktmbuf_free(out.tx[i]);
		for (uint16_t i = 0; i < out.n_kernel; i++)
			rte_pktmbuf_free(out.kernel[i]);
		return r;
	}

	// The backend (outer destination's last byte) a flow's packet went to.
	int backend_of(const char *client, uint16_t port, uint8_t flags = SLUICE_TCP_ACK)
	{
		auto out = run(tcp4(client, port, "10.200.1.1", 80, flags));
		if (out.empty())
			return -1;
		return out[14 + 19];
	}

	json call(const std::string &verb, json args)
	{
		json r = svc->handle(json{{"verb", verb}, {"args", args}});
		EXPECT_TRUE(r["ok"]) << r.dump();
		return r;
	}

	memory_publisher pub;
	std::unique_ptr<service> svc;
	std::filesystem::path dir;
	sluice_worker *stats = nullptr;
	worker_state st;
};

TEST_F(WorkerTest, ForwardsIpipWithTheOuterHeaderARouterWouldWrite)
{
	auto in = tcp4("192.0.2.1", 40000, "10.200.1.1", 80, SLUICE_TCP_SYN);
	auto out = run(in);
	ASSERT_EQ(out.size(), in.size() + 20);
	auto *eth = reinterpret_cast<sluice_eth_hdr *>(out.data());
	EXPECT_EQ(eth->dst[5], 0xfe); // the gateway
	EXPECT_EQ(eth->src[5], 0x02); // the port
	auto *o = reinterpret_cast<sluice_ipv4_hdr *>(out.data() + 14);
	EXPECT_EQ(o->protocol, SLUICE_IPPROTO_IPIP);
	EXPECT_EQ(o->ttl, 64);
	EXPECT_EQ(o->tos, 0x2e);
	EXPECT_EQ(ntohs(o->frag_off_be), SLUICE_IPV4_DF);
	EXPECT_EQ(ntohs(o->total_len_be), in.size() - 14 + 20);
	EXPECT_EQ(sluice_ipv4_csum(o), 0); // a valid checksum sums to zero
	char src[16];
	inet_ntop(AF_INET, &o->saddr_be, src, sizeof(src));
	EXPECT_STREQ(src, "10.0.0.2");
	// The inner packet is untouched.
	EXPECT_EQ(std::vector<uint8_t>(out.begin() + 34, out.end()),
		  std::vector<uint8_t>(in.begin() + 14, in.end()));
	EXPECT_EQ(stats->counters[SLUICE_CNT_conn_new], 1u);
	EXPECT_EQ(stats->counters[SLUICE_CNT_tx_packets], 1u);
}

TEST_F(WorkerTest, FlowsStickAndSpread)
{
	std::map<int, int> per_backend;
	for (uint16_t p = 0; p < 300; p++) {
		int b = backend_of("192.0.2.7", static_cast<uint16_t>(20000 + p), SLUICE_TCP_SYN);
		ASSERT_GE(b, 11);
		ASSERT_LE(b, 13);
		per_backend[b]++;
		EXPECT_EQ(backend_of("192.0.2.7", static_cast<uint16_t>(20000 + p)), b);
	}
	EXPECT_EQ(per_backend.size(), 3u);
	// 300 flows in 256 buckets: a SYN whose bucket already holds four
	// established flows is forwarded untracked (its flow still sticks: the
	// second packet is picked again, to the same backend). Every other
	// second packet hits.
	const uint64_t untracked = stats->counters[SLUICE_CNT_conn_syn_untracked];
	EXPECT_LE(untracked, 5u);
	EXPECT_EQ(stats->counters[SLUICE_CNT_conn_hit], 300u - untracked);
}

TEST_F(WorkerTest, DrainKeepsFlowsUnhealthyAndRemovedMoveThem)
{
	// One established flow per backend.
	std::map<int, uint16_t> flow_of;
	for (uint16_t p = 1000; flow_of.size() < 3 && p < 2000; p++)
		flow_of.emplace(backend_of("192.0.2.9", p, SLUICE_TCP_SYN), p);
	ASSERT_EQ(flow_of.size(), 3u);

	call("backend.set", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.11"}, {"drain", true}});
	call("backend.del", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.12"}});
	EXPECT_EQ(backend_of("192.0.2.9", flow_of[11]), 11); // drained: stays
	EXPECT_EQ(backend_of("192.0.2.9", flow_of[12]), 13); // removed: moves to the one left
	EXPECT_EQ(backend_of("192.0.2.9", flow_of[13]), 13);
	EXPECT_EQ(stats->counters[SLUICE_CNT_conn_repick], 1u);
	for (uint16_t p = 5000; p < 5050; p++) // new flows never reach the drained one
		EXPECT_EQ(backend_of("192.0.2.10", p, SLUICE_TCP_SYN), 13);

	call("backend.set", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}, {"drain", true}});
	EXPECT_EQ(backend_of("192.0.2.11", 7, SLUICE_TCP_SYN), -1);
	EXPECT_EQ(stats->counters[SLUICE_CNT_drop_no_backend], 1u);
}

TEST_F(WorkerTest, ConnectionsExpireAndAFullTableStillForwards)
{
	int b = backend_of("192.0.2.20", 1, SLUICE_TCP_SYN);
	ASSERT_GT(b, 0);
	st.now_s += SLUICE_CT_TIMEOUT_SYN_S + 1;
	backend_of("192.0.2.20", 1);
	EXPECT_EQ(stats->counters[SLUICE_CNT_conn_new], 2u); // expired: a new connection
	// 5,000 flows into 1,024 entries: every packet still goes out.
	for (uint16_t p = 0; p < 5000; p++)
		ASSERT_GT(backend_of("192.0.2.21", p, SLUICE_TCP_SYN), 0);
	EXPECT_GT(stats->counters[SLUICE_CNT_conn_evict], 3000u);
}

TEST_F(WorkerTest, NonVipToTheKernelMalformedCounted)
{
	bool kernel = false;
	EXPECT_TRUE(run(tcp4("192.0.2.1", 1, "10.0.0.2", 22, SLUICE_TCP_SYN), &kernel).empty());
	EXPECT_TRUE(kernel);
	auto bad = tcp4("192.0.2.1", 1, "10.200.1.1", 80, SLUICE_TCP_SYN);
	bad[14] = 0x44; // IHL 4
	EXPECT_TRUE(run(bad, &kernel).empty());
	EXPECT_FALSE(kernel);
	EXPECT_EQ(stats->counters[SLUICE_CNT_drop_bad_ipv4_ihl], 1u);
	// A VIP address on another port: not the kernel's either.
	EXPECT_TRUE(run(tcp4("192.0.2.1", 1, "10.200.1.1", 81, SLUICE_TCP_SYN), &kernel).empty());
	EXPECT_FALSE(kernel);
	EXPECT_EQ(stats->counters[SLUICE_CNT_drop_vip_proto], 1u);
	EXPECT_EQ(stats->counters[SLUICE_CNT_pass_not_vip], 1u);
}

TEST_F(WorkerTest, TooBigWithDfGetsFragNeededFromTheVip)
{
	auto in = tcp4("192.0.2.1", 5, "10.200.1.1", 80, SLUICE_TCP_ACK, 1500 - 40);
	auto out = run(in);
	ASSERT_EQ(out.size(), 14u + 28 + SLUICE_ICMP_QUOTE_MAX);
	auto *ip = reinterpret_cast<sluice_ipv4_hdr *>(out.data() + 14);
	auto *icmp = reinterpret_cast<sluice_icmp_hdr *>(out.data() + 34);
	EXPECT_EQ(ip->protocol, SLUICE_IPPROTO_ICMP);
	EXPECT_EQ(icmp->type, SLUICE_ICMP_DEST_UNREACH);
	EXPECT_EQ(icmp->code, SLUICE_ICMP_FRAG_NEEDED);
	EXPECT_EQ(ntohl(icmp->rest_be), 1480u);
	EXPECT_EQ(sluice_ipv4_csum(ip), 0);
	uint64_t sum = sluice_csum_add(0, out.data() + 34, out.data() + out.size(),
				       static_cast<uint32_t>(out.size() - 34), 2048);
	EXPECT_EQ(sluice_csum_fold(sum), 0);
	char s[16], d[16];
	inet_ntop(AF_INET, &ip->saddr_be, s, sizeof(s));
	inet_ntop(AF_INET, &ip->daddr_be, d, sizeof(d));
	EXPECT_STREQ(s, "10.200.1.1");
	EXPECT_STREQ(d, "192.0.2.1");
	EXPECT_EQ(std::memcmp(out.data() + 42, in.data() + 14, SLUICE_ICMP_QUOTE_MAX), 0);
	EXPECT_EQ(reinterpret_cast<sluice_eth_hdr *>(out.data())->dst[5], 0x01); // back to the router
}

} // namespace

int main(int argc, char **argv)
{
	::testing::InitGoogleTest(&argc, argv);
	std::string prefix = "sluice-worker-test-" + std::to_string(getpid());
	const char *eal[] = {"worker_test", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "128",
			     "--file-prefix", prefix.c_str(), "--log-level", "error", "-l", "0"};
	if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char **>(eal)) < 0) {
		std::fprintf(stderr, "worker_test: rte_eal_init failed\n");
		return 1;
	}
	pool = rte_pktmbuf_pool_create("pool", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (!pool) {
		std::fprintf(stderr, "worker_test: no mempool\n");
		return 1;
	}
	int r = RUN_ALL_TESTS();
	// --no-shconf still makes a runtime directory: leave nothing behind.
	const std::string runtime_dir = rte_eal_get_runtime_dir();
	rte_mempool_free(pool);
	rte_eal_cleanup();
	rmdir(runtime_dir.c_str());
	return r;
}
