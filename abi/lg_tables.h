/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Generation tables: what the policy compiler (control/compiler.hpp) produces
 * from one validated State and what the XDP program and the DPDK fast path
 * read. Every table of a generation lives in inner maps of their own; one
 * update of the active slot publishes a whole generation (SPEC §4), so a
 * packet reads the slot once and sees one generation only.
 *
 * Addresses are 16 bytes, IPv4 as ::ffff:a.b.c.d (see lg_flow.h). Multi-byte
 * integers are host order unless named _be.
 *
 * NSG classification is bit-vector based (bpf-iptables, Miano et al. 2019;
 * Lakshman & Stiliadis 1998): for one NSG as applied in one VNet and one
 * direction, each field (source, destination, source port, destination port)
 * is cut into elementary intervals, each interval carries the bitmap of rules
 * that match it on that field, and a packet's rule is the first bit set in
 * the AND of its four field bitmaps and its protocol-class bitmap. Rules are
 * numbered by priority, so the first set bit is the lowest priority number.
 * A field lookup is a binary search over the interval starts: its cost grows
 * with log2(intervals), not with rules or prefixes.
 */
#ifndef LG_TABLES_H
#define LG_TABLES_H

#include <linux/types.h>

#include "lg_flow.h"

#define LG_NSG_WORDS 16                      /* 1,024 rule bits per NSG and direction */
#define LG_NSG_MAX_RULES (LG_NSG_WORDS * 64) /* 1,000 custom + 6 default fit */
#define LG_BSEARCH_STEPS 21                  /* up to 2^21 intervals per field */
#define LG_NONE 0xffffffffu

enum lg_field {
	LG_F_SRC = 0,
	LG_F_DST = 1,
	LG_F_SPORT = 2,
	LG_F_DPORT = 3,
	LG_F__COUNT
};

/* Protocol classes an NSG rule can name. */
enum lg_proto_class {
	LG_PC_TCP = 0,
	LG_PC_UDP = 1,
	LG_PC_ICMP = 2, /* ICMP and ICMPv6 */
	LG_PC_ESP = 3,
	LG_PC_AH = 4,
	LG_PC_OTHER = 5,
	LG_PC__COUNT
};

/*
 * One elementary interval of one field: values v with lo <= v < next.lo map to
 * lg_bitmap[bitmap]. Ports are stored in lo[14..15] big-endian, lo[0..13] = 0.
 * Intervals of a field are sorted by lo (memcmp order) and the first starts
 * at the all-zero value, so every value falls in exactly one.
 */
struct lg_ivl {
	__u8 lo[16];
	__u32 bitmap;
	__u32 pad0;
};
LG_STATIC_ASSERT(sizeof(struct lg_ivl) == 24, "lg_ivl layout");

struct lg_bitmap {
	__u64 w[LG_NSG_WORDS]; /* bit r of word r/64: rule r */
};

struct lg_span {
	__u32 off; /* first element */
	__u32 n;   /* element count */
};

#define LG_NSG_F_FLUSH (1u << 0) /* flushConnection: re-check flows on a new generation */

/* One NSG as applied in one VNet (its VirtualNetwork tag), one direction. */
struct lg_nsg_dir {
	struct lg_span field[LG_F__COUNT];  /* into lg_ivl */
	__u32 proto_bitmap[LG_PC__COUNT];   /* into lg_bitmap */
	__u32 portless_bitmap;              /* rules a packet without ports can match */
	__u32 nwords;                       /* words in use: (nrules + 63) / 64 */
	__u32 rule_base;                    /* index of rule 0 in lg_rule */
	__u32 nrules;
	__u32 flags;                        /* LG_NSG_F_* */
	__u32 nsg;                          /* NSG index (names, counters) */
};

struct lg_rule {
	__u32 counter; /* index into the per-rule hit counters */
	__u8 allow;
	__u8 is_default;
	__u16 pad0;
};

/* Subnets: LPM trie keyed by VNI then address. prefixlen = 32 + 128-bit len. */
struct lg_subnet_key {
	__u32 prefixlen;
	__u32 vni_be; /* big-endian so the trie's bit order starts with the VNI */
	__u8 addr[16];
};

#define LG_SUBNET_F_SQL_ENDPOINT (1u << 0) /* Microsoft.Sql service endpoint */
#define LG_SUBNET_F_PE_POLICIES (1u << 1)  /* privateEndpointNetworkPolicies Enabled */

struct lg_subnet {
	__u32 id;      /* subnet index (VNet rules name subnets by it) */
	__u32 nsg_out; /* lg_nsg_dir index or LG_NONE */
	__u32 nsg_in;  /* lg_nsg_dir index or LG_NONE */
	__u32 flags;   /* LG_SUBNET_F_* */
};

/* NICs and private endpoints: exact (VNI, address). */
struct lg_addr_key {
	__u32 vni;
	__u8 addr[16];
};

struct lg_nic {
	__u32 nsg_out; /* lg_nsg_dir index or LG_NONE */
	__u32 nsg_in;
};

enum lg_pec_status {
	LG_PEC_APPROVED = 0,
	LG_PEC_PENDING = 1,
	LG_PEC_REJECTED = 2,
	LG_PEC_DISCONNECTED = 3,
};

struct lg_pe {
	__u32 id;        /* private endpoint index (counters, flows) */
	__u32 server;    /* lg_server index */
	__u32 subnet_in; /* the endpoint subnet's Inbound lg_nsg_dir when policies are Enabled, else LG_NONE */
	__u8 status;     /* enum lg_pec_status */
	__u8 pad0[3];
	__u32 uid;       /* stable across generations: hash of endpoint and server names */
};
LG_STATIC_ASSERT(sizeof(struct lg_pe) == 20, "lg_pe layout");

#define LG_SERVER_F_PUBLIC (1u << 0)      /* publicNetworkAccess Enabled */
#define LG_SERVER_F_ALLOW_AZURE (1u << 1) /* has the 0.0.0.0 rule */

struct lg_server {
	__u32 flags;
	struct lg_span ranges;   /* into lg_fwrange: merged, sorted, disjoint IPv4 ranges */
	__u32 maglev[2];         /* offset of the v4 / v6 table in lg_maglev, LG_NONE: no backend */
	struct lg_span backends; /* into lg_backend: every backend, weight 0 included */
	__u32 uid;               /* stable across generations: hash of the server name */
};
LG_STATIC_ASSERT(sizeof(struct lg_server) == 32, "lg_server layout");

/* Public endpoints: exact address -> lg_server index. */
struct lg_pubip_key {
	__u8 addr[16];
};

struct lg_fwrange {
	__u32 lo; /* IPv4, host order, inclusive */
	__u32 hi;
};

/* VNet rules: (server, subnet id) present = allowed. */
struct lg_vnetrule_key {
	__u32 server;
	__u32 subnet;
};

struct lg_backend {
	__u8 addr[16];
	__u16 port_be;
	__u16 pad0;
};

/* lg_maglev: LG_MAGLEV_SIZE __u32 per table, each an lg_backend index or LG_NONE. */

/* Interfaces: ifindex -> VNI of the VNet whose traffic arrives there (0: none)
 * and the interface's MAC (source of ARP replies and neighbour advertisements). */
struct lg_iface {
	__u32 vni;
	__u8 mac[6];
	__u16 pad0;
};
LG_STATIC_ASSERT(sizeof(struct lg_iface) == 12, "lg_iface layout");

/* Per-generation scalars: lg_gcfg[0]. */
struct lg_gcfg {
	__u64 generation;
	struct lg_span azure_cloud; /* into lg_ivl: AzureCloud tag; bitmap 1 = inside, 0 = outside */
	__u32 n_nsg_dirs;
	__u32 pad0;
};

#endif /* LG_TABLES_H */
