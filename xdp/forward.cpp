// SPDX-License-Identifier: Apache-2.0
// sluice-xdp --iface IF: load the program, wait for a snapshot, attach, and
// keep the maps in step with the segment until stopped.
#include "modes.h"

#include "ct_counter.h"
#include "handover.h"
#include "mirror.h"
#include "program.h"
#include "shm_segment.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <thread>

namespace sluice::xdp {

namespace {

void housekeeping_sleep() { std::this_thread::sleep_for(poll_interval); }

} // namespace

bool mirror_latest(worker_handle &h, mirror &m, uint64_t &refused)
{
	const sluice_snapshot *s = h.acquire();
	if (!s)
		return m.generation() != 0;
	const uint64_t gen = s->hdr.generation;
	if (gen == m.generation() || gen == refused)
		return m.generation() != 0;
	std::string why;
	if (m.apply(*s, &why)) {
		h.applied(gen, SLUICE_REFUSED_NONE);
		spdlog::debug("generation {} in the maps (bank {}), {} us after its publication; "
			      "grace period {} us",
			      gen, m.bank(), m.last_latency_ns() / 1000, m.last_grace_ns() / 1000);
	} else {
		// sluiced shows this worker stale, with the reason, until a
		// later generation fits.
		h.applied(m.generation(), m.refusal());
		spdlog::error("{}: still forwarding by generation {}", why, m.generation());
		refused = gen;
	}
	return m.generation() != 0;
}

int run_forwarder(const options &o)
{
	const iface_info ii = query_iface(o.iface);
	shm_segment seg = shm_segment::attach_wait(o.shm_name, std::chrono::milliseconds(o.wait_shm_ms));

	program_settings ps;
	ps.port_mac = ii.mac;
	ps.port_mtu = ii.mtu;
	ps.ct_entries = o.ct_entries;
	ps.ring_entries = o.ring_entries;
	ps.ct_timeouts = o.ct_timeouts;
	ps.pin_dir = o.pin_dir;
	ps.iface = o.iface;
	ps.replace_pinned = o.replace_pinned;
	program prog = program::load(ps);
	spdlog::info("{}: program loaded; connection table {} ({} entries per CPU x {} CPUs){}",
		     o.iface, prog.ct_pin_path(), (uint64_t)prog.ct_buckets() * SLUICE_CT_WAYS, prog.cpus(),
		     prog.ct_reused() ? ", reused with its flows" : "");
	mirror m(prog);

	worker_handle h = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_XDP, 0, "xdp " + o.iface);
	h.report_applied_separately();
	counter_copier counters(prog, h.record());
	ct_counter conns(prog, o.ct_timeouts, o.conn_sweep_s, h.segment(), h.record());
	count_base_pin base_pin = count_base_pin::open(o.pin_dir);

	// The program goes on the interface only once it has a snapshot: before
	// that it would drop every IP packet (drop_no_snapshot, as the DPDK
	// worker), SSH to the box included.
	uint64_t refused = 0;
	bool said_waiting = false;
	auto next_heartbeat = std::chrono::steady_clock::now();
	while (!stop_signal && !mirror_latest(h, m, refused)) {
		if (!said_waiting) {
			spdlog::info("waiting for sluiced's first snapshot on /dev/shm/{}", seg.name());
			said_waiting = true;
		}
		if (std::chrono::steady_clock::now() >= next_heartbeat) {
			h.heartbeat();
			next_heartbeat += heartbeat_interval;
		}
		housekeeping_sleep();
	}
	if (stop_signal) {
		h.release();
		return 0;
	}

	// The program a --keep-attached stop or a crash left attached has been
	// counting since its run's last copy: its counter maps are held open
	// across the swap, which would free them, and what they counted beyond
	// that copy is added to this run's base (handover.h).
	const uint32_t prev_id = attached_id(o.iface, SLUICE_XDP_PROG_NAME);
	std::unique_ptr<previous_counters> prev = prev_id ? previous_counters::open(prev_id, prog.cpus()) : nullptr;
	attachment att = attachment::attach(o.iface, prog.prog_fd(), SLUICE_XDP_PROG_NAME, o.mode);
	if (prev && att.replaced_id() == prev_id) {
		const uint64_t n = carry_over_counts(*prev, prev_id, base_pin, *seg.get(), counters);
		if (n)
			spdlog::info("{}: the replaced program received {} packets after its run's last copy of "
				     "its counters; they are in this run's totals",
				     o.iface, n);
	}
	prev.reset();
	// For the run that replaces this program: the base its counts add to.
	base_pin.write(h.index(), att.prog_id(), counters.base());
	spdlog::info("{}: attached in {} mode, forwarding by generation {} (MTU {}, MAC "
		     "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
		     o.iface, att.generic() ? "generic" : "native", m.generation(), ii.mtu, ii.mac[0],
		     ii.mac[1], ii.mac[2], ii.mac[3], ii.mac[4], ii.mac[5]);

	auto next_counters = std::chrono::steady_clock::now();
	while (!stop_signal) {
		mirror_latest(h, m, refused);
		const auto now = std::chrono::steady_clock::now();
		if (now >= next_heartbeat) {
			h.heartbeat();
			next_heartbeat = now + heartbeat_interval;
		}
		if (now >= next_counters) {
			counters.copy();
			next_counters = now + counters_interval;
		}
		conns.poll(m.generation());
		housekeeping_sleep();
	}
	if (o.keep_attached) {
		// The program and the maps it holds outlive this process; the next
		// sluice-xdp loads its own program, fills its snapshot maps, takes
		// the pinned connection table and swaps programs in one
		// XDP_FLAGS_REPLACE (attach.cpp): no packet reaches the kernel, and
		// no flow loses its entry, in between.
		spdlog::info("signal {}: leaving the program attached to {}, forwarding by generation {} "
			     "until the next sluice-xdp replaces it in place (`sluice-xdp --iface {} "
			     "--detach` takes it off)",
			     (int)stop_signal, o.iface, m.generation(), o.iface);
		att.leave_attached();
	} else {
		spdlog::info("signal {}: detaching from {}; the connection table stays pinned at {} "
			     "(`sluice-xdp --iface {} --unpin` removes it)",
			     (int)stop_signal, o.iface, prog.ct_pin_path(), o.iface);
		att.detach();
	}
	counters.copy();
	// Left attached, the node still forwards: sluiced keeps announcing it
	// through the restart (bgp.h) instead of withdrawing for a second.
	if (o.keep_attached)
		h.hand_over();
	else
		h.release();
	return 0;
}

} // namespace sluice::xdp
