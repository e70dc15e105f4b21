// SPDX-License-Identifier: Apache-2.0
#include "neighbor.h"

#include "error.h"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace sluice {

namespace {

class netlink_socket {
public:
	netlink_socket()
	{
		fd_ = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
		if (fd_ < 0)
			throw error("netlink: {}", std::strerror(errno));
		timeval tv{1, 0};
		::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	~netlink_socket() { ::close(fd_); }

	// Sends one request and calls `each` for every message of the answer.
	template <typename F> void request(nlmsghdr *req, F each)
	{
		req->nlmsg_seq = ++seq_;
		if (::send(fd_, req, req->nlmsg_len, 0) < 0)
			throw error("netlink send: {}", std::strerror(errno));
		std::vector<char> buf(1 << 16);
		for (;;) {
			ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
			if (n < 0)
				throw error("netlink recv: {}", std::strerror(errno));
			int len = static_cast<int>(n);
			for (auto *h = reinterpret_cast<nlmsghdr *>(buf.data()); NLMSG_OK(h, len);
			     h = NLMSG_NEXT(h, len)) {
				if (h->nlmsg_seq != seq_)
					continue;
				if (h->nlmsg_type == NLMSG_DONE)
					return;
				if (h->nlmsg_type == NLMSG_ERROR) {
					auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(h));
					if (e->error == 0)
						return;
					throw error("{}", std::strerror(-e->error));
				}
				each(h);
				if (!(h->nlmsg_flags & NLM_F_MULTI))
					return;
			}
		}
	}

private:
	int fd_ = -1;
	uint32_t seq_ = 0;
};

int af_of(const ip_address &a)
{
	return a.is_v6() ? AF_INET6 : AF_INET;
}

size_t addr_len(const ip_address &a)
{
	return a.is_v6() ? 16 : 4;
}

} // namespace

next_hop resolve_next_hop(const ip_address &dst)
{
	netlink_socket nl;
	next_hop hop;
	hop.via = dst;

	struct {
		nlmsghdr h;
		rtmsg r;
		char attrs[64];
	} req{};
	req.h.nlmsg_type = RTM_GETROUTE;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.r.rtm_family = static_cast<unsigned char>(af_of(dst));
	req.r.rtm_dst_len = static_cast<unsigned char>(addr_len(dst) * 8);
	auto *rta = reinterpret_cast<rtattr *>(req.attrs);
	rta->rta_type = RTA_DST;
	rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(addr_len(dst)));
	std::memcpy(RTA_DATA(rta), dst.bytes.data(), addr_len(dst));
	req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(rtmsg)) + RTA_ALIGN(rta->rta_len));
	try {
		nl.request(&req.h, [&](nlmsghdr *h) {
			if (h->nlmsg_type != RTM_NEWROUTE)
				return;
			auto *r = static_cast<rtmsg *>(NLMSG_DATA(h));
			int len = static_cast<int>(RTM_PAYLOAD(h));
			for (auto *a = RTM_RTA(r); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type == RTA_OIF)
					std::memcpy(&hop.ifindex, RTA_DATA(a), sizeof(int));
				else if (a->rta_type == RTA_GATEWAY &&
					 RTA_PAYLOAD(a) == addr_len(dst))
					std::memcpy(hop.via.bytes.data(), RTA_DATA(a), addr_len(dst));
			}
		});
	} catch (const error &e) {
		throw error("no route to {}: {}", dst.str(), e.what());
	}
	if (hop.ifindex == 0)
		throw error("no route to {}", dst.str());

	struct {
		nlmsghdr h;
		ndmsg n;
	} nreq{};
	nreq.h.nlmsg_len = NLMSG_LENGTH(sizeof(ndmsg));
	nreq.h.nlmsg_type = RTM_GETNEIGH;
	nreq.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nreq.n.ndm_family = static_cast<unsigned char>(af_of(dst));
	nl.request(&nreq.h, [&](nlmsghdr *h) {
		if (h->nlmsg_type != RTM_NEWNEIGH || hop.mac)
			return;
		auto *n = static_cast<ndmsg *>(NLMSG_DATA(h));
		// A failed or incomplete entry has no usable address.
		if (n->ndm_ifindex != hop.ifindex ||
		    !(n->ndm_state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT |
				      NUD_NOARP)))
			return;
		int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*n)));
		bool match = false;
		std::optional<mac_address> mac;
		for (auto *a = reinterpret_cast<rtattr *>(reinterpret_cast<char *>(n) + NLMSG_ALIGN(sizeof(*n)));
		     RTA_OK(a, len); a = RTA_NEXT(a, len)) {
			if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == addr_len(dst))
				match = std::memcmp(RTA_DATA(a), hop.via.bytes.data(), addr_len(dst)) == 0;
			else if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6) {
				mac_address m;
				std::memcpy(m.bytes.data(), RTA_DATA(a), 6);
				mac = m;
			}
		}
		if (match && mac)
			hop.mac = mac;
	});
	return hop;
}

void poke_neighbor(const ip_address &via, int ifindex)
{
	// RTM_NEWNEIGH with NTF_USE makes the kernel resolve the neighbour as if
	// a packet were waiting for it: an ARP request or neighbour
	// solicitation on that link, and no packet to the host itself.
	struct {
		nlmsghdr h;
		ndmsg n;
		char attrs[32];
	} req{};
	req.h.nlmsg_type = RTM_NEWNEIGH;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
	req.n.ndm_family = static_cast<unsigned char>(af_of(via));
	req.n.ndm_ifindex = ifindex;
	req.n.ndm_state = NUD_NONE;
	req.n.ndm_flags = NTF_USE;
	auto *rta = reinterpret_cast<rtattr *>(req.attrs);
	rta->rta_type = NDA_DST;
	rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(addr_len(via)));
	std::memcpy(RTA_DATA(rta), via.bytes.data(), addr_len(via));
	req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(ndmsg)) + RTA_ALIGN(rta->rta_len));
	try {
		netlink_socket nl;
		nl.request(&req.h, [](nlmsghdr *) {});
	} catch (const error &) {
		// The next lookup tells whether it worked.
	}
}

} // namespace sluice
