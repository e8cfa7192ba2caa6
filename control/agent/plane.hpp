// The agent's commit path: compiles each validated State, publishes the
// generation to the XDP dataplane (pinned, so it outlives the agent), then
// writes the state file, and answers explain/stats/flows from the live
// generation. At start it adopts a pinned dataplane and continues its
// generation numbers. See docs/agent.md ("Commit and dataplane").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "compiler.hpp"
#include "flow_log.hpp"
#include "host_events.hpp"
#include "service.hpp"
#include "xdp_loader.hpp"

namespace lg::agent {

// --xdp-interface IFACE[=VNET]. Without =VNET the interface follows the
// state's only VNet.
struct IfaceSpec {
	std::string name;
	std::string vnet;
	bool explicit_vnet = false;
};
Result<IfaceSpec> parse_iface_spec(const std::string &text);

struct PlaneOptions {
	std::string state_path;
	std::vector<IfaceSpec> ifaces; // none: no dataplane (generations are still numbered)
	XdpConfig xdp;                 // pin_dir: where the dataplane is pinned
	uint64_t sweep_interval_ns = 1000000000ull; // linkgated's --reclaim-interval (stats' flow count)
	bool no_state_file = false; // the state file did not exist: `initial` is empty
};

FlowSample flow_sample(const lg_flow_sample &f);

class Plane final : public Dataplane {
public:
	// Loads (adopting pins), publishes `initial` unless the pinned generation
	// already is it, and attaches to every interface.
	static Result<std::unique_ptr<Plane>> open(const PlaneOptions &o, const State &initial);

	// The commit hook: compile, publish, then the state file (durable) and
	// the live marker. A failed publish changes nothing; a failed state file
	// write puts the previous state back in the dataplane. Returns the
	// generation now live.
	Result<uint64_t> commit(const State &next);
	uint64_t generation() const { return generation_; }
	// Whether a fast path that runs generation g may be enforcing another
	// state file's policy, which this agent's would replace with nothing:
	// the agent started on an empty state, has committed nothing since, and
	// g is past the last generation its state file's agents published (the
	// live marker's). A mistyped --state, say (docs/decisions.md, "An empty
	// start and the fast paths that run").
	bool would_empty(uint64_t g) const { return g > empty_guard_; }
	size_t reclaim(); // expired flows removed
	bool has_xdp() const { return xdp_ != nullptr; }
	// The host's addresses go to the host (lg_local) as they change, and
	// every change of what a route lookup answers ends the program's cached
	// next hops (HostEvents, docs/agent.md "The host's FIB"): a netlink
	// socket on the address, route, rule, link, netconf and neighbour
	// groups, opened before the first read so that no change falls between
	// the two (-1 without XDP). When it is readable, host_events() drains it.
	int host_events_fd() const { return nl_fd_; }
	Status host_events();
	// A link event was read: a configured interface may have been recreated
	// (a new ifindex, the old link gone with its device) or given a new MAC.
	bool relink_pending() const { return relink_pending_; }
	// Attaches the program to every configured interface that lacks it and
	// reads the MACs again. True when an interface's ifindex changed: the
	// caller publishes the current state on the new bindings (a commit),
	// then prune_links() lets the old links go.
	Result<bool> relink();
	void prune_links();
	void relink_later() { relink_pending_ = true; } // the publish failed: again at the next round
	// Every change was read up to now: the program may trust its cached
	// next hops for an hour (not a second) until kFibWatchNs from now. The
	// control loop calls it every kFibBeatMs; a loop held up longer than the
	// window (a long request) lets it lapse, and the second applies again.
	Status fib_heartbeat();
	static constexpr uint64_t kFibWatchNs = 1000000000ull;
	static constexpr int kFibBeatMs = 250;
	// stats: {"watched", "hostEvents", "fibChanges", "neighbours", "fastPath"} (XDP only).
	nlohmann::json next_hops() const;
	// Whether the program makes flow-log records, and how many it wrote
	// and lost (lg_log_cnt): `stats`.
	nlohmann::json flow_log_counts() const;
	~Plane() override;

	const CompiledTables *live_tables() const override { return &live_; }
	Route route(const Addr &dst) const override;
	bool forwards(uint32_t vni, bool v6) const override;
	DataplaneCounters counters() override;
	nlohmann::json flows(size_t limit) override;
	// Flow logs: the XDP plane's lg_flowlog records (drained) and its flows
	// with their counts; none without XDP.
	std::optional<FlowLogInput> flow_log();

private:
	Plane() = default;
	Result<std::vector<InterfaceBinding>> bindings(const State &s) const;
	std::string digest(const State &s, const std::vector<InterfaceBinding> &b) const;
	Status write_live_marker(uint64_t generation, const std::string &digest) const;
	void rebase(const CompiledTables &next);
	void warn_forwarding_off(const State &s) noexcept;
	std::string restore(CompiledTables previous);

	PlaneOptions o_;
	int nl_fd_ = -1;
	int lock_fd_ = -1; // the pin directory, flock()ed: one agent per pinned dataplane
	HostEvents events_;
	uint64_t event_messages_ = 0, fib_changes_ = 0;
	std::vector<uint32_t> ifindex_;
	bool relink_pending_ = false;
	bool addresses_pending_ = false; // the host's addresses failed to be read: again at each heartbeat
	std::string addresses_error_;    // the cause last reported; empty: the last write succeeded
	bool rebound_ = false; // ifindex_ changed since the last publish
	std::set<std::pair<uint32_t, bool>> forwarding_warned_; // (ifindex, IPv6) said to be off
	uint64_t empty_guard_ = UINT64_MAX; // would_empty() above it; none after a commit
	std::unique_ptr<XdpDataplane> xdp_;
	State current_;
	CompiledTables live_;
	CompileCache cache_; // what the next compile reuses (Maglev tables)
	uint64_t generation_ = 0;
	// Counters are indexed per generation; names keep their totals across
	// generations: base + (raw now - raw at the last commit).
	std::map<std::string, uint64_t> base_rules_, base_pes_, base_servers_;
	std::vector<uint64_t> snap_rules_, snap_pes_, snap_servers_;
};

// The control thread's scheduling (linkgated --realtime; docs/agent.md,
// "Scheduling"). With fifo > 0 it runs at that SCHED_FIFO priority while it
// waits for requests and through a commit up to the publish (the new
// generation live), and at normal priority from there to the reply (state
// file, fsync, live marker, DPDK acks): that bookkeeping never holds a CPU
// against the rest of the host. Call configure once, on the control thread.
struct ControlScheduling {
	int fifo = 0; // SCHED_FIFO priority; 0: normal scheduling throughout
};
Status configure_control_scheduling(const ControlScheduling &s);
void control_scheduling_after_publish(); // Plane::commit, once the generation is live
void control_scheduling_ready();         // the server, before it waits for requests

// LINKGATED_TEST_PAUSE=<point>: the agent stops itself (SIGSTOP) at that
// point of every commit; tests kill it there. Points, in commit order:
// before-publish, after-publish, after-state-write.
void test_pause(const char *point);
// LINKGATED_TEST_FAIL=publish: every publish of a commit fails as a refused
// map update would. LINKGATED_TEST_FAIL=state-write: every state file write
// of a commit fails (after the publish), to test the restore.
bool test_fail(const char *what);

} // namespace lg::agent
