// linkgate-bench xdp-cost works end to end with a tiny repeat: every case
// took its expected path (the tool checks the counters itself) and the JSON
// has the fields docs/xdp-performance.md quotes. No time is asserted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

TEST(BenchSmoke, XdpCostWritesItsJson)
{
	lgtest::TempDir tmp("lgbench");
	ASSERT_TRUE(tmp.made());
	const std::string &dir = tmp.path();
	std::string json = dir + "/xdp-cost.json";
	std::string cmd = std::string(LG_BENCH_BIN) +
			  " xdp-cost --repeat 200 --rounds 2 --warmup 0 --flows 64 -q --json " + json + " > " + dir +
			  "/out.txt 2>&1";
	int rc = std::system(cmd.c_str());
	std::ifstream out(dir + "/out.txt");
	std::string text((std::istreambuf_iterator<char>(out)), {});
	ASSERT_EQ(rc, 0) << text;
	EXPECT_NE(text.find("established / bare"), std::string::npos) << text;

	std::ifstream f(json);
	ASSERT_TRUE(f.good());
	auto j = nlohmann::json::parse(f);
	EXPECT_EQ(j["subcommand"], "xdp-cost");
	EXPECT_TRUE(j["machine"].contains("cpu_model"));
	ASSERT_TRUE(j["cases"].is_array());
	std::set<std::string> names;
	for (auto &c : j["cases"]) {
		names.insert(c["name"]);
		EXPECT_EQ(c["kernel_ns"].size(), 2u) << c["name"];
		EXPECT_TRUE(c["net"].contains("median")) << c["name"];
	}
	for (auto *n : {"nop", "bare", "established", "new-10", "new-1000", "deny-1000"})
		EXPECT_TRUE(names.count(n)) << n;
	ASSERT_TRUE(j["ratios"].is_array());
	size_t targets = 0;
	for (auto &r : j["ratios"]) {
		if (r.contains("target")) {
			targets++;
			EXPECT_TRUE(r.contains("met_median")) << r["name"];
		}
	}
	EXPECT_GT(targets, 0u) << "no ratio against a target";
}
