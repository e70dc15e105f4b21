// SPDX-License-Identifier: Apache-2.0
#include "decap_program.h"

#include "error.h"
#include "libbpf_log.h"
#include "sys.h"

#include "decap.h"
#include "decap.skel.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <utility>

namespace sluice::xdp {

decap_program decap_program::load(uint16_t gue_port, bool check_inner, bool check_source)
{
	decap_program p;
	p.skel_ = decap_bpf__open();
	if (!p.skel_)
		throw error("opening the decap program: {}", errno_text(errno));
	p.skel_->rodata->cfg_gue_port_be = __builtin_bswap16(gue_port);
	p.skel_->rodata->cfg_check_inner = check_inner ? 1 : 0;
	p.skel_->rodata->cfg_check_source = check_source ? 1 : 0;
	int err = decap_bpf__load(p.skel_);
	if (err)
		throw error(load_failure("the decap program", err));
	return p;
}

decap_program::decap_program(decap_program &&other) noexcept
	: skel_(std::exchange(other.skel_, nullptr))
{
}

decap_program &decap_program::operator=(decap_program &&other) noexcept
{
	if (this != &other) {
		if (skel_)
			decap_bpf__destroy(skel_);
		skel_ = std::exchange(other.skel_, nullptr);
	}
	return *this;
}

decap_program::~decap_program()
{
	if (skel_)
		decap_bpf__destroy(skel_);
}

int decap_program::prog_fd() const { return bpf_program__fd(skel_->progs.sluice_decap); }

} // namespace sluice::xdp
