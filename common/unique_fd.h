// SPDX-License-Identifier: Apache-2.0
// An owned file descriptor, closed when it goes out of scope: the one guard
// every file, socket and BPF object fd in sluice is held by.
#pragma once

#include <unistd.h>

#include <utility>

namespace sluice {

struct unique_fd {
	int fd = -1;
	unique_fd() = default;
	explicit unique_fd(int f) : fd(f) {}
	unique_fd(const unique_fd &) = delete;
	unique_fd &operator=(const unique_fd &) = delete;
	~unique_fd() { reset(); }
	// Closes what it holds (if anything) and holds f instead.
	void reset(int f = -1)
	{
		if (fd >= 0)
			::close(fd);
		fd = f;
	}
	// Gives up the fd without closing it.
	int take() { return std::exchange(fd, -1); }
};

} // namespace sluice
