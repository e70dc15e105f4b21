// SPDX-License-Identifier: Apache-2.0
#include "health.h"

#include "error.h"
#include "sys.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <queue>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

std::string to_string(check_type type)
{
	switch (type) {
	case check_type::none:
		return "none";
	case check_type::tcp:
		return "tcp";
	case check_type::http:
		return "http";
	case check_type::udp:
		return "udp";
	}
	return "unknown";
}

std::optional<check_type> parse_check_type(std::string_view text)
{
	for (auto t : {check_type::none, check_type::tcp, check_type::http, check_type::udp})
		if (text == to_string(t))
			return t;
	return std::nullopt;
}

namespace {

constexpr uint64_t ns_per_ms = 1'000'000;

// Jitter spreads first probes over at most this much, so a set_targets of
// 1000 backends does not fire 1000 connects in the same millisecond, yet a
// slow interval does not delay the first verdict past a second.
constexpr uint64_t max_first_probe_spread_ms = 1000;

// An HTTP status line is ~20 bytes; a server that sends this much without a
// newline is not speaking HTTP.
constexpr size_t max_status_line = 1024;

// Large enough for any UDP payload (RFC 768 length is 16 bits), so a reply
// is never truncated before udp_expect is searched in it.
constexpr size_t max_datagram = 65536;

// splitmix64's finaliser: consecutive keys (backend ids are often dense)
// land far apart in the jitter window.
uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint32_t at_least_1(uint32_t v)
{
	return std::max<uint32_t>(v, 1);
}

std::string errno_line(const char *what, int err)
{
	// system_category().message is strerror_r underneath: safe off the
	// caller's thread, and it reads "Connection refused" like the tools do.
	return fmt::format("{}: {}", what, std::system_category().message(err));
}

struct sock_addr {
	sockaddr_storage storage{};
	socklen_t len = 0;
	int family = 0;
};

std::optional<sock_addr> to_sock_addr(const ip_address &address, uint16_t port)
{
	sock_addr sa;
	if (address.is_v4()) {
		auto *in = reinterpret_cast<sockaddr_in *>(&sa.storage);
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		std::memcpy(&in->sin_addr, address.bytes.data(), 4);
		sa.len = sizeof(*in);
		sa.family = AF_INET;
	} else if (address.is_v6()) {
		auto *in6 = reinterpret_cast<sockaddr_in6 *>(&sa.storage);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		std::memcpy(&in6->sin6_addr, address.bytes.data(), 16);
		sa.len = sizeof(*in6);
		sa.family = AF_INET6;
	} else {
		return std::nullopt;
	}
	return sa;
}

// RFC 7230 §5.4: Host is uri-host [":" port], an IPv6 literal in brackets;
// the port may be left out only when it is the scheme's default.
std::string host_header(const ip_address &address, uint16_t port)
{
	std::string host = address.is_v6() ? "[" + address.str() + "]" : address.str();
	if (port != 80)
		host += fmt::format(":{}", port);
	return host;
}

// "HTTP/1.1 503 Service Unavailable" (its CRLF gone) -> 503. Only the shape RFC 7230 §3.1.2
// gives: version, one space, three digits, then a space or the end.
std::optional<int> parse_status_line(std::string_view line)
{
	if (line.substr(0, 5) != "HTTP/")
		return std::nullopt;
	auto sp = line.find(' ');
	if (sp == std::string_view::npos || line.size() < sp + 4)
		return std::nullopt;
	int code = 0;
	for (size_t i = sp + 1; i < sp + 4; i++) {
		if (line[i] < '0' || line[i] > '9')
			return std::nullopt;
		code = code * 10 + (line[i] - '0');
	}
	if (line.size() > sp + 4 && line[sp + 4] != ' ')
		return std::nullopt;
	return code;
}

// A peer's bytes go into a one-line error: keep it short and printable.
std::string printable(std::string_view text)
{
	std::string out;
	for (char c : text.substr(0, 40))
		out += (c >= 0x20 && c < 0x7f) ? c : '?';
	return out;
}

enum class phase { idle, connecting, sending, reading };

} // namespace

struct health_monitor::impl {
	struct target {
		health_check_spec spec;
		health_status status;
		// Never judged: started down only for lack of a verdict (set_targets
		// with `known` and none for this key); its first pass brings it up.
		bool unproven = false;

		// The probe in flight, if any. Its epoll token is `serial`, never
		// the fd: a closed fd number is reused at once, and an event
		// already queued for the old probe must not reach the new one.
		phase ph = phase::idle;
		int fd = -1;
		uint64_t serial = 0;
		uint32_t interest = 0; // epoll events registered for fd; 0: not registered
		uint64_t started_ns = 0;
		std::string out;
		size_t out_off = 0;
		std::string in;

		// The id of this target's one live timer: the next probe when idle,
		// the probe's deadline when one is in flight. Older heap entries
		// carry other ids and are skipped.
		uint64_t timer = 0;
	};

	struct timer_entry {
		uint64_t due_ns;
		uint64_t id;
		uint64_t key;
		bool operator>(const timer_entry &o) const { return due_ns > o.due_ns; }
	};

	using notes = std::vector<std::pair<uint64_t, bool>>;

	on_change cb;
	std::function<void()> batch_end;
	int epfd = -1;
	int wakefd = -1;
	std::atomic<bool> stopping{false};

	// Everything below is guarded by mu. Every socket call made under it is
	// non-blocking, so status() never waits on a backend.
	mutable std::mutex mu;
	std::map<uint64_t, target> targets;
	std::unordered_map<uint64_t, uint64_t> probes; // serial -> key
	std::priority_queue<timer_entry, std::vector<timer_entry>, std::greater<>> timers;
	notes pending; // changes the loop reports once it has let go of mu
	uint64_t local_failures_unlogged = 0, last_local_log_ns = 0;
	uint64_t next_id = 1; // timer ids and probe serials; epoll token 0 is wakefd

	std::vector<char> rx_buf = std::vector<char>(max_datagram); // loop thread only
	std::thread thread;

	explicit impl(on_change c, std::function<void()> b) : cb(std::move(c)), batch_end(std::move(b))
	{
		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0)
			throw error("health: {}", errno_line("epoll_create1", errno));
		wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (wakefd < 0) {
			int err = errno;
			close(epfd);
			throw error("health: {}", errno_line("eventfd", err));
		}
		epoll_event ev{};
		ev.events = EPOLLIN;
		ev.data.u64 = 0;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) < 0) {
			int err = errno;
			close(wakefd);
			close(epfd);
			throw error("health: {}", errno_line("epoll_ctl", err));
		}
		thread = std::thread([this] { run(); });
	}

	void stop()
	{
		stopping = true;
		wake();
		if (thread.joinable())
			thread.join();
	}

	~impl()
	{
		stop();
		for (auto &[key, t] : targets)
			end_probe(t);
		close(wakefd);
		close(epfd);
	}

	void wake()
	{
		uint64_t one = 1;
		// EAGAIN means the counter is already non-zero: the loop is
		// woken either way.
		[[maybe_unused]] ssize_t n = write(wakefd, &one, sizeof(one));
	}

	void arm(uint64_t key, target &t, uint64_t due_ns)
	{
		t.timer = next_id++;
		timers.push({due_ns, t.timer, key});
	}

	// at_once: probe now, not after the jitter (a backend just added, or
	// one whose check changed: its verdict should not wait).
	void start_fresh(uint64_t key, target &t, uint64_t now, bool at_once = false)
	{
		if (t.spec.type == check_type::none)
			return;
		uint64_t spread = std::min<uint64_t>(at_least_1(t.spec.interval_ms),
						     max_first_probe_spread_ms);
		arm(key, t, at_once ? now : now + mix64(key) % (spread * ns_per_ms));
	}

	void end_probe(target &t)
	{
		if (t.fd >= 0) {
			// close() alone would deregister it too, but only once no
			// other descriptor shares the file; be explicit.
			if (t.interest)
				epoll_ctl(epfd, EPOLL_CTL_DEL, t.fd, nullptr);
			close(t.fd);
		}
		probes.erase(t.serial);
		t.fd = -1;
		t.serial = 0;
		t.interest = 0;
		t.ph = phase::idle;
		t.out.clear();
		t.out_off = 0;
		t.in.clear();
	}

	void finish(uint64_t key, target &t, bool ok, std::string why, uint64_t now)
	{
		end_probe(t);
		auto &s = t.status;
		s.checks++;
		s.last_check_ns = realtime_ns();
		if (ok) {
			if (s.successes_in_row != std::numeric_limits<uint32_t>::max())
				s.successes_in_row++;
			s.failures_in_row = 0;
			s.last_error.clear();
			// A target never judged (just added) joins on its first pass:
			// it was down only because nothing was known yet.
			if (!s.healthy && (s.successes_in_row >= at_least_1(t.spec.rise) || t.unproven)) {
				s.healthy = true;
				s.transition_check = s.checks;
				pending.emplace_back(key, true);
			}
			t.unproven = false;
		} else {
			if (s.failures_in_row != std::numeric_limits<uint32_t>::max())
				s.failures_in_row++;
			s.successes_in_row = 0;
			s.last_error = std::move(why);
			if (s.healthy && s.failures_in_row >= at_least_1(t.spec.fall)) {
				s.healthy = false;
				s.transition_check = s.checks;
				pending.emplace_back(key, false);
			}
		}
		// Keep the phase the jitter gave this target; a probe that ran
		// past its interval is followed at once rather than in a burst.
		uint64_t next = t.started_ns + uint64_t(at_least_1(t.spec.interval_ms)) * ns_per_ms;
		arm(key, t, std::max(next, now));
	}

	bool want(target &t, uint32_t events)
	{
		if (t.interest == events)
			return true;
		epoll_event ev{};
		ev.events = events;
		ev.data.u64 = t.serial;
		if (epoll_ctl(epfd, t.interest ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, t.fd, &ev) < 0)
			return false;
		t.interest = events;
		return true;
	}

	// The prober's own lack, not the backend's failure: a thousand idle
	// clients eating sluiced's descriptors must not mark every backend down.
	static bool local_errno(int err)
	{
		return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
	}

	// Counted, logged at most once a second, and tried again next interval;
	// the verdict and its counters stay as they were.
	void local_failure(uint64_t key, target &t, const char *what, int err, uint64_t now)
	{
		end_probe(t);
		t.status.local_failures++;
		t.status.last_local_error = errno_line(what, err);
		local_failures_unlogged++;
		if (now - last_local_log_ns >= 1'000 * ns_per_ms) {
			spdlog::error("health checks: {} probe(s) could not be made ({}, the last for backend key "
				      "{}): not counted against any backend; raise the open-files limit?",
				      local_failures_unlogged, t.status.last_local_error, key);
			local_failures_unlogged = 0;
			last_local_log_ns = now;
		}
		arm(key, t, t.started_ns + uint64_t(at_least_1(t.spec.interval_ms)) * ns_per_ms);
	}

	void start_probe(uint64_t key, target &t, uint64_t now)
	{
		const auto &spec = t.spec;
		t.started_ns = now;
		auto sa = to_sock_addr(spec.address, spec.port);
		if (!sa)
			return finish(key, t, false, "no backend address", now);
		bool udp = spec.type == check_type::udp;
		int fd = socket(sa->family,
				(udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			if (local_errno(errno))
				return local_failure(key, t, "socket", errno, now);
			return finish(key, t, false, errno_line("socket", errno), now);
		}
		t.fd = fd;
		t.serial = next_id++;
		probes[t.serial] = key;
		arm(key, t, now + uint64_t(at_least_1(spec.timeout_ms)) * ns_per_ms);

		if (!udp) {
			// Close with RST, as HAProxy's checks do: a prober opening
			// one connection per backend per second would otherwise
			// leave ~60 s of TIME_WAIT sockets per backend behind it.
			linger lg{1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		if (connect(fd, reinterpret_cast<const sockaddr *>(&sa->storage), sa->len) < 0) {
			if (udp || errno != EINPROGRESS) {
				if (local_errno(errno))
					return local_failure(key, t, "connect", errno, now);
				return finish(key, t, false, errno_line("connect", errno), now);
			}
			t.ph = phase::connecting;
			if (!want(t, EPOLLOUT))
				return local_failure(key, t, "epoll_ctl", errno, now);
			return;
		}
		if (udp) {
			if (send(fd, spec.udp_send.data(), spec.udp_send.size(), MSG_NOSIGNAL) < 0)
				return finish(key, t, false, errno_line("send", errno), now);
			t.ph = phase::reading;
			if (!want(t, EPOLLIN))
				return local_failure(key, t, "epoll_ctl", errno, now);
			return;
		}
		connected(key, t, now);
	}

	void connected(uint64_t key, target &t, uint64_t now)
	{
		const auto &spec = t.spec;
		if (spec.type == check_type::tcp)
			return finish(key, t, true, {}, now);
		// The path goes into the request line as it is: refuse one that
		// would end the line early or smuggle a header in.
		if (spec.http_path.find_first_of("\r\n ") != std::string::npos)
			return finish(key, t, false, "http path contains a space or a line break",
				      now);
		t.out = fmt::format(
			"GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: sluice-health\r\n\r\n",
			spec.http_path.empty() ? "/" : spec.http_path,
			host_header(spec.address, spec.port));
		t.out_off = 0;
		t.ph = phase::sending;
		send_more(key, t, now);
	}

	void send_more(uint64_t key, target &t, uint64_t now)
	{
		while (t.out_off < t.out.size()) {
			ssize_t n = send(t.fd, t.out.data() + t.out_off, t.out.size() - t.out_off,
					 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					if (!want(t, EPOLLOUT))
						return finish(key, t, false,
							      errno_line("epoll_ctl", errno), now);
					return;
				}
				if (errno == EINTR)
					continue;
				return finish(key, t, false, errno_line("send", errno), now);
			}
			t.out_off += size_t(n);
		}
		t.ph = phase::reading;
		if (!want(t, EPOLLIN))
			return finish(key, t, false, errno_line("epoll_ctl", errno), now);
	}

	void read_http(uint64_t key, target &t, uint64_t now)
	{
		for (;;) {
			ssize_t n = recv(t.fd, rx_buf.data(), max_status_line, 0);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return;
				if (errno == EINTR)
					continue;
				return finish(key, t, false, errno_line("recv", errno), now);
			}
			if (n > 0)
				t.in.append(rx_buf.data(), size_t(n));
			auto eol = t.in.find('\n');
			if (eol == std::string::npos && n > 0 && t.in.size() <= max_status_line)
				continue;
			if (t.in.empty())
				return finish(key, t, false,
					      "http: connection closed before a status line", now);
			std::string_view line(t.in);
			if (eol != std::string::npos)
				line = line.substr(0, eol);
			if (!line.empty() && line.back() == '\r')
				line.remove_suffix(1);
			auto code = parse_status_line(line);
			if (!code)
				return finish(key, t, false,
					      fmt::format("http: malformed status line \"{}\"",
							  printable(line)),
					      now);
			if (*code != t.spec.http_expect_status)
				return finish(key, t, false,
					      fmt::format("http status {}, expected {}", *code,
							  t.spec.http_expect_status),
					      now);
			return finish(key, t, true, {}, now);
		}
	}

	void read_udp(uint64_t key, target &t, uint64_t now)
	{
		ssize_t n = recv(t.fd, rx_buf.data(), rx_buf.size(), 0);
		if (n < 0) {
			// ECONNREFUSED here is the ICMP port unreachable the
			// backend's kernel sent back: a verdict, not a wait.
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			return finish(key, t, false, errno_line("recv", errno), now);
		}
		const auto &expect = t.spec.udp_expect;
		if (!expect.empty() && std::string_view(rx_buf.data(), size_t(n)).find(expect) ==
					       std::string_view::npos)
			return finish(
				key, t, false,
				fmt::format("udp reply \"{}\" does not contain \"{}\"",
					    printable(std::string_view(rx_buf.data(), size_t(n))),
					    printable(expect)),
				now);
		finish(key, t, true, {}, now);
	}

	void on_event(uint64_t key, target &t, uint32_t events, uint64_t now)
	{
		switch (t.ph) {
		case phase::idle:
			return;
		case phase::connecting: {
			int err = 0;
			socklen_t len = sizeof(err);
			if (getsockopt(t.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			if (err)
				return finish(key, t, false, errno_line("connect", err), now);
			if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT))
				return finish(key, t, false, "connect: connection closed", now);
			return connected(key, t, now);
		}
		case phase::sending:
			return send_more(key, t, now);
		case phase::reading:
			if (t.spec.type == check_type::udp)
				return read_udp(key, t, now);
			return read_http(key, t, now);
		}
	}

	void on_timer(uint64_t key, target &t, uint64_t now)
	{
		if (t.ph == phase::idle)
			return start_probe(key, t, now);
		const char *where = t.ph == phase::connecting        ? "connect"
				    : t.spec.type == check_type::udp ? "no reply"
								     : "no status line";
		finish(key, t, false,
		       fmt::format("timeout after {} ms ({})", at_least_1(t.spec.timeout_ms),
				   where),
		       now);
	}

	// The epoll timeout until the earliest live timer, dropping the stale
	// entries on top so they never cause an empty wake-up.
	int next_timeout_ms(uint64_t now)
	{
		while (!timers.empty()) {
			const auto &top = timers.top();
			auto it = targets.find(top.key);
			if (it != targets.end() && it->second.timer == top.id)
				break;
			timers.pop();
		}
		if (timers.empty())
			return -1;
		uint64_t due = timers.top().due_ns;
		if (due <= now)
			return 0;
		// Round up: waking a hair early would only spin once more.
		uint64_t ms = (due - now + ns_per_ms - 1) / ns_per_ms;
		return int(std::min<uint64_t>(ms, std::numeric_limits<int>::max()));
	}

	void run_timers(uint64_t now)
	{
		while (!timers.empty() && timers.top().due_ns <= now) {
			auto entry = timers.top();
			timers.pop();
			auto it = targets.find(entry.key);
			if (it == targets.end() || it->second.timer != entry.id)
				continue;
			on_timer(entry.key, it->second, now);
		}
	}

	void run()
	{
		constexpr int max_events = 64;
		epoll_event events[max_events];
		int timeout = -1;
		notes changes;
		while (!stopping) {
			int n = epoll_wait(epfd, events, max_events, timeout);
			if (n < 0) {
				if (errno != EINTR)
					spdlog::error("health: {}",
						      errno_line("epoll_wait", errno));
				n = 0;
			}
			{
				std::lock_guard lock(mu);
				uint64_t now = monotonic_ns();
				for (int i = 0; i < n; i++) {
					uint64_t token = events[i].data.u64;
					if (token == 0) {
						uint64_t count;
						[[maybe_unused]] ssize_t r =
							read(wakefd, &count, sizeof(count));
						continue;
					}
					// A probe that set_targets ended, or an earlier
					// event in this batch finished, is gone from
					// `probes`: its leftover event is dropped here.
					auto p = probes.find(token);
					if (p == probes.end())
						continue;
					auto it = targets.find(p->second);
					if (it != targets.end() && it->second.serial == token)
						on_event(it->first, it->second, events[i].events,
							 now);
				}
				run_timers(now);
				timeout = next_timeout_ms(monotonic_ns());
				changes.swap(pending);
			}
			// Outside the lock: the callback may well call back in.
			for (auto [key, healthy] : changes) {
				if (stopping)
					break;
				try {
					if (cb)
						cb(key, healthy);
				} catch (const std::exception &e) {
					spdlog::error("health: on_change({}, {}) threw: {}", key,
						      healthy, e.what());
				} catch (...) {
					spdlog::error("health: on_change({}, {}) threw", key,
						      healthy);
				}
			}
			if (!changes.empty() && batch_end && !stopping) {
				try {
					batch_end();
				} catch (const std::exception &e) {
					spdlog::error("health: on_batch_end threw: {}", e.what());
				}
			}
			changes.clear();
		}
	}
};

health_monitor::health_monitor(on_change cb, std::function<void()> on_batch_end)
	: impl_(std::make_unique<impl>(std::move(cb), std::move(on_batch_end)))
{}

health_monitor::~health_monitor() = default;

void health_monitor::stop() { impl_->stop(); }

void health_monitor::set_targets(std::map<uint64_t, health_check_spec> next, const known_health &known)
{
	auto &m = *impl_;
	{
		std::lock_guard lock(m.mu);
		uint64_t now = monotonic_ns();
		for (auto it = m.targets.begin(); it != m.targets.end();) {
			auto n = next.find(it->first);
			if (n == next.end()) {
				m.end_probe(it->second);
				it = m.targets.erase(it);
				continue;
			}
			auto &t = it->second;
			if (!(n->second == t.spec)) {
				// The verdict stays: editing a down backend's check must
				// not put it back in the tables before it passes.
				const bool was_healthy = t.status.healthy, unproven = t.unproven;
				m.end_probe(t);
				t = impl::target{};
				t.spec = std::move(n->second);
				t.unproven = unproven;
				t.status.healthy = was_healthy || t.spec.type == check_type::none;
				if (!was_healthy && t.status.healthy)
					m.pending.emplace_back(it->first, true);
				m.start_fresh(it->first, t, now, true);
			}
			next.erase(n);
			++it;
		}
		for (auto &[key, spec] : next) {
			auto &t = m.targets[key];
			t.spec = std::move(spec);
			const std::optional<bool> verdict = known ? known(key) : std::optional<bool>(true);
			t.status.healthy = t.spec.type == check_type::none || verdict.value_or(false);
			t.unproven = t.spec.type != check_type::none && !verdict;
			m.start_fresh(key, t, now, t.unproven);
		}
	}
	m.wake();
}

std::optional<health_status> health_monitor::status(uint64_t key) const
{
	std::lock_guard lock(impl_->mu);
	auto it = impl_->targets.find(key);
	if (it == impl_->targets.end())
		return std::nullopt;
	return it->second.status;
}

std::map<uint64_t, health_status> health_monitor::statuses() const
{
	std::lock_guard lock(impl_->mu);
	std::map<uint64_t, health_status> out;
	for (const auto &[key, t] : impl_->targets)
		out.emplace(key, t.status);
	return out;
}

} // namespace sluice
