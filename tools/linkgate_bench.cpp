// linkgate-bench: the project's benchmarks, one subcommand each. Every
// subcommand prints a table for people, writes JSON with --json, and records
// the machine and its own command line so that docs/ can quote both.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "xdp_cost.hpp"

int main(int argc, char **argv)
{
	CLI::App app{"linkgate-bench: benchmarks of the linkgate dataplanes"};
	app.require_subcommand(1);
	lg::bench::XdpCostOptions xdp;
	CLI::App *xdp_cmd = lg::bench::add_xdp_cost(app, xdp);
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
	return 2;
}
