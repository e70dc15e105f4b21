// SPDX-License-Identifier: Apache-2.0
// sluiced: the control plane. Owns the configuration, runs health checks,
// publishes snapshots into shared memory, serves sluicectl on a Unix socket
// and Prometheus on --metrics. Never touches a packet.
#include "api_socket.h"
#include "config_io.h"
#include "error.h"
#include "log_level.h"
#include "metrics.h"
#include "publishers.h"
#include "service.h"
#include "ownership.h"
#include "shm_segment.h"
#include "sluice_version.h"

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
#include <charconv>
#include <cstring>
#include <tuple>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace po = boost::program_options;

namespace {

struct options {
	std::string config_path;
	std::string shm_name = "sluice";
	std::string socket_path = "/run/sluice/sluiced.sock";
	std::string state_dir = "/var/lib/sluice";
	std::string metrics;
	std::string worker_timeout = "1000";
	std::string log_level = "info";

	// Parsed from the text above by check_options().
	uint32_t worker_timeout_ms = 0;
	spdlog::level::level_enum level = spdlog::level::info;
	std::string metrics_host;
	int metrics_port = 0;
};

// --metrics HOST:PORT, strictly: a port alone or an empty host would listen
// on every address (the metrics are for localhost), a name may resolve to
// several, and an IPv6 address without brackets cannot be told from its port.
std::pair<std::string, int> parse_metrics(const std::string &s)
{
	const std::string example = "e.g. --metrics 127.0.0.1:9300 or [::1]:9300";
	auto colon = s.rfind(':');
	if (colon == std::string::npos || colon == 0)
		throw sluice::error("--metrics: '{}' has no host: give HOST:PORT, {}", s, example);
	std::string host = s.substr(0, colon);
	const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
	if (bracketed)
		host = host.substr(1, host.size() - 2);
	else if (host.find(':') != std::string::npos)
		throw sluice::error("--metrics: '{}': put an IPv6 address in brackets, {}", s, example);
	auto addr = sluice::ip_address::parse(host);
	if (!addr || addr->is_v6() != bracketed)
		throw sluice::error("--metrics: '{}' is not an IP address: give one, {}", host, example);
	const std::string port_text = s.substr(colon + 1);
	unsigned port = 0;
	auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
	if (ec != std::errc() || end != port_text.data() + port_text.size() || port_text.empty() ||
	    port_text[0] == '0' || port == 0 || port > 65535)
		throw sluice::error("--metrics: '{}' has no valid port (1-65535), {}", s, example);
	return {host, static_cast<int>(port)};
}

uint32_t parse_worker_timeout(const std::string &s)
{
	uint32_t ms = 0;
	auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), ms);
	if (ec != std::errc() || end != s.data() + s.size() || s.empty() || ms == 0 || s[0] == '0')
		throw sluice::error("--worker-timeout-ms: '{}' is not a number of milliseconds from 1 to {}", s,
				    UINT32_MAX);
	return ms;
}

// Why nobody can listen on host:port, for the line sluiced exits with
// (httplib only says that it failed).
std::string listen_error(const std::string &host, int port)
{
	auto a = sluice::ip_address::parse(host);
	int fd = ::socket(a && a->is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return std::strerror(errno);
	int yes = 1;
	::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
	sockaddr_storage ss{};
	socklen_t len;
	if (a && a->is_v6()) {
		auto *s6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(static_cast<uint16_t>(port));
		::inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		auto *s4 = reinterpret_cast<sockaddr_in *>(&ss);
		s4->sin_family = AF_INET;
		s4->sin_port = htons(static_cast<uint16_t>(port));
		::inet_pton(AF_INET, host.c_str(), &s4->sin_addr);
		len = sizeof(*s4);
	}
	std::string why = "cannot listen there";
	if (::bind(fd, reinterpret_cast<sockaddr *>(&ss), len) != 0 || ::listen(fd, 1) != 0)
		why = errno == EADDRINUSE ? "in use (another sluiced? `ss -ltnp` names it)" : std::strerror(errno);
	::close(fd);
	return why;
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

// Every option, before anything is created: a typo must not leave a
// segment published, a socket bound or a state directory made behind it.
void check_options(options &o)
{
	o.level = sluice::log_level_from_name(o.log_level);
	o.worker_timeout_ms = parse_worker_timeout(o.worker_timeout);
	if (!o.metrics.empty())
		std::tie(o.metrics_host, o.metrics_port) = parse_metrics(o.metrics);
	sluice::shm_segment::check_name(o.shm_name);
	if (sockaddr_un a; o.socket_path.empty() || o.socket_path.size() >= sizeof(a.sun_path))
		throw sluice::error("--socket: '{}' must be a path of 1 to {} bytes", o.socket_path,
				    sizeof(a.sun_path) - 1);
	if (o.state_dir.empty())
		throw sluice::error("--state-dir: give a directory");
}

int run(const options &o)
{
	raise_nofile_limit();
	sluice::config initial;
	if (!o.config_path.empty())
		initial = sluice::load_config_file(o.config_path);

	// /metrics is bound before anything is created, so a port another
	// process holds (a second sluiced) stops this one with nothing
	// published. No SO_REUSEPORT (httplib sets it by default): two sluiced
	// would share the port, and each scrape would read one at random.
	std::unique_ptr<httplib::Server> http;
	sluice::service *svc_for_metrics = nullptr;
	if (!o.metrics.empty()) {
		http = std::make_unique<httplib::Server>();
		http->set_socket_options([](socket_t sock) {
			int yes = 1;
			::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
		});
		http->new_task_queue = [] { return new bounded_task_queue(metrics_threads, metrics_max_held); };
		http->set_read_timeout(metrics_timeout);
		http->set_write_timeout(metrics_timeout);
		http->set_keep_alive_timeout(metrics_timeout.count());
		http->Get("/metrics", [&svc_for_metrics](const httplib::Request &, httplib::Response &res) {
			res.set_content(sluice::render_metrics(svc_for_metrics->stats()),
					"text/plain; version=0.0.4");
		});
		if (!http->bind_to_port(o.metrics_host, o.metrics_port))
			throw sluice::error("--metrics {}: {}", o.metrics, listen_error(o.metrics_host, o.metrics_port));
	}

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
	// group in; of those, the group may only read. The credentials also go
	// into the event of every change and refusal.
	sluice::api_server api(o.socket_path, [&](std::string_view line, const sluice::api_peer &peer) {
		return svc.handle_line(line, sluice::api_caller{sluice::api_peer_privileged(peer), peer.uid, peer.pid});
	});
	spdlog::info("API on {}", o.socket_path);

	// BGP on a thread of its own: BIRD may take its time to answer a
	// `configure`, and the writer's heartbeat below must not wait for it.
	// Every 50 ms: with node.bgp.heartbeat_timeout_ms at 300, a killed
	// dataplane is withdrawn about 0.35 s after its last beat plus BIRD's
	// reconfiguration, inside the 1 s promised.
	std::atomic<bool> stopping{false};
	std::thread bgp_thread([&] {
		while (!stopping.load()) {
			svc.sync_bgp();
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
		}
	});

	std::thread http_thread;
	if (http) {
		svc_for_metrics = &svc;
		http_thread = std::thread([&] { http->listen_after_bind(); });
		spdlog::info("metrics on http://{}/metrics", o.metrics);
	}

	// Housekeeping: the writer's heartbeat, so dataplanes can tell a live
	// control plane from a dead one; every 300 ms the worker records, for
	// the events of dataplanes attaching, stopping, dying or going stale
	// (the first reading names those already there); and every second the
	// backends' next-hop MACs (neighbours change).
	svc.watch_workers();
	timespec tick{0, 100 * 1000 * 1000};
	for (unsigned n = 1;; n++) {
		int sig = sigtimedwait(&sigs, nullptr, &tick);
		if (sig == SIGINT || sig == SIGTERM) {
			spdlog::info("signal {}: stopping (the dataplanes keep forwarding)", sig);
			break;
		}
		pub.writer().heartbeat();
		if (n % 3 == 0)
			svc.watch_workers();
		if (n % 10 == 0)
			svc.refresh_next_hops();
	}
	// BIRD keeps what it was last told: the dataplanes forward on, so the
	// announcements stay right while sluiced is away.
	stopping = true;
	bgp_thread.join();
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
		("version", "print the version and exit")
		("config", po::value(&o.config_path), "YAML configuration to start with (ignored once --state-dir holds a saved state)")
		("shm", po::value(&o.shm_name)->default_value(o.shm_name), "shared-memory segment name (/dev/shm/NAME)")
		("socket", po::value(&o.socket_path)->default_value(o.socket_path), "API socket for sluicectl")
		("state-dir", po::value(&o.state_dir)->default_value(o.state_dir), "where the acknowledged configuration is kept")
		("metrics", po::value(&o.metrics), "serve Prometheus /metrics on HOST:PORT")
		("worker-timeout-ms", po::value(&o.worker_timeout)->default_value(o.worker_timeout), "a dataplane worker silent this long is dead and holds no snapshot")
		("log-level", po::value(&o.log_level)->default_value(o.log_level), "trace, debug, info, warn, error")
		("check-config", po::value<std::string>(), "validate a YAML configuration FILE and exit (0: valid; else its one-line error)");
	try {
		po::variables_map vm;
		po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
		po::notify(vm);
		if (vm.count("help")) {
			std::cout << desc << "\n";
			return 0;
		}
		if (vm.count("version")) {
			std::printf("sluiced %s\n", SLUICE_VERSION);
			return 0;
		}
		// For packaging and CI: the file as sluiced would load it, and
		// nothing else looked at or created.
		if (vm.count("check-config")) {
			const std::string path = vm["check-config"].as<std::string>();
			try {
				sluice::config c = sluice::load_config_file(path);
				size_t backends = 0;
				for (const auto &v : c.vips)
					backends += v.backends.size();
				std::printf("%s: valid (%zu VIPs, %zu backends)\n", path.c_str(), c.vips.size(), backends);
				return 0;
			} catch (const std::exception &e) {
				std::fprintf(stderr, "sluiced: %s\n", e.what());
				return 1;
			}
		}
		check_options(o);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluiced: %s (see --help)\n", e.what());
		return 2;
	}
	spdlog::set_level(o.level);
	spdlog::set_pattern("sluiced: %^%l%$: %v");
	try {
		return run(o);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "sluiced: %s\n", e.what());
		return 1;
	}
}
