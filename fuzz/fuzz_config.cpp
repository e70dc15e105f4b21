// SPDX-License-Identifier: Apache-2.0
// libFuzzer: the configuration readers on arbitrary text. YAML (a file,
// `apply -f`) and JSON (the API's and the state file's form): each either
// gives a configuration that validates, or throws the one-line error a user
// reads; never a crash, a hang or an exception of another kind. A
// configuration read back is written and read again to the same value.
#include "config.h"
#include "config_io.h"
#include "error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace sluice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const std::string text(reinterpret_cast<const char *>(data), size);
	try {
		const config c = config_from_yaml(text);
		if (!(config_from_yaml(config_to_yaml(c)) == c))
			std::abort(); // a configuration that does not survive its own dump
	} catch (const error &) {
	}
	try {
		const config c = config_from_json(nlohmann::json::parse(text));
		if (!(config_from_json(config_to_json(c)) == c))
			std::abort();
	} catch (const error &) {
	} catch (const nlohmann::json::exception &) {
		// Not JSON at all: the API answers "request is not valid JSON".
	}
	return 0;
}
