// SPDX-License-Identifier: Apache-2.0
// sluiced: the control plane. Owns the configuration, runs health checks,
// publishes snapshots into shared memory, serves sluicectl on a Unix socket
// and Prometheus on --metrics. Never touches a packet.
#include "api_socket.h"
#include "config_io.h"
#include "error.h"
#include "metrics.h"
#include "publishers.h"
#include "service.h"
#include "ownership.h"
#include "shm_segment.h"

#include <boost/program_options.hpp>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>
#include <atomic>
#include <sys/resource.h>

namespace po = boost::program_options;

namespace {

struct options {
	std::string config_path;
	std::string shm_name = "sluice";
	std::string socket_path = "/run/sluice/sluiced.sock";
	std::string state_dir = "/var/lib/sluice";
	std::string metrics;
	uint32_t worker_timeout_ms = 1000;
	std::string log_level = "info";
};

std::pair<std::string, int> split_host_port(const std::string &s)
{
	// HOST:PORT, [IPv6]:PORT
	auto colon = s.rfind(':');
	if (colon == std::string::npos || colon + 1 == s.size())
		throw sluice::error("--metrics: '{}' is not HOST:PORT", s);
	std::string host = s.substr(0, colon);
	if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
		host = host.substr(1, host.size() - 2);
	int port = 0;
	try {
		size_t used = 0;
		port = std::stoi(s.substr(colon + 1), &used);
		if (used != s.size() - colon - 1)
			port = -1;
	} catch (...) {
		port = -1;
	}
	if (port <= 0 || port > 65535)
		throw sluice::error("--metrics: '{}' has no valid port", s);
	return {host, port};
}

// httplib's thread pool with a bound on the connections it holds. Past the
// bound a connection is served in the accepting thread (short timeouts, so
// it ends soon), which stops accepting meanwhile: idle clients of /metrics
// cannot pile up descriptors until the health checks and the API have none.
class bounded_task_queue final : public httplib::TaskQueue {
public:
	bounded_task_queue(size_t threads, size_t max_held) : pool_(threads), max_held_(max_held) {}
	void enqueue(std::function<void()> fn) override
	{
		if (held_.load() >= max_held_) {
			fn();
			return;
		}
		held_++;
		pool_.enqueue([this, fn = std::move(fn)] {
			fn();
			held_--;
		});
	}
	void shutdown() override { pool_.shutdown(); }

private:
	httplib::ThreadPool pool_;
	const size_t max_held_;
	std::atomic<size_t> held_{0};
};

// /metrics serves a scraper or two: a few threads, and idle or slow
// clients are dropped after metrics_timeout.
constexpr size_t metrics_threads = 4, metrics_max_held = 16;
constexpr std::chrono::seconds metrics_timeout{2};

// Descriptors: one per API client and probe in flight. A low soft limit
// (1,024 by default) would make a thousand idle local clients an outage;
// the hard limit is what the administrator allows.
void raise_nofile_limit()
{
	rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		const rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			spdlog::debug("open files: raised the soft limit from {} to {}", was, rl.rlim_max);
	}
}

int run(const options &o)
{
	raise_nofile_limit();
	sluice::config initial;
	if (!o.config_path.empty())
		initial = sluice::load_config_file(o.config_path);

	std::error_code ec;
	std::filesystem::create_directories(o.state_dir, ec);
	if (ec)
		throw sluice::error("--state-dir {}: {}", o.state_dir, ec.message());
	// The configuration sluiced restores comes from here.
	sluice::require_trusted("--state-dir", o.state_dir, sluice::own_rule(),
				"chown it to this user and chmod go-w, or use another --state-dir");
	auto sock_dir = std::filesystem::path(o.socket_path).parent_path();
	if (!sock_dir.empty()) {
		std::filesystem::create_directories(sock_dir, ec);
		if (ec)
			throw sluice::error("--socket {}: {}", o.socket_path, ec.message());
	}

	auto segment = sluice::shm_segment::create_or_adopt(o.shm_name);
	spdlog::info("{} shared memory /dev/shm/{} (ABI {})",
		     segment.adopted() ? "adopted" : "created", o.shm_name, SLUICE_ABI_VERSION);
	sluice::shm_publisher pub(segment.get(), std::chrono::milliseconds(o.worker_timeout_ms));
	pub.writer().heartbeat();

	// Signals are taken synchronously by the main thread below; every thread
	// started after this inherits the blocked mask.
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

	sluice::service svc(pub, o.state_dir, initial, true);
	svc.refresh_next_hops();
	auto cfg = svc.current_config();
	if (svc.restored_from_state()) {
		spdlog::info("restored the last acknowledged configuration from {}/state.json ({} VIPs)",
			     o.state_dir, cfg.vips.size());
		if (!o.config_path.empty())
			spdlog::warn("--config {} not loaded: the saved state wins; use `sluicectl apply -f` "
				     "to replace it",
				     o.config_path);
	} else {
		spdlog::info("configuration: {} VIPs from {}", cfg.vips.size(),
			     o.config_path.empty() ? "nothing (empty)" : o.config_path);
	}
	spdlog::info("published generation {}", pub.generation());

	// SO_PEERCRED: the socket's mode lets root, sluiced's user and its
	// group in; of those, the group may only read.
	sluice::api_server api(o.socket_path, [&](std::string_view line, const sluice::api_peer &peer) {
		return svc.handle_line(line, sluice::api_peer_privileged(peer));
	});
	spdlog::info("API on {}", o.socket_path);

	std::unique_ptr<httplib::Server> http;
	std::thread http_thread;
	if (!o.metrics.empty()) {
		auto [host, port] = split_host_port(o.metrics);
		http = std::make_unique<httplib::Server>();
		http->new_task_queue = [] { return new bounded_task_queue(metrics_threads, metrics_max_held); };
		http->set_read_timeout(metrics_timeout);
		http->set_write_timeout(metrics_timeout);
		http->set_keep_alive_timeout(metrics_timeout.count());
		http->Get("/metrics", [&](const httplib::Request &, httplib::Response &res) {
			res.set_content(sluice::render_metrics(svc.stats()), "text/plain; version=0.0.4");
		});
		if (!http->bind_to_port(host, port))
			throw sluice::error("--metrics {}: cannot listen there", o.metrics);
		http_thread = std::thread([&] { http->listen_after_bind(); });
		spdlog::info("metrics on http://{}/metrics", o.metrics);
	}

	// Housekeeping: the writer's heartbeat, so dataplanes can tell a live
	// control plane from a dead one.
	// and every second the backends' next-hop MACs (neighbours change).
	timespec tick{0, 100 * 1000 * 1000};
	for (unsigned n = 1;; n++) {
		int sig = sigtimedwait(&sigs, nullptr, &tick);
		if (sig == SIGINT || sig == SIGTERM) {
			spdlog::info("signal {}: stopping (the dataplanes keep forwarding)", sig);
			break;
		}
		pub.writer().heartbeat();
		if (n % 10 == 0)
			svc.refresh_next_hops();
	}
	if (http) {
		http->stop();
		http_thread.join();
	}
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	options o;
	po::options_description desc("Usage: sluiced [options]\n\nOptions");
	desc.add_options()
		("help,h", "show this help")
		("config", po::value(&o.config_path), "YAML configuration to start with (ignored once --state-dir holds a saved state)")
		("shm", po::value(&o.shm_name)->default_value(o.shm_name), "shared-memory segment name (/dev/shm/NAME)")
		("socket", po::value(&o.socket_path)->default_value(o.socket_path), "API socket for sluicectl")
		("state-dir", po::value(&o.state_dir)->default_value(o.state_dir), "where the acknowledged configuration is kept")
		("metrics", po::value(&o.metrics), "serve Prometheus /metrics on HOST:PORT")
		("worker-timeout-ms", po::value(&o.worker_timeout_ms)->default_value(o.worker_timeout_ms), "a dataplane worker silent this long is dead and holds no snapshot")
		("log-level", po::value(&o.log_level)->default_value(o.log_level), "trace, debug, info, warn, error");
	try {
		po::variables_map vm;
		po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
		po::notify(vm);
		if (vm.count("help")) {
			std::cout << desc << "\n";
			return 0;
		}
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluiced: %s (see --help)\n", e.what());
		return 2;
	}
	spdlog::set_level(spdlog::level::from_str(o.log_level));
	spdlog::set_pattern("sluiced: %^%l%$: %v");
	try {
		return run(o);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluiced: %s\n", e.what());
		return 1;
	}
}
