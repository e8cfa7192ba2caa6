// Test harness for the XDP program: a fresh network namespace per test with
// veth devices, routes and permanent neighbours built from a HostConfig, so
// that bpf_fib_lookup under BPF_PROG_TEST_RUN sees the host the reference
// evaluator is given; and a runner that decides one frame with both and
// compares verdict, reason, output bytes, egress and counter deltas.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compiler.hpp"
#include "evaluator.hpp"
#include "hex.hpp"
#include "xdp_loader.hpp"
#ifdef LG_WITH_DPDK
#include "engine.hpp"
struct rte_mempool;
#endif

namespace lg::xdptest {

// Run a shell command in the test's namespace; false (and a test failure)
// when it does not exit 0.
bool sh(const std::string &cmd);

// Mount bpffs on /sys/fs/bpf when it is not (pinning tests).
bool ensure_bpffs();

// unshare(CLONE_NEWNET) for the calling process, then IPv4/IPv6 forwarding on.
bool enter_netns();

// Create one veth per interface of `tmpl` (any ifindex numbers) with its MAC,
// then its routes and neighbours and local addresses. Returns the same host
// with the kernel's ifindexes; `map` gets template ifindex -> real one.
HostConfig realize(const HostConfig &tmpl, std::map<uint32_t, uint32_t> *map = nullptr);

std::vector<InterfaceBinding> bindings(const HostConfig &h);

struct Outcome {
	lg_verdict verdict = LG_VERDICT_DROP;
	lg_reason reason = LG_REASON_NONE;
	std::vector<uint8_t> frame;
	uint32_t egress = 0;
};

using lg::testing::hex;

// Both sides of one dataplane comparison.
class Pair {
public:
	// Loads the program, makes the evaluator; host must be realized. With
	// `initial`, both start from it (one publish instead of two: each
	// publish waits for RCU grace periods). flow_log: both programs make
	// flow-log records (what linkgated --flow-log asks for).
	static std::unique_ptr<Pair> make(const HostConfig &host, const EvaluatorConfig &ecfg = {},
					  const State *initial = nullptr, bool flow_log = true);

	// Commit s to the evaluator, compile it with the evaluator's generation
	// number and publish it to XDP.
	bool commit(const State &s);

	// Decide one frame with both; adds a test failure on any difference
	// (verdict, reason, bytes, egress, counter deltas). Returns the evaluator's.
	Decision check(const std::vector<uint8_t> &frame, uint32_t ifindex, const std::string &what = "");

#ifdef LG_WITH_DPDK
	// Decide a burst of frames arriving on one interface with the DPDK
	// engine (Engine::decide_burst, its flow pre-lookup and batched
	// classification) and, frame by frame, with the evaluator; adds a test
	// failure on any difference (verdict, reason, bytes, egress, and the
	// burst's counter deltas). XDP is not asked (it has no bursts), so a
	// Pair used here must not be used by check() afterwards.
	void check_burst(const std::vector<std::vector<uint8_t>> &frames, uint32_t ifindex, const std::string &what = "");
#endif

	void advance(uint64_t ns); // both clocks
	uint64_t now() const;

	Evaluator &ev() { return *ev_; }
	XdpDataplane &dp() { return *dp_; }
	const CompiledTables &tables() const { return tables_; }
	const HostConfig &host() const { return host_; }

private:
	Outcome run_xdp(const std::vector<uint8_t> &frame, uint32_t ifindex);
	HostConfig host_;
#ifdef LG_WITH_DPDK
	// Built with LG_WITH_DPDK (tests/dpdk): linkgate-dpdk's engine decides
	// every frame too, held to the same evaluator.
	void check_dpdk(const std::vector<uint8_t> &frame, uint32_t ifindex, const Decision &d, const Counters &cb);
	void expect_dpdk_object_counts(const dp::EngineCounters &before, const dp::EngineCounters &after,
				       const Counters &cb);
	std::unique_ptr<dp::Engine> dpdk_;
	rte_mempool *pool_ = nullptr; // check_burst's mbufs, made at its first use

public:
	~Pair();
	dp::Engine &dpdk() { return *dpdk_; }

private:
#endif
	std::unique_ptr<Evaluator> ev_;
	std::unique_ptr<XdpDataplane> dp_;
	CompiledTables tables_;
	uint64_t offset_ = 0;
};

} // namespace lg::xdptest
