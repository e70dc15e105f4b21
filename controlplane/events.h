// SPDX-License-Identifier: Apache-2.0
// What sluiced did and saw, one line each: changes (who, which verb, the new
// generation), refusals (the line the client got), health transitions and
// dataplane workers coming and going. Each event is logged (the journal) and
// kept in a bounded ring that `sluicectl events` reads by sequence number,
// so an operator can ask "what changed, and who changed it" without root or
// the journal.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

// An event's fields in the order they are printed, the first being
// event=KIND. Kept as text: they are for people and grep, and a JSON
// reader gets them as an object of strings.
class event_fields {
public:
	explicit event_fields(std::string kind) { add("event", std::move(kind)); }
	event_fields &add(std::string key, std::string value)
	{
		fields_.emplace_back(std::move(key), std::move(value));
		return *this;
	}
	const std::vector<std::pair<std::string, std::string>> &fields() const { return fields_; }
	const std::string &kind() const { return fields_.front().second; }
	// key=value separated by spaces, values quoted where needed.
	std::string line() const;

private:
	std::vector<std::pair<std::string, std::string>> fields_;
};

// A value as it goes after `key=`: bare when it is a plain word, else in
// double quotes with backslash, quote and control characters escaped, so a
// line always splits back into the same fields (and an error text from a
// peer cannot forge a field).
std::string quote_event_value(std::string_view v);

struct event {
	uint64_t seq = 0;     // 1, 2, ... in the order recorded; never reused by one sluiced
	uint64_t time_ns = 0; // wall clock, ns since the Unix epoch
	event_fields fields{""};
};

// The last `capacity` events. Thread-safe: the API threads, the health
// checker and sluiced's worker watcher all record into one ring.
class event_ring {
public:
	explicit event_ring(size_t capacity = 1024);

	// Records one; returns its sequence number.
	uint64_t push(event_fields fields, uint64_t time_ns);

	struct slice {
		std::vector<event> events; // seq > since, oldest first
		uint64_t last_seq = 0;     // the newest recorded (0: none yet): the next `since`
		uint64_t lost = 0;         // events after `since` already overwritten
	};
	// Every event still held whose seq is above `since` (0: all held).
	slice since(uint64_t since) const;

	size_t capacity() const { return capacity_; }

private:
	const size_t capacity_;
	mutable std::mutex mu_;
	std::deque<event> events_;
	uint64_t next_seq_ = 1;
};

// Refusals are events a caller makes happen at will: a local user (a member
// of the group may send anything; only its changes are refused) could
// flood the ring and the journal with them, pushing out what an operator
// needs. Each caller (by uid; one bucket for callers without one) gets a
// bucket of `burst` refusals, refilled at `per_second`; beyond it they are
// counted, not recorded, and the next recorded refusal of that caller says
// how many were left out. Changes, health and workers are never limited.
class refusal_limiter {
public:
	refusal_limiter(double burst = 20, double per_second = 5) : burst_(burst), rate_(per_second) {}

	// Whether to record this refusal now; if so, *left_out is how many of
	// the caller's refusals were not recorded since its last recorded one.
	bool admit(std::optional<uint32_t> uid, uint64_t now_ns, uint64_t *left_out);

private:
	struct bucket {
		double tokens = 0;
		uint64_t at_ns = 0;
		uint64_t left_out = 0;
	};
	const double burst_, rate_;
	std::mutex mu_;
	std::map<int64_t, bucket> buckets_; // uid, or -1
};

} // namespace sluice
