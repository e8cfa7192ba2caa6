// NSG flow logs in Azure's version 2 format (SPEC §6): snapshots of a
// dataplane's flows and the events it recorded (abi/lg_flow.h, lg_flowlog)
// become one NetworkSecurityGroupFlowEvent record per NSG per interval. Pure:
// the agent calls tick() on a timer and appends the records to a file.
//
// A tuple is
//   unixSeconds,srcIP,dstIP,srcPort,dstPort,proto,direction,decision,state,
//   pktsSrcToDst,bytesSrcToDst,pktsDstToSrc,bytesDstToSrc
// proto T|U (only TCP and UDP are logged: v2 names no other), direction O for
// the *_OUTBOUND stages and I for the *_INBOUND ones, decision A|D, state B
// (begin, counts empty), C (continuing) or E (end), counts since the flow's
// previous tuple. Addresses and ports are the original direction's before
// translation: the client's view (a private endpoint's IP, not the backend).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compiler.hpp"
#include "model.hpp"
#include "table_eval.hpp"

extern "C" {
#include "lg_flow.h"
}

namespace lg {

// "2026-11-30T21:31:03.123Z": a wall-clock time (ns since the epoch), UTC to the millisecond.
std::string iso_time(uint64_t unix_ns);

// One flow a dataplane holds now: its original-direction copy, and each direction's counts.
struct FlowSample {
	lg_flow_entry e{};            // the original copy (flags without LG_FLOW_F_REPLY)
	uint64_t packets[2] = {0, 0}; // [0] source->destination (the orig copy's), [1] back (the reply copy's)
	uint64_t bytes[2] = {0, 0};
	bool reply_found = true;      // false: the reply copy was not read; [1] is not known
};

struct FlowEvent {
	lg_flow_key key{};
	lg_flowlog_entry v{};
};

struct FlowLogInput {
	std::string plane;             // "xdp", "dpdk:NAME": each plane's flows are tracked apart
	std::vector<FlowSample> flows; // every flow the plane holds now
	bool flows_complete = true;    // false: the listing was cut; flows not listed did not end
	uint64_t listed_ns = 0;        // the dataplane's clock when the listing ended (0: mono_ns)
	uint64_t lost = 0;             // records the dataplane could not keep, since it started
	std::vector<FlowEvent> events; // drained since the last tick (drain them before listing the flows)
};

class FlowLogger {
public:
	using MacOf = std::function<std::string(uint32_t ifindex)>; // 12 upper-case hex digits, "" unknown
	// One interval. unix_ns/mono_ns: the wall and monotonic clocks now (event times are monotonic).
	// Returns the records to append: one per NSG that has tuples this tick.
	std::vector<nlohmann::json> tick(const FlowLogInput &in, const State &state, const CompiledTables &live,
					 uint64_t unix_ns, uint64_t mono_ns, const MacOf &mac);
	size_t tracked() const; // flows being tracked, all planes
	// Forget the planes not named (a fast path gone for good).
	void keep_planes(const std::vector<std::string> &planes);
	uint64_t stale() const; // deny events that the live policy no longer attributes to an NSG rule

private:
	// One NSG a flow crosses, resolved when the flow was learned: the tables'
	// counters are renumbered by later generations, names are not.
	struct Level {
		uint32_t name = 0;    // into names_: "nsg/rule"
		uint32_t ifindex = 0; // the interface on the NSG's side (its MAC)
		char dir = 0;         // 'I' | 'O'
		char decision = 0;    // 'A' | 'D'
		bool is_default = false;
	};
	struct Flow {
		Level levels[kTeMaxLevels];
		uint8_t nlevels = 0;
		bool ended = false;        // its E tuples are out; kept while it is still listed
		uint64_t base[4] = {};     // counts at its last tuple (pkts, bytes there, pkts, bytes back)
		uint64_t seen[4] = {};     // counts at the last listing
		uint64_t learned = 0;      // serial_ of the tick that learned it
		uint64_t listed = 0;       // serial_ of the last tick that listed it
		uint64_t since_mono = 0;   // it existed at this monotonic time (its BEGIN, or a listing)
	};
	using Key = std::array<uint8_t, sizeof(lg_flow_key)>;
	using Plane = std::map<Key, Flow>;
	struct Out; // this tick's tuples, by NSG, rule and MAC

	Flow learn(const lg_flow_key &k, uint32_t in_ifindex, uint32_t egress_ifindex, const CompiledTables &live);
	uint32_t intern(const std::string &rule_name);
	void compact();
	static std::string mac_text(uint32_t ifindex, const MacOf &mac);
	void emit(Out &out, const Key &k, const Flow &f, uint64_t unix_s, char state, const uint64_t *delta,
		  const MacOf &mac) const;
	void deny(Out &out, const FlowEvent &ev, const State &state, const CompiledTables &live, uint64_t unix_ns,
		  uint64_t mono_ns, const MacOf &mac);

	std::map<std::string, Plane> planes_;
	// Rule names the tracked flows refer to; rebuilt when it holds many more
	// than they use (policies that renamed rules).
	std::vector<std::string> names_;
	std::map<std::string, uint32_t> name_ids_;
	static constexpr size_t kCompactMin = 1024;
	size_t compact_at_ = kCompactMin;
	uint64_t serial_ = 0; // tick() calls
	uint64_t stale_ = 0;
};

} // namespace lg
