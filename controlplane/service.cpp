// SPDX-License-Identifier: Apache-2.0
#include "service.h"

#include "config_diff.h"
#include "error.h"
#include "metrics.h"
#include "neighbor.h"
#include "shm_segment.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>

namespace sluice {

namespace {

json counters_json(const sluice_obj_counters &c)
{
	return json{{"packets", c.packets}, {"bytes", c.bytes}, {"new_flows", c.new_flows}};
}

sluice_obj_counters minus(const sluice_obj_counters &a, const sluice_obj_counters &b)
{
	// A baseline above the live sum means the segment was recreated: the
	// counters started again from zero, and so does the object.
	if (a.packets < b.packets || a.bytes < b.bytes || a.new_flows < b.new_flows)
		return a;
	return {a.packets - b.packets, a.bytes - b.bytes, a.new_flows - b.new_flows};
}

const json &arg(const json &args, const char *name)
{
	auto it = args.find(name);
	if (it == args.end() || it->is_null())
		throw error("missing argument '{}'", name);
	return *it;
}

std::string str_arg(const json &args, const char *name)
{
	const json &v = arg(args, name);
	if (!v.is_string())
		throw error("argument '{}' must be a string", name);
	return v.get<std::string>();
}

vip_key vip_arg(const json &args)
{
	return vip_key::parse(str_arg(args, "vip"));
}

ip_address address_arg(const json &args)
{
	std::string s = str_arg(args, "address");
	auto a = ip_address::parse(s);
	if (!a)
		throw error("backend address '{}' is not an IPv4 or IPv6 address", s);
	return *a;
}

vip_config &vip_in(config &c, const vip_key &k)
{
	vip_config *v = c.find_vip(k);
	if (!v)
		throw error("no VIP {}", k.str());
	return *v;
}

backend_config &backend_in(vip_config &v, const ip_address &a)
{
	backend_config *b = v.find_backend(a);
	if (!b)
		throw error("no backend {} in VIP {}", a.str(), v.key.str());
	return *b;
}

// The API's backend fields as a config mapping, read by the same strict
// reader as the YAML file so both give the same errors.
json backend_fields(const json &args, const ip_address &addr)
{
	json j;
	j["address"] = addr.str();
	for (const char *f : {"weight", "check", "mac"})
		if (args.contains(f) && !args[f].is_null())
			j[f] = args[f];
	return j;
}

// SLUICE_REFUSED_*: a short name (the metrics label) and what it means.
std::pair<std::string, std::string> refusal_text(uint32_t r)
{
	switch (r) {
	case SLUICE_REFUSED_CORRUPT:
		return {"corrupt", "a count or table out of range (a corrupt segment?)"};
	case SLUICE_REFUSED_CHECKSUM:
		return {"checksum", "checksum mismatch (a torn or foreign write?)"};
	case SLUICE_REFUSED_RING_ENTRIES:
		return {"ring_entries", "its Maglev tables exceed the dataplane's --ring-entries"};
	case SLUICE_REFUSED_GENERATION:
		return {"generation", "not after the generation it holds (another segment?)"};
	}
	return {"unknown", fmt::format("reason {}", r)};
}

std::string worker_kind(uint32_t k)
{
	switch (k) {
	case SLUICE_WORKER_KIND_DPDK:
		return "dpdk";
	case SLUICE_WORKER_KIND_XDP:
		return "xdp";
	case SLUICE_WORKER_KIND_TEST:
		return "test";
	case SLUICE_WORKER_KIND_REPLAY:
		return "replay";
	}
	return "unknown";
}

// {"active": N, "inactive": M}, or null while no live dataplane counts.
json conns_json(const std::optional<sluice_conn_count> &c)
{
	if (!c)
		return nullptr;
	return json{{"active", c->active}, {"inactive", c->inactive}};
}

json backend_json(const vip_view &v, const backend_view &b)
{
	json j = backend_to_json(b.cfg);
	j["vip"] = v.cfg.key.str();
	j["id"] = b.id;
	j["state"] = b.state;
	j["healthy"] = b.healthy;
	j["conns"] = conns_json(b.conns);
	if (!b.drain.empty())
		j["drain"] = b.drain;
	j["next_hop_mac"] = b.next_hop_mac ? b.next_hop_mac->str() : "";
	if (!b.next_hop_error.empty())
		j["next_hop_error"] = b.next_hop_error;
	if (b.health) {
		j["last_error"] = b.health->last_error;
		j["checks"] = b.health->checks;
		j["successes_in_row"] = b.health->successes_in_row;
		j["failures_in_row"] = b.health->failures_in_row;
		j["transition_check"] = b.health->transition_check;
		j["last_check_ns"] = b.health->last_check_ns;
		if (b.health->local_failures) {
			j["local_failures"] = b.health->local_failures;
			j["last_local_error"] = b.health->last_local_error;
		}
	}
	return j;
}

json vip_json(const vip_view &v)
{
	json j = vip_to_json(v.cfg, false);
	j["vip"] = v.cfg.key.str();
	j["id"] = v.id;
	j["backends"] = v.backends.size();
	j["in_table"] = v.in_table;
	j["conns"] = conns_json(v.conns);
	j["digest"] = v.digest;
	return j;
}

// Whose connection counts are summed: a reader tells "0 connections"
// from "no dataplane counts" (counting 0) and "not all counted yet".
json conns_workers_json(const stats_view &sv)
{
	return json{{"counting", sv.conns_counting}, {"pending", sv.conns_pending}};
}

json workers_json(const stats_view &sv)
{
	json a = json::array();
	for (const auto &w : sv.workers) {
		json c = json::object();
		for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
			c[counter_table[i].name] = w.counters[i];
		a.push_back(json{{"index", w.index},
				 {"name", w.name},
				 {"kind", w.kind},
				 {"state", w.state},
				 {"pid", w.pid},
				 {"queue", w.queue},
				 {"heartbeat_age_s", w.heartbeat_age_s},
				 {"generation_seen", w.generation_seen},
				 {"generation_applied", w.generation_applied},
				 {"stale", w.stale},
				 {"conn_sweeps", w.conn_sweeps},
				 {"conn_sweep_ms", w.conn_sweep_ms},
				 {"conn_sweep_age_s", w.conn_sweeps ? json(w.conn_sweep_age_s) : json(nullptr)},
				 {"ct_live", w.conn_sweeps ? json(w.ct_live) : json(nullptr)},
				 {"ct_capacity", w.conn_sweeps ? json(w.ct_capacity) : json(nullptr)},
				 {"counters", std::move(c)}});
	}
	return a;
}

} // namespace

static std::map<uint32_t, service_hop> resolve_hops(const config &cfg, const object_ids &ids,
						    const hop_resolver &resolve, uint64_t seq,
						    const std::map<uint32_t, service_hop> *known = nullptr);
static service_hop kernel_hop(const ip_address &backend);

service::service(publisher &pub, const std::string &state_dir, const config &initial,
		 bool resolve_next_hops, hop_resolver resolver)
	: pub_(pub), store_(state_dir), resolve_next_hops_(resolve_next_hops),
	  resolver_(resolver ? std::move(resolver) : hop_resolver(kernel_hop)), instance_ns_(realtime_ns())
{
	if (auto restored = store_.load()) {
		state_ = std::move(*restored);
		restored_ = true;
		// A state file from before verdicts were kept: every checked
		// backend was up as far as that version knew.
		if (!state_.health_recorded) {
			for (const auto &v : state_.cfg.vips)
				for (const auto &b : v.backends)
					if (b.check.type != check_type::none)
						state_.health[state_.ids.backend_id(v.key, b.address)] = true;
			state_.health_recorded = true;
		}
		// Drains the last run reported stay reported: one event per drain,
		// however often sluiced restarts. Watched from this run's first
		// generation, for `status` (the counts say the rest).
		for (uint32_t id : state_.drains_reported)
			drains_[id] = drain_note{0, true};
	} else {
		validate(initial);
		state_.cfg = initial;
		state_.ids.reconcile(state_.cfg, [this](object_ids::kind k, uint32_t id) {
			return read_counters(k, id);
		});
	}
	// Next hops before the first snapshot: a restarted sluiced must not
	// hand the running dataplanes a snapshot without them.
	if (resolve_next_hops_)
		hops_ = resolve_hops(state_.cfg, state_.ids, resolver_, ++hop_seq_);
	health_ = std::make_unique<health_monitor>(
		[this](uint64_t id, bool healthy) { health_changed(static_cast<uint32_t>(id), healthy); },
		[this] { health_settled(); });
	std::lock_guard lk(mu_);
	update_health_targets_locked();
	publish_locked();
	// Saved only once it is published: a first configuration that cannot
	// be published must not become the state every restart comes back to.
	if (!restored_)
		store_.save(state_);
}

service::~service()
{
	// Stop the checker first: its callback takes mu_, uses pub_ and asks
	// the checker itself for statuses (publish_locked), so it stops while
	// health_ still points at it; only then is it destroyed.
	if (health_)
		health_->stop();
	health_.reset();
}

config service::current_config() const
{
	std::lock_guard lk(mu_);
	return state_.cfg;
}

void service::republish()
{
	std::lock_guard lk(mu_);
	publish_locked();
}

void service::health_changed(uint32_t id, bool healthy)
{
	std::lock_guard lk(mu_);
	// A verdict on a backend a change just removed: nothing to keep.
	const backend_ref *ref = nullptr;
	for (const auto &[r, bid] : state_.ids.backends)
		if (bid == id)
			ref = &r;
	if (ref)
		state_.health[id] = healthy;
	health_dirty_ = true;
	if (!ref)
		return;
	// The transition as the checker saw it: what failed, and after how
	// many probes in a row (fall or rise; 1 for a backend's first pass).
	event_fields e("health");
	e.add("vip", ref->first.str()).add("address", ref->second.str()).add("state", healthy ? "up" : "down");
	const vip_config *v = std::as_const(state_.cfg).find_vip(ref->first);
	const backend_config *b = v ? v->find_backend(ref->second) : nullptr;
	if (v && b) {
		const health_check_spec spec = make_check_spec(*v, *b);
		e.add("check", to_string(spec.type));
		if (spec.type != check_type::none)
			e.add("port", std::to_string(spec.port));
	}
	if (auto s = health_->status(id)) {
		e.add("probes", std::to_string(healthy ? s->successes_in_row : s->failures_in_row));
		if (!healthy)
			e.add("reason", s->last_error);
	}
	record(e);
}

void service::health_settled()
{
	// Verdicts that came together (a switch taking ten backends down) are
	// saved and published once.
	std::lock_guard lk(mu_);
	if (!health_dirty_)
		return;
	health_dirty_ = false;
	try {
		store_.save(state_);
	} catch (const std::exception &e) {
		// The verdicts still reach the dataplanes; only a restart would
		// start from the older ones.
		spdlog::error("saving health verdicts: {}", e.what());
	}
	publish_locked();
}

void service::publish_locked()
{
	snapshot_inputs in{
		state_.cfg,
		state_.ids,
		[this](uint32_t id) {
			auto s = health_->status(id);
			return !s || s->healthy;
		},
		[this](uint32_t id) -> std::optional<mac_address> {
			auto it = hops_.find(id);
			return it == hops_.end() ? std::nullopt : it->second.mac;
		},
		resolve_next_hops_,
	};
	pub_.publish([&](sluice_snapshot &s) { builder_.build(in, s); });
}

void service::update_health_targets_locked()
{
	std::map<uint64_t, health_check_spec> targets;
	for (const auto &v : state_.cfg.vips)
		for (const auto &b : v.backends)
			targets[state_.ids.backend_id(v.key, b.address)] = make_check_spec(v, b);
	// Where each starts: its last verdict (this run's or the state file's);
	// a backend never judged starts down and joins on its first pass.
	health_->set_targets(std::move(targets), [this](uint64_t id) -> std::optional<bool> {
		auto it = state_.health.find(static_cast<uint32_t>(id));
		return it == state_.health.end() ? std::nullopt : std::optional<bool>(it->second);
	});
}

sluice_obj_counters service::read_counters(object_ids::kind k, uint32_t id) const
{
	sluice_obj_counters sum{};
	const sluice_shm *shm = pub_.segment();
	if (!shm)
		return sum;
	for (uint32_t w = 0; w < SLUICE_MAX_WORKERS; w++) {
		const sluice_worker &rec = shm->workers[w];
		uint32_t owner = __atomic_load_n(&rec.info.pid, __ATOMIC_ACQUIRE);
		if (owner == 0 || owner == SLUICE_WORKER_PID_CLAIMING ||
		    __atomic_load_n(&rec.info.kind, __ATOMIC_RELAXED) == SLUICE_WORKER_KIND_REPLAY)
			continue; // a replay's packets are not what the node forwarded
		const sluice_obj_counters &c =
			k == object_ids::kind::vip ? rec.vip[id] : rec.backend[id];
		sum.packets += __atomic_load_n(&c.packets, __ATOMIC_RELAXED);
		sum.bytes += __atomic_load_n(&c.bytes, __ATOMIC_RELAXED);
		sum.new_flows += __atomic_load_n(&c.new_flows, __ATOMIC_RELAXED);
	}
	return sum;
}

// A backend's next hop from the kernel: its route's gateway or itself, and
// that neighbour's MAC, probed for when not known yet.
static service_hop kernel_hop(const ip_address &backend)
{
	service_hop h;
	try {
		next_hop nh = resolve_next_hop(backend);
		h.mac = nh.mac;
		if (!nh.mac) {
			h.error = fmt::format("{} not in the neighbour table yet", nh.via.str());
			poke_neighbor(nh.via, nh.ifindex);
		}
	} catch (const error &e) {
		h.error = e.what();
	}
	return h;
}

// The next hops of every backend that needs one (the configured gateway, or
// an l2dsr backend's own mac, make a lookup unnecessary), stamped `seq`;
// with `known`, only those it lacks. No lock: callers pass a copy of what
// they read under it, or hold it for a few new backends.
static std::map<uint32_t, service_hop> resolve_hops(const config &cfg, const object_ids &ids,
						    const hop_resolver &resolve, uint64_t seq,
						    const std::map<uint32_t, service_hop> *known)
{
	std::map<uint32_t, service_hop> found;
	for (const auto &v : cfg.vips)
		for (const auto &b : v.backends) {
			bool configured = v.mode == vip_mode::l2dsr ? b.mac.has_value()
								    : cfg.node.gateway_mac.has_value();
			const uint32_t id = ids.backend_id(v.key, b.address);
			if (configured || (known && known->count(id)))
				continue;
			service_hop h = resolve(b.address);
			h.seq = seq;
			found[id] = std::move(h);
		}
	return found;
}

// Backend ids of `ids` (each names one (VIP, address) for as long as it
// lives: a hop found for an id is that address's).
static std::set<uint32_t> backend_ids(const object_ids &ids)
{
	std::set<uint32_t> out;
	for (const auto &[ref, id] : ids.backends)
		out.insert(id);
	return out;
}

void service::refresh_next_hops()
{
	if (!resolve_next_hops_)
		return;
	config cfg;
	object_ids ids;
	uint64_t seq;
	{
		std::lock_guard lk(mu_);
		cfg = state_.cfg;
		ids = state_.ids;
		seq = ++hop_seq_;
	}
	// The API and the health checker go on meanwhile; a change may land.
	std::map<uint32_t, service_hop> found = resolve_hops(cfg, ids, resolver_, seq);
	std::lock_guard lk(mu_);
	// Merged, never swapped in: what this lookup saw is applied only to
	// backends that still exist and only over older lookups, so a change
	// that resolved a backend meanwhile (or added one this copy lacks)
	// keeps what it found.
	const std::set<uint32_t> live = backend_ids(state_.ids);
	bool changed = false;
	for (auto &[id, h] : found) {
		auto it = hops_.find(id);
		if (!live.count(id) || (it != hops_.end() && it->second.seq > h.seq))
			continue;
		changed = changed || it == hops_.end() || it->second.mac != h.mac;
		hops_[id] = std::move(h);
	}
	changed = std::erase_if(hops_, [&](const auto &e) { return !live.count(e.first); }) > 0 || changed;
	if (changed)
		publish_locked();
}

json service::change(const std::function<void(config &)> &edit, field_names names)
{
	std::lock_guard lk(mu_);
	persisted_state next = state_;
	edit(next.cfg);
	validate(next.cfg, names);
	next.ids.reconcile(next.cfg, [this](object_ids::kind k, uint32_t id) {
		return read_counters(k, id);
	});
	// A removed backend's verdict goes with it: its id may be reused.
	std::set<uint32_t> live_ids;
	for (const auto &[ref, bid] : next.ids.backends)
		live_ids.insert(bid);
	std::erase_if(next.health, [&](const auto &e) { return !live_ids.count(e.first); });
	store_.save(next);
	// The backends this change adds get their next hops now, so that the
	// one snapshot it publishes has them (a lookup is a netlink round
	// trip; the neighbour probe for an unknown one is answered by a later
	// refresh).
	std::map<uint32_t, service_hop> hops = hops_;
	if (resolve_next_hops_) {
		for (auto &[id, h] : resolve_hops(next.cfg, next.ids, resolver_, ++hop_seq_, &hops_))
			hops[id] = std::move(h);
		const std::set<uint32_t> live = backend_ids(next.ids);
		std::erase_if(hops, [&](const auto &e) { return !live.count(e.first); });
	}
	persisted_state previous = std::move(state_);
	state_ = std::move(next);
	std::swap(hops_, hops);
	try {
		update_health_targets_locked();
		publish_locked();
	} catch (...) {
		// Nothing was published: put back what runs, on disk too.
		state_ = std::move(previous);
		std::swap(hops_, hops);
		store_.save(state_);
		update_health_targets_locked();
		throw;
	}
	return json{{"generation", pub_.generation()}};
}

namespace {

// A request's arguments as event fields: the objects it names first (vip,
// address), then what it sets, nested options dotted (check.rise=5). A
// whole configuration (apply's yaml) is summed up elsewhere, not copied.
void add_args(event_fields &e, const json &args)
{
	if (!args.is_object())
		return;
	auto text = [](const json &v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
	for (const char *k : {"vip", "address"})
		if (args.contains(k) && !args[k].is_null())
			e.add(k, text(args[k]));
	for (auto it = args.begin(); it != args.end(); ++it) {
		if (it.key() == "vip" || it.key() == "address" || it.key() == "yaml" || it.key() == "config" ||
		    it.value().is_null())
			continue;
		if (it.value().is_object()) {
			for (auto in = it.value().begin(); in != it.value().end(); ++in)
				e.add(it.key() + "." + in.key(), text(in.value()));
		} else {
			e.add(it.key(), text(it.value()));
		}
	}
}

void add_caller(event_fields &e, const api_caller &c)
{
	if (c.uid) {
		e.add("uid", std::to_string(*c.uid));
		e.add("pid", std::to_string(c.pid));
	}
}

} // namespace

uint64_t service::record(const event_fields &e)
{
	const std::string line = e.line();
	const uint64_t seq = events_.push(e, realtime_ns());
	// What an operator should look at is a warning in the journal; the
	// rest is information. seq ties the journal to `sluicectl events`.
	const auto &f = e.fields();
	auto has = [&](const char *k, const char *v) {
		return std::any_of(f.begin(), f.end(), [&](const auto &p) { return p.first == k && p.second == v; });
	};
	const bool warn = has("state", "down") ||
			  (e.kind() == "worker" && (has("action", "dead") || has("action", "stale")));
	spdlog::log(warn ? spdlog::level::warn : spdlog::level::info, "{} seq={}", line, seq);
	return seq;
}

void service::record_refusal(event_fields e, const api_caller &caller)
{
	uint64_t left_out = 0;
	if (!refusals_.admit(caller.uid, monotonic_ns(), &left_out))
		return;
	if (left_out)
		e.add("left_out", std::to_string(left_out));
	record(e);
}

json service::handle(const json &request, const api_caller &caller)
{
	std::string verb = "-";
	json args = json::object();
	try {
		if (!request.is_object() || !request.contains("verb") || !request["verb"].is_string())
			throw error("request must be an object with a string 'verb'");
		verb = request["verb"].get<std::string>();
		args = request.value("args", json::object());
		if (!args.is_object())
			throw error("'args' must be an object");
		const verb_def *v = find_verb(verb);
		if (!v)
			throw error("unknown verb '{}'", verb);
		auto handler = handlers_[static_cast<size_t>(v->id)];
		// Reading is not an event (`events --follow` polls), nor is a
		// read that fails (no such VIP to list).
		if (v->access == verb_access::read) {
			try {
				return json{{"ok", true}, {"result", (this->*handler)(args)}};
			} catch (const std::exception &e) {
				return json{{"ok", false}, {"error", e.what()}};
			}
		}
		std::lock_guard order(change_order_mu_);
		json result;
		try {
			if (!caller.may_change)
				throw error("permission denied: {} changes the configuration, which only root and "
					    "sluiced's own user may do; its group may read (status, stats, dump, "
					    "list)",
					    verb);
			result = (this->*handler)(args);
		} catch (const std::exception &e) {
			event_fields ev("refusal");
			ev.add("verb", verb);
			add_caller(ev, caller);
			add_args(ev, args);
			ev.add("error", e.what());
			record_refusal(std::move(ev), caller);
			return json{{"ok", false}, {"error", e.what()}};
		}
		// An apply that changed nothing (or a dry run) published nothing.
		if (!result.is_object() || result.value("applied", true)) {
			event_fields ev("change");
			ev.add("verb", verb);
			add_caller(ev, caller);
			if (result.is_object() && result.contains("generation"))
				ev.add("generation", result["generation"].dump());
			add_args(ev, args);
			if (result.is_object() && result.contains("summary"))
				ev.add("summary", result["summary"].get<std::string>());
			record(ev);
		}
		return json{{"ok", true}, {"result", result}};
	} catch (const std::exception &e) {
		// Not a request for any verb: refused, and recorded as such.
		event_fields ev("refusal");
		ev.add("verb", verb);
		add_caller(ev, caller);
		ev.add("error", e.what());
		record_refusal(std::move(ev), caller);
		return json{{"ok", false}, {"error", e.what()}};
	}
}

std::string service::handle_line(std::string_view line, const api_caller &caller)
{
	json req;
	try {
		req = json::parse(line);
	} catch (const std::exception &) {
		req = json(); // not an object: handle() refuses it and records that
		const std::string why = "request is not valid JSON";
		event_fields ev("refusal");
		ev.add("verb", "-");
		add_caller(ev, caller);
		ev.add("error", why);
		record_refusal(std::move(ev), caller);
		return json{{"ok", false}, {"error", why}}.dump();
	}
	// replace: a reply must never throw, whatever bytes an error quotes.
	return handle(req, caller).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Every verb's handler, in verbs.def's order: a verb added there without a
// handler here does not compile.
const std::array<json (service::*)(const json &), verb_count> service::handlers_ = {
#define SLUICE_VERB(id, ...) &service::verb_##id,
#include "verbs.def"
#undef SLUICE_VERB
};


json service::verb_vip_add(const json &args)
{
	json fields = json::object();
	vip_key k = vip_arg(args);
	fields["address"] = k.address.str();
	fields["port"] = k.port;
	fields["protocol"] = to_string(k.proto);
	for (const char *f : {"mode", "ring_size", "gue_port"})
		if (args.contains(f) && !args[f].is_null())
			fields[f] = args[f];
	vip_config v = vip_from_json(fields, "vip", field_names::by_option);
	return change([&](config &c) {
		if (c.find_vip(k))
			throw error("VIP {} already exists", k.str());
		c.vips.push_back(v);
	});
}

json service::verb_vip_del(const json &args)
{
	vip_key k = vip_arg(args);
	return change([&](config &c) {
		vip_in(c, k);
		std::erase_if(c.vips, [&](const vip_config &v) { return v.key == k; });
	});
}

json service::verb_backend_add(const json &args)
{
	vip_key k = vip_arg(args);
	ip_address a = address_arg(args);
	backend_config b = backend_from_json(backend_fields(args, a), "backend", field_names::by_option);
	return change([&](config &c) {
		vip_config &v = vip_in(c, k);
		if (v.find_backend(a))
			throw error("backend {} already in VIP {}", a.str(), k.str());
		v.backends.push_back(b);
	});
}

json service::verb_backend_set(const json &args)
{
	vip_key k = vip_arg(args);
	ip_address a = address_arg(args);
	bool drain = args.value("drain", false);
	if (drain && args.contains("weight"))
		throw error("give --weight or --drain, not both");
	json fields = backend_fields(args, a);
	if (fields.size() == 1 && !drain)
		throw error("nothing to change: give --weight, --drain, --check or --mac");
	return change([&](config &c) {
		backend_config &b = backend_in(vip_in(c, k), a);
		json merged = backend_to_json(b);
		for (auto it = fields.begin(); it != fields.end(); ++it) {
			// Check options given alone (--rise 5) amend the current check.
			if (it.key() == "check" && it.value().is_object() && merged.contains("check") &&
			    !it.value().contains("type"))
				merged["check"].update(it.value());
			else
				merged[it.key()] = it.value();
		}
		if (drain)
			merged["weight"] = 0;
		b = backend_from_json(merged, "backend", field_names::by_option);
	});
}

json service::verb_backend_del(const json &args)
{
	vip_key k = vip_arg(args);
	ip_address a = address_arg(args);
	return change([&](config &c) {
		vip_config &v = vip_in(c, k);
		backend_in(v, a);
		std::erase_if(v.backends, [&](const backend_config &b) { return b.address == a; });
	});
}

// apply's and diff's configuration: {"yaml": TEXT} or {"config": {...}},
// read and validated whole.
static config whole_config_arg(const json &args)
{
	if (args.contains("yaml"))
		return config_from_yaml(str_arg(args, "yaml"));
	return config_from_json(arg(args, "config"));
}

// What replacing the running configuration with `next` changes, as the
// lines sluicectl prints.
static json changes_json(const config &running, const config &next)
{
	auto changes = diff_configs(running, next);
	json lines = json::array();
	for (const auto &c : changes)
		lines.push_back(c.line());
	return json{{"changes", lines}, {"summary", diff_summary(changes)}};
}

json service::verb_apply(const json &args)
{
	config next = whole_config_arg(args);
	const bool dry_run = args.contains("dry_run") && args["dry_run"].is_boolean() && args["dry_run"].get<bool>();
	json r = changes_json(current_config(), next);
	if (dry_run || r["changes"].empty()) {
		// The same configuration again (a config-management run that
		// changed nothing) publishes nothing: the generation is what the
		// dataplanes and monitoring compare across nodes.
		r["generation"] = pub_.generation();
	} else {
		// The lines are taken again under the change's lock, against
		// what actually runs when it is replaced.
		json g = change(
			[&](config &c) {
				r = changes_json(c, next);
				c = next;
			},
			field_names::by_position);
		r["generation"] = g["generation"];
	}
	r["applied"] = !dry_run && !r["changes"].empty();
	r["dry_run"] = dry_run;
	r["vips"] = next.vips.size();
	return r;
}

json service::verb_diff(const json &args)
{
	config next = whole_config_arg(args);
	json r = changes_json(current_config(), next);
	r["generation"] = pub_.generation();
	return r;
}

json service::verb_dump(const json &)
{
	config c = current_config();
	return json{{"yaml", config_to_yaml(c)}, {"config", config_to_json(c)}};
}

// Read verbs: each from one consistent view (stats()).

json service::verb_vip_list(const json &)
{
	json a = json::array();
	for (const auto &v : stats().vips)
		a.push_back(vip_json(v));
	return a;
}

json service::verb_backend_list(const json &args)
{
	std::optional<vip_key> only;
	if (args.contains("vip"))
		only = vip_arg(args);
	stats_view sv = stats();
	if (only && !std::any_of(sv.vips.begin(), sv.vips.end(),
				 [&](const vip_view &v) { return v.cfg.key == *only; }))
		throw error("no VIP {}", only->str());
	json a = json::array();
	for (const auto &v : sv.vips)
		if (!only || v.cfg.key == *only)
			for (const auto &b : v.backends)
				a.push_back(backend_json(v, b));
	return a;
}

json service::verb_status(const json &)
{
	stats_view sv = stats();
	json vips = json::array();
	for (const auto &v : sv.vips) {
		json j = vip_json(v);
		j["backends"] = json::array();
		for (const auto &b : v.backends)
			j["backends"].push_back(backend_json(v, b));
		vips.push_back(j);
	}
	return json{{"generation", sv.generation}, {"drained", sv.drained}, {"vips", vips},
		    {"conns_workers", conns_workers_json(sv)}, {"workers", workers_json(sv)}};
}

json service::verb_stats(const json &)
{
	stats_view sv = stats();
	json counters = json::object();
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
		counters[counter_table[i].name] = sv.counters[i];
	json vips = json::array();
	for (const auto &v : sv.vips) {
		json j{{"vip", v.cfg.key.str()}};
		j.update(counters_json(v.counters));
		j["conns"] = conns_json(v.conns);
		j["backends"] = json::array();
		for (const auto &b : v.backends) {
			json bj{{"address", b.cfg.address.str()}, {"state", b.state}};
			bj.update(counters_json(b.counters));
			bj["conns"] = conns_json(b.conns);
			if (!b.drain.empty())
				bj["drain"] = b.drain;
			j["backends"].push_back(bj);
		}
		vips.push_back(j);
	}
	return json{{"generation", sv.generation},
		    {"counters", counters},
		    {"conns_workers", conns_workers_json(sv)},
		    {"vips", vips},
		    {"workers", workers_json(sv)}};
}

stats_view service::stats() const
{
	std::lock_guard lk(mu_);
	return stats_locked();
}

stats_view service::stats_locked() const
{
	stats_view sv;
	sv.generation = pub_.generation();
	for (const auto &v : state_.cfg.vips) {
		vip_view vv;
		vv.cfg = v;
		vv.cfg.backends.clear();
		vv.id = state_.ids.vip_id(v.key);
		auto vb = state_.ids.vip_baseline.find(vv.id);
		vv.counters = minus(read_counters(object_ids::kind::vip, vv.id),
				    vb == state_.ids.vip_baseline.end() ? sluice_obj_counters{} : vb->second);
		for (const auto &b : v.backends) {
			backend_view bv;
			bv.cfg = b;
			bv.id = state_.ids.backend_id(v.key, b.address);
			bv.health = health_->status(bv.id);
			if (auto h = hops_.find(bv.id); h != hops_.end()) {
				bv.next_hop_mac = h->second.mac;
				bv.next_hop_error = h->second.error;
			} else if (v.mode == vip_mode::l2dsr) {
				bv.next_hop_mac = b.mac;
			} else {
				bv.next_hop_mac = state_.cfg.node.gateway_mac;
			}
			bv.healthy = !bv.health || bv.health->healthy;
			if (bv.healthy)
				bv.state = b.weight ? "up" : "draining";
			else
				bv.state = b.weight ? "down" : "down+draining";
			if (bv.healthy && b.weight)
				vv.in_table++;
			auto bb = state_.ids.backend_baseline.find(bv.id);
			bv.counters = minus(read_counters(object_ids::kind::backend, bv.id),
					    bb == state_.ids.backend_baseline.end() ? sluice_obj_counters{}
										    : bb->second);
			vv.backends.push_back(bv);
		}
		if (const auto *sum = builder_.summary(vv.id))
			vv.digest = sum->digest;
		sv.vips.push_back(vv);
	}
	sv.workers = read_workers(&sv.counters);
	const conn_totals ct = read_conns(sv.workers);
	sv.conns_counting = ct.counting;
	sv.conns_pending = ct.pending;
	for (auto &vv : sv.vips) {
		for (auto &bv : vv.backends) {
			if (ct.known()) {
				bv.conns = ct.of(bv.id);
				sluice_conn_count &sum = vv.conns.emplace(vv.conns.value_or(sluice_conn_count{}));
				sum.active += bv.conns->active;
				sum.inactive += bv.conns->inactive;
			}
			if (bv.cfg.weight == 0) {
				auto d = drains_.find(bv.id);
				bv.drain = drain_progress_name(
					drain_state(ct, bv.id, d != drains_.end() ? d->second.generation : pub_.generation()));
			}
		}
		if (ct.known() && !vv.conns)
			vv.conns = sluice_conn_count{};
	}
	sv.drained = state_.drained;
	const std::vector<bgp_decision> decisions = bgp_decide(bgp_inputs_locked(sv.workers));
	for (size_t i = 0; i < decisions.size() && i < sv.vips.size(); i++) {
		sv.vips[i].announce = decisions[i].announce;
		sv.vips[i].announce_reason = decisions[i].reason;
	}
	sv.bird = bird_.get();
	sv.bgp_in_sync = state_.cfg.node.bgp && state_.cfg.node.bgp->enabled && sv.bird.enabled &&
			 sv.bird.in_sync && sv.bird.announced == bgp_prefixes(decisions);
	return sv;
}

bgp_inputs service::bgp_inputs_locked(const std::vector<worker_view> &workers) const
{
	bgp_inputs in;
	in.drained = state_.drained;
	if (state_.cfg.node.bgp)
		in.heartbeat_timeout_ms = state_.cfg.node.bgp->heartbeat_timeout_ms;
	for (const auto &w : workers)
		in.workers.push_back({w.name, w.state == "live" || w.state == "dead", w.heartbeat_age_s, w.stale,
				      w.state == "handover"});
	for (const auto &v : state_.cfg.vips) {
		bgp_vip bv{v.key, static_cast<uint32_t>(v.backends.size()), 0, 0};
		for (const auto &b : v.backends) {
			auto h = health_->status(state_.ids.backend_id(v.key, b.address));
			bv.healthy += !h || h->healthy;
		}
		// What was published, not recomputed: the table the dataplanes
		// forward by is what the announcement promises.
		if (const auto *sum = builder_.summary(state_.ids.vip_id(v.key)))
			bv.in_table = sum->in_table;
		in.vips.push_back(std::move(bv));
	}
	return in;
}

void service::sync_bgp(bool force)
{
	std::lock_guard g(bgp_mu_);
	bgp_inputs in;
	std::optional<bgp_config> cfg;
	{
		std::lock_guard lk(mu_);
		in = bgp_inputs_locked(read_workers(nullptr));
		cfg = state_.cfg.node.bgp;
	}
	const std::vector<bgp_decision> decisions = bgp_decide(in);
	bird_.sync(cfg, bgp_prefixes(decisions), force);
	if (!cfg || !cfg->enabled) {
		last_announce_.clear();
		last_bird_ok_.reset();
		return;
	}
	// An event per VIP whose decision changed (all of them at start), and
	// whenever BIRD stops or starts taking what sluiced tells it.
	std::map<vip_key, bool> now;
	for (const auto &d : decisions) {
		now[d.key] = d.announce;
		auto it = last_announce_.find(d.key);
		if (it != last_announce_.end() && it->second == d.announce)
			continue;
		event_fields e("bgp");
		e.add("action", d.announce ? "announce" : "withdraw").add("vip", d.key.str()).add("reason", d.reason);
		record(e);
	}
	last_announce_ = std::move(now);
	const bird_announcer::status st = bird_.get();
	const bool ok = st.reachable && st.in_sync;
	if (last_bird_ok_ != ok) {
		event_fields e("bird");
		e.add("state", ok ? "in_sync" : st.reachable ? "refused" : "unreachable");
		if (!ok)
			e.add("error", st.error);
		record(e);
		last_bird_ok_ = ok;
	}
}

json service::set_drained(bool drained)
{
	bool changed = false;
	{
		std::lock_guard lk(mu_);
		if (state_.drained != drained) {
			// Persisted before BIRD hears of it: a restart in between
			// comes back drained (or not) as acknowledged.
			persisted_state next = state_;
			next.drained = drained;
			store_.save(next);
			state_ = std::move(next);
			changed = true;
		}
	}
	sync_bgp(true);
	json r = verb_node_status(json::object());
	r["changed"] = changed;
	r["generation"] = pub_.generation();
	return r;
}

json service::verb_node_drain(const json &)
{
	return set_drained(true);
}

json service::verb_node_undrain(const json &)
{
	return set_drained(false);
}

json service::verb_node_status(const json &)
{
	stats_view sv = stats();
	std::optional<bgp_config> cfg = current_config().node.bgp;
	json bgp = json::object();
	bgp["enabled"] = cfg && cfg->enabled;
	if (cfg) {
		bgp["bird_socket"] = cfg->bird_socket;
		bgp["include_file"] = cfg->include_file;
		bgp["protocol"] = cfg->protocol;
	}
	bgp["bird_reachable"] = sv.bird.reachable;
	bgp["in_sync"] = sv.bgp_in_sync;
	bgp["error"] = sv.bird.error;
	json announced = json::array();
	for (const auto &a : sv.bird.announced)
		announced.push_back(a.is_v6() ? a.str() + "/128" : a.str() + "/32");
	bgp["announced"] = announced;
	bgp["reconfigures"] = sv.bird.reconfigures;
	bgp["failures"] = sv.bird.failures;
	bgp["last_change_ns"] = sv.bird.last_change_ns;
	json vips = json::array();
	for (const auto &v : sv.vips)
		vips.push_back(json{{"vip", v.cfg.key.str()},
				    {"announce", v.announce},
				    {"reason", v.announce_reason},
				    {"digest", v.digest}});
	return json{{"drained", sv.drained}, {"bgp", bgp}, {"vips", vips}};
}

std::vector<worker_view> service::read_workers(std::array<uint64_t, SLUICE_CNT__COUNT> *sum) const
{
	std::vector<worker_view> out;
	if (const sluice_shm *shm = pub_.segment()) {
		uint64_t now = monotonic_ns();
		uint64_t timeout_ns = static_cast<uint64_t>(pub_.worker_timeout().count()) * 1000000;
		// How long the active snapshot has been out: a live worker still on
		// an older one after a second is not taking snapshots (stalled, or
		// a replay that reads none).
		const uint64_t active = __atomic_load_n(&shm->ctl.active, __ATOMIC_ACQUIRE);
		const uint64_t active_gen = sluice_active_generation(active);
		const uint64_t published_ns =
			active == SLUICE_ACTIVE_NONE
				? 0
				: shm->slots[sluice_active_slot(active) % SLUICE_SNAPSHOT_SLOTS].hdr.published_ns;
		const uint64_t wall = realtime_ns();
		const double out_for_s = published_ns && wall > published_ns ? (wall - published_ns) / 1e9 : 0;
		for (uint32_t w = 0; w < SLUICE_MAX_WORKERS; w++) {
			const sluice_worker &rec = shm->workers[w];
			uint32_t pid = __atomic_load_n(&rec.info.pid, __ATOMIC_ACQUIRE);
			if (pid == 0 || pid == SLUICE_WORKER_PID_CLAIMING)
				continue;
			worker_view wv;
			// A replay's counters are its own (shown by worker), never
			// in the node's totals.
			const bool replay = rec.info.kind == SLUICE_WORKER_KIND_REPLAY;
			for (size_t i = 0; i < SLUICE_CNT__COUNT; i++) {
				wv.counters[i] = __atomic_load_n(&rec.counters[i], __ATOMIC_RELAXED);
				if (sum && !replay)
					(*sum)[i] += wv.counters[i];
			}
			wv.index = w;
			wv.name = std::string(rec.info.name, strnlen(rec.info.name, sizeof(rec.info.name)));
			wv.kind = worker_kind(rec.info.kind);
			wv.pid = pid;
			wv.queue = rec.info.queue;
			uint64_t hb = __atomic_load_n(&rec.info.heartbeat_ns, __ATOMIC_ACQUIRE);
			wv.heartbeat_age_s = now > hb ? static_cast<double>(now - hb) / 1e9 : 0.0;
			wv.generation_seen = __atomic_load_n(&rec.info.generation_seen, __ATOMIC_ACQUIRE);
			wv.generation_applied = __atomic_load_n(&rec.info.generation_applied, __ATOMIC_RELAXED);
			if (wv.generation_applied < wv.generation_seen) {
				auto [name, text] = refusal_text(__atomic_load_n(&rec.info.refused, __ATOMIC_RELAXED));
				wv.refused = name;
				wv.stale = fmt::format("refused generation {}: {}", wv.generation_seen, text);
			}
			wv.conn_sweep_ms = __atomic_load_n(&rec.info.conn_sweep_ms, __ATOMIC_ACQUIRE);
			wv.conn_sweeps = __atomic_load_n(&rec.info.conn_seq, __ATOMIC_ACQUIRE) / 2;
			if (wv.conn_sweeps) {
				const uint64_t done = __atomic_load_n(&rec.info.conn_sweep_done_ns, __ATOMIC_RELAXED);
				wv.conn_sweep_age_s = now > done ? static_cast<double>(now - done) / 1e9 : 0.0;
				// Two words of one sweep; a sweep's publish between the
				// two loads mixes neighbours, which a fill does not mind.
				wv.ct_live = __atomic_load_n(&rec.info.ct_live, __ATOMIC_RELAXED);
				wv.ct_capacity = __atomic_load_n(&rec.info.ct_capacity, __ATOMIC_RELAXED);
			}
			uint32_t st = __atomic_load_n(&rec.info.state, __ATOMIC_ACQUIRE);
			if (st == SLUICE_WORKER_LIVE)
				wv.state = now <= hb || now - hb <= timeout_ns ? "live" : "dead";
			else if (st == SLUICE_WORKER_HANDED_OVER)
				wv.state = "handover"; // stopped, its forwarding left for the next run
			else
				wv.state = "stopped";
			if (wv.stale.empty() && wv.state == "live" && wv.generation_seen < active_gen &&
			    out_for_s > 1.0) {
				wv.refused = "not_taken";
				wv.stale = fmt::format("has not taken generation {}, out for {:.1f} s (stalled, or "
						       "a replay that reads no snapshot)",
						       active_gen, out_for_s);
			}
			out.push_back(wv);
		}
	}
	return out;
}

namespace {

event_fields worker_event(const char *action, const worker_view &w)
{
	event_fields e("worker");
	e.add("action", action)
		.add("worker", w.name)
		.add("kind", w.kind)
		.add("pid", std::to_string(w.pid))
		.add("index", std::to_string(w.index))
		.add("queue", std::to_string(w.queue));
	return e;
}

} // namespace

std::vector<event_fields> worker_changes(const std::vector<worker_view> *before,
					 const std::vector<worker_view> &after)
{
	std::vector<event_fields> out;
	auto find = [](const std::vector<worker_view> &ws, const worker_view &w) -> const worker_view * {
		for (const auto &x : ws)
			if (x.index == w.index && x.pid == w.pid)
				return &x;
		return nullptr;
	};
	if (before) {
		// Gone: the record was freed or taken by another process. One that
		// had stopped was reported when it stopped.
		for (const auto &w : *before)
			if (!find(after, w) && w.state != "stopped" && w.state != "handover")
				out.push_back(worker_event("detach", w).add("reason", "its record was taken over or freed"));
	}
	for (const auto &w : after) {
		const worker_view *was = before ? find(*before, w) : nullptr;
		if (!was) {
			// At sluiced's start every record is news: "found", not
			// "attach", since it may have attached long before.
			if (w.state == "stopped" || w.state == "handover")
				continue;
			out.push_back(worker_event(before ? "attach" : "found", w)
					      .add("state", w.state)
					      .add("generation", std::to_string(w.generation_seen)));
			if (!w.refused.empty())
				out.push_back(worker_event("stale", w).add("refused", w.refused).add("reason", w.stale));
			continue;
		}
		if (was->state != w.state) {
			if (w.state == "stopped")
				out.push_back(worker_event("detach", w).add("reason", "stopped"));
			else if (w.state == "handover")
				out.push_back(worker_event("detach", w).add(
					"reason", "stopped, its forwarding left in place for the next run"));
			else if (w.state == "dead")
				out.push_back(worker_event("dead", w).add(
					"heartbeat_age", fmt::format("{:.1f}s", w.heartbeat_age_s)));
			else if (w.state == "live")
				out.push_back(worker_event("alive", w).add("was", was->state));
		}
		// By the short name: the text of `not_taken` counts the seconds.
		if (was->refused != w.refused) {
			if (w.refused.empty())
				out.push_back(worker_event("fresh", w).add("generation",
									   std::to_string(w.generation_applied)));
			else
				out.push_back(worker_event("stale", w).add("refused", w.refused).add("reason", w.stale));
		}
	}
	return out;
}

conn_totals service::read_conns(const std::vector<worker_view> &workers) const
{
	std::vector<const sluice_worker *> live;
	if (const sluice_shm *shm = pub_.segment())
		for (const auto &w : workers)
			if (w.state == "live" && w.kind != "replay")
				live.push_back(&shm->workers[w.index % SLUICE_MAX_WORKERS]);
	return sum_conns(live);
}

void service::watch_workers()
{
	std::lock_guard lk(watch_mu_);
	std::vector<worker_view> now = read_workers(nullptr);
	for (const auto &e : worker_changes(last_workers_ ? &*last_workers_ : nullptr, now))
		record(e);
	// Drains: each backend at weight 0 is watched from the generation
	// sluiced first sees it so (one published after the drain, or the drain's
	// own), and its event recorded the first time no counting dataplane
	// holds a connection to it.
	std::vector<event_fields> done;
	{
		std::lock_guard g(mu_);
		const conn_totals ct = read_conns(now);
		const uint64_t gen = pub_.generation();
		std::map<uint32_t, drain_note> next;
		for (const auto &v : state_.cfg.vips)
			for (const auto &b : v.backends) {
				if (b.weight != 0)
					continue;
				const uint32_t id = state_.ids.backend_id(v.key, b.address);
				auto it = drains_.find(id);
				drain_note n = it != drains_.end() ? it->second : drain_note{gen, false};
				if (!n.reported && drain_state(ct, id, n.generation) == drain_progress::done) {
					n.reported = true;
					event_fields e("backend");
					e.add("vip", v.key.str())
						.add("address", b.address.str())
						.add("state", "drained")
						.add("reason", fmt::format("backend {} of VIP {} drained: no connections left",
									   b.address.str(), v.key.str()))
						.add("generation", std::to_string(n.generation));
					done.push_back(std::move(e));
				}
				next[id] = n;
			}
		drains_ = std::move(next);
		std::set<uint32_t> reported;
		for (const auto &[id, n] : drains_)
			if (n.reported)
				reported.insert(id);
		if (reported != state_.drains_reported) {
			persisted_state keep = state_;
			keep.drains_reported = std::move(reported);
			try {
				store_.save(keep);
				state_ = std::move(keep);
			} catch (const std::exception &ex) {
				// Only the event's once-ness is at stake; said, tried
				// again on the next pass.
				spdlog::warn("saving the reported drains to {}: {}", store_.path(), ex.what());
			}
		}
	}
	for (const auto &e : done)
		record(e);
	last_workers_ = std::move(now);
}

namespace {

const char *ct_state_name(uint8_t st)
{
	switch (st) {
	case SLUICE_CT_SYN: return "SYN";
	case SLUICE_CT_EST: return "EST";
	case SLUICE_CT_FIN: return "FIN";
	case SLUICE_CT_UDP: return "UDP";
	default: return "?";
	}
}

std::string endpoint_text(const uint8_t addr[16], uint8_t family, uint16_t port_be)
{
	ip_address a;
	a.family = family;
	std::memcpy(a.bytes.data(), addr, 16);
	const uint16_t port = sluice_ntohs(port_be);
	return a.is_v6() ? fmt::format("[{}]:{}", a.str(), port) : fmt::format("{}:{}", a.str(), port);
}

// A whole-number argument from lo to hi: a JSON number, or the digits
// sluicectl passes on as typed (no sign, space, point or exponent); absent
// or null: nullopt. Refused with "--NAME: 'TEXT' is not WHAT".
std::optional<uint64_t> number_arg(const json &args, const char *name, uint64_t lo, uint64_t hi,
				   std::string_view what)
{
	if (!args.contains(name) || args[name].is_null())
		return std::nullopt;
	const json &v = args[name];
	const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
	uint64_t n = 0;
	bool ok = false;
	if (v.is_number_unsigned()) {
		n = v.get<uint64_t>();
		ok = true;
	} else if (v.is_string() && !text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
		const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
		ok = ec == std::errc() && end == text.data() + text.size(); // too many digits: out of range
	}
	if (!ok || n < lo || n > hi)
		throw error("--{}: '{}' is not {}", name, text, what);
	return n;
}

// --limit: rows shown in all, 1 to SLUICE_CONN_LIST_ROWS (what one record
// holds: a busier table is filtered by VIP or backend, not paged).
uint32_t limit_arg(const json &args)
{
	static const std::string what = fmt::format("a number of connections from 1 to {}", SLUICE_CONN_LIST_ROWS);
	return static_cast<uint32_t>(number_arg(args, "limit", 1, SLUICE_CONN_LIST_ROWS, what).value_or(100));
}

} // namespace

json service::verb_conn_list(const json &args)
{
	std::optional<vip_key> only_vip;
	if (args.contains("vip") && !args["vip"].is_null())
		only_vip = vip_arg(args);
	std::optional<ip_address> only_backend;
	if (args.contains("backend") && !args["backend"].is_null()) {
		const std::string text = str_arg(args, "backend");
		only_backend = ip_address::parse(text);
		if (!only_backend)
			throw error("--backend: '{}' is not an IPv4 or IPv6 address", text);
	}
	const uint32_t limit = limit_arg(args);
	// The filter as ids, and the names to print ids by, as of now.
	uint32_t vip_id = SLUICE_CONN_ANY, backend_id = SLUICE_CONN_ANY;
	std::map<uint32_t, std::string> vip_names, backend_names;
	{
		std::lock_guard lk(mu_);
		for (const auto &v : state_.cfg.vips) {
			const uint32_t vid = state_.ids.vip_id(v.key);
			vip_names[vid] = v.key.str();
			for (const auto &b : v.backends)
				backend_names[state_.ids.backend_id(v.key, b.address)] = b.address.str();
		}
		if (only_vip) {
			const vip_config *v = state_.cfg.find_vip(*only_vip);
			if (!v)
				throw error("no VIP {}", only_vip->str());
			vip_id = state_.ids.vip_id(v->key);
		}
		if (only_backend) {
			std::vector<const vip_config *> in;
			for (const auto &v : state_.cfg.vips)
				if ((!only_vip || v.key == *only_vip) && v.find_backend(*only_backend))
					in.push_back(&v);
			if (in.empty() && only_vip)
				throw error("no backend {} in VIP {}", only_backend->str(), only_vip->str());
			if (in.empty())
				throw error("no backend {} in any VIP", only_backend->str());
			if (in.size() > 1)
				throw error("backend {} serves {} VIPs: name one (sluicectl conn list VIP --backend {})",
					    only_backend->str(), in.size(), only_backend->str());
			backend_id = state_.ids.backend_id(in[0]->key, *only_backend);
		}
	}
	json out = json{{"connections", json::array()}, {"matched", 0}, {"limit", limit}};
	sluice_shm *shm = pub_.request_segment();
	std::vector<worker_view> asked;
	for (auto &w : read_workers(nullptr))
		if (w.state == "live" && w.conn_sweep_ms > 0 && w.kind != "replay")
			asked.push_back(std::move(w));
	json unanswered = json::array();
	if (shm && !asked.empty()) {
		// One request at a time, outside the service lock: the dataplanes
		// answer from their housekeeping within milliseconds, but a stalled
		// one must not hold up changes or /metrics while it is waited for.
		std::lock_guard one(conn_list_mu_);
		const uint32_t seq = post_conn_list(*shm, vip_id, backend_id, limit);
		const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
		std::vector<bool> done(asked.size(), false);
		for (;;) {
			bool all = true;
			for (size_t i = 0; i < asked.size(); i++)
				all &= done[i] = done[i] || conn_list_answered(shm->workers[asked[i].index], seq);
			if (all || std::chrono::steady_clock::now() >= deadline)
				break;
			std::this_thread::sleep_for(std::chrono::milliseconds(2));
		}
		struct row {
			std::string vip, backend, client;
			json j;
		};
		std::vector<row> rows;
		uint64_t matched = 0;
		for (size_t i = 0; i < asked.size(); i++) {
			if (!done[i]) {
				unanswered.push_back(asked[i].name);
				continue;
			}
			const sluice_worker &rec = shm->workers[asked[i].index];
			matched += __atomic_load_n(&rec.info.conn_list_matched, __ATOMIC_RELAXED);
			const uint32_t n = std::min(__atomic_load_n(&rec.info.conn_list_rows, __ATOMIC_RELAXED),
						    SLUICE_CONN_LIST_ROWS);
			for (uint32_t r = 0; r < n; r++) {
				const sluice_conn_row &c = rec.rows[r];
				auto vn = vip_names.find(c.vip_id);
				auto bn = backend_names.find(c.backend_id);
				row x;
				// An id the configuration no longer has: a flow of a
				// removed VIP or backend, until it expires or moves.
				x.vip = vn != vip_names.end() ? vn->second : fmt::format("(vip id {})", c.vip_id);
				x.backend = bn != backend_names.end() ? bn->second
								     : fmt::format("(backend id {})", c.backend_id);
				x.client = endpoint_text(c.key.src, c.key.family, c.key.sport_be);
				x.j = json{{"protocol", c.key.proto == SLUICE_IPPROTO_TCP   ? "tcp"
							: c.key.proto == SLUICE_IPPROTO_UDP ? "udp"
											    : std::to_string(c.key.proto)},
					   {"state", ct_state_name(c.state)},
					   {"age_s", c.age_s},
					   {"expire_s", c.expire_s},
					   {"client", x.client},
					   {"vip", x.vip},
					   {"destination", endpoint_text(c.key.dst, c.key.family, c.key.dport_be)},
					   {"backend", x.backend},
					   {"worker", asked[i].name}};
				rows.push_back(std::move(x));
			}
		}
		std::sort(rows.begin(), rows.end(), [](const row &a, const row &b) {
			return std::tie(a.vip, a.backend, a.client) < std::tie(b.vip, b.backend, b.client);
		});
		if (rows.size() > limit)
			rows.resize(limit);
		for (auto &r : rows)
			out["connections"].push_back(std::move(r.j));
		out["matched"] = matched;
	}
	out["dataplanes"] = json{{"asked", asked.size()}, {"unanswered", unanswered}};
	return out;
}

json service::verb_events(const json &args)
{
	const uint64_t since =
		number_arg(args, "since", 0, UINT64_MAX, "an event sequence number (0 or more)").value_or(0);
	event_ring::slice sl = events_.since(since);
	json events = json::array();
	for (const auto &e : sl.events) {
		json fields = json::object();
		for (const auto &[k, v] : e.fields.fields())
			fields[k] = v;
		events.push_back(json{{"seq", e.seq}, {"time_ns", e.time_ns}, {"line", e.fields.line()},
				      {"fields", std::move(fields)}});
	}
	return json{{"events", std::move(events)},
		    {"last_seq", sl.last_seq},
		    {"lost", sl.lost},
		    {"capacity", events_.capacity()},
		    {"instance", instance_ns_}};
}

} // namespace sluice
