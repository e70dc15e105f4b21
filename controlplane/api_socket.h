// SPDX-License-Identifier: Apache-2.0
// sluiced's API transport: a Unix stream socket carrying one JSON request
// per line and one JSON response per line.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace sluice {

// Who is at the other end of an API connection (SO_PEERCRED).
struct api_peer {
	uint32_t uid = 0, gid = 0;
	int32_t pid = 0;
};

// Bounds that keep idle or hostile local clients from holding sluiced's
// threads, descriptors or memory: a connection that sends no complete
// request for api_idle_timeout is closed, at most api_max_connections are
// served at once (the next one gets a one-line refusal), of which callers
// other than root and sluiced's own user hold at most
// api_max_unprivileged, and a request line is at most api_max_line bytes.
// With every descriptor taken, one kept in reserve still lets root or
// sluiced's user in.
inline constexpr std::chrono::milliseconds api_idle_timeout{30'000};
inline constexpr size_t api_max_connections = 64;
inline constexpr size_t api_max_unprivileged = 48;

// Root or the process's own user: who may change the configuration, and
// whom the reserved capacity is for.
bool api_peer_privileged(const api_peer &peer);

class api_server {
public:
	using handler = std::function<std::string(std::string_view line, const api_peer &peer)>;

	// Binds `path` (mode 0660). A live socket there means another sluiced:
	// refused with an error; a stale one (nobody listening) is replaced.
	api_server(std::string path, handler h);
	~api_server(); // stops accepting, closes connections, joins, unlinks

	api_server(const api_server &) = delete;
	api_server &operator=(const api_server &) = delete;

	const std::string &path() const { return path_; }

private:
	void accept_loop();
	void serve(int fd, const api_peer &peer);
	void reap_locked(); // joins finished connections' threads

	std::string path_;
	handler handler_;
	int listen_fd_ = -1;
	int wake_fd_ = -1;
	std::atomic<bool> stopping_{false};
	int reserve_fd_ = -1; // /dev/null, given up to accept a privileged caller when out of descriptors
	std::mutex mu_;
	struct conn {
		int fd;
		bool privileged;
		std::thread thread;
	};
	std::list<conn> conns_;
	std::thread acceptor_;
};

// Longest request or response line: an `apply` of the largest
// configuration (4,096 VIPs, 4,096 backends) is a few MiB.
inline constexpr size_t api_max_line = 16u << 20;

// One request, one response. Throws sluice::error with the line sluicectl
// prints for a connection problem ("no sluiced listens on P (...)", or
// "permission denied on P: it is for group G ...").
std::string api_call(const std::string &path, const std::string &request_line,
		     std::chrono::milliseconds timeout);

} // namespace sluice
