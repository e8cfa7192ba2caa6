/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps of the XDP program. Generation tables (abi/lg_tables.h) live in inner
 * maps behind 2-slot outer maps; lg_active names the slot a packet uses. The
 * inner templates carry BPF_F_INNER_MAP (arrays) so the loader sizes each
 * inner map to its content.
 */
#ifndef LG_MAPS_BPF_H
#define LG_MAPS_BPF_H

#include "lg_flow.h"
#include "lg_limits.h"
#include "lg_reasons.h"
#include "lg_tables.h"
#include "lg_xdp.h"

#define LG_INNER_ARRAY(tname, vtype)                 \
	struct tname {                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);    \
		__uint(map_flags, BPF_F_INNER_MAP);  \
		__uint(max_entries, 1);              \
		__type(key, __u32);                  \
		__type(value, vtype);                \
	}

#define LG_INNER_HASH(tname, ktype, vtype)           \
	struct tname {                               \
		__uint(type, BPF_MAP_TYPE_HASH);     \
		__uint(max_entries, 1);              \
		__type(key, ktype);                  \
		__type(value, vtype);                \
	}

#define LG_OUTER(name, tname)                                \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);    \
		__uint(max_entries, LG_GEN_SLOTS);           \
		__type(key, __u32);                          \
		__array(values, struct tname);               \
	} name SEC(".maps")

LG_INNER_ARRAY(lg_ivl_t, struct lg_ivl);
LG_INNER_ARRAY(lg_bitmap_t, struct lg_bitmap);
LG_INNER_ARRAY(lg_nsg_dir_t, struct lg_nsg_dir);
LG_INNER_ARRAY(lg_rule_t, struct lg_rule);
LG_INNER_ARRAY(lg_server_t, struct lg_server);
LG_INNER_ARRAY(lg_fwrange_t, struct lg_fwrange);
LG_INNER_ARRAY(lg_backend_t, struct lg_backend);
LG_INNER_ARRAY(lg_maglev_t, __u32);
LG_INNER_ARRAY(lg_gcfg_t, struct lg_gcfg);
LG_INNER_HASH(lg_nic_t, struct lg_addr_key, struct lg_nic);
LG_INNER_HASH(lg_pe_t, struct lg_addr_key, struct lg_pe);
LG_INNER_HASH(lg_pubip_t, struct lg_pubip_key, __u32);
LG_INNER_HASH(lg_vnetrule_t, struct lg_vnetrule_key, __u32);
LG_INNER_HASH(lg_iface_t, __u32, struct lg_iface);

struct lg_subnet_t {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct lg_subnet_key);
	__type(value, struct lg_subnet);
};

LG_OUTER(lg_ivl, lg_ivl_t);
LG_OUTER(lg_bitmap, lg_bitmap_t);
LG_OUTER(lg_nsg_dir, lg_nsg_dir_t);
LG_OUTER(lg_rule, lg_rule_t);
LG_OUTER(lg_subnet, lg_subnet_t);
LG_OUTER(lg_nic, lg_nic_t);
LG_OUTER(lg_pe, lg_pe_t);
LG_OUTER(lg_pubip, lg_pubip_t);
LG_OUTER(lg_server, lg_server_t);
LG_OUTER(lg_fwrange, lg_fwrange_t);
LG_OUTER(lg_vnetrule, lg_vnetrule_t);
LG_OUTER(lg_backend, lg_backend_t);
LG_OUTER(lg_maglev, lg_maglev_t);
LG_OUTER(lg_iface, lg_iface_t);
LG_OUTER(lg_gcfg, lg_gcfg_t);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lg_active);
} lg_active SEC(".maps");

/* Two entries per flow (orig and reply key); the loader sets 2 x capacity.
 * Not LRU: established flows are never evicted (SPEC §4). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 65536);
	__type(key, struct lg_flow_key);
	__type(value, struct lg_flow_entry);
} lg_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LG_FRAG_CAPACITY_DEFAULT);
	__type(key, struct lg_frag_key);
	__type(value, struct lg_frag_entry);
} lg_frags SEC(".maps");

/* Flow-log records (abi/lg_flow.h), drained by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LG_FLOWLOG_CAPACITY);
	__type(key, struct lg_flow_key);
	__type(value, struct lg_flowlog_entry);
} lg_flowlog SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_LOG__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lg_log_cnt SEC(".maps");

/* Packets per reason (index LG_REASON_NONE counts packets not dropped). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_REASON__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lg_reason_cnt SEC(".maps");

/* Hits per NSG rule (lg_rule::counter); sized by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} lg_rule_cnt SEC(".maps");

/* Packets per private endpoint (lg_pe::id) and per server (index). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_MAX_PRIVATE_ENDPOINTS);
	__type(key, __u32);
	__type(value, __u64);
} lg_pe_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_MAX_SERVERS);
	__type(key, __u32);
	__type(value, __u64);
} lg_srv_cnt SEC(".maps");

/* Forwarded packets per egress ifindex (< LG_EGRESS_COUNTERS). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LG_EGRESS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} lg_egress_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lg_local_key);
	__type(value, __u8);
} lg_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct lg_ifmac);
} lg_ifmac SEC(".maps");

/* ---- per-packet scratch (the 512-byte stack cannot hold it) ---- */

/* What the parser learnt (control/packet.hpp's Parsed). */
struct lg_pkt {
	__u32 len;    /* frame bytes */
	__u32 l3, l3_end, l4;
	__u32 frag_id, frag_offset, frag_payload;
	__u16 ethertype, sport, dport, icmp_id; /* host order */
	__u8 family;  /* 0, 4 or 6 */
	__u8 proto, ttl, has_l4, fragment, first_fragment;
	__u8 tcp_flags, icmp_type, icmp_code, pad[3];
	__u8 src[16], dst[16];
};

/* One direction of a new flow and what policy made of it (PolicyResult). */
struct lg_pol {
	__u32 vni;
	__u8 family, proto, has_ports, recheck;
	__u16 sport, dport; /* host order */
	__u8 src[16], dst[16];
	__u8 key[16];       /* field value being searched */
	__u32 allowed, reason, stage, kind;
	__u32 pe, server, backend; /* LG_NONE when none */
	__u32 uid;                 /* the endpoint's or server's stable id */
	__u32 egress;       /* route's egress ifindex for dst, 0 none */
	__u32 nhits;        /* re-check: rule hits held back until it fails */
	__u32 hits[4];
	__u32 counter;      /* the denying rule's lg_rule::counter (flow logs) */
};

/* Inner map value types by value: clang emits only a forward declaration in
 * BTF for a struct reached through pointers alone, and libbpf then cannot
 * size the inner map templates. */
union lg_btf_anchor {
	struct lg_ivl ivl;
	struct lg_bitmap bitmap;
	struct lg_nsg_dir nsg_dir;
	struct lg_rule rule;
	struct lg_subnet subnet;
	struct lg_nic nic;
	struct lg_pe pe;
	struct lg_server server;
	struct lg_fwrange fwrange;
	struct lg_backend backend;
	struct lg_iface iface;
	struct lg_gcfg gcfg;
	struct lg_addr_key addr_key;
	struct lg_pubip_key pubip_key;
	struct lg_subnet_key subnet_key;
	struct lg_vnetrule_key vnetrule_key;
	struct lg_active active;
	struct lg_ifmac ifmac;
	struct lg_local_key local_key;
};

struct lg_scratch {
	/* First: read by the loaders (XdpDataplane::fast_packets, the engine). */
	__u64 fast_packets; /* forwarded by the established-flow fast path */
	union lg_btf_anchor anchor;
	struct lg_pkt p;
	struct lg_pkt in;   /* quoted packet of an ICMP error */
	struct lg_pol pol;
	struct lg_flow_key k __attribute__((aligned(8))); /* lg_fast writes it in 8-byte words */
	struct lg_flow_key k2;
	struct lg_flow_entry e;
	struct lg_frag_key fk;
	struct lg_frag_entry fe;
	struct bpf_fib_lookup fib;
	__u8 na[16], old[16], tmp[16];
	__u8 buf[64];
	__u32 slot, vni, ifindex, egress;
	__u32 reason; /* drop reason of the verdict */
	__s32 fib_rc; /* last bpf_fib_lookup result */
	__u32 cpe, csrv; /* private endpoint / server to count, LG_NONE */
	__u32 nh_dir;    /* lg_forward caches its next hop in e.nh[nh_dir] (2: no) */
	__u64 now;
	__u64 agen;       /* lg_active.generation as read with the slot */
	__u32 nh_max_age; /* a cached next hop younger than this many 2^20 ns is trusted */
	__u32 nh_pad;
	/* Fast path's cache of the ingress VNI: valid for (fc_gen, fc_slot, fc_if). */
	__u64 fc_gen;
	__u32 fc_slot, fc_if, fc_vni, fc_pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lg_scratch);
} lg_scratch SEC(".maps");

static __always_inline struct lg_scratch *scratch(void)
{
	__u32 z = 0;

	return bpf_map_lookup_elem(&lg_scratch, &z);
}

static __always_inline void cnt(void *map, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);

	if (c)
		*c += 1;
}

#endif /* LG_MAPS_BPF_H */
