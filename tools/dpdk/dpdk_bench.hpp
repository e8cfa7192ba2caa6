// linkgate-bench dpdk (issue 5 §4, issue 7 §3): on the same rules and the
// same traffic, in one run, with repeats and ratios to a baseline measured in
// the same round —
//   dpdk-testpmd io forwarding     net_pcap(infinite_rx) -> net_null, Mpps
//   linkgate-dpdk                  same ports, 1k and 1M flows, Mpps, cycles/pkt
//   dpdk-test-acl                  raw rte_acl classify of the same 1,000 rules
//                                  and the same 5-tuples, cycles/pkt per algorithm
// docs/dpdk-performance.md says what each number holds and what bounds it.
//
// Wiring into linkgate-bench:
//   CLI::App *dpdk_cmd = lg::bench::register_dpdk_subcommand(app);
//   ... app.parse(argc, argv) ...
//   if (*dpdk_cmd) return lg::bench::run_dpdk_subcommand(cmdline);
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace lg::bench {

// Adds the "dpdk" subcommand and its options to app; returns it (true when
// chosen, after app.parse). The options live in this module.
CLI::App *register_dpdk_subcommand(CLI::App &app);

// Runs the chosen subcommand; cmdline goes into the JSON. Exit code: 0 done,
// 1 a measurement failed.
int run_dpdk_subcommand(const std::string &cmdline);

} // namespace lg::bench
