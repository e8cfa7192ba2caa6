// SPDX-License-Identifier: GPL-2.0
/*
 * linkgate-bench's harness around a measured XDP program. BPF_PROG_TEST_RUN
 * with repeat runs the program again and again on the same buffer, so what
 * one iteration writes (TTL, MACs, DNAT) is what the next one reads: the
 * second ACK of a DNAT'ed flow would no longer match its flow, and after 63
 * iterations every frame would be ttl-exceeded. lg_bench_restore writes the
 * original frame back, then tail-calls the measured program; lg_bench_nop as
 * the target measures the restore and the tail call, which the tool
 * subtracts (docs/xdp-performance.md).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define LG_BENCH_FRAME_MAX 256

struct lg_bench_frame {
	__u32 len;
	__u8 data[LG_BENCH_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lg_bench_frame);
} lg_bench_frame SEC(".maps");

/* Slot 0: the program under measurement. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lg_bench_progs SEC(".maps");

SEC("xdp")
int lg_bench_restore(struct xdp_md *ctx)
{
	struct lg_bench_frame *f;
	__u32 z = 0, len;

	f = bpf_map_lookup_elem(&lg_bench_frame, &z);
	if (!f)
		return XDP_ABORTED;
	len = f->len;
	if (len < 1 || len > LG_BENCH_FRAME_MAX)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, f->data, len))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &lg_bench_progs, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int lg_bench_nop(struct xdp_md *ctx)
{
	return XDP_DROP;
}
