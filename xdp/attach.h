// SPDX-License-Identifier: Apache-2.0
// Attaching an XDP program to an interface, in RAII: native mode, or generic
// mode on request or when the driver refuses native; detached on
// destruction if the interface still runs it.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace sluice::xdp {

enum class attach_mode {
	automatic, // native, else generic (saying so)
	native,    // native or fail
	generic,   // generic (skb) mode
};

// --mode's value: "" (automatic), native or generic; anything else throws
// sluice::error naming the flag.
attach_mode parse_attach_mode(const std::string &mode);

struct iface_info {
	int ifindex = 0;
	std::array<uint8_t, 6> mac{};
	uint32_t mtu = 0;
};

// Throws sluice::error ("no interface IF") when it does not exist.
iface_info query_iface(const std::string &iface);

class attachment {
public:
	// Attaches prog_fd (whose program is named prog_name) to iface. A program
	// of the same name already attached (a previous run that did not stop
	// cleanly) is replaced in place, so its traffic never goes to the kernel
	// in between; any other program is left alone and is an error.
	static attachment attach(const std::string &iface, int prog_fd, const std::string &prog_name,
				 attach_mode mode);

	attachment() = default;
	attachment(attachment &&other) noexcept;
	attachment &operator=(attachment &&other) noexcept;
	attachment(const attachment &) = delete;
	attachment &operator=(const attachment &) = delete;
	~attachment() { detach(); }

	void detach(); // only if the interface still runs our program
	// Lets go of the program without detaching it: the interface goes on
	// running it (with the maps it holds) until the next sluice-xdp
	// replaces it in place. For --keep-attached stops.
	void leave_attached();
	bool generic() const { return generic_; }
	uint32_t prog_id() const { return prog_id_; }
	// The id of the sluice program this attach replaced in place, 0 if none.
	uint32_t replaced_id() const { return replaced_id_; }

private:
	std::string iface_;
	int ifindex_ = 0;
	int prog_fd_ = -1;
	uint32_t prog_id_ = 0;
	uint32_t replaced_id_ = 0;
	bool generic_ = false;
};

// The id of the program named prog_name attached to iface (any mode), 0 if
// none is.
uint32_t attached_id(const std::string &iface, const std::string &prog_name);

// Detaches the program named prog_name from iface if it runs one (any mode).
// Returns whether it did. For `sluice-xdp --unpin` and `--detach`.
bool detach_named(const std::string &iface, const std::string &prog_name);

} // namespace sluice::xdp
