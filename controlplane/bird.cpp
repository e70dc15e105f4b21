// SPDX-License-Identifier: Apache-2.0
#include "bird.h"

#include "bgp.h"
#include "error.h"
#include "sys.h"
#include "unique_fd.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace sluice {

namespace {

// A wait for one line of BIRD's reply that gives up at the deadline.
class line_reader {
public:
	line_reader(int fd, const std::string &socket, uint64_t deadline_ns)
		: fd_(fd), socket_(socket), deadline_ns_(deadline_ns)
	{
	}

	std::string next()
	{
		for (;;) {
			if (auto nl = buf_.find('\n'); nl != std::string::npos) {
				std::string line = buf_.substr(0, nl);
				buf_.erase(0, nl + 1);
				return line;
			}
			const uint64_t now = monotonic_ns();
			if (now >= deadline_ns_)
				throw error("BIRD on {} did not answer in time", socket_);
			pollfd p{fd_, POLLIN, 0};
			int r = ::poll(&p, 1, static_cast<int>((deadline_ns_ - now) / 1000000 + 1));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				throw error("BIRD on {}: poll: {}", socket_, std::strerror(errno));
			if (r == 0)
				continue;
			char chunk[4096];
			ssize_t n = ::read(fd_, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				throw error("BIRD on {} closed the connection{}", socket_,
					    n < 0 ? fmt::format(": {}", std::strerror(errno)) : "");
			buf_.append(chunk, static_cast<size_t>(n));
		}
	}

private:
	int fd_;
	const std::string &socket_;
	uint64_t deadline_ns_;
	std::string buf_;
};

bool final_line(const std::string &l)
{
	// "DDDD text" ends a reply; "DDDD-text" and " text" continue it.
	return l.size() >= 5 && std::isdigit(static_cast<unsigned char>(l[0])) && std::isdigit(static_cast<unsigned char>(l[1])) &&
	       std::isdigit(static_cast<unsigned char>(l[2])) && std::isdigit(static_cast<unsigned char>(l[3])) && l[4] == ' ';
}

std::optional<std::string> read_file(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		return std::nullopt;
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

} // namespace

bird_reply bird_command(const std::string &socket, const std::string &command, std::chrono::milliseconds timeout)
{
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	if (socket.size() >= sizeof(a.sun_path))
		throw error("BIRD socket {}: path too long", socket);
	std::memcpy(a.sun_path, socket.c_str(), socket.size() + 1);
	unique_fd fd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
	if (fd.fd < 0)
		throw error("BIRD socket {}: {}", socket, std::strerror(errno));
	if (::connect(fd.fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
		const int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			throw error("no BIRD listens on {} (is bird running, with -s {}?)", socket, socket);
		if (e == EACCES)
			throw error("permission denied on BIRD's socket {}: sluiced's user needs BIRD's group "
				    "(SupplementaryGroups=bird in its unit)",
				    socket);
		throw error("BIRD socket {}: {}", socket, std::strerror(e));
	}
	line_reader lines(fd.fd, socket, monotonic_ns() + static_cast<uint64_t>(timeout.count()) * 1000000);
	std::string greeting = lines.next();
	if (!greeting.starts_with("0001 "))
		throw error("{} does not greet like BIRD: '{}'", socket, greeting.substr(0, 80));
	if (command.empty())
		return {"0001", greeting.substr(5)};
	const std::string line = command + "\n";
	if (::send(fd.fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
		throw error("BIRD on {}: send: {}", socket, std::strerror(errno));
	for (;;) {
		std::string l = lines.next();
		if (final_line(l))
			return {l.substr(0, 4), l.substr(5)};
	}
}

void write_file_atomic(const std::string &path, const std::string &data)
{
	const std::filesystem::path p(path);
	std::error_code ec;
	if (p.has_parent_path() && !std::filesystem::exists(p.parent_path(), ec)) {
		std::filesystem::create_directories(p.parent_path(), ec);
		if (ec)
			throw error("node.bgp.include_file {}: cannot create {}: {}", path, p.parent_path().string(),
				    ec.message());
		::chmod(p.parent_path().c_str(), 0750);
	}
	// PATH.tmp does not match bird.conf's `include ".../*.conf"`.
	const std::string tmp = path + ".tmp";
	unique_fd fd{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)};
	if (fd.fd < 0)
		throw error("node.bgp.include_file {}: cannot write: {}", tmp, std::strerror(errno));
	size_t off = 0;
	while (off < data.size()) {
		ssize_t n = ::write(fd.fd, data.data() + off, data.size() - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			const int e = errno;
			::unlink(tmp.c_str());
			throw error("node.bgp.include_file {}: write: {}", tmp, std::strerror(e));
		}
		off += static_cast<size_t>(n);
	}
	// No fsync: the file lives in /run and is rewritten from sluiced's
	// decision after any restart; only atomicity against BIRD matters.
	if (::rename(tmp.c_str(), path.c_str()) != 0) {
		const int e = errno;
		::unlink(tmp.c_str());
		throw error("node.bgp.include_file {}: rename: {}", path, std::strerror(e));
	}
}

// How long a `configure` may take: BIRD parses its whole configuration
// (milliseconds here); a BIRD that takes longer is reported, and retried.
constexpr std::chrono::milliseconds configure_timeout{2000};
constexpr std::chrono::milliseconds probe_timeout{500};
constexpr uint64_t retry_ns = 1'000'000'000;

void bird_announcer::sync(const std::optional<bgp_config> &cfg, const std::vector<ip_address> &prefixes, bool force)
{
	std::lock_guard io(io_mu_);
	auto update = [this](auto &&fn) {
		std::lock_guard lk(st_mu_);
		fn(st_);
	};
	if (!cfg || !cfg->enabled) {
		update([](status &s) {
			s.enabled = false;
			s.reachable = false;
			s.in_sync = false;
			s.error.clear();
		});
		// Enabled again later: tell BIRD everything afresh.
		accepted_text_.reset();
		return;
	}
	update([](status &s) { s.enabled = true; });
	const uint64_t now = monotonic_ns();
	const std::string text = render_bird_include(*cfg, prefixes);
	const bool moved = !written_path_.empty() && written_path_ != cfg->include_file;
	const bool need = force || moved || resync_ || accepted_text_ != text ||
			  read_file(cfg->include_file) != std::optional<std::string>(text);
	if (!need) {
		if (now < next_probe_ns_)
			return;
		next_probe_ns_ = now + retry_ns;
		try {
			bird_command(cfg->bird_socket, "", probe_timeout);
			update([](status &s) {
				s.reachable = true;
				s.error.clear();
			});
		} catch (const std::exception &e) {
			// BIRD restarting reads the file itself, but one that was
			// replaced or reconfigured meanwhile may not hold it: tell
			// it again once it answers.
			resync_ = true;
			update([&](status &s) {
				s.reachable = false;
				s.error = e.what();
			});
		}
		return;
	}
	if (!force && now < next_try_ns_)
		return;
	try {
		// The old file first: BIRD includes every *.conf of the directory,
		// and two files defining the same protocols would be refused.
		if (moved)
			::unlink(written_path_.c_str());
		write_file_atomic(cfg->include_file, text);
		written_path_ = cfg->include_file;
	} catch (const std::exception &e) {
		next_try_ns_ = now + retry_ns;
		update([&](status &s) {
			s.in_sync = false;
			s.failures++;
			s.error = e.what();
		});
		return;
	}
	try {
		bird_reply r = bird_command(cfg->bird_socket, "configure", configure_timeout);
		if (!r.ok()) {
			next_try_ns_ = now + retry_ns;
			resync_ = false;
			update([&](status &s) {
				s.reachable = true;
				s.in_sync = false;
				s.failures++;
				s.error = fmt::format("BIRD refused `configure`: {} {}", r.code, r.text);
			});
			return;
		}
		accepted_text_ = text;
		resync_ = false;
		next_probe_ns_ = now + retry_ns;
		update([&](status &s) {
			s.reachable = true;
			s.in_sync = true;
			s.error.clear();
			s.announced = prefixes;
			s.reconfigures++;
			s.last_change_ns = realtime_ns();
		});
	} catch (const std::exception &e) {
		next_try_ns_ = now + retry_ns;
		resync_ = true;
		update([&](status &s) {
			s.reachable = false;
			s.in_sync = false;
			s.failures++;
			s.error = e.what();
		});
	}
}

bird_announcer::status bird_announcer::get() const
{
	std::lock_guard lk(st_mu_);
	return st_;
}

} // namespace sluice
