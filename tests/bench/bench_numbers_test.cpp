// The arithmetic and plotting of linkgate-bench on fixed numbers: what a
// noisy host can hand them (a net cost at or below zero) gives no ratio and
// no failed plot. The numbers in tests/fixtures/bench/ are from a CI run whose
// bare program was lost in the harness's noise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench_common.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

TEST(BenchNumbers, ARoundWhereEitherSideIsNotAboveZeroHasNoRatio)
{
	auto r = lg::bench::round_ratios({300, -37, 250, 40}, {100, -11, 0, 80});
	EXPECT_EQ(r.values, (std::vector<double>{3.0, 0.5}));
	EXPECT_EQ(r.left_out, 2u);

	auto none = lg::bench::round_ratios({10, 20, -37, 0}, {-1, 0, 100, 5});
	EXPECT_TRUE(none.values.empty()) << "a numerator at or below zero would be a 'met' negative ratio";
	EXPECT_EQ(none.left_out, 4u);
}

TEST(BenchNumbers, PlotsACostSectionWhoseBaselineIsInTheNoise)
{
	lgtest::TempDir tmp("lgbench-plot");
	ASSERT_TRUE(tmp.made());
	std::string out = tmp.path() + "/plots";
	std::string cmd = "/usr/bin/python3 '" + std::string(LG_BENCH_PLOT) + "' '" + LG_FIXTURES_DIR +
			  "/bench/cost-in-the-noise.json' '" + out + "' > " + tmp.path() + "/log.txt 2>&1";
	ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
	ASSERT_TRUE(fs::exists(fs::path(out) / "cost.png"));
	EXPECT_GT(fs::file_size(fs::path(out) / "cost.png"), 1000u);
	// A ratio and a target with no round show no number, not a 0.00 that
	// would read as measured (and met).
	std::ifstream t(out + "/tables.md");
	std::string md((std::istreambuf_iterator<char>(t)), {});
	EXPECT_NE(md.find("| established / bare | - | -–- |"), std::string::npos) << md;
	EXPECT_NE(md.find("| deny-1000 / bare | 8.60 | 8.60–8.60 |"), std::string::npos) << md;
	EXPECT_NE(md.find("new-1000 / new-10 [cost] | - | -–- | <= 1.5 | **no** |"), std::string::npos) << md;
}
