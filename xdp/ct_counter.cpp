// SPDX-License-Identifier: Apache-2.0
#include "ct_counter.h"

#include "sluice.skel.h"
#include "sys.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace sluice::xdp {

namespace {

// Buckets per step, over all CPUs: 64 KiB, one bpf_map_lookup_batch call
// per CPU. The map is not mmap'able (the program is its only writer), so
// every sweep copies the table through the kernel once: cpus x buckets x
// 256 B per period.
constexpr uint32_t read_buckets = 256;

// The program's connection-table clock: bpf_ktime_get_coarse_ns() seconds,
// which is CLOCK_MONOTONIC_COARSE.
uint32_t table_now_s()
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return static_cast<uint32_t>(ts.tv_sec);
}

} // namespace

ct_counter::ct_counter(const program &prog, const sluice_ct_timeouts &to, double period_s, const sluice_shm &shm,
		       sluice_worker &rec)
	: fd_(prog.map_fd(prog.skel()->maps.sl_ct)), cpus_(prog.cpus()), per_cpu_(prog.ct_buckets()),
	  step_(std::max<uint32_t>(1, read_buckets / std::max<uint32_t>(1, prog.cpus()))), to_(to), shm_(shm),
	  rec_(rec),
	  on_(period_s > 0),
	  // A step is bucket i..i+step of every CPU's table at once: a flow
	  // whose packets reached several CPUs has an entry in each, at the
	  // same index, and counts once (conn_count_across).
	  sweep_(prog.ct_buckets(), period_s > 0 ? uint64_t(period_s * 1e9) : 1, step_)
{
	if (!on_)
		return;
	buf_.resize(size_t(cpus_) * step_);
	keys_.resize(step_);
	sweep_.set_capacity(uint64_t(cpus_) * per_cpu_ * SLUICE_CT_WAYS);
	sweep_.announce(rec_);
}

bool ct_counter::read(uint32_t first, uint32_t n)
{
	for (uint32_t c = 0; c < cpus_; c++)
		if (!read_run(c * per_cpu_ + first, n, &buf_[size_t(c) * step_]))
			return false;
	return true;
}

bool ct_counter::read_run(uint32_t first, uint32_t n, sluice_ct_bucket *out)
{
	if (batch_) {
		// An array map's batch starts after the key in in_batch (the
		// previous batch's last); none: from key 0.
		uint32_t in = first - 1, next = 0, count = n;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		const int err = bpf_map_lookup_batch(fd_, first ? &in : nullptr, &next, keys_.data(), out, &count,
						     &opts);
		if ((err == 0 || errno == ENOENT) && count == n)
			return true;
		if (err != 0 && errno != ENOENT && errno != EINVAL && errno != 524 /* ENOTSUPP, kernel-internal */ &&
		    errno != EOPNOTSUPP)
			return false;
		// An older kernel without batches for arrays: one lookup per
		// bucket from now on (a syscall per 256 B; the same bytes).
		spdlog::debug("connection count: batch lookups unsupported here ({}); reading bucket by bucket",
			      errno_text(errno));
		batch_ = false;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = first + i;
		if (bpf_map_lookup_elem(fd_, &k, &out[i]) != 0)
			return false;
	}
	return true;
}

void ct_counter::list(uint32_t now_s)
{
	// Every CPU's buckets, a step at a time through the same buffer: a
	// million-entry table on two CPUs is 128 MiB through the kernel, some
	// tens of milliseconds. A bucket the map refuses is left out (said).
	for (uint32_t first = 0; first < per_cpu_; first += step_) {
		const uint32_t n = std::min(step_, per_cpu_ - first);
		if (!read(first, n)) {
			spdlog::warn("connection listing: reading sl_ct buckets {}..{} failed: {}", first,
				     first + n - 1, errno_text(errno));
			continue;
		}
		lister_.add(buf_.data(), n, now_s, to_, rec_, cpus_, step_);
	}
	lister_.answer(rec_);
}

void ct_counter::poll(uint64_t generation)
{
	if (!on_)
		return;
	if (lister_.requested(shm_, rec_))
		list(table_now_s());
	const uint64_t now_ns = monotonic_ns();
	const conn_sweep::step st = sweep_.due(now_ns, generation);
	if (st.count == 0)
		return;
	const auto first = static_cast<uint32_t>(st.first), n = static_cast<uint32_t>(st.count);
	if (!read(first, n)) {
		// Never counted as nothing: the next pass reads the same buckets
		// again, and meanwhile the record keeps the last complete
		// sweep (its conn_sweep_done_ns ages). The program holds the map,
		// so this does not happen short of a kernel refusing the read.
		if (!read_failing_)
			spdlog::warn("connection count: reading sl_ct buckets {}..{} failed: {}", first,
				     first + n - 1, errno_text(errno));
		read_failing_ = true;
		return;
	}
	read_failing_ = false;
	if (sweep_.counted(buf_.data(), n, table_now_s(), to_, cpus_, step_))
		sweep_.publish(rec_, now_ns);
}

} // namespace sluice::xdp
