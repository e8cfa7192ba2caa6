// The hook for the DPDK benchmark (tools/dpdk/, issue 7 §3, written by
// another engineer): with -DLG_BENCH_WITH_DPDK (tools/meson.build,
// with_dpdk_bench) it registers `linkgate-bench dpdk` and a "dpdk" section
// of `linkgate-bench all` that runs it as a child process with --json and
// merges that JSON under sections.dpdk, so that one command still measures
// every dataplane. Without it the section reports itself as not built.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>

#include "bench_common.hpp"
#include "bench_registry.hpp"

#ifdef LG_BENCH_WITH_DPDK
#include "dpdk_bench.hpp"
#endif

namespace lg::bench {
namespace {

#ifdef LG_BENCH_WITH_DPDK
LG_BENCH_SUBCOMMAND(Subcommand{"dpdk", register_dpdk_subcommand, run_dpdk_subcommand});
#endif

std::vector<std::string> g_dpdk_args; // extra arguments for `linkgate-bench dpdk`

Result<nlohmann::json> run_dpdk_section(const RunContext &ctx)
{
	bool have = false;
	for (auto &s : subcommands())
		have = have || s.name == "dpdk";
	if (!have)
		return nlohmann::json{{"skipped", "linkgate-bench was built without the DPDK benchmark "
						  "(tools/meson.build: with_dpdk_bench)"}};
	if (ctx.quick)
		return nlohmann::json{{"skipped", "--quick: the DPDK runs take minutes (tests/dpdk covers them)"}};
	char self[4096] = {};
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return err("cannot find linkgate-bench's own path");
	std::string json = ctx.workdir + "/dpdk.json";
	std::string cmd = std::string(self) + " dpdk -q --json " + json + " --repeats " + std::to_string(ctx.rounds) +
			  " --classbench '" + ctx.classbench + "' --workdir " + ctx.workdir + "/dpdk";
	for (auto &a : g_dpdk_args)
		cmd += " '" + a + "'";
	ctx.progress("running: " + cmd);
	if (auto st = sh(cmd); !st)
		return err(st.error());
	std::ifstream f(json);
	try {
		return nlohmann::json::parse(f);
	} catch (const std::exception &e) {
		return err(std::string("linkgate-bench dpdk wrote no readable JSON: ") + e.what());
	}
}

LG_BENCH_SECTION(Section{"dpdk", "DPDK fast path vs dpdk-test-acl and dpdk-testpmd (linkgate-bench dpdk)",
			 [](CLI::App &a) {
				 a.add_option("--dpdk-arg", g_dpdk_args, "dpdk: extra argument for linkgate-bench dpdk (repeatable)");
			 },
			 run_dpdk_section, false, 30});

} // namespace
} // namespace lg::bench
