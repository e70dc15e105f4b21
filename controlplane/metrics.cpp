// SPDX-License-Identifier: Apache-2.0
#include "metrics.h"

#include "sluice_version.h"

#include <fmt/format.h>

#include <cstring>

namespace sluice {

namespace {

// Label values escape backslash, quote and newline (exposition format).
std::string esc(const std::string &s)
{
	std::string out;
	for (char c : s) {
		if (c == '\\' || c == '"')
			out += '\\';
		if (c == '\n') {
			out += "\\n";
			continue;
		}
		out += c;
	}
	return out;
}

void family(std::string &out, const char *name, const char *type, const char *help)
{
	out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

} // namespace

std::string render_metrics(const stats_view &sv)
{
	std::string out;
	// Which build answers: the usual Prometheus idiom, a constant 1 with
	// the version as a label, so a dashboard can tell nodes mid-upgrade.
	family(out, "sluice_build_info", "gauge", "Always 1; the version label is sluiced's.");
	out += fmt::format("sluice_build_info{{version=\"{}\"}} 1\n", esc(SLUICE_VERSION));
	family(out, "sluice_snapshot_generation", "gauge", "Generation of the active snapshot.");
	out += fmt::format("sluice_snapshot_generation {}\n", sv.generation);

	// Drops share one family labelled by reason; the rest are one family each.
	family(out, "sluice_drops_total", "counter", "Packets dropped, by reason (see docs).");
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
		if (std::strcmp(counter_table[i].kind, "drop") == 0)
			out += fmt::format("sluice_drops_total{{reason=\"{}\"}} {}\n",
					   counter_table[i].name + 5, sv.counters[i]);
	for (size_t i = 0; i < SLUICE_CNT__COUNT; i++) {
		if (std::strcmp(counter_table[i].kind, "drop") == 0)
			continue;
		std::string name = fmt::format("sluice_{}_total", counter_table[i].name);
		family(out, name.c_str(), "counter", counter_table[i].help);
		out += fmt::format("{} {}\n", name, sv.counters[i]);
	}

	struct obj_metric {
		const char *name;
		const char *help;
		uint64_t sluice_obj_counters::*field;
	};
	const obj_metric obj_metrics[] = {
		{"packets", "Packets forwarded", &sluice_obj_counters::packets},
		{"bytes", "Bytes forwarded (as received)", &sluice_obj_counters::bytes},
		{"new_flows", "New flows (connection-table inserts)", &sluice_obj_counters::new_flows},
	};
	for (const auto &m : obj_metrics) {
		std::string name = fmt::format("sluice_vip_{}_total", m.name);
		family(out, name.c_str(), "counter", m.help);
		for (const auto &v : sv.vips)
			out += fmt::format("{}{{vip=\"{}\"}} {}\n", name, esc(v.cfg.key.str()),
					   v.counters.*m.field);
	}
	for (const auto &m : obj_metrics) {
		std::string name = fmt::format("sluice_backend_{}_total", m.name);
		family(out, name.c_str(), "counter", m.help);
		for (const auto &v : sv.vips)
			for (const auto &b : v.backends)
				out += fmt::format("{}{{vip=\"{}\",backend=\"{}\"}} {}\n", name,
						   esc(v.cfg.key.str()), esc(b.cfg.address.str()),
						   b.counters.*m.field);
	}
	family(out, "sluice_backend_healthy", "gauge", "1 if the backend passes its health checks.");
	for (const auto &v : sv.vips)
		for (const auto &b : v.backends)
			out += fmt::format("sluice_backend_healthy{{vip=\"{}\",backend=\"{}\"}} {}\n",
					   esc(v.cfg.key.str()), esc(b.cfg.address.str()),
					   b.healthy ? 1 : 0);
	family(out, "sluice_backend_weight", "gauge", "Configured weight; 0 while draining.");
	for (const auto &v : sv.vips)
		for (const auto &b : v.backends)
			out += fmt::format("sluice_backend_weight{{vip=\"{}\",backend=\"{}\"}} {}\n",
					   esc(v.cfg.key.str()), esc(b.cfg.address.str()), b.cfg.weight);
	// Absent, not 0, while no live dataplane counts: an unknown count must
	// not read as an empty backend.
	family(out, "sluice_backend_connections", "gauge",
	       "Live connections to the backend in the dataplanes' connection tables, as of their last sweep: "
	       "active (SYN, established, UDP) and inactive (FIN).");
	for (const auto &v : sv.vips)
		for (const auto &b : v.backends)
			if (b.conns) {
				out += fmt::format("sluice_backend_connections{{vip=\"{}\",backend=\"{}\",state=\"active\"}} {}\n",
						   esc(v.cfg.key.str()), esc(b.cfg.address.str()), b.conns->active);
				out += fmt::format("sluice_backend_connections{{vip=\"{}\",backend=\"{}\",state=\"inactive\"}} {}\n",
						   esc(v.cfg.key.str()), esc(b.cfg.address.str()), b.conns->inactive);
			}
	family(out, "sluice_backend_drain_done", "gauge",
	       "Backends at weight 0 only: 1 once no counting dataplane holds a connection to it (safe to take down).");
	for (const auto &v : sv.vips)
		for (const auto &b : v.backends)
			if (!b.drain.empty())
				out += fmt::format("sluice_backend_drain_done{{vip=\"{}\",backend=\"{}\"}} {}\n",
						   esc(v.cfg.key.str()), esc(b.cfg.address.str()), b.drain == "done" ? 1 : 0);
	family(out, "sluice_vip_backends_in_table", "gauge",
	       "Backends in the VIP's Maglev table (healthy, weight > 0).");
	for (const auto &v : sv.vips)
		out += fmt::format("sluice_vip_backends_in_table{{vip=\"{}\"}} {}\n", esc(v.cfg.key.str()),
				   v.in_table);

	// Info-style (a constant 1, the value in a label): a 64-bit digest does
	// not fit a sample's float. Nodes agree on a VIP when
	// count by (vip) (count by (vip, digest) (sluice_vip_table_info)) == 1.
	family(out, "sluice_vip_table_info", "gauge",
	       "Always 1; digest: the VIP's Maglev table and backends (equal on nodes that agree).");
	for (const auto &v : sv.vips)
		out += fmt::format("sluice_vip_table_info{{vip=\"{}\",digest=\"{}\"}} 1\n", esc(v.cfg.key.str()),
				   esc(v.digest));
	family(out, "sluice_node_drained", "gauge", "1 while the node is drained (sluicectl node drain).");
	out += fmt::format("sluice_node_drained {}\n", sv.drained ? 1 : 0);
	family(out, "sluice_vip_announced", "gauge",
	       "1 if the node should announce the VIP now (sluicectl node status says why not).");
	for (const auto &v : sv.vips)
		out += fmt::format("sluice_vip_announced{{vip=\"{}\"}} {}\n", esc(v.cfg.key.str()), v.announce ? 1 : 0);
	family(out, "sluice_bgp_enabled", "gauge", "1 if node.bgp.enabled: sluiced tells BIRD what to announce.");
	out += fmt::format("sluice_bgp_enabled {}\n", sv.bird.enabled ? 1 : 0);
	family(out, "sluice_bgp_bird_reachable", "gauge", "1 if BIRD's control socket answered the last contact.");
	out += fmt::format("sluice_bgp_bird_reachable {}\n", sv.bird.reachable ? 1 : 0);
	family(out, "sluice_bgp_in_sync", "gauge",
	       "1 if BIRD holds exactly the routes sluiced decided (0 while BGP is off, BIRD unreachable or refusing).");
	out += fmt::format("sluice_bgp_in_sync {}\n", sv.bgp_in_sync ? 1 : 0);
	family(out, "sluice_bgp_reconfigures_total", "counter", "BIRD reconfigurations sluiced made that BIRD accepted.");
	out += fmt::format("sluice_bgp_reconfigures_total {}\n", sv.bird.reconfigures);
	family(out, "sluice_bgp_failures_total", "counter",
	       "Attempts to tell BIRD that failed (file not written, BIRD unreachable or refusing).");
	out += fmt::format("sluice_bgp_failures_total {}\n", sv.bird.failures);

	family(out, "sluice_worker_heartbeat_age_seconds", "gauge",
	       "Seconds since the dataplane worker's last heartbeat.");
	for (const auto &w : sv.workers)
		out += fmt::format("sluice_worker_heartbeat_age_seconds{{worker=\"{}\",kind=\"{}\",state=\"{}\"}} {:.3f}\n",
				   esc(w.name), w.kind, w.state, w.heartbeat_age_s);
	family(out, "sluice_worker_generation_seen", "gauge",
	       "Snapshot generation the worker last read.");
	for (const auto &w : sv.workers)
		out += fmt::format("sluice_worker_generation_seen{{worker=\"{}\",kind=\"{}\"}} {}\n",
				   esc(w.name), w.kind, w.generation_seen);
	family(out, "sluice_worker_generation_applied", "gauge",
	       "Snapshot generation the worker forwards by (below generation_seen: it refused that one).");
	for (const auto &w : sv.workers)
		out += fmt::format("sluice_worker_generation_applied{{worker=\"{}\",kind=\"{}\"}} {}\n",
				   esc(w.name), w.kind, w.generation_applied);
	family(out, "sluice_worker_stale", "gauge",
	       "1 while the worker refuses the snapshot it has seen; `reason` says why.");
	for (const auto &w : sv.workers)
		out += fmt::format("sluice_worker_stale{{worker=\"{}\",kind=\"{}\",reason=\"{}\"}} {}\n",
				   esc(w.name), w.kind, w.refused, w.stale.empty() ? 0 : 1);
	family(out, "sluice_worker_packets_total", "counter",
	       "Packets the worker received (rx) and sent towards backends or clients (tx).");
	for (const auto &w : sv.workers) {
		out += fmt::format("sluice_worker_packets_total{{worker=\"{}\",kind=\"{}\",direction=\"rx\"}} {}\n",
				   esc(w.name), w.kind, w.counters[SLUICE_CNT_rx_packets]);
		out += fmt::format("sluice_worker_packets_total{{worker=\"{}\",kind=\"{}\",direction=\"tx\"}} {}\n",
				   esc(w.name), w.kind, w.counters[SLUICE_CNT_tx_packets]);
	}
	family(out, "sluice_worker_bytes_total", "counter",
	       "Bytes the worker received (rx) and sent towards backends (tx, after encapsulation).");
	for (const auto &w : sv.workers) {
		out += fmt::format("sluice_worker_bytes_total{{worker=\"{}\",kind=\"{}\",direction=\"rx\"}} {}\n",
				   esc(w.name), w.kind, w.counters[SLUICE_CNT_rx_bytes]);
		out += fmt::format("sluice_worker_bytes_total{{worker=\"{}\",kind=\"{}\",direction=\"tx\"}} {}\n",
				   esc(w.name), w.kind, w.counters[SLUICE_CNT_tx_bytes]);
	}
	// The connection table's fill, as the worker's last sweep counted it:
	// only workers that count (conn sweeps on, at least one done).
	const struct {
		const char *name, *help;
		uint32_t worker_view::*field;
	} table_fill[] = {
		{"sluice_worker_conn_table_entries",
		 "Live entries in the worker's connection table (all states, every CPU's copy), at its last sweep.",
		 &worker_view::ct_live},
		{"sluice_worker_conn_table_capacity",
		 "Entries the worker's connection table holds when full (buckets x ways, every CPU's copy).",
		 &worker_view::ct_capacity},
	};
	for (const auto &f : table_fill) {
		family(out, f.name, "gauge", f.help);
		for (const auto &w : sv.workers)
			if (w.conn_sweeps)
				out += fmt::format("{}{{worker=\"{}\",kind=\"{}\"}} {}\n", f.name, esc(w.name), w.kind,
						   w.*f.field);
	}
	// Per worker, all reasons together (sluice_drops_total has them by
	// reason for the node): one worker dropping while the others do not is
	// a queue or a core, not the configuration.
	family(out, "sluice_worker_drops_total", "counter", "Packets the worker dropped, all reasons.");
	for (const auto &w : sv.workers) {
		uint64_t drops = 0;
		for (size_t i = 0; i < SLUICE_CNT__COUNT; i++)
			if (std::strcmp(counter_table[i].kind, "drop") == 0)
				drops += w.counters[i];
		out += fmt::format("sluice_worker_drops_total{{worker=\"{}\",kind=\"{}\"}} {}\n", esc(w.name), w.kind,
				   drops);
	}
	return out;
}

} // namespace sluice
