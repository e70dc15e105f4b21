// SPDX-License-Identifier: Apache-2.0
/*
 * XDP_PASS and nothing else. A veth delivers the frames its peer sends back
 * with XDP_TX only when it runs an XDP program itself (docs/testing.md):
 * tests put this on the far side of the LB's veth, as an operator would on a
 * veth in front of sluice-xdp. Loaded with `ip link set dev IF xdp obj
 * pass.bpf.o sec xdp`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int sluice_pass(struct xdp_md *xdp)
{
	(void)xdp;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
