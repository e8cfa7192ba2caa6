/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection tracking (SPEC §4): two entries per flow, the original key and
 * the reply key, each holding the whole lg_flow_entry. A packet works on a
 * copy in scratch->e and writes it back under both keys.
 */
#ifndef LG_CT_BPF_H
#define LG_CT_BPF_H

#include "lg_policy.bpf.h"

/* Timeouts, set through the skeleton's rodata before load; plain globals
 * when the same code is built for DPDK (dataplane/lg_host.h). */
#ifndef LG_RODATA
#define LG_RODATA const volatile
#endif
LG_RODATA __u64 lg_tcp_established_ns = LG_TIMEOUT_TCP_ESTABLISHED * 1000000000ull;
LG_RODATA __u64 lg_tcp_transient_ns = LG_TIMEOUT_TCP_TRANSIENT * 1000000000ull;
LG_RODATA __u64 lg_tcp_close_ns = LG_TIMEOUT_TCP_CLOSE * 1000000000ull;
LG_RODATA __u64 lg_udp_ns = LG_TIMEOUT_UDP * 1000000000ull;
LG_RODATA __u64 lg_icmp_ns = LG_TIMEOUT_ICMP * 1000000000ull;
LG_RODATA __u64 lg_fragment_ns = LG_FRAG_TIMEOUT * 1000000000ull;

/* Added to bpf_ktime_get_coarse_ns(): tests move time forward through the skeleton's
 * .bss instead of sleeping. 0 in production. */
__u64 lg_time_offset_ns = 0;

/* The fast path's cached next hops (lg_fast) stand for the route lookup and
 * the host-address check. Whoever loaded the program says through .bss when
 * those last changed and until when it is watching for changes
 * (docs/xdp.md, "The next hop's lifetime"): a cached next hop is trusted if
 * it was resolved after the last change, and for at most LG_NH_WATCHED_NS
 * while watched, LG_NH_UNWATCHED_NS otherwise. Both 0 at load: unwatched. */
__u64 lg_fib_changed_ns = 0;
__u64 lg_fib_watched_until_ns = 0;
#define LG_NH_WATCHED_NS (3600ull * 1000000000ull)
#define LG_NH_UNWATCHED_NS 1000000000ull

/* The prelude's bound on a cached next hop's age, in 2^20 ns ticks (the
 * unit of lg_nexthop.at). An entry resolved before the last change is at
 * least as old as the time since it, rounding included. */
static __always_inline __u32 nh_max_age(__u64 now)
{
	/* Each one whole load: the loader stores them while packets run. */
	__u64 changed = *(volatile __u64 *)&lg_fib_changed_ns;
	__u64 watched = *(volatile __u64 *)&lg_fib_watched_until_ns;
	__u64 span = now < watched ? LG_NH_WATCHED_NS >> 20 : LG_NH_UNWATCHED_NS >> 20;
	__u64 since = now > changed ? (now - changed) >> 20 : 0;

	return (__u32)(since < span ? since : span);
}

/* Flow key of a parsed packet: ports, or the ICMP echo identifier. */
static __always_inline void key_of(struct lg_flow_key *k, __u32 vni, const struct lg_pkt *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->vni = vni;
	k->family = p->family == 4 ? LG_AF_INET : LG_AF_INET6;
	k->proto = p->proto;
	addr_cpy(k->src, p->src);
	addr_cpy(k->dst, p->dst);
	if (has_ports(p)) {
		k->sport = bpf_htons(p->sport);
		k->dport = bpf_htons(p->dport);
	} else if (p->has_l4 && is_icmp(p->proto)) {
		if (icmp_is_echo_request(p->family, p->icmp_type)) {
			k->sport = bpf_htons(p->icmp_id);
			k->echo = LG_ECHO_REQUEST;
		} else if (icmp_is_echo_reply(p->family, p->icmp_type)) {
			k->dport = bpf_htons(p->icmp_id);
			k->echo = LG_ECHO_REPLY;
		}
	}
}

static __always_inline void key_reverse(struct lg_flow_key *k)
{
	__u8 t[16];
	__u16 x;

	addr_cpy(t, k->src);
	addr_cpy(k->src, k->dst);
	addr_cpy(k->dst, t);
	x = k->sport;
	k->sport = k->dport;
	k->dport = x;
	k->echo = lg_echo_reverse(k->echo);
}

static __always_inline int key_eq(const struct lg_flow_key *a, const struct lg_flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 d = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*a) / 4); i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/* The key of the flow e's other copy (e found under scratch->k) into scratch->k2. */
static __always_inline void other_key(struct lg_scratch *s, const struct lg_flow_entry *e)
{
	if (e->flags & LG_FLOW_F_REPLY)
		s->k2 = e->orig;
	else
		lg_flow_reply_key(e, &s->k2);
}

/* Remove the flow found under scratch->k (both keys). */
static __always_inline void flow_erase(struct lg_scratch *s, struct lg_flow_entry *e)
{
	other_key(s, e);
	bpf_map_delete_elem(&lg_flows, &s->k);
	bpf_map_delete_elem(&lg_flows, &s->k2);
}

/* Flow under scratch->k that has not expired, copied to scratch->e. An
 * expired flow is absent but left in place: deleting it by key here could
 * delete the flow another CPU has just made under that key. The sweep
 * removes it, or a new flow with its key takes it over (lg_flow_reserve). */
__noinline int lg_flow_lookup(void)
{
	struct lg_scratch *s = scratch();
	struct lg_flow_entry *e;

	if (!s)
		return 0;
	e = bpf_map_lookup_elem(&lg_flows, &s->k);
	if (!e)
		return 0;
	s->e = *e;
	if (s->e.flags & LG_FLOW_F_CLAIM)
		return 0; /* another CPU's flow under way: it writes the flow */
	if (s->now >= s->e.expires_ns) {
		/* The fast path refreshes only the copy it found: the flow lives
		 * until the later expiry of its two copies. */
		other_key(s, &s->e);
		e = key_eq(&s->k, &s->k2) ? 0 : bpf_map_lookup_elem(&lg_flows, &s->k2);
		/* Only the flow's own other copy (lg_flow_create's check). */
		if (e && s->now < e->expires_ns && !(e->flags & LG_FLOW_F_CLAIM) && key_eq(&e->orig, &s->e.orig)) {
			s->e.expires_ns = e->expires_ns;
			return 1;
		}
		return 0;
	}
	return 1;
}

static __always_inline __u64 flow_timeout(const struct lg_flow_entry *e)
{
	if (e->orig.proto == P_TCP)
		return e->state == LG_CT_ESTABLISHED ? lg_tcp_established_ns : lg_tcp_transient_ns;
	if (e->orig.proto == P_UDP)
		return lg_udp_ns;
	return lg_icmp_ns;
}

static __always_inline void update_state(struct lg_flow_entry *e, int reply, __u8 tcp_flags, __u64 now)
{
	if (e->state == LG_CT_CLOSED)
		return; /* the close timer runs from the FIN/RST that closed it */
	if (e->state == LG_CT_NEW) {
		/* TCP is established by the originator's ACK after the reply's
		 * SYN-ACK: a half-open flow keeps the opening timeout. */
		if (e->orig.proto != P_TCP) {
			if (reply)
				e->state = LG_CT_ESTABLISHED;
		} else if (reply) {
			e->flags |= LG_FLOW_F_REPLIED;
		} else if ((e->flags & LG_FLOW_F_REPLIED) && (tcp_flags & 0x12) == 0x10) {
			e->state = LG_CT_ESTABLISHED;
		}
	}
	if (e->orig.proto == P_TCP) {
		if (tcp_flags & 0x01)
			e->flags |= reply ? LG_FLOW_F_FIN_REPLY : LG_FLOW_F_FIN_ORIG;
		if (tcp_flags & 0x04)
			e->flags |= LG_FLOW_F_RST;
		if ((tcp_flags & 0x04) ||
		    ((e->flags & LG_FLOW_F_FIN_ORIG) && (e->flags & LG_FLOW_F_FIN_REPLY)))
			e->state = LG_CT_CLOSED;
		else if (e->flags & (LG_FLOW_F_FIN_ORIG | LG_FLOW_F_FIN_REPLY))
			e->state = LG_CT_CLOSING;
	}
	e->expires_ns = now + (e->state == LG_CT_CLOSED ? lg_tcp_close_ns : flow_timeout(e));
}

/* Remember the next hop the full path just resolved for direction dir of
 * scratch->e, for the fast path (lg_fast); lg_forward calls it. */
static __always_inline void nh_remember(struct lg_scratch *s, __u32 dir)
{
	struct lg_nexthop *nh = &s->e.nh[dir & 1], *other = &s->e.nh[(dir & 1) ^ 1];

	/* The other direction's, once no longer trusted, is forgotten: ages
	 * are 32-bit ticks (52 days), and a direction silent that long while
	 * the flow lives on the other's frames would read young again. This
	 * direction re-resolves at least hourly while it sends, so an
	 * untrusted next hop is forgotten within the hour. */
	if ((__u32)((__u32)(s->now >> 20) - other->at) >= s->nh_max_age)
		other->ifindex = 0;

	nh->ifindex = s->egress;
	nh->in_ifindex = s->ifindex;
	__builtin_memcpy(nh->dmac, s->fib.dmac, 6);
	__builtin_memcpy(nh->smac, s->fib.smac, 6);
	nh->at = (__u32)(s->now >> 20);
}

/* One copy of a flow. An existing entry is written in place: a map update
 * would allocate, copy and free an element on every packet. Its packet and
 * byte counts, the entry's last fields, are not written: only the CPU of
 * the copy's own direction adds to them (the fast path in place, here
 * `len` > 0 counts one frame of that length), so they are never written
 * from two CPUs. */
static __always_inline void flow_put(struct lg_flow_key *k, struct lg_flow_entry *v, __u64 flags, __u32 len)
{
	struct lg_flow_entry *cur;

	if (flags != BPF_EXIST) {
		bpf_map_update_elem(&lg_flows, k, v, flags);
		return;
	}
	cur = bpf_map_lookup_elem(&lg_flows, k);
	if (!cur)
		return;
	__builtin_memcpy(cur, v, __builtin_offsetof(struct lg_flow_entry, packets));
	if (len) {
		cur->packets++;
		cur->bytes += len;
	}
}

/* Write scratch->e back under both keys; the found key is scratch->k, and
 * a frame of `len` bytes (0: none) is counted in its copy. */
static __always_inline void flow_store(struct lg_scratch *s, __u64 flags, __u32 len)
{
	if (s->e.flags & LG_FLOW_F_REPLY) {
		s->k2 = s->e.orig;
		flow_put(&s->k, &s->e, flags, len);
		s->e.flags &= ~LG_FLOW_F_REPLY;
		flow_put(&s->k2, &s->e, flags, 0);
	} else {
		lg_flow_reply_key(&s->e, &s->k2);
		flow_put(&s->k, &s->e, flags, len);
		/* A flow to itself (src = dst, sport = dport, one VNet) has one
		 * key; its packets are of the original direction, as in the
		 * evaluator. A reply copy would overwrite it. */
		if (key_eq(&s->k, &s->k2))
			return;
		s->e.flags |= LG_FLOW_F_REPLY;
		flow_put(&s->k2, &s->e, flags, 0);
	}
}

/* o is another CPU's claim still under way (lg_flow_reserve). */
static __always_inline int claimed(const struct lg_scratch *s, const struct lg_flow_entry *o)
{
	return (o->flags & LG_FLOW_F_CLAIM) && s->now < o->expires_ns + LG_FLOW_CLAIM_NS;
}

/* o holds a key a new flow takes and has expired: its other copy, under
 * *ok, goes too unless it lives (1: the flow lives) or is the new flow's
 * own original key. Only o's own other copy is looked at or removed:
 * checked rather than assumed, as it costs two compares on a rare path. */
static __always_inline int holder_twin_lives(struct lg_scratch *s, const struct lg_flow_entry *o,
					     struct lg_flow_key *ok)
{
	struct lg_flow_entry *x;

	if (o->flags & LG_FLOW_F_REPLY)
		*ok = o->orig;
	else
		lg_flow_reply_key(o, ok);
	x = key_eq(ok, &s->k) ? 0 : bpf_map_lookup_elem(&lg_flows, ok);
	if (x && key_eq(&x->orig, &o->orig) && (x->flags & LG_FLOW_F_REPLY) != (o->flags & LG_FLOW_F_REPLY)) {
		if (s->now < x->expires_ns || claimed(s, x))
			return 1;
		bpf_map_delete_elem(&lg_flows, ok);
	}
	return 0;
}

/* o, found under a key a new flow takes, still holds it: another CPU's
 * claim, a live flow, or an expired one whose other copy lives. */
static __always_inline int holder_lives(struct lg_scratch *s, const struct lg_flow_entry *o,
					struct lg_flow_key *ok)
{
	return claimed(s, o) || s->now < o->expires_ns || holder_twin_lives(s, o, ok);
}

/* Reserve a new flow's original key scratch->k with scratch->e before
 * anything is rewritten. A key held by an expired flow (lg_flow_lookup
 * leaves them) is taken over: the holder's other copy is removed and the
 * key overwritten, which a full map allows. The reservation is a claim
 * (LG_FLOW_F_CLAIM) until lg_flow_create writes the flow: no flow to other
 * CPUs, and not theirs to take over. Returns 0 (reserved), 1 (a live flow
 * or another CPU's claim holds the key: that CPU writes the flow) or the
 * map's error (-E2BIG: the table is full). */
__noinline int lg_flow_reserve(void)
{
	struct lg_scratch *s = scratch();
	struct lg_flow_entry *o;
	long err;

	if (!s)
		return -12 /* ENOMEM */;
	s->e.flags |= LG_FLOW_F_CLAIM;
	err = bpf_map_update_elem(&lg_flows, &s->k, &s->e, BPF_NOEXIST);
	if (err == -17 /* EEXIST */) {
		o = bpf_map_lookup_elem(&lg_flows, &s->k);
		if (o && holder_lives(s, o, &s->k2))
			err = 1;
		else /* BPF_ANY: the sweep may have deleted the holder since */
			err = bpf_map_update_elem(&lg_flows, &s->k, &s->e, BPF_ANY);
	}
	s->e.flags &= ~LG_FLOW_F_CLAIM;
	return (int)err;
}

/* Store the new flow scratch->e, whose original key scratch->k is reserved.
 * Its reply key may be held by another live flow (two translated flows that
 * share the client's address and port and the backend): taking it would take
 * that flow's replies, so the new flow is refused, as the evaluator refuses
 * it. An expired holder is removed, both copies. Returns the drop reason
 * (the reservation released) or LG_REASON_NONE. */
__noinline int lg_flow_create(void)
{
	struct lg_scratch *s = scratch();
	struct lg_flow_entry *o;
	struct lg_flow_key ok;
	long err;

	if (!s)
		return LG_REASON_CT_FULL;
	lg_flow_reply_key(&s->e, &s->k2);
	/* The first frame is the original copy's; the reply copy starts at 0. */
	s->e.packets = 1;
	s->e.bytes = s->p.len;
	/* Over the claim: a map without preallocation can lack the memory of
	 * the replacing element, and a claim must not stay behind. */
	if (bpf_map_update_elem(&lg_flows, &s->k, &s->e, BPF_ANY))
		goto full;
	if (key_eq(&s->k, &s->k2))
		return LG_REASON_NONE; /* a flow to itself has one key */
	s->e.flags |= LG_FLOW_F_REPLY;
	s->e.packets = 0;
	s->e.bytes = 0;
	/* The common case costs what an unconditional store did. */
	err = bpf_map_update_elem(&lg_flows, &s->k2, &s->e, BPF_NOEXIST);
	if (!err)
		return LG_REASON_NONE;
	if (err != -17 /* EEXIST */)
		goto full; /* full counting entries: no flow with one copy */
	o = bpf_map_lookup_elem(&lg_flows, &s->k2);
	/* Live while either copy is (lg_flow_lookup). */
	if (o && holder_lives(s, o, &ok))
		goto clash;
	if (!bpf_map_update_elem(&lg_flows, &s->k2, &s->e, BPF_ANY))
		return LG_REASON_NONE;
full:
	bpf_map_delete_elem(&lg_flows, &s->k);
	return LG_REASON_CT_FULL;
clash:
	bpf_map_delete_elem(&lg_flows, &s->k);
	return LG_REASON_CT_CLASH;
}

#endif /* LG_CT_BPF_H */
