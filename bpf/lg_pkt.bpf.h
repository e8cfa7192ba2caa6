/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packet access, parsing (SPEC §3 step 1, control/packet.cpp's parse_frame)
 * and address rewrites with incremental checksums (abi/lg_csum.h).
 * Every access goes through bpf_xdp_load_bytes/store_bytes: variable header
 * offsets (VLANs, IPv4 options, IPv6 extension chains) are then checked at
 * run time instead of being proven to the verifier one by one.
 */
#ifndef LG_PKT_BPF_H
#define LG_PKT_BPF_H

#include "lg_csum.h"
#include "lg_maps.bpf.h"

#define P_TCP 6
#define P_UDP 17
#define P_ICMP 1
#define P_ICMP6 58

/* Direct packet access (the fast path): the linear part of the frame. */
#ifdef LG_HOST
#define LG_DATA(ctx) (((struct lg_host_ctx *)(ctx))->data)
#define LG_DATA_END(ctx) (((struct lg_host_ctx *)(ctx))->data + ((struct lg_host_ctx *)(ctx))->len)
#else
#define LG_DATA(ctx) ((__u8 *)(long)(ctx)->data)
#define LG_DATA_END(ctx) ((__u8 *)(long)(ctx)->data_end)
#endif

static __always_inline int ld(struct xdp_md *ctx, __u32 off, void *buf, __u32 len)
{
	return bpf_xdp_load_bytes(ctx, off, buf, len);
}

static __always_inline int st(struct xdp_md *ctx, __u32 off, void *buf, __u32 len)
{
	return bpf_xdp_store_bytes(ctx, off, buf, len);
}

static __always_inline __u16 rd16(struct xdp_md *ctx, __u32 off)
{
	__u8 b[2] = {};

	ld(ctx, off, b, 2);
	return (__u16)(b[0] << 8 | b[1]);
}

static __always_inline void wr16(struct xdp_md *ctx, __u32 off, __u16 v)
{
	__u8 b[2] = {(__u8)(v >> 8), (__u8)v};

	st(ctx, off, b, 2);
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

static __always_inline void addr_cpy(__u8 *d, const __u8 *s)
{
	__builtin_memcpy(d, s, 16);
}

/* An IPv4-mapped address (::ffff:0:0/96): how the tables hold IPv4, so an
 * IPv6 packet carrying one would be matched as IPv4 (control/packet.cpp). */
static __always_inline int addr_mapped(const __u8 *a)
{
	return !(a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9]) && a[10] == 0xff && a[11] == 0xff;
}

static __always_inline void addr_v4(__u8 *d, const __u8 *v4)
{
	__builtin_memset(d, 0, 10);
	d[10] = 0xff;
	d[11] = 0xff;
	d[12] = v4[0];
	d[13] = v4[1];
	d[14] = v4[2];
	d[15] = v4[3];
}

static __always_inline int icmp_is_error(int family, __u8 t)
{
	if (family == 4)
		return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
	return t >= 1 && t <= 4;
}
static __always_inline int icmp_is_echo_request(int family, __u8 t) { return family == 4 ? t == 8 : t == 128; }
static __always_inline int icmp_is_echo_reply(int family, __u8 t) { return family == 4 ? t == 0 : t == 129; }
static __always_inline int is_icmp(__u8 proto) { return proto == P_ICMP || proto == P_ICMP6; }
static __always_inline int has_ports(const struct lg_pkt *p)
{
	return p->has_l4 && (p->proto == P_TCP || p->proto == P_UDP);
}

static __always_inline int is_ipv6_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 135 || nh == 139 || nh == 140;
}

static __always_inline __u32 parse_l4(struct xdp_md *ctx, struct lg_pkt *p, __u8 *b)
{
	__u32 need = 0;

	if (p->proto == P_TCP)
		need = 20;
	else if (p->proto == P_UDP || p->proto == P_ICMP || p->proto == P_ICMP6)
		need = 8;
	if (p->l4 + need > p->l3_end)
		return LG_REASON_MALFORMED;
	if (p->proto == P_TCP) {
		__u32 doff;

		if (ld(ctx, p->l4, b, 20))
			return LG_REASON_MALFORMED;
		doff = (__u32)(b[12] >> 4) * 4;
		if (doff < 20 || p->l4 + doff > p->l3_end)
			return LG_REASON_MALFORMED;
		p->sport = (__u16)(b[0] << 8 | b[1]);
		p->dport = (__u16)(b[2] << 8 | b[3]);
		p->tcp_flags = b[13];
	} else if (p->proto == P_UDP) {
		if (ld(ctx, p->l4, b, 8))
			return LG_REASON_MALFORMED;
		p->sport = (__u16)(b[0] << 8 | b[1]);
		p->dport = (__u16)(b[2] << 8 | b[3]);
	} else if ((p->family == 4 && p->proto == P_ICMP) || (p->family == 6 && p->proto == P_ICMP6)) {
		if (ld(ctx, p->l4, b, 8))
			return LG_REASON_MALFORMED;
		p->icmp_type = b[0];
		p->icmp_code = b[1];
		p->icmp_id = (__u16)(b[4] << 8 | b[5]);
	}
	p->has_l4 = 1;
	return LG_REASON_NONE;
}

/* The IPv4 options at off, n = IHL - 20 bytes (RFC 791; control/packet.cpp
 * ipv4_options): a source route (LSRR 0x83, SSRR 0x89) makes the destination
 * the next hop, not the end (docs/decisions.md); an option that runs past
 * the header is malformed. A function of its own: the walk is verified once. */
__noinline int lg_ipv4_options(struct xdp_md *ctx, __u32 off, __u64 n)
{
	struct lg_scratch *s = scratch();
	__u64 i, skip = 0, t, l; /* 64-bit: the verifier bounds the length it checks */
	__u8 *b;

	if (!s || n > 40)
		return LG_REASON_MALFORMED;
	if (!n)
		return LG_REASON_NONE;
	b = s->buf;
	if (ld(ctx, off, b, n))
		return LG_REASON_MALFORMED;
	/* Byte by byte, skipping each option's body: the index is the loop's
	 * own, so the verifier needs no precise value of a read length. */
	for (i = 0; i < 40; i++) {
		if (i >= n)
			break;
		if (skip) {
			skip--;
			continue;
		}
		t = b[i];
		if (t == 0) /* end of the list */
			break;
		if (t == 1) /* no-op */
			continue;
		if (i + 1 >= n)
			return LG_REASON_MALFORMED;
		l = b[i + 1];
		if (l < 2 || i + l > n)
			return LG_REASON_MALFORMED;
		if (t == 0x83 || t == 0x89)
			return LG_REASON_IP_SOURCE_ROUTE;
		skip = l - 1;
	}
	return LG_REASON_NONE;
}

static __always_inline __u32 parse_ipv4(struct xdp_md *ctx, struct lg_pkt *p, __u8 *b)
{
	__u32 l3 = p->l3, ihl, tot, fo, more;
	struct lg_scratch *s;

	if (l3 + 20 > p->len || ld(ctx, l3, b, 20) || b[0] >> 4 != 4)
		return LG_REASON_MALFORMED;
	ihl = (__u32)(b[0] & 0xf) * 4;
	tot = (__u32)(b[2] << 8 | b[3]);
	if (ihl < 20 || l3 + ihl > p->len || tot < ihl || l3 + tot > p->len)
		return LG_REASON_MALFORMED;
	p->family = 4;
	p->l3_end = l3 + tot;
	p->ttl = b[8];
	p->proto = b[9];
	addr_v4(p->src, b + 12);
	addr_v4(p->dst, b + 16);
	if (p->proto == 0) /* HOPOPT means nothing in IPv4 */
		return LG_REASON_MALFORMED;
	fo = (__u32)(b[6] << 8 | b[7]);
	more = fo & 0x2000;
	p->frag_offset = (fo & 0x1fff) * 8;
	p->frag_id = (__u32)(b[4] << 8 | b[5]);
	p->frag_payload = tot - ihl;
	p->fragment = more || p->frag_offset;
	p->first_fragment = p->fragment && p->frag_offset == 0;
	if (p->fragment && p->frag_offset + p->frag_payload > 65535)
		return LG_REASON_MALFORMED;
	if (ihl > 20) {
		__u32 r = (__u32)lg_ipv4_options(ctx, l3 + 20, ihl - 20);

		if (r)
			return r;
		s = scratch();
		if (!s)
			return LG_REASON_MALFORMED;
		p = &s->p;
		b = s->buf;
	}
	p->l4 = l3 + ihl;
	if (p->fragment && !p->first_fragment)
		return LG_REASON_NONE;
	return parse_l4(ctx, p, b);
}

static __always_inline __u32 parse_ipv6(struct xdp_md *ctx, struct lg_pkt *p, __u8 *b)
{
	__u32 l3 = p->l3, plen, off, n = 0, seen_frag = 0, i;
	__u8 nh;

	if (l3 + 40 > p->len || ld(ctx, l3, b, 40) || b[0] >> 4 != 6)
		return LG_REASON_MALFORMED;
	plen = (__u32)(b[4] << 8 | b[5]);
	if (plen == 0 || l3 + 40 + plen > p->len) /* jumbograms are not forwarded */
		return LG_REASON_MALFORMED;
	if (addr_mapped(b + 8) || addr_mapped(b + 24)) /* not on the wire (RFC 4291 2.5.5.2) */
		return LG_REASON_MALFORMED;
	p->family = 6;
	p->l3_end = l3 + 40 + plen;
	p->ttl = b[7];
	addr_cpy(p->src, b + 8);
	addr_cpy(p->dst, b + 24);
	nh = b[6];
	off = l3 + 40;
	/* At most LG_MAX_IPV6_EXT headers; the ninth is the error. */
	for (i = 0; i < LG_MAX_IPV6_EXT + 1; i++) {
		__u8 next;

		if (!is_ipv6_ext(nh))
			break;
		if ((nh == 0 && n != 0) || (nh == 44 && seen_frag) || ++n > LG_MAX_IPV6_EXT)
			return LG_REASON_IPV6_EXT_CHAIN;
		if (off + 8 > p->l3_end || ld(ctx, off, b, 8))
			return LG_REASON_MALFORMED;
		next = b[0];
		if (nh == 44) {
			__u32 fo = (__u32)(b[2] << 8 | b[3]);
			__u32 foff = (fo >> 3) * 8;

			seen_frag = 1;
			if ((fo & 1) || foff) { /* atomic fragments are whole packets */
				p->fragment = 1;
				p->first_fragment = foff == 0;
				p->frag_offset = foff;
				p->frag_id = (__u32)b[4] << 24 | (__u32)b[5] << 16 | (__u32)b[6] << 8 | b[7];
				p->frag_payload = p->l3_end - (off + 8);
				if (foff + p->frag_payload > 65535)
					return LG_REASON_MALFORMED;
			}
			off += 8;
			nh = next;
			if (p->fragment && !p->first_fragment)
				break;
			continue;
		}
		/* A Routing header with segments left: the destination is the
		 * next hop, not the end, so policy and translation would be of
		 * the wrong address (and the L4 checksum is over the final one). */
		if (nh == 43 && b[3] != 0)
			return LG_REASON_IPV6_EXT_CHAIN;
		{
			__u32 len = ((__u32)b[1] + 1) * 8;

			if (off + len > p->l3_end)
				return LG_REASON_MALFORMED;
			off += len;
		}
		nh = next;
	}
	p->proto = nh;
	p->l4 = off;
	if (p->fragment && !p->first_fragment)
		return LG_REASON_NONE;
	return parse_l4(ctx, p, b);
}

/* Parse the frame into scratch->p; returns LG_REASON_NONE or the drop reason. */
__noinline int lg_parse(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *p;
	__u32 off = 14, i;
	__u16 et;
	__u8 *b;

	if (!s)
		return LG_REASON_MALFORMED;
	p = &s->p;
	b = s->buf;
	__builtin_memset(p, 0, sizeof(*p));
	p->len = bpf_xdp_get_buff_len(ctx);
	if (p->len < 14 || ld(ctx, 12, b, 2))
		return LG_REASON_MALFORMED;
	et = (__u16)(b[0] << 8 | b[1]);
	for (i = 0; i <= LG_MAX_VLAN_DEPTH; i++) {
		if (et != 0x8100 && et != 0x88a8)
			break;
		if (i == LG_MAX_VLAN_DEPTH)
			return LG_REASON_VLAN_DEPTH;
		if (off + 4 > p->len || ld(ctx, off + 2, b, 2))
			return LG_REASON_MALFORMED;
		et = (__u16)(b[0] << 8 | b[1]);
		off += 4;
	}
	p->ethertype = et;
	p->l3 = off;
	if (et == 0x0800)
		return parse_ipv4(ctx, p, b);
	if (et == 0x86dd)
		return parse_ipv6(ctx, p, b);
	return LG_REASON_NONE;
}

/* The IP header quoted in an ICMP error (control/packet.cpp parse_inner),
 * into scratch->in. Returns 1 when usable. */
__noinline int lg_parse_inner(struct xdp_md *ctx)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *q;
	__u32 off, end;
	__u8 *b;

	if (!s)
		return 0;
	q = &s->in;
	b = s->buf;
	off = s->p.l4 + 8;
	end = s->p.l3_end;
	__builtin_memset(q, 0, sizeof(*q));
	q->l3 = off;
	if (s->p.family == 4) {
		__u32 ihl;

		if (off + 20 > end || ld(ctx, off, b, 20) || b[0] >> 4 != 4)
			return 0;
		ihl = (__u32)(b[0] & 0xf) * 4;
		if (ihl < 20 || off + ihl + 8 > end)
			return 0;
		q->family = 4;
		q->proto = b[9];
		addr_v4(q->src, b + 12);
		addr_v4(q->dst, b + 16);
		if ((b[6] << 8 | b[7]) & 0x1fff) /* a quoted later fragment has no ports */
			return 0;
		q->l4 = off + ihl;
	} else {
		if (off + 48 > end || ld(ctx, off, b, 40) || b[0] >> 4 != 6)
			return 0;
		q->family = 6;
		q->proto = b[6];
		addr_cpy(q->src, b + 8);
		addr_cpy(q->dst, b + 24);
		q->l4 = off + 40; /* quotes with extension headers are not matched */
	}
	q->l3_end = end;
	if (ld(ctx, q->l4, b, 8))
		return 0;
	if (q->proto == P_TCP || q->proto == P_UDP) {
		q->sport = (__u16)(b[0] << 8 | b[1]);
		q->dport = (__u16)(b[2] << 8 | b[3]);
	} else if ((q->family == 4 && q->proto == P_ICMP) || (q->family == 6 && q->proto == P_ICMP6)) {
		q->icmp_type = b[0];
		q->icmp_code = b[1];
		q->icmp_id = (__u16)(b[4] << 8 | b[5]);
	} else {
		return 0;
	}
	q->has_l4 = 1;
	return 1;
}

/* Read the address at off (4 or 16 bytes) into d as 16 bytes. */
static __always_inline void rd_addr(struct xdp_md *ctx, __u32 off, int v4, __u8 *d)
{
	if (v4) {
		__u8 b[4] = {};

		ld(ctx, off, b, 4);
		addr_v4(d, b);
	} else {
		ld(ctx, off, d, 16);
	}
}

static __always_inline void wr_addr(struct xdp_md *ctx, __u32 off, int v4, __u8 *a)
{
	if (v4)
		st(ctx, off, a + 12, 4);
	else
		st(ctx, off, a, 16);
}

/*
 * Replace the source (dst = 0) or destination address of the IP header at
 * p.l3 with scratch->na, and the port with nport (host order) when has_port;
 * l4: update the L4 checksum too (evaluator.cpp rewrite_addr).
 */
__noinline int lg_rewrite(struct xdp_md *ctx, __u32 dst, __u32 has_port, __u32 nport, __u32 l4)
{
	struct lg_scratch *s = scratch();
	struct lg_pkt *p;
	__u32 aoff, co, poff, acc;
	int v4, ports, pseudo;
	__u16 c;

	if (!s)
		return 0;
	p = &s->p;
	v4 = p->family == 4;
	aoff = v4 ? p->l3 + (dst ? 16 : 12) : p->l3 + (dst ? 24 : 8);
	rd_addr(ctx, aoff, v4, s->old);
	if (v4) {
		acc = lg_csum_begin(rd16(ctx, p->l3 + 10));
		acc = lg_csum_add_addr(acc, s->old, s->na, 1);
		wr16(ctx, p->l3 + 10, lg_csum_end(acc));
	}
	wr_addr(ctx, aoff, v4, s->na);
	if (!l4)
		return 0;
	poff = p->l4 + (dst ? 2 : 0);
	ports = p->proto == P_TCP || p->proto == P_UDP;
	pseudo = ports || p->proto == P_ICMP6;
	if (!pseudo)
		return 0;
	co = p->proto == P_TCP ? p->l4 + 16 : p->proto == P_UDP ? p->l4 + 6 : p->l4 + 2;
	c = rd16(ctx, co);
	if (p->proto == P_UDP && c == 0)
		return 0; /* no UDP checksum to keep */
	acc = lg_csum_begin(c);
	acc = lg_csum_add_addr(acc, s->old, s->na, v4);
	if (ports && has_port) {
		acc = lg_csum_add(acc, rd16(ctx, poff), (__u16)nport);
		wr16(ctx, poff, (__u16)nport);
	}
	c = lg_csum_end(acc);
	if (p->proto == P_UDP && c == 0)
		c = 0xffff;
	wr16(ctx, co, c);
	return 0;
}

#endif /* LG_PKT_BPF_H */
