/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps of the XDP dataplane that are not generation tables (see lg_tables.h
 * for those): the active slot, interface MACs for ARP/ND answers, the host's
 * own addresses. Shared by bpf/lg_xdp.bpf.c and the loader (bpf/xdp_loader.*).
 */
#ifndef LG_XDP_H
#define LG_XDP_H

#include <linux/types.h>

#include "lg_flow.h"

/* Bumped when a pinned map's layout or meaning changes (3: outer maps of
 * three slots; 4: flow entries carry next hops, expiry per copy; 5: flow
 * keys of ICMP echo carry their direction, server counters LG_MAX_SERVERS;
 * 6: reason counters hold ct-clash; 7: flow entries keep their reply VNI;
 * 8: flow entries count packets and bytes, lg_flowlog and lg_log_cnt;
 * 9: reason counters hold ip-source-route). */
#define LG_XDP_LAYOUT_VERSION 9

/* Slots of every generation outer map: one live, the one the last flip
 * retired (packets may still read it until its RCU barrier), and one free to
 * be written. With three, a publish right after another writes the slot
 * retired two flips ago and does not wait for the last flip's barrier. */
#define LG_GEN_SLOTS 3

/* lg_active[0]: which slot of every generation outer map packets read. */
struct lg_active {
	__u32 slot;   /* < LG_GEN_SLOTS */
	__u32 layout; /* LG_XDP_LAYOUT_VERSION */
	__u64 generation; /* = lg_gcfg.generation of `slot` (the fast path relies on it) */
};
LG_STATIC_ASSERT(sizeof(struct lg_active) == 16, "lg_active layout");

/* lg_ifmac: ifindex -> MAC of that interface (source of ARP/ND answers). */
struct lg_ifmac {
	__u8 mac[6];
	__u16 pad0;
};
LG_STATIC_ASSERT(sizeof(struct lg_ifmac) == 8, "lg_ifmac layout");

/* lg_local: the host's own addresses (16 bytes, IPv4 mapped) -> 1. */
struct lg_local_key {
	__u8 addr[16];
};

/* Forwarded packets are counted per egress ifindex below this bound. */
#define LG_EGRESS_COUNTERS 1024

#endif /* LG_XDP_H */
