// SPDX-License-Identifier: Apache-2.0
#include "ports.h"

#include "error.h"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <fmt/format.h>

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstring>

namespace sluice {

namespace {

// Descriptors per queue: l3fwd's defaults, enough for a burst loop that
// polls every few microseconds; adjusted to what each port accepts.
constexpr uint16_t rx_desc = 1024;
constexpr uint16_t tx_desc = 1024;
constexpr uint16_t tap_rx_desc = 512;
constexpr uint32_t pool_cache = 256;

// The largest IP packet an af_packet port carries with its default ring
// frames (rte_eth_af_packet.c: framesz 2048): the frame less the TPACKET_V2
// header and sockaddr_ll in front of the data (66 bytes, aligned), less
// Ethernet and one VLAN tag (18).
constexpr uint32_t af_packet_max_mtu = 2048 - 66 - 18;

// What RSS spreads flows over the worker queues by: addresses, and ports
// where the protocol has them, so one flow always lands on one worker (and
// so in one connection table).
constexpr uint64_t rss_wanted = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;

std::string port_name(uint16_t port)
{
	char name[RTE_ETH_NAME_MAX_LEN] = "";
	rte_eth_dev_get_name_by_port(port, name);
	return name;
}

rte_eth_dev_info dev_info(uint16_t port)
{
	rte_eth_dev_info info;
	int ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0)
		throw error("port {} ({}): cannot read its device info: {}", port, port_name(port),
			    rte_strerror(-ret));
	return info;
}

[[noreturn]] void port_fail(uint16_t port, const char *what, int ret)
{
	throw error("port {} ({}): {}: {}", port, port_name(port), what, rte_strerror(ret < 0 ? -ret : ret));
}

std::string mac_text(const rte_ether_addr &a)
{
	char buf[RTE_ETHER_ADDR_FMT_SIZE];
	rte_ether_format_addr(buf, sizeof(buf), &a);
	return buf;
}

std::string rss_text(uint64_t hf)
{
	std::string s;
	auto add = [&](const char *w) { s += s.empty() ? w : std::string(",") + w; };
	if (hf & RTE_ETH_RSS_IP)
		add("ip");
	if (hf & RTE_ETH_RSS_TCP)
		add("tcp");
	if (hf & RTE_ETH_RSS_UDP)
		add("udp");
	return s;
}

// How many of the queues the port's RSS redirection table sends to, read
// back from the port: a table narrower than the queues, or one an operator
// set with other tools, leaves workers idle.
std::string rss_spread(uint16_t port, const rte_eth_dev_info &info, uint16_t nrx)
{
	if (info.reta_size == 0 || info.reta_size > 4096)
		return fmt::format(" over {} queues (the redirection table cannot be read)", nrx);
	std::vector<rte_eth_rss_reta_entry64> reta(info.reta_size / RTE_ETH_RETA_GROUP_SIZE + 1);
	for (auto &r : reta)
		r.mask = UINT64_MAX;
	if (rte_eth_dev_rss_reta_query(port, reta.data(), info.reta_size) != 0)
		return fmt::format(" over {} queues (the redirection table cannot be read)", nrx);
	std::vector<bool> used(nrx);
	uint16_t spread = 0;
	for (uint16_t i = 0; i < info.reta_size; i++) {
		const uint16_t q = reta[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
		if (q < nrx && !used[q]) {
			used[q] = true;
			spread++;
		}
	}
	return fmt::format(", a {}-entry redirection table over {} of {} queues{}", info.reta_size, spread, nrx,
			   spread < nrx ? " (the others get nothing: widen the table)" : "");
}

// Queue setup on the port's socket, then anywhere: without hugepages all
// of EAL's memory is on one socket, which need not be the port's.
void rx_queue(uint16_t port, uint16_t q, uint16_t desc, const rte_eth_rxconf &conf, rte_mempool *pool)
{
	int ret = rte_eth_rx_queue_setup(port, q, desc, rte_eth_dev_socket_id(port), &conf, pool);
	if (ret == -ENOMEM)
		ret = rte_eth_rx_queue_setup(port, q, desc, SOCKET_ID_ANY, &conf, pool);
	if (ret < 0)
		port_fail(port, fmt::format("RX queue {} setup", q).c_str(), ret);
}

void tx_queue(uint16_t port, uint16_t q, uint16_t desc, const rte_eth_txconf &conf)
{
	int ret = rte_eth_tx_queue_setup(port, q, desc, rte_eth_dev_socket_id(port), &conf);
	if (ret == -ENOMEM)
		ret = rte_eth_tx_queue_setup(port, q, desc, SOCKET_ID_ANY, &conf);
	if (ret < 0)
		port_fail(port, fmt::format("TX queue {} setup", q).c_str(), ret);
}

// Configures `port` with nrx RX and ntx TX queues (offloads from conf), at
// the descriptor counts it accepts nearest want_rxd/tx_desc, and starts it.
// between() runs after the configure, before the queues are set up (the
// TAP's MAC and MTU); rx_pool(q) is queue q's mempool.
template <typename PoolOf, typename Between>
void configure_and_start(uint16_t port, const rte_eth_dev_info &info, const rte_eth_conf &conf,
			 uint16_t nrx, uint16_t ntx, uint16_t want_rxd, PoolOf rx_pool, Between between)
{
	int ret = rte_eth_dev_configure(port, nrx, ntx, &conf);
	if (ret < 0)
		port_fail(port, "configure", ret);
	between();
	uint16_t nrxd = want_rxd, ntxd = tx_desc;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (ret < 0)
		port_fail(port, "descriptor counts", ret);
	rte_eth_rxconf rxconf = info.default_rxconf;
	rxconf.offloads = conf.rxmode.offloads;
	for (uint16_t q = 0; q < nrx; q++)
		rx_queue(port, q, nrxd, rxconf, rx_pool(q));
	rte_eth_txconf txconf = info.default_txconf;
	txconf.offloads = conf.txmode.offloads;
	for (uint16_t q = 0; q < ntx; q++)
		tx_queue(port, q, ntxd, txconf);
	ret = rte_eth_dev_start(port);
	if (ret < 0)
		port_fail(port, "start", ret);
}

// A kernel interface's MTU; 0 if it cannot be read.
uint32_t kernel_mtu(const std::string &ifname)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ifreq ifr;
	std::memset(&ifr, 0, sizeof(ifr));
	std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
	int ret = ioctl(fd, SIOCGIFMTU, &ifr);
	close(fd);
	return ret == 0 && ifr.ifr_mtu > 0 ? static_cast<uint32_t>(ifr.ifr_mtu) : 0;
}

} // namespace

port_layout find_ports(const options &o)
{
	port_layout l;
	std::vector<uint16_t> unused;
	uint16_t p;
	RTE_ETH_FOREACH_DEV(p)
	{
		const std::string name = port_name(p);
		const std::string driver = dev_info(p).driver_name;
		switch (o.mode) {
		case port_mode::pcap:
			if (name == "net_pcap0")
				l.data = p;
			else if (name == "net_pcap1")
				l.exception = p;
			break;
		case port_mode::iface:
			if (name == "net_af_packet0")
				l.data = p;
			break;
		case port_mode::eal:
			if (!o.tx_port.empty() && name == o.tx_port)
				l.tx = p;
			else if (driver == "net_tap" && l.exception == no_port)
				l.exception = p;
			else if (driver != "net_tap" && l.data == no_port)
				l.data = p;
			else
				unused.push_back(p);
			break;
		}
	}
	if (l.data == no_port) {
		if (o.mode == port_mode::eal)
			throw error("no DPDK port to drive: bind a NIC to vfio-pci with dpdk-devbind.py and "
				    "allow it with `-- -a PCI_ADDRESS`, or use --pcap or --iface");
		throw error("the {} port did not come up (see EAL's messages above)",
			    o.mode == port_mode::pcap ? "net_pcap" : "net_af_packet");
	}
	if (!o.tx_port.empty() && l.tx == no_port)
		throw error("--tx-port {}: no such ethdev (give it with --vdev or -a)", o.tx_port);
	if (o.mode == port_mode::pcap && l.exception == no_port)
		throw error("the exception pcap port (net_pcap1) did not come up");
	if (o.mode == port_mode::eal && l.exception == no_port)
		throw error("the exception TAP (net_tap) did not come up (see EAL's messages above)");
	l.tap = o.mode == port_mode::eal;
	l.data_name = o.mode == port_mode::iface ? o.iface : port_name(l.data);
	for (uint16_t u : unused)
		std::fprintf(stderr, "sluice-dpdk: port %u (%s) left unused: only the first port forwards\n",
			     u, port_name(u).c_str());
	return l;
}

rte_mempool *make_pool(const std::string &name, uint32_t mbufs, int socket, uint16_t data_room)
{
	rte_mempool *mp = rte_pktmbuf_pool_create(name.c_str(), mbufs, pool_cache, 0, data_room, socket);
	if (!mp && socket != SOCKET_ID_ANY)
		mp = rte_pktmbuf_pool_create(name.c_str(), mbufs, pool_cache, 0, data_room, SOCKET_ID_ANY);
	if (!mp)
		throw error("cannot create mbuf pool {} ({} mbufs): {}: give more memory (-m, or "
			    "hugepages)",
			    name, mbufs, rte_strerror(rte_errno));
	return mp;
}

data_port setup_data_port(const options &o, const port_layout &ports,
			  const std::vector<rte_mempool *> &rx_pools, bool extra_tx)
{
	const uint16_t port = ports.data;
	const rte_eth_dev_info info = dev_info(port);
	const uint16_t nrx = static_cast<uint16_t>(o.workers);
	// With a --tx-port the data port only receives.
	const uint16_t ntx = ports.tx != no_port ? 0 : static_cast<uint16_t>(o.workers + (extra_tx ? 1 : 0));
	if (nrx > info.max_rx_queues || ntx > info.max_tx_queues)
		throw error("port {} ({}): {} workers need {} RX and {} TX queues; it has {} and {}",
			    port, port_name(port), o.workers, nrx, ntx, info.max_rx_queues,
			    info.max_tx_queues);

	rte_eth_conf conf;
	std::memset(&conf, 0, sizeof(conf));
	const uint64_t rss_hf = info.flow_type_rss_offloads & rss_wanted;
	std::string rss;
	if (o.workers > 1 && rss_hf != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_key = nullptr; // the port's default key
		conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
		rss = fmt::format("RSS: {}", rss_text(rss_hf)); // the table's spread is added once started
	} else if (o.workers > 1 && std::strcmp(info.driver_name, "net_af_packet") == 0) {
		rss = fmt::format("RSS: not offered, the kernel's PACKET_FANOUT hash spreads {} queues", nrx);
	} else if (o.workers > 1 && std::strcmp(info.driver_name, "net_pcap") == 0) {
		rss = fmt::format("RSS: not offered, each of the {} queues reads its own rx_pcap file", nrx);
	} else if (o.workers > 1) {
		rss = fmt::format("RSS: not offered, {} queues but only queue 0 may receive", nrx);
	} else {
		rss = rss_hf ? "RSS: unused, 1 queue" : "RSS: not offered, 1 queue";
	}
	const bool cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
	if (cksum)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	configure_and_start(port, info, conf, nrx, ntx, rx_desc, [&](uint16_t q) { return rx_pools.at(q); },
			    [] {});

	if (conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS)
		rss += rss_spread(port, info, nrx);

	data_port d;
	d.params.tx_ipv4_cksum_offload = cksum;
	d.params.kernel_sees_rx = o.mode == port_mode::iface;
	int ret = rte_eth_macaddr_get(port, &d.params.port_mac);
	if (ret < 0)
		port_fail(port, "MAC address", ret);
	uint16_t mtu = 0;
	if (rte_eth_dev_get_mtu(port, &mtu) == 0 && mtu >= 1280)
		d.params.port_mtu = mtu; // else the default (1500)
	// af_packet: ethdev says 1500 whatever the interface has (its
	// max_rx_pktlen is fixed at 1518 in DPDK 22.11), but frames go through
	// the kernel at the interface's MTU, up to what a ring frame holds.
	std::string mtu_note;
	if (o.mode == port_mode::iface) {
		const uint32_t k = kernel_mtu(o.iface);
		if (k >= 1280) {
			d.params.port_mtu = std::min(k, af_packet_max_mtu);
			if (k > af_packet_max_mtu)
				mtu_note = fmt::format(" (of {}'s {}: an af_packet frame holds no more)", o.iface, k);
			else
				mtu_note = fmt::format(" ({}'s)", o.iface);
		}
	}
	d.main_txq = static_cast<uint16_t>(o.workers);
	d.af_packet = std::strcmp(info.driver_name, "net_af_packet") == 0;
	d.capabilities = fmt::format("port {} ({}, {}): {} rx/{} tx queue{}; {}; TX IPv4 checksum: {}; "
				     "MTU {}{}; MAC {}",
				     port, port_name(port), info.driver_name, nrx, ntx,
				     nrx > 1 || ntx > 1 ? "s" : "", rss, cksum ? "offload" : "software", d.params.port_mtu,
				     mtu_note, mac_text(d.params.port_mac));
	return d;
}

void setup_exception_port(const port_layout &ports, uint32_t workers, rte_mempool *rx_pool,
			  const data_port &data)
{
	const uint16_t port = ports.exception;
	const rte_eth_dev_info info = dev_info(port);
	// A TAP: one queue pair, the main lcore's (exception_relay). Anything
	// else (the --pcap exception file): a TX queue per worker.
	const uint16_t ntx = ports.tap ? 1 : static_cast<uint16_t>(workers);
	const uint16_t nrx = ports.tap ? 1 : 0;
	if (nrx > info.max_rx_queues || ntx > info.max_tx_queues)
		throw error("exception port {} ({}): needs {} RX and {} TX queues; it has {} and {}", port,
			    port_name(port), nrx, ntx, info.max_rx_queues, info.max_tx_queues);
	rte_eth_conf conf;
	std::memset(&conf, 0, sizeof(conf));
	configure_and_start(port, info, conf, nrx, ntx, tap_rx_desc, [&](uint16_t) { return rx_pool; }, [&] {
		if (!ports.tap)
			return;
		// The kernel drops frames not addressed to its interface's MAC and
		// must answer ARP with the NIC's: the TAP takes the NIC's identity.
		rte_ether_addr mac = data.params.port_mac;
		int ret = rte_eth_dev_default_mac_addr_set(port, &mac);
		if (ret < 0)
			port_fail(port, "set the TAP's MAC to the port's", ret);
		ret = rte_eth_dev_set_mtu(port, static_cast<uint16_t>(data.params.port_mtu));
		if (ret < 0)
			port_fail(port, "set the TAP's MTU to the port's", ret);
	});
}

void setup_tx_port(const options &o, const port_layout &ports, data_port &data)
{
	const uint16_t port = ports.tx;
	const rte_eth_dev_info info = dev_info(port);
	// One per worker, and the main lcore's for the TAP relay.
	const uint16_t ntx = static_cast<uint16_t>(o.workers + (ports.tap ? 1 : 0));
	if (ntx > info.max_tx_queues)
		throw error("--tx-port {}: {} workers need {} TX queues; it has {}", o.tx_port, o.workers,
			    ntx, info.max_tx_queues);
	rte_eth_conf conf;
	std::memset(&conf, 0, sizeof(conf));
	const bool cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
	if (cksum)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	configure_and_start(port, info, conf, 0, ntx, rx_desc, [](uint16_t) -> rte_mempool * { return nullptr; },
			    [] {});
	data.params.tx_ipv4_cksum_offload = cksum;
	data.capabilities += fmt::format("; forwarded traffic out of port {} ({}, {}): {} tx queue{}, "
					 "TX IPv4 checksum: {}",
					 port, port_name(port), info.driver_name, ntx, ntx > 1 ? "s" : "",
					 cksum ? "offload" : "software");
}

void close_port(uint16_t port)
{
	if (port == no_port || !rte_eth_dev_is_valid_port(port))
		return;
	int ret = rte_eth_dev_stop(port);
	if (ret < 0)
		std::fprintf(stderr, "sluice-dpdk: port %u (%s): stop: %s\n", port, port_name(port).c_str(),
			     rte_strerror(-ret));
	ret = rte_eth_dev_close(port);
	if (ret < 0)
		std::fprintf(stderr, "sluice-dpdk: port %u: close: %s\n", port, rte_strerror(-ret));
}

} // namespace sluice
