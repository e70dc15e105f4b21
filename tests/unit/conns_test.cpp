// SPDX-License-Identifier: Apache-2.0
// Live connections per backend: a real connection table filled through
// conntrack.h, swept by common/conn_sweep (what both dataplanes run),
// published into worker records as shm.h lays them out, summed and judged
// by controlplane/conns (what sluiced runs). What an operator reads: IPVS's
// ActiveConn/InActConn per backend, and "drained" only once nothing is left.
#include "conn_sweep.h"
#include "conns.h"

#include <sluice/conntrack.h>
#include <sluice/shm.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

using namespace sluice;

struct freer {
	void operator()(void *p) const { std::free(p); }
};
using table_ptr = std::unique_ptr<sluice_ct_table, freer>;
using record_ptr = std::unique_ptr<sluice_worker, freer>;

constexpr uint64_t secret = 0x9E3779B97F4A7C15ull;
constexpr uint64_t ns = 1000000000ull;

table_ptr make_table(uint32_t entries)
{
	const uint64_t bytes = sluice_ct_table_bytes(entries);
	auto *t = static_cast<sluice_ct_table *>(std::aligned_alloc(SLUICE_CACHE_LINE, bytes));
	std::memset(static_cast<void *>(t), 0, bytes);
	sluice_ct_table_init(t, entries, nullptr, secret);
	return table_ptr(t);
}

record_ptr make_record()
{
	return record_ptr(static_cast<sluice_worker *>(std::calloc(1, sizeof(sluice_worker))));
}

sluice_flow_key key(uint32_t n, uint8_t proto = SLUICE_IPPROTO_TCP)
{
	sluice_flow_key k;
	std::memset(&k, 0, sizeof(k));
	k.src[0] = 192;
	k.src[1] = 0;
	k.src[2] = uint8_t(n >> 8);
	k.src[3] = uint8_t(n);
	k.dst[0] = 10;
	k.dst[3] = 1;
	k.sport_be = uint16_t(40000 + n);
	k.dport_be = 80;
	k.proto = proto;
	k.family = SLUICE_AF_INET;
	return k;
}

// Stores a flow as the worker would: its first packet's state, at now_s.
void put(sluice_ct_table *t, const sluice_flow_key &k, uint32_t backend, uint8_t state, uint32_t now_s,
	 uint32_t vip = 1)
{
	const uint32_t h = sluice_ct_hash(&k, t->secret);
	ASSERT_NE(sluice_ct_insert(sluice_ct_table_bucket(t, h), &k, sluice_ct_tag(h), backend, vip, state, now_s,
				   &t->to, nullptr),
		  nullptr);
}

// One whole sweep of `t` through conn_sweep's pacing, begun at `start_ns`
// with the worker forwarding by `generation`, published into `rec`.
void sweep_into(sluice_worker &rec, const sluice_ct_table *t, uint32_t now_s, uint64_t generation,
		uint64_t start_ns = 5 * ns)
{
	conn_sweep s(t->n_buckets, 2 * ns, 7);
	s.announce(rec);
	bool done = false;
	for (uint64_t now = start_ns; !done && now < start_ns + 10 * ns; now += ns / 100) {
		const conn_sweep::step st = s.due(now, generation);
		if (st.count && s.counted(&t->buckets[st.first], st.count, now_s, t->to)) {
			s.publish(rec, now);
			done = true;
		}
	}
	ASSERT_TRUE(done) << "the sweep never completed";
}

TEST(conn_sweep, counts_live_entries_by_state_like_ipvs)
{
	table_ptr t = make_table(4096);
	const uint32_t now = 10000;
	put(t.get(), key(1), 7, SLUICE_CT_SYN, now);       // active
	put(t.get(), key(2), 7, SLUICE_CT_EST, now - 899); // active, one second short of EST's 900
	put(t.get(), key(3), 7, SLUICE_CT_FIN, now - 5);   // inactive
	put(t.get(), key(4, SLUICE_IPPROTO_UDP), 7, SLUICE_CT_UDP, now);
	put(t.get(), key(5), 7, SLUICE_CT_EST, now - 901); // expired: no connection, though still stored
	put(t.get(), key(6), 7, SLUICE_CT_FIN, now - 121); // past FIN's 120 s
	put(t.get(), key(7), 9, SLUICE_CT_EST, now);       // another backend
	sluice_flow_key fk;
	const uint8_t src[16] = {192, 0, 2, 1}, dst[16] = {10, 0, 0, 1};
	sluice_frag_key(&fk, SLUICE_AF_INET, src, dst, 77, SLUICE_IPPROTO_UDP);
	put(t.get(), fk, 7, SLUICE_CT_FRAG, now); // a datagram's fragments: no connection

	record_ptr rec = make_record();
	sweep_into(*rec, t.get(), now, 3);
	conn_reading meta;
	auto got = std::make_unique<conn_tally>();
	ASSERT_TRUE(read_conns(*rec, meta, *got));
	EXPECT_EQ(got->by_backend[7].active, 3u);
	EXPECT_EQ(got->by_backend[7].inactive, 1u);
	EXPECT_EQ(got->by_backend[9].active, 1u);
	EXPECT_EQ(got->by_backend[9].inactive, 0u);
	EXPECT_EQ(meta.sweeps, 1u);
	// The fill counts every live way, the fragment's too, not the expired.
	EXPECT_EQ(meta.ct_live, 6u);
	EXPECT_EQ(meta.sweep_generation, 3u);
	EXPECT_EQ(meta.period_ms, 2000u);
	EXPECT_GE(meta.done_ns, meta.begun_ns);
}

TEST(conn_sweep, a_flow_in_several_cpus_tables_counts_once_in_its_latest_state)
{
	// sluice-xdp's per-CPU tables: a veth (or RPS) hands one flow's packets
	// to several CPUs, and each CPU's table then holds the flow.
	const uint32_t now = 2000;
	table_ptr cpu0 = make_table(256), cpu1 = make_table(256);
	put(cpu0.get(), key(1), 5, SLUICE_CT_EST, now - 3);
	put(cpu1.get(), key(1), 5, SLUICE_CT_FIN, now - 1); // its last packet, a FIN, on CPU 1
	put(cpu0.get(), key(2), 5, SLUICE_CT_EST, now);
	put(cpu1.get(), key(2), 5, SLUICE_CT_EST, now - 2);
	put(cpu1.get(), key(3), 6, SLUICE_CT_UDP, now);
	// Closed: its FIN on CPU 0 has expired, the close's last ACK refreshed
	// CPU 1's EST copy after it. No connection.
	put(cpu0.get(), key(4), 6, SLUICE_CT_FIN, now - 121);
	put(cpu1.get(), key(4), 6, SLUICE_CT_EST, now - 120);
	// Closed, then the port reused: a SYN after the FIN is a new connection.
	put(cpu0.get(), key(5), 6, SLUICE_CT_FIN, now - 10);
	put(cpu1.get(), key(5), 6, SLUICE_CT_SYN, now - 2);
	// The map's layout: every CPU's buckets back to back.
	const uint32_t nb = cpu0->n_buckets;
	std::vector<sluice_ct_bucket> both(2 * nb);
	std::memcpy(both.data(), cpu0->buckets, nb * sizeof(sluice_ct_bucket));
	std::memcpy(both.data() + nb, cpu1->buckets, nb * sizeof(sluice_ct_bucket));
	auto t = std::make_unique<conn_tally>();
	conn_count_across(both.data(), 2, nb, nb, now, cpu0->to, *t);
	EXPECT_EQ(t->by_backend[5].active, 1u);
	EXPECT_EQ(t->by_backend[5].inactive, 1u);
	EXPECT_EQ(t->by_backend[6].active, 2u);
	EXPECT_EQ(t->by_backend[6].inactive, 0u);
	// Counted table by table, as sluice-dpdk's RSS-steered ones are, the
	// two flows of backend 5 would have been four.
	auto each = std::make_unique<conn_tally>();
	conn_count_buckets(both.data(), 2 * nb, now, cpu0->to, *each);
	EXPECT_EQ(each->by_backend[5].active + each->by_backend[5].inactive, 4u);
}

TEST(conn_sweep, paced_over_the_period_in_bounded_steps)
{
	conn_sweep s(1000, 2 * ns, 64);
	EXPECT_EQ(s.due(10 * ns, 0).count, 0u); // begins: nothing due yet
	EXPECT_TRUE(s.sweep_begun());
	conn_sweep::step st = s.due(11 * ns, 0); // half the period: half the table, in steps of 64
	EXPECT_FALSE(s.sweep_begun());
	EXPECT_EQ(st.first, 0u);
	EXPECT_EQ(st.count, 64u);
	std::vector<sluice_ct_bucket> empty(64);
	sluice_ct_timeouts to = sluice_ct_default_timeouts();
	uint64_t done = 0;
	for (int i = 0; i < 100 && st.count; i++) {
		EXPECT_EQ(st.first, done);
		EXPECT_LE(st.count, 64u);
		EXPECT_FALSE(s.counted(empty.data(), st.count, 0, to));
		done += st.count;
		st = s.due(11 * ns, 0);
	}
	EXPECT_EQ(done, 500u) << "half the period: half the buckets, no more";
	// The rest by the period's end, and a step never runs past the table.
	for (int i = 0; i < 100; i++) {
		st = s.due(13 * ns, 0);
		EXPECT_LE(st.first + st.count, 1000u);
		if (s.counted(empty.data(), st.count, 0, to))
			break;
		done += st.count;
	}
	EXPECT_EQ(done + st.count, 1000u);
}

TEST(conn_sweep, a_record_being_written_is_not_read)
{
	record_ptr rec = make_record();
	conn_reading meta;
	auto got = std::make_unique<conn_tally>();
	EXPECT_FALSE(read_conns(*rec, meta, *got)) << "no sweep yet: it does not count";
	EXPECT_EQ(meta.period_ms, 0u);
	table_ptr t = make_table(64);
	sweep_into(*rec, t.get(), 100, 1);
	ASSERT_TRUE(read_conns(*rec, meta, *got));
	rec->info.conn_seq |= 1; // the publisher mid-copy
	EXPECT_FALSE(read_conns(*rec, meta, *got));
}

TEST(conns, sum_over_live_records_and_who_is_pending)
{
	const uint32_t now = 500;
	table_ptr a = make_table(1024), b = make_table(1024);
	for (uint32_t i = 0; i < 10; i++)
		put(a.get(), key(i), 3, SLUICE_CT_EST, now);
	for (uint32_t i = 10; i < 14; i++)
		put(b.get(), key(i), 3, SLUICE_CT_FIN, now);
	put(b.get(), key(20), 4, SLUICE_CT_EST, now);
	record_ptr ra = make_record(), rb = make_record(), starting = make_record(), silent = make_record();
	sweep_into(*ra, a.get(), now, 8);
	sweep_into(*rb, b.get(), now, 6);
	conn_sweep(16, 2 * ns).announce(*starting); // counts, no sweep done yet
	// `silent` never counts (--conn-sweep-s 0): it adds nothing and holds nothing up.

	conn_totals t = sum_conns({ra.get(), rb.get(), silent.get()});
	EXPECT_EQ(t.counting, 2u);
	EXPECT_EQ(t.pending, 0u);
	EXPECT_EQ(t.min_sweep_generation, 6u);
	EXPECT_EQ(t.of(3).active, 10u);
	EXPECT_EQ(t.of(3).inactive, 4u);
	EXPECT_EQ(t.of(4).active, 1u);
	EXPECT_EQ(t.of(5).active, 0u);

	t = sum_conns({ra.get(), starting.get()});
	EXPECT_EQ(t.counting, 1u);
	EXPECT_EQ(t.pending, 1u);

	t = sum_conns({silent.get()});
	EXPECT_FALSE(t.known());
	EXPECT_EQ(t.of(3).active, 0u);
}

TEST(conns, drain_is_done_only_when_every_counting_sweep_after_it_finds_nothing)
{
	const uint32_t now = 500;
	table_ptr a = make_table(1024), b = make_table(1024);
	put(a.get(), key(1), 3, SLUICE_CT_EST, now);
	record_ptr ra = make_record(), rb = make_record(), starting = make_record();
	const uint64_t drained_at = 10;

	EXPECT_EQ(drain_state(sum_conns({}), 3, drained_at), drain_progress::unknown);

	// Sweeps begun before the drain reached the dataplanes: a flow that
	// landed behind them is not excluded, whatever they found.
	sweep_into(*ra, b.get(), now, 9);
	sweep_into(*rb, b.get(), now, 10);
	EXPECT_EQ(drain_state(sum_conns({ra.get(), rb.get()}), 3, drained_at), drain_progress::waiting);

	// After it, one still holds a connection to backend 3.
	sweep_into(*ra, a.get(), now, 10);
	EXPECT_EQ(drain_state(sum_conns({ra.get(), rb.get()}), 3, drained_at), drain_progress::waiting);
	EXPECT_EQ(drain_state(sum_conns({ra.get(), rb.get()}), 4, drained_at), drain_progress::done);

	// Its flow went (FIN, then its timeout): done.
	sweep_into(*ra, a.get(), now + 901, 11);
	EXPECT_EQ(drain_state(sum_conns({ra.get(), rb.get()}), 3, drained_at), drain_progress::done);
	EXPECT_STREQ(drain_progress_name(drain_progress::done), "done");

	// A dataplane that counts but has not finished its first sweep holds
	// the verdict back: its table is in no sum yet.
	conn_sweep(16, 2 * ns).announce(*starting);
	EXPECT_EQ(drain_state(sum_conns({ra.get(), rb.get(), starting.get()}), 3, drained_at),
		  drain_progress::waiting);
	EXPECT_EQ(drain_state(sum_conns({starting.get()}), 3, drained_at), drain_progress::waiting);
}

// `sluicectl conn list`: sluiced posts a filter into the segment, the
// dataplane's housekeeping answers it in its worker record with rows and
// the number that matched; each request is answered once.
struct listing {
	std::unique_ptr<sluice_shm, freer> shm{static_cast<sluice_shm *>(std::calloc(1, sizeof(sluice_shm)))};
	sluice_worker &rec() { return shm->workers[0]; }
	std::vector<sluice_conn_row> rows()
	{
		return {rec().rows, rec().rows + rec().info.conn_list_rows};
	}
};

TEST(conn_list, answers_the_posted_filter_once_with_rows_and_the_matched_count)
{
	table_ptr t = make_table(4096);
	const uint32_t now = 5000;
	put(t.get(), key(1), 7, SLUICE_CT_EST, now - 4, 1);
	put(t.get(), key(2), 7, SLUICE_CT_FIN, now - 20, 1);
	put(t.get(), key(3), 8, SLUICE_CT_SYN, now, 1);
	put(t.get(), key(4, SLUICE_IPPROTO_UDP), 9, SLUICE_CT_UDP, now - 1, 2);
	put(t.get(), key(5), 7, SLUICE_CT_EST, now - 901, 1); // expired: not a connection

	listing l;
	ASSERT_NE(l.shm, nullptr);
	conn_lister lister;
	EXPECT_FALSE(lister.requested(*l.shm, l.rec())) << "nothing posted yet";

	uint32_t seq = post_conn_list(*l.shm, 1, 7, 100); // VIP 1, backend 7
	ASSERT_TRUE(lister.requested(*l.shm, l.rec()));
	EXPECT_FALSE(conn_list_answered(l.rec(), seq));
	lister.add(t->buckets, t->n_buckets, now, t->to, l.rec());
	lister.answer(l.rec());
	EXPECT_TRUE(conn_list_answered(l.rec(), seq));
	EXPECT_FALSE(lister.requested(*l.shm, l.rec())) << "answered: not again";
	auto rows = l.rows();
	ASSERT_EQ(rows.size(), 2u);
	EXPECT_EQ(l.rec().info.conn_list_matched, 2u);
	for (const auto &r : rows) {
		EXPECT_EQ(r.backend_id, 7u);
		EXPECT_EQ(r.vip_id, 1u);
		const sluice_flow_key k1 = key(1), k2 = key(2);
		if (sluice_flow_key_equal(&r.key, &k1)) {
			EXPECT_EQ(r.state, SLUICE_CT_EST);
			EXPECT_EQ(r.age_s, 4u);
			EXPECT_EQ(r.expire_s, t->to.est_s - 4);
		} else {
			EXPECT_TRUE(sluice_flow_key_equal(&r.key, &k2));
			EXPECT_EQ(r.state, SLUICE_CT_FIN);
			EXPECT_EQ(r.expire_s, t->to.fin_s - 20);
		}
	}

	// Every VIP, every backend, at most 2 rows: all 4 counted as matched.
	seq = post_conn_list(*l.shm, SLUICE_CONN_ANY, SLUICE_CONN_ANY, 2);
	ASSERT_TRUE(lister.requested(*l.shm, l.rec()));
	lister.add(t->buckets, t->n_buckets, now, t->to, l.rec());
	lister.answer(l.rec());
	EXPECT_TRUE(conn_list_answered(l.rec(), seq));
	EXPECT_EQ(l.rows().size(), 2u);
	EXPECT_EQ(l.rec().info.conn_list_matched, 4u);

	// A limit past the record's rows is held to them.
	post_conn_list(*l.shm, 2, SLUICE_CONN_ANY, 1000000);
	EXPECT_EQ(l.shm->conn_list.limit, SLUICE_CONN_LIST_ROWS);
	ASSERT_TRUE(lister.requested(*l.shm, l.rec()));
	lister.add(t->buckets, t->n_buckets, now, t->to, l.rec());
	lister.answer(l.rec());
	ASSERT_EQ(l.rows().size(), 1u);
	EXPECT_EQ(l.rows()[0].state, SLUICE_CT_UDP);
	EXPECT_EQ(l.rows()[0].backend_id, 9u);
}

TEST(conn_list, a_flow_in_several_cpus_tables_is_listed_once_as_its_current_copy)
{
	const uint32_t now = 2000;
	table_ptr cpu0 = make_table(256), cpu1 = make_table(256);
	put(cpu0.get(), key(1), 5, SLUICE_CT_EST, now - 3);
	put(cpu1.get(), key(1), 5, SLUICE_CT_FIN, now - 1);
	put(cpu0.get(), key(2), 5, SLUICE_CT_EST, now);
	put(cpu1.get(), key(2), 5, SLUICE_CT_EST, now - 2);
	const uint32_t nb = cpu0->n_buckets;
	std::vector<sluice_ct_bucket> both(2 * nb);
	std::memcpy(both.data(), cpu0->buckets, nb * sizeof(sluice_ct_bucket));
	std::memcpy(both.data() + nb, cpu1->buckets, nb * sizeof(sluice_ct_bucket));

	listing l;
	conn_lister lister;
	post_conn_list(*l.shm, SLUICE_CONN_ANY, SLUICE_CONN_ANY, 10);
	ASSERT_TRUE(lister.requested(*l.shm, l.rec()));
	// Read as sluice-xdp reads its map: in steps, every CPU's run at once.
	for (uint32_t first = 0; first < nb; first += 16)
		lister.add(both.data() + first, std::min(16u, nb - first), now, cpu0->to, l.rec(), 2, nb);
	lister.answer(l.rec());
	auto rows = l.rows();
	ASSERT_EQ(rows.size(), 2u);
	EXPECT_EQ(l.rec().info.conn_list_matched, 2u);
	const sluice_flow_key k1 = key(1);
	for (const auto &r : rows)
		EXPECT_EQ(r.state, sluice_flow_key_equal(&r.key, &k1) ? SLUICE_CT_FIN : SLUICE_CT_EST);

	// The fill counts each copy: four ways hold the two flows.
	auto tally = std::make_unique<conn_tally>();
	conn_count_across(both.data(), 2, nb, nb, now, cpu0->to, *tally);
	EXPECT_EQ(tally->live_entries, 4u);
}

} // namespace
