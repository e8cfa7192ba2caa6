// The policy decision over CompiledTables alone: the blueprint of what the
// XDP program and the DPDK fast path do per new flow (SPEC §3 steps 4–5, §5).
// Plain C-like code on purpose, step for step what the dataplanes copy; it is
// checked against Evaluator::explain by tests/compiler.
#pragma once

#include <cstdint>

#include "compiler.hpp"

extern "C" {
#include "lg_flow.h"
#include "lg_reasons.h"
}

namespace lg {

// One direction of a new flow.
struct TePacket {
	uint32_t vni;            // VNet of the ingress interface (0: none)
	uint8_t src[16];         // IPv4 as ::ffff:a.b.c.d
	uint8_t dst[16];
	uint8_t proto;           // IPPROTO_*
	uint8_t has_ports;       // TCP/UDP with its L4 header present
	uint16_t sport, dport;   // host order
	uint32_t egress_ifindex; // interface the route to dst leaves by (0: none); picks the destination VNet
};

// One NSG level te_decide ran, in evaluation order: flow logs record a flow
// in every NSG it crosses (Azure logs it in each).
struct TeLevel {
	uint32_t counter;   // lg_rule::counter of the rule that decided the level
	lg_stage stage;     // *_OUTBOUND or *_INBOUND (PE_SUBNET_INBOUND too)
	uint8_t allow;      // 1: the rule allows
	uint8_t is_default; // one of the six default rules
};

inline constexpr int kTeMaxLevels = 4; // NIC and subnet outbound, then at most two inbound

struct TeResult {
	uint8_t allowed;      // 1: forward (translated when backend != LG_NONE)
	lg_reason reason;     // LG_REASON_NONE when allowed
	lg_stage stage;       // as Decision::stage
	lg_dest_kind kind;    // what the destination is
	uint32_t counter;     // last NSG rule that matched (lg_rule::counter), LG_NONE when none
	uint32_t pe;          // lg_pe::id, LG_NONE
	uint32_t server;      // lg_server index, LG_NONE
	uint32_t backend;     // lg_backend index, LG_NONE
	uint8_t nlevels;      // NSG levels run (a level without an NSG is not one)
	TeLevel levels[kTeMaxLevels];
};

// Index of the interval of ivl[0..n) that holds key: at most LG_BSEARCH_STEPS
// halvings; ivl[0].lo is zero. n == 0 gives LG_NONE.
uint32_t te_ivl_find(const lg_ivl *ivl, uint32_t n, const uint8_t key[16]);

// First rule (index within the lg_nsg_dir, i.e. priority order) that matches,
// or LG_NONE.
uint32_t te_nsg_first(const CompiledTables &t, uint32_t dir, const TePacket *p);

// Longest-prefix match of (vni, addr) over t.subnets; nullptr when none.
const lg_subnet *te_subnet_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16]);
const lg_nic *te_nic_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16]);
const lg_pe *te_pe_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16]);
uint32_t te_pubip_lookup(const CompiledTables &t, const uint8_t addr[16]); // server or LG_NONE
uint32_t te_iface_vni(const CompiledTables &t, uint32_t ifindex);          // 0 when unknown

// The decision of evaluator.cpp's decide() for a new flow.
TeResult te_decide(const CompiledTables &t, const TePacket *p);

} // namespace lg
