// SPDX-License-Identifier: Apache-2.0
#include "api_socket.h"

#include "error.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
			::shutdown(c.first, SHUT_RDWR);
	}
	for (auto &c : conns_)
		c.second.join();
	::close(listen_fd_);
	::close(wake_fd_);
	::unlink(path_.c_str());
}

void api_server::accept_loop()
{
	while (!stopping_) {
		pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
		if (::poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (stopping_)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		std::lock_guard lk(mu_);
		// Reap finished connections so the list stays short.
		for (auto it = conns_.begin(); it != conns_.end();) {
			if (it->first < 0) {
				it->second.join();
				it = conns_.erase(it);
			} else {
				++it;
			}
		}
		conns_.emplace_back(fd, std::thread());
		auto &slot = conns_.back();
		slot.second = std::thread([this, fd, &slot] {
			serve(fd);
			std::lock_guard g(mu_);
			::close(fd);
			slot.first = -1;
		});
	}
}

void api_server::serve(int fd)
{
	std::string buf;
	char chunk[65536];
	for (;;) {
		size_t nl;
		while ((nl = buf.find('\n')) != std::string::npos) {
			std::string line = buf.substr(0, nl);
			buf.erase(0, nl + 1);
			if (!line.empty() && line.back() == '\r')
				line.pop_back();
			if (line.empty())
				continue;
			std::string reply = handler_(line) + "\n";
			if (!send_all(fd, reply))
				return;
		}
		if (buf.size() > api_max_line) {
			send_all(fd, "{\"ok\":false,\"error\":\"request line too long\"}\n");
			return;
		}
		ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf.append(chunk, static_cast<size_t>(n));
	}
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
		if (e == ENOENT)
			throw error("sluiced is not running: no socket at {}", path);
		if (e == ECONNREFUSED)
			throw error("sluiced is not running: nobody listens on {}", path);
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
