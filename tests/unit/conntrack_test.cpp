// SPDX-License-Identifier: Apache-2.0
// The connection table (include/sluice/conntrack.h) as the DPDK worker uses
// it: hits keep their backend, idle flows expire by state, TCP state follows
// the client's flags, and a full bucket evicts the least recently seen flow
// instead of refusing one.
#include "random_keys.h"

#include <sluice/conntrack.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

struct table_deleter {
	void operator()(sluice_ct_table *t) const { std::free(t); }
};
using table_ptr = std::unique_ptr<sluice_ct_table, table_deleter>;

// The tables' key, as a dataplane draws one at start.
constexpr uint64_t test_secret = 0x243F6A8885A308D3ull;

// A key's connection-table hash under test_secret (bucket and tag).
uint32_t ct_hash(const sluice_flow_key *k)
{
	return sluice_ct_hash(k, test_secret);
}

table_ptr make_table(uint32_t entries, const sluice_ct_timeouts *to = nullptr,
		     uint64_t secret = test_secret)
{
	const uint64_t bytes = sluice_ct_table_bytes(entries);
	auto *t = static_cast<sluice_ct_table *>(std::aligned_alloc(SLUICE_CACHE_LINE, bytes));
	if (t == nullptr)
		std::abort();
	std::memset(static_cast<void *>(t), 0, bytes);
	sluice_ct_table_init(t, entries, to, secret);
	return table_ptr(t);
}

sluice_flow_key zero_key()
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	return k;
}

sluice_flow_key v4_key(uint8_t a, uint16_t sport, uint8_t proto = SLUICE_IPPROTO_TCP)
{
	sluice_flow_key k = zero_key();
	const uint8_t src[4] = {192, 0, 2, a}, dst[4] = {10, 200, 1, 1};
	std::memcpy(k.src, src, 4);
	std::memcpy(k.dst, dst, 4);
	k.sport_be = sluice_htons(sport);
	k.dport_be = sluice_htons(80);
	k.proto = proto;
	k.family = SLUICE_AF_INET;
	return k;
}

using sluice::testing::random_key;

// The backend a key is stored with in the large tests: a function of the key
// only, so any hit can be checked without remembering what was inserted.
uint32_t backend_of(const sluice_flow_key &k)
{
	return (sluice_flow_hash(&k) * 2654435761u) >> 20;
}

sluice_ct_bucket *bucket_of(sluice_ct_table *t, const sluice_flow_key &k)
{
	return sluice_ct_table_bucket(t, sluice_ct_hash(&k, t->secret));
}

// find and insert as the dataplanes call them: with the tag of k's own hash.
uint16_t tag_of(const sluice_flow_key *k)
{
	return sluice_ct_tag(ct_hash(k));
}

sluice_ct_entry *ct_find(sluice_ct_bucket *b, const sluice_flow_key *k, uint32_t now_s,
			 const sluice_ct_timeouts *to)
{
	return sluice_ct_find(b, k, tag_of(k), now_s, to);
}

sluice_ct_entry *ct_insert(sluice_ct_bucket *b, const sluice_flow_key *k, uint32_t backend_id,
			   uint32_t vip_id, uint8_t state, uint32_t now_s, const sluice_ct_timeouts *to,
			   bool *evicted)
{
	return sluice_ct_insert(b, k, tag_of(k), backend_id, vip_id, state, now_s, to, evicted);
}

// n distinct keys that all land in the same bucket as `like`, found by search.
std::vector<sluice_flow_key> keys_in_bucket_of(const sluice_ct_table *t, const sluice_flow_key &like,
					       size_t n)
{
	const uint32_t want = sluice_ct_bucket_index(sluice_ct_hash(&like, t->secret), t->n_buckets);
	std::vector<sluice_flow_key> out;
	for (uint32_t port = 1; out.size() < n; port++) {
		sluice_flow_key k = like;
		k.sport_be = sluice_htons((uint16_t)port);
		k.src[3] = (uint8_t)(port >> 16);
		if (sluice_ct_bucket_index(sluice_ct_hash(&k, t->secret), t->n_buckets) == want &&
		    !sluice_flow_key_equal(&k, &like))
			out.push_back(k);
	}
	return out;
}

const sluice_ct_timeouts defaults = sluice_ct_default_timeouts();

TEST(ConntrackLayout, OneCacheLinePerEntryAndNoBucketOverhead)
{
	EXPECT_EQ(sizeof(sluice_ct_entry), 64u);
	EXPECT_EQ(alignof(sluice_ct_entry), 64u);
	EXPECT_EQ(sizeof(sluice_ct_bucket), 64u * SLUICE_CT_WAYS);
	EXPECT_EQ(offsetof(sluice_ct_table, buckets), 64u);
	// IPv4 and IPv6 flows cost the same: the key always has 16-byte addresses.
	EXPECT_EQ(sluice_ct_table_bytes(1u << 20), 64u + 64u * (1u << 20));
}

// Memory follows the configured size: entries / WAYS buckets, rounded up
// only to a whole bucket (10M entries are 610 MiB, not the 1 GiB of the
// next power of two).
TEST(ConntrackLayout, TableHasEntriesOverWaysBuckets)
{
	EXPECT_EQ(sluice_ct_table_buckets_for(0), 1u);
	EXPECT_EQ(sluice_ct_table_buckets_for(1), 1u);
	EXPECT_EQ(sluice_ct_table_buckets_for(4), 1u);
	EXPECT_EQ(sluice_ct_table_buckets_for(5), 2u);
	EXPECT_EQ(sluice_ct_table_buckets_for(1000), 250u);
	EXPECT_EQ(sluice_ct_table_buckets_for(1025), 257u);
	EXPECT_EQ(sluice_ct_table_buckets_for(10'000'000), 2'500'000u);
	EXPECT_EQ(sluice_ct_table_buckets_for(0xFFFFFFFFu), 1u << 30);
	EXPECT_EQ(sluice_ct_table_bytes(10'000'000), 64u + 640'000'000u);
	auto t = make_table(1000);
	EXPECT_EQ(t->n_buckets, 250u);
	EXPECT_EQ(sluice_ct_table_entries(t.get()), 1000u);
	EXPECT_EQ(t->to.est_s, SLUICE_CT_TIMEOUT_EST_S);
}

// Flows a sender chose to share one bucket under one secret (as anyone could
// under the public flow hash) scatter under another: the index is keyed.
TEST(ConntrackLayout, BucketIndexIsKeyedBySecret)
{
	table_ptr a = make_table(4096, nullptr, 1);
	table_ptr b = make_table(4096, nullptr, 2);
	const sluice_flow_key target = v4_key(1, 1000);
	const std::vector<sluice_flow_key> aimed = keys_in_bucket_of(a.get(), target, 16);
	const uint32_t target_in_b = sluice_ct_bucket_index(sluice_ct_hash(&target, 2), b->n_buckets);
	int still_together = 0;
	for (const sluice_flow_key &k : aimed)
		still_together += sluice_ct_bucket_index(sluice_ct_hash(&k, 2), b->n_buckets) == target_in_b;
	EXPECT_LE(still_together, 1); // 16 keys, 1/1024 each
	// And the flow hash, which Maglev needs unkeyed, is not what picks it.
	EXPECT_NE(sluice_ct_hash(&target, 1), sluice_flow_hash(&target));
}

// The tag line names exactly the ways in use: a free way's tag is 0, a used
// way's is its flow's, and ways 1-3 carry none.
bool tags_consistent(const sluice_ct_bucket &b)
{
	for (int w = 0; w < SLUICE_CT_WAYS; w++) {
		const sluice_ct_entry &e = b.way[w];
		const uint16_t want = e.state == SLUICE_CT_FREE ? 0 : tag_of(&e.key);
		if (b.way[0].tags[w] != want)
			return false;
		if (w > 0 && (e.tags[0] | e.tags[1] | e.tags[2] | e.tags[3]) != 0)
			return false;
	}
	return true;
}

// Inserts, hits, expiry and eviction in one small table, checking the tag
// line after each step and that every flow still found is its own.
TEST(ConntrackTags, TagLineFollowsEveryChange)
{
	auto t = make_table(64); // 16 buckets: plenty of sharing and eviction
	for (uint32_t i = 0; i < 20'000; i++) {
		const sluice_flow_key k = random_key(i % 3000);
		const uint32_t now = i / 50; // UDP entries expire after 300 s: some do
		sluice_ct_bucket *b = bucket_of(t.get(), k);
		sluice_ct_entry *e = ct_find(b, &k, now, &t->to);
		if (e) {
			ASSERT_EQ(e->backend_id, backend_of(k));
			sluice_ct_update(e, 0, now);
		} else {
			ct_insert(b, &k, backend_of(k), 1, SLUICE_CT_UDP, now, &t->to, nullptr);
		}
		ASSERT_TRUE(tags_consistent(*b)) << i;
	}
	// Removing frees the way and its tag.
	const sluice_flow_key k = random_key(5000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	ct_insert(b, &k, 5, 1, SLUICE_CT_UDP, 400, &t->to, nullptr);
	sluice_ct_entry *e = ct_find(b, &k, 400, &t->to);
	ASSERT_NE(e, nullptr);
	sluice_ct_remove(b, static_cast<int>(e - b->way));
	EXPECT_EQ(ct_find(b, &k, 400, &t->to), nullptr);
	EXPECT_TRUE(tags_consistent(*b));
}

// A flow whose tag is not on the tag line is not found, even with its key in
// a way: the lookup trusts the tags (and the insert keeps them right).
TEST(ConntrackTags, LookupReadsOnlyTaggedWays)
{
	auto t = make_table(4);
	sluice_ct_bucket *b = &t->buckets[0];
	const sluice_flow_key k = v4_key(1, 40000);
	ct_insert(b, &k, 5, 1, SLUICE_CT_EST, 0, &t->to, nullptr);
	ASSERT_NE(ct_find(b, &k, 0, &t->to), nullptr);
	const uint16_t tag = b->way[0].tags[0];
	EXPECT_EQ(tag, tag_of(&k));
	// Way 0 carries the flow's tag; ways 1-3 are free (tag 0).
	const uint64_t tags = sluice_ct_tags(b);
	EXPECT_EQ(sluice_ct_tag_at(tags, 0), tag);
	for (int w = 1; w < SLUICE_CT_WAYS; w++)
		EXPECT_EQ(sluice_ct_tag_at(tags, w), 0u) << w;
	b->way[0].tags[0] = static_cast<uint16_t>(tag ^ 2); // still odd, so still "in use"
	EXPECT_EQ(ct_find(b, &k, 0, &t->to), nullptr);
}

// Any bucket count: 1,000 buckets (not a power of two) are all reached,
// evenly, and never one past the end.
TEST(ConntrackLayout, BucketIndexCoversAnyBucketCount)
{
	const uint32_t buckets = 1000;
	std::vector<uint32_t> hits(buckets);
	for (uint32_t i = 0; i < 200'000; i++) {
		const sluice_flow_key k = random_key(i);
		const uint32_t idx = sluice_ct_bucket_index(ct_hash(&k), buckets);
		ASSERT_LT(idx, buckets);
		hits[idx]++;
	}
	const auto [lo, hi] = std::minmax_element(hits.begin(), hits.end());
	EXPECT_GT(*lo, 130u); // 200 expected per bucket; Poisson sd ~14
	EXPECT_LT(*hi, 270u);
	EXPECT_EQ(sluice_ct_bucket_index(0xFFFFFFFFu, 1), 0u);
	EXPECT_EQ(sluice_ct_bucket_index(0xFFFFFFFFu, 0xFFFFFFFFu) < 0xFFFFFFFFu, true);
}

TEST(Conntrack, InsertThenFindHitsWithBackendAndVip)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	EXPECT_EQ(ct_find(b, &k, 100, &t->to), nullptr);
	bool evicted = true;
	sluice_ct_entry *e = ct_insert(b, &k, 17, 3, SLUICE_CT_SYN, 100, &t->to, &evicted);
	ASSERT_NE(e, nullptr);
	EXPECT_FALSE(evicted);
	const sluice_ct_entry *hit = ct_find(b, &k, 101, &t->to);
	ASSERT_EQ(hit, e);
	EXPECT_EQ(hit->backend_id, 17u);
	EXPECT_EQ(hit->vip_id, 3u);
	EXPECT_EQ(hit->state, SLUICE_CT_SYN);
	EXPECT_EQ(hit->last_seen_s, 100u);
	EXPECT_TRUE(sluice_flow_key_equal(&hit->key, &k));
}

TEST(Conntrack, DifferentKeyMisses)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	ct_insert(bucket_of(t.get(), k), &k, 17, 3, SLUICE_CT_EST, 100, &t->to, nullptr);
	for (sluice_flow_key other : {v4_key(2, 40000), v4_key(1, 40001), v4_key(1, 40000, SLUICE_IPPROTO_UDP)})
		EXPECT_EQ(ct_find(bucket_of(t.get(), other), &other, 100, &t->to), nullptr);
	// Same bucket, different key: searched for, so the miss is the key compare's.
	for (const sluice_flow_key &other : keys_in_bucket_of(t.get(), k, 3))
		EXPECT_EQ(ct_find(bucket_of(t.get(), k), &other, 100, &t->to), nullptr);
}

TEST(Conntrack, InsertOfAPresentKeyReplacesIt)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	sluice_ct_entry *first = ct_insert(b, &k, 1, 1, SLUICE_CT_EST, 100, &t->to, nullptr);
	bool evicted = true;
	sluice_ct_entry *second = ct_insert(b, &k, 2, 1, SLUICE_CT_EST, 101, &t->to, &evicted);
	EXPECT_EQ(first, second);
	EXPECT_FALSE(evicted);
	EXPECT_EQ(ct_find(b, &k, 101, &t->to)->backend_id, 2u);
	int live = 0;
	for (const sluice_ct_entry &e : b->way)
		live += e.state != SLUICE_CT_FREE;
	EXPECT_EQ(live, 1);
}

struct timeout_case {
	uint8_t state;
	uint32_t default_s;
};

std::string state_name(uint8_t state)
{
	static const char *const names[] = {"free", "syn", "est", "fin", "udp", "frag"};
	return state < 6 ? names[state] : "unknown";
}

class ConntrackTimeout : public testing::TestWithParam<timeout_case> {};

// An entry lives exactly its state's timeout after it was last seen: a hit at
// last_seen + timeout, a miss one second later, and the miss frees the way.
TEST_P(ConntrackTimeout, DefaultTimeoutOfEachState)
{
	const auto [state, secs] = GetParam();
	EXPECT_EQ(sluice_ct_timeout(&defaults, state), secs);
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	const uint32_t t0 = 1000;
	sluice_ct_entry *e = ct_insert(b, &k, 5, 1, state, t0, &t->to, nullptr);
	EXPECT_EQ(ct_find(b, &k, t0 + secs - 1, &t->to), e);
	EXPECT_EQ(ct_find(b, &k, t0 + secs, &t->to), e);
	EXPECT_EQ(ct_find(b, &k, t0 + secs + 1, &t->to), nullptr);
	EXPECT_EQ(e->state, SLUICE_CT_FREE) << "an expired hit is freed (lazy expiry)";
	// Freed: even a lookup with an earlier clock no longer finds it.
	EXPECT_EQ(ct_find(b, &k, t0, &t->to), nullptr);
}

// A packet refreshes the entry: the timeout runs from the last packet.
TEST_P(ConntrackTimeout, UpdateRestartsTheTimeout)
{
	const auto [state, secs] = GetParam();
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	sluice_ct_entry *e = ct_insert(b, &k, 5, 1, state, 1000, &t->to, nullptr);
	sluice_ct_update(e, 0, 1000 + secs); // flags 0: no TCP state change
	EXPECT_EQ(e->state, state);
	EXPECT_EQ(ct_find(b, &k, 1000 + 2 * secs, &t->to), e);
	EXPECT_EQ(ct_find(b, &k, 1000 + 2 * secs + 1, &t->to), nullptr);
}

INSTANTIATE_TEST_SUITE_P(States, ConntrackTimeout,
			 testing::Values(timeout_case{SLUICE_CT_SYN, 60}, timeout_case{SLUICE_CT_EST, 900},
					 timeout_case{SLUICE_CT_FIN, 120}, timeout_case{SLUICE_CT_UDP, 300},
					 timeout_case{SLUICE_CT_FRAG, 2}),
			 [](const testing::TestParamInfo<timeout_case> &info) {
				 return state_name(info.param.state);
			 });

TEST(Conntrack, TimeoutsAreConfigurable)
{
	const sluice_ct_timeouts to{10, 20, 30, 40, 50};
	auto t = make_table(1024, &to);
	EXPECT_EQ(t->to.syn_s, 10u);
	EXPECT_EQ(t->to.frag_s, 50u);
	const uint8_t states[] = {SLUICE_CT_SYN, SLUICE_CT_EST, SLUICE_CT_FIN, SLUICE_CT_UDP, SLUICE_CT_FRAG};
	for (uint8_t i = 0; i < 5; i++) {
		const uint32_t secs = 10u * (i + 1);
		EXPECT_EQ(sluice_ct_timeout(&t->to, states[i]), secs);
		const sluice_flow_key k = v4_key((uint8_t)(10 + i), 40000);
		sluice_ct_bucket *b = bucket_of(t.get(), k);
		ct_insert(b, &k, 5, 1, states[i], 0, &t->to, nullptr);
		EXPECT_NE(ct_find(b, &k, secs, &t->to), nullptr) << int(states[i]);
		EXPECT_EQ(ct_find(b, &k, secs + 1, &t->to), nullptr) << int(states[i]);
	}
}

// now_s is 32-bit seconds and may wrap: ages are computed modulo 2^32.
TEST(Conntrack, ClockWrapKeepsAges)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	const uint32_t t0 = 0xFFFFFFF0u;
	ct_insert(b, &k, 5, 1, SLUICE_CT_UDP, t0, &t->to, nullptr);
	EXPECT_NE(ct_find(b, &k, t0 + 300, &t->to), nullptr); // wrapped to 284
	EXPECT_EQ(ct_find(b, &k, t0 + 301, &t->to), nullptr);
}

TEST(ConntrackState, InitialStateFromTheFirstPacket)
{
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_TCP, SLUICE_TCP_SYN), SLUICE_CT_SYN);
	// Mid-stream (table was full, LB restarted, ECMP moved the flow): established.
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_TCP, SLUICE_TCP_ACK), SLUICE_CT_EST);
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_TCP, SLUICE_TCP_ACK | SLUICE_TCP_PSH), SLUICE_CT_EST);
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_TCP, SLUICE_TCP_FIN | SLUICE_TCP_ACK), SLUICE_CT_FIN);
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_TCP, SLUICE_TCP_RST), SLUICE_CT_FIN);
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_UDP, 0), SLUICE_CT_UDP);
	EXPECT_EQ(sluice_ct_initial_state(SLUICE_IPPROTO_ICMP, 0), SLUICE_CT_UDP);
}

struct transition {
	uint8_t from;
	uint8_t flags;
	uint8_t to;
};

// The client's half of TCP only (direct server return).
TEST(ConntrackState, TcpTransitionsFromClientFlags)
{
	constexpr uint8_t SYN = SLUICE_TCP_SYN, ACK = SLUICE_TCP_ACK, FIN = SLUICE_TCP_FIN,
			  RST = SLUICE_TCP_RST, PSH = SLUICE_TCP_PSH;
	const transition cases[] = {
		{SLUICE_CT_SYN, SYN, SLUICE_CT_SYN},             // SYN retransmit
		{SLUICE_CT_SYN, ACK, SLUICE_CT_EST},             // handshake's third packet
		{SLUICE_CT_SYN, ACK | PSH, SLUICE_CT_EST},       // data with the ACK
		{SLUICE_CT_SYN, SYN | ACK, SLUICE_CT_SYN},       // not the client's
		{SLUICE_CT_SYN, RST, SLUICE_CT_FIN},
		{SLUICE_CT_SYN, FIN | ACK, SLUICE_CT_FIN},
		{SLUICE_CT_EST, ACK, SLUICE_CT_EST},
		{SLUICE_CT_EST, ACK | PSH, SLUICE_CT_EST},
		{SLUICE_CT_EST, SYN, SLUICE_CT_EST},             // retransmit or probe
		{SLUICE_CT_EST, FIN | ACK, SLUICE_CT_FIN},
		{SLUICE_CT_EST, RST, SLUICE_CT_FIN},
		{SLUICE_CT_EST, RST | ACK, SLUICE_CT_FIN},
		{SLUICE_CT_FIN, ACK, SLUICE_CT_FIN},             // the last ACK
		{SLUICE_CT_FIN, FIN | ACK, SLUICE_CT_FIN},
		{SLUICE_CT_FIN, SYN, SLUICE_CT_SYN},             // port reuse: a new connection
		{SLUICE_CT_FIN, SYN | ACK, SLUICE_CT_FIN},
		{SLUICE_CT_UDP, SYN, SLUICE_CT_UDP},             // flags mean nothing off TCP
		{SLUICE_CT_UDP, FIN | RST, SLUICE_CT_UDP},
		{SLUICE_CT_FRAG, ACK, SLUICE_CT_FRAG},
		{SLUICE_CT_FRAG, RST, SLUICE_CT_FRAG},
	};
	for (const transition &c : cases) {
		sluice_ct_entry e;
		std::memset(&e, 0, sizeof(e));
		e.state = c.from;
		e.last_seen_s = 5;
		sluice_ct_update(&e, c.flags, 42);
		EXPECT_EQ(e.state, c.to) << "from " << int(c.from) << " flags " << std::hex << int(c.flags);
		EXPECT_EQ(e.last_seen_s, 42u);
	}
}

// A whole connection and a reuse of its port, through find/insert/update
// with the timeouts each state gets.
TEST(ConntrackState, ConnectionLifecycle)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(1, 40000);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	sluice_ct_entry *e = ct_insert(b, &k, 9, 1, sluice_ct_initial_state(k.proto, SLUICE_TCP_SYN),
					      0, &t->to, nullptr);
	EXPECT_EQ(e->state, SLUICE_CT_SYN);
	sluice_ct_update(ct_find(b, &k, 1, &t->to), SLUICE_TCP_ACK, 1);
	EXPECT_EQ(e->state, SLUICE_CT_EST);
	// Idle for 10 minutes: beyond SYN's 60 s, within EST's 900 s.
	ASSERT_EQ(ct_find(b, &k, 601, &t->to), e);
	sluice_ct_update(e, SLUICE_TCP_FIN | SLUICE_TCP_ACK, 601);
	EXPECT_EQ(e->state, SLUICE_CT_FIN);
	// Reused 100 s later (within FIN's 120 s): same entry, same backend.
	ASSERT_EQ(ct_find(b, &k, 701, &t->to), e);
	sluice_ct_update(e, SLUICE_TCP_SYN, 701);
	EXPECT_EQ(e->state, SLUICE_CT_SYN);
	EXPECT_EQ(e->backend_id, 9u);
	// Its SYN then gets no answer: gone after 60 s.
	EXPECT_EQ(ct_find(b, &k, 762, &t->to), nullptr);
}

TEST(ConntrackEviction, FullBucketEvictsTheLeastRecentlySeen)
{
	auto t = make_table(1024);
	const auto keys = keys_in_bucket_of(t.get(), v4_key(1, 1), SLUICE_CT_WAYS + 1);
	sluice_ct_bucket *b = bucket_of(t.get(), keys[0]);
	for (uint32_t i = 0; i < SLUICE_CT_WAYS; i++) {
		ASSERT_EQ(bucket_of(t.get(), keys[i]), b);
		bool evicted = true;
		ct_insert(b, &keys[i], 100 + i, 1, SLUICE_CT_EST, 10 + i, &t->to, &evicted);
		EXPECT_FALSE(evicted);
	}
	// keys[0] was inserted first but is seen again last: keys[1] is now the
	// least recently seen, though not the first inserted.
	sluice_ct_update(ct_find(b, &keys[0], 20, &t->to), SLUICE_TCP_ACK, 20);
	bool evicted = false;
	sluice_ct_entry *e = ct_insert(b, &keys[SLUICE_CT_WAYS], 200, 1, SLUICE_CT_EST, 21, &t->to,
					      &evicted);
	ASSERT_NE(e, nullptr);
	EXPECT_TRUE(evicted);
	EXPECT_EQ(ct_find(b, &keys[1], 21, &t->to), nullptr);
	EXPECT_EQ(ct_find(b, &keys[0], 21, &t->to)->backend_id, 100u);
	for (uint32_t i = 2; i < SLUICE_CT_WAYS; i++)
		EXPECT_EQ(ct_find(b, &keys[i], 21, &t->to)->backend_id, 100u + i);
	EXPECT_EQ(ct_find(b, &keys[SLUICE_CT_WAYS], 21, &t->to)->backend_id, 200u);
}

TEST(ConntrackEviction, ExpiredWaysAreReusedBeforeLiveOnesAreEvicted)
{
	auto t = make_table(1024);
	const auto keys = keys_in_bucket_of(t.get(), v4_key(1, 1), SLUICE_CT_WAYS + 1);
	sluice_ct_bucket *b = bucket_of(t.get(), keys[0]);
	// Way 0: a UDP flow idle since t=0 (expires after 300 s). The others are
	// established TCP flows seen at 100..102, more recently but live.
	ct_insert(b, &keys[0], 100, 1, SLUICE_CT_UDP, 0, &t->to, nullptr);
	for (uint32_t i = 1; i < SLUICE_CT_WAYS; i++)
		ct_insert(b, &keys[i], 100 + i, 1, SLUICE_CT_EST, 100 + i, &t->to, nullptr);
	// At 301 the UDP flow has expired, though no lookup freed it: its way is
	// taken, and the live TCP flows stay.
	bool evicted = true;
	sluice_ct_entry *e = ct_insert(b, &keys[SLUICE_CT_WAYS], 200, 1, SLUICE_CT_EST, 301, &t->to,
					      &evicted);
	EXPECT_FALSE(evicted);
	EXPECT_EQ(e, &b->way[0]);
	for (uint32_t i = 1; i < SLUICE_CT_WAYS; i++)
		EXPECT_NE(ct_find(b, &keys[i], 301, &t->to), nullptr) << i;
	EXPECT_EQ(ct_find(b, &keys[0], 301, &t->to), nullptr);
}

// A way freed by lazy expiry (a find that missed) is taken before anything else.
TEST(ConntrackEviction, FreedWayIsReused)
{
	auto t = make_table(1024);
	const auto keys = keys_in_bucket_of(t.get(), v4_key(1, 1), SLUICE_CT_WAYS + 1);
	sluice_ct_bucket *b = bucket_of(t.get(), keys[0]);
	for (uint32_t i = 0; i < SLUICE_CT_WAYS; i++)
		ct_insert(b, &keys[i], i, 1, i == 2 ? SLUICE_CT_FRAG : SLUICE_CT_EST, 0, &t->to, nullptr);
	EXPECT_EQ(ct_find(b, &keys[2], 3, &t->to), nullptr);
	EXPECT_EQ(b->way[2].state, SLUICE_CT_FREE);
	bool evicted = true;
	EXPECT_EQ(ct_insert(b, &keys[SLUICE_CT_WAYS], 9, 1, SLUICE_CT_EST, 3, &t->to, &evicted), &b->way[2]);
	EXPECT_FALSE(evicted);
}

// The smallest table (one bucket) under a stream of new flows: every insert
// succeeds, the newest WAYS flows are always the ones kept.
TEST(ConntrackEviction, FullTableStillInserts)
{
	auto t = make_table(SLUICE_CT_WAYS);
	ASSERT_EQ(t->n_buckets, 1u);
	uint32_t evictions = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		const sluice_flow_key k = random_key(i);
		bool evicted = false;
		sluice_ct_entry *e = ct_insert(bucket_of(t.get(), k), &k, i, 1, SLUICE_CT_EST, i, &t->to,
						      &evicted);
		ASSERT_NE(e, nullptr);
		EXPECT_EQ(e->backend_id, i);
		evictions += evicted;
		for (uint32_t j = i >= SLUICE_CT_WAYS - 1 ? i - (SLUICE_CT_WAYS - 1) : 0; j <= i; j++) {
			const sluice_flow_key kj = random_key(j);
			const sluice_ct_entry *hit = ct_find(bucket_of(t.get(), kj), &kj, i, &t->to);
			ASSERT_NE(hit, nullptr) << i << " " << j;
			EXPECT_EQ(hit->backend_id, j);
		}
	}
	EXPECT_EQ(evictions, 1000u - SLUICE_CT_WAYS);
}

// A SYN flood: a SYN never pushes out a flow past its SYN. In a bucket of
// established flows it is not stored at all (NULL: forwarded untracked); in
// one holding SYN-only entries it takes the oldest of those, even when an
// established flow was seen longer ago.
TEST(ConntrackEviction, SynsEvictOnlySynsAndNeverEstablishedFlows)
{
	auto t = make_table(1024);
	const auto keys = keys_in_bucket_of(t.get(), v4_key(1, 1), SLUICE_CT_WAYS + 2);
	sluice_ct_bucket *b = bucket_of(t.get(), keys[0]);
	for (uint32_t i = 0; i < SLUICE_CT_WAYS; i++)
		ct_insert(b, &keys[i], 100 + i, 1, SLUICE_CT_EST, 10, &t->to, nullptr);
	bool evicted = true;
	EXPECT_EQ(ct_insert(b, &keys[SLUICE_CT_WAYS], 7, 1, SLUICE_CT_SYN, 50, &t->to, &evicted), nullptr);
	EXPECT_FALSE(evicted);
	for (uint32_t i = 0; i < SLUICE_CT_WAYS; i++)
		EXPECT_EQ(ct_find(b, &keys[i], 50, &t->to)->backend_id, 100u + i) << i;
	EXPECT_TRUE(tags_consistent(*b));

	// Way 3 now holds a SYN (seen at 40); ways 0-2 established flows seen
	// at 10, longer ago. A new SYN takes the SYN's way.
	sluice_ct_remove(b, 3);
	ct_insert(b, &keys[3], 103, 1, SLUICE_CT_SYN, 40, &t->to, nullptr);
	sluice_ct_entry *e = ct_insert(b, &keys[SLUICE_CT_WAYS], 7, 1, SLUICE_CT_SYN, 50, &t->to, &evicted);
	ASSERT_EQ(e, &b->way[3]);
	EXPECT_TRUE(evicted);
	EXPECT_EQ(ct_find(b, &keys[3], 50, &t->to), nullptr);
	for (uint32_t i = 0; i < 3; i++)
		EXPECT_NE(ct_find(b, &keys[i], 50, &t->to), nullptr) << i;
	// A flow past its SYN (a mid-stream pickup) takes the SYN-only way
	// first too, and only without one the least recently seen flow.
	e = ct_insert(b, &keys[SLUICE_CT_WAYS + 1], 8, 1, SLUICE_CT_EST, 60, &t->to, &evicted);
	EXPECT_EQ(e, &b->way[3]);
	e = ct_insert(b, &keys[3], 103, 1, SLUICE_CT_EST, 61, &t->to, &evicted);
	EXPECT_TRUE(evicted);
	EXPECT_EQ(e, &b->way[2]); // ways 0-2 seen at 10: the last of the oldest
	EXPECT_TRUE(tags_consistent(*b));
}

TEST(ConntrackFragment, FragmentKeyNeverEqualsAFlowKey)
{
	const sluice_flow_key flow = v4_key(1, 40000);
	sluice_flow_key frag;
	// Whatever the id, even one whose halves equal the flow's ports.
	const uint32_t ids[] = {0, 1, 0xFFFF, 0xFFFFFFFFu,
				(uint32_t)flow.sport_be << 16 | flow.dport_be};
	for (uint32_t id : ids) {
		sluice_frag_key(&frag, SLUICE_AF_INET, flow.src, flow.dst, id, SLUICE_IPPROTO_TCP);
		EXPECT_FALSE(sluice_flow_key_equal(&frag, &flow)) << id;
		EXPECT_EQ(frag.pad[0], SLUICE_CT_FRAG_MARK);
		EXPECT_EQ(frag.pad[1], 0);
		EXPECT_EQ(std::memcmp(frag.src, flow.src, 16), 0);
		EXPECT_EQ(std::memcmp(frag.dst, flow.dst, 16), 0);
		EXPECT_EQ(frag.proto, SLUICE_IPPROTO_TCP);
		EXPECT_EQ(frag.family, SLUICE_AF_INET);
	}
	// The ports carry the id, so two datagrams of one pair of hosts differ.
	sluice_flow_key a, b2;
	sluice_frag_key(&a, SLUICE_AF_INET6, flow.src, flow.dst, 0x10000, SLUICE_IPPROTO_UDP);
	sluice_frag_key(&b2, SLUICE_AF_INET6, flow.src, flow.dst, 0x00001, SLUICE_IPPROTO_UDP);
	EXPECT_FALSE(sluice_flow_key_equal(&a, &b2));
	// And both kinds live side by side in one bucket.
	auto t = make_table(SLUICE_CT_WAYS);
	sluice_ct_bucket *b = &t->buckets[0];
	sluice_frag_key(&frag, SLUICE_AF_INET, flow.src, flow.dst,
			(uint32_t)flow.sport_be << 16 | flow.dport_be, SLUICE_IPPROTO_TCP);
	ct_insert(b, &flow, 1, 1, SLUICE_CT_EST, 0, &t->to, nullptr);
	ct_insert(b, &frag, 2, 1, SLUICE_CT_FRAG, 0, &t->to, nullptr);
	EXPECT_EQ(ct_find(b, &flow, 0, &t->to)->backend_id, 1u);
	EXPECT_EQ(ct_find(b, &frag, 0, &t->to)->backend_id, 2u);
}

// 1M random flows into a table of 1M entries (filled to capacity, so some
// buckets overflow and evict), then 10M other random flows looked up: none
// may hit, and every inserted flow either still hits with its own backend
// or was one of the counted evictions.
TEST(ConntrackScale, NoFalseHitsUnderTenMillionRandomKeys)
{
	constexpr uint32_t inserted = 1u << 20, others = 10'000'000;
	auto t = make_table(inserted);
	uint32_t evictions = 0;
	for (uint32_t i = 0; i < inserted; i++) {
		const sluice_flow_key k = random_key(i);
		bool evicted = false;
		sluice_ct_entry *e = ct_insert(bucket_of(t.get(), k), &k, backend_of(k), k.proto,
						      SLUICE_CT_EST, 1, &t->to, &evicted);
		ASSERT_NE(e, nullptr);
		evictions += evicted;
	}
	uint32_t hits = 0;
	for (uint32_t i = 0; i < inserted; i++) {
		const sluice_flow_key k = random_key(i);
		const sluice_ct_entry *e = ct_find(bucket_of(t.get(), k), &k, 2, &t->to);
		if (e == nullptr)
			continue;
		hits++;
		ASSERT_EQ(e->backend_id, backend_of(k)) << i;
		ASSERT_EQ(e->vip_id, k.proto) << i;
	}
	EXPECT_EQ(hits + evictions, inserted);
	// Filled to capacity, a bucket's flows are Poisson with mean 4, and a
	// bucket keeps at most 4 of them: 80.5% expected to stay.
	EXPECT_GT(hits, inserted / 100 * 78);
	uint32_t false_hits = 0;
	for (uint32_t i = 0; i < others; i++) {
		const sluice_flow_key k = random_key(inserted + i);
		false_hits += ct_find(bucket_of(t.get(), k), &k, 2, &t->to) != nullptr;
	}
	EXPECT_EQ(false_hits, 0u);
}

// 10M random flows through a 1M-entry table within 100 s (nothing expires):
// never NULL, every entry left holds its own key's backend and sits in its
// own bucket, and the evictions add up.
TEST(ConntrackScale, TenMillionFlowsThroughAMillionEntries)
{
	constexpr uint32_t entries = 1u << 20, flows = 10'000'000;
	auto t = make_table(entries);
	uint32_t evictions = 0;
	for (uint32_t i = 0; i < flows; i++) {
		const sluice_flow_key k = random_key(i);
		bool evicted = false;
		sluice_ct_entry *e = ct_insert(bucket_of(t.get(), k), &k, backend_of(k), 1,
						      SLUICE_CT_EST, i / 100'000, &t->to, &evicted);
		ASSERT_NE(e, nullptr);
		evictions += evicted;
	}
	uint32_t live = 0;
	for (uint32_t bi = 0; bi < t->n_buckets; bi++) {
		for (const sluice_ct_entry &e : t->buckets[bi].way) {
			if (e.state == SLUICE_CT_FREE)
				continue;
			live++;
			ASSERT_EQ(e.backend_id, backend_of(e.key));
			ASSERT_EQ(sluice_ct_bucket_index(ct_hash(&e.key), t->n_buckets), bi);
		}
		ASSERT_TRUE(tags_consistent(t->buckets[bi])) << bi;
	}
	EXPECT_EQ(live + evictions, flows);
	EXPECT_GT(live, entries / 100 * 99); // full, bar buckets no flow ever reached
	// The most recent flow of all is always kept.
	const sluice_flow_key last = random_key(flows - 1);
	EXPECT_NE(ct_find(bucket_of(t.get(), last), &last, flows / 100'000, &t->to), nullptr);
}

} // namespace

// A table that outlived its process (sluice-dpdk's kept tables) is read
// through sluice_ct_way_sound() before it is trusted: what insert writes
// passes, and each kind of damage fails.
TEST(ConntrackSound, WhatInsertWritesIsSoundAndEachDamageIsNot)
{
	auto t = make_table(1024);
	const sluice_flow_key k = v4_key(7, 4242);
	sluice_ct_bucket *b = bucket_of(t.get(), k);
	const auto bi = static_cast<uint32_t>(b - t->buckets);
	sluice_ct_entry *e = ct_insert(b, &k, 3, 1, SLUICE_CT_EST, 100, &defaults, nullptr);
	ASSERT_NE(e, nullptr);
	const int w = static_cast<int>(e - b->way);
	for (int i = 0; i < SLUICE_CT_WAYS; i++)
		EXPECT_TRUE(sluice_ct_way_sound(t.get(), bi, i)) << "way " << i;

	const sluice_ct_bucket good = *b;
	auto spoiled = [&](auto spoil) {
		*b = good;
		spoil(b->way[w]);
		return !sluice_ct_way_sound(t.get(), bi, w);
	};
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.key.src[0] ^= 1; })) << "key hashes elsewhere";
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.state = 9; })) << "unknown state";
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.pad[1] = 1; })) << "padding";
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.key.family = 5; })) << "family";
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.key.pad[0] = SLUICE_CT_FRAG_MARK; })) << "a flow with the fragment mark";
	EXPECT_TRUE(spoiled([](sluice_ct_entry &x) { x.state = SLUICE_CT_FRAG; })) << "a fragment without it";
	*b = good;
	b->way[0].tags[w] ^= 2;
	EXPECT_FALSE(sluice_ct_way_sound(t.get(), bi, w)) << "tag of another hash";
	*b = good;
	b->way[0].tags[(w + 1) % SLUICE_CT_WAYS] = 77;
	EXPECT_FALSE(sluice_ct_way_sound(t.get(), bi, (w + 1) % SLUICE_CT_WAYS)) << "a free way with a tag";
	*b = good;
	b->way[w == 1 ? 2 : 1].tags[0] = 5;
	EXPECT_FALSE(sluice_ct_way_sound(t.get(), bi, w == 1 ? 2 : 1)) << "tags past way 0";

	// Cleared, the way is free and sound, and the others keep their tags.
	*b = good;
	sluice_ct_clear_way(t.get(), bi, w);
	EXPECT_EQ(b->way[w].state, SLUICE_CT_FREE);
	EXPECT_EQ(b->way[0].tags[w], 0);
	EXPECT_TRUE(sluice_ct_way_sound(t.get(), bi, w));
	EXPECT_EQ(sluice_ct_find(b, &k, tag_of(&k), 100, &defaults), nullptr);
}

// Fragment keys are sound in state FRAG, and a table of random bytes keeps
// nothing that is not: every way of it either fails or is free.
TEST(ConntrackSound, FragmentsPassAndRandomBytesDoNot)
{
	auto t = make_table(4096);
	sluice_flow_key fk;
	uint8_t src[16] = {192, 0, 2, 1}, dst[16] = {10, 200, 1, 1};
	sluice_frag_key(&fk, SLUICE_AF_INET, src, dst, 0x1234, SLUICE_IPPROTO_UDP);
	sluice_ct_bucket *b = bucket_of(t.get(), fk);
	sluice_ct_entry *e = ct_insert(b, &fk, 1, 1, SLUICE_CT_FRAG, 5, &defaults, nullptr);
	ASSERT_NE(e, nullptr);
	EXPECT_TRUE(sluice_ct_way_sound(t.get(), static_cast<uint32_t>(b - t->buckets), static_cast<int>(e - b->way)));

	std::mt19937_64 rng(11);
	auto *bytes = reinterpret_cast<uint64_t *>(t->buckets);
	for (size_t i = 0; i < t->n_buckets * sizeof(sluice_ct_bucket) / 8; i++)
		bytes[i] = rng();
	uint64_t sound_used = 0;
	for (uint32_t bi = 0; bi < t->n_buckets; bi++)
		for (int w = 0; w < SLUICE_CT_WAYS; w++)
			if (sluice_ct_way_sound(t.get(), bi, w) && t->buckets[bi].way[w].state != SLUICE_CT_FREE)
				sound_used++;
	EXPECT_EQ(sound_used, 0u);
}
