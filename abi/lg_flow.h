/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow table layouts shared by the XDP program, the DPDK fast path and the
 * agent (which reads and reclaims pinned flows). Fixed-width, explicit
 * padding, sizes asserted: a change of layout or meaning here bumps
 * LG_XDP_LAYOUT_VERSION (lg_xdp.h), and a loader that finds pinned maps of
 * another version refuses them.
 */
#ifndef LG_FLOW_H
#define LG_FLOW_H

#include <linux/types.h>

#ifdef __cplusplus
#define LG_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define LG_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* Addresses are 16 bytes; IPv4 is stored as ::ffff:a.b.c.d (RFC 4291). */
#define LG_AF_INET 4
#define LG_AF_INET6 6

/*
 * One direction of a flow. Ports in network byte order; ICMP echo uses the
 * identifier as sport and 0 as dport (the reply key swaps them), and says
 * which way it goes in `echo`: with identifier 0 the ports alone would make
 * an echo request from the far side, or any other ICMP message, a packet of
 * the flow (SPEC §3 step 3: those are decided as new packets).
 */
enum lg_echo_dir {
	LG_ECHO_NONE = 0,    /* not an ICMP echo */
	LG_ECHO_REQUEST = 1, /* the initiator's direction */
	LG_ECHO_REPLY = 2,   /* the responder's */
};

/* The echo direction of a key's reverse. */
static inline __u8 lg_echo_reverse(__u8 echo)
{
	return echo ? (__u8)(LG_ECHO_REQUEST + LG_ECHO_REPLY - echo) : (__u8)LG_ECHO_NONE;
}

struct lg_flow_key {
	__u32 vni;      /* VNet of the interface the packet arrives on (0: none) */
	__u8 family;    /* LG_AF_INET or LG_AF_INET6 */
	__u8 proto;     /* IPPROTO_* */
	__u8 echo;      /* enum lg_echo_dir */
	__u8 pad0;
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
};
LG_STATIC_ASSERT(sizeof(struct lg_flow_key) == 44, "lg_flow_key layout");

enum lg_ct_state {
	LG_CT_NEW = 0,         /* first packet seen, no reply yet */
	LG_CT_ESTABLISHED = 1, /* reply seen (TCP: the handshake's last ACK after it) */
	LG_CT_CLOSING = 2,     /* FIN seen in one direction */
	LG_CT_CLOSED = 3,      /* FIN both ways or RST: ends LG_TIMEOUT_TCP_CLOSE later */
};

enum lg_dest_kind {
	LG_DEST_ROUTED = 0,           /* routed unchanged */
	LG_DEST_PRIVATE_ENDPOINT = 1, /* DNAT to a backend of the PE's server */
	LG_DEST_PUBLIC_ENDPOINT = 2,  /* DNAT to a backend of the server */
};

#define LG_FLOW_F_REPLY (1u << 0)   /* this entry is keyed by the reply tuple */
#define LG_FLOW_F_FIN_ORIG (1u << 1)
#define LG_FLOW_F_FIN_REPLY (1u << 2)
#define LG_FLOW_F_RST (1u << 3)
#define LG_FLOW_F_REPLIED (1u << 4) /* TCP, NEW: the reply direction has sent (SYN-ACK) */
/* A new flow's reservation of its original key while its maker decides
 * (lg_flow_reserve): no flow to any reader; expires_ns is the maker's clock. */
#define LG_FLOW_F_CLAIM (1u << 5)
#define LG_FLOW_CLAIM_NS 1000000000ull /* a claim older than this is stale: taken over */

/* Value stored under both the original and the reply key of a flow. */
/* Next hop of one direction of a flow as the last full-path packet of that
 * direction resolved it (bpf_fib_lookup, or the DPDK routes); the fast path
 * reuses it while it is younger than the prelude's bound (docs/xdp.md, "The
 * next hop's lifetime"). */
struct lg_nexthop {
	__u32 ifindex;    /* egress; 0: none cached */
	__u32 in_ifindex; /* the ingress it was resolved from */
	__u8 dmac[6];
	__u8 smac[6];
	__u32 at;         /* (now_ns >> 20) when resolved; ages compare mod 2^32 */
};
LG_STATIC_ASSERT(sizeof(struct lg_nexthop) == 24, "lg_nexthop layout");

struct lg_flow_entry {
	__u64 generation;   /* policy generation last checked against */
	__u64 expires_ns;   /* monotonic; set on each packet, once on close. The fast path
			     * refreshes only the copy it found: a flow expires at the
			     * later of its two copies' expires_ns */
	__u8 state;         /* enum lg_ct_state */
	__u8 flags;         /* LG_FLOW_F_* */
	__u8 kind;          /* enum lg_dest_kind */
	__u8 pad0;
	__u32 object_id;    /* private endpoint or server index in the generation */
	struct lg_flow_key orig; /* original-direction key (pre-translation) */
	__u8 nat_addr[16];  /* backend address (kind != ROUTED) */
	__u16 nat_port;     /* backend port, network byte order */
	__u16 pad1;
	__u32 egress_ifindex;
	__u32 object_uid;   /* lg_pe/lg_server uid: the re-check knows it is the same object */
	struct lg_nexthop nh[2]; /* [0] original direction, [1] reply */
	__u32 server;       /* server index to count (LG_NONE: none), as of `generation` */
	__u32 reply_vni;    /* VNI of the reply key: the egress interface's when the flow was
			     * made, kept, so that a later VNet binding names the same key */
	/* Last, so that a rewrite of the rest leaves them (lg_ct.bpf.h flow_put). */
	__u64 packets;      /* frames of this copy's direction (the orig copy: source to
			     * destination; the reply copy: back), for flow logs */
	__u64 bytes;        /* their frame lengths as received */
};
LG_STATIC_ASSERT(sizeof(struct lg_flow_entry) == 168, "lg_flow_entry layout");

/* Whether the copy e has expired at now for the sweeps (the agent's and
 * linkgate-dpdk's): a claim counts from its maker's clock plus
 * LG_FLOW_CLAIM_NS, so that a sweep never removes a flow being made. */
static inline int lg_flow_copy_expired(const struct lg_flow_entry *e, __u64 now)
{
	return now >= e->expires_ns + ((e->flags & LG_FLOW_F_CLAIM) ? LG_FLOW_CLAIM_NS : 0);
}

/* Whether copy e stands for its flow in listings and flow logs: the
 * original copy of a flow that is made (the reply copy names it by the
 * other key; a claim is a flow still being made). */
static inline int lg_flow_listed(const struct lg_flow_entry *e)
{
	return !(e->flags & (LG_FLOW_F_REPLY | LG_FLOW_F_CLAIM));
}

/* The key the reply copy of flow e is stored under (the program's and the
 * agent's one definition). Its VNI is the one the flow was made with
 * (reply_vni), not the egress interface's in the current generation: a VNet
 * bound anew would name another flow's key. */
static inline void lg_flow_reply_key(const struct lg_flow_entry *e, struct lg_flow_key *r)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->vni = e->reply_vni;
	r->family = e->orig.family;
	r->proto = e->orig.proto;
	r->echo = lg_echo_reverse(e->orig.echo);
	if (e->kind != LG_DEST_ROUTED) {
		__builtin_memcpy(r->src, e->nat_addr, 16);
		r->sport = e->nat_port;
	} else {
		__builtin_memcpy(r->src, e->orig.dst, 16);
		r->sport = e->orig.dport;
	}
	__builtin_memcpy(r->dst, e->orig.src, 16);
	r->dport = e->orig.sport;
}

/*
 * lg_flowlog: what NSG flow logs (SPEC §6) need to hear of as it happens,
 * keyed by the packet's lg_flow_key (original direction, before translation,
 * the ingress VNI). The program writes a record only where none is (a bounded
 * map, drained by the agent each flow-log interval); a full map counts
 * LG_LOG_LOST. TCP and UDP only: the v2 tuple names no other protocol.
 */
enum lg_flowlog_kind {
	LG_FLOWLOG_BEGIN = 1, /* an allowed flow was made */
	LG_FLOWLOG_DENY = 2,  /* an NSG denied a packet (nsg-deny, nsg-default-deny) */
};

struct lg_flowlog_entry {
	__u64 at_ns;          /* monotonic, when written */
	__u64 generation;     /* the generation that decided */
	__u32 ifindex;        /* ingress */
	__u32 egress_ifindex; /* the route's egress (0: none): picks the destination's VNet */
	__u32 counter;        /* DENY: the deciding rule (lg_rule::counter) */
	__u8 kind;            /* enum lg_flowlog_kind */
	__u8 reason;          /* DENY: enum lg_reason (the agent works out the stage) */
	__u8 pad0[2];
};
LG_STATIC_ASSERT(sizeof(struct lg_flowlog_entry) == 32, "lg_flowlog_entry layout");

/* One flow as the agent's flow log reads it (not a map value): the original
 * copy, and the reply copy's counts. */
struct lg_flow_sample {
	struct lg_flow_entry e;
	__u64 reply_packets;
	__u64 reply_bytes;
	__u32 reply_found; /* 0: no reply copy was read (a flow to itself, or one
			    * being removed): the reply counts are not known */
	__u32 pad0;
};
LG_STATIC_ASSERT(sizeof(struct lg_flow_sample) == 192, "lg_flow_sample layout");

/* lg_log_cnt indices. */
enum lg_log_counter {
	LG_LOG_WRITTEN = 0, /* records written to lg_flowlog */
	LG_LOG_LOST = 1,    /* records not written: lg_flowlog was full (or no memory) */
	LG_LOG__COUNT = 2,
};

/* Remembered verdict of a first fragment, keyed by lg_frag_key. */
struct lg_frag_key {
	__u32 vni;
	__u8 family;
	__u8 proto;
	__u16 pad0;
	__u32 id; /* IPv4: 16-bit id widened; IPv6: fragment header id */
	__u8 src[16];
	__u8 dst[16];
};
LG_STATIC_ASSERT(sizeof(struct lg_frag_key) == 44, "lg_frag_key layout");

struct lg_frag_entry {
	__u64 expires_ns;
	__u8 verdict;   /* enum lg_verdict, or LG_FRAG_PENDING */
	__u8 reason;    /* enum lg_reason */
	__u16 covered;  /* bytes of the datagram's payload the first fragment carried */
	__u32 egress_ifindex;
	__u8 new_src[16]; /* L3 addresses after translation */
	__u8 new_dst[16];
};
LG_STATIC_ASSERT(sizeof(struct lg_frag_entry) == 48, "lg_frag_entry layout");

/* A first fragment's placeholder while its maker decides (its slot held
 * against a full table): no memory to later fragments; expires_ns is the
 * maker's clock, and the sweeps keep it LG_FLOW_CLAIM_NS past that, as a
 * flow's claim, so that they never remove it under its maker. */
#define LG_FRAG_PENDING 0xff

/* Whether fragment memory e has expired at now for the sweeps. */
static inline int lg_frag_expired(const struct lg_frag_entry *e, __u64 now)
{
	return now >= e->expires_ns + (e->verdict == LG_FRAG_PENDING ? LG_FLOW_CLAIM_NS : 0);
}

#endif /* LG_FLOW_H */
