// SPDX-License-Identifier: Apache-2.0
#include "api_socket.h"

#include "error.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace sluice {

namespace {

sockaddr_un make_addr(const std::string &path)
{
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	if (path.size() >= sizeof(a.sun_path))
		throw error("socket path {} is longer than {} bytes", path, sizeof(a.sun_path) - 1);
	std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
	return a;
}

bool send_all(int fd, std::string_view data)
{
	while (!data.empty()) {
		ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		data.remove_prefix(static_cast<size_t>(n));
	}
	return true;
}

} // namespace

api_server::api_server(std::string path, handler h) : path_(std::move(path)), handler_(std::move(h))
{
	sockaddr_un addr = make_addr(path_);
	listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd_ < 0)
		throw error("socket: {}", std::strerror(errno));
	if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
		int e = errno;
		if (e != EADDRINUSE) {
			::close(listen_fd_);
			throw error("cannot bind API socket {}: {}", path_, std::strerror(e));
		}
		// Someone answering there is another sluiced; silence is a socket
		// file left by one that died.
		int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = ::connect(probe, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0;
		::close(probe);
		if (live) {
			::close(listen_fd_);
			throw error("another sluiced is serving {}", path_);
		}
		::unlink(path_.c_str());
		if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
			e = errno;
			::close(listen_fd_);
			throw error("cannot bind API socket {}: {}", path_, std::strerror(e));
		}
	}
	// Owner (root, sluiced's user) and its group drive sluice; nobody else.
	::chmod(path_.c_str(), 0660);
	if (::listen(listen_fd_, 64) != 0) {
		int e = errno;
		::close(listen_fd_);
		throw error("listen on {}: {}", path_, std::strerror(e));
	}
	wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	acceptor_ = std::thread([this] { accept_loop(); });
}

api_server::~api_server()
{
	stopping_ = true;
	uint64_t one = 1;
	(void)!::write(wake_fd_, &one, sizeof(one));
	acceptor_.join();
	{
		std::lock_guard lk(mu_);
		for (auto &c : conns_)
			if (c.fd >= 0)
				::shutdown(c.fd, SHUT_RDWR);
	}
	for (auto &c : conns_)
		c.thread.join();
	::close(listen_fd_);
	::close(wake_fd_);
	if (reserve_fd_ >= 0)
		::close(reserve_fd_);
	::unlink(path_.c_str());
}

void api_server::reap_locked()
{
	for (auto it = conns_.begin(); it != conns_.end();) {
		if (it->fd < 0) {
			it->thread.join();
			it = conns_.erase(it);
		} else {
			++it;
		}
	}
}

bool api_peer_privileged(const api_peer &peer)
{
	return peer.uid == 0 || peer.uid == geteuid();
}

namespace {

// The refusal a client gets instead of service, then the connection closes.
void refuse(int fd, const std::string &why)
{
	send_all(fd, "{\"ok\":false,\"error\":\"" + why + "\"}\n");
	::close(fd);
}

bool out_of_descriptors(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

} // namespace

void api_server::accept_loop()
{
	// Out of descriptors (EMFILE, ENFILE) or memory, accept fails while the
	// connection stays queued, so poll would wake at once, forever. The
	// reserve descriptor is given up to take the connection: served if it
	// is root's or sluiced's user's, refused otherwise; then retaken. With
	// no reserve, back off; say so once per episode.
	constexpr auto accept_backoff = std::chrono::milliseconds(100);
	bool starved = false;
	while (!stopping_) {
		if (reserve_fd_ < 0)
			reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
		pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
		if (::poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (stopping_)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		bool from_reserve = false;
		int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0 && out_of_descriptors(errno) && reserve_fd_ >= 0) {
			::close(reserve_fd_);
			reserve_fd_ = -1;
			fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
			from_reserve = fd >= 0;
		}
		if (fd < 0) {
			if (out_of_descriptors(errno)) {
				if (!starved)
					spdlog::error("API {}: cannot accept: {} (waiting; raise LimitNOFILE?)", path_,
						      std::strerror(errno));
				starved = true;
				std::this_thread::sleep_for(accept_backoff);
			}
			continue;
		}
		starved = false;
		api_peer peer;
		ucred cred{};
		socklen_t len = sizeof(cred);
		if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
			refuse(fd, "cannot tell who is calling (SO_PEERCRED)");
			continue;
		}
		peer.uid = cred.uid;
		peer.gid = cred.gid;
		peer.pid = cred.pid;
		const bool privileged = api_peer_privileged(peer);
		if (from_reserve && !privileged) {
			refuse(fd, "sluiced is out of file descriptors: try again");
			continue;
		}
		std::lock_guard lk(mu_);
		reap_locked();
		size_t unprivileged = 0;
		for (const conn &c : conns_)
			unprivileged += !c.privileged;
		if (conns_.size() >= api_max_connections ||
		    (!privileged && unprivileged >= api_max_unprivileged)) {
			refuse(fd, fmt::format("sluiced is serving {} API connections already: try again",
					       conns_.size()));
			continue;
		}
		conns_.push_back(conn{fd, privileged, std::thread()});
		conn &slot = conns_.back();
		try {
			slot.thread = std::thread([this, fd, peer, &slot] {
				serve(fd, peer);
				std::lock_guard g(mu_);
				::close(fd);
				slot.fd = -1;
			});
		} catch (const std::system_error &e) {
			// No thread to be had (EAGAIN): refuse this one, keep running.
			conns_.pop_back();
			refuse(fd, fmt::format("sluiced cannot start a thread for this connection ({}): try "
					       "again",
					       e.what()));
		}
	}
}

void api_server::serve(int fd, const api_peer &peer)
{
	std::string buf;
	size_t scanned = 0; // bytes of buf known to hold no newline: each byte is looked at once
	char chunk[65536];
	for (;;) {
		size_t nl, start = 0;
		while ((nl = buf.find('\n', std::max(scanned, start))) != std::string::npos) {
			std::string_view line(buf.data() + start, nl - start);
			if (!line.empty() && line.back() == '\r')
				line.remove_suffix(1);
			if (!line.empty() && !send_all(fd, handler_(line, peer) + "\n"))
				return;
			start = nl + 1;
		}
		buf.erase(0, start);
		scanned = buf.size();
		if (buf.size() > api_max_line) {
			send_all(fd, fmt::format("{{\"ok\":false,\"error\":\"request line longer than {} "
						 "bytes\"}}\n",
						 api_max_line));
			return;
		}
		// An idle client (or one that never finishes its line) does not
		// keep a thread and a descriptor forever.
		pollfd p{fd, POLLIN, 0};
		int r = ::poll(&p, 1, static_cast<int>(api_idle_timeout.count()));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf.append(chunk, static_cast<size_t>(n));
	}
}

// Access to the socket is by its group (mode 0660): the line names it,
// and how to join it.
static std::string permission_text(const std::string &path)
{
	struct stat st{};
	if (::stat(path.c_str(), &st) != 0)
		return fmt::format("permission denied on {}: its directory is closed to you; run as root or "
				   "as a member of sluiced's group",
				   path);
	std::string group = std::to_string(st.st_gid);
	if (const struct group *g = ::getgrgid(st.st_gid))
		group = g->gr_name;
	return fmt::format("permission denied on {}: it is for group {} (mode {:o}): run as root, or add "
			   "yourself to the group (`usermod -aG {} $USER`, then log in again)",
			   path, group, st.st_mode & 07777, group);
}

std::string api_call(const std::string &path, const std::string &request_line,
		     std::chrono::milliseconds timeout)
{
	sockaddr_un addr = make_addr(path);
	int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		throw error("socket: {}", std::strerror(errno));
	if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
		int e = errno;
		::close(fd);
		// No socket, or one left behind: either sluiced is down or it
		// serves another path; both are what the operator checks next.
		if (e == ENOENT || e == ECONNREFUSED)
			throw error("no sluiced listens on {} (is it started with another --socket? see "
				    "`systemctl status sluiced`)",
				    path);
		if (e == EACCES || e == EPERM)
			throw error("{}", permission_text(path));
		throw error("cannot connect to sluiced at {}: {}", path, std::strerror(e));
	}
	if (!send_all(fd, request_line + "\n")) {
		::close(fd);
		throw error("sluiced at {} closed the connection", path);
	}
	std::string buf;
	char chunk[65536];
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (buf.find('\n') == std::string::npos) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			deadline - std::chrono::steady_clock::now());
		pollfd p{fd, POLLIN, 0};
		int r = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			::close(fd);
			throw error("sluiced at {} did not answer within {} ms", path, timeout.count());
		}
		ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			::close(fd);
			throw error("sluiced at {} closed the connection without answering", path);
		}
		buf.append(chunk, static_cast<size_t>(n));
	}
	::close(fd);
	return buf.substr(0, buf.find('\n'));
}

} // namespace sluice
