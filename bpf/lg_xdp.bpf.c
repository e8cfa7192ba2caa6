// SPDX-License-Identifier: GPL-2.0
/*
 * linkgate XDP dataplane: SPEC §3–§5 for one frame, in the order of
 * control/evaluator.cpp's process(). Helpers by role: lg_maps.bpf.h (maps,
 * scratch), lg_pkt.bpf.h (parsing, rewrites), lg_policy.bpf.h (NSGs,
 * endpoints, Maglev), lg_ct.bpf.h (flows). Subprograms marked __noinline are
 * global functions: the verifier checks each once, not per call site.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lg_ct.bpf.h"
#include "lg_route.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/* Route s->tmp (the destination) from the ingress interface; returns the
 * egress ifindex when routed (neighbour resolved or not), else 0. */
__noinline int lg_route(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct bpf_fib_lookup *f;
	int rc;

	if (!s)
		return 0;
	f = &s->fib;
	__builtin_memset(f, 0, sizeof(*f));
	f->l4_protocol = s->p.proto;
	f->ifindex = s->ifindex;
	if (s->p.family == 4) {
		f->family = AF_INET;
		__builtin_memcpy(&f->ipv4_src, s->p.src + 12, 4);
		__builtin_memcpy(&f->ipv4_dst, s->tmp + 12, 4);
	} else {
		f->family = AF_INET6;
		__builtin_memcpy(f->ipv6_src, s->p.src, 16);
		__builtin_memcpy(f->ipv6_dst, s->tmp, 16);
	}
	rc = bpf_fib_lookup(ctx, f, sizeof(*f), 0);
	s->fib_rc = rc;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return (int)f->ifindex;
	return 0;
}

/*
 * SPEC §3 step 6 for the (already translated) frame towards s->tmp: TTL,
 * route, neighbour, MACs. Returns the verdict; s->egress, s->reason.
 */
__noinline int lg_forward(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *p;
	__u32 ifindex;
	__u8 ttl;

	if (!s)
		return LG_VERDICT_DROP;
	p = &s->p;
	ttl = p->ttl;
	if (ttl <= 1) {
		s->reason = LG_REASON_TTL_EXCEEDED;
		return LG_VERDICT_DROP;
	}
	/* Loopback, unspecified and the like: no route forwards them, whatever
	 * the FIB (or linkgate-dpdk's default route) would answer. */
	ifindex = lg_unroutable(p->src, s->tmp, p->family == 4) ? 0 : (__u32)lg_route(ctx);
	if (!ifindex) {
		s->reason = LG_REASON_NO_ROUTE;
		return LG_VERDICT_DROP;
	}
	s->egress = ifindex;
	if (s->fib_rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return LG_VERDICT_PASS; /* the host resolves, decrements and forwards */
	if (p->family == 4) {
		__u16 old = rd16(ctx, p->l3 + 8), nw;
		__u32 acc;
		__u8 t = ttl - 1;

		st(ctx, p->l3 + 8, &t, 1);
		nw = rd16(ctx, p->l3 + 8);
		acc = lg_csum_add(lg_csum_begin(rd16(ctx, p->l3 + 10)), old, nw);
		wr16(ctx, p->l3 + 10, lg_csum_end(acc));
	} else {
		__u8 t = ttl - 1;

		st(ctx, p->l3 + 7, &t, 1);
	}
	st(ctx, 0, s->fib.dmac, 6);
	st(ctx, 6, s->fib.smac, 6);
	if (s->nh_dir < 2)
		nh_remember(s, s->nh_dir);
	return LG_VERDICT_FORWARD;
}

/* serves(): a server's public IP anywhere, a private endpoint of the
 * ingress VNet. Address in s->tmp. */
static __always_inline int serves(struct lg_scratch *s)
{
	struct lg_addr_key ak = {};
	void *m = inner(&lg_pubip, s->slot);

	if (m && bpf_map_lookup_elem(m, s->tmp))
		return 1;
	ak.vni = s->vni;
	addr_cpy(ak.addr, s->tmp);
	m = inner(&lg_pe, s->slot);
	return m && bpf_map_lookup_elem(m, &ak);
}

/* SPEC §3 step 7: ARP requests and neighbour solicitations for served
 * addresses are answered in place (TX); everything else goes to the host. */
__noinline int lg_addr_res(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_ifmac *ifc;
	struct lg_pkt *p;
	__u32 ifindex;
	__u8 *b;

	if (!s)
		return LG_VERDICT_PASS;
	p = &s->p;
	b = s->buf;
	ifindex = s->ifindex;
	ifc = bpf_map_lookup_elem(&lg_ifmac, &ifindex);
	if (!ifc)
		return LG_VERDICT_PASS;
	if (p->family == 0) {
		__u32 a = p->l3;
		__u8 sha[6], spa[4];

		if (p->ethertype != 0x0806 || a + 28 > p->len || ld(ctx, a, b, 28))
			return LG_VERDICT_PASS;
		if (b[0] != 0 || b[1] != 1 || b[2] != 8 || b[3] != 0 || b[4] != 6 || b[5] != 4 || b[6] != 0 || b[7] != 1)
			return LG_VERDICT_PASS;
		addr_v4(s->tmp, b + 24);
		if (!serves(s))
			return LG_VERDICT_PASS;
		__builtin_memcpy(sha, b + 8, 6);
		__builtin_memcpy(spa, b + 14, 4);
		b[7] = 2;
		__builtin_memcpy(b + 8, ifc->mac, 6);
		__builtin_memcpy(b + 14, s->tmp + 12, 4);
		__builtin_memcpy(b + 18, sha, 6);
		__builtin_memcpy(b + 24, spa, 4);
		st(ctx, a, b, 28);
		st(ctx, 0, sha, 6);
		st(ctx, 6, ifc->mac, 6);
		return LG_VERDICT_TX;
	}
	{
		/* IPv6 NS with exactly the source link-layer address option, or a
		 * unicast one without options (RFC 4861 §7.2.4: its advertisement
		 * may omit the target's address and goes to the frame's source). */
		__u32 l4 = p->l4, sum = 0, i, blen;
		__u8 sll[6];

		if (p->icmp_type != 135 || p->icmp_code != 0 || p->ttl != 255)
			return LG_VERDICT_PASS;
		if (p->l3_end == l4 + 32) {
			if (ld(ctx, l4, b, 32) || b[24] != 1 || b[25] != 1)
				return LG_VERDICT_PASS;
			blen = 32;
			__builtin_memcpy(sll, b + 26, 6);
		} else if (p->l3_end == l4 + 24 && p->dst[0] != 0xff) {
			if (ld(ctx, l4, b, 24) || ld(ctx, 6, sll, 6))
				return LG_VERDICT_PASS;
			blen = 24;
		} else {
			return LG_VERDICT_PASS;
		}
		addr_cpy(s->tmp, b + 8);
		__builtin_memset(s->old, 0, 16);
		if (!serves(s) || addr_eq(p->src, s->old))
			return LG_VERDICT_PASS;
		st(ctx, p->l3 + 24, p->src, 16); /* to the solicitor */
		st(ctx, p->l3 + 8, s->tmp, 16);
		b[0] = 136;
		b[2] = 0;
		b[3] = 0;
		b[4] = blen == 32 ? 0x60 : 0x40; /* Solicited; Override with the target's address */
		b[5] = b[6] = b[7] = 0;
		if (blen == 32) {
			b[24] = 2; /* target link-layer address */
			__builtin_memcpy(b + 26, ifc->mac, 6);
		} else {
			__builtin_memset(b + 24, 0, 8); /* not sent: adds nothing to the sum */
		}
		/* Full checksum: pseudo-header (target -> solicitor, blen, 58) + body. */
		for (i = 0; i < 8; i++) {
			sum += lg_addr_word(s->tmp, (int)i);
			sum += lg_addr_word(p->src, (int)i);
		}
		sum += 58 + blen;
		for (i = 0; i < 16; i++)
			sum += (__u32)(b[2 * i] << 8 | b[2 * i + 1]);
		{
			__u16 c = (__u16)~lg_csum_fold(sum);

			b[2] = (__u8)(c >> 8);
			b[3] = (__u8)c;
		}
		if (blen == 32)
			st(ctx, l4, b, 32);
		else
			st(ctx, l4, b, 24);
		st(ctx, 0, sll, 6);
		st(ctx, 6, ifc->mac, 6);
		return LG_VERDICT_TX;
	}
}

static __always_inline void frag_key(struct lg_scratch *s)
{
	__builtin_memset(&s->fk, 0, sizeof(s->fk));
	s->fk.vni = s->vni;
	s->fk.family = s->p.family == 4 ? LG_AF_INET : LG_AF_INET6;
	s->fk.proto = s->p.family == 4 ? s->p.proto : 0; /* evaluator.cpp frag_key() */
	s->fk.id = s->p.frag_id;
	addr_cpy(s->fk.src, s->p.src);
	addr_cpy(s->fk.dst, s->p.dst);
}

/* SPEC §3 step 2: a later fragment takes its first fragment's verdict and
 * L3 translation, and is routed again on its own. */
__noinline int lg_later_frag(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_frag_entry *fe;

	if (!s)
		return LG_VERDICT_DROP;
	frag_key(s);
	fe = bpf_map_lookup_elem(&lg_frags, &s->fk);
	if (fe)
		s->fe = *fe; /* tested as copied: the element may be reused meanwhile */
	/* An expired memory is absent but left for the sweep or the next first
	 * fragment: a delete by key here could remove the memory a first
	 * fragment of a new datagram with the same id just wrote on another CPU.
	 * A placeholder is no memory yet. */
	if (!fe || s->fe.verdict == LG_FRAG_PENDING || s->now >= s->fe.expires_ns) {
		s->reason = LG_REASON_FRAGMENT_NO_FIRST;
		return LG_VERDICT_DROP;
	}
	if (s->p.frag_offset < s->fe.covered) {
		s->reason = LG_REASON_FRAGMENT_OVERLAP;
		return LG_VERDICT_DROP;
	}
	if (s->fe.verdict == LG_VERDICT_DROP) {
		s->reason = s->fe.reason;
		return LG_VERDICT_DROP;
	}
	if (!addr_eq(s->fe.new_src, s->p.src)) {
		addr_cpy(s->na, s->fe.new_src);
		lg_rewrite(ctx, 0, 0, 0, 0);
	}
	if (!addr_eq(s->fe.new_dst, s->p.dst)) {
		addr_cpy(s->na, s->fe.new_dst);
		lg_rewrite(ctx, 1, 0, 0, 0);
	}
	addr_cpy(s->tmp, s->fe.new_dst);
	return lg_forward(ctx);
}

/* Add a 16-bit field change at off to the running ICMP checksum. */
static __always_inline __u32 set16(struct xdp_md *ctx, __u32 acc, __u32 off, __u16 v)
{
	acc = lg_csum_add(acc, rd16(ctx, off), v);
	wr16(ctx, off, v);
	return acc;
}

/*
 * ICMP error of a translated flow (evaluator.cpp rewrite_icmp_error): the
 * quoted packet and the outer header. fwd: the error travels in the flow's
 * original direction (towards the backend).
 */
__noinline int lg_icmp_rewrite(struct xdp_md *ctx, __u32 fwd)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *p, *q;
	__u32 acc, aoff, icsum, v4, inner_dst, w;
	__u16 new_port;
	__u8 *iold, *inew;

	if (!s)
		return 0;
	p = &s->p;
	q = &s->in;
	v4 = p->family == 4;
	/* pub = orig.dst:orig.dport, be = nat_addr:nat_port */
	iold = fwd ? s->e.orig.dst : s->e.nat_addr;
	inew = fwd ? s->e.nat_addr : s->e.orig.dst;
	new_port = bpf_ntohs(fwd ? s->e.nat_port : s->e.orig.dport);
	inner_dst = !fwd;
	icsum = p->l4 + 2;
	acc = lg_csum_begin(rd16(ctx, icsum));
	aoff = v4 ? q->l3 + (inner_dst ? 16 : 12) : q->l3 + (inner_dst ? 24 : 8);
	rd_addr(ctx, aoff, v4, s->old);
	if (addr_eq(s->old, iold)) {
		__u32 poff, co;
		__u16 oldp;

		if (v4) {
			__u32 ic = lg_csum_begin(rd16(ctx, q->l3 + 10));
			__u16 nic;

			ic = lg_csum_add_addr(ic, iold, inew, 1);
			nic = lg_csum_end(ic);
			acc = set16(ctx, acc, aoff, lg_addr_word(inew, 6));
			acc = set16(ctx, acc, aoff + 2, lg_addr_word(inew, 7));
			acc = set16(ctx, acc, q->l3 + 10, nic);
		} else {
			for (w = 0; w < 8; w++)
				acc = set16(ctx, acc, aoff + 2 * w, lg_addr_word(inew, (int)w));
		}
		poff = q->l4 + (inner_dst ? 2 : 0);
		oldp = rd16(ctx, poff);
		co = q->proto == P_TCP ? q->l4 + 16 : q->l4 + 6;
		if (co + 2 <= q->l3_end) {
			__u16 c = rd16(ctx, co);

			if (!(q->proto == P_UDP && c == 0)) {
				__u32 lc = lg_csum_begin(c);

				lc = lg_csum_add_addr(lc, iold, inew, (int)v4);
				lc = lg_csum_add(lc, oldp, new_port);
				c = lg_csum_end(lc);
				if (q->proto == P_UDP && c == 0)
					c = 0xffff;
				acc = set16(ctx, acc, co, c);
			}
		}
		acc = set16(ctx, acc, poff, new_port);
	}
	/* Outer header: towards the backend the destination is the endpoint;
	 * from the backend the source may be the backend itself. */
	if (addr_eq(fwd ? p->dst : p->src, iold)) {
		if (!v4) /* ICMPv6's checksum covers the pseudo-header */
			acc = lg_csum_add_addr(acc, iold, inew, 0);
		wr16(ctx, icsum, lg_csum_end(acc));
		addr_cpy(s->na, inew);
		lg_rewrite(ctx, fwd, 0, 0, 0);
	} else {
		wr16(ctx, icsum, lg_csum_end(acc));
	}
	return 0;
}

/* The endpoint and server a flow's packet counts for; both were recorded
 * in the flow against its generation (creation or re-check). */
static __always_inline void count_flow_objects(struct lg_scratch *s)
{
	if (s->e.kind == LG_DEST_PRIVATE_ENDPOINT)
		s->cpe = s->e.object_id;
	if (s->e.kind != LG_DEST_ROUTED)
		s->csrv = s->e.server;
}

static __always_inline __u64 generation(__u32 slot)
{
	void *m = inner(&lg_gcfg, slot);
	struct lg_gcfg *g;
	__u32 z = 0;

	g = m ? bpf_map_lookup_elem(m, &z) : 0;
	return g ? g->generation : 0;
}

static __always_inline void pol_from_flow(struct lg_scratch *s)
{
	struct lg_pol *o = &s->pol;

	o->vni = s->e.orig.vni;
	o->family = s->e.orig.family == LG_AF_INET ? 4 : 6;
	o->proto = s->e.orig.proto;
	o->has_ports = o->proto == P_TCP || o->proto == P_UDP;
	o->recheck = 1;
	o->sport = bpf_ntohs(s->e.orig.sport);
	o->dport = bpf_ntohs(s->e.orig.dport);
	addr_cpy(o->src, s->e.orig.src);
	addr_cpy(o->dst, s->e.orig.dst);
}

/* SPEC §4 re-check of a flow of an older generation. 1: still valid. */
static __always_inline int recheck(struct xdp_md *ctx, struct lg_scratch *s, __u32 slot)
{
	pol_from_flow(s);
	s->pol.nhits = 0;
	/* route of the original destination: the destination VNet (decide) */
	addr_cpy(s->tmp, s->e.orig.dst);
	s->pol.egress = s->p.family == s->pol.family ? (__u32)lg_route(ctx) : 0;
	lg_decide(slot);
	s = scratch();
	if (!s)
		return 0;
	s->cpe = s->pol.pe;
	s->csrv = s->pol.server;
	if (!s->pol.allowed && !(s->pol.reason == LG_REASON_NO_BACKEND && s->pol.kind == s->e.kind)) {
		__u32 i;

		s->reason = s->pol.reason;
		for (i = 0; i < 4; i++)
			if (i < s->pol.nhits)
				cnt(&lg_rule_cnt, s->pol.hits[i]);
		return 0;
	}
	if (s->pol.kind != s->e.kind ||
	    (s->e.kind != LG_DEST_ROUTED && (s->pol.uid != s->e.object_uid || !lg_has_backend(slot, s->pol.server)))) {
		__u32 i;

		s = scratch();
		if (!s)
			return 0;
		s->reason = LG_REASON_NO_BACKEND;
		for (i = 0; i < 4; i++)
			if (i < s->pol.nhits)
				cnt(&lg_rule_cnt, s->pol.hits[i]);
		return 0;
	}
	s = scratch();
	if (!s)
		return 0;
	s->e.generation = generation(slot);
	s->e.object_id = s->e.kind == LG_DEST_PRIVATE_ENDPOINT ? s->pol.pe : s->pol.server;
	s->e.server = s->pol.server;
	return 1;
}

/* Flow-log records are made only for an agent that drains them (linkgated
 * --flow-log; docs/decisions.md "Flow logs"): otherwise lg_flowlog would
 * fill, and every later new flow and deny would pay a failed insert. */
LG_RODATA __u8 lg_flowlog_on = 0;

/* A flow-log record for flow key k that came in on ifindex (SPEC §6): the
 * first one of its key until the agent drains lg_flowlog. */
static __always_inline void flowlog(struct lg_scratch *s, __u8 kind, struct lg_flow_key *k, __u32 ifindex)
{
	struct lg_flowlog_entry r;
	long err;

	if (!lg_flowlog_on || (k->proto != P_TCP && k->proto != P_UDP))
		return;
	__builtin_memset(&r, 0, sizeof(r));
	r.at_ns = s->now;
	r.generation = s->e.generation;
	r.ifindex = ifindex;
	r.egress_ifindex = s->pol.egress;
	r.kind = kind;
	if (kind == LG_FLOWLOG_DENY) {
		r.generation = generation(s->slot);
		r.counter = s->pol.counter;
		r.reason = (__u8)s->reason;
	}
	if (bpf_map_lookup_elem(&lg_flowlog, k))
		return;
	err = bpf_map_update_elem(&lg_flowlog, k, &r, BPF_NOEXIST);
	/* EEXIST: another CPU wrote this key's record since the lookup; it
	 * hides this one as a waiting record does, so nothing is lost. */
	if (err != -17 /* EEXIST */)
		cnt(&lg_log_cnt, err ? LG_LOG_LOST : LG_LOG_WRITTEN);
}

/* A packet of the flow in scratch->e (found under scratch->k). */
__noinline int lg_flow_packet(struct xdp_md *ctx, __u32 reply)
{
	struct lg_scratch *s = scratch();
	__u32 slot, error, dirty = 0;
	int v;

	if (!s)
		return LG_VERDICT_DROP;
	slot = s->slot;
	if (s->e.generation != generation(slot)) {
		if (!recheck(ctx, s, slot)) {
			s = scratch();
			if (!s)
				return LG_VERDICT_DROP;
			flow_erase(s, &s->e);
			/* An NSG that cuts the flow (flushConnection) denies it: a D
			 * tuple named as the flow, by its original key and ingress. */
			if (s->reason == LG_REASON_NSG_DENY || s->reason == LG_REASON_NSG_DEFAULT_DENY)
				flowlog(s, LG_FLOWLOG_DENY, &s->e.orig, reply ? s->e.nh[0].in_ifindex : s->ifindex);
			return LG_VERDICT_DROP;
		}
		dirty = 1;
		s = scratch();
		if (!s)
			return LG_VERDICT_DROP;
	} else {
		count_flow_objects(s);
	}
	error = s->p.has_l4 && is_icmp(s->p.proto) && icmp_is_error(s->p.family, s->p.icmp_type);
	addr_cpy(s->tmp, s->p.dst);
	if (s->e.kind != LG_DEST_ROUTED) {
		if (error) {
			lg_icmp_rewrite(ctx, !reply);
			s = scratch();
			if (!s)
				return LG_VERDICT_DROP;
			rd_addr(ctx, s->p.l3 + (s->p.family == 4 ? 16 : 24), s->p.family == 4, s->tmp);
		} else if (!reply) {
			addr_cpy(s->na, s->e.nat_addr);
			lg_rewrite(ctx, 1, 1, bpf_ntohs(s->e.nat_port), 1);
			s = scratch();
			if (!s)
				return LG_VERDICT_DROP;
			addr_cpy(s->tmp, s->e.nat_addr);
		} else {
			addr_cpy(s->na, s->e.orig.dst);
			lg_rewrite(ctx, 0, 1, bpf_ntohs(s->e.orig.dport), 1);
		}
	}
	s->nh_dir = error ? 2 : reply; /* an ICMP error's route is not the flow's */
	v = lg_forward(ctx);
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	if (v != LG_VERDICT_DROP && !error) {
		update_state(&s->e, reply, s->p.tcp_flags, s->now);
	} else if (dirty) {
		/* Only the re-check's generation goes back: the fast path
		 * refreshes only the copy it found, so the flow's expiry is the
		 * later of its two copies' (lg_flow_lookup) and must not be
		 * written back shorter. */
		struct lg_flow_entry *t;

		other_key(s, &s->e);
		t = key_eq(&s->k, &s->k2) ? 0 : bpf_map_lookup_elem(&lg_flows, &s->k2);
		if (t && t->expires_ns > s->e.expires_ns && !(t->flags & LG_FLOW_F_CLAIM) && key_eq(&t->orig, &s->e.orig))
			s->e.expires_ns = t->expires_ns;
	}
	if (dirty || (v != LG_VERDICT_DROP && !error))
		flow_store(s, BPF_EXIST, v != LG_VERDICT_DROP && !error ? s->p.len : 0);
	return v;
}

/* Flow lookup, new-flow policy, forwarding, flow creation (process_ip). */
__noinline int lg_process_ip(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *p;
	__u32 slot, syn, tcp, starts, created = 0;
	int v, err;

	if (!s)
		return LG_VERDICT_DROP;
	p = &s->p;
	slot = s->slot;

	/* SPEC §3 step 3: ICMP errors about a known flow follow that flow. An
	 * error is about a packet its destination sent (conntrack's check):
	 * one that quotes a flow to anyone else is a new packet. */
	if (p->has_l4 && is_icmp(p->proto) && icmp_is_error(p->family, p->icmp_type) && lg_parse_inner(ctx)) {
		s = scratch();
		if (!s)
			return LG_VERDICT_DROP;
		if (addr_eq(s->in.src, s->p.dst)) {
			key_of(&s->k, s->vni, &s->in);
			key_reverse(&s->k);
			if (lg_flow_lookup()) {
				s = scratch();
				if (!s)
					return LG_VERDICT_DROP;
				return lg_flow_packet(ctx, !!(s->e.flags & LG_FLOW_F_REPLY));
			}
			s = scratch();
			if (!s)
				return LG_VERDICT_DROP;
		}
		p = &s->p;
	}

	key_of(&s->k, s->vni, p);
	tcp = p->proto == P_TCP;
	syn = tcp && (p->tcp_flags & 0x17) == 0x02; /* SYN without ACK, RST, FIN */
	if (lg_flow_lookup()) {
		s = scratch();
		if (!s)
			return LG_VERDICT_DROP;
		if (syn && !(s->e.flags & LG_FLOW_F_REPLY) && s->e.state == LG_CT_CLOSED) {
			flow_erase(s, &s->e); /* a new connection on a closed one's tuple */
		} else {
			return lg_flow_packet(ctx, !!(s->e.flags & LG_FLOW_F_REPLY));
		}
	}
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	p = &s->p;
	if (tcp && !syn) {
		s->reason = LG_REASON_CT_INVALID;
		return LG_VERDICT_DROP;
	}
	starts = syn || p->proto == P_UDP ||
		 (is_icmp(p->proto) && p->has_l4 && icmp_is_echo_request(p->family, p->icmp_type));

	s->pol.vni = s->vni;
	s->pol.family = p->family;
	s->pol.proto = p->proto;
	s->pol.has_ports = has_ports(p);
	s->pol.recheck = 0;
	s->pol.sport = p->sport;
	s->pol.dport = p->dport;
	addr_cpy(s->pol.src, p->src);
	addr_cpy(s->pol.dst, p->dst);
	addr_cpy(s->tmp, p->dst);
	s->pol.egress = (__u32)lg_route(ctx);
	lg_decide(slot);
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	p = &s->p;
	s->cpe = s->pol.pe;
	s->csrv = s->pol.server;
	if (!s->pol.allowed) {
		s->reason = s->pol.reason;
		if (s->reason == LG_REASON_NSG_DENY || s->reason == LG_REASON_NSG_DEFAULT_DENY)
			flowlog(s, LG_FLOWLOG_DENY, &s->k, s->ifindex);
		return LG_VERDICT_DROP;
	}

	if (starts) {
		struct lg_flow_entry *e = &s->e;

		__builtin_memset(e, 0, sizeof(*e));
		e->generation = generation(slot);
		e->kind = (__u8)s->pol.kind;
		e->object_id = s->pol.kind == LG_DEST_PRIVATE_ENDPOINT ? s->pol.pe
			       : s->pol.kind == LG_DEST_PUBLIC_ENDPOINT ? s->pol.server
									  : LG_NONE;
		e->object_uid = s->pol.kind == LG_DEST_ROUTED ? 0 : s->pol.uid;
		e->server = s->pol.kind == LG_DEST_ROUTED ? LG_NONE : s->pol.server;
		e->orig = s->k;
		e->expires_ns = s->now;
		/* Reserve the original key now: a full table drops ct-full before
		 * anything is rewritten (the evaluator checks before forwarding). */
		err = lg_flow_reserve();
		s = scratch();
		if (!s)
			return LG_VERDICT_DROP;
		p = &s->p;
		/* Full (-E2BIG) or out of memory (-ENOMEM, a BPF_F_NO_PREALLOC
		 * map): no flow would record it, so its replies would drop
		 * ct-invalid; refused now, as when the table is full. */
		if (err < 0) {
			s->reason = LG_REASON_CT_FULL;
			return LG_VERDICT_DROP;
		}
		created = err == 0;
	}

	addr_cpy(s->tmp, p->dst);
	if (s->pol.backend != LG_NONE) {
		struct lg_backend *b;
		__u32 bi = s->pol.backend;
		void *m = inner(&lg_backend, slot);

		b = m ? bpf_map_lookup_elem(m, &bi) : 0;
		if (b) {
			addr_cpy(s->na, b->addr);
			addr_cpy(s->e.nat_addr, b->addr);
			s->e.nat_port = b->port_be;
			lg_rewrite(ctx, 1, 1, bpf_ntohs(b->port_be), 1);
			s = scratch();
			if (!s)
				return LG_VERDICT_DROP;
			addr_cpy(s->tmp, s->e.nat_addr);
		}
	}
	s->nh_dir = created ? 0 : 2;
	v = lg_forward(ctx);
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	if (!created)
		return v;
	if (v == LG_VERDICT_DROP) {
		bpf_map_delete_elem(&lg_flows, &s->k);
		return v;
	}
	s->e.egress_ifindex = s->egress;
	s->e.reply_vni = egress_vni(slot, s->egress);
	update_state(&s->e, 0, s->p.tcp_flags, s->now);
	err = lg_flow_create();
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	if (err) {
		s->reason = (__u32)err;
		return LG_VERDICT_DROP;
	}
	flowlog(s, LG_FLOWLOG_BEGIN, &s->k, s->ifindex);
	return v;
}

/* The whole decision for one frame; the verdict, reason in scratch. */
__noinline int lg_process(struct xdp_md *ctx)
{
	struct lg_scratch *s;
	struct lg_local_key lk;
	struct lg_pkt *p;
	__u32 r, first;
	int v;

	r = (__u32)lg_parse(ctx);
	s = scratch();
	if (!s)
		return LG_VERDICT_DROP;
	if (r != LG_REASON_NONE) {
		s->reason = r;
		return LG_VERDICT_DROP;
	}
	p = &s->p;
	/* The packet's VNet is that of its ingress interface. */
	s->vni = egress_vni(s->slot, s->ifindex);

	if (p->family == 0)
		return lg_addr_res(ctx);
	/* Neighbour discovery is the host's when it is addressed to the host:
	 * multicast, link-local or one of its addresses. A solicitation to an
	 * address served here (unicast reachability probing) is answered. Any
	 * other is a new packet, not one the host's stack should forward. */
	if (p->family == 6 && p->proto == P_ICMP6 && p->has_l4 && p->icmp_type >= 133 && p->icmp_type <= 137) {
		__builtin_memset(&lk, 0, sizeof(lk));
		addr_cpy(lk.addr, p->dst);
		if (p->dst[0] == 0xff || (p->dst[0] == 0xfe && (p->dst[1] & 0xc0) == 0x80) ||
		    bpf_map_lookup_elem(&lg_local, &lk))
			return lg_addr_res(ctx);
		if (p->icmp_type == 135) {
			addr_cpy(s->tmp, p->dst);
			if (serves(s)) {
				v = lg_addr_res(ctx);
				if (v == LG_VERDICT_TX)
					return v;
				s = scratch();
				if (!s)
					return LG_VERDICT_DROP;
				p = &s->p;
			}
		}
	}
	if (p->family == 4 ? (p->dst[12] >> 4) == 0xe || (p->dst[12] == 0xff && p->dst[13] == 0xff &&
							     p->dst[14] == 0xff && p->dst[15] == 0xff)
			   : p->dst[0] == 0xff)
		return LG_VERDICT_PASS;
	addr_cpy(lk.addr, p->dst);
	if (bpf_map_lookup_elem(&lg_local, &lk))
		return LG_VERDICT_PASS;

	if (p->fragment && !p->first_fragment)
		return lg_later_frag(ctx);

	first = p->first_fragment;
	if (first) {
		/* A placeholder holds the slot while the fragment is decided, so a
		 * full table refuses it first (frag-table-full) and the sweep
		 * leaves it; its memory below replaces it. It replaces an expired
		 * memory too (a full table allows that), which a sweep could
		 * otherwise remove in the meantime; not another CPU's placeholder. */
		struct lg_frag_entry *held;

		frag_key(s);
		held = bpf_map_lookup_elem(&lg_frags, &s->fk);
		if (!held || lg_frag_expired(held, s->now)) {
			__builtin_memset(&s->fe, 0, sizeof(s->fe));
			s->fe.verdict = LG_FRAG_PENDING;
			s->fe.expires_ns = s->now;
			long err = bpf_map_update_elem(&lg_frags, &s->fk, &s->fe, held ? BPF_ANY : BPF_NOEXIST);

			/* Full or out of memory: no memory would follow either.
			 * EEXIST: another CPU's placeholder, made a moment ago. */
			if (err < 0 && err != -17 /* EEXIST */) {
				s->reason = LG_REASON_FRAG_TABLE_FULL;
				return LG_VERDICT_DROP;
			}
		}
	}

	v = lg_process_ip(ctx);

	if (first) {
		/* Remember the verdict and translation for the later fragments. */
		s = scratch();
		if (!s)
			return LG_VERDICT_DROP;
		p = &s->p;
		__builtin_memset(&s->fe, 0, sizeof(s->fe));
		s->fe.expires_ns = s->now + lg_fragment_ns;
		s->fe.verdict = (__u8)v;
		s->fe.reason = v == LG_VERDICT_DROP ? (__u8)s->reason : 0;
		s->fe.covered = (__u16)p->frag_payload;
		s->fe.egress_ifindex = s->egress;
		if (v != LG_VERDICT_DROP) {
			rd_addr(ctx, p->l3 + (p->family == 4 ? 12 : 8), p->family == 4, s->fe.new_src);
			rd_addr(ctx, p->l3 + (p->family == 4 ? 16 : 24), p->family == 4, s->fe.new_dst);
		} else {
			addr_cpy(s->fe.new_src, p->src);
			addr_cpy(s->fe.new_dst, p->dst);
		}
		frag_key(s);
		bpf_map_update_elem(&lg_frags, &s->fk, &s->fe, BPF_ANY);
	}
	return v;
}

static __always_inline __u16 ld16(const __u8 *b) { return (__u16)(b[0] << 8 | b[1]); }

static __always_inline void st16(__u8 *b, __u16 v)
{
	b[0] = (__u8)(v >> 8);
	b[1] = (__u8)v;
}

/* 4 bytes as they lie in the frame (a little-endian load of network-order
 * bytes). BPF: one 4-byte packet load, unaligned (lg_fast checked the
 * bounds); the verifier allows it without BPF_F_STRICT_ALIGNMENT. */
static __always_inline __u32 ld32_raw(const __u8 *b)
{
#ifdef __bpf__
	return *(const __u32 *)b;
#else
	__u32 v;

	__builtin_memcpy(&v, b, 4);
	return v;
#endif
}

/* One 8-byte word of lg_scratch.k (8-aligned there: lg_maps.bpf.h). */
struct lg_kw {
	__u64 w;
} __attribute__((may_alias));
_Static_assert(__builtin_offsetof(struct lg_scratch, k) % 8 == 0, "lg_fast stores lg_scratch.k in 8-byte words");

/* The words lg_fast writes are little-endian (x86 and bpfel, as built by
 * bpf/meson.build's -target bpf on x86), like pre_key()'s. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "lg_fast builds little-endian flow-key words");
_Static_assert(__builtin_offsetof(struct lg_flow_key, family) == 4 &&
		       __builtin_offsetof(struct lg_flow_key, proto) == 5 &&
		       __builtin_offsetof(struct lg_flow_key, src) == 8 &&
		       __builtin_offsetof(struct lg_flow_key, dst) == 24 &&
		       __builtin_offsetof(struct lg_flow_key, sport) == 40 &&
		       __builtin_offsetof(struct lg_flow_key, dport) == 42,
	       "lg_flow_key layout");

/*
 * Established-flow fast path (docs/xdp.md): a linear IPv4 TCP/UDP frame
 * without VLAN tags, IP options or fragmentation, of an ESTABLISHED flow
 * checked against the live generation, whose direction has a fresh cached
 * next hop. It does to the frame, the flow and the counters exactly what the
 * full path would (lg_process → lg_flow_packet → lg_forward), with direct
 * packet access and no flow write beyond the found copy's expiry. Returns
 * the XDP action, or -1: take the full path (which re-reads everything).
 * The cached next hop stands for the full path's host-address check and
 * route lookup of that direction: it is trusted while younger than the
 * prelude's nh_max_age (lg_ct.bpf.h, docs/xdp.md).
 */
__noinline int lg_fast(struct xdp_md *ctx)
{
	__u8 *d = LG_DATA(ctx), *end = LG_DATA_END(ctx);
	__u8 *ip = d + 14, *l4 = d + 34, *na, *aw, *pw;
	struct lg_scratch *s = scratch();
	struct lg_flow_entry *e;
	struct lg_nexthop *nh;
	struct lg_flow_key *k;
	struct lg_kw *kw;
	__u32 tot, reply, acc, co = 0, ports;
	__u16 oldw, nw, c;
	__u64 gen;
	__u8 proto;

	if (!s || l4 + 20 > end)
		return -1;
	if (d[12] != 0x08 || d[13] != 0x00 || ip[0] != 0x45 || (ip[6] & 0x3f) || ip[7] || ip[8] <= 1)
		return -1;
	tot = ld16(ip + 2);
	proto = ip[9];
	if (proto == P_TCP) {
		__u32 doff = (__u32)(l4[12] >> 4) * 4;

		if (doff < 20 || 20 + doff > tot || (l4[13] & 0x07)) /* FIN, SYN, RST: full path */
			return -1;
		co = 16;
	} else if (proto == P_UDP) {
		if (tot < 28)
			return -1;
		co = 6;
	} else {
		return -1;
	}
	if (d + 14 + tot > end || (ip[16] >> 4) == 0xe ||
	    (ip[16] == 0xff && ip[17] == 0xff && ip[18] == 0xff && ip[19] == 0xff))
		return -1;

	/* lg_active's slot and generation are two loads: a pair is trusted
	 * once the slot's own lg_gcfg confirms it (not a torn read), and kept
	 * with the ingress VNI until lg_active changes. */
	gen = s->agen;
	if (s->fc_gen != gen || s->fc_slot != s->slot || s->fc_if != s->ifindex) {
		if (!gen || generation(s->slot) != gen)
			return -1;
		s->fc_vni = egress_vni(s->slot, s->ifindex);
		s->fc_gen = gen;
		s->fc_slot = s->slot;
		s->fc_if = s->ifindex;
	}

	/* key_of() in whole words, as pre_key() (dataplane/engine.cpp) builds
	 * it: vni, family, proto, pad0 0; ::ffff:a.b.c.d addresses (bytes 0-9
	 * zero, 10-11 0xff, 12-15 the address as sent); ports as sent. The
	 * DPDK build's lookup compares keys 8 bytes at a time (lg_host_key_eq),
	 * and a load spanning several narrower stores is not store-forwarded.
	 * s->k is 8-aligned: one store a word in BPF too. */
	k = &s->k;
	kw = (struct lg_kw *)k;
	kw[0].w = (__u64)s->fc_vni | (__u64)LG_AF_INET << 32 | (__u64)proto << 40;
	kw[1].w = 0;
	kw[2].w = 0xffff0000ull | (__u64)ld32_raw(ip + 12) << 32;
	kw[3].w = 0;
	kw[4].w = 0xffff0000ull | (__u64)ld32_raw(ip + 16) << 32;
	ports = ld32_raw(l4); /* sport, dport */
	__builtin_memcpy(&k->sport, &ports, 4);
	e = bpf_map_lookup_elem(&lg_flows, k);
	if (!e || e->state != LG_CT_ESTABLISHED || e->generation != gen || s->now >= e->expires_ns)
		return -1;
	reply = e->flags & LG_FLOW_F_REPLY ? 1 : 0;
	nh = &e->nh[reply];
	if (!nh->ifindex || nh->in_ifindex != s->ifindex || (__u32)((__u32)(s->now >> 20) - nh->at) >= s->nh_max_age)
		return -1;

	/* DNAT / reverse translation (lg_rewrite): address, then port. */
	if (e->kind != LG_DEST_ROUTED) {
		na = reply ? e->orig.dst + 12 : e->nat_addr + 12;
		aw = reply ? ip + 12 : ip + 16;
		pw = reply ? l4 : l4 + 2;
		c = ld16(ip + 10);
		acc = lg_csum_begin(c);
		acc = lg_csum_add(acc, ld16(aw), ld16(na));
		acc = lg_csum_add(acc, ld16(aw + 2), ld16(na + 2));
		st16(ip + 10, lg_csum_end(acc));
		c = ld16(l4 + co);
		if (!(proto == P_UDP && c == 0)) {
			acc = lg_csum_begin(c);
			acc = lg_csum_add(acc, ld16(aw), ld16(na));
			acc = lg_csum_add(acc, ld16(aw + 2), ld16(na + 2));
			nw = bpf_ntohs(reply ? e->orig.dport : e->nat_port);
			acc = lg_csum_add(acc, ld16(pw), nw);
			st16(pw, nw);
			c = lg_csum_end(acc);
			if (proto == P_UDP && c == 0)
				c = 0xffff;
			st16(l4 + co, c);
		}
		__builtin_memcpy(aw, na, 4);
	}
	/* TTL (lg_forward) and the cached next hop's MACs. */
	oldw = ld16(ip + 8);
	ip[8]--;
	acc = lg_csum_add(lg_csum_begin(ld16(ip + 10)), oldw, ld16(ip + 8));
	st16(ip + 10, lg_csum_end(acc));
	__builtin_memcpy(d, nh->dmac, 6);
	__builtin_memcpy(d + 6, nh->smac, 6);

	/* update_state() of an ESTABLISHED flow without FIN/RST: the expiry. */
	e->expires_ns = s->now + (proto == P_TCP ? lg_tcp_established_ns : lg_udp_ns);
	/* Not atomic: RSS gives one direction of a flow one queue, one CPU. */
	e->packets++;
	e->bytes += (__u64)(end - d);

	cnt(&lg_reason_cnt, LG_REASON_NONE);
	if (e->kind == LG_DEST_PRIVATE_ENDPOINT)
		cnt(&lg_pe_cnt, e->object_id);
	if (e->kind != LG_DEST_ROUTED && e->server != LG_NONE)
		cnt(&lg_srv_cnt, e->server);
	cnt(&lg_egress_cnt, nh->ifindex);
	s->fast_packets++;
	return (int)bpf_redirect(nh->ifindex, 0);
}

/*
 * A frame's decision once lg_xdp's prelude has set the scratch's slot,
 * generation, ifindex and time: the fast path, else the full path and its
 * counters. linkgate-dpdk runs it directly for the later frames of a burst,
 * whose prelude is the first frame's (dataplane/lg_prog.c).
 */
static __always_inline int lg_after_prelude(struct xdp_md *ctx)
{
	struct lg_scratch *s;
	int v;

	v = lg_fast(ctx);
	if (v >= 0)
		return v;
	s = scratch();
	if (!s)
		return XDP_ABORTED;
	s->reason = LG_REASON_NONE;
	s->egress = 0;
	s->vni = 0;
	s->cpe = LG_NONE;
	s->csrv = LG_NONE;
	s->nh_dir = 2;
	v = lg_process(ctx);

	s = scratch();
	if (!s)
		return XDP_ABORTED;
	cnt(&lg_reason_cnt, v == LG_VERDICT_DROP ? s->reason : LG_REASON_NONE);
	if (s->cpe != LG_NONE)
		cnt(&lg_pe_cnt, s->cpe);
	if (s->csrv != LG_NONE)
		cnt(&lg_srv_cnt, s->csrv);
	switch (v) {
	case LG_VERDICT_FORWARD:
		cnt(&lg_egress_cnt, s->egress);
		return bpf_redirect(s->egress, 0);
	case LG_VERDICT_TX:
		return XDP_TX;
	case LG_VERDICT_PASS:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
}

SEC("xdp")
int lg_xdp(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_active *a;
	__u32 z = 0;

	if (!s)
		return XDP_ABORTED;
	a = bpf_map_lookup_elem(&lg_active, &z);
	s->slot = a && a->slot < LG_GEN_SLOTS ? a->slot : 0; /* read once: one generation */
	s->agen = a ? a->generation : 0;
	s->ifindex = ctx->ingress_ifindex;
	s->now = bpf_ktime_get_coarse_ns() + lg_time_offset_ns; /* ticks suffice for timeouts of seconds */
	s->nh_max_age = nh_max_age(s->now);
	return lg_after_prelude(ctx);
}
