// The malformed-frame corpus (tests/corpus) through the XDP program and the
// reference evaluator: every step must agree (xdp_harness.hpp Pair::check),
// meet the verdict and reason its case names, and nothing forwarded may be
// unparsable.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "malformed_corpus.hpp"
#include "xdp_harness.hpp"

namespace lg {
namespace {

using xdptest::Pair;

class XdpMalformed : public ::testing::Test {
protected:
	void SetUp() override
	{
		ASSERT_EQ(geteuid(), 0u) << "the XDP tests need root (CI runs as root)";
		ASSERT_TRUE(xdptest::enter_netns());
		HostConfig h = xdptest::realize(corpus::host(), &ifmap);
		ASSERT_FALSE(HasFailure()) << "setting up the namespace failed";
		pair = Pair::make(h);
		ASSERT_TRUE(pair);
		ASSERT_TRUE(pair->commit(corpus::policy()));
	}

	// Runs every step; returns the number of frames.
	int run(const std::vector<corpus::Case> &cases)
	{
		int frames = 0, failed_cases = 0;
		for (auto &c : cases) {
			bool before = HasFailure();
			for (auto &st : c.steps) {
				std::string what = c.name + ": " + st.what;
				// BPF_PROG_TEST_RUN refuses frames under ETH_HLEN (no driver
				// hands such runts to XDP): the evaluator alone decides them.
				Decision d = st.frame.size() < 14 ? pair->ev().process(st.frame, ifmap.at(st.ifindex), pair->now())
								  : pair->check(st.frame, ifmap.at(st.ifindex), what);
				frames++;
				tally[std::string(verdict_name(d.verdict)) + "/" + reason_name(d.reason)]++;
				if (st.verdict) {
					EXPECT_STREQ(verdict_name(d.verdict), verdict_name(*st.verdict)) << what;
				}
				if (st.reason) {
					EXPECT_STREQ(reason_name(d.reason), reason_name(*st.reason)) << what;
				}
				if (st.never_forward) {
					EXPECT_TRUE(d.verdict == LG_VERDICT_DROP || d.verdict == LG_VERDICT_PASS) << what;
				}
				if (d.verdict == LG_VERDICT_FORWARD || d.verdict == LG_VERDICT_TX) {
					Parsed p;
					EXPECT_EQ(parse_frame(d.frame, p), LG_REASON_NONE) << what << ": forwarded bytes do not parse";
				}
			}
			if (!before && HasFailure() && ++failed_cases >= 20)
				break; // enough to go on
		}
		return frames;
	}

	std::string summary() const
	{
		std::string s;
		for (auto &[k, n] : tally)
			s += k + "=" + std::to_string(n) + " ";
		return s;
	}

	std::map<uint32_t, uint32_t> ifmap;
	std::unique_ptr<Pair> pair;
	std::map<std::string, int> tally;
};

// The frames the corpus cuts and bends are themselves let through: the
// truncation cases' "never forwarded" says something.
TEST_F(XdpMalformed, ValidFramesPass)
{
	int n = run(corpus::valid_frames());
	EXPECT_EQ(tally["drop/malformed"], 0);
	std::printf("%d valid frames: %s\n", n, summary().c_str());
}

TEST_F(XdpMalformed, NamedCases)
{
	auto cases = corpus::malformed_cases();
	int steps = run(cases);
	std::printf("%zu malformed cases, %d frames: %s\n", cases.size(), steps, summary().c_str());
	RecordProperty("frames", steps);
	// Every reason of SPEC §3 steps 1–3 the corpus is about shows up.
	for (const char *r : {"drop/malformed", "drop/vlan-depth", "drop/ipv6-ext-chain", "drop/fragment-no-first",
			      "drop/fragment-overlap", "drop/ct-invalid", "drop/ttl-exceeded", "drop/pe-port"})
		EXPECT_GT(tally[r], 0) << r;
	EXPECT_GT(steps, 1500);
}

TEST_F(XdpMalformed, RandomByteFlips)
{
	// LG_XDP_SEED_BASE=N shifts the seed (soak runs), as in the differential test.
	const char *base = std::getenv("LG_XDP_SEED_BASE");
	auto cases = corpus::byte_flip_cases(20261128 + (base ? std::strtoull(base, nullptr, 10) : 0), 20000);
	int steps = run(cases);
	std::printf("%d byte-flipped frames: %s\n", steps, summary().c_str());
	RecordProperty("frames", steps);
	EXPECT_GT(tally["forward/none"], 100) << summary();
	EXPECT_GT(tally["drop/malformed"], 100) << summary();
}

#ifdef LG_WITH_DPDK
// linkgate-dpdk's burst path (Engine::decide_burst: the flow pre-lookup,
// hints forgotten after inserts and deletes, batched classification) on the
// whole corpus in order: each run of one interface's frames, across cases,
// is one burst (up to 80: decide_burst splits at 64), decided frame by frame
// by the evaluator too (Pair::check_burst; XDP is not asked).
TEST_F(XdpMalformed, CorpusInBursts)
{
	std::vector<corpus::Case> cases = corpus::valid_frames();
	for (auto &v : {corpus::malformed_cases(), corpus::byte_flip_cases(20261201, 4000)})
		cases.insert(cases.end(), v.begin(), v.end());
	std::vector<const corpus::Step *> steps;
	for (auto &c : cases)
		for (auto &st : c.steps)
			steps.push_back(&st);
	size_t bursts = 0, several = 0;
	for (size_t i = 0; i < steps.size() && !HasFailure();) {
		size_t j = i;
		std::vector<std::vector<uint8_t>> frames;
		while (j < steps.size() && j - i < 80 && steps[j]->ifindex == steps[i]->ifindex)
			frames.push_back(steps[j++]->frame);
		pair->check_burst(frames, ifmap.at(steps[i]->ifindex), "burst " + std::to_string(bursts));
		bursts++;
		several += frames.size() > 1;
		i = j;
	}
	EXPECT_GT(several, bursts / 4) << "bursts of several frames";
	dp::Engine::BurstStats bs = pair->dpdk().burst_stats();
	EXPECT_GT(bs.hint_hits, 0u);
	EXPECT_GT(bs.acl_batched, 0u);
	std::printf("%zu frames in %zu bursts (%zu of several frames)\n", steps.size(), bursts, several);
}
#endif

} // namespace
} // namespace lg
