// SPDX-License-Identifier: GPL-2.0
/*
 * linkgate XDP dataplane. This first cut parses Ethernet and up to two VLAN
 * tags (SPEC §3 step 1), counts every packet under its drop reason, and hands
 * everything else to the host; the full decision lands with the XDP issue.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lg_limits.h"
#include "lg_reasons.h"

char LICENSE[] SEC("license") = "GPL";

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Packets per reason (index LG_REASON_NONE counts packets not dropped). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_REASON__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lg_reason_cnt SEC(".maps");

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&lg_reason_cnt, &reason);

	if (c)
		*c += 1;
}

SEC("xdp")
int lg_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cur = eth + 1;
	__u16 proto;
	int i;

	if (cur > end) {
		count(LG_REASON_MALFORMED);
		return XDP_DROP;
	}
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i <= LG_MAX_VLAN_DEPTH; i++) {
		struct vlan_hdr *vh = cur;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (i == LG_MAX_VLAN_DEPTH) {
			count(LG_REASON_VLAN_DEPTH);
			return XDP_DROP;
		}
		if ((void *)(vh + 1) > end) {
			count(LG_REASON_MALFORMED);
			return XDP_DROP;
		}
		proto = vh->proto;
		cur = vh + 1;
	}
	count(LG_REASON_NONE);
	return XDP_PASS;
}
