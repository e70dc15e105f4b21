// SPDX-License-Identifier: Apache-2.0
// Backend health checks, as keepalived and HAProxy run them: a tcp connect, an
// HTTP/1.0 GET, or a UDP request/reply, every interval, damped by rise/fall so
// one lost probe does not pull a backend out of its Maglev table.
//
// One thread and one epoll loop serve every target with non-blocking sockets:
// thousands of backends must not cost thousands of threads, and a backend
// that never answers only ever costs its own probe's timeout.
#pragma once

#include "address.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

enum class check_type { none, tcp, http, udp };

std::string to_string(check_type type);
std::optional<check_type> parse_check_type(std::string_view text);

struct health_check_spec {
	check_type type = check_type::none;
	ip_address address; // the backend's address (v4 or v6)
	uint16_t port = 0;
	// A zero is read as 1 (ms, or probes): a zero interval would spin, a
	// zero rise/fall would flip on no evidence at all.
	uint32_t interval_ms = 1000, timeout_ms = 500, rise = 2, fall = 3;
	// http: "GET <http_path> HTTP/1.0"; healthy iff the status line's code
	// is http_expect_status.
	std::string http_path = "/";
	int http_expect_status = 200;
	// udp: send udp_send on a connected socket; healthy iff a datagram comes
	// back before the timeout and, when udp_expect is set, contains it.
	std::string udp_send, udp_expect;

	bool operator==(const health_check_spec &) const = default;
};

struct health_status {
	// Where a target starts is set_targets()'s choice: its last known
	// health, else up (no `known`), else down until its first pass.
	bool healthy = true;
	uint32_t successes_in_row = 0, failures_in_row = 0;
	// Why the last probe failed; empty once one passes.
	std::string last_error;
	// Wall clock (ns since the Unix epoch) when the last probe ended; 0: never.
	uint64_t last_check_ns = 0;
	// Probes finished since this spec was set.
	uint64_t checks = 0;
	// `checks` when the probe that last flipped `healthy` finished; 0: no
	// flip since this spec was set.
	uint64_t transition_check = 0;
	// Probes that could not be made for the prober's own lack (descriptors,
	// buffers, memory: EMFILE, ENFILE, ENOBUFS, ENOMEM): never a verdict on
	// the backend, and not in `checks`.
	uint64_t local_failures = 0;
	std::string last_local_error;
};

class health_monitor {
public:
	// Called from the monitor's thread, never while it holds its lock, so
	// the callback may call status() or set_targets() (but not destroy the
	// monitor). The destructor waits for a call in progress and makes no
	// more. A change found just before set_targets dropped its key may
	// still be reported once.
	using on_change = std::function<void(uint64_t key, bool healthy)>;

	// on_batch_end: after the on_change calls of one round of the loop
	// (verdicts that came together), so their effects can be applied at
	// once (sluiced: one publish, not one per backend).
	explicit health_monitor(on_change cb, std::function<void()> on_batch_end = {});
	// Stops the thread without waiting out any interval or timeout, and
	// closes every probe socket.
	~health_monitor();
	// Stops the thread now and waits for a callback in progress; no more
	// callbacks come, and status() still answers. For an owner whose
	// callbacks use the monitor: stop it before destroying it, so a
	// callback never meets a monitor half gone. Idempotent.
	void stop();
	health_monitor(const health_monitor &) = delete;
	health_monitor &operator=(const health_monitor &) = delete;

	// What set_targets() knows of a key's health from before (sluiced's
	// state file): its last verdict, or nullopt for a key never judged.
	using known_health = std::function<std::optional<bool>(uint64_t key)>;

	// Reconciles the target set. A key that is absent is dropped (no
	// callback); a key whose spec is unchanged keeps its state and schedule.
	// A key whose spec changed keeps its verdict (a down backend whose check
	// is edited stays down until it passes `rise` probes of the new one),
	// with counters zero and its first probe at once. A new key starts at
	// known(key); without `known` it starts up; with `known` but no verdict
	// for it (a backend just added) it starts down, is probed at once and
	// goes up on its first pass. First probes of keys that start from a
	// verdict are spread over at most 1 s. type none: always healthy, never
	// probed (a key that was down and becomes none gets on_change(key,
	// true)).
	void set_targets(std::map<uint64_t, health_check_spec> targets, const known_health &known = {});

	std::optional<health_status> status(uint64_t key) const;
	std::map<uint64_t, health_status> statuses() const;

private:
	struct impl;
	std::unique_ptr<impl> impl_;
};

} // namespace sluice
