// SPDX-License-Identifier: Apache-2.0
#include "ct_counter.h"

#include "sluice.skel.h"
#include "sys.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <ctime>

namespace sluice::xdp {

namespace {

// Buckets per map read: 64 KiB, one bpf_map_lookup_batch call. The map is
// not mmap'able (the program is its only writer), so every sweep copies
// the table through the kernel once: cpus x buckets x 256 B per period.
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

ct_counter::ct_counter(const program &prog, const sluice_ct_timeouts &to, double period_s, sluice_worker &rec)
	: fd_(prog.map_fd(prog.skel()->maps.sl_ct)), to_(to), rec_(rec), on_(period_s > 0),
	  sweep_(uint64_t(prog.cpus()) * prog.ct_buckets(), period_s > 0 ? uint64_t(period_s * 1e9) : 1, read_buckets)
{
	if (!on_)
		return;
	buf_.resize(read_buckets);
	keys_.resize(read_buckets);
	sweep_.announce(rec_);
}

bool ct_counter::read(uint32_t first, uint32_t n)
{
	if (batch_) {
		// An array map's batch starts after the key in in_batch (the
		// previous batch's last); none: from key 0.
		uint32_t in = first - 1, out = 0, count = n;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		const int err = bpf_map_lookup_batch(fd_, first ? &in : nullptr, &out, keys_.data(), buf_.data(),
						     &count, &opts);
		if ((err == 0 || errno == ENOENT) && count == n)
			return true;
		if (err != 0 && errno != ENOENT && errno != EINVAL && errno != 524 /* ENOTSUPP, kernel-internal */ && errno != EOPNOTSUPP)
			return false;
		// An older kernel without batches for arrays: one lookup per
		// bucket from now on (a syscall per 256 B; the same bytes).
		spdlog::debug("connection count: batch lookups unsupported here ({}); reading bucket by bucket",
			      errno_text(errno));
		batch_ = false;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = first + i;
		if (bpf_map_lookup_elem(fd_, &k, &buf_[i]) != 0)
			return false;
	}
	return true;
}

void ct_counter::poll(uint64_t generation)
{
	if (!on_)
		return;
	const uint64_t now_ns = monotonic_ns();
	const conn_sweep::step st = sweep_.due(now_ns);
	if (sweep_.sweep_begun())
		sweep_.set_begin_generation(generation);
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
	if (sweep_.counted(buf_.data(), n, table_now_s(), to_))
		sweep_.publish(rec_, now_ns);
}

} // namespace sluice::xdp
