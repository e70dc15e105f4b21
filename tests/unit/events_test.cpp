// SPDX-License-Identifier: Apache-2.0
// The event ring `sluicectl events` reads (controlplane/events.h): sequence
// numbers, what since() hands back across a wrap-around, and lines that
// split back into the fields they were made of.
#include "events.h"

#include "config_io.h"
#include "publishers.h"
#include "service.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include <string>
#include <vector>

using namespace sluice;

namespace {

event_fields numbered(int n)
{
	return event_fields("test").add("n", std::to_string(n));
}

std::vector<uint64_t> seqs(const event_ring::slice &s)
{
	std::vector<uint64_t> out;
	for (const auto &e : s.events)
		out.push_back(e.seq);
	return out;
}

TEST(EventRing, EmptyRingHasNothingAndLostNothing)
{
	event_ring r(4);
	auto s = r.since(0);
	EXPECT_TRUE(s.events.empty());
	EXPECT_EQ(s.last_seq, 0u);
	EXPECT_EQ(s.lost, 0u);
}

TEST(EventRing, SequenceNumbersCountFromOneInOrder)
{
	event_ring r(8);
	EXPECT_EQ(r.push(numbered(1), 100), 1u);
	EXPECT_EQ(r.push(numbered(2), 200), 2u);
	EXPECT_EQ(r.push(numbered(3), 300), 3u);
	auto s = r.since(0);
	EXPECT_EQ(seqs(s), (std::vector<uint64_t>{1, 2, 3}));
	EXPECT_EQ(s.last_seq, 3u);
	EXPECT_EQ(s.events[1].time_ns, 200u);
	EXPECT_EQ(s.events[1].fields.line(), "event=test n=2");
}

TEST(EventRing, SinceReturnsOnlyNewerEvents)
{
	event_ring r(8);
	for (int i = 1; i <= 5; i++)
		r.push(numbered(i), 0);
	EXPECT_EQ(seqs(r.since(3)), (std::vector<uint64_t>{4, 5}));
	EXPECT_TRUE(r.since(5).events.empty());
	EXPECT_EQ(r.since(5).last_seq, 5u);
	// A client that polls with the last_seq it got sees each event once.
	uint64_t cursor = 0;
	std::vector<uint64_t> seen;
	for (int round = 0; round < 3; round++) {
		r.push(numbered(10 + round), 0);
		auto s = r.since(cursor);
		for (auto q : seqs(s))
			seen.push_back(q);
		cursor = s.last_seq;
	}
	EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(EventRing, WrapAroundKeepsTheNewestAndCountsWhatWasLost)
{
	event_ring r(4);
	for (int i = 1; i <= 10; i++)
		r.push(numbered(i), 0);
	auto all = r.since(0);
	EXPECT_EQ(seqs(all), (std::vector<uint64_t>{7, 8, 9, 10}));
	EXPECT_EQ(all.events.front().fields.line(), "event=test n=7");
	EXPECT_EQ(all.lost, 6u);
	// A follower that last saw 5 missed 6 only.
	auto s = r.since(5);
	EXPECT_EQ(seqs(s), (std::vector<uint64_t>{7, 8, 9, 10}));
	EXPECT_EQ(s.lost, 1u);
	// One that is up to date with the oldest held lost nothing.
	EXPECT_EQ(r.since(6).lost, 0u);
	EXPECT_EQ(seqs(r.since(8)), (std::vector<uint64_t>{9, 10}));
	// A cursor from another sluiced (ahead of this ring): nothing, and
	// last_seq below it tells the client to start again.
	auto ahead = r.since(50);
	EXPECT_TRUE(ahead.events.empty());
	EXPECT_EQ(ahead.last_seq, 10u);
}

TEST(EventFields, ValuesWithSpacesQuotesOrEqualsAreQuoted)
{
	event_fields f("refusal");
	f.add("verb", "backend.add")
		.add("vip", "10.200.1.1:80/tcp")
		.add("address", "fd00::31")
		.add("error", "backend 10.0.0.13 already in VIP 10.200.1.1:80/tcp")
		.add("send", "a=\"b\"\\")
		.add("empty", "")
		.add("nl", "two\nlines");
	EXPECT_EQ(f.line(),
		  "event=refusal verb=backend.add vip=10.200.1.1:80/tcp address=fd00::31 "
		  "error=\"backend 10.0.0.13 already in VIP 10.200.1.1:80/tcp\" send=\"a=\\\"b\\\"\\\\\" "
		  "empty=\"\" nl=\"two\\nlines\"");
	EXPECT_EQ(f.kind(), "refusal");
}

TEST(EventFields, AnErrorTextCannotForgeAField)
{
	// A VIP name a client made up ends up in the refusal line verbatim.
	event_fields f("refusal");
	f.add("error", "no VIP x uid=0 event=change");
	EXPECT_EQ(f.line(), "event=refusal error=\"no VIP x uid=0 event=change\"");
}

// ------------------------------------------------ the service's events

const char *base_yaml = R"(node:
  source_ipv4: 10.0.0.2
vips:
  - address: 10.200.1.1
    port: 80
    backends:
      - address: 10.0.0.11
)";

class ServiceEvents : public ::testing::Test {
protected:
	void SetUp() override
	{
		dir = std::filesystem::temp_directory_path() /
		      ("sluice-events-" + std::to_string(::getpid()) + "-" +
		       ::testing::UnitTest::GetInstance()->current_test_info()->name());
		std::filesystem::remove_all(dir);
		std::filesystem::create_directories(dir);
	}
	void TearDown() override { std::filesystem::remove_all(dir); }
	std::vector<std::string> lines(const service &s)
	{
		std::vector<std::string> out;
		for (const auto &e : s.events().since(0).events)
			out.push_back(e.fields.line());
		return out;
	}
	std::filesystem::path dir;
};

TEST_F(ServiceEvents, ChangesAndRefusalsNameTheCallerAndWhatTheyDid)
{
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(base_yaml));
	const api_caller root{true, 0u, 1234};
	json r = s.handle(json{{"verb", "backend.add"},
			       {"args", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}, {"weight", "20"}}}},
			  root);
	ASSERT_TRUE(r["ok"]) << r.dump();
	const uint64_t gen = r["result"]["generation"];
	// The same again is refused: the line the client got, in the event.
	json again = s.handle(json{{"verb", "backend.add"},
				   {"args", {{"vip", "10.200.1.1:80/tcp"}, {"address", "10.0.0.13"}}}},
			      root);
	ASSERT_FALSE(again["ok"]);
	// A member of the group may not change anything.
	json denied = s.handle(json{{"verb", "vip.del"}, {"args", {{"vip", "10.200.1.1:80/tcp"}}}},
			       api_caller{false, 1001u, 77});
	ASSERT_FALSE(denied["ok"]);
	// Reads are not events.
	ASSERT_TRUE(s.handle(json{{"verb", "status"}}, root)["ok"]);
	ASSERT_FALSE(s.handle(json{{"verb", "backend.list"}, {"args", {{"vip", "10.9.9.9:1/tcp"}}}}, root)["ok"]);
	EXPECT_EQ(lines(s),
		  (std::vector<std::string>{
			  fmt::format("event=change verb=backend.add uid=0 pid=1234 generation={} "
				      "vip=10.200.1.1:80/tcp address=10.0.0.13 weight=20",
				      gen),
			  "event=refusal verb=backend.add uid=0 pid=1234 vip=10.200.1.1:80/tcp address=10.0.0.13 "
			  "error=\"" + again["error"].get<std::string>() + "\"",
			  "event=refusal verb=vip.del uid=1001 pid=77 vip=10.200.1.1:80/tcp error=\"" +
				  denied["error"].get<std::string>() + "\"",
		  }));
}

// `events --since N`: any 64-bit sequence number, as a JSON number or as
// the digits sluicectl passes on; past 64 bits, a sign or a word, refused
// with the line the client reads.
TEST_F(ServiceEvents, SinceTakesEverySixtyFourBitNumberAndNothingElse)
{
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(base_yaml));
	const api_caller root{true, 0u, 1};
	auto events_since = [&](const json &since) {
		return s.handle(json{{"verb", "events"}, {"args", {{"since", since}}}}, root);
	};
	EXPECT_TRUE(events_since(UINT64_MAX)["ok"]);
	EXPECT_TRUE(events_since("18446744073709551615")["ok"]);
	EXPECT_TRUE(events_since("0")["ok"]);
	for (const json &bad : {json("18446744073709551616"), json("-1"), json(-1), json(1.5), json("soon"), json("")}) {
		const json r = events_since(bad);
		ASSERT_FALSE(r["ok"]) << bad.dump();
		EXPECT_EQ(r["error"], "--since: '" + (bad.is_string() ? bad.get<std::string>() : bad.dump()) +
					      "' is not an event sequence number (0 or more)");
	}
}

TEST_F(ServiceEvents, AnApplyThatChangesNothingIsNoChange)
{
	memory_publisher pub;
	service s(pub, dir, config_from_yaml(base_yaml));
	const api_caller root{true, 0u, 1};
	ASSERT_TRUE(s.handle(json{{"verb", "apply"}, {"args", {{"yaml", base_yaml}}}}, root)["ok"]);
	ASSERT_TRUE(s.handle(json{{"verb", "apply"}, {"args", {{"yaml", base_yaml}, {"dry_run", true}}}}, root)["ok"]);
	EXPECT_TRUE(lines(s).empty()) << lines(s).front();
	std::string next = std::string(base_yaml) + "      - address: 10.0.0.12\n";
	json r = s.handle(json{{"verb", "apply"}, {"args", {{"yaml", next}}}}, root);
	ASSERT_TRUE(r["ok"]) << r.dump();
	EXPECT_EQ(lines(s), (std::vector<std::string>{fmt::format(
				    "event=change verb=apply uid=0 pid=1 generation={} summary=\"1 added, 0 removed, 0 changed\"",
				    r["result"]["generation"].get<uint64_t>())}));
	// Not a request at all: refused and recorded, without a caller in-process.
	s.handle_line("{nonsense");
	EXPECT_EQ(lines(s).back(), "event=refusal verb=- error=\"request is not valid JSON\"");
}

worker_view worker(uint32_t index, uint32_t pid, const char *state = "live", const char *refused = "")
{
	worker_view w;
	w.index = index;
	w.pid = pid;
	w.name = fmt::format("dpdk eth0 q{}", index);
	w.kind = "dpdk";
	w.state = state;
	w.generation_seen = 5;
	w.generation_applied = 5;
	w.refused = refused;
	if (*refused)
		w.stale = "refused generation 5: checksum mismatch";
	return w;
}

std::vector<std::string> change_lines(const std::vector<worker_view> *before, const std::vector<worker_view> &after)
{
	std::vector<std::string> out;
	for (const auto &e : worker_changes(before, after))
		out.push_back(e.line());
	return out;
}

TEST(WorkerChanges, FirstReadingNamesWhatIsThere)
{
	std::vector<worker_view> now = {worker(0, 100), worker(1, 100, "stopped")};
	EXPECT_EQ(change_lines(nullptr, now),
		  (std::vector<std::string>{"event=worker action=found worker=\"dpdk eth0 q0\" kind=dpdk pid=100 "
					    "index=0 queue=0 state=live generation=5"}));
}

TEST(WorkerChanges, AttachStopDieAndComeBack)
{
	std::vector<worker_view> a = {worker(0, 100)};
	std::vector<worker_view> b = {worker(0, 100), worker(1, 100)};
	auto l = change_lines(&a, b);
	ASSERT_EQ(l.size(), 1u);
	EXPECT_EQ(l[0].rfind("event=worker action=attach worker=\"dpdk eth0 q1\" kind=dpdk pid=100 index=1", 0), 0u)
		<< l[0];
	EXPECT_TRUE(change_lines(&b, b).empty()) << "nothing changed, nothing to say";
	std::vector<worker_view> c = {worker(0, 100, "dead"), worker(1, 100, "stopped")};
	l = change_lines(&b, c);
	ASSERT_EQ(l.size(), 2u);
	EXPECT_EQ(l[0].rfind("event=worker action=dead worker=\"dpdk eth0 q0\"", 0), 0u) << l[0];
	EXPECT_NE(l[1].find("action=detach worker=\"dpdk eth0 q1\""), std::string::npos) << l[1];
	EXPECT_NE(l[1].find("reason=stopped"), std::string::npos) << l[1];
	// A stopped one whose record is taken by a new process: the new one
	// attaches, the old one is not reported twice.
	std::vector<worker_view> d = {worker(0, 100), worker(1, 200)};
	l = change_lines(&c, d);
	ASSERT_EQ(l.size(), 2u);
	EXPECT_NE(l[0].find("action=alive"), std::string::npos) << l[0];
	EXPECT_NE(l[1].find("action=attach worker=\"dpdk eth0 q1\" kind=dpdk pid=200"), std::string::npos) << l[1];
	// A live one whose record vanished (taken over after it died).
	l = change_lines(&d, {worker(0, 100)});
	ASSERT_EQ(l.size(), 1u);
	EXPECT_NE(l[0].find("action=detach worker=\"dpdk eth0 q1\" kind=dpdk pid=200"), std::string::npos) << l[0];
}

TEST(WorkerChanges, StaleAndFreshAgain)
{
	std::vector<worker_view> a = {worker(0, 100)};
	std::vector<worker_view> b = {worker(0, 100, "live", "checksum")};
	auto l = change_lines(&a, b);
	ASSERT_EQ(l.size(), 1u);
	EXPECT_NE(l[0].find("action=stale"), std::string::npos);
	EXPECT_NE(l[0].find("refused=checksum reason=\"refused generation 5: checksum mismatch\""), std::string::npos)
		<< l[0];
	EXPECT_TRUE(change_lines(&b, b).empty());
	l = change_lines(&b, a);
	ASSERT_EQ(l.size(), 1u);
	EXPECT_NE(l[0].find("action=fresh"), std::string::npos) << l[0];
}

} // namespace

// A caller who floods refusals gets a burst recorded, then one a refill;
// the next recorded refusal says how many were left out; other callers and
// a caller without a uid have buckets of their own.
TEST(RefusalLimiter, ABurstThenTheRateAndTheCountOfWhatWasLeftOut)
{
	refusal_limiter lim(3, 2); // 3 at once, then 2 a second
	uint64_t left = 99;
	const uint64_t t0 = 1'000'000'000;
	for (int i = 0; i < 3; i++) {
		ASSERT_TRUE(lim.admit(1000, t0, &left)) << i;
		EXPECT_EQ(left, 0u);
	}
	for (int i = 0; i < 10; i++)
		EXPECT_FALSE(lim.admit(1000, t0, &left));
	EXPECT_TRUE(lim.admit(0, t0, &left)) << "root has its own bucket";
	EXPECT_TRUE(lim.admit(std::nullopt, t0, &left)) << "so does a caller without a uid";
	EXPECT_FALSE(lim.admit(1000, t0 + 400'000'000, &left)) << "0.8 of a refusal back";
	EXPECT_TRUE(lim.admit(1000, t0 + 600'000'000, &left));
	EXPECT_EQ(left, 11u);
	EXPECT_FALSE(lim.admit(1000, t0 + 600'000'000, &left));
	// Refilled to the burst, never past it.
	for (int i = 0; i < 3; i++) {
		EXPECT_TRUE(lim.admit(1000, t0 + 100'000'000'000, &left)) << i;
		EXPECT_EQ(left, i == 0 ? 1u : 0u) << i;
	}
	left = 0;
	EXPECT_FALSE(lim.admit(1000, t0 + 100'000'000'000, &left));
}
