/* SPDX-License-Identifier: Apache-2.0 */
/* Limits of SPEC §2 and §4, shared by the validator and the dataplanes. */
#ifndef LG_LIMITS_H
#define LG_LIMITS_H

#define LG_MAX_RULES_PER_NSG 1000
/* NSG rules counted, every NSG's custom and default rules together (the
 * rule counter arrays of XDP and DPDK) */
#define LG_MAX_RULE_COUNTERS 65536
#define LG_MAX_PREFIXES_PER_SIDE 4000
#define LG_PRIORITY_MIN 100
#define LG_PRIORITY_MAX 4096
#define LG_RULE_NAME_MAX 80
#define LG_RULE_DESCRIPTION_MAX 140
#define LG_VNI_MAX 0xffffff
/* Objects a state may hold: the dataplanes count packets per private
 * endpoint and per server in arrays of these sizes, and every server has
 * two Maglev tables (LG_MAGLEV_SIZE entries, 512 KiB) in every generation. */
#define LG_MAX_PRIVATE_ENDPOINTS 4096
#define LG_MAX_SERVERS 1024
/* Backends a server may list: a flow's re-check looks for its backend among
 * at most this many (bpf_loop), as the evaluator among all. */
#define LG_MAX_BACKENDS_PER_SERVER 4096

#define LG_MAX_VLAN_DEPTH 2
#define LG_MAX_IPV6_EXT 8

#define LG_MYSQL_PORT 3306

/* Maglev lookup table size per server and address family (prime). */
#define LG_MAGLEV_SIZE 65537

/* Defaults of SPEC §4 (seconds); configurable at run time. */
#define LG_CT_CAPACITY_DEFAULT 1000000
#define LG_TIMEOUT_TCP_ESTABLISHED 240
#define LG_TIMEOUT_TCP_TRANSIENT 30
#define LG_TIMEOUT_UDP 30
#define LG_TIMEOUT_ICMP 30
#define LG_TIMEOUT_TCP_CLOSE 10
#define LG_FRAG_TIMEOUT 5
#define LG_FRAG_CAPACITY_DEFAULT 65536
/* lg_flowlog: records between two drains by the agent (about 10 MB full). */
#define LG_FLOWLOG_CAPACITY 65536

#endif /* LG_LIMITS_H */
