// SPDX-License-Identifier: Apache-2.0
#include "conn_sweep.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace sluice {

namespace {

// What the sweep takes of a way: each field one relaxed load, the key
// copied (a torn key can only make one flow look like two, or two one).
struct seen_entry {
	sluice_flow_key key;
	uint32_t backend_id;
	uint32_t vip_id;
	uint32_t last_seen_s;
	uint8_t state;
	bool live;
};

// A connection's entry (expired or not); false for free ways, fragments'
// entries and garbage mid-write.
bool take(const sluice_ct_entry &e, uint32_t now_s, const sluice_ct_timeouts &to, seen_entry &out)
{
	// Relaxed loads: the worker writes these concurrently, and each is a
	// naturally aligned word it stores whole.
	out.state = __atomic_load_n(&e.state, __ATOMIC_RELAXED);
	if (out.state != SLUICE_CT_SYN && out.state != SLUICE_CT_EST && out.state != SLUICE_CT_FIN &&
	    out.state != SLUICE_CT_UDP)
		return false;
	out.backend_id = __atomic_load_n(&e.backend_id, __ATOMIC_RELAXED);
	if (out.backend_id >= SLUICE_MAX_BACKENDS)
		return false;
	out.vip_id = __atomic_load_n(&e.vip_id, __ATOMIC_RELAXED);
	out.last_seen_s = __atomic_load_n(&e.last_seen_s, __ATOMIC_RELAXED);
	// Expired entries are no connections (the worker frees them lazily),
	// but the cross-CPU rule below still learns from an expired FIN.
	out.live = !sluice_ct_expired_at(out.last_seen_s, out.state, now_s, &to);
	std::memcpy(&out.key, &e.key, sizeof(out.key));
	return true;
}

void tally_one(const seen_entry &e, conn_tally &t)
{
	if (e.state == SLUICE_CT_FIN)
		t.by_backend[e.backend_id].inactive++;
	else
		t.by_backend[e.backend_id].active++;
}

bool after(uint32_t a, uint32_t b) // a later than b, modulo 2^32
{
	return int32_t(a - b) > 0;
}

// One flow's copies (one per table that holds it): which one, if any, is
// the connection now. Each CPU moves its own copy by the packets it sees,
// so after the client's FIN on one CPU the close's last ACKs can refresh
// an EST copy on another: the latest FIN (live or expired) closes the
// flow, and a copy counts only if it is past that close: a SYN seen after
// it (the client reused the port), or anything seen after the FIN's
// timeout. Without a FIN, the latest copy is the flow's state.
const seen_entry *current(const seen_entry *c, size_t n, const sluice_ct_timeouts &to)
{
	const seen_entry *fin = nullptr;
	for (size_t i = 0; i < n; i++)
		if (c[i].state == SLUICE_CT_FIN && (!fin || after(c[i].last_seen_s, fin->last_seen_s)))
			fin = &c[i];
	const seen_entry *best = fin;
	for (size_t i = 0; i < n; i++) {
		const seen_entry &e = c[i];
		if (e.state == SLUICE_CT_FIN)
			continue;
		if (fin && !(e.state == SLUICE_CT_SYN && after(e.last_seen_s, fin->last_seen_s)) &&
		    !after(e.last_seen_s, fin->last_seen_s + to.fin_s))
			continue; // part of the closed connection
		if (!best || best == fin || after(e.last_seen_s, best->last_seen_s))
			best = &e;
	}
	return best && best->live ? best : nullptr;
}

// Live ways of any state, fragments' included: what fills the table.
uint64_t live_ways(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to)
{
	uint64_t live = 0;
	for (uint64_t i = 0; i < n; i++)
		for (const sluice_ct_entry &w : b[i].way) {
			const uint8_t st = __atomic_load_n(&w.state, __ATOMIC_RELAXED);
			if (st != SLUICE_CT_FREE &&
			    !sluice_ct_expired_at(__atomic_load_n(&w.last_seen_s, __ATOMIC_RELAXED), st, now_s, &to))
				live++;
		}
	return live;
}

// Calls f(entry) once per flow of buckets b[0..n) over `copies` tables (see
// conn_count_across): the copy that is the connection now, if it is live.
template <class F>
void each_connection(const sluice_ct_bucket *b, uint32_t copies, uint64_t stride, uint64_t n, uint32_t now_s,
		     const sluice_ct_timeouts &to, F &&f)
{
	seen_entry e;
	if (copies <= 1) {
		for (uint64_t i = 0; i < n; i++)
			for (const sluice_ct_entry &w : b[i].way)
				if (take(w, now_s, to, e) && e.live)
					f(e);
		return;
	}
	// A flow's bucket index is the same in every copy (same key, same
	// bucket count), so all its copies sit in group i: sorted by key, each
	// flow's copies are one run, judged by current().
	std::vector<seen_entry> group;
	group.reserve(size_t(copies) * SLUICE_CT_WAYS);
	for (uint64_t i = 0; i < n; i++) {
		group.clear();
		for (uint32_t c = 0; c < copies; c++)
			for (const sluice_ct_entry &w : b[c * stride + i].way)
				if (take(w, now_s, to, e))
					group.push_back(e);
		auto key_less = [](const seen_entry &x, const seen_entry &y) {
			return std::memcmp(&x.key, &y.key, sizeof(x.key)) < 0;
		};
		std::sort(group.begin(), group.end(), key_less);
		for (size_t r = 0; r < group.size();) {
			size_t end = r + 1;
			while (end < group.size() && sluice_flow_key_equal(&group[r].key, &group[end].key))
				end++;
			if (const seen_entry *cur = current(&group[r], end - r, to))
				f(*cur);
			r = end;
		}
	}
}

} // namespace

void conn_count_buckets(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
			conn_tally &t)
{
	conn_count_across(b, 1, 0, n, now_s, to, t);
}

void conn_count_across(const sluice_ct_bucket *b, uint32_t copies, uint64_t stride, uint64_t n,
		       uint32_t now_s, const sluice_ct_timeouts &to, conn_tally &t)
{
	each_connection(b, copies, stride, n, now_s, to, [&](const seen_entry &e) { tally_one(e, t); });
	for (uint32_t c = 0; c < std::max<uint32_t>(copies, 1); c++)
		t.live_entries += live_ways(b + c * stride, n, now_s, to);
}

conn_sweep::conn_sweep(uint64_t buckets, uint64_t period_ns, uint64_t max_step)
	: buckets_(std::max<uint64_t>(buckets, 1)), period_ns_(std::max<uint64_t>(period_ns, 1)),
	  max_step_(std::max<uint64_t>(max_step, 1)), tally_(std::make_unique<conn_tally>())
{
}

conn_sweep::step conn_sweep::due(uint64_t now_ns, uint64_t generation)
{
	begun_now_ = false;
	if (begun_ns_ == 0) {
		begun_ns_ = now_ns ? now_ns : 1;
		begin_generation_ = generation;
		cursor_ = 0;
		begun_now_ = true;
	}
	const uint64_t elapsed = now_ns > begun_ns_ ? now_ns - begun_ns_ : 0;
	// Where the sweep should be by now; 128-bit: buckets x ns overflows 64.
	const uint64_t target = elapsed >= period_ns_
					? buckets_
					: uint64_t((unsigned __int128)buckets_ * elapsed / period_ns_);
	if (target <= cursor_)
		return {cursor_, 0};
	return {cursor_, std::min({target - cursor_, max_step_, buckets_ - cursor_})};
}

void conn_sweep::announce(sluice_worker &rec) const
{
	__atomic_store_n(&rec.info.conn_sweep_ms, uint32_t(std::min<uint64_t>(std::max<uint64_t>(period_ns_ / 1000000, 1), UINT32_MAX)),
			 __ATOMIC_RELEASE);
}

bool conn_sweep::counted(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
			 uint32_t copies, uint64_t stride)
{
	conn_count_across(b, copies, stride, n, now_s, to, *tally_);
	cursor_ += n;
	return cursor_ >= buckets_;
}

void conn_sweep::publish(sluice_worker &rec, uint64_t now_ns)
{
	sluice_worker_info &info = rec.info;
	// The writer side of shm.h's sequence lock: odd, the data, even again.
	const uint32_t seq = __atomic_load_n(&info.conn_seq, __ATOMIC_RELAXED) & ~1u;
	__atomic_store_n(&info.conn_seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++) {
		__atomic_store_n(&rec.conns[i].active, tally_->by_backend[i].active, __ATOMIC_RELAXED);
		__atomic_store_n(&rec.conns[i].inactive, tally_->by_backend[i].inactive, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&info.conn_sweep_generation, begin_generation_, __ATOMIC_RELAXED);
	__atomic_store_n(&info.conn_sweep_begun_ns, begun_ns_, __ATOMIC_RELAXED);
	__atomic_store_n(&info.conn_sweep_done_ns, now_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&info.ct_live, uint32_t(std::min<uint64_t>(tally_->live_entries, UINT32_MAX)),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&info.ct_capacity, uint32_t(std::min<uint64_t>(capacity_, UINT32_MAX)), __ATOMIC_RELAXED);
	// Never 0 again once counted (0 means "does not count"): a wrap skips it.
	__atomic_store_n(&info.conn_seq, seq + 2 ? seq + 2 : 2, __ATOMIC_RELEASE);
	sweeps_++;
	std::memset(tally_.get(), 0, sizeof(*tally_));
	begun_ns_ = 0;
	cursor_ = 0;
}

bool read_conns(const sluice_worker &rec, conn_reading &meta, conn_tally &out)
{
	const sluice_worker_info &info = rec.info;
	meta.period_ms = __atomic_load_n(&info.conn_sweep_ms, __ATOMIC_ACQUIRE);
	// The publisher holds the lock for one 32 KiB copy every sweep period:
	// a handful of tries always finds it free.
	for (int tries = 0; tries < 64; tries++) {
		const uint32_t s1 = __atomic_load_n(&info.conn_seq, __ATOMIC_ACQUIRE);
		if (s1 == 0)
			return false;
		if (s1 & 1)
			continue;
		for (uint32_t i = 0; i < SLUICE_MAX_BACKENDS; i++) {
			out.by_backend[i].active = __atomic_load_n(&rec.conns[i].active, __ATOMIC_RELAXED);
			out.by_backend[i].inactive = __atomic_load_n(&rec.conns[i].inactive, __ATOMIC_RELAXED);
		}
		meta.sweep_generation = __atomic_load_n(&info.conn_sweep_generation, __ATOMIC_RELAXED);
		meta.begun_ns = __atomic_load_n(&info.conn_sweep_begun_ns, __ATOMIC_RELAXED);
		meta.done_ns = __atomic_load_n(&info.conn_sweep_done_ns, __ATOMIC_RELAXED);
		meta.ct_live = __atomic_load_n(&info.ct_live, __ATOMIC_RELAXED);
		meta.ct_capacity = __atomic_load_n(&info.ct_capacity, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&info.conn_seq, __ATOMIC_RELAXED) == s1) {
			meta.sweeps = s1 / 2;
			return true;
		}
	}
	return false;
}

bool conn_lister::requested(const sluice_shm &shm, const sluice_worker &rec)
{
	const uint32_t seq = __atomic_load_n(&shm.conn_list.seq, __ATOMIC_ACQUIRE);
	if (seq == 0 || seq == __atomic_load_n(&rec.info.conn_list_done, __ATOMIC_RELAXED))
		return false;
	req_.seq = seq;
	req_.vip_id = __atomic_load_n(&shm.conn_list.vip_id, __ATOMIC_RELAXED);
	req_.backend_id = __atomic_load_n(&shm.conn_list.backend_id, __ATOMIC_RELAXED);
	req_.limit = std::min(__atomic_load_n(&shm.conn_list.limit, __ATOMIC_RELAXED), SLUICE_CONN_LIST_ROWS);
	rows_ = matched_ = 0;
	return true;
}

void conn_lister::add(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
		      sluice_worker &rec, uint32_t copies, uint64_t stride)
{
	each_connection(b, copies, stride, n, now_s, to, [&](const seen_entry &e) {
		const uint32_t vip_id = e.vip_id;
		if ((req_.vip_id != SLUICE_CONN_ANY && vip_id != req_.vip_id) ||
		    (req_.backend_id != SLUICE_CONN_ANY && e.backend_id != req_.backend_id))
			return;
		matched_++;
		if (rows_ >= req_.limit)
			return;
		sluice_conn_row &r = rec.rows[rows_++];
		std::memset(&r, 0, sizeof(r));
		r.key = e.key;
		r.backend_id = e.backend_id;
		r.vip_id = vip_id;
		r.state = e.state;
		r.age_s = now_s - e.last_seen_s;
		const uint32_t timeout = sluice_ct_timeout(&to, e.state);
		r.expire_s = r.age_s < timeout ? timeout - r.age_s : 0;
	});
}

void conn_lister::answer(sluice_worker &rec)
{
	__atomic_store_n(&rec.info.conn_list_rows, rows_, __ATOMIC_RELAXED);
	__atomic_store_n(&rec.info.conn_list_matched, matched_, __ATOMIC_RELAXED);
	__atomic_store_n(&rec.info.conn_list_done, req_.seq, __ATOMIC_RELEASE);
}

uint32_t post_conn_list(sluice_shm &shm, uint32_t vip_id, uint32_t backend_id, uint32_t limit)
{
	sluice_conn_list_request &r = shm.conn_list;
	uint32_t seq = __atomic_load_n(&r.seq, __ATOMIC_RELAXED) + 1;
	if (seq == 0) // 0 means none posted
		seq = 1;
	__atomic_store_n(&r.vip_id, vip_id, __ATOMIC_RELAXED);
	__atomic_store_n(&r.backend_id, backend_id, __ATOMIC_RELAXED);
	__atomic_store_n(&r.limit, std::min(limit, SLUICE_CONN_LIST_ROWS), __ATOMIC_RELAXED);
	__atomic_store_n(&r.seq, seq, __ATOMIC_RELEASE);
	return seq;
}

bool conn_list_answered(const sluice_worker &rec, uint32_t seq)
{
	return __atomic_load_n(&rec.info.conn_list_done, __ATOMIC_ACQUIRE) == seq;
}

} // namespace sluice
