// SPDX-License-Identifier: Apache-2.0
// sluiced's brain, without its sockets: the API verbs over the
// configuration, health checks, ids, persistence and publishing. Every change
// is validated whole, persisted, then published; a change that fails at any
// step leaves the running configuration as it was.
#pragma once

#include "bgp.h"
#include "bird.h"
#include "config.h"
#include "config_io.h"
#include "conns.h"
#include "events.h"
#include "health.h"
#include "snapshot_builder.h"
#include "state.h"
#include "verbs.h"

#include <sluice/shm.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

// Where snapshots go. sluiced hands in the shared-memory writer; unit tests
// hand in memory, so they need neither root nor a segment.
class publisher {
public:
	virtual ~publisher() = default;
	// Fills a free slot through `fill` and makes it active; returns its generation.
	virtual uint64_t publish(const std::function<void(sluice_snapshot &)> &fill) = 0;
	virtual uint64_t generation() const = 0;
	// The segment to read counters and workers from; nullptr if none.
	virtual const sluice_shm *segment() const = 0;
	// The same, for the requests sluiced posts to the dataplanes (a
	// connection listing); nullptr if none.
	virtual sluice_shm *request_segment() { return nullptr; }
	virtual std::chrono::milliseconds worker_timeout() const = 0;
};

struct worker_view {
	uint32_t index = 0;
	std::string name;
	std::string kind;  // dpdk, xdp, test
	std::string state; // live, dead (heartbeat stopped), stopped, handover (stopped, forwarding left for the next run)
	uint32_t pid = 0;
	uint32_t queue = 0;
	double heartbeat_age_s = 0;
	uint64_t generation_seen = 0;
	// What it forwards by; below generation_seen when it refused that one
	// (sluice-xdp's maps), and `stale` says why. Empty: up to date.
	uint64_t generation_applied = 0;
	std::string stale;   // "refused generation N: why"
	std::string refused; // its short name: ring_entries, checksum, corrupt, generation
	uint64_t counters[SLUICE_CNT__COUNT] = {}; // this record's own, since it was first claimed
	// Its connection counts (conns.h): sweeps completed by this owner, the
	// period it paces one to (0: it does not count), and how long ago the
	// last one completed (negative: none yet).
	uint32_t conn_sweeps = 0;
	uint32_t conn_sweep_ms = 0;
	double conn_sweep_age_s = -1;
	// Its connection table's fill as of that sweep: live entries and ways.
	uint32_t ct_live = 0;
	uint32_t ct_capacity = 0;
};

struct backend_view {
	backend_config cfg;
	uint32_t id = 0;
	std::optional<mac_address> next_hop_mac; // what the dataplanes send to
	std::string next_hop_error;              // why there is none
	bool healthy = true;
	std::string state; // up, down, draining (weight 0), down+draining
	std::optional<health_status> health;
	sluice_obj_counters counters{};
	// Live connections over the dataplanes that count them (conns.h);
	// none while no live dataplane has completed a sweep.
	std::optional<sluice_conn_count> conns;
	// Weight 0 only: unknown, waiting or done (conns.h drain_state).
	std::string drain;
};

struct vip_view {
	vip_config cfg; // without backends
	uint32_t id = 0;
	uint32_t in_table = 0; // backends in the Maglev table
	sluice_obj_counters counters{};
	std::optional<sluice_conn_count> conns; // its backends' summed
	std::vector<backend_view> backends;
	// The table digest (snapshot_builder.h's table_digest): equal on two
	// nodes when they send every flow of the VIP to the same backend.
	std::string digest;
	// BGP: whether this node should announce the VIP now, and why (bgp.h).
	bool announce = false;
	std::string announce_reason;
};

struct stats_view {
	uint64_t generation = 0;
	std::vector<vip_view> vips;
	std::array<uint64_t, SLUICE_CNT__COUNT> counters{};
	std::vector<worker_view> workers;
	uint32_t conns_counting = 0; // live worker records whose counts are summed
	uint32_t conns_pending = 0;  // live ones that count but have no sweep done yet
	bool drained = false; // `sluicectl node drain`
	bird_announcer::status bird; // what BIRD was told, and whether it answers
	// BIRD holds exactly the prefixes the decision wants (always false
	// while node.bgp is off).
	bool bgp_in_sync = false;
};

// What became of the dataplane workers between two readings of their
// records (nullptr: the first reading, when sluiced starts): attached,
// detached, dead (heartbeat stopped), alive again, stale (refusing or not
// taking the active snapshot) and fresh again. A worker is its record and
// its pid: a record taken over by another process is a detach and an attach.
std::vector<event_fields> worker_changes(const std::vector<worker_view> *before,
					 const std::vector<worker_view> &after);

// Who sent a request: what it may do, and its credentials for the event
// log (SO_PEERCRED; unknown for in-process callers).
struct api_caller {
	bool may_change = true;
	std::optional<uint32_t> uid;
	int32_t pid = 0;
};

// A backend's next hop as sluiced last resolved it.
struct service_hop {
	std::optional<mac_address> mac;
	std::string error;
	// When the lookup that found this began (service's own counter): a
	// lookup never replaces one that began after it.
	uint64_t seq = 0;
};

// Looks one backend's next hop up (sluiced: the kernel's routes and
// neighbours, and a neighbour probe when it is not known yet).
using hop_resolver = std::function<service_hop(const ip_address &backend)>;

class service {
public:
	// Restores `state_dir`/state.json if present (the last acknowledged
	// configuration), else starts from `initial`. Publishes once.
	// resolve_next_hops: look backends' next-hop MACs up (sluiced: in the
	// kernel; `resolver` replaces that lookup for tests); off, only
	// configured MACs are used. A change looks up the backends it adds
	// before it publishes, so it publishes once and a new backend has its
	// MAC in its first snapshot.
	service(publisher &pub, const std::string &state_dir, const config &initial,
		bool resolve_next_hops = false, hop_resolver resolver = {});
	~service();

	service(const service &) = delete;
	service &operator=(const service &) = delete;

	// One API request ({"verb": "...", "args": {...}}) to one response
	// ({"ok": true, "result": ...} or {"ok": false, "error": "one line"}).
	// Never throws.
	// may_change: the caller may change the configuration (root or
	// sluiced's own user); otherwise only reading verbs are served.
	// Every change and every refused change or request is recorded in
	// events() (and logged), with the caller's credentials.
	json handle(const json &request, const api_caller &caller);
	json handle(const json &request, bool may_change = true)
	{
		return handle(request, api_caller{may_change, std::nullopt, 0});
	}
	std::string handle_line(std::string_view line, const api_caller &caller);
	std::string handle_line(std::string_view line, bool may_change = true)
	{
		return handle_line(line, api_caller{may_change, std::nullopt, 0});
	}

	config current_config() const;
	stats_view stats() const;
	bool restored_from_state() const { return restored_; }

	// Publishes the same configuration again (health changed, or a timer).
	void republish();

	// What sluiced did and saw (`sluicectl events`).
	const event_ring &events() const { return events_; }
	// Logs an event and keeps it in events(); its sequence number.
	uint64_t record(const event_fields &e);
	// A refusal, through refusals_: a flood of them is counted, not recorded.
	void record_refusal(event_fields e, const api_caller &caller);

	// Reads the worker records and records what changed since the last
	// call (worker_changes); sluiced calls it a few times a second.
	void watch_workers();

	// Looks every backend's next-hop MAC up again (route, then neighbour
	// table; unresolved ones are probed) and republishes if any changed.
	// sluiced calls it every second and after every change.
	void refresh_next_hops();

	// Decides which VIPs to announce (bgp.h) and tells BIRD when that
	// changed (bird.h); records an event per VIP whose decision changed.
	// sluiced calls it every 100 ms from a thread of its own (BIRD may be
	// slow to answer); drain and undrain call it before they answer, with
	// force. Never throws.
	void sync_bgp(bool force = false);

private:
	// One handler per verb of verbs.def; handle() finds it through the table.
#define SLUICE_VERB(id, ...) json verb_##id(const json &args);
#include "verbs.def"
#undef SLUICE_VERB
	static const std::array<json (service::*)(const json &), verb_count> handlers_;
	// Validates, persists and publishes the configuration `edit` makes of
	// the running one. names: how a refusal names the field (the verbs
	// name the sluicectl option, a whole file its place).
	json change(const std::function<void(config &)> &edit, field_names names = field_names::by_option);
	void publish_locked();
	void update_health_targets_locked();
	// The monitor's verdict on backend `id`: kept in the state file, then
	// published.
	void health_changed(uint32_t id, bool healthy);
	void health_settled(); // after a batch of health_changed: save, publish once
	bool health_dirty_ = false; // under mu_
	sluice_obj_counters read_counters(object_ids::kind k, uint32_t id) const;
	stats_view stats_locked() const;
	// The worker records only (no VIP or backend counters); adds their
	// counters into `sum` when given.
	std::vector<worker_view> read_workers(std::array<uint64_t, SLUICE_CNT__COUNT> *sum) const;

	publisher &pub_;
	state_store store_;
	mutable std::mutex mu_;
	persisted_state state_;
	snapshot_builder builder_;
	bool restored_ = false;
	bool resolve_next_hops_ = false;
	hop_resolver resolver_;
	uint64_t hop_seq_ = 0; // under mu_
	std::map<uint32_t, struct service_hop> hops_; // by backend id
	event_ring events_;
	refusal_limiter refusals_;
	// Which sluiced answers `events`: a follower that sees it change knows
	// the sequence numbers started again.
	const uint64_t instance_ns_;
	// Held across a change verb and its event, so the events of changes
	// are in the order of their generations.
	std::mutex change_order_mu_;
	std::mutex conn_list_mu_; // one listing request in the segment at a time
	std::mutex watch_mu_;
	std::optional<std::vector<worker_view>> last_workers_; // under watch_mu_
	// The live workers' connection counts, summed (conns.h).
	conn_totals read_conns(const std::vector<worker_view> &workers) const;
	// Draining backends by id (under mu_): the generation sluiced first saw
	// them at weight 0, and whether their "drained" event was recorded (once
	// per drain; weight above 0 again ends the drain).
	struct drain_note {
		uint64_t generation = 0;
		bool reported = false;
	};
	std::map<uint32_t, drain_note> drains_;
	bird_announcer bird_;
	std::mutex bgp_mu_; // one sync_bgp at a time
	std::map<vip_key, bool> last_announce_; // under bgp_mu_: for the events of a change
	std::optional<bool> last_bird_ok_;      // under bgp_mu_
	// The decision's inputs (under mu_): the drain flag, the workers, and
	// per VIP its backends, healthy ones and builder_'s count in its table.
	bgp_inputs bgp_inputs_locked(const std::vector<worker_view> &workers) const;
	json set_drained(bool drained);
	std::unique_ptr<health_monitor> health_; // last: its thread calls back into us
};

} // namespace sluice
