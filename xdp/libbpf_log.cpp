// SPDX-License-Identifier: Apache-2.0
#include "libbpf_log.h"

#include "sys.h"

#include <bpf/libbpf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace sluice::xdp {

namespace {

bool libbpf_verbose = false;
std::mutex warning_mu;
std::string last_warning;

int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !libbpf_verbose)
		return 0;
	char buf[1024];
	va_list copy;
	va_copy(copy, args);
	vsnprintf(buf, sizeof(buf), fmt, copy);
	va_end(copy);
	std::string line(buf);
	while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
		line.pop_back();
	if (level == LIBBPF_WARN && !line.empty()) {
		std::lock_guard lk(warning_mu);
		// The verifier log comes as many lines; the summary of why is
		// libbpf's own "libbpf: ..." line, which is what we keep.
		if (line.starts_with("libbpf: "))
			last_warning = line.substr(8);
	}
	if (libbpf_verbose)
		fprintf(stderr, "%s\n", line.c_str());
	return 0;
}

} // namespace

void set_libbpf_verbose(bool verbose)
{
	libbpf_verbose = verbose;
	libbpf_set_print(libbpf_print);
}

std::string last_libbpf_warning()
{
	std::lock_guard lk(warning_mu);
	return last_warning;
}

std::string load_failure(const char *what, int err)
{
	if (err == -EPERM || err == -EACCES)
		return fmt::format("loading {}: {} (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)",
				   what, errno_text(err));
	std::string why = last_libbpf_warning();
	return fmt::format("loading {}: {}{}{} (run with --verbose for the verifier log)", what,
			   errno_text(err), why.empty() ? "" : ": ", why);
}

} // namespace sluice::xdp
