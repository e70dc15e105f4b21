// SPDX-License-Identifier: Apache-2.0
// What sluiced must not lose: the configuration, the stable ids it gave
// VIPs and backends (the dataplanes' connection tables and counters hold
// them), and each id's counter baseline. Persisted as one JSON file with
// write-temp + fsync + rename, so a crash leaves the old file or the new one.
#pragma once

#include "config.h"
#include "config_io.h"

#include <sluice/counters.h>
#include <sluice/shm.h>

#include <functional>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

// Ids in [0, size). A freed id is handed out again only after every id freed
// before it: a dataplane may still hold a flow on an id for a moment after
// its backend is gone, and the least recently freed id is the least likely
// to be met that way.
class id_pool {
public:
	explicit id_pool(uint32_t size);
	std::optional<uint32_t> allocate();
	void release(uint32_t id);
	bool in_use(uint32_t id) const { return freed_at_[id] == in_use_mark; }
	uint32_t size() const { return static_cast<uint32_t>(freed_at_.size()); }

	json to_json() const;
	void from_json(const json &j); // ids in use are then marked by the owner

	void mark_used(uint32_t id) { freed_at_[id] = in_use_mark; }

private:
	static constexpr uint64_t in_use_mark = UINT64_MAX;
	std::vector<uint64_t> freed_at_; // 0: never used; else the clock when freed
	uint64_t clock_ = 0;
};

using backend_ref = std::pair<vip_key, ip_address>;

struct object_ids {
	std::map<vip_key, uint32_t> vips;
	std::map<backend_ref, uint32_t> backends;
	id_pool vip_pool{SLUICE_MAX_VIPS};
	id_pool backend_pool{SLUICE_MAX_BACKENDS};
	// Counter values at the moment an id was given to its current owner:
	// an id reused by another object starts from zero in stats.
	std::map<uint32_t, sluice_obj_counters> vip_baseline;
	std::map<uint32_t, sluice_obj_counters> backend_baseline;

	// Gives ids to new objects of `c` and frees those of vanished ones;
	// `current(kind, id)` reads the live counters for a new baseline.
	// Throws sluice::error if the id space is exhausted.
	enum class kind { vip, backend };
	using counter_reader = std::function<sluice_obj_counters(kind, uint32_t id)>;
	void reconcile(const config &c, const counter_reader &current);

	uint32_t vip_id(const vip_key &k) const { return vips.at(k); }
	uint32_t backend_id(const vip_key &k, const ip_address &a) const
	{
		return backends.at({k, a});
	}
};

struct persisted_state {
	config cfg;
	object_ids ids;
	// The last verdict of each checked backend (by id), so a restarted
	// sluiced does not put a down backend back in the tables. False for a
	// file from before verdicts were kept: every checked backend is then
	// taken as up, as that version did.
	std::map<uint32_t, bool> health;
	bool health_recorded = true;
	// `sluicectl node drain`: withdraw every VIP from BGP until undrained.
	// Kept here, not in the configuration: a maintenance state of this
	// node, which `apply -f` of a fleet's file must not undo.
	bool drained = false;
	// Backends (by id) at weight 0 whose "drained" event was recorded, so a
	// restarted sluiced does not record it again.
	std::set<uint32_t> drains_reported;
};

json state_to_json(const persisted_state &s);
persisted_state state_from_json(const json &j);

// `dir`/state.json. load() returns nullopt if there is none; a corrupt file
// is an error (never silently replaced by an empty configuration).
class state_store {
public:
	explicit state_store(std::string dir);
	std::optional<persisted_state> load() const;
	void save(const persisted_state &s) const;
	std::string path() const;

private:
	std::string dir_;
};

} // namespace sluice
