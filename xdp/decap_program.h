// SPDX-License-Identifier: Apache-2.0
// The backend-side decap program (decap.bpf.c) as sluice-decap holds it:
// its skeleton opened, configured and loaded, owned in RAII.
#pragma once

#include <cstdint>

struct decap_bpf;

namespace sluice::xdp {

class decap_program {
public:
	// gue_port 0: GUE is not opened. check_inner: only tunnels whose inner
	// destination is in sl_dc_vips. check_source: only tunnels whose outer
	// source is in sl_dc_from. Throws sluice::error with one line.
	static decap_program load(uint16_t gue_port, bool check_inner, bool check_source = false);

	decap_program() = default;
	decap_program(decap_program &&other) noexcept;
	decap_program &operator=(decap_program &&other) noexcept;
	decap_program(const decap_program &) = delete;
	decap_program &operator=(const decap_program &) = delete;
	~decap_program();

	decap_bpf *skel() const { return skel_; }
	int prog_fd() const;

private:
	decap_bpf *skel_ = nullptr;
};

} // namespace sluice::xdp
