// linkgate-bench xdp-cost: ns/packet of the XDP program under
// BPF_PROG_TEST_RUN for an established flow, new-flow decisions through a
// small and a large NSG, and a deny, beside a bare forwarding program, in
// interleaved rounds (docs/xdp-performance.md says what each number holds).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace CLI {
class App;
}

namespace lg::bench {

struct XdpCostOptions {
	uint32_t repeat = 1000000; // BPF_PROG_TEST_RUN iterations per sample
	int rounds = 9;            // samples per case, cases interleaved
	int warmup = 1;            // rounds run first and not counted
	uint32_t flows = 100000;   // flow-table capacity, filled before measuring
	int big_rules = 1000, big_prefixes = 10000;
	int small_rules = 10, small_prefixes = 100;
	uint64_t seed = 1;
	std::string json_path;
	std::vector<std::string> only; // case names; empty: all
	bool quiet = false;
};

// Registers the subcommand; *run is set when it was chosen.
CLI::App *add_xdp_cost(CLI::App &app, XdpCostOptions &o);

// Returns the process exit code (0 ok, 1 failure). cmdline goes into the JSON.
int run_xdp_cost(const XdpCostOptions &o, const std::string &cmdline);
// The same, also handing the JSON (or {"error": ...}) to *result; with
// own_netns false it runs in the caller's network namespace (linkgate-bench
// all gives it a private one).
int run_xdp_cost_into(const XdpCostOptions &o, const std::string &cmdline, nlohmann::json *result, bool own_netns);

} // namespace lg::bench
