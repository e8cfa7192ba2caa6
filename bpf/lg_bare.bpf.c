// SPDX-License-Identifier: GPL-2.0
/*
 * The baseline of linkgate-bench (docs/xdp-performance.md): the least a
 * forwarding XDP program must do per frame. Ethernet, IPv4/IPv6 by direct
 * packet access, bpf_fib_lookup, TTL/hop limit, MACs, bpf_redirect. No
 * policy, no flows, no counters. Anything it cannot forward goes to the host.
 * bpf_fib_lookup gets the same arguments as lg_xdp's lg_route (tot_len 0,
 * flags 0), so both pay for the same lookup.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

SEC("xdp")
int lg_bare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup f = {};
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	struct iphdr *ip4;
	__u16 proto;
	int rc;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_IP)) {
		ip4 = (void *)(eth + 1);
		if ((void *)(ip4 + 1) > end)
			return XDP_DROP;
		if (ip4->ttl <= 1)
			return XDP_PASS;
		f.family = AF_INET;
		f.l4_protocol = ip4->protocol;
		f.ipv4_src = ip4->saddr;
		f.ipv4_dst = ip4->daddr;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return XDP_DROP;
		if (ip6->hop_limit <= 1)
			return XDP_PASS;
		f.family = AF_INET6;
		f.l4_protocol = ip6->nexthdr;
		__builtin_memcpy(f.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(f.ipv6_dst, &ip6->daddr, 16);
	} else {
		return XDP_PASS;
	}
	f.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &f, sizeof(f), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS; /* the host resolves or refuses */
	/* Packet pointers are re-derived: the verifier does not track a
	 * packet pointer that may be NULL. */
	if (f.family == AF_INET) {
		ip4 = (void *)(eth + 1);
		if ((void *)(ip4 + 1) > end)
			return XDP_DROP;
		/* RFC 1624 incremental update for TTL - 1 (the TTL is the high byte). */
		__u32 c = ip4->check;

		c += bpf_htons(0x0100);
		ip4->check = (__u16)(c + (c >= 0xffff));
		ip4->ttl--;
	} else {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return XDP_DROP;
		ip6->hop_limit--;
	}
	__builtin_memcpy(eth->h_dest, f.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, f.smac, ETH_ALEN);
	return bpf_redirect(f.ifindex, 0);
}
