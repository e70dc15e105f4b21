// SPDX-License-Identifier: Apache-2.0
// The configuration: the bad-input table (tests/data/bad_inputs.json, also
// run against a live sluiced by controlplane_e2e.py), round trips, and the
// service's all-or-nothing changes, persistence and snapshots, published
// into memory.
#include "config_io.h"
#include "error.h"
#include "publishers.h"
#include "service.h"

#include <sluice/packet.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace sluice;
namespace fs = std::filesystem;

namespace {

std::string data_dir()
{
	const char *d = std::getenv("SLUICE_TEST_DATA");
	return d ? d : "tests/data";
}

std::string read_file(const std::string &p)
{
	std::ifstream in(p);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

json bad_inputs()
{
	return json::parse(read_file(data_dir() + "/bad_inputs.json"));
}

std::string error_of(const std::function<void()> &f)
{
	try {
		f();
	} catch (const error &e) {
		return e.what();
	}
	return "(no error)";
}

TEST(BadInputs, EveryYamlCaseGivesItsLine)
{
	json t = bad_inputs();
	ASSERT_GE(t["yaml"].size() + t["cli"].size(), 20u);
	for (const auto &c : t["yaml"]) {
		std::string got = error_of([&] { config_from_yaml(c["yaml"].get<std::string>()); });
		if (c.contains("error"))
			EXPECT_EQ(got, c["error"].get<std::string>()) << c["name"];
		else
			EXPECT_EQ(got.rfind(c["error_prefix"].get<std::string>(), 0), 0u)
				<< c["name"] << ": " << got;
	}
}

TEST(BadInputs, BaseConfigurationIsValid)
{
	config c = config_from_yaml(bad_inputs()["base_yaml"].get<std::string>());
	EXPECT_EQ(c.vips.size(), 2u);
}

TEST(Config, ExampleLoadsAndRoundTripsThroughYaml)
{
	config c = load_config_file(data_dir() + "/../../examples/sluice.yaml");
	ASSERT_EQ(c.vips.size(), 3u);
	EXPECT_EQ(c.vips[0].key.str(), "10.200.1.1:80/tcp");
	EXPECT_EQ(c.vips[0].backends[2].weight, 50u);
	EXPECT_EQ(c.vips[1].mode, vip_mode::gue);
	EXPECT_EQ(c.vips[1].gue_port, 6080);
	EXPECT_EQ(c.vips[2].key.address.str(), "fd00:200::1");
	config again = config_from_yaml(config_to_yaml(c));
	EXPECT_EQ(again, c);
	EXPECT_EQ(config_from_json(config_to_json(c)), c);
}

TEST(Config, DefaultsAreTheDocumentedOnes)
{
	config c = config_from_yaml("node: {source_ipv4: 10.0.0.2}\n"
				    "vips: [{address: 10.200.1.1, port: 80, backends: [{address: 10.0.0.11}]}]\n");
	const auto &v = c.vips[0];
	EXPECT_EQ(v.key.proto, l4_proto::tcp);
	EXPECT_EQ(v.mode, vip_mode::ipip);
	EXPECT_EQ(v.ring_size, 65537u);
	EXPECT_EQ(v.backends[0].weight, 100u);
	EXPECT_EQ(v.backends[0].check.type, check_type::none);
}

// Found by fuzz/fuzz_config (fuzz/regressions/fuzz_config/not-utf8-yaml):
// a YAML file whose text is not UTF-8 made the error message's JSON dump
// throw an exception no caller expects; it is one line naming the place.
TEST(Config, TextThatIsNotUtf8IsRefusedWithItsPlace)
{
	const std::string bad = "vips:\n  - address: 10.\xc7\xd1.0.78\n";
	EXPECT_EQ(error_of([&] { config_from_yaml(bad); }), "yaml: line 2, column 14: not UTF-8 text");
	EXPECT_EQ(error_of([&] { config_from_yaml("vips:\n  - \xff: 1\n"); }),
		  "yaml: line 2, column 5: not UTF-8 text");
	// Overlong, surrogate and truncated sequences too; real UTF-8 passes.
	for (const char *s : {"\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf5\x80\x80\x80"})
		EXPECT_NE(error_of([&] { config_from_yaml(std::string("node: {source_ipv4: '") + s + "'}\n"); })
				  .find("not UTF-8 text"),
			  std::string::npos)
			<< s;
	EXPECT_NE(error_of([] { config_from_yaml("node: {source_ipv4: 'h\xc3\xa9'}\n"); }).find("is not an IPv4"),
		  std::string::npos);
}

// Found by fuzz/fuzz_config (fuzz/regressions/fuzz_config/check-options-
// without-type): options a check's type does not use were accepted, then
// silently dropped from `dump` and the state file.
TEST(Config, CheckOptionsItsTypeDoesNotUseAreRefused)
{
	const std::string head = "node: {source_ipv4: 10.0.0.2}\nvips:\n  - address: 10.200.1.1\n    port: 80\n"
				 "    backends:\n      - address: 10.0.0.11\n        check: ";
	EXPECT_EQ(error_of([&] { config_from_yaml(head + "{ type:, port: 53 }\n"); }),
		  "vips[0].backends[0].check.port: a check with no type takes no options (set type: tcp, http or "
		  "udp)");
	EXPECT_EQ(error_of([&] { config_from_yaml(head + "{ type: tcp, path: /x }\n"); }),
		  "vips[0].backends[0].check.path: only for an http check");
	EXPECT_EQ(error_of([&] { config_from_yaml(head + "{ type: http, send: ping }\n"); }),
		  "vips[0].backends[0].check.send: only for a udp check");
	const config ok = config_from_yaml(head + "{ type: http, port: 8080, path: /healthz }\n");
	EXPECT_EQ(config_from_yaml(config_to_yaml(ok)), ok);
}

// Numbers are plain and unquoted in a file (bad_inputs.json has the
// refusals); text that happens to be digits stays text where text goes.
TEST(Config, NumbersArePlainDecimalAndDigitsAreTextWhereTextGoes)
{
	const std::string head = "node: {source_ipv4: 10.0.0.2}\nvips:\n  - address: 10.200.1.2\n    port: 53\n"
				 "    protocol: udp\n    backends:\n      - address: 10.0.0.11\n";
	const config c = config_from_yaml(head + "        weight: 0\n        check: { type: udp, send: 123, expect: '007' }\n");
	EXPECT_EQ(c.vips[0].backends[0].weight, 0u);
	EXPECT_EQ(c.vips[0].backends[0].check.send, "123");
	EXPECT_EQ(c.vips[0].backends[0].check.expect, "007");
	EXPECT_EQ(config_from_yaml(config_to_yaml(c)), c);
	EXPECT_EQ(error_of([] { config_from_json(json::parse(R"({"vips": [{"address": "10.200.1.1", "port": "80"}]})")); }),
		  "vips[0].port: '80' is quoted: write the number without quotes");
	EXPECT_EQ(error_of([&] { config_from_yaml(head + "        weight: 99999999999999999999999\n"); }),
		  "vips[0].backends[0].weight: '99999999999999999999999' is not a non-negative integer");
}

TEST(Config, EmptyFileIsAnEmptyConfiguration)
{
	EXPECT_TRUE(config_from_yaml("").vips.empty());
	EXPECT_TRUE(config_from_yaml("# nothing yet\n").vips.empty());
}

TEST(Config, LoadErrorsNameTheFile)
{
	std::string e = error_of([] { load_config_file("/nonexistent/sluice.yaml"); });
	EXPECT_EQ(e, "/nonexistent/sluice.yaml: cannot read: No such file or directory");
}

// ------------------------------------------------------------ the service

class ServiceTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		dir = fs::temp_directory_path() /
		      ("sluice-svc-" + std::to_string(::getpid()) + "-" +
		       ::testing::UnitTest::GetInstance()->current_test_info()->name());
		fs::remove_all(dir);
		fs::create_directories(dir);
	}
	void TearDown() override { fs::remove_all(dir); }

	json call(service &s, const std::string &verb, json args = json::object())
	{
		return s.handle(json{{"verb", verb}, {"args", args}});
	}

	config base() { return config_from_yaml(bad_inputs()["base_yaml"].get<std::string>()); }

	// base_yaml with `what` replaced by `with`.
	std::string edit_base(const std::string &what, const std::string &with)
	{
		std::string y = bad_inputs()["base_yaml"];
		auto at = y.find(what);
		EXPECT_NE(at, std::string::npos) << what;
		return at == std::string::npos ? y : y.replace(at, what.size(), with);
	}

	fs::path dir;
};

TEST_F(ServiceTest, AddListChangeDelete)
{
	memory_publisher pub;
	service s(pub, dir, base());
	uint64_t g0 = pub.generation();
	EXPECT_GE(g0, 1u);

	json r = call(s, "vip.add", {{"vip", "[fd00:200::1]:443/tcp"}, {"ring_size", "251"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	EXPECT_EQ(pub.generation(), g0 + 1);
	r = call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}, {"weight", "7"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	r = call(s, "backend.set", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}, {"weight", "9"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	EXPECT_EQ(s.current_config().vips[0].backends[2].weight, 9u);

	json list = call(s, "vip.list")["result"];
	ASSERT_EQ(list.size(), 3u);
	EXPECT_EQ(list[2]["vip"], "[fd00:200::1]:443/tcp");
	EXPECT_EQ(list[0]["in_table"], 3);

	r = call(s, "backend.del", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.12"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	r = call(s, "vip.del", {{"vip", "10.200.1.2:53/udp"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	config c = s.current_config();
	ASSERT_EQ(c.vips.size(), 2u);
	EXPECT_EQ(c.vips[0].backends.size(), 2u);
}

TEST_F(ServiceTest, RefusedChangeLeavesEverythingAsItWas)
{
	memory_publisher pub;
	service s(pub, dir, base());
	config before = s.current_config();
	uint64_t gen = pub.generation();
	std::string state_before = read_file(dir / "state.json");

	json r = call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.50"}, {"weight", "-1"}});
	EXPECT_FALSE(r["ok"]);
	EXPECT_EQ(r["error"], "--weight: '-1' is not a non-negative integer");
	r = call(s, "apply", {{"yaml", "vips: [{address: 10.200.1.1, port: 80, ring_size: 100}]"}});
	EXPECT_FALSE(r["ok"]);
	r = call(s, "nonsense");
	EXPECT_EQ(r["error"], "unknown verb 'nonsense'");
	EXPECT_EQ(s.handle_line("{not json"), R"({"ok":false,"error":"request is not valid JSON"})");

	EXPECT_EQ(s.current_config(), before);
	EXPECT_EQ(pub.generation(), gen);
	EXPECT_EQ(read_file(dir / "state.json"), state_before);
}

TEST_F(ServiceTest, ApplyReplacesTheWholeConfiguration)
{
	memory_publisher pub;
	service s(pub, dir, base());
	json r = call(s, "apply", {{"yaml", "node: {source_ipv6: 'fd00::2'}\nvips: [{address: 'fd00:200::1', port: 443, backends: [{address: 'fd00::31'}]}]\n"}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	config c = s.current_config();
	ASSERT_EQ(c.vips.size(), 1u);
	EXPECT_EQ(c.vips[0].key.str(), "[fd00:200::1]:443/tcp");
	EXPECT_FALSE(c.node.source_ipv4);
	// dump gives back YAML that applies to the same configuration
	std::string yaml = call(s, "dump")["result"]["yaml"];
	EXPECT_EQ(config_from_yaml(yaml), c);
}

TEST_F(ServiceTest, DryRunAndDiffChangeNothingAndTheSameFilePublishesNothing)
{
	memory_publisher pub;
	service s(pub, dir, base());
	const uint64_t gen = pub.generation();
	const std::string state_before = read_file(dir / "state.json");
	const std::string heavier = edit_base("        weight: 50\n", "        weight: 80\n");
	const json want = json::array({"~ backend 10.0.0.12 of VIP 10.200.1.1:80/tcp: weight 50 -> 80"});

	for (const char *verb : {"diff", "apply"}) {
		json args{{"yaml", heavier}};
		if (std::string(verb) == "apply")
			args["dry_run"] = true;
		json r = call(s, verb, args);
		ASSERT_TRUE(r["ok"]) << r.dump();
		EXPECT_EQ(r["result"]["changes"], want) << verb;
		EXPECT_EQ(r["result"]["summary"], "0 added, 0 removed, 1 changed") << verb;
		EXPECT_EQ(pub.generation(), gen) << verb;
		EXPECT_EQ(s.current_config(), base()) << verb;
		EXPECT_EQ(read_file(dir / "state.json"), state_before) << verb;
	}
	// A dry run validates: a bad file is refused as apply refuses it.
	json r = call(s, "apply", {{"yaml", "vips: [{address: 10.200.1.1, port: 080}]"}, {"dry_run", true}});
	EXPECT_EQ(r["error"], "vips[0].port: '080' has a leading zero: write 80 (numbers are plain decimal)");

	// The running configuration again: nothing published, nothing saved.
	r = call(s, "apply", {{"yaml", bad_inputs()["base_yaml"]}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	EXPECT_EQ(r["result"]["changes"], json::array());
	EXPECT_EQ(r["result"]["applied"], false);
	EXPECT_EQ(pub.generation(), gen);
	EXPECT_EQ(read_file(dir / "state.json"), state_before);

	// A real change says what it changed and publishes once.
	r = call(s, "apply", {{"yaml", heavier}});
	ASSERT_TRUE(r["ok"]) << r.dump();
	EXPECT_EQ(r["result"]["changes"], want);
	EXPECT_EQ(r["result"]["generation"], gen + 1);
	EXPECT_EQ(pub.generation(), gen + 1);
	EXPECT_EQ(s.current_config().vips[0].backends[1].weight, 80u);
}

TEST_F(ServiceTest, RestartRestoresTheLastAcknowledgedStateAndIds)
{
	std::map<std::string, uint32_t> ids;
	{
		memory_publisher pub;
		service s(pub, dir, base());
		ASSERT_TRUE(call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}})["ok"]);
		ASSERT_TRUE(call(s, "backend.del", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.11"}})["ok"]);
		json list = call(s, "backend.list")["result"];
		for (const auto &b : list)
			ids[b["vip"].get<std::string>() + " " + b["address"].get<std::string>()] = b["id"];
	}
	memory_publisher pub;
	service s(pub, dir, config{}); // the state wins over the initial configuration
	EXPECT_TRUE(s.restored_from_state());
	config c = s.current_config();
	ASSERT_EQ(c.vips.size(), 2u);
	ASSERT_EQ(c.vips[0].backends.size(), 2u);
	EXPECT_EQ(c.vips[0].backends[0].address.str(), "10.0.0.12");
	EXPECT_EQ(c.vips[0].backends[1].address.str(), "10.0.0.13");
	json list = call(s, "backend.list")["result"];
	for (const auto &b : list)
		EXPECT_EQ(ids[b["vip"].get<std::string>() + " " + b["address"].get<std::string>()], b["id"]);
}

TEST_F(ServiceTest, FreedIdsAreReusedLast)
{
	memory_publisher pub;
	service s(pub, dir, base());
	auto id_of = [&](const std::string &addr) {
		json list = call(s, "backend.list")["result"];
		for (const auto &b : list)
			if (b["address"] == addr)
				return b["id"].get<uint32_t>();
		return UINT32_MAX;
	};
	uint32_t old = id_of("10.0.0.11");
	ASSERT_TRUE(call(s, "backend.del", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.11"}})["ok"]);
	ASSERT_TRUE(call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.77"}})["ok"]);
	EXPECT_NE(id_of("10.0.0.77"), old);
}

// Freed ids are kept in state.json so a restart still hands them out last;
// state files of earlier releases wrote them as an object keyed by id.
TEST_F(ServiceTest, FreedIdsSurviveARestartInBothStateForms)
{
	for (bool old_form : {false, true}) {
		std::filesystem::remove_all(dir / "state.json");
		uint32_t freed = UINT32_MAX;
		{
			memory_publisher pub;
			service s(pub, dir, base());
			// Held by name: a range-for over a member of a temporary reads freed memory.
			json listed = call(s, "backend.list");
			for (const auto &b : listed["result"])
				if (b["address"] == "10.0.0.11")
					freed = b["id"];
			ASSERT_NE(freed, UINT32_MAX) << listed.dump();
			ASSERT_TRUE(call(s, "backend.del", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.11"}})["ok"]);
		}
		if (old_form) {
			json st = json::parse(read_file(dir / "state.json"));
			json obj = json::object();
			for (const json &e : st["backend_pool"]["freed"])
				obj[std::to_string(e[0].get<uint32_t>())] = e[1];
			ASSERT_FALSE(obj.empty()) << st.dump();
			st["backend_pool"]["freed"] = obj;
			std::ofstream(dir / "state.json") << st.dump();
		}
		memory_publisher pub;
		service s(pub, dir, config{});
		ASSERT_TRUE(s.restored_from_state());
		ASSERT_TRUE(call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.77"}})["ok"]);
		json listed = call(s, "backend.list");
		for (const auto &b : listed["result"]) {
			if (b["address"] == "10.0.0.77") {
				EXPECT_NE(b["id"], freed) << (old_form ? "old form" : "array form");
			}
		}
	}
}

TEST_F(ServiceTest, CorruptStateIsAnErrorNotAnEmptyConfiguration)
{
	{
		std::ofstream(dir / "state.json") << "{ truncated";
	}
	memory_publisher pub;
	std::string e = error_of([&] { service s(pub, dir, base()); });
	EXPECT_NE(e.find("corrupt state file"), std::string::npos) << e;
}

// A first start whose configuration cannot be published (here: the
// publisher refuses) saves nothing: the next start tries the configuration
// again instead of crash-looping on a state.json it wrote.
TEST_F(ServiceTest, AFirstConfigurationThatCannotBePublishedIsNotSaved)
{
	struct refusing_publisher final : publisher {
		uint64_t publish(const std::function<void(sluice_snapshot &)> &) override
		{
			throw error("the segment refused it");
		}
		uint64_t generation() const override { return 0; }
		const sluice_shm *segment() const override { return nullptr; }
		std::chrono::milliseconds worker_timeout() const override { return std::chrono::seconds(1); }
	} refusing;
	std::string e = error_of([&] { service s(refusing, dir, base()); });
	EXPECT_EQ(e, "the segment refused it");
	EXPECT_FALSE(fs::exists(dir / "state.json"));
	// Published: saved.
	memory_publisher pub;
	{
		service s(pub, dir, base());
	}
	EXPECT_TRUE(fs::exists(dir / "state.json"));
}

// A next-hop refresh that copied the configuration before a change and
// finishes after it must not take away what the change resolved: the new
// backend keeps its MAC (no drop_no_nexthop, no missing share), and the
// change itself published once, with the MAC already in it.
TEST_F(ServiceTest, AStaleNextHopRefreshNeverUndoesAChange)
{
	const config cfg = config_from_yaml(R"(
node: {source_ipv4: 10.0.0.2}
vips:
  - {address: 10.200.1.1, port: 80, ring_size: 251, backends: [{address: 10.1.0.1}]}
)");
	std::mutex m;
	std::condition_variable cv;
	bool refresh_started = false, release = false;
	std::thread::id blocked_thread;
	hop_resolver resolver = [&](const ip_address &a) {
		std::unique_lock lk(m);
		if (std::this_thread::get_id() == blocked_thread) {
			refresh_started = true;
			cv.notify_all();
			cv.wait(lk, [&] { return release; });
		}
		service_hop h;
		h.mac = mac_address::parse(a.str() == "10.1.0.1" ? "02:00:00:00:00:01" : "02:00:00:00:00:02");
		return h;
	};
	memory_publisher pub;
	service s(pub, dir, cfg, true, resolver);
	std::thread refresher([&] {
		{
			std::lock_guard lk(m);
			blocked_thread = std::this_thread::get_id();
		}
		s.refresh_next_hops(); // copies the one-backend configuration, then waits in the lookup
	});
	{
		std::unique_lock lk(m);
		ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return refresh_started; }));
	}
	const uint64_t before = pub.generation();
	call(s, "backend.add", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.1.0.2"}});
	EXPECT_EQ(pub.generation(), before + 1) << "a change publishes once";
	auto has_mac = [&](const char *addr) {
		const ip_address want = *ip_address::parse(addr);
		for (const auto &b : pub.last().backends)
			if ((b.flags & SLUICE_BACKEND_PRESENT) && b.family == want.family &&
			    std::memcmp(b.addr, want.bytes.data(), 16) == 0)
				return (b.flags & SLUICE_BACKEND_HAS_MAC) != 0;
		return false;
	};
	EXPECT_TRUE(has_mac("10.1.0.2")) << "the change's own snapshot lacks the new backend's MAC";
	{
		std::lock_guard lk(m);
		release = true;
	}
	cv.notify_all();
	refresher.join();
	EXPECT_TRUE(has_mac("10.1.0.2")) << "the stale refresh took the new backend's MAC away";
	EXPECT_TRUE(has_mac("10.1.0.1"));
	json bl = call(s, "backend.list", {{"vip", "10.200.1.1:80/tcp"}});
	for (const auto &b : bl["result"])
		EXPECT_NE(b.value("next_hop_mac", ""), "") << b.dump();
}

// Verdicts that come together are published together: ten backends just
// added, probed at once against one listener, join in one or two publishes,
// not ten.
TEST_F(ServiceTest, HealthVerdictsThatComeTogetherPublishOnce)
{
	int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(l, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_ANY); // 127.0.0.1-10 on the loopback
	ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
	ASSERT_EQ(::listen(l, 64), 0);
	socklen_t len = sizeof(a);
	::getsockname(l, reinterpret_cast<sockaddr *>(&a), &len);
	std::string y = "node: {source_ipv4: 10.0.0.2, gateway_mac: '02:00:00:00:00:fe'}\nvips:\n"
			"  - {address: 10.200.1.1, port: 80, ring_size: 251, backends: [";
	for (int i = 1; i <= 10; i++)
		y += fmt::format("{}{{address: 127.0.0.{}, check: {{type: tcp, port: {}, interval_ms: 60000}}}}",
				 i > 1 ? ", " : "", i, ntohs(a.sin_port));
	y += "]}\n";
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(y));
	const uint64_t first = pub.generation();
	auto in_table = [&] { return call(s, "vip.list")["result"][0]["in_table"].get<int>(); };
	for (int i = 0; i < 500 && in_table() < 10; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	EXPECT_EQ(in_table(), 10);
	EXPECT_LE(pub.generation() - first, 2u) << "one publish per verdict";
	::close(l);
}

// A service destroyed while its checker delivers verdicts: the checker's
// callback publishes, and the publish asks the checker for each backend's
// status, so the checker must be stopped before it goes away (it once was
// reset first, and a verdict arriving meanwhile used a null checker).
TEST_F(ServiceTest, DestroyedWhileVerdictsArriveIsClean)
{
	int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(l, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
	ASSERT_EQ(::listen(l, 256), 0);
	socklen_t len = sizeof(a);
	::getsockname(l, reinterpret_cast<sockaddr *>(&a), &len);
	std::string y = "node: {source_ipv4: 10.0.0.2, gateway_mac: '02:00:00:00:00:fe'}\nvips:\n"
			"  - {address: 10.200.1.1, port: 80, ring_size: 251, backends: [";
	for (int i = 1; i <= 10; i++)
		y += fmt::format("{}{{address: 127.0.0.{}, check: {{type: tcp, port: {}, interval_ms: 60000}}}}",
				 i > 1 ? ", " : "", i, ntohs(a.sin_port));
	y += "]}\n";
	const config c = config_from_yaml(y);
	// New checked backends are probed at once, so verdicts arrive within
	// about a millisecond of the start: end the service around then.
	for (int round = 0; round < 40; round++) {
		std::filesystem::remove_all(dir / "state.json");
		memory_publisher pub;
		service s(pub, dir, c);
		std::this_thread::sleep_for(std::chrono::microseconds(50 * (round % 20)));
	}
	::close(l);
}

TEST_F(ServiceTest, SnapshotCarriesDrainAndLookup)
{
	memory_publisher pub;
	service s(pub, dir, base());
	ASSERT_TRUE(call(s, "backend.set", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.12"}, {"drain", true}})["ok"]);
	ASSERT_TRUE(call(s, "vip.add", {{"vip", "10.200.1.1:0/udp"}})["ok"]);
	const sluice_snapshot &snap = pub.last();
	EXPECT_EQ(snap.hdr.checksum, sluice_snapshot_checksum(&snap));
	EXPECT_EQ(snap.hdr.vip_count, 3u);

	auto addr = ip_address::parse("10.200.1.1")->bytes;
	uint32_t vid = sluice_vip_find(&snap, addr.data(), SLUICE_AF_INET, sluice_htons(80), SLUICE_IPPROTO_TCP);
	ASSERT_LT(vid, SLUICE_MAX_VIPS);
	const sluice_vip &v = snap.vips[vid];
	EXPECT_EQ(v.live_count, 1u);
	EXPECT_EQ(v.backend_count, 2u);
	EXPECT_EQ(v.mode, SLUICE_MODE_IPIP);
	// Every slot of the drained VIP's table names the one backend left.
	uint32_t only = snap.rings[v.ring_offset];
	for (uint32_t i = 0; i < v.ring_size; i++)
		ASSERT_EQ(snap.rings[v.ring_offset + i], only);
	EXPECT_EQ(snap.backends[only].addr[3], 11);
	bool saw_drained = false;
	for (const auto &b : snap.backends)
		if (b.family && b.addr[3] == 12) {
			EXPECT_TRUE(b.flags & SLUICE_BACKEND_DRAINING);
			EXPECT_TRUE(sluice_backend_keeps_flows(&b, vid)); // drained keeps its flows
			saw_drained = true;
		}
	EXPECT_TRUE(saw_drained);
	// Port 0 VIP matches any port; a TCP port without VIP matches nothing.
	uint32_t any = sluice_vip_find(&snap, addr.data(), SLUICE_AF_INET, sluice_htons(5353), SLUICE_IPPROTO_UDP);
	ASSERT_LT(any, SLUICE_MAX_VIPS);
	EXPECT_EQ(snap.vips[any].port_be, 0);
	EXPECT_EQ(sluice_vip_find(&snap, addr.data(), SLUICE_AF_INET, sluice_htons(81), SLUICE_IPPROTO_TCP),
		  SLUICE_MAX_VIPS);
	// The address alone finds a VIP of it; another address finds none.
	EXPECT_LT(sluice_vip_find_address(&snap, addr.data(), SLUICE_AF_INET), SLUICE_MAX_VIPS);
	auto other = ip_address::parse("10.200.1.77")->bytes;
	EXPECT_EQ(sluice_vip_find_address(&snap, other.data(), SLUICE_AF_INET), SLUICE_MAX_VIPS);
	// The gateway is not set, so the encapsulating VIP's backends have no MAC yet.
	EXPECT_FALSE(snap.backends[only].flags & SLUICE_BACKEND_HAS_MAC);
}

} // namespace
