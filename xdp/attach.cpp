// SPDX-License-Identifier: Apache-2.0
#include "attach.h"

#include "error.h"
#include "sys.h"
#include "unique_fd.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sluice::xdp {

namespace {

std::string prog_name_of(uint32_t id)
{
	unique_fd fd{bpf_prog_get_fd_by_id(id)};
	if (fd.fd < 0)
		return "";
	bpf_prog_info info;
	std::memset(&info, 0, sizeof(info));
	uint32_t len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd.fd, &info, &len) != 0)
		return "";
	return info.name;
}

uint32_t prog_id_of(int fd)
{
	bpf_prog_info info;
	std::memset(&info, 0, sizeof(info));
	uint32_t len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
		return 0;
	return info.id;
}

struct attached_now {
	uint32_t id = 0;
	uint32_t flags = 0; // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
};

attached_now query(int ifindex, const std::string &iface)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	int err = bpf_xdp_query(ifindex, 0, &q);
	if (err)
		throw error("{}: querying its XDP programs: {}", iface, errno_text(err));
	if (q.drv_prog_id)
		return {q.drv_prog_id, XDP_FLAGS_DRV_MODE};
	if (q.skb_prog_id)
		return {q.skb_prog_id, XDP_FLAGS_SKB_MODE};
	if (q.hw_prog_id)
		return {q.hw_prog_id, XDP_FLAGS_HW_MODE};
	return {};
}

} // namespace

attach_mode parse_attach_mode(const std::string &mode)
{
	if (mode.empty())
		return attach_mode::automatic;
	if (mode == "native")
		return attach_mode::native;
	if (mode == "generic")
		return attach_mode::generic;
	throw error("--mode '{}': native or generic", mode);
}

iface_info query_iface(const std::string &iface)
{
	iface_info info;
	if (iface.empty() || iface.size() >= IFNAMSIZ)
		throw error("--iface '{}': not an interface name", iface);
	info.ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
	if (info.ifindex == 0)
		throw error("--iface {}: no such interface in this network namespace", iface);
	unique_fd s{socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
	if (s.fd < 0)
		throw error("--iface {}: socket: {}", iface, errno_text(errno));
	ifreq ifr;
	std::memset(&ifr, 0, sizeof(ifr));
	std::memcpy(ifr.ifr_name, iface.c_str(), iface.size());
	if (ioctl(s.fd, SIOCGIFHWADDR, &ifr) != 0)
		throw error("--iface {}: reading its MAC: {}", iface, errno_text(errno));
	std::memcpy(info.mac.data(), ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(s.fd, SIOCGIFMTU, &ifr) != 0)
		throw error("--iface {}: reading its MTU: {}", iface, errno_text(errno));
	info.mtu = static_cast<uint32_t>(ifr.ifr_mtu);
	return info;
}

attachment attachment::attach(const std::string &iface, int prog_fd, const std::string &prog_name,
			      attach_mode mode)
{
	const iface_info ii = query_iface(iface);
	attachment a;
	a.iface_ = iface;
	a.ifindex_ = ii.ifindex;
	a.prog_fd_ = fcntl(prog_fd, F_DUPFD_CLOEXEC, 0);
	if (a.prog_fd_ < 0)
		throw error("dup: {}", errno_text(errno));
	a.prog_id_ = prog_id_of(a.prog_fd_);

	const uint32_t want = mode == attach_mode::generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
	const attached_now old = query(ii.ifindex, iface);
	if (old.id) {
		const std::string name = prog_name_of(old.id);
		if (name != prog_name)
			throw error("{} already runs XDP program '{}' (id {}), not sluice's: detach it first "
				    "(ip link set dev {} xdp off)",
				    iface, name, old.id, iface);
		if (old.flags == want || (mode == attach_mode::automatic && old.flags == XDP_FLAGS_SKB_MODE)) {
			// Same mode: swap in place, nothing reaches the kernel in between.
			unique_fd old_fd{bpf_prog_get_fd_by_id(old.id)};
			LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old_fd.fd);
			int err = bpf_xdp_attach(ii.ifindex, a.prog_fd_, old.flags | XDP_FLAGS_REPLACE, &opts);
			if (err)
				throw error("{}: replacing the sluice program (id {}) a previous run left "
					    "attached: {}",
					    iface, old.id, errno_text(err));
			a.generic_ = old.flags == XDP_FLAGS_SKB_MODE;
			a.replaced_id_ = old.id;
			spdlog::info("{}: replaced the sluice XDP program (id {}) a previous run left attached",
				     iface, old.id);
			return a;
		}
		// Another mode: native and generic cannot both be attached.
		bpf_xdp_detach(ii.ifindex, old.flags, nullptr);
		spdlog::info("{}: detached the sluice XDP program (id {}) a previous run left in "
			     "another mode",
			     iface, old.id);
	}

	int err = bpf_xdp_attach(ii.ifindex, a.prog_fd_, want | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
	if (err && mode == attach_mode::automatic) {
		spdlog::warn("{}: the driver refuses native XDP ({}): attaching in generic mode, which "
			     "is slower",
			     iface, errno_text(err));
		err = bpf_xdp_attach(ii.ifindex, a.prog_fd_, XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST,
				     nullptr);
		a.generic_ = true;
	} else {
		a.generic_ = want == XDP_FLAGS_SKB_MODE;
	}
	if (err)
		throw error("{}: attaching the XDP program in {} mode: {}{}", iface,
			    a.generic_ ? "generic" : "native", errno_text(err),
			    err == -EBUSY || err == -EEXIST ? " (another XDP program is attached)" : "");
	return a;
}

attachment::attachment(attachment &&other) noexcept
	: iface_(std::move(other.iface_)), ifindex_(other.ifindex_),
	  prog_fd_(std::exchange(other.prog_fd_, -1)), prog_id_(other.prog_id_),
	  replaced_id_(other.replaced_id_), generic_(other.generic_)
{
}

attachment &attachment::operator=(attachment &&other) noexcept
{
	if (this != &other) {
		detach();
		iface_ = std::move(other.iface_);
		ifindex_ = other.ifindex_;
		prog_fd_ = std::exchange(other.prog_fd_, -1);
		prog_id_ = other.prog_id_;
		replaced_id_ = other.replaced_id_;
		generic_ = other.generic_;
	}
	return *this;
}

void attachment::detach()
{
	if (prog_fd_ < 0)
		return;
	// REPLACE with our fd as the old one: if someone swapped the program
	// meanwhile (a newer sluice-xdp), theirs stays.
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = prog_fd_);
	uint32_t flags = (generic_ ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE) | XDP_FLAGS_REPLACE;
	int err = bpf_xdp_detach(ifindex_, flags, &opts);
	if (err && err != -EEXIST && err != -ENODEV)
		spdlog::warn("{}: detaching the XDP program: {}", iface_, errno_text(err));
	close(prog_fd_);
	prog_fd_ = -1;
}

void attachment::leave_attached()
{
	// The interface holds its own reference to the program, and the
	// program to its maps: closing our fd frees nothing that forwards.
	if (prog_fd_ >= 0)
		close(prog_fd_);
	prog_fd_ = -1;
}

uint32_t attached_id(const std::string &iface, const std::string &prog_name)
{
	const iface_info ii = query_iface(iface);
	const attached_now now = query(ii.ifindex, iface);
	return now.id && prog_name_of(now.id) == prog_name ? now.id : 0;
}

bool detach_named(const std::string &iface, const std::string &prog_name)
{
	const iface_info ii = query_iface(iface);
	const attached_now old = query(ii.ifindex, iface);
	if (!old.id || prog_name_of(old.id) != prog_name)
		return false;
	int err = bpf_xdp_detach(ii.ifindex, old.flags, nullptr);
	if (err)
		throw error("{}: detaching XDP program {}: {}", iface, old.id, errno_text(err));
	return true;
}

} // namespace sluice::xdp
