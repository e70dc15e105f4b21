// SPDX-License-Identifier: Apache-2.0
// The connection-table options both dataplanes take, defined once: the
// same names, help and checks for sluice-dpdk (a table per worker) and
// sluice-xdp (a table per CPU).
#pragma once

#include "error.h"

#include <sluice/conntrack.h>

#include <boost/program_options.hpp>

#include <cstdint>
#include <string>

namespace sluice {

// --ct-entries (help says per what and the default) and --ct-timeout-*.
inline void add_ct_options(boost::program_options::options_description &desc, uint32_t &entries,
			   sluice_ct_timeouts &to, const std::string &entries_help)
{
	namespace po = boost::program_options;
	desc.add_options()
		("ct-entries", po::value(&entries), entries_help.c_str())
		("ct-timeout-syn", po::value(&to.syn_s)->default_value(to.syn_s), "seconds a TCP flow with only a SYN is kept")
		("ct-timeout-est", po::value(&to.est_s)->default_value(to.est_s), "seconds an idle established TCP flow is kept")
		("ct-timeout-fin", po::value(&to.fin_s)->default_value(to.fin_s), "seconds a TCP flow is kept after FIN or RST")
		("ct-timeout-udp", po::value(&to.udp_s)->default_value(to.udp_s), "seconds an idle UDP flow is kept")
		("ct-timeout-frag", po::value(&to.frag_s)->default_value(to.frag_s), "seconds later fragments follow their first");
}

// After po::notify: an explicit --ct-entries 0 is an error; none given
// takes `default_entries`.
inline void check_ct_options(const boost::program_options::variables_map &vm, uint32_t &entries,
			     uint32_t default_entries)
{
	if (vm.count("ct-entries") && entries == 0)
		throw error("--ct-entries 0: the connection table needs at least one entry");
	if (entries == 0)
		entries = default_entries;
}

// --conn-sweep-s: how long one sweep of the connection tables that counts
// live connections per backend (common/conn_sweep.h) is paced to take; 0:
// no counting. 2 s by default: sluiced's counts and the drain-done event
// lag by at most two periods, and a sweep reads each table once per period.
inline constexpr double default_conn_sweep_s = 2.0;

inline void add_conn_sweep_option(boost::program_options::options_description &desc, double &seconds)
{
	namespace po = boost::program_options;
	desc.add_options()
		("conn-sweep-s", po::value(&seconds)->default_value(seconds),
		 "seconds one sweep of the connection tables takes, counting live connections per backend for sluiced (0: no counting)");
}

inline void check_conn_sweep_option(double seconds)
{
	// Below 0.1 s a sweep reads every table ten times a second for counts
	// nobody reads that often; above an hour a drain would never look done.
	if (!(seconds == 0 || (seconds >= 0.1 && seconds <= 3600)))
		throw error("--conn-sweep-s {}: give 0 (no counting) or 0.1 to 3600 seconds", seconds);
}

} // namespace sluice
