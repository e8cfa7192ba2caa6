// linkgate-bench: the project's benchmarks, one subcommand each. Every
// subcommand prints a table for people, writes JSON, and records the machine
// and its own command line so that docs/ can quote both. `all` runs every
// registered section in one go (docs/benchmarks.md); further subcommands
// (e.g. `dpdk`, tools/dpdk_*.cpp) register themselves with
// LG_BENCH_SUBCOMMAND (bench_registry.hpp).
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "bench_registry.hpp"
#include "xdp_cost.hpp"

int main(int argc, char **argv)
{
	CLI::App app{"linkgate-bench: benchmarks of the linkgate dataplanes"};
	app.require_subcommand(1);
	lg::bench::XdpCostOptions xdp;
	CLI::App *xdp_cmd = lg::bench::add_xdp_cost(app, xdp);
	std::vector<std::pair<CLI::App *, const lg::bench::Subcommand *>> subs;
	for (auto &s : lg::bench::subcommands())
		subs.push_back({s.add(app), &s});
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e) ? 2 : 0;
	}
	std::string cmdline;
	for (int i = 0; i < argc; i++)
		cmdline += (i ? " " : "") + std::string(argv[i]);
	if (*xdp_cmd)
		return lg::bench::run_xdp_cost(xdp, cmdline);
	for (auto &[cmd, s] : subs)
		if (*cmd)
			return s->run(cmdline);
	return 2;
}
