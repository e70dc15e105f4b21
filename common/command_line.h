// SPDX-License-Identifier: Apache-2.0
// The one way every sluice program reads its options with
// boost::program_options: its errors become one sluice::error line (each
// program's main adds "(see --help)" to every option error), and --help
// prints the options and stops the parse.
// Header-only: only the programs that link boost_program_options include it.
#pragma once

#include "error.h"
#include "sluice_version.h"

#include <boost/program_options.hpp>

#include <iostream>

namespace sluice {

// Parses argv[0..argc) against `parsed` into vm. Returns false when --help
// was given, after printing `shown` (the options a user may use; `parsed`
// can hold hidden ones too), or --version (if `parsed` has it), after
// printing "NAME VERSION" (`name`: argv[0]'s base name when null). Throws
// sluice::error.
inline bool parse_command_line(int argc, char **argv,
			       const boost::program_options::options_description &parsed,
			       const boost::program_options::options_description &shown,
			       boost::program_options::variables_map &vm, const char *name = nullptr)
{
	namespace po = boost::program_options;
	try {
		po::store(po::command_line_parser(argc, argv).options(parsed).run(), vm);
		po::notify(vm);
	} catch (const po::error &e) {
		throw error("{}", e.what());
	}
	if (vm.count("help")) {
		std::cout << shown << "\n";
		return false;
	}
	if (vm.count("version")) {
		std::string n = name ? name : (argc > 0 ? argv[0] : "sluice");
		if (!name && n.find('/') != std::string::npos)
			n = n.substr(n.rfind('/') + 1);
		std::cout << n << " " << SLUICE_VERSION << "\n";
		return false;
	}
	return true;
}

inline bool parse_command_line(int argc, char **argv,
			       const boost::program_options::options_description &desc,
			       boost::program_options::variables_map &vm, const char *name = nullptr)
{
	return parse_command_line(argc, argv, desc, desc, vm, name);
}

} // namespace sluice
