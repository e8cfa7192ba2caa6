// linkgate-dpdk's engine: the XDP program's decision (lg_prog.c) over maps
// held in DPDK memory, NSG classification by rte_acl, generations published
// into LG_GEN_SLOTS slots and retired with RCU QSBR. One engine per process
// (the program's maps are process globals). docs/dpdk.md.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "acl.hpp"
#include "compiler.hpp"
#include "evaluator.hpp"
#include "result.hpp"
#include "umaps.hpp"

extern "C" {
#include "lg_flow.h"
#include "lg_host.h"
#include "lg_reasons.h"
#include "lg_xdp.h"
}

struct rte_mbuf;
struct rte_rcu_qsbr;

namespace lg::dp {

// A route with its next hop's MAC (linkgate-dpdk --route PREFIX=PORT,MAC).
struct MacRoute {
	Prefix prefix;
	uint32_t ifindex = 0;
	Mac mac{};
};

struct EngineConfig {
	HostConfig host; // interfaces (ifindex, MAC, VNet), routes, neighbours, own addresses
	std::vector<MacRoute> mac_routes; // searched with host.routes, longest prefix first
	EvaluatorConfig timeouts; // timeouts and table capacities
	unsigned workers = 1;     // reader threads (worker lcores), < LG_HOST_CPUS
	int acl_algorithm = 0;    // rte_acl_classify_alg; 0: DPDK's default for this CPU
	// rte_acl rules one NSG direction may expand to (lists are crossed with
	// lists); beyond it the direction uses the bit-vector walk of the XDP
	// program. docs/dpdk.md has the sizes and build times.
	size_t acl_max_rules = 20000;
	// Bytes one rte_acl context may take (rte_acl_config.max_size; 0: no
	// bound, rte_acl's smallest-node build in one pass). A context that does
	// not fit, or that the EAL's memory cannot hold, walks too.
	size_t acl_max_bytes = 0;
	bool flow_log = false; // make lg_flowlog's records (set_flow_log)
};

struct Verdict {
	lg_verdict verdict;
	lg_reason reason;
	uint32_t egress; // ifindex of a forward
};

// Totals by name since the engine started (SPEC §6 counters).
struct EngineCounters {
	std::array<uint64_t, LG_REASON__COUNT> reasons{}; // LG_REASON_NONE: packets not dropped
	std::map<std::string, uint64_t> rules, private_endpoints, servers;
	uint64_t flows = 0;
};

class Engine {
public:
	static Result<std::unique_ptr<Engine>> create(const EngineConfig &cfg);
	~Engine();

	// Control thread. Builds the generation (rte_acl contexts included, reused
	// when an NSG direction did not change), flips the active slot and
	// returns once every online worker has passed a quiescent state, i.e.
	// uses the new generation.
	Status publish(const CompiledTables &t);
	uint64_t generation() const { return generation_.load(); }
	bool ready() const { return published_; }
	// Both under the control lock: the telemetry thread asks while the main
	// lcore publishes (a slot's generation is freed by a later publish).
	uint64_t acl_builds() const;     // contexts built so far
	size_t walk_directions() const;  // live NSG directions without rte_acl
	// rte_acl classifications so far: (TSC cycles, lookups), all workers.
	// Cycles are every cycle spent in rte_acl and building its input,
	// speculative tuples of a burst included; lookups are the answers the
	// program was given.
	std::pair<uint64_t, uint64_t> classify_stats() const;
	// What the burst machinery did, all workers (decide_burst, decide).
	struct BurstStats {
		uint64_t hint_hits = 0;       // lg_flows lookups answered by the burst's pre-lookup
		uint64_t hint_misses = 0;     // lookups of another key, or of a forgotten hint
		uint64_t hints_forgotten = 0; // hints dropped by this worker's own insert/delete
		uint64_t acl_calls = 0;       // rte_acl_classify calls
		uint64_t acl_tuples = 0;      // tuples classified (batched speculatively or not)
		uint64_t acl_batched = 0;     // answers taken from a burst's batch
	};
	BurstStats burst_stats() const;
	Status set_acl_algorithm(int alg);                   // every live context
	// Flow timeouts from now on (linkgated's, given at registration);
	// flows keep the expiry their last packet set.
	void set_flow_timeouts(uint64_t tcp_established_ns, uint64_t tcp_transient_ns, uint64_t tcp_close_ns,
			       uint64_t udp_ns, uint64_t icmp_ns);
	const EvaluatorConfig &timeouts() const { return cfg_.timeouts; } // on set_flow_timeouts' thread only

	// Worker threads: wid < workers. online() once per thread before the
	// first packet (a thread the EAL did not create is registered with it
	// there, and unregistered by offline()); quiescent() between bursts.
	void online(unsigned wid);
	void offline(unsigned wid);
	void quiescent(unsigned wid);

	// Decide one frame in place (len unchanged: no verdict resizes a frame).
	// A burst of one: the same code path as decide_burst.
	Verdict decide(uint32_t ifindex, uint8_t *frame, uint32_t len, uint64_t now_ns);
	// A burst from one interface; out[i] for pkts[i]. Linearises chained mbufs.
	// Before the program runs: every frame's data prefetched, the flow keys
	// of its IPv4/IPv6 TCP/UDP frames looked up in one rte_hash bulk lookup
	// (the program's own lookups of them are answered from it: BurstHints
	// in umaps.hpp), and the frames that may start a flow classified
	// together by the first NSG direction one of them asks for.
	void decide_burst(uint32_t ifindex, rte_mbuf **pkts, uint16_t n, Verdict *out, uint64_t now_ns);
	// The same on frames; data[i] == nullptr: a frame that could not be
	// read (counted malformed). n <= 64.
	void decide_frames(uint32_t ifindex, uint8_t *const *data, const uint32_t *len, unsigned n, Verdict *out,
			   uint64_t now_ns);

	void set_time_offset(uint64_t ns); // tests: move the program's clock
	static uint64_t clock_ns();        // CLOCK_MONOTONIC, as bpf_ktime_get_ns

	EngineCounters counters();
	// One entry per flow (original keys); `generation` is the number of the
	// generation it was last checked against (0: older than 4096 publishes).
	std::vector<lg_flow_entry> flows(size_t max = SIZE_MAX); // the first max flows of a walk
	std::vector<lg_flow_sample> flow_samples(size_t max = SIZE_MAX); // and each one's reply counts
	// lg_flowlog's records, each removed as it is read; lg_log_cnt's sums.
	std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> drain_flowlog();
	uint64_t log_counter(lg_log_counter c);
	// Make flow-log records from now on, or stop (linkgated's choice, given
	// at registration): only an agent that logs drains them.
	void set_flow_log(bool on);
	bool flow_log() const { return flow_log_.load(std::memory_order_relaxed); } // any thread
	size_t flow_entries();              // both keys of every flow
	size_t fragment_entries() const { return frags_->count(); } // datagrams remembered, expired ones too
	size_t reclaim(uint64_t now_ns);    // expired flows and fragments removed
	const CompiledTables &live() const { return *live_; }
	// The live generation's rte_acl classifier of NSG direction `dir`, as the
	// workers call it (nullptr: the direction walks the program's bit vectors).
	std::shared_ptr<const AclClassifier> live_classifier(uint32_t dir) const;

	// C callbacks of lg_host.h.
	uint32_t nsg_first(uint32_t slot, uint32_t dir, uint8_t proto, uint8_t has_ports, uint16_t sport, uint16_t dport,
			   const uint8_t *src, const uint8_t *dst);
	long fib(lg_host_ctx *ctx, bpf_fib_lookup *f);
	// The program's map of that name as its code finds it (nullptr: none);
	// tests plant entries through it, as through XDP's skeleton.
	lg_umap *resolve(const char *name);

private:
	Engine() = default;
	struct Generation;
	Result<std::shared_ptr<Generation>> build(const CompiledTables &t);
	void reserve_rebase(const CompiledTables &old, const CompiledTables &next);
	void rebase_counters(const CompiledTables &old) noexcept;

	EngineConfig cfg_;
	std::atomic<bool> flow_log_{false};
	rte_rcu_qsbr *qsbr_ = nullptr;
	std::vector<std::unique_ptr<OuterMap>> outer_; // in LG_OUTER_NAMES order
	std::unique_ptr<ArrayMap> active_;
	std::unique_ptr<SharedHash> flows_, frags_, flowlog_;
	std::unique_ptr<PerCpuArray> reason_cnt_, rule_cnt_, pe_cnt_, srv_cnt_, egress_cnt_, log_cnt_, scratch_;
	std::unique_ptr<FixedHash> local_, ifmac_;
	std::array<std::shared_ptr<Generation>, LG_GEN_SLOTS> gens_{};
	std::map<std::string, std::shared_ptr<AclClassifier>> acl_cache_; // by rule set
	std::shared_ptr<const CompiledTables> live_;
	std::atomic<uint64_t> generation_{0};
	uint64_t stamp_ = 0;                      // publishes so far: what flows are stamped with
	std::map<uint64_t, uint64_t> stamp_gen_;  // stamp -> generation number published with it (recent ones)
	uint32_t active_slot_ = 0;
	bool published_ = false;
	uint64_t acl_builds_ = 0;
	mutable std::mutex control_; // publish, counters, flows, reclaim
	// One frame of a burst; next: not its first (lg_host_run_next).
	Verdict run_one(lg_host_ctx &c, bool next);
	uint32_t active_slot() const;                          // lg_active's slot, as the program reads it
	uint32_t vni_of(uint32_t slot, uint32_t ifindex) const; // egress_vni() of the program
	struct alignas(64) ClassifyStat {
		uint64_t cycles = 0, lookups = 0;
		BurstStats burst;
	};
	std::array<ClassifyStat, LG_HOST_CPUS> classify_{};

	// Fib
	struct Route {
		Prefix prefix;
		uint32_t ifindex;
		std::optional<Addr> gateway;
		std::optional<Mac> mac;  // next hop's MAC given with the route
		std::optional<Mac> smac; // the egress interface's
		// prefix as two masked 64-bit words, matched without lg::Prefix
		bool v4 = false;
		uint64_t net[2]{}, msk[2]{};
	};
	std::vector<Route> routes_; // longest first
	std::map<std::pair<uint32_t, Addr>, Mac> neigh_;

	// Counter totals by name; raw per-generation counters at the last publish.
	std::map<std::string, uint64_t> tot_rules_, tot_pes_, tot_servers_;
	std::vector<uint64_t> snap_rules_, snap_pes_, snap_servers_;
	// Totals of names the next generation lacks: erased once folded.
	std::vector<std::map<std::string, uint64_t>::iterator> gone_rules_, gone_pes_, gone_servers_;
};

} // namespace lg::dp
