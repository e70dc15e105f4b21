// SPDX-License-Identifier: Apache-2.0
// The snapshot the packet targets (fuzz_packet, fuzz_burst) decide against:
// IPIP, GUE and L2 DSR, IPv4 and IPv6, a port-0 VIP, a node MTU, so that
// every branch of the decision is reachable from the frames' bytes alone.
// Built by the control plane's own builder, as sluiced would publish it.
#pragma once

#include "config_io.h"
#include "snapshot_builder.h"
#include "state.h"

#include <sluice/shm.h>

#include <memory>
#include <optional>

namespace sluice::fuzz {

inline const char *config_text = R"(
node: {source_ipv4: 10.0.0.2, source_ipv6: 'fd00::2', gateway_mac: '02:00:00:00:00:fe', mtu: 1500}
vips:
  - {address: 10.200.0.1, port: 80, protocol: tcp, mode: ipip, ring_size: 251,
     backends: [{address: 10.0.1.1}, {address: 10.0.1.2}, {address: 'fd00:1::1'}]}
  - {address: 10.200.0.2, port: 53, protocol: udp, mode: gue, gue_port: 6080, ring_size: 251,
     backends: [{address: 10.0.1.3}, {address: 'fd00:1::3'}]}
  - {address: 10.200.0.3, port: 0, protocol: udp, mode: ipip, ring_size: 251, backends: [{address: 10.0.1.4}]}
  - {address: 'fd00:200::1', port: 443, protocol: tcp, mode: l2dsr, ring_size: 251,
     backends: [{address: 'fd00:1::2', mac: '02:00:00:00:01:02'}]}
  - {address: 'fd00:200::2', port: 80, protocol: tcp, mode: gue, gue_port: 6080, ring_size: 251,
     backends: [{address: 10.0.1.5}]}
)";

inline std::unique_ptr<sluice_snapshot> build_snapshot()
{
	auto snap = std::make_unique<sluice_snapshot>();
	const config cfg = config_from_yaml(config_text);
	object_ids ids;
	ids.reconcile(cfg, [](object_ids::kind, uint32_t) { return sluice_obj_counters{}; });
	snapshot_builder b;
	b.build(snapshot_inputs{cfg, ids, [](uint32_t) { return true; },
				[](uint32_t) -> std::optional<mac_address> { return std::nullopt; }, false},
		*snap);
	return snap;
}

} // namespace sluice::fuzz
