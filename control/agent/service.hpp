// The agent's request handler: JSON-RPC 2.0 over the policy State, free of
// sockets so that it can be tested in-process. Methods are named after the az
// commands ("network.nsg.rule.create"), params after their flags in camelCase
// ("nsgName"). Every change is applied to a copy, validated, committed through
// the hook (dataplanes, state file) and only then adopted; a reply names the
// generation it was served from. See docs/agent.md.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <functional>
#include <string>
#include <string_view>

#include "arm_json.hpp"
#include "compiler.hpp"
#include "evaluator.hpp"
#include "model.hpp"
#include "result.hpp"

namespace lg::agent {

// Error codes. The -327xx/-326xx ones are JSON-RPC's; the -320xx ones are in
// its range for implementation-defined server errors and are stable.
enum Code : int {
	kParseError = -32700,
	kInvalidRequest = -32600,
	kMethodNotFound = -32601,
	kInvalidParams = -32602,
	kInternalError = -32603,
	kRejected = -32001,      // validation refused the change (CLI exit 1)
	kNotFound = -32002,      // the named object does not exist (CLI exit 3)
	kCommitFailed = -32003,  // a dataplane or the state file refused the commit
	kMessageTooLarge = -32010,
	kPermissionDenied = -32011,
	kTooManyConnections = -32012,
	kIdleTimeout = -32013,
	kWouldEmpty = -32014,    // a fast path's registration that would replace its policy with nothing
};

inline constexpr size_t kMaxMessage = 1u << 20; // bytes per request line, newline excluded
inline constexpr size_t kMaxDepth = kMaxJsonDepth; // nesting of arrays and objects (nesting_depth, arm_json.hpp)

// Commits a validated State to every dataplane and the state file; returns the
// generation now live. An error leaves the previous generation live.
using CommitHook = std::function<Result<uint64_t>(const State &)>;

// A JSON-RPC error response (id null when the request's id is unknown).
nlohmann::json error_response(const nlohmann::json &id, int code, const std::string &message,
			      const nlohmann::json &data = nullptr);

// What an attached dataplane tells the service: the compiled tables of the
// live generation (explain), its counters mapped to names, its flow table.
// Without one the reference evaluator answers (in-process tests).
struct DataplaneCounters {
	std::array<uint64_t, LG_REASON__COUNT> reasons{};
	std::map<std::string, uint64_t> rules; // "nsg/rule"
	std::map<std::string, uint64_t> private_endpoints, servers;
	uint64_t flows = 0;
	// Per dataplane ("xdp", "dpdk:<name>"): generation, forwarded, dropped,
	// flows. Shown by `stats` as `dataplanes`.
	nlohmann::json dataplanes = nlohmann::json::object();
};

// `flows` lists at most this many flows unless asked for more (`top`).
constexpr int64_t kFlowsDefaultTop = 1000;
constexpr int64_t kFlowsMaxTop = 10000000;

class Dataplane {
public:
	virtual ~Dataplane() = default;
	virtual const CompiledTables *live_tables() const = 0;
	virtual DataplaneCounters counters() = 0;
	// The `flows` method's result: at most `limit` flows (a full table is a
	// million; the listing must not cost the agent that much memory).
	virtual nlohmann::json flows(size_t limit) = 0;
	// How the dataplane's host would answer for a packet to dst: one of its
	// own addresses (the program passes it to the host), no route (dropped
	// no-route), a route by an interface (explain looks the destination up
	// in that interface's VNet), or not known (no host routes held here, or
	// the lookup failed).
	struct Route {
		enum Kind { unknown, local, none, via } kind = unknown;
		uint32_t ifindex = 0;
	};
	virtual Route route(const Addr &) const { return {}; }
	// Whether the kernel forwards `v6 ? IPv6 : IPv4` arriving on an
	// interface bound to VNI vni (bpf_fib_lookup answers FWD_DISABLED
	// otherwise, which the program drops as no-route). True when no
	// interface is bound to it.
	virtual bool forwards(uint32_t, bool) const { return true; }
	// The attached dataplanes, for `status` ({kind, name, generation, ...}).
	virtual nlohmann::json describe() { return nlohmann::json::array(); }
};

class Service {
public:
	// `initial` must be valid and already live as `generation`. Without a hook
	// the service numbers generations itself (tests).
	Service(State initial, uint64_t generation, CommitHook commit = {});

	// One request object. Returns the response, or null for a notification.
	nlohmann::json handle(const nlohmann::json &request);
	// One line of text (JSON-RPC over the socket). Returns "" for a notification.
	std::string handle_line(std::string_view line);

	const State &state() const { return state_; }
	uint64_t generation() const { return generation_; }
	// The current state committed again as a new generation: the
	// dataplane's bindings changed under it (an interface recreated).
	Result<uint64_t> republish();
	// The reference evaluator on the current state. It is brought up to
	// date here, when asked (explain's trace, answers without a dataplane),
	// not on every commit: its rebuild validates and lowers the whole state
	// once more, which is most of a large state's commit time.
	Evaluator &evaluator();
	void set_dataplane(Dataplane *dp) { dataplane_ = dp; }

	struct Impl;

private:
	State state_;
	uint64_t generation_;
	CommitHook commit_;
	Evaluator evaluator_;
	bool evaluator_stale_ = false; // state_ changed since evaluator_ last saw it
	// The last commit failed: a dataplane may enforce something else than
	// state_ (its restore can fail too), so the same state is committed again.
	bool unsure_ = false;
	Dataplane *dataplane_ = nullptr;
};

} // namespace lg::agent
