/* SPDX-License-Identifier: GPL-2.0 */
/*
 * New-flow policy over the generation tables (SPEC §3 steps 4–5, §5):
 * NSG bit-vector classification, private / public endpoints, Maglev. The
 * same walk as control/table_eval.cpp; input and result in scratch->pol.
 */
#ifndef LG_POLICY_BPF_H
#define LG_POLICY_BPF_H

#include "lg_hash.h"
#include "lg_pkt.bpf.h"

static __always_inline void *inner(void *outer, __u32 slot)
{
	return bpf_map_lookup_elem(outer, &slot);
}

/* memcmp order of two 16-byte values: <0, 0, >0. Two big-endian 64-bit
 * compares instead of 16 byte compares: this runs at every binary-search
 * step (x86 allows the unaligned map-value loads). */
static __always_inline int cmp16(const __u8 *a, const __u8 *b)
{
	__u64 a0 = __builtin_bswap64(*(const __u64 *)a), b0 = __builtin_bswap64(*(const __u64 *)b);
	__u64 a1 = __builtin_bswap64(*(const __u64 *)(a + 8)), b1 = __builtin_bswap64(*(const __u64 *)(b + 8));

	if (a0 != b0)
		return a0 < b0 ? -1 : 1;
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	return 0;
}

/* Interval of ivl[off, off + n) holding scratch->pol.key: its bitmap field,
 * LG_NONE when n == 0. At most LG_BSEARCH_STEPS halvings. */
__noinline int lg_ivl_find(__u32 slot, __u32 off, __u32 n)
{
	struct lg_scratch *s = scratch();
	struct lg_ivl *e;
	__u32 lo = 0, cnt = n, i, idx;
	void *m;

	if (!s || n == 0)
		return (int)LG_NONE;
	m = inner(&lg_ivl, slot);
	if (!m)
		return (int)LG_NONE;
	for (i = 0; i < LG_BSEARCH_STEPS + 1; i++) {
		__u32 half, mid;

		if (cnt <= 1)
			break;
		half = cnt / 2;
		mid = lo + half;
		idx = off + mid;
		e = bpf_map_lookup_elem(m, &idx);
		if (!e)
			return (int)LG_NONE;
		if (cmp16(e->lo, s->pol.key) <= 0)
			lo = mid;
		cnt -= half;
	}
	idx = off + lo;
	e = bpf_map_lookup_elem(m, &idx);
	return e ? (int)e->bitmap : (int)LG_NONE;
}

static __always_inline __u32 ctz64(__u64 x)
{
	__u32 n = 0;

	if (!(x & 0xffffffffull)) { n += 32; x >>= 32; }
	if (!(x & 0xffff)) { n += 16; x >>= 16; }
	if (!(x & 0xff)) { n += 8; x >>= 8; }
	if (!(x & 0xf)) { n += 4; x >>= 4; }
	if (!(x & 0x3)) { n += 2; x >>= 2; }
	if (!(x & 0x1)) n += 1;
	return n;
}

static __always_inline __u32 proto_class(__u8 proto)
{
	switch (proto) {
	case P_TCP: return LG_PC_TCP;
	case P_UDP: return LG_PC_UDP;
	case P_ICMP:
	case P_ICMP6: return LG_PC_ICMP;
	case 50: return LG_PC_ESP;
	case 51: return LG_PC_AH;
	default: return LG_PC_OTHER;
	}
}

static __always_inline void port_key(__u8 *k, __u16 port)
{
	__builtin_memset(k, 0, 14);
	k[14] = (__u8)(port >> 8);
	k[15] = (__u8)port;
}

/* Rule ri (index into lg_rule) decided: count it, allow or deny. */
static __always_inline int nsg_verdict(struct lg_scratch *s, __u32 slot, __u32 ri)
{
	struct lg_rule *r;
	void *m = inner(&lg_rule, slot);

	if (!m)
		return 1;
	r = bpf_map_lookup_elem(m, &ri);
	if (!r)
		return 1;
	if (!s->pol.recheck)
		cnt(&lg_rule_cnt, r->counter);
	else if (s->pol.nhits < 4)
		s->pol.hits[s->pol.nhits++ & 3] = r->counter; /* counted only if the flow fails */
	if (r->allow)
		return 1;
	s->pol.counter = r->counter;
	s->pol.reason = r->is_default ? LG_REASON_NSG_DEFAULT_DENY : LG_REASON_NSG_DENY;
	return 0;
}

/*
 * One NSG (lg_nsg_dir index dir): the first rule of the AND of the field
 * bitmaps decides. Returns 1 allow, 0 deny (reason in pol). Counts the hit.
 * Built for DPDK (LG_HOST, dataplane/), the first rule comes from rte_acl,
 * unless the direction's rules expand beyond rte_acl's budget (docs/dpdk.md).
 */
__noinline int lg_nsg(__u32 slot, __u32 dir)
{
	struct lg_scratch *s = scratch();
	struct lg_nsg_dir *d;
	void *m;

	if (!s || dir == LG_NONE)
		return 1; /* a level without an NSG allows */
	m = inner(&lg_nsg_dir, slot);
	if (!m)
		return 1;
	d = bpf_map_lookup_elem(m, &dir);
	if (!d)
		return 1;
	if (s->pol.recheck && !(d->flags & LG_NSG_F_FLUSH))
		return 1;
#ifdef LG_HOST
	{
		__u32 ri = lg_host_nsg_first(slot, dir, s->pol.proto, s->pol.has_ports, s->pol.sport,
					     s->pol.dport, s->pol.src, s->pol.dst);

		if (ri != LG_HOST_WALK)
			return ri == LG_NONE ? 1 : nsg_verdict(s, slot, d->rule_base + ri);
	}
#endif
	struct lg_bitmap *bm[5];
	__u32 bi[5], w;
	void *mb;
	int i;

	addr_cpy(s->pol.key, s->pol.src);
	bi[0] = (__u32)lg_ivl_find(slot, d->field[LG_F_SRC].off, d->field[LG_F_SRC].n);
	addr_cpy(s->pol.key, s->pol.dst);
	bi[1] = (__u32)lg_ivl_find(slot, d->field[LG_F_DST].off, d->field[LG_F_DST].n);
	if (s->pol.has_ports) {
		port_key(s->pol.key, s->pol.sport);
		bi[2] = (__u32)lg_ivl_find(slot, d->field[LG_F_SPORT].off, d->field[LG_F_SPORT].n);
		port_key(s->pol.key, s->pol.dport);
		bi[3] = (__u32)lg_ivl_find(slot, d->field[LG_F_DPORT].off, d->field[LG_F_DPORT].n);
	} else {
		bi[2] = d->portless_bitmap;
		bi[3] = d->portless_bitmap;
	}
	{
		__u32 pc = proto_class(s->pol.proto);

		bi[4] = pc < LG_PC__COUNT ? d->proto_bitmap[pc] : LG_NONE;
	}
	mb = inner(&lg_bitmap, slot);
	if (!mb)
		return 1;
#pragma unroll
	for (i = 0; i < 5; i++) {
		bm[i] = bpf_map_lookup_elem(mb, &bi[i]);
		if (!bm[i])
			return 1; /* unreachable with compiled tables: default rules match */
	}
	for (w = 0; w < LG_NSG_WORDS; w++) {
		__u64 x;

		if (w >= d->nwords)
			break;
		x = bm[0]->w[w] & bm[1]->w[w] & bm[2]->w[w] & bm[3]->w[w] & bm[4]->w[w];
		if (!x)
			continue;
		return nsg_verdict(s, slot, d->rule_base + w * 64 + ctz64(x));
	}
	return 1;
}

/* Maglev pick for server srv (SPEC §5): pol.backend or no-backend. */
__noinline int lg_pick_backend(__u32 slot, __u32 srv)
{
	struct lg_scratch *s = scratch();
	struct lg_server *sv;
	__u32 h, idx, *b;
	void *m;

	if (!s)
		return 0;
	s->pol.reason = LG_REASON_NO_BACKEND;
	m = inner(&lg_server, slot);
	if (!m)
		return 0;
	sv = bpf_map_lookup_elem(m, &srv);
	if (!sv)
		return 0;
	idx = sv->maglev[s->pol.family == 4 ? 0 : 1];
	if (idx == LG_NONE)
		return 0;
	h = lg_flow_hash(s->pol.src, s->pol.dst, bpf_htons(s->pol.sport), bpf_htons(s->pol.dport), s->pol.proto);
	idx += h % LG_MAGLEV_SIZE;
	m = inner(&lg_maglev, slot);
	if (!m)
		return 0;
	b = bpf_map_lookup_elem(m, &idx);
	if (!b || *b == LG_NONE)
		return 0;
	s->pol.backend = *b;
	s->pol.reason = LG_REASON_NONE;
	s->pol.allowed = 1;
	return 1;
}

/* Firewall ranges of server srv hold the IPv4 source (sorted, disjoint). */
__noinline int lg_fw_match(__u32 slot, __u32 off, __u32 n)
{
	struct lg_scratch *s = scratch();
	struct lg_fwrange *r;
	__u32 a, lo = 0, cnt = n, i, idx;
	void *m;

	if (!s || n == 0 || s->pol.family != 4)
		return 0;
	a = (__u32)s->pol.src[12] << 24 | (__u32)s->pol.src[13] << 16 | (__u32)s->pol.src[14] << 8 | s->pol.src[15];
	m = inner(&lg_fwrange, slot);
	if (!m)
		return 0;
	for (i = 0; i < 32; i++) {
		__u32 half;

		if (cnt <= 1)
			break;
		half = cnt / 2;
		idx = off + lo + half;
		r = bpf_map_lookup_elem(m, &idx);
		if (!r)
			return 0;
		if (r->lo <= a)
			lo += half;
		cnt -= half;
	}
	idx = off + lo;
	r = bpf_map_lookup_elem(m, &idx);
	return r && a >= r->lo && a <= r->hi;
}

/* The route's egress for pol.dst (filled by the caller): picks the VNet
 * whose subnets and NICs the destination is looked up in. */
static __always_inline __u32 egress_vni(__u32 slot, __u32 ifindex)
{
	void *m = inner(&lg_iface, slot);
	struct lg_iface *i;

	if (!m || !ifindex)
		return 0;
	i = bpf_map_lookup_elem(m, &ifindex);
	return i ? i->vni : 0;
}

static __always_inline __u32 pec_reason(__u8 status)
{
	return status == LG_PEC_PENDING ? LG_REASON_PEC_PENDING
	       : status == LG_PEC_REJECTED ? LG_REASON_PEC_REJECTED
					   : LG_REASON_PEC_DISCONNECTED;
}

/*
 * evaluator.cpp decide(): source-side NSGs, destination kind and its checks,
 * the backend. pol.egress must hold the egress ifindex of the route to
 * pol.dst (0 when none). Returns pol.allowed.
 */
__noinline int lg_decide(__u32 slot)
{
	struct lg_scratch *s = scratch();
	struct lg_subnet_key sk = {};
	struct lg_addr_key ak = {};
	struct lg_subnet *sn;
	struct lg_nic *nic;
	struct lg_pe *pe;
	__u32 *srvp, ss_found = 0, ss_id = 0, ss_flags = 0, nsg, srv, dvni;
	void *m;

	if (!s)
		return 0;
	s->pol.allowed = 0;
	s->pol.reason = LG_REASON_NONE;
	s->pol.kind = LG_DEST_ROUTED;
	s->pol.pe = LG_NONE;
	s->pol.server = LG_NONE;
	s->pol.uid = 0;
	s->pol.backend = LG_NONE;

	/* Step 4: source side, NIC then subnet, Outbound. */
	sk.prefixlen = 32 + 128;
	sk.vni_be = bpf_htonl(s->pol.vni);
	addr_cpy(sk.addr, s->pol.src);
	m = inner(&lg_subnet, slot);
	sn = m ? bpf_map_lookup_elem(m, &sk) : 0;
	if (sn) {
		ss_found = 1;
		ss_id = sn->id;
		ss_flags = sn->flags;
		nsg = sn->nsg_out;
		ak.vni = s->pol.vni;
		addr_cpy(ak.addr, s->pol.src);
		m = inner(&lg_nic, slot);
		nic = m ? bpf_map_lookup_elem(m, &ak) : 0;
		if (nic && !lg_nsg(slot, nic->nsg_out))
			return 0;
		if (!lg_nsg(slot, nsg))
			return 0;
	}

	/* Step 5: private endpoint of the packet's VNet. */
	ak.vni = s->pol.vni;
	addr_cpy(ak.addr, s->pol.dst);
	m = inner(&lg_pe, slot);
	pe = m ? bpf_map_lookup_elem(m, &ak) : 0;
	if (pe) {
		__u8 status = pe->status;
		__u32 sub_in = pe->subnet_in;

		s->pol.kind = LG_DEST_PRIVATE_ENDPOINT;
		s->pol.pe = pe->id;
		s->pol.server = srv = pe->server;
		s->pol.uid = pe->uid;
		if (status != LG_PEC_APPROVED) {
			s->pol.reason = pec_reason(status);
			return 0;
		}
		if (s->pol.proto != P_TCP || !s->pol.has_ports || s->pol.dport != LG_MYSQL_PORT) {
			s->pol.reason = LG_REASON_PE_PORT;
			return 0;
		}
		if (sub_in != LG_NONE && !lg_nsg(slot, sub_in))
			return 0;
		return lg_pick_backend(slot, srv);
	}

	/* Public endpoint. */
	m = inner(&lg_pubip, slot);
	srvp = m ? bpf_map_lookup_elem(m, s->pol.dst) : 0;
	if (srvp) {
		struct lg_server *sv;
		__u32 flags, roff, rn;

		srv = *srvp;
		s->pol.kind = LG_DEST_PUBLIC_ENDPOINT;
		s->pol.server = srv;
		m = inner(&lg_server, slot);
		sv = m ? bpf_map_lookup_elem(m, &srv) : 0;
		if (!sv) {
			s->pol.reason = LG_REASON_NO_BACKEND;
			return 0;
		}
		s->pol.uid = sv->uid;
		flags = sv->flags;
		roff = sv->ranges.off;
		rn = sv->ranges.n;
		if (!(flags & LG_SERVER_F_PUBLIC)) {
			s->pol.reason = LG_REASON_PUBLIC_ACCESS_DISABLED;
			return 0;
		}
		if (s->pol.proto != P_TCP || !s->pol.has_ports || s->pol.dport != LG_MYSQL_PORT) {
			s->pol.reason = LG_REASON_PUBLIC_PORT;
			return 0;
		}
		if (ss_found && (ss_flags & LG_SUBNET_F_SQL_ENDPOINT)) {
			/* Service-endpoint traffic: VNet rules only. */
			struct lg_vnetrule_key vk = {.server = srv, .subnet = ss_id};

			m = inner(&lg_vnetrule, slot);
			if (m && bpf_map_lookup_elem(m, &vk))
				return lg_pick_backend(slot, srv);
			s->pol.reason = LG_REASON_VNET_RULE_NO_MATCH;
			return 0;
		}
		if (!lg_fw_match(slot, roff, rn)) {
			int ok = 0;

			if (flags & LG_SERVER_F_ALLOW_AZURE) {
				struct lg_gcfg *g;
				__u32 z = 0;

				m = inner(&lg_gcfg, slot);
				g = m ? bpf_map_lookup_elem(m, &z) : 0;
				if (g) {
					__u32 off = g->azure_cloud.off, n = g->azure_cloud.n;

					addr_cpy(s->pol.key, s->pol.src);
					ok = lg_ivl_find(slot, off, n) == 1;
				}
			}
			if (!ok) {
				s->pol.reason = LG_REASON_FIREWALL_NO_MATCH;
				return 0;
			}
		}
		return lg_pick_backend(slot, srv);
	}

	/* Anything else: the destination's subnet, then its NIC, Inbound, in
	 * the VNet of the egress interface when it has one. */
	dvni = egress_vni(slot, s->pol.egress);
	if (!dvni)
		dvni = s->pol.vni;
	sk.vni_be = bpf_htonl(dvni);
	addr_cpy(sk.addr, s->pol.dst);
	m = inner(&lg_subnet, slot);
	sn = m ? bpf_map_lookup_elem(m, &sk) : 0;
	if (sn) {
		nsg = sn->nsg_in;
		if (!lg_nsg(slot, nsg))
			return 0;
		ak.vni = dvni;
		addr_cpy(ak.addr, s->pol.dst);
		m = inner(&lg_nic, slot);
		nic = m ? bpf_map_lookup_elem(m, &ak) : 0;
		if (nic && !lg_nsg(slot, nic->nsg_in))
			return 0;
	}
	s->pol.allowed = 1;
	return 1;
}

/* Backend (addr, port) of the flow in scratch->e is still one of server
 * srv's (weight 0 included: draining keeps flows). bpf_loop: the callback is
 * verified once, whatever the number of backends (an unrolled compare per
 * backend overflows the verifier's jump history). */
#define LG_RECHECK_BACKENDS LG_MAX_BACKENDS_PER_SERVER /* validation's limit: every listed backend */

struct lg_has_backend_ctx {
	void *backends; /* inner lg_backend map */
	struct lg_scratch *s;
	__u32 off;
	__u32 found;
};

static long lg_has_backend_cb(__u32 i, void *arg)
{
	struct lg_has_backend_ctx *c = arg;
	struct lg_backend *b;
	__u32 idx = c->off + i, diff = 0, k;

	b = bpf_map_lookup_elem(c->backends, &idx);
	if (!b)
		return 1;
	for (k = 0; k < 16; k++)
		diff |= b->addr[k] ^ c->s->e.nat_addr[k];
	if (!diff && b->port_be == c->s->e.nat_port) {
		c->found = 1;
		return 1;
	}
	return 0;
}

__noinline int lg_has_backend(__u32 slot, __u32 srv)
{
	struct lg_has_backend_ctx c = {};
	struct lg_server *sv;
	__u32 n;
	void *m;

	c.s = scratch();
	if (!c.s)
		return 0;
	m = inner(&lg_server, slot);
	sv = m ? bpf_map_lookup_elem(m, &srv) : 0;
	if (!sv)
		return 0;
	c.off = sv->backends.off;
	n = sv->backends.n;
	c.backends = inner(&lg_backend, slot);
	if (!c.backends)
		return 0;
	bpf_loop(n < LG_RECHECK_BACKENDS ? n : LG_RECHECK_BACKENDS, lg_has_backend_cb, &c, 0);
	return (int)c.found;
}

#endif /* LG_POLICY_BPF_H */
