// SPDX-License-Identifier: Apache-2.0
#include "events.h"

#include <fmt/format.h>

#include <algorithm>

namespace sluice {

std::string quote_event_value(std::string_view v)
{
	bool plain = !v.empty();
	for (unsigned char c : v)
		plain = plain && c > ' ' && c != '"' && c != '\\' && c != '=' && c < 0x7f;
	if (plain)
		return std::string(v);
	std::string out = "\"";
	for (unsigned char c : v) {
		if (c == '"' || c == '\\') {
			out += '\\';
			out += static_cast<char>(c);
		} else if (c == '\n') {
			out += "\\n";
		} else if (c < ' ' || c == 0x7f) {
			out += fmt::format("\\x{:02x}", c);
		} else {
			out += static_cast<char>(c);
		}
	}
	return out + "\"";
}

std::string event_fields::line() const
{
	std::string out;
	for (const auto &[k, v] : fields_) {
		if (!out.empty())
			out += ' ';
		out += k;
		out += '=';
		out += quote_event_value(v);
	}
	return out;
}

event_ring::event_ring(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

uint64_t event_ring::push(event_fields fields, uint64_t time_ns)
{
	std::lock_guard lk(mu_);
	if (events_.size() == capacity_)
		events_.pop_front();
	const uint64_t seq = next_seq_++;
	events_.push_back(event{seq, time_ns, std::move(fields)});
	return seq;
}

event_ring::slice event_ring::since(uint64_t since) const
{
	std::lock_guard lk(mu_);
	slice s;
	s.last_seq = next_seq_ - 1;
	if (events_.empty())
		return s;
	const uint64_t oldest = events_.front().seq;
	// Asked from before the oldest held: those in between were overwritten.
	if (since + 1 < oldest)
		s.lost = oldest - since - 1;
	// Sequence numbers are consecutive: the first wanted is at a known index.
	const size_t from = since < oldest ? 0 : static_cast<size_t>(since - oldest + 1);
	for (size_t i = from; i < events_.size(); i++)
		s.events.push_back(events_[i]);
	return s;
}

bool refusal_limiter::admit(std::optional<uint32_t> uid, uint64_t now_ns, uint64_t *left_out)
{
	std::lock_guard lock(mu_);
	auto [it, fresh] = buckets_.try_emplace(uid ? int64_t(*uid) : -1);
	bucket &b = it->second;
	if (fresh) {
		b.tokens = burst_;
	} else if (now_ns > b.at_ns) {
		b.tokens = std::min(burst_, b.tokens + double(now_ns - b.at_ns) * 1e-9 * rate_);
	}
	b.at_ns = std::max(b.at_ns, now_ns);
	if (b.tokens < 1) {
		b.left_out++;
		return false;
	}
	b.tokens -= 1;
	*left_out = b.left_out;
	b.left_out = 0;
	return true;
}

} // namespace sluice
