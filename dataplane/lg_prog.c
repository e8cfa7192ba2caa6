// SPDX-License-Identifier: GPL-2.0
/*
 * The XDP program, built for DPDK: bpf/lg_xdp.bpf.c compiled as ordinary C
 * against dataplane/host_include/bpf/bpf_helpers.h. Nothing of the decision
 * is rewritten here; this file only binds the program's maps and runs it.
 */
#define LG_HOST 1
#define LG_RODATA volatile /* plain globals that lg_host_set_timeouts stores atomically while
			     * workers run: each use is one whole load (READ_ONCE) */

#include "lg_host.h"

#include "../bpf/lg_xdp.bpf.c"

const unsigned long lg_host_scratch_size = sizeof(struct lg_scratch);

__thread __u32 lg_host_cpu;
__thread struct lg_host_ctx *lg_host_cur;
__thread struct lg_host_hint lg_host_hint;

#define LG_MAPS(X)                                                                                   \
	X(lg_ivl) X(lg_bitmap) X(lg_nsg_dir) X(lg_rule) X(lg_subnet) X(lg_nic) X(lg_pe) X(lg_pubip)  \
	X(lg_server) X(lg_fwrange) X(lg_vnetrule) X(lg_backend) X(lg_maglev) X(lg_iface) X(lg_gcfg) \
	X(lg_active) X(lg_flows) X(lg_frags) X(lg_reason_cnt) X(lg_rule_cnt) X(lg_pe_cnt)            \
	X(lg_srv_cnt) X(lg_egress_cnt) X(lg_local) X(lg_ifmac) X(lg_scratch) X(lg_flowlog) X(lg_log_cnt)

int lg_host_bind(lg_host_resolver resolve, void *arg)
{
	struct lg_umap *m;

#define LG_BIND(name)                                    \
	m = resolve(#name, arg);                         \
	if (!m)                                          \
		return -1;                               \
	_Static_assert(sizeof(name) >= sizeof(void *), #name); \
	memcpy(&name, &m, sizeof(m));
	LG_MAPS(LG_BIND)
#undef LG_BIND
	return 0;
}

static inline void lg_host_result_of(struct lg_host_ctx *ctx, struct lg_host_result *r, int action)
{
	struct lg_scratch *s;

	r->action = (__u32)action;
	r->reason = LG_REASON_NONE;
	if (action == XDP_DROP || action == XDP_ABORTED) {
		s = scratch();
		r->reason = s ? s->reason : LG_REASON_NONE;
	}
	r->egress = action == XDP_REDIRECT ? ctx->redirect : 0;
	r->pad0 = 0;
}

void lg_host_run(struct lg_host_ctx *ctx, struct lg_host_result *r)
{
	lg_host_cur = ctx;
	ctx->redirect = 0;
	lg_host_result_of(ctx, r, lg_xdp(&ctx->md));
}

/* lg_xdp's prelude set the scratch's slot, generation, ifindex and time
 * for the burst's first frame (lg_host.h): the decision straight away. */
void lg_host_run_next(struct lg_host_ctx *ctx, struct lg_host_result *r)
{
	lg_host_cur = ctx;
	ctx->redirect = 0;
	lg_host_result_of(ctx, r, lg_after_prelude(&ctx->md));
}

/* Whole-word stores: workers may be reading them (a re-registration). */
void lg_host_set_timeouts(const struct lg_host_timeouts *t)
{
	__atomic_store_n(&lg_tcp_established_ns, t->tcp_established_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_tcp_transient_ns, t->tcp_transient_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_tcp_close_ns, t->tcp_close_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_udp_ns, t->udp_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_icmp_ns, t->icmp_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_fragment_ns, t->fragment_ns, __ATOMIC_RELAXED);
}

void lg_host_set_flow_log(int on)
{
	__atomic_store_n(&lg_flowlog_on, on ? 1 : 0, __ATOMIC_RELAXED);
}

void lg_host_set_time_offset(__u64 ns)
{
	lg_time_offset_ns = ns;
}

void lg_host_set_fib(__u64 changed_ns, __u64 watched_until_ns)
{
	__atomic_store_n(&lg_fib_changed_ns, changed_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&lg_fib_watched_until_ns, watched_until_ns, __ATOMIC_RELAXED);
}

__u64 lg_host_fast_packets(void)
{
	__u32 saved = lg_host_cpu, c;
	__u64 n = 0;

	for (c = 0; c < LG_HOST_CPUS; c++) {
		struct lg_scratch *s;

		lg_host_cpu = c;
		s = scratch();
		if (s)
			n += s->fast_packets;
	}
	lg_host_cpu = saved;
	return n;
}
