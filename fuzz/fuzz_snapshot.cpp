// SPDX-License-Identifier: Apache-2.0
// libFuzzer: sluice-xdp's checks of a snapshot over arbitrary bytes, as a
// corrupt or hostile segment would hand them over: the header checks, then
// the copy's checksum and tables. The input is the snapshot's header, then
// its body from the node on (zero past the input), then its rings.
#include "snapshot_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

using namespace sluice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	constexpr uint32_t ring_entries = 1u << 16;
	static auto bank = std::make_unique<sluice_xdp_bank>();
	static auto rings = std::make_unique<uint32_t[]>(ring_entries);
	sluice_snapshot_header hd;
	std::memset(&hd, 0, sizeof(hd));
	std::memcpy(&hd, data, std::min(size, sizeof(hd)));
	std::string why;
	if (xdp::check_header(hd, ring_entries, 0, &why) != SLUICE_REFUSED_NONE)
		return 0;
	std::memset(static_cast<void *>(bank.get()), 0, sizeof(*bank));
	const size_t body = sizeof(*bank) - sizeof(hd);
	const size_t rest = size > sizeof(hd) ? size - sizeof(hd) : 0;
	std::memcpy(reinterpret_cast<uint8_t *>(bank.get()) + sizeof(hd), data + sizeof(hd), std::min(rest, body));
	bank->hdr = hd;
	std::memset(rings.get(), 0, sizeof(uint32_t) * hd.ring_used);
	if (rest > body)
		std::memcpy(rings.get(), data + sizeof(hd) + body,
			    std::min<size_t>(rest - body, sizeof(uint32_t) * hd.ring_used));
	// Make the checksum right half the time, so the table checks run too.
	if (size && (data[0] & 1))
		bank->hdr.checksum = hd.checksum = sluice_snapshot_checksum_parts(&hd, &bank->node, rings.get());
	xdp::check_bank(hd, *bank, rings.get(), &why);
	return 0;
}
