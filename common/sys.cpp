// SPDX-License-Identifier: Apache-2.0
#include "sys.h"

#include "error.h"

#include <sys/random.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>

namespace sluice {

namespace {

uint64_t clock_ns(clockid_t clock)
{
	timespec ts;
	clock_gettime(clock, &ts);
	return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

} // namespace

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

uint64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }

uint64_t realtime_ns() { return clock_ns(CLOCK_REALTIME); }

uint64_t random_u64()
{
	uint64_t v = 0;
	ssize_t n;
	do
		n = getrandom(&v, sizeof(v), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(v))
		throw error("getrandom: {}", n < 0 ? errno_text(errno) : "short read");
	return v;
}

void on_stop_signals(void (*handler)(int))
{
	struct sigaction sa;
	std::memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
}

} // namespace sluice
