// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary request lines through sluiced's API handler (the
// service over an in-memory publisher and a state directory in /dev/shm),
// as a local client could send them: each gets one JSON reply line; the
// service never crashes and never holds a configuration that does not
// validate. One input is up to 8 lines against one service, reset to the
// base configuration first: the service (its health thread, its 64 MiB
// in-memory snapshot) is built once, as building it for every input held
// the target to ~100 inputs a second.
#include "config.h"
#include "config_io.h"
#include "publishers.h"
#include "service.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

using namespace sluice;

// The service's state directory, one per fuzzing process.
static std::string state_dir()
{
	return "/dev/shm/sluice-fuzz-api-" + std::to_string(getpid());
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const std::string dir = [] {
		const std::string d = state_dir();
		std::filesystem::remove_all(d);
		std::filesystem::create_directories(d);
		// Gone when the run ends (libFuzzer exits through exit()), not left
		// in /dev/shm by every run.
		std::atexit([] {
			std::error_code ec;
			std::filesystem::remove_all(state_dir(), ec);
		});
		return d;
	}();
	static const config base = config_from_yaml(R"(
node: {source_ipv4: 10.0.0.2, gateway_mac: '02:00:00:00:00:fe'}
vips:
  - {address: 10.200.1.1, port: 80, ring_size: 251, backends: [{address: 10.0.0.11}]}
)");
	static memory_publisher pub;
	static service s(pub, dir, base);
	static const json reset = {{"verb", "apply"}, {"args", {{"config", config_to_json(base)}}}};
	if (!s.handle(reset).value("ok", false))
		std::abort(); // the base configuration is always accepted
	std::string text(reinterpret_cast<const char *>(data), size);
	size_t start = 0;
	for (int n = 0; n < 8 && start <= text.size(); n++) {
		size_t nl = text.find('\n', start);
		if (nl == std::string::npos)
			nl = text.size();
		const std::string reply = s.handle_line(std::string_view(text).substr(start, nl - start), n % 2 == 0);
		const auto j = nlohmann::json::parse(reply); // always one JSON object
		if (!j.is_object() || !j.contains("ok"))
			std::abort();
		start = nl + 1;
	}
	validate(s.current_config()); // what it holds is always valid
	return 0;
}
