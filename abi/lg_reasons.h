/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Verdicts and drop reasons: the one list shared by BPF, DPDK, the agent and
 * the CLI. APPEND-ONLY: a reason's number is part of the pinned-map ABI and of
 * counters read by operators. Never renumber, never reuse; retire by leaving
 * the entry in place.
 */
#ifndef LG_REASONS_H
#define LG_REASONS_H

enum lg_verdict {
	LG_VERDICT_DROP = 0,
	LG_VERDICT_PASS = 1,    /* to the host stack */
	LG_VERDICT_FORWARD = 2, /* out the egress interface, possibly rewritten */
	LG_VERDICT_TX = 3,      /* back out the ingress interface (ARP/NDP replies) */
};

/* X(symbol, number, "stable-name") */
#define LG_REASON_LIST(X)                                        \
	X(NONE, 0, "none")                                       \
	X(MALFORMED, 1, "malformed")                             \
	X(VLAN_DEPTH, 2, "vlan-depth")                           \
	X(IPV6_EXT_CHAIN, 3, "ipv6-ext-chain")                   \
	X(FRAGMENT_NO_FIRST, 4, "fragment-no-first")             \
	X(FRAGMENT_OVERLAP, 5, "fragment-overlap")               \
	X(TTL_EXCEEDED, 6, "ttl-exceeded")                       \
	X(NSG_DENY, 7, "nsg-deny")                               \
	X(NSG_DEFAULT_DENY, 8, "nsg-default-deny")               \
	X(PEC_PENDING, 9, "pec-pending")                         \
	X(PEC_REJECTED, 10, "pec-rejected")                      \
	X(PEC_DISCONNECTED, 11, "pec-disconnected")              \
	X(PE_PORT, 12, "pe-port")                                \
	X(PUBLIC_ACCESS_DISABLED, 13, "public-access-disabled")  \
	X(FIREWALL_NO_MATCH, 14, "firewall-no-match")            \
	X(VNET_RULE_NO_MATCH, 15, "vnet-rule-no-match")          \
	X(NO_BACKEND, 16, "no-backend")                          \
	X(CT_INVALID, 17, "ct-invalid")                          \
	X(CT_FULL, 18, "ct-full")                                \
	X(FRAG_TABLE_FULL, 19, "frag-table-full")                \
	X(NO_ROUTE, 20, "no-route")                              \
	X(PUBLIC_PORT, 21, "public-port")                        \
	X(CT_CLASH, 22, "ct-clash")                              \
	X(IP_SOURCE_ROUTE, 23, "ip-source-route")

enum lg_reason {
#define LG_REASON_ENUM_(sym, num, name) LG_REASON_##sym = num,
	LG_REASON_LIST(LG_REASON_ENUM_)
#undef LG_REASON_ENUM_
	LG_REASON__COUNT
};

/* Stage that decided a packet (explain, traces, flow logs). Append-only too. */
#define LG_STAGE_LIST(X)                         \
	X(NONE, 0, "none")                       \
	X(PARSE, 1, "parse")                     \
	X(FRAGMENT, 2, "fragment")               \
	X(CONNTRACK, 3, "conntrack")             \
	X(NIC_OUTBOUND, 4, "nic-outbound")       \
	X(SUBNET_OUTBOUND, 5, "subnet-outbound") \
	X(PRIVATE_ENDPOINT, 6, "private-endpoint") \
	X(PE_SUBNET_INBOUND, 7, "pe-subnet-inbound") \
	X(PUBLIC_ENDPOINT, 8, "public-endpoint") \
	X(SUBNET_INBOUND, 9, "subnet-inbound")   \
	X(NIC_INBOUND, 10, "nic-inbound")        \
	X(BACKEND, 11, "backend")                \
	X(FORWARD, 12, "forward")                \
	X(ADDRESS_RESOLUTION, 13, "address-resolution")

enum lg_stage {
#define LG_STAGE_ENUM_(sym, num, name) LG_STAGE_##sym = num,
	LG_STAGE_LIST(LG_STAGE_ENUM_)
#undef LG_STAGE_ENUM_
	LG_STAGE__COUNT
};

#endif /* LG_REASONS_H */
