// SPDX-License-Identifier: Apache-2.0
#include "eal.h"

#include "error.h"
#include "note.h"

#include <sluice/shm.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_log.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace sluice {
namespace {

// Every shortcut run has its own --file-prefix, so its own runtime directory
// (/var/run/dpdk/sluice-<pid>), which EAL leaves behind; empty once its
// telemetry socket is unlinked at exit.
std::string runtime_dir_to_remove;

void remove_runtime_dir()
{
	if (!runtime_dir_to_remove.empty())
		rmdir(runtime_dir_to_remove.c_str());
}

} // namespace

void start_eal(const options &o)
{
	std::vector<std::string> args = eal_arguments(o);
	note("EAL arguments: {}", join_args(std::vector<std::string>(args.begin() + 1, args.end())));
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	// Registered before EAL's own exit handlers, so it runs after them.
	std::atexit(remove_runtime_dir);
	// EAL logs to stdout by default; stdout is for our counters.
	rte_openlog_stream(stderr);
	const int ret = rte_eal_init(static_cast<int>(args.size()), argv.data());
	if (o.mode != port_mode::eal)
		runtime_dir_to_remove = rte_eal_get_runtime_dir();
	if (ret < 0)
		throw error("EAL initialisation failed: {} (see EAL's messages above)", rte_strerror(rte_errno));
}

std::vector<unsigned> worker_lcores(const options &o)
{
	std::vector<unsigned> lcores;
	unsigned lc;
	RTE_LCORE_FOREACH_WORKER(lc)
	lcores.push_back(lc);
	const uint32_t workers = o.workers ? o.workers : static_cast<uint32_t>(lcores.size());
	if (workers == 0)
		throw error("EAL gave no worker lcore: give at least two lcores (e.g. -l 0-1): the first "
			    "keeps house, the others forward");
	if (workers > lcores.size())
		throw error("--workers {} needs {} lcores besides the main one; EAL gave {} (-l)", workers,
			    workers, lcores.size());
	if (workers > SLUICE_MAX_WORKERS)
		throw error("{} workers: at most {} per segment", workers, SLUICE_MAX_WORKERS);
	lcores.resize(workers);
	return lcores;
}

} // namespace sluice
