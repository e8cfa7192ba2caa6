// linkgate-bench-dpdk: the "dpdk" subcommand of linkgate-bench on its own,
// for running it before (or without) the rest of linkgate-bench.
//   linkgate-bench-dpdk dpdk [options]     (same options as linkgate-bench dpdk)
#include <CLI/CLI.hpp>
#include <string>

#include "dpdk_bench.hpp"

int main(int argc, char **argv)
{
	CLI::App app{"linkgate-bench-dpdk: the DPDK benchmark of linkgate-bench"};
	app.require_subcommand(1);
	CLI::App *dpdk = lg::bench::register_dpdk_subcommand(app);
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e) ? 2 : 0;
	}
	std::string cmdline;
	for (int i = 0; i < argc; i++)
		cmdline += (i ? " " : "") + std::string(argv[i]);
	return *dpdk ? lg::bench::run_dpdk_subcommand(cmdline) : 2;
}
