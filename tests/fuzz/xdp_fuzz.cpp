// libFuzzer target (scripts/fuzz xdp, run by hand): frames through the XDP
// program (BPF_PROG_TEST_RUN, in a network namespace of the fuzzer's own)
// and the reference evaluator on the malformed corpus's host and policy
// (tests/corpus). Any difference that Pair::check finds (verdict, reason,
// output bytes, egress, counters) aborts. Input: one byte that picks the
// interface (bit 0) and how far both clocks move first (bits 1-7, in
// 100 ms steps, so that flows expire), then the frame. Flows live on
// across inputs in both: a finding is replayed after the inputs before it.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "malformed_corpus.hpp"
#include "xdp_harness.hpp"

namespace {

std::unique_ptr<lg::xdptest::Pair> pair;
std::map<uint32_t, uint32_t> ifmap;

int failures()
{
	return ::testing::UnitTest::GetInstance()->ad_hoc_test_result().total_part_count();
}

// LG_FUZZ_SEEDS=DIR: every frame of the corpus as a seed input there.
void write_seeds(const char *dir)
{
	int n = 0;
	auto cases = lg::corpus::malformed_cases();
	for (auto &c : lg::corpus::valid_frames())
		cases.push_back(c);
	for (auto &c : cases)
		for (auto &st : c.steps) {
			std::ofstream f(std::string(dir) + "/corpus-" + std::to_string(n++), std::ios::binary);
			f.put(char(st.ifindex == lg::corpus::kBackendIf ? 1 : 0));
			f.write(reinterpret_cast<const char *>(st.frame.data()), std::streamsize(st.frame.size()));
		}
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	if (!lg::xdptest::enter_netns())
		abort();
	lg::HostConfig h = lg::xdptest::realize(lg::corpus::host(), &ifmap);
	pair = lg::xdptest::Pair::make(h);
	if (!pair || !pair->commit(lg::corpus::policy()) || failures())
		abort();
	if (const char *dir = std::getenv("LG_FUZZ_SEEDS"))
		write_seeds(dir);
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	// BPF_PROG_TEST_RUN refuses frames under ETH_HLEN.
	if (size < 15)
		return 0;
	uint32_t tmpl = (data[0] & 1) ? lg::corpus::kBackendIf : lg::corpus::kClientIf;
	pair->advance(uint64_t(data[0] >> 1) * 100000000ull);
	int before = failures();
	pair->check(std::vector<uint8_t>(data + 1, data + size), ifmap.at(tmpl), "fuzz");
	if (failures() != before)
		abort();
	return 0;
}
