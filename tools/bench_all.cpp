// linkgate-bench all: one command that runs every registered section
// (bench_registry.hpp) on the same rules, each in its own private network
// namespace, merges their JSON into one result, prints the targets and runs
// the plotting script (tools/bench_plot.py, matplotlib) into PNGs.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "bench_common.hpp"
#include "bench_registry.hpp"
#include "xdp_cost.hpp"

#ifndef LG_BENCH_PLOT
#define LG_BENCH_PLOT "bench_plot.py"
#endif
#ifndef LG_CLASSBENCH
#error "LG_CLASSBENCH: the default rule file, set by tools/meson.build"
#endif

namespace lg::bench {
namespace {

struct AllOptions {
	std::string out_dir = "bench-out";
	std::string json_path;
	std::vector<std::string> only, skip;
	bool quick = false, quiet = false, no_plot = false;
	int rounds = 5;
	int sample_ms = 200;
	uint64_t seed = 1;
	std::string classbench = LG_CLASSBENCH;
	std::string plot_script = LG_BENCH_PLOT;
	std::string python = "/usr/bin/python3";
	uint32_t cost_repeat = 300000;
} g_all;

volatile sig_atomic_t g_interrupted = 0;

// The existing xdp-cost, as the "cost" section.
Result<nlohmann::json> run_cost(const RunContext &ctx)
{
	XdpCostOptions o;
	o.quiet = true;
	o.rounds = ctx.quick ? 2 : ctx.rounds;
	o.warmup = ctx.quick ? 0 : 1;
	o.repeat = ctx.quick ? 200 : g_all.cost_repeat;
	o.flows = ctx.quick ? 64 : 100000;
	o.small_prefixes = 1000; // tag growth: 1,000 -> 10,000 prefixes
	o.seed = ctx.seed;
	ctx.progress("BPF_PROG_TEST_RUN cost per packet (xdp-cost, " + std::to_string(o.rounds) + " rounds)");
	nlohmann::json j;
	if (run_xdp_cost_into(o, "linkgate-bench all (section cost)", &j, false) != 0 || j.contains("error"))
		return err(j.value("error", std::string("xdp-cost failed")));
	// Tag growth (1,000 -> 10,000 prefixes, same 10 rules), per round, net of nop.
	{
		std::map<std::string, std::vector<double>> k;
		for (auto &c : j["cases"])
			k[c["name"]] = c["kernel_ns"].get<std::vector<double>>();
		std::string a = "new-10-tag10000", b = "new-10";
		if (k.count(a) && k.count(b) && k.count("nop")) {
			std::vector<double> num, den;
			for (size_t r = 0; r < k[a].size(); r++) {
				num.push_back(k[a][r] - k["nop"][r]);
				den.push_back(k[b][r] - k["nop"][r]);
			}
			auto rr = round_ratios(num, den);
			j["ratios"].push_back({{"name", a + " / " + b},
					       {"what", "decision with a 10,000-prefix tag vs a 1,000-prefix tag, 10 rules"},
					       {"per_round", rr.values},
					       {"rounds_left_out", rr.left_out},
					       {"spread", rr.values.empty() ? nlohmann::json() : Spread::of(rr.values).json()}});
		}
	}
	// The rule-growth target, on this method too.
	nlohmann::json targets = nlohmann::json::array();
	for (auto &r : j["ratios"]) {
		std::string n = r["name"];
		if (n == "new-1000 / new-10-tag10000" || n == "new-1000 / new-10") {
			nlohmann::json t = r;
			t["name"] = "cost per new flow, BPF_PROG_TEST_RUN: " + n;
			t["target"] = 1.5;
			t["op"] = "<=";
			bool any = r["spread"].is_object();
			t["met_median"] = any && double(r["spread"]["median"]) <= 1.5;
			t["met_every_round"] = any && r.value("rounds_left_out", 0) == 0 &&
					       double(r["spread"]["max"]) <= 1.5;
			targets.push_back(t);
		}
	}
	j["targets"] = targets;
	return j;
}

LG_BENCH_SECTION(Section{"cost", "ns/packet in the kernel (BPF_PROG_TEST_RUN) vs the bare program: xdp-cost",
			 [](CLI::App &a) {
				 a.add_option("--cost-repeat", g_all.cost_repeat, "cost: BPF_PROG_TEST_RUN iterations per sample")
					 ->check(CLI::Range(1u, 100000000u));
			 },
			 run_cost, true, 10});

void on_signal(int sig)
{
	g_interrupted = 1;
	forward_signal(sig == SIGINT ? SIGTERM : sig);
}

int run_all(const std::string &cmdline)
{
	const AllOptions &o = g_all;
	Progress prog(o.quiet);
	std::error_code ec;
	std::filesystem::create_directories(o.out_dir, ec);
	if (ec) {
		std::cerr << "linkgate-bench all: cannot create " << o.out_dir << ": " << ec.message() << "\n";
		return 1;
	}
	char tmpl[] = "/tmp/lgbench-all.XXXXXX";
	if (!mkdtemp(tmpl)) {
		std::cerr << "linkgate-bench all: mkdtemp failed\n";
		return 1;
	}
	std::string work = tmpl;
	struct sigaction sa {};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);

	RunContext ctx;
	ctx.quick = o.quick;
	ctx.quiet = o.quiet;
	ctx.rounds = o.quick ? 1 : o.rounds;
	ctx.sample_s = o.quick ? 0.03 : o.sample_ms / 1000.0;
	ctx.seed = o.seed;
	ctx.classbench = o.classbench;
	ctx.workdir = work;

	nlohmann::json out = result_head("all", cmdline);
	out["params"] = {{"quick", o.quick},         {"rounds", ctx.rounds}, {"sample_s", ctx.sample_s},
			 {"seed", o.seed},           {"classbench", o.classbench}, {"only", o.only},
			 {"skip", o.skip}};
	out["sections"] = nlohmann::json::object();
	out["section_errors"] = nlohmann::json::object();
	nlohmann::json targets = nlohmann::json::array();
	int failed = 0;
	std::set<std::string> known;
	for (auto &s : sections())
		known.insert(s.name);
	for (auto &n : o.only)
		if (!known.count(n)) {
			std::cerr << "linkgate-bench all: no section " << n << " (known:";
			for (auto &k : known)
				std::cerr << " " << k;
			std::cerr << ")\n";
			return 2;
		}
	for (auto &s : sections()) {
		if (g_interrupted)
			break;
		if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), s.name) == o.only.end())
			continue;
		if (std::find(o.skip.begin(), o.skip.end(), s.name) != o.skip.end())
			continue;
		double t0 = double(time(nullptr));
		ctx.progress = [&, name = s.name](const std::string &line) { prog.show("[" + name + "] " + line); };
		prog.show("[" + s.name + "] " + s.help);
		auto r = run_isolated(s.name, s.isolate, work, [&] { return s.run(ctx); });
		prog.done();
		if (r) {
			(*r)["seconds"] = double(time(nullptr)) - t0;
			out["sections"][s.name] = *r;
			if (r->contains("targets"))
				for (auto t : (*r)["targets"]) {
					t["section"] = s.name;
					targets.push_back(t);
				}
		} else {
			failed++;
			out["section_errors"][s.name] = r.error();
			std::cerr << "linkgate-bench all: section " << s.name << " failed: " << r.error() << "\n";
		}
	}
	out["targets"] = targets;
	out["interrupted"] = bool(g_interrupted);
	out["machine"]["loadavg_end"] = loadavg();
	out["finished"] = utc_now();
	std::string json_path = o.json_path.empty() ? o.out_dir + "/linkgate-bench.json" : o.json_path;
	{
		std::ofstream f(json_path);
		f << out.dump(1) << "\n";
		f.close();
		if (!f) {
			std::cerr << "linkgate-bench all: cannot write " << json_path << "\n";
			return 1;
		}
	}
	// Plots: a separate step, so that a missing matplotlib costs only the PNGs.
	if (!o.no_plot && !g_interrupted) {
		prog.show("plotting into " + o.out_dir);
		std::string cmd = o.python + " '" + o.plot_script + "' '" + json_path + "' '" + o.out_dir + "'";
		auto st = sh(cmd);
		prog.done();
		if (!st) {
			std::cerr << "linkgate-bench all: plotting failed: " << st.error() << "\n";
			failed++;
		}
	}
	std::filesystem::remove_all(work, ec);

	std::cout << "linkgate-bench all: " << out["machine"]["nproc"] << " CPUs, "
		  << std::string(out["machine"]["cpu_model"]) << ", " << std::string(out["machine"]["kernel"])
		  << "; load " << loadavg() << "\n";
	std::printf("\n%-62s %8s %8s %8s %10s  %s\n", "target", "median", "min", "max", "target", "met");
	// A ratio with no round (every one lost in the noise) has no spread.
	auto num = [](const nlohmann::json &sp, const char *k) {
		return sp.is_object() ? fixed(sp[k], 2) : std::string("-");
	};
	for (auto &t : targets) {
		auto sp = t["spread"];
		std::printf("%-62s %8s %8s %8s %10s  %s\n", std::string(t["name"]).substr(0, 62).c_str(),
			    num(sp, "median").c_str(), num(sp, "min").c_str(), num(sp, "max").c_str(),
			    (std::string(t["op"]) + " " + fixed(t["target"], 1)).c_str(),
			    t["met_every_round"] ? "yes (every round)" : t["met_median"] ? "median only" : "NO");
	}
	std::cout << "\nJSON: " << json_path << (o.no_plot ? "" : "; plots: " + o.out_dir + "/*.png") << "\n";
	if (g_interrupted) {
		std::cerr << "linkgate-bench all: interrupted\n";
		return 130;
	}
	return failed ? 1 : 0;
}

CLI::App *add_all(CLI::App &app)
{
	auto *c = app.add_subcommand("all", "every benchmark of issue 7 in one run: JSON + PNG plots (docs/benchmarks.md)");
	c->add_option("--out", g_all.out_dir, "directory for the JSON and the PNGs");
	c->add_option("--json", g_all.json_path, "the JSON result (default OUT/linkgate-bench.json)");
	c->add_option("--only", g_all.only, "run only these sections");
	c->add_option("--skip", g_all.skip, "leave these sections out");
	c->add_flag("--quick", g_all.quick, "the CI smoke: tiny sizes, seconds; numbers meaningless");
	c->add_option("--rounds", g_all.rounds, "repeats per case (cases interleaved)")->check(CLI::Range(1, 100));
	c->add_option("--sample-ms", g_all.sample_ms, "throughput: ms per sample")->check(CLI::Range(10, 10000));
	c->add_option("--seed", g_all.seed, "policy seed");
	c->add_option("--classbench", g_all.classbench, "ClassBench rule file (.rules or .rules.gz)");
	c->add_flag("--no-plot", g_all.no_plot, "skip the PNGs");
	c->add_option("--plot-script", g_all.plot_script, "the plotting script");
	c->add_option("--python", g_all.python, "python with matplotlib");
	c->add_flag("-q,--quiet", g_all.quiet, "no progress on stderr");
	for (auto &s : sections())
		if (s.add_options)
			s.add_options(*c);
	std::string list;
	for (auto &s : sections())
		list += "\n  " + s.name + ": " + s.help;
	c->footer("sections:" + list);
	return c;
}

LG_BENCH_SUBCOMMAND(Subcommand{"all", add_all, run_all});

} // namespace
} // namespace lg::bench
