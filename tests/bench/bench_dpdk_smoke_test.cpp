// linkgate-bench dpdk works end to end with tiny settings: the workload is
// generated and held to the reference evaluator, dpdk-testpmd and
// dpdk-test-acl run and their output is parsed, and the JSON has the fields
// docs/dpdk-performance.md quotes. No time is asserted. linkgate-dpdk is
// measured too and must not fail.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

TEST(BenchSmoke, DpdkWritesItsJson)
{
	lgtest::TempDir tmp("lgbench-dpdk");
	ASSERT_TRUE(tmp.made());
	std::string d = tmp.path(), json = d + "/dpdk.json";
	std::string cmd = std::string(LG_BENCH_BIN) +
			  " dpdk --flows 1000 --repeats 1 --seconds 2 --algs scalar --acl-layouts ipv4 linkgate"
			  " --acl-packets 100000 -q --workdir " + d + " --json " + json + " > " + d + "/out.txt 2>&1";
	int rc = std::system(cmd.c_str());
	std::ifstream out(d + "/out.txt");
	std::string text((std::istreambuf_iterator<char>(out)), {});
	ASSERT_EQ(rc, 0) << text;
	EXPECT_NE(text.find("dpdk-testpmd io"), std::string::npos) << text;

	std::ifstream f(json);
	ASSERT_TRUE(f.good());
	auto j = nlohmann::json::parse(f);
	EXPECT_EQ(j["subcommand"], "dpdk");
	EXPECT_TRUE(j["machine"].contains("cpu_model"));
	// The workload: 1,000 rules, every flow forwarded by the reference.
	EXPECT_EQ(j["workload"]["rules"], 1000);
	ASSERT_EQ(j["workload"]["flow_sets"].size(), 1u);
	EXPECT_EQ(j["workload"]["flow_sets"][0]["checked_with_reference"], 1000);
	// The established workload's handshakes, too.
	EXPECT_EQ(j["workload"]["flow_sets"][0]["handshakes_checked_with_reference"], 1000);
	// The baseline and raw rte_acl were measured once each; two workloads.
	ASSERT_EQ(j["cases"].size(), 2u);
	auto &c = j["cases"][0];
	EXPECT_EQ(c["label"], "1k new flows");
	ASSERT_EQ(c["testpmd"]["mpps"].size(), 1u);
	EXPECT_GT(c["testpmd"]["mpps"][0].get<double>(), 0.0);
	ASSERT_EQ(j["rte_acl"].size(), 1u);
	ASSERT_TRUE(j["rte_acl"][0]["algorithms"].contains("scalar")) << j["rte_acl"].dump();
	EXPECT_GT(j["rte_acl"][0]["algorithms"]["scalar"]["cycles_per_pkt"][0].get<double>(), 0.0);
	// Raw rte_acl also ran on the rules linkgate-dpdk builds (--dump-acl).
	ASSERT_TRUE(j["rte_acl"][0]["algorithms"].contains("scalar (linkgate-dpdk's rules)")) << j["rte_acl"].dump();
	EXPECT_GT(j["acl_linkgate_rules"]["rules"].get<size_t>(), 1000u) << "1,000 NSG rules and the defaults";
	// And linkgate-dpdk's own classifier alone on the same trace (--classify-trace).
	auto alone = j["rte_acl"][0]["algorithms"]["scalar (linkgate-dpdk's rules)"]["linkgate_classifier_alone"];
	ASSERT_EQ(alone["cycles_per_tuple"].size(), 1u) << j["rte_acl"].dump();
	EXPECT_GT(alone["cycles_per_tuple"][0].get<double>(), 0.0);
	// linkgate-dpdk is built with the tool (meson depends on it): measured, no errors.
	ASSERT_FALSE(c["linkgate"].contains("skipped")) << c["linkgate"].dump();
	EXPECT_TRUE(c["linkgate"]["errors"].empty()) << c["linkgate"]["errors"].dump();
	EXPECT_EQ(c["linkgate"]["mpps"].size(), 1u);
	// Its rate is the median of one-second rates read from its telemetry, as
	// testpmd's is of the ones it prints, in a window of 2 s that opened once
	// the first pass over the pcap had made the flows.
	ASSERT_EQ(c["linkgate"]["mpps_intervals"].size(), 1u);
	auto iv = c["linkgate"]["mpps_intervals"][0].get<std::vector<double>>();
	ASSERT_FALSE(iv.empty()) << c["linkgate"].dump(); // two, unless the harness stalled for a second
	EXPECT_LE(iv.size(), 2u) << c["linkgate"].dump();
	EXPECT_GT(*std::min_element(iv.begin(), iv.end()), 0.0);
	std::sort(iv.begin(), iv.end());
	double median = iv.size() % 2 ? iv[iv.size() / 2] : (iv[iv.size() / 2 - 1] + iv[iv.size() / 2]) / 2;
	EXPECT_DOUBLE_EQ(c["linkgate"]["mpps"][0].get<double>(), median);
	ASSERT_EQ(c["linkgate"]["window"]["warmup_seconds"].size(), 1u) << c["linkgate"].dump();
	// Established flows: measured after the warm-up, and the fast path
	// decided the window's frames (a share of frames, not a time).
	auto &e = j["cases"][1];
	EXPECT_EQ(e["label"], "1k established flows");
	EXPECT_EQ(e["established"], true);
	ASSERT_FALSE(e["linkgate"].contains("skipped")) << e["linkgate"].dump();
	EXPECT_TRUE(e["linkgate"]["errors"].empty()) << e["linkgate"]["errors"].dump();
	ASSERT_EQ(e["linkgate"]["window"]["fast_share"].size(), 1u) << e["linkgate"].dump();
	EXPECT_GT(e["linkgate"]["window"]["fast_share"][0].get<double>(), 0.9);
	ASSERT_EQ(e["linkgate"]["mpps_intervals"].size(), 1u);
	EXPECT_GE(e["linkgate"]["mpps_intervals"][0].size(), 1u) << e["linkgate"].dump();
	ASSERT_EQ(e["testpmd"]["mpps"].size(), 1u);
	ASSERT_TRUE(j["ratios"].is_array());
}
