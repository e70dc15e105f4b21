// SPDX-License-Identifier: Apache-2.0
// Apply latency: how long after a change is sent it is live for the
// dataplanes. Drives a running sluiced like sluicectl does (one connection
// per change) and watches the segment's active generation.
//
// usage: bench_apply --socket PATH --shm NAME --vip V --backend ADDR [--changes N]
// Prints one JSON object: round trip (request sent to answer read) and
// visible-after-answer (answer read to generation seen in the segment), p50
// and p99 in ms.
#include "api_socket.h"
#include "config_io.h"
#include "shm_segment.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace sluice;
using clk = std::chrono::steady_clock;

static double pct(std::vector<double> v, double p)
{
	std::sort(v.begin(), v.end());
	return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

int main(int argc, char **argv)
{
	std::string sock, shm, vip, backend;
	int changes = 1000;
	for (int i = 1; i + 1 < argc; i += 2) {
		std::string a = argv[i];
		if (a == "--socket")
			sock = argv[i + 1];
		else if (a == "--shm")
			shm = argv[i + 1];
		else if (a == "--vip")
			vip = argv[i + 1];
		else if (a == "--backend")
			backend = argv[i + 1];
		else if (a == "--changes")
			changes = std::stoi(argv[i + 1]);
	}
	if (sock.empty() || shm.empty() || vip.empty() || backend.empty()) {
		std::fprintf(stderr, "usage: bench_apply --socket PATH --shm NAME --vip V --backend ADDR [--changes N]\n");
		return 2;
	}
	try {
		shm_segment seg = shm_segment::attach(shm);
		std::vector<double> rtt, visible;
		for (int i = 0; i < changes; i++) {
			json req{{"verb", "backend.set"},
				 {"args", {{"vip", vip}, {"address", backend}, {"weight", 100 + (i % 2)}}}};
			auto t0 = clk::now();
			json resp = json::parse(api_call(sock, req.dump(), std::chrono::seconds(10)));
			auto t1 = clk::now();
			if (!resp["ok"].get<bool>()) {
				std::fprintf(stderr, "bench_apply: %s\n", resp["error"].get<std::string>().c_str());
				return 1;
			}
			uint64_t want = resp["result"]["generation"].get<uint64_t>();
			while (sluice_active_generation(__atomic_load_n(&seg->ctl.active, __ATOMIC_ACQUIRE)) < want)
				;
			auto t2 = clk::now();
			rtt.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
			visible.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
		}
		std::printf("{\"changes\": %d, \"apply_ms_p50\": %.3f, \"apply_ms_p99\": %.3f, "
			    "\"visible_after_answer_ms_p99\": %.4f}\n",
			    changes, pct(rtt, 0.5), pct(rtt, 0.99), pct(visible, 0.99));
	} catch (const std::exception &e) {
		std::fprintf(stderr, "bench_apply: %s\n", e.what());
		return 1;
	}
	return 0;
}
