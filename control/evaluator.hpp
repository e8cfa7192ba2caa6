// The reference evaluator: SPEC §3–§5 written plainly, over the policy model
// and a flow table. It is the oracle both dataplanes are tested against and
// what `explain` answers from. Clarity over speed: every rule is scanned.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model.hpp"
#include "net.hpp"
#include "packet.hpp"
#include "result.hpp"

extern "C" {
#include "lg_flow.h"
#include "lg_limits.h"
#include "lg_reasons.h"
}

namespace lg {

// The host's side of forwarding (SPEC §3 step 6): interfaces with their MAC
// and VNet, routes and resolved neighbours. XDP reads the same from the
// kernel (bpf_fib_lookup); DPDK is configured with it.
struct HostInterface {
	uint32_t ifindex = 0;
	Mac mac{};
	std::string vnet; // VNet whose traffic arrives here; "" for none (backend side)
};
struct HostRoute {
	Prefix prefix;
	uint32_t ifindex = 0;
	std::optional<Addr> gateway; // none: on-link
};
struct HostNeighbor {
	uint32_t ifindex = 0;
	Addr ip;
	Mac mac{};
};
struct HostConfig {
	std::vector<HostInterface> interfaces;
	std::vector<HostRoute> routes;
	std::vector<HostNeighbor> neighbors;
	std::vector<Addr> local_addresses; // the host's own: passed to its stack
};

struct EvaluatorConfig {
	uint64_t tcp_established_ns = LG_TIMEOUT_TCP_ESTABLISHED * 1000000000ull;
	uint64_t tcp_transient_ns = LG_TIMEOUT_TCP_TRANSIENT * 1000000000ull;
	uint64_t tcp_close_ns = LG_TIMEOUT_TCP_CLOSE * 1000000000ull;
	uint64_t udp_ns = LG_TIMEOUT_UDP * 1000000000ull;
	uint64_t icmp_ns = LG_TIMEOUT_ICMP * 1000000000ull;
	uint64_t fragment_ns = LG_FRAG_TIMEOUT * 1000000000ull;
	size_t flow_capacity = LG_CT_CAPACITY_DEFAULT;
	size_t frag_capacity = LG_FRAG_CAPACITY_DEFAULT;
};

struct TraceStep {
	lg_stage stage = LG_STAGE_NONE;
	std::string object; // NSG, private endpoint or server name
	std::string rule;   // NSG rule or firewall/VNet rule name
	bool allowed = false;
};

struct Decision {
	lg_verdict verdict = LG_VERDICT_DROP;
	lg_reason reason = LG_REASON_NONE;
	lg_stage stage = LG_STAGE_NONE;
	std::string nsg, rule; // the NSG rule that decided, when one did
	std::vector<TraceStep> trace;
	std::vector<uint8_t> frame; // bytes out for FORWARD, PASS and TX
	uint32_t egress_ifindex = 0;
	std::string private_endpoint, server, backend; // backend as "ip:port"
	bool flow_created = false;
	uint64_t generation = 0;
};

// A 5-tuple for explain (SPEC §6).
struct Tuple {
	std::string vnet;
	Addr src, dst;
	uint8_t proto = kProtoTcp;
	uint16_t sport = 0, dport = 0;
	// The VNet of the interface the packet leaves by, when the caller knows
	// it (linkgated asks the host's routes): the destination's subnet and
	// NIC are looked up in it. Empty: the evaluator's own routes, else vnet.
	std::string egress_vnet = {};
};

struct Counters {
	std::array<uint64_t, LG_REASON__COUNT> reasons{}; // [LG_REASON_NONE]: not dropped
	std::map<std::string, uint64_t> rule_hits;         // "nsg/rule"
	std::map<std::string, uint64_t> private_endpoints; // packets to each PE
	std::map<std::string, uint64_t> servers;           // packets to each server
};

struct FlowView {
	std::string orig, reply; // "vni proto src:sport > dst:dport"
	lg_ct_state state = LG_CT_NEW;
	lg_dest_kind kind = LG_DEST_ROUTED;
	std::string object, backend;
	uint64_t generation = 0, expires_ns = 0;
};

const char *reason_name(lg_reason r);
const char *stage_name(lg_stage s);
const char *verdict_name(lg_verdict v);

class Evaluator {
public:
	explicit Evaluator(HostConfig host, EvaluatorConfig cfg = {});
	~Evaluator();
	Evaluator(const Evaluator &) = delete;
	Evaluator &operator=(const Evaluator &) = delete;

	// Validate and publish a new generation (SPEC §4). Rejected: nothing changes.
	Status commit(const State &s);
	uint64_t generation() const;

	// Decide one frame that arrived on `ingress_ifindex` at monotonic `now_ns`.
	Decision process(std::span<const uint8_t> frame, uint32_t ingress_ifindex, uint64_t now_ns);
	// What the current generation would do with a new flow of this tuple; no
	// state changes, no counters.
	Decision explain(const Tuple &t) const;

	size_t reclaim(uint64_t now_ns); // expired flows and fragments; returns flows removed
	size_t flow_count() const;
	size_t flow_keys() const; // a flow has two, a flow to itself one (the dataplanes' count)
	size_t fragment_count() const;
	std::vector<FlowView> flows() const;
	const Counters &counters() const;

	struct Impl;

private:
	std::unique_ptr<Impl> impl_;
};

} // namespace lg
