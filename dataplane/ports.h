// SPDX-License-Identifier: Apache-2.0
// The ports around the workers: the data port (one RX and one TX queue per
// worker, RSS and TX checksum offload where the port offers them) and the
// exception port that takes what is for the kernel (a TAP, or the pcap file
// OUT.exception.pcap; none with af_packet, whose kernel sees every frame).
#pragma once

#include "options.h"
#include "worker.h"

#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

inline constexpr uint16_t no_port = UINT16_MAX;

struct port_layout {
	uint16_t data = no_port;
	uint16_t exception = no_port; // no_port: none (af_packet)
	uint16_t tx = no_port;        // --tx-port: forwarded traffic goes out here; no_port: data
	bool tap = false;             // the exception port is a TAP: relay its RX out of data
	std::string data_name;        // "net_pcap0", "0000:3b:00.0", or the --iface name
};

// Finds the data and exception ports among the probed ethdevs; throws
// sluice::error saying what is missing.
port_layout find_ports(const options &o);

// What the workers need to know about the data port once it is set up.
struct data_port {
	worker_params params;  // port_mac, port_mtu, tx_ipv4_cksum_offload, kernel_sees_rx
	uint16_t main_txq = 0; // the main lcore's TX queue (TAP relay), == workers
	bool af_packet = false; // it also hands us frames for other hosts and our own output
	std::string capabilities; // the one line: queues, RSS, checksum offload
};

// An mbuf pool on `socket` (falling back to any socket: without hugepages
// all memory sits on one); throws on failure. data_room: headroom included.
rte_mempool *make_pool(const std::string &name, uint32_t mbufs, int socket,
		       uint16_t data_room = RTE_MBUF_DEFAULT_BUF_SIZE);

// Configures and starts the data port: rx_pools[q] feeds RX queue q, one TX
// queue per worker plus one for the main lcore when `extra_tx` (none with a
// --tx-port: then it only receives).
data_port setup_data_port(const options &o, const port_layout &ports,
			  const std::vector<rte_mempool *> &rx_pools, bool extra_tx);

// Configures and starts the exception port. A TAP gets one RX and one TX
// queue, both the main lcore's (the workers hand it their kernel-bound
// packets over rings: lcore.h), RX fed from `rx_pool`, and the data port's
// MAC and MTU so the kernel takes the frames as its own. The --pcap
// exception file gets one TX queue per worker.
void setup_exception_port(const port_layout &ports, uint32_t workers, rte_mempool *rx_pool,
			  const data_port &data);

// Configures and starts the --tx-port: one TX queue per worker and one for
// the main lcore's TAP relay (data.main_txq), no RX. The workers' IPv4
// checksum offload follows this port's capability.
void setup_tx_port(const options &o, const port_layout &ports, data_port &data);

// rte_eth_dev_stop + rte_eth_dev_close (pcap files flushed, the TAP gone).
void close_port(uint16_t port);

} // namespace sluice
