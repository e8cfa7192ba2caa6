/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The XDP program's C source (bpf/lg_xdp.bpf.c and its .bpf.h files) built
 * as a plain function for the DPDK fast path: the verifier-checked decision
 * is the one code both dataplanes run (docs/dpdk.md). This header is the
 * boundary: BPF helpers and maps become calls into C++ (dataplane/umaps.*,
 * dataplane/engine.*) through the small interface below.
 */
#ifndef LG_HOST_H
#define LG_HOST_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A map as the program sees it: every map pointer (a global map variable or
 * an inner map from an outer lookup) points at a word holding its lg_umap. */
struct lg_umap;
struct lg_umap_ops {
	void *(*lookup)(struct lg_umap *m, const void *key);
	long (*update)(struct lg_umap *m, const void *key, const void *val, __u64 flags);
	long (*del)(struct lg_umap *m, const void *key);
};
/* Arrays and per-CPU arrays (LG_UMAP_INLINE) are also described by their
 * layout, so that bpf_helpers.h answers their lookups inline (tens a
 * packet: scratch(), counters, lg_active) instead of through ops->lookup:
 * entry i of CPU c is at base + c * cpu_stride + i * value_size, i < n
 * (cpu_stride 0: one copy, an ARRAY). Other maps: kind LG_UMAP_OPS. */
enum { LG_UMAP_OPS = 0, LG_UMAP_INLINE = 1 };
struct lg_umap {
	const struct lg_umap_ops *ops;
	__u32 kind;
	__u32 n;
	__u8 *base;
	__u64 value_size;
	__u64 cpu_stride;
};

/* The flow pre-lookup's answer for the frame being decided (engine.cpp,
 * BurstHints in umaps.hpp): while map is set, a lookup of map with a key
 * equal to key (key_size bytes) is answered val (NULL: no such key) by
 * bpf_helpers.h without a call. Set per frame and cleared by the C++ side
 * (also when this thread inserts or deletes that key). */
struct lg_host_hint {
	struct lg_umap *map;
	const void *key;
	void *val;
	__u32 key_size;
	__u32 hits; /* lookups answered, collected per burst */
};

/* Equal keys of n bytes, a word at a time (flow keys: 44 bytes): the host
 * map lookups (bpf_helpers.h) and the flow table (umaps.cpp) compare with it. */
static inline int lg_host_key_eq(const void *a, const void *b, __u32 n)
{
	const __u8 *x = (const __u8 *)a, *y = (const __u8 *)b;
	__u64 d = 0, u, v;
	__u32 i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&u, x + i, 8);
		memcpy(&v, y + i, 8);
		d |= u ^ v;
	}
	if (i + 4 <= n) {
		__u32 u4, v4;

		memcpy(&u4, x + i, 4);
		memcpy(&v4, y + i, 4);
		d |= u4 ^ v4;
		i += 4;
	}
	for (; i < n; i++)
		d |= (__u64)(x[i] ^ y[i]);
	return d == 0;
}

/* One frame. The program reads md.ingress_ifindex; helpers read the rest. */
struct lg_host_ctx {
	struct xdp_md md;
	__u8 *data;
	__u32 len;
	__u32 redirect; /* bpf_redirect() target ifindex */
	__u64 now;      /* bpf_ktime_get_ns() for the whole burst */
};

/* What lg_host_run() returns for a frame. */
struct lg_host_result {
	__u32 action;  /* XDP_* */
	__u32 reason;  /* lg_reason of a drop, LG_REASON_NONE otherwise */
	__u32 egress;  /* ifindex of a redirect */
	__u32 pad0;
};

/* Per-CPU maps index by this: set once per worker thread, < LG_HOST_CPUS. */
#define LG_HOST_CPUS 16
extern __thread __u32 lg_host_cpu;
extern __thread struct lg_host_ctx *lg_host_cur;
extern __thread struct lg_host_hint lg_host_hint;

/* Implemented in C++ (engine.cpp). lg_host_nsg_first: the first matching
 * rule of NSG direction dir by rte_acl, LG_NONE, or LG_HOST_WALK: this
 * direction has no rte_acl context, use the program's bit-vector walk. */
#define LG_HOST_WALK 0xfffffffeu
__u32 lg_host_nsg_first(__u32 slot, __u32 dir, __u8 proto, __u8 has_ports, __u16 sport, __u16 dport,
			const __u8 *src, const __u8 *dst);
long lg_host_fib(struct lg_host_ctx *ctx, struct bpf_fib_lookup *f);

/* Implemented by lg_prog.c (the program). */
typedef struct lg_umap *(*lg_host_resolver)(const char *name, void *arg);
int lg_host_bind(lg_host_resolver resolve, void *arg); /* 0, or -1: a map was not resolved */
void lg_host_run(struct lg_host_ctx *ctx, struct lg_host_result *r);
/* A later frame of the burst whose first frame lg_host_run() decided, on
 * the same thread, with the same ingress ifindex and now: lg_xdp's prelude
 * (lg_active's slot and generation, ifindex, time) is not redone, the
 * program's lg_after_prelude() runs at once. The slot read for the burst stays
 * intact until the worker's quiescent state after the burst (a publish
 * waits for it), so every frame of a burst is decided by one generation. */
void lg_host_run_next(struct lg_host_ctx *ctx, struct lg_host_result *r);
extern const unsigned long lg_host_scratch_size; /* per-CPU scratch value */
/* Frames the established-flow fast path forwarded, over all CPUs (the
 * program's maps must be bound). */
__u64 lg_host_fast_packets(void);

struct lg_host_timeouts {
	__u64 tcp_established_ns, tcp_transient_ns, tcp_close_ns, udp_ns, icmp_ns, fragment_ns;
};
void lg_host_set_timeouts(const struct lg_host_timeouts *t);
void lg_host_set_time_offset(__u64 ns);
/* lg_flowlog_on (bpf/lg_xdp.bpf.c): make flow-log records or not. */
void lg_host_set_flow_log(int on);
/* lg_fib_changed_ns and lg_fib_watched_until_ns (bpf/lg_ct.bpf.h): what
 * bounds the fast path's cached next hops. */
void lg_host_set_fib(__u64 changed_ns, __u64 watched_until_ns);

#ifdef __cplusplus
}
#endif

#endif /* LG_HOST_H */
