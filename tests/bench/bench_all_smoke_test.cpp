// linkgate-bench all --quick works end to end in seconds: every section
// ran (throughput through real veths, namespaces, nftables and xdp-filter;
// the BPF_PROG_TEST_RUN cost; linkgated's update latency against nft -f),
// the merged JSON has the fields docs/benchmarks.md quotes, the plotting
// step wrote its PNGs, and nothing is left behind. No number is asserted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

namespace fs = std::filesystem;

static std::string slurp(const std::string &p)
{
	std::ifstream f(p);
	return {(std::istreambuf_iterator<char>(f)), {}};
}

static std::string links()
{
	std::string out;
	FILE *p = popen("ip -o link show | awk -F': ' '{print $2}' | sort", "r");
	char b[256];
	while (p && fgets(b, sizeof b, p))
		out += b;
	if (p)
		pclose(p);
	return out;
}

TEST(BenchSmoke, AllQuickWritesJsonAndPlots)
{
	lgtest::TempDir tmp("lgbench-all-smoke");
	ASSERT_TRUE(tmp.made());
	const std::string &dir = tmp.path();
	std::string out = dir + "/out";
	std::string before = links();
	std::string cmd = "timeout 120 " + std::string(LG_BENCH_BIN) + " all --quick -q --out " + out + " > " + dir +
			  "/stdout.txt 2> " + dir + "/stderr.txt";
	int rc = std::system(cmd.c_str());
	std::string text = slurp(dir + "/stdout.txt") + slurp(dir + "/stderr.txt");
	ASSERT_EQ(rc, 0) << text;
	EXPECT_NE(text.find("target"), std::string::npos) << text;

	auto j = nlohmann::json::parse(slurp(out + "/linkgate-bench.json"));
	EXPECT_EQ(j["subcommand"], "all");
	EXPECT_TRUE(j["machine"].contains("cpu_model"));
	EXPECT_TRUE(j["section_errors"].empty()) << j["section_errors"].dump();
	for (auto *s : {"throughput", "cost", "update"})
		ASSERT_TRUE(j["sections"].contains(s)) << s;

	// Throughput: every case has per-round packets/s and a ratio to bare.
	auto &tp = j["sections"]["throughput"];
	std::set<std::string> names;
	for (auto &c : tp["cases"]) {
		names.insert(c["name"]);
		EXPECT_FALSE(c["pps"].empty()) << c["name"];
		EXPECT_TRUE(c["ratio_to_bare"].contains("median")) << c["name"];
	}
	for (auto *n : {"bare/64B", "linkgate/64B", "kernel/64B", "bare/512B", "linkgate/512B", "lru-insert/64B"})
		EXPECT_TRUE(names.count(n)) << n;
	bool nft = false, lgnew = false;
	for (auto &n : names) {
		nft = nft || n.rfind("nft-linear-", 0) == 0;
		lgnew = lgnew || n.rfind("linkgate-new-", 0) == 0;
	}
	EXPECT_TRUE(nft);
	EXPECT_TRUE(lgnew);

	// Update: percentiles of each kind, the CLI share, ratios to nft -f.
	auto &up = j["sections"]["update"];
	for (auto *k : {"pec_approve", "nsg_rule_change", "full_recompile_apply", "nft_f_linear", "cli_pec_approve"})
		EXPECT_TRUE(up["latency_ms"][k].contains("p99")) << k;
	EXPECT_TRUE(up["cli"].contains("process_start_ms"));
	EXPECT_TRUE(j["sections"]["cost"]["cases"].is_array());

	// Targets: each with its spread, its bound and whether it was met.
	ASSERT_TRUE(j["targets"].is_array());
	EXPECT_GE(j["targets"].size(), 4u);
	for (auto &t : j["targets"]) {
		EXPECT_TRUE(t.contains("target")) << t.dump();
		EXPECT_TRUE(t.contains("met_median")) << t.dump();
		// No spread only when every round was lost in the harness's noise.
		if (t["spread"].is_null())
			EXPECT_GT(t.value("rounds_left_out", 0), 0) << t.dump();
		else
			EXPECT_TRUE(t["spread"].contains("median")) << t.dump();
	}

	for (auto *png : {"throughput.png", "rules.png", "flows.png", "cost.png", "update.png"}) {
		fs::path p = fs::path(out) / png;
		ASSERT_TRUE(fs::exists(p)) << png;
		EXPECT_GT(fs::file_size(p), 1000u) << png;
	}
	// Everything it created lived in its own namespaces.
	EXPECT_EQ(links(), before);
}
