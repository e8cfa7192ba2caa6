// The arithmetic and plotting of linkgate-bench on fixed numbers: what a
// noisy host can hand them (a net cost at or below zero) gives no ratio and
// no failed plot. The numbers in tests/fixtures/bench/ are from a CI run whose
// bare program was lost in the harness's noise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench_common.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

TEST(BenchNumbers, ARoundWhoseDenominatorIsNotAboveZeroHasNoRatio)
{
	auto r = lg::bench::round_ratios({300, -37, 250, 40}, {100, -11, 0, 80});
	EXPECT_EQ(r.values, (std::vector<double>{3.0, 0.5}));
	EXPECT_EQ(r.left_out, 2u);

	auto none = lg::bench::round_ratios({10, 20}, {-1, 0});
	EXPECT_TRUE(none.values.empty());
	EXPECT_EQ(none.left_out, 2u);
}

TEST(BenchNumbers, PlotsACostSectionWhoseBaselineIsInTheNoise)
{
	lgtest::TempDir tmp("lgbench-plot");
	ASSERT_TRUE(tmp.made());
	std::string out = tmp.path() + "/plots";
	std::string cmd = "/usr/bin/python3 '" + std::string(LG_BENCH_PLOT) + "' '" + LG_FIXTURES_DIR +
			  "/bench/cost-in-the-noise.json' '" + out + "' > " + tmp.path() + "/log.txt 2>&1";
	ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
	for (auto *f : {"cost.png", "tables.md"}) {
		fs::path p = fs::path(out) / f;
		ASSERT_TRUE(fs::exists(p)) << f;
		EXPECT_GT(fs::file_size(p), 100u) << f;
	}
}
