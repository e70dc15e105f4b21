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

class api_server {
public:
	using handler = std::function<std::string(std::string_view line)>;

	// Binds `path` (mode 0660). A live socket there means another sluiced:
	// refused with an error; a stale one (nobody listening) is replaced.
	api_server(std::string path, handler h);
	~api_server(); // stops accepting, closes connections, joins, unlinks

	api_server(const api_server &) = delete;
	api_server &operator=(const api_server &) = delete;

	const std::string &path() const { return path_; }

private:
	void accept_loop();
	void serve(int fd);

	std::string path_;
	handler handler_;
	int listen_fd_ = -1;
	int wake_fd_ = -1;
	std::atomic<bool> stopping_{false};
	std::mutex mu_;
	std::list<std::pair<int, std::thread>> conns_;
	std::thread acceptor_;
};

// Longest request or response line: a large `apply` fits.
inline constexpr size_t api_max_line = 64u << 20;

// One request, one response. Throws sluice::error with the line sluicectl
// prints for a connection problem ("sluiced is not running: no socket at P").
std::string api_call(const std::string &path, const std::string &request_line,
		     std::chrono::milliseconds timeout);

} // namespace sluice
