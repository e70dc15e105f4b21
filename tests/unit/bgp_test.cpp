// SPDX-License-Identifier: Apache-2.0
// The BGP decision (announce a VIP only while the node is not drained, a
// dataplane worker forwards on the current snapshot and the VIP has a
// backend in its table), the BIRD text it becomes, node.bgp's validation,
// the drain flag across restarts, and the table digest two nodes compare.
#include "bgp.h"
#include "config_io.h"
#include "error.h"
#include "publishers.h"
#include "service.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

namespace sluice {
namespace {

namespace fs = std::filesystem;

vip_key key(const char *text)
{
	return vip_key::parse(text);
}

bgp_worker forwarding(const char *name = "dpdk eth1 q0")
{
	return bgp_worker{name, true, 0.01, ""};
}

bgp_inputs one_vip(uint32_t backends, uint32_t healthy, uint32_t in_table)
{
	bgp_inputs in;
	in.workers = {forwarding()};
	in.vips = {{key("10.200.1.1:80/tcp"), backends, healthy, in_table}};
	return in;
}

TEST(BgpDecide, AnnouncesAVipWithABackendInItsTableWhileAWorkerForwards)
{
	auto d = bgp_decide(one_vip(2, 2, 2));
	ASSERT_EQ(d.size(), 1u);
	EXPECT_TRUE(d[0].announce);
	EXPECT_EQ(d[0].reason, "2 of 2 backends in the table, 1 dataplane worker forwarding");
}

TEST(BgpDecide, WithdrawsAVipWithoutAnUsableBackendNamingWhy)
{
	EXPECT_EQ(bgp_decide(one_vip(0, 0, 0))[0].reason, "no backends");
	EXPECT_EQ(bgp_decide(one_vip(3, 0, 0))[0].reason, "no healthy backend (0 of 3 up)");
	EXPECT_EQ(bgp_decide(one_vip(3, 1, 0))[0].reason,
		  "no backend in the table (1 of 3 healthy, but drained or next hop unresolved)");
	for (auto in : {one_vip(0, 0, 0), one_vip(3, 0, 0), one_vip(3, 1, 0)})
		EXPECT_FALSE(bgp_decide(in)[0].announce);
}

TEST(BgpDecide, DrainWithdrawsEveryVipWhateverElseHolds)
{
	bgp_inputs in = one_vip(2, 2, 2);
	in.vips.push_back({key("[fd00:200::1]:443/tcp"), 1, 1, 1});
	in.drained = true;
	for (const auto &d : bgp_decide(in)) {
		EXPECT_FALSE(d.announce);
		EXPECT_EQ(d.reason, "node drained (sluicectl node undrain announces again)");
	}
}

TEST(BgpDecide, NoForwardingWorkerWithdrawsEveryVip)
{
	bgp_inputs in = one_vip(2, 2, 2);
	in.workers.clear();
	EXPECT_EQ(bgp_decide(in)[0].reason, "no dataplane attached");

	// Silent past the BGP heartbeat timeout (a killed dataplane, whose
	// record still says live), stopped, or not taking snapshots.
	in.heartbeat_timeout_ms = 300;
	in.workers = {bgp_worker{"dpdk eth1 q0", true, 0.4, ""}, bgp_worker{"xdp eth2", false, 0.0, ""},
		      bgp_worker{"dpdk eth1 q1", true, 0.01, "refused generation 7: checksum mismatch"}};
	auto d = bgp_decide(in);
	EXPECT_FALSE(d[0].announce);
	EXPECT_EQ(d[0].reason, "no dataplane worker forwarding (dpdk eth1 q0 silent for 0.4 s; xdp eth2 stopped; "
			       "dpdk eth1 q1 refused generation 7: checksum mismatch)");

	// One worker of several forwarding is enough.
	in.workers.push_back(forwarding("dpdk eth1 q2"));
	EXPECT_TRUE(bgp_decide(in)[0].announce);
}

TEST(BgpDecide, TheHeartbeatTimeoutIsTheBoundary)
{
	bgp_worker w{"w", true, 0.300, ""};
	EXPECT_TRUE(bgp_worker_forwards(w, 300));
	w.heartbeat_age_s = 0.301;
	EXPECT_FALSE(bgp_worker_forwards(w, 300));
	EXPECT_TRUE(bgp_worker_forwards(w, 1000));
}

// sluice-xdp stopped with --keep-attached leaves its program forwarding: the
// node stays announced through the restart, for the grace only.
TEST(BgpDecide, AHandedOverWorkerForwardsForTheGraceOnly)
{
	bgp_inputs in = one_vip(2, 2, 2);
	in.workers = {bgp_worker{"xdp eth0", false, 0.5, "", true}};
	EXPECT_TRUE(bgp_decide(in)[0].announce) << bgp_decide(in)[0].reason;
	in.workers[0].heartbeat_age_s = bgp_handover_grace_ms / 1000.0 + 0.001;
	const bgp_decision d = bgp_decide(in)[0];
	EXPECT_FALSE(d.announce);
	EXPECT_NE(d.reason.find("xdp eth0 handed over 5.0 s ago and not taken over"), std::string::npos) << d.reason;
	// A plain stop withdraws at once.
	in.workers = {bgp_worker{"xdp eth0", false, 0.0, ""}};
	EXPECT_FALSE(bgp_decide(in)[0].announce);
}

TEST(BgpPrefixes, OneRoutePerAddressAnnouncedWhenAnyOfItsVipsIs)
{
	std::vector<bgp_decision> d = {
		{key("10.200.1.1:80/tcp"), true, ""},
		{key("10.200.1.1:443/tcp"), false, ""}, // shares the address: the route stays
		{key("10.200.1.2:53/udp"), false, ""},
		{key("[fd00:200::1]:443/tcp"), true, ""},
		{key("10.200.1.0:80/tcp"), true, ""},
	};
	std::vector<std::string> got;
	for (const auto &a : bgp_prefixes(d))
		got.push_back(a.str());
	EXPECT_EQ(got, (std::vector<std::string>{"10.200.1.0", "10.200.1.1", "fd00:200::1"}));
}

TEST(BirdInclude, StaticProtocolsPerFamilyWithTheCommunities)
{
	bgp_config b;
	b.protocol = "lb";
	b.communities = {"65010:100", "65010:1:2"};
	const std::string text = render_bird_include(
		b, {*ip_address::parse("10.200.1.1"), *ip_address::parse("fd00:200::1")});
	const std::string filter =
		"{ import filter { bgp_community.add((65010,100)); bgp_large_community.add((65010,1,2)); accept; }; }";
	EXPECT_NE(text.find("protocol static lb4 {\n\tipv4 " + filter + ";\n\troute 10.200.1.1/32 blackhole;\n}\n"),
		  std::string::npos)
		<< text;
	EXPECT_NE(text.find("protocol static lb6 {\n\tipv6 " + filter + ";\n\troute fd00:200::1/128 blackhole;\n}\n"),
		  std::string::npos)
		<< text;

	// Nothing to announce still defines both protocols (bird.conf's export
	// filters name them), without routes.
	b.communities.clear();
	EXPECT_EQ(render_bird_include(b, {}).substr(render_bird_include(b, {}).find("protocol")),
		  "protocol static lb4 {\n\tipv4;\n}\nprotocol static lb6 {\n\tipv6;\n}\n");
}

TEST(BgpCommunity, StandardAndLargeOnly)
{
	EXPECT_EQ(parse_bgp_community("65010:100"), (std::vector<uint32_t>{65010, 100}));
	EXPECT_EQ(parse_bgp_community("0:65535"), (std::vector<uint32_t>{0, 65535}));
	EXPECT_EQ(parse_bgp_community("4200000000:1:2"), (std::vector<uint32_t>{4200000000u, 1, 2}));
	for (const char *bad : {"", "65010", "65536:1", "1:65536", "1:2:3:4", "a:b", "1::2", ":1", "1:", "01:2",
				"1:-2", "4294967296:1:1", " 1:2"})
		EXPECT_FALSE(parse_bgp_community(bad)) << bad;
}

config bgp_yaml(const std::string &bgp)
{
	return config_from_yaml("node:\n  source_ipv4: 10.0.0.2\n  bgp:\n" + bgp);
}

std::string bgp_error(const std::string &bgp)
{
	try {
		bgp_yaml(bgp);
	} catch (const error &e) {
		return e.what();
	}
	return "accepted";
}

TEST(BgpConfig, DefaultsAndRoundTrip)
{
	config c = bgp_yaml("    enabled: true\n    communities: [\"65010:100\", 65010:7:9]\n");
	ASSERT_TRUE(c.node.bgp);
	EXPECT_TRUE(c.node.bgp->enabled);
	EXPECT_EQ(c.node.bgp->bird_socket, "/run/bird/bird.ctl");
	EXPECT_EQ(c.node.bgp->include_file, "/run/sluice/bird/sluice.conf");
	EXPECT_EQ(c.node.bgp->protocol, "sluice_vips");
	EXPECT_EQ(c.node.bgp->heartbeat_timeout_ms, 300u);
	EXPECT_EQ(c.node.bgp->communities, (std::vector<std::string>{"65010:100", "65010:7:9"}));
	// dump | apply: the same configuration.
	EXPECT_EQ(config_from_yaml(config_to_yaml(c)), c);
	// No section: none, and none written.
	config none = config_from_yaml("node:\n  source_ipv4: 10.0.0.2\n");
	EXPECT_FALSE(none.node.bgp);
	EXPECT_EQ(config_to_yaml(none).find("bgp"), std::string::npos);
}

TEST(BgpConfig, EveryBadValueIsOneLineNamingTheField)
{
	EXPECT_EQ(bgp_error("    enabled: yes\n"), "node.bgp.enabled: 'yes' is not true or false");
	EXPECT_EQ(bgp_error("    enable: true\n"), "node.bgp.enable: unknown field 'enable'");
	EXPECT_EQ(bgp_error("    bird_socket: bird.ctl\n"),
		  "node.bgp.bird_socket: 'bird.ctl' must be an absolute path of at most 107 bytes (BIRD's control "
		  "socket, e.g. /run/bird/bird.ctl)");
	EXPECT_EQ(bgp_error("    include_file: /run/sluice/bird/\n"),
		  "node.bgp.include_file: '/run/sluice/bird/' must be an absolute file path (BIRD includes it, e.g. "
		  "/run/sluice/bird/sluice.conf)");
	EXPECT_EQ(bgp_error("    protocol: 4vips\n"),
		  "node.bgp.protocol: '4vips' is not a BIRD protocol name (letters, digits and _, not starting "
		  "with a digit, at most 60)");
	EXPECT_EQ(bgp_error("    communities: [\"65010:100\", \"65536:1\"]\n"),
		  "node.bgp.communities[1]: '65536:1' is not a BGP community (A:B, each 0-65535, or a large "
		  "community A:B:C, each 0-4294967295)");
	EXPECT_EQ(bgp_error("    communities: \"65010:100\"\n"),
		  "node.bgp.communities: expected a list of communities (like [\"65010:100\"])");
	EXPECT_EQ(bgp_error("    heartbeat_timeout_ms: 10\n"), "node.bgp.heartbeat_timeout_ms: 10 is out of range 20-10000");
	EXPECT_EQ(bgp_error("    heartbeat_timeout_ms: \"300\"\n"),
		  "node.bgp.heartbeat_timeout_ms: '300' is quoted: write the number without quotes");
	EXPECT_EQ(bgp_error("    - enabled\n"), "node.bgp: expected a mapping, got [\"enabled\"]");
}

class ServiceBgp : public ::testing::Test {
protected:
	void SetUp() override
	{
		dir = fs::temp_directory_path() / ("sluice-bgp-" + std::to_string(::getpid()) + "-" +
						   ::testing::UnitTest::GetInstance()->current_test_info()->name());
		fs::remove_all(dir);
		fs::create_directories(dir / "a");
		fs::create_directories(dir / "b");
	}
	void TearDown() override { fs::remove_all(dir); }
	fs::path dir;
};

TEST_F(ServiceBgp, DrainSurvivesARestartAndAnApplyOfTheFleetsFile)
{
	const config c = config_from_yaml("node: {source_ipv4: 10.0.0.2}\nvips:\n  - address: 10.200.1.1\n"
					  "    port: 80\n    backends: [{address: 10.0.0.11}]\n");
	{
		memory_publisher pub;
		service s(pub, (dir / "a").string(), c);
		json r = s.handle(json{{"verb", "node.drain"}, {"args", json::object()}});
		ASSERT_TRUE(r["ok"]) << r.dump();
		EXPECT_TRUE(r["result"]["drained"]);
		EXPECT_TRUE(r["result"]["changed"]);
		// apply -f of a file (which has no drain in it) leaves it drained.
		json args = json::object();
		args["yaml"] = "node: {source_ipv4: 10.0.0.2}\nvips: []\n";
		json a = s.handle(json{{"verb", "apply"}, {"args", args}});
		ASSERT_TRUE(a["ok"]) << a.dump();
	}
	memory_publisher pub;
	service s(pub, (dir / "a").string(), config{});
	EXPECT_TRUE(s.stats().drained);
	json st = s.handle(json{{"verb", "node.status"}, {"args", json::object()}});
	EXPECT_TRUE(st["result"]["drained"]);
	json u = s.handle(json{{"verb", "node.undrain"}, {"args", json::object()}});
	EXPECT_FALSE(u["result"]["drained"]);
	EXPECT_FALSE(s.stats().drained);
}

TEST_F(ServiceBgp, NodeStatusSaysWhyWithoutADataplaneAndThatBgpIsOff)
{
	memory_publisher pub;
	service s(pub, dir.string(),
		  config_from_yaml("node: {source_ipv4: 10.0.0.2}\nvips:\n  - address: 10.200.1.1\n    port: 80\n"
				   "    backends: [{address: 10.0.0.11}]\n"));
	json r = s.handle(json{{"verb", "node.status"}, {"args", json::object()}})["result"];
	EXPECT_FALSE(r["bgp"]["enabled"]);
	EXPECT_FALSE(r["bgp"]["in_sync"]);
	ASSERT_EQ(r["vips"].size(), 1u);
	EXPECT_FALSE(r["vips"][0]["announce"]);
	EXPECT_EQ(r["vips"][0]["reason"], "no dataplane attached");
}

// Two nodes given the same configuration in another order (so other ids)
// build the same tables: the same digest. A change that moves flows
// changes it.
TEST_F(ServiceBgp, TheDigestIsTheSameWhateverTheOrderAndIds)
{
	const std::string yaml = "node: {source_ipv4: 10.0.0.2}\nvips:\n"
				 "  - address: 10.200.1.1\n    port: 80\n    ring_size: 251\n"
				 "    backends: [{address: 10.0.0.11}, {address: 10.0.0.12, weight: 50}, {address: 10.0.0.13}]\n"
				 "  - address: 10.200.1.2\n    port: 53\n    protocol: udp\n    ring_size: 251\n"
				 "    backends: [{address: 10.0.0.21}]\n";
	memory_publisher pa, pb;
	service a(pa, (dir / "a").string(), config_from_yaml(yaml));
	service b(pb, (dir / "b").string(), config{});
	auto ok = [&](const json &req) {
		json r = b.handle(req);
		ASSERT_TRUE(r["ok"]) << r.dump();
	};
	ok(json{{"verb", "apply"}, {"args", {{"yaml", "node: {source_ipv4: 10.0.0.2}\n"}}}});
	ok(json{{"verb", "vip.add"}, {"args", {{"vip", "10.200.1.2:53/udp"}, {"ring_size", "251"}}}});
	ok(json{{"verb", "backend.add"}, {"args", {{"vip", "10.200.1.2:53/udp"}, {"address", "10.0.0.21"}}}});
	ok(json{{"verb", "vip.add"}, {"args", {{"vip", "10.200.1.1:80/tcp"}, {"ring_size", "251"}}}});
	for (const char *addr : {"10.0.0.13", "10.0.0.12", "10.0.0.11"})
		ok(json{{"verb", "backend.add"}, {"args", {{"vip", "10.200.1.1:80/tcp"}, {"address", addr}}}});
	ok(json{{"verb", "backend.set"},
		{"args", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.12"}, {"weight", "50"}}}});

	auto digests = [](service &s) {
		std::map<std::string, std::string> out;
		for (const auto &v : s.stats().vips)
			out[v.cfg.key.str()] = v.digest;
		return out;
	};
	const auto da = digests(a), db = digests(b);
	EXPECT_EQ(da, db);
	ASSERT_EQ(da.size(), 2u);
	EXPECT_EQ(da.at("10.200.1.1:80/tcp").size(), 16u);
	EXPECT_NE(da.at("10.200.1.1:80/tcp"), da.at("10.200.1.2:53/udp"));
	// The ids differ (b added the UDP VIP first), the tables do not.
	EXPECT_NE(a.stats().vips[0].id, b.stats().vips[1].id);

	ok(json{{"verb", "backend.set"},
		{"args", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.12"}, {"weight", "100"}}}});
	EXPECT_NE(digests(b).at("10.200.1.1:80/tcp"), da.at("10.200.1.1:80/tcp"));
	EXPECT_EQ(digests(b).at("10.200.1.2:53/udp"), da.at("10.200.1.2:53/udp"));
}

} // namespace
} // namespace sluice
