/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stands in for libbpf's <bpf/bpf_helpers.h> when the XDP program is built
 * for DPDK (dataplane/lg_prog.c): the same map declarations and helper
 * calls, served by the C++ side through lg_host.h.
 */
#ifndef LG_HOST_BPF_HELPERS_H
#define LG_HOST_BPF_HELPERS_H

#include <errno.h>
#include <string.h>

#include "lg_host.h"

#define SEC(name)
#define __uint(name, val) int(*name)[val]
#define __type(name, val) __typeof__(val) *name
#define __array(name, val) __typeof__(val) *name[]
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define __noinline __attribute__((noinline))

static inline struct lg_umap *lg_umap_of(void *map)
{
	struct lg_umap *m;

	memcpy(&m, map, sizeof(m)); /* the map's first word (no aliasing games) */
	return m;
}

/* Arrays and per-CPU arrays inline (lg_host.h LG_UMAP_INLINE), and the
 * frame's own flow key from the burst's pre-lookup (lg_host_hint): the same
 * answers their ops->lookup gives, without the indirect call. */
static inline void *bpf_map_lookup_elem(void *map, const void *key)
{
	struct lg_umap *m = lg_umap_of(map);

	if (__builtin_expect(m->kind == LG_UMAP_INLINE, 1)) {
		__u32 i;

		memcpy(&i, key, sizeof(i));
		if (i >= m->n)
			return NULL;
		return m->base + (__u64)lg_host_cpu * m->cpu_stride + (__u64)i * m->value_size;
	}
	if (m == lg_host_hint.map) {
		const void *k = key;

		/* Only lg_flows gets here (its keys are key_size bytes); the
		 * compiler, seeing 4-byte array keys inlined at the same call
		 * sites, would warn about reading past them. */
		__asm__("" : "+r"(k));
		if (lg_host_key_eq(k, lg_host_hint.key, lg_host_hint.key_size)) {
			lg_host_hint.hits++;
			return lg_host_hint.val;
		}
	}
	return m->ops->lookup(m, key);
}

static inline long bpf_map_update_elem(void *map, const void *key, const void *val, __u64 flags)
{
	struct lg_umap *m = lg_umap_of(map);

	return m->ops->update(m, key, val, flags);
}

static inline long bpf_map_delete_elem(void *map, const void *key)
{
	struct lg_umap *m = lg_umap_of(map);

	return m->ops->del(m, key);
}

static inline __u64 bpf_ktime_get_ns(void)
{
	return lg_host_cur->now;
}

static inline __u64 bpf_ktime_get_coarse_ns(void)
{
	return lg_host_cur->now;
}

static inline long bpf_xdp_load_bytes(struct xdp_md *ctx, __u32 off, void *buf, __u32 len)
{
	struct lg_host_ctx *c = (struct lg_host_ctx *)ctx;

	if (off > c->len || len > c->len - off)
		return -EFAULT;
	memcpy(buf, c->data + off, len);
	return 0;
}

static inline long bpf_xdp_store_bytes(struct xdp_md *ctx, __u32 off, void *buf, __u32 len)
{
	struct lg_host_ctx *c = (struct lg_host_ctx *)ctx;

	if (off > c->len || len > c->len - off)
		return -EFAULT;
	memcpy(c->data + off, buf, len);
	return 0;
}

static inline __u64 bpf_xdp_get_buff_len(struct xdp_md *ctx)
{
	return ((struct lg_host_ctx *)ctx)->len;
}

static inline long bpf_fib_lookup(void *ctx, struct bpf_fib_lookup *params, int plen, __u32 flags)
{
	(void)plen;
	(void)flags;
	return lg_host_fib((struct lg_host_ctx *)ctx, params);
}

static inline long bpf_redirect(__u32 ifindex, __u64 flags)
{
	(void)flags;
	lg_host_cur->redirect = ifindex;
	return XDP_REDIRECT;
}

static inline long bpf_loop(__u32 nr, long (*cb)(__u32, void *), void *ctx, __u64 flags)
{
	__u32 i;

	(void)flags;
	for (i = 0; i < nr; i++)
		if (cb(i, ctx)) {
			i++;
			break;
		}
	return i;
}

#endif /* LG_HOST_BPF_HELPERS_H */
