// The parts of `linkgate-bench all` and the subcommands of linkgate-bench,
// registered from their own translation units so that a new benchmark (the
// DPDK one in tools/dpdk_*.cpp) plugs in without touching the others:
//
//   LG_BENCH_SECTION(dpdk_section, {"dpdk", "DPDK fast path vs dpdk-test-acl / testpmd",
//                                   add_options, run});
//
// `all` runs every selected section in a child process of its own, with a
// private network namespace and a private bpffs mounted on /sys/fs/bpf
// (isolate = true): veths, XDP attachments, pins and nft tables vanish with
// the child however it ends, Ctrl-C and SIGKILL included. Each section
// returns JSON; `all` merges them under "sections".<name> of one result.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "result.hpp"

namespace CLI {
class App;
}

namespace lg::bench {

// What every section gets from `all`.
struct RunContext {
	bool quick = false;  // the CI smoke: tiny sizes, one or two rounds, seconds in all
	bool quiet = false;  // no progress lines
	int rounds = 5;      // repeats per case (cases interleaved within a round)
	double sample_s = 0.2; // seconds per throughput sample
	uint64_t seed = 1;
	std::string classbench; // ClassBench rule file (.rules or .rules.gz)
	std::string workdir;    // scratch directory, removed by `all`
	// Progress line prefixed with the section name.
	std::function<void(const std::string &)> progress;
};

struct Section {
	std::string name, help;
	// Extra options on the `all` subcommand (may be empty).
	std::function<void(CLI::App &)> add_options;
	std::function<Result<nlohmann::json>(const RunContext &)> run;
	bool isolate = true; // child process, private netns + bpffs
	int order = 100;     // run order (lower first)
};

struct Subcommand {
	std::string name;
	std::function<CLI::App *(CLI::App &)> add; // returns the registered CLI::App
	std::function<int(const std::string &cmdline)> run;
};

bool register_section(Section s);
bool register_subcommand(Subcommand s);
std::vector<Section> &sections();
std::vector<Subcommand> &subcommands();

// Runs fn in a forked child (isolated as a Section says); its JSON comes
// back through a file. Errors of the child (exit code, signal, its error
// text) come back as an error.
Result<nlohmann::json> run_isolated(const std::string &name, bool isolate, const std::string &workdir,
				    const std::function<Result<nlohmann::json>()> &fn);

// Async-signal-safe: pass sig on to the section child running now (so that
// `kill -INT` of linkgate-bench ends the section, not only a terminal's ^C).
void forward_signal(int sig);

// unshare(CLONE_NEWNET | CLONE_NEWNS), mounts private, fresh bpffs on
// /sys/fs/bpf, forwarding on, lo up.
Status enter_private_host();

} // namespace lg::bench

#define LG_BENCH_CONCAT2(a, b) a##b
#define LG_BENCH_CONCAT(a, b) LG_BENCH_CONCAT2(a, b)
#define LG_BENCH_SECTION(...) \
	static const bool LG_BENCH_CONCAT(lg_bench_section_, __LINE__) = ::lg::bench::register_section(__VA_ARGS__)
#define LG_BENCH_SUBCOMMAND(...) \
	static const bool LG_BENCH_CONCAT(lg_bench_subcommand_, __LINE__) = ::lg::bench::register_subcommand(__VA_ARGS__)
