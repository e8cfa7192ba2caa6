// SPDX-License-Identifier: GPL-2.0
/*
 * linkgate-bench's traffic programs (docs/benchmarks.md):
 *
 * - lg_gen: the in-kernel generator. Run with BPF_PROG_TEST_RUN and
 *   BPF_F_TEST_XDP_LIVE_FRAMES on a template IPv4/TCP frame; every
 *   iteration stamps the frame with flow number f (source address
 *   gen_src_base + f / LG_GEN_PORTS, source port 1024 + f % LG_GEN_PORTS),
 *   fixes the IP checksum and redirects it out of gen_ifindex, a veth whose
 *   peer is the device under test. f cycles over gen_flows flows
 *   (established-heavy), always takes a new value (new-flow heavy), or
 *   alternates (mix); new flows carry SYN, the others ACK.
 * - lg_sink: counts, stamps and drops, on the far end of the path.
 * - lg_pass: XDP_PASS, so that a veth without another program runs NAPI
 *   (XDP_REDIRECT into a veth needs it) and hands frames to the kernel.
 * - lg_lru: the baseline of new flows per second: one insert of a key
 *   and a value of lg_flow_key's and lg_flow_entry's sizes (44 and 168
 *   bytes; the value was 96 bytes until 2026-11-29 and 152 until
 *   2026-11-30, the entry's size then) into an LRU hash, then lg_bare's
 *   forwarding (fib lookup, TTL, MACs, redirect).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lg_flow.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define LG_GEN_PORTS 60000
#define LG_GEN_CYCLE 0
#define LG_GEN_NEW 1
#define LG_GEN_MIX 2

__u32 gen_ifindex = 0;
__u32 gen_mode = 0;
__u64 gen_flows = 0;
__u64 gen_next = 0;     /* next packet number */
__u64 gen_new_base = 0; /* flow numbers of new flows start here */
__u64 gen_new_next = 0; /* new flows made so far */
__u32 gen_src_base = 0; /* host order */
/* Ethernet + IPv4 + TCP headers of the template, written back every time:
 * live-frame pages are recycled with what the path under test wrote into
 * them (MACs, TTL, DNAT). */
__u8 gen_hdr[56] = {};

static __always_inline __u16 ip_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 s = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

SEC("xdp")
int lg_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u64 i = gen_next++, f;
	int is_new;

	if ((void *)(tcp + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, gen_hdr, 54);
	is_new = gen_mode == LG_GEN_NEW || (gen_mode == LG_GEN_MIX && (i & 1));
	if (is_new)
		f = gen_new_base + gen_new_next++;
	else
		f = gen_flows ? i % gen_flows : 0;
	ip->saddr = bpf_htonl(gen_src_base + (__u32)(f / LG_GEN_PORTS));
	ip->check = 0;
	ip->check = ip_csum(ip);
	tcp->source = bpf_htons((__u16)(1024 + f % LG_GEN_PORTS));
	tcp->syn = is_new ? 1 : 0;
	tcp->ack = is_new ? 0 : 1;
	return bpf_redirect(gen_ifindex, 0);
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_cnt SEC(".maps");

/* Arrival time of the first and the last counted frame: the rate is taken
 * over that window, which leaves out the test run's own set-up and
 * tear-down (tens of ms per call on this kernel). */
__u64 sink_first = 0, sink_last = 0;

SEC("xdp")
int lg_sink(struct xdp_md *ctx)
{
	__u32 z = 0;
	__u64 *c = bpf_map_lookup_elem(&sink_cnt, &z);
	__u64 t = bpf_ktime_get_ns();

	if (c)
		*c += 1;
	if (!sink_first)
		sink_first = t;
	sink_last = t;
	return XDP_DROP;
}

SEC("xdp")
int lg_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

struct lru_key {
	__u32 vni;
	__u8 family, proto;
	__u16 pad;
	__u8 src[16], dst[16];
	__u16 sport, dport;
};

/* The baseline's key and value are the flow table's own sizes. */
_Static_assert(sizeof(struct lru_key) == sizeof(struct lg_flow_key), "lg_flow_key size");
struct lru_val {
	__u64 w[sizeof(struct lg_flow_entry) / 8];
};
_Static_assert(sizeof(struct lru_val) == sizeof(struct lg_flow_entry), "lg_flow_entry size");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024); /* set before load */
	__type(key, struct lru_key);
	__type(value, struct lru_val);
} lru_flows SEC(".maps");

SEC("xdp")
int lg_lru(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup f = {};
	struct ethhdr *eth = data;
	struct iphdr *ip4 = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip4 + 1);
	struct lru_key k = {};
	struct lru_val v = {};
	int rc;

	if ((void *)(tcp + 1) > end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip4->ttl <= 1)
		return XDP_PASS;
	k.family = 4;
	k.proto = ip4->protocol;
	k.src[10] = k.src[11] = 0xff;
	k.dst[10] = k.dst[11] = 0xff;
	__builtin_memcpy(&k.src[12], &ip4->saddr, 4);
	__builtin_memcpy(&k.dst[12], &ip4->daddr, 4);
	k.sport = tcp->source;
	k.dport = tcp->dest;
	v.w[0] = bpf_ktime_get_ns();
	bpf_map_update_elem(&lru_flows, &k, &v, BPF_NOEXIST);

	f.family = AF_INET;
	f.l4_protocol = ip4->protocol;
	f.ipv4_src = ip4->saddr;
	f.ipv4_dst = ip4->daddr;
	f.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &f, sizeof(f), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > end)
		return XDP_DROP;
	{
		__u32 c = ip4->check;

		c += bpf_htons(0x0100);
		ip4->check = (__u16)(c + (c >= 0xffff));
		ip4->ttl--;
	}
	__builtin_memcpy(eth->h_dest, f.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, f.smac, ETH_ALEN);
	return bpf_redirect(f.ifindex, 0);
}
