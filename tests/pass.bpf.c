// SPDX-License-Identifier: GPL-2.0
/* Attached to the far side of a veth so that frames redirected into the
 * veth are received (veth runs NAPI for a peer with an XDP program). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int lg_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
