// SPDX-License-Identifier: Apache-2.0
// sluiced's verb table (controlplane/verbs.def): every verb is answered by
// the service and reached through sluicectl under the same name, and a verb
// nobody defined is refused with one line.
#include "api_socket.h"
#include "config_io.h"
#include "publishers.h"
#include "service.h"
#include "verbs.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <vector>

using namespace sluice;
namespace fs = std::filesystem;

namespace {

const char *base_yaml = R"(node:
  source_ipv4: 10.0.0.2
vips:
  - address: 10.200.1.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
        weight: 50
)";

class VerbsTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		dir = fs::temp_directory_path() /
		      ("sluice-verbs-" + std::to_string(::getpid()) + "-" +
		       ::testing::UnitTest::GetInstance()->current_test_info()->name());
		fs::remove_all(dir);
		fs::create_directories(dir);
	}
	void TearDown() override { fs::remove_all(dir); }

	fs::path dir;
};

// Runs sluicectl with `args`; its exit status and standard output.
std::pair<int, std::string> sluicectl(const std::string &args)
{
	const char *exe = std::getenv("SLUICECTL");
	std::string cmd = std::string(exe ? exe : "build/controlplane/sluicectl/sluicectl") + " " + args +
			  " 2>&1";
	FILE *p = ::popen(cmd.c_str(), "r");
	if (!p)
		return {-1, "popen failed"};
	std::string out;
	char buf[4096];
	for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;)
		out.append(buf, n);
	int st = ::pclose(p);
	return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST(Verbs, EveryNameFindsItsOwnEntry)
{
	std::set<std::string> names;
	for (const auto &v : verb_table) {
		EXPECT_TRUE(names.insert(v.api_name()).second) << v.api_name() << " twice";
		EXPECT_EQ(find_verb(v.api_name()), &v) << v.api_name();
		EXPECT_FALSE(v.help.empty()) << v.api_name();
	}
	EXPECT_EQ(find_verb("status."), nullptr);
	EXPECT_EQ(find_verb("vip"), nullptr); // a noun with words is no verb alone
	EXPECT_EQ(find_verb("vip.add.more"), nullptr);
	EXPECT_EQ(find_verb(""), nullptr);
}

TEST_F(VerbsTest, TheServiceAnswersEveryVerbAndRefusesOthersInOneLine)
{
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(base_yaml));
	for (const auto &v : verb_table) {
		json r = s.handle(json{{"verb", v.api_name()}, {"args", json::object()}});
		// Without arguments a verb that takes one (a change, or diff's
		// file) is refused for the one it misses; any other verb (a read,
		// node drain) answers. Neither is "unknown".
		if (!v.args.empty() && v.args.front() != '[') {
			ASSERT_FALSE(r["ok"]) << v.api_name();
			EXPECT_EQ(r["error"].get<std::string>().rfind("missing argument '", 0), 0u)
				<< v.api_name() << ": " << r.dump();
		} else {
			EXPECT_TRUE(r["ok"]) << v.api_name() << ": " << r.dump();
		}
	}
	for (const char *bad : {"nonsense", "vip.nonsense", "vip", "status."}) {
		json r = s.handle(json{{"verb", bad}});
		EXPECT_EQ(r, (json{{"ok", false}, {"error", fmt::format("unknown verb '{}'", bad)}}));
	}
}

TEST_F(VerbsTest, SluicectlReachesEveryVerbUnderItsName)
{
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(base_yaml));
	std::mutex mu;
	std::vector<std::string> received;
	api_server api((dir / "api.sock").string(), [&](std::string_view line, const api_peer &) {
		json req = json::parse(line);
		std::lock_guard lk(mu);
		received.push_back(req["verb"]);
		return s.handle_line(line);
	});
	fs::path file = dir / "config.yaml";
	std::ofstream(file) << base_yaml;

	// What an operator types for each verb, in an order where each succeeds.
	const std::vector<std::pair<std::string, std::string>> lines = {
		{"vip.add", "vip add 10.200.9.9:80/tcp"},
		{"vip.list", "vip list"},
		{"vip.del", "vip del 10.200.9.9:80/tcp"},
		{"backend.add", "backend add 10.200.1.1:80/tcp 10.0.0.13"},
		{"backend.set", "backend set 10.200.1.1:80/tcp 10.0.0.13 --weight 5"},
		{"backend.list", "backend list 10.200.1.1:80/tcp"},
		{"backend.del", "backend del 10.200.1.1:80/tcp 10.0.0.13"},
		{"status", "status"},
		{"stats", "stats"},
		{"conn.list", "conn list 10.200.1.1:80/tcp --backend 10.0.0.11 --limit 5"},
		{"apply", "apply -f " + file.string()},
		{"diff", "diff -f " + file.string()},
		{"dump", "dump"},
		{"events", "events --since 0"},
		{"node.drain", "node drain"},
		{"node.status", "node status"},
		{"node.undrain", "node undrain"},
	};
	std::set<std::string> covered;
	for (const auto &[name, line] : lines)
		covered.insert(name);
	std::set<std::string> defined;
	for (const auto &v : verb_table)
		defined.insert(v.api_name());
	ASSERT_EQ(covered, defined) << "a verb of verbs.def this test does not type";

	for (const auto &[name, line] : lines) {
		{
			std::lock_guard lk(mu);
			received.clear();
		}
		auto [rc, out] = sluicectl("--socket " + api.path() + " " + line);
		EXPECT_EQ(rc, 0) << line << ": " << out;
		std::lock_guard lk(mu);
		EXPECT_EQ(received, std::vector<std::string>{name}) << line;
	}

	// --help lists every verb with its synopsis and line, and each has its own help.
	auto [rc, help] = sluicectl("--help");
	EXPECT_EQ(rc, 0);
	for (const auto &v : verb_table) {
		std::string syn(v.noun);
		if (!v.word.empty())
			syn += " " + std::string(v.word);
		EXPECT_NE(help.find("  " + syn), std::string::npos) << syn;
		EXPECT_NE(help.find(std::string(v.help)), std::string::npos) << syn;
		auto [vrc, vhelp] = sluicectl(syn + " --help");
		EXPECT_EQ(vrc, 0) << syn;
		EXPECT_EQ(vhelp.rfind("Usage: sluicectl " + syn, 0), 0u) << vhelp;
	}
	// A command the table does not have is a usage error, in one line.
	auto [urc, uout] = sluicectl("--socket " + api.path() + " vip rename 10.200.1.1:80/tcp");
	EXPECT_EQ(urc, 2);
	EXPECT_EQ(uout, "sluicectl: unknown verb 'vip rename' (see --help)\n");
}

} // namespace
