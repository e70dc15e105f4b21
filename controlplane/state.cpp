// SPDX-License-Identifier: Apache-2.0
#include "state.h"

#include "ownership.h"

#include "error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace sluice {

id_pool::id_pool(uint32_t size) : freed_at_(size, 0) {}

std::optional<uint32_t> id_pool::allocate()
{
	uint32_t best = size();
	for (uint32_t i = 0; i < size(); i++)
		if (freed_at_[i] != in_use_mark && (best == size() || freed_at_[i] < freed_at_[best]))
			best = i;
	if (best == size())
		return std::nullopt;
	freed_at_[best] = in_use_mark;
	return best;
}

void id_pool::release(uint32_t id)
{
	freed_at_[id] = ++clock_;
}

json id_pool::to_json() const
{
	// [[id, clock], ...]: an array, not an object keyed by id, because
	// ordered_json finds a key by a linear scan, which made writing 4,096
	// freed ids quadratic (~8 million string compares per saved change).
	json freed = json::array();
	for (uint32_t i = 0; i < size(); i++)
		if (freed_at_[i] != 0 && freed_at_[i] != in_use_mark)
			freed.push_back(json::array({i, freed_at_[i]}));
	return json{{"clock", clock_}, {"freed", freed}};
}

void id_pool::from_json(const json &j)
{
	std::fill(freed_at_.begin(), freed_at_.end(), 0);
	clock_ = j.at("clock").get<uint64_t>();
	auto set = [&](uint64_t id, uint64_t at) {
		if (id >= size())
			throw error("state: id {} beyond {}", id, size());
		freed_at_[id] = at;
	};
	const json &freed = j.at("freed");
	if (freed.is_object()) {
		// State files written before the array form: {"ID": clock, ...}.
		for (auto it = freed.begin(); it != freed.end(); ++it)
			set(std::stoul(it.key()), it.value().get<uint64_t>());
		return;
	}
	for (const json &e : freed)
		set(e.at(0).get<uint64_t>(), e.at(1).get<uint64_t>());
}

void object_ids::reconcile(const config &c, const counter_reader &current)
{
	std::set<vip_key> want_vips;
	std::set<backend_ref> want_backends;
	for (const auto &v : c.vips) {
		want_vips.insert(v.key);
		for (const auto &b : v.backends)
			want_backends.insert({v.key, b.address});
	}
	// Free first, so a configuration that replaces objects at the id limit fits.
	for (auto it = vips.begin(); it != vips.end();) {
		if (want_vips.count(it->first)) {
			++it;
			continue;
		}
		vip_pool.release(it->second);
		vip_baseline.erase(it->second);
		it = vips.erase(it);
	}
	for (auto it = backends.begin(); it != backends.end();) {
		if (want_backends.count(it->first)) {
			++it;
			continue;
		}
		backend_pool.release(it->second);
		backend_baseline.erase(it->second);
		it = backends.erase(it);
	}
	for (const auto &k : want_vips) {
		if (vips.count(k))
			continue;
		auto id = vip_pool.allocate();
		if (!id)
			throw error("vips: no VIP id left (at most {})", SLUICE_MAX_VIPS);
		vips[k] = *id;
		vip_baseline[*id] = current(kind::vip, *id);
	}
	for (const auto &r : want_backends) {
		if (backends.count(r))
			continue;
		auto id = backend_pool.allocate();
		if (!id)
			throw error("backends: no backend id left (at most {})", SLUICE_MAX_BACKENDS);
		backends[r] = *id;
		backend_baseline[*id] = current(kind::backend, *id);
	}
}

static json counters_to_json(const sluice_obj_counters &c)
{
	return json::array({c.packets, c.bytes, c.new_flows});
}

static sluice_obj_counters counters_from_json(const json &j)
{
	return sluice_obj_counters{j.at(0).get<uint64_t>(), j.at(1).get<uint64_t>(),
				   j.at(2).get<uint64_t>()};
}

json state_to_json(const persisted_state &s)
{
	json j;
	j["format"] = 1;
	j["config"] = config_to_json(s.cfg);
	json vips = json::array();
	for (const auto &[k, id] : s.ids.vips) {
		json e{{"vip", k.str()}, {"id", id}};
		if (auto it = s.ids.vip_baseline.find(id); it != s.ids.vip_baseline.end())
			e["baseline"] = counters_to_json(it->second);
		vips.push_back(e);
	}
	json backends = json::array();
	for (const auto &[r, id] : s.ids.backends) {
		json e{{"vip", r.first.str()}, {"address", r.second.str()}, {"id", id}};
		if (auto it = s.ids.backend_baseline.find(id); it != s.ids.backend_baseline.end())
			e["baseline"] = counters_to_json(it->second);
		if (auto it = s.health.find(id); it != s.health.end())
			e["healthy"] = it->second;
		if (s.drains_reported.count(id))
			e["drain_reported"] = true;
		backends.push_back(e);
	}
	j["vip_ids"] = vips;
	j["backend_ids"] = backends;
	j["vip_pool"] = s.ids.vip_pool.to_json();
	j["backend_pool"] = s.ids.backend_pool.to_json();
	j["health_recorded"] = true;
	j["drained"] = s.drained;
	return j;
}

persisted_state state_from_json(const json &j)
{
	persisted_state s;
	if (j.value("format", 0) != 1)
		throw error("state: unknown format {}", j.value("format", 0));
	s.cfg = config_from_json(j.at("config"));
	s.ids.vip_pool.from_json(j.at("vip_pool"));
	s.ids.backend_pool.from_json(j.at("backend_pool"));
	for (const auto &e : j.at("vip_ids")) {
		uint32_t id = e.at("id").get<uint32_t>();
		if (id >= SLUICE_MAX_VIPS)
			throw error("state: VIP id {} out of range", id);
		s.ids.vips[vip_key::parse(e.at("vip").get<std::string>())] = id;
		s.ids.vip_pool.mark_used(id);
		if (e.contains("baseline"))
			s.ids.vip_baseline[id] = counters_from_json(e["baseline"]);
	}
	for (const auto &e : j.at("backend_ids")) {
		uint32_t id = e.at("id").get<uint32_t>();
		if (id >= SLUICE_MAX_BACKENDS)
			throw error("state: backend id {} out of range", id);
		auto addr = ip_address::parse(e.at("address").get<std::string>());
		if (!addr)
			throw error("state: bad backend address {}", e.at("address").dump());
		s.ids.backends[{vip_key::parse(e.at("vip").get<std::string>()), *addr}] = id;
		s.ids.backend_pool.mark_used(id);
		if (e.contains("baseline"))
			s.ids.backend_baseline[id] = counters_from_json(e["baseline"]);
		if (e.contains("healthy"))
			s.health[id] = e.at("healthy").get<bool>();
		if (e.value("drain_reported", false))
			s.drains_reported.insert(id);
	}
	s.health_recorded = j.value("health_recorded", false);
	if (j.contains("drained") && !j["drained"].is_boolean())
		throw error("state: drained is not true or false");
	s.drained = j.value("drained", false);
	// Objects the file's config has but its id list lacks get ids now.
	s.ids.reconcile(s.cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	return s;
}

state_store::state_store(std::string dir) : dir_(std::move(dir)) {}

std::string state_store::path() const
{
	return dir_ + "/state.json";
}

std::optional<persisted_state> state_store::load() const
{
	// Restoring a file another user wrote would let them configure us.
	if (struct stat st; ::stat(path().c_str(), &st) == 0)
		require_trusted("state file", path(), own_rule(), "chown it to this user and chmod go-w");
	std::ifstream in(path());
	if (!in) {
		if (errno == ENOENT)
			return std::nullopt;
		throw error("{}: cannot read: {}", path(), std::strerror(errno));
	}
	std::stringstream ss;
	ss << in.rdbuf();
	try {
		return state_from_json(json::parse(ss.str()));
	} catch (const error &e) {
		throw error("{}: {}", path(), e.what());
	} catch (const std::exception &e) {
		throw error("{}: corrupt state file ({}); move it away to start empty", path(),
			    e.what());
	}
}

static void write_all(int fd, const std::string &data, const std::string &path)
{
	size_t off = 0;
	while (off < data.size()) {
		ssize_t n = ::write(fd, data.data() + off, data.size() - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw error("{}: write: {}", path, std::strerror(errno));
		}
		off += static_cast<size_t>(n);
	}
}

void state_store::save(const persisted_state &s) const
{
	// write-temp + fsync + rename + fsync(dir): after a crash at any point the
	// file is either the previous state or this one, never a mix.
	std::string tmp = path() + ".tmp";
	std::string data = state_to_json(s).dump(1) + "\n";
	int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		throw error("{}: cannot write: {}", tmp, std::strerror(errno));
	try {
		write_all(fd, data, tmp);
		if (::fsync(fd) != 0)
			throw error("{}: fsync: {}", tmp, std::strerror(errno));
	} catch (...) {
		::close(fd);
		::unlink(tmp.c_str());
		throw;
	}
	::close(fd);
	if (::rename(tmp.c_str(), path().c_str()) != 0) {
		int e = errno;
		::unlink(tmp.c_str());
		throw error("{}: rename: {}", path(), std::strerror(e));
	}
	int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		::fsync(dfd);
		::close(dfd);
	}
}

} // namespace sluice
