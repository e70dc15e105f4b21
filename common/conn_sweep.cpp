// SPDX-License-Identifier: Apache-2.0
#include "conn_sweep.h"

#include <algorithm>
#include <cstring>

namespace sluice {

void conn_count_buckets(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to,
			conn_tally &t)
{
	for (uint64_t i = 0; i < n; i++) {
		for (const sluice_ct_entry &e : b[i].way) {
			// Relaxed loads: the worker writes these concurrently,
			// and each is a naturally aligned word it stores whole.
			const uint8_t state = __atomic_load_n(&e.state, __ATOMIC_RELAXED);
			if (state != SLUICE_CT_SYN && state != SLUICE_CT_EST && state != SLUICE_CT_FIN &&
			    state != SLUICE_CT_UDP)
				continue; // free, a fragment's key, or garbage mid-write
			const uint32_t last = __atomic_load_n(&e.last_seen_s, __ATOMIC_RELAXED);
			if (uint32_t(now_s - last) > sluice_ct_timeout(&to, state))
				continue; // expired: the worker frees it lazily, but it is no connection
			const uint32_t id = __atomic_load_n(&e.backend_id, __ATOMIC_RELAXED);
			if (id >= SLUICE_MAX_BACKENDS)
				continue;
			if (state == SLUICE_CT_FIN)
				t.by_backend[id].inactive++;
			else
				t.by_backend[id].active++;
		}
	}
}

conn_sweep::conn_sweep(uint64_t buckets, uint64_t period_ns, uint64_t max_step)
	: buckets_(std::max<uint64_t>(buckets, 1)), period_ns_(std::max<uint64_t>(period_ns, 1)),
	  max_step_(std::max<uint64_t>(max_step, 1)), tally_(std::make_unique<conn_tally>())
{
}

conn_sweep::step conn_sweep::due(uint64_t now_ns)
{
	begun_now_ = false;
	if (begun_ns_ == 0) {
		begun_ns_ = now_ns ? now_ns : 1;
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

bool conn_sweep::counted(const sluice_ct_bucket *b, uint64_t n, uint32_t now_s, const sluice_ct_timeouts &to)
{
	conn_count_buckets(b, n, now_s, to, *tally_);
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
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&info.conn_seq, __ATOMIC_RELAXED) == s1) {
			meta.sweeps = s1 / 2;
			return true;
		}
	}
	return false;
}

} // namespace sluice
