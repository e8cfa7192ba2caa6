// libFuzzer target (scripts/fuzz xdp|dpdk|dpdk-burst, run by hand): frames
// through the XDP program (BPF_PROG_TEST_RUN, in a network namespace of the
// fuzzer's own) and the reference evaluator on the malformed corpus's host
// and policy (tests/corpus). Built with LG_WITH_DPDK (scripts/fuzz dpdk),
// through linkgate-dpdk's engine too, on a real EAL (--no-huge, no
// devices), with the program's C source instrumented for coverage. Any
// difference that Pair::check finds (verdict, reason, output bytes, egress,
// counters) aborts.
//
// Input: one byte that picks the interface (bit 0) and how far the clocks
// move first (bits 1-7, in 100 ms steps, so that flows expire), then the
// frame. With LG_FUZZ_BURSTS=1 (scripts/fuzz dpdk-burst) the rest is a
// burst: frames, each after its length (2 bytes, big endian; cut to 2,048
// bytes), decided by the engine's decide_burst and, frame by frame, by the
// evaluator (Pair::check_burst; XDP is not asked). Flows live on across
// inputs: a finding is replayed after the inputs before it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "malformed_corpus.hpp"
#include "xdp_harness.hpp"
#ifdef LG_WITH_DPDK
#include <rte_eal.h>
#endif

namespace {

std::unique_ptr<lg::xdptest::Pair> pair;
std::map<uint32_t, uint32_t> ifmap;
bool bursts = false;

int failures()
{
	return ::testing::UnitTest::GetInstance()->ad_hoc_test_result().total_part_count();
}

// LG_FUZZ_SEEDS=DIR: the corpus's frames as seed inputs there.
void write_seeds(const char *dir)
{
	int n = 0;
	auto cases = lg::corpus::malformed_cases();
	for (auto &c : lg::corpus::valid_frames())
		cases.push_back(c);
	for (auto &c : cases)
		for (size_t i = 0; i < c.steps.size();) {
			// One frame a seed; in bursts, the case's run of frames on one
			// interface.
			uint32_t ifx = c.steps[i].ifindex;
			size_t j = i + 1;
			while (bursts && j < c.steps.size() && c.steps[j].ifindex == ifx)
				j++;
			std::ofstream f(std::string(dir) + "/corpus-" + std::to_string(n++), std::ios::binary);
			f.put(char(ifx == lg::corpus::kBackendIf ? 1 : 0));
			for (; i < j; i++) {
				const auto &fr = c.steps[i].frame;
				if (bursts) {
					f.put(char(fr.size() >> 8));
					f.put(char(fr.size()));
				}
				f.write(reinterpret_cast<const char *>(fr.data()), std::streamsize(fr.size()));
			}
		}
	if (!bursts)
		return;
	// And per interface, the frames of every valid case in one burst (up to
	// 128): several flows made, used and classified together.
	for (uint32_t ifx : {lg::corpus::kClientIf, lg::corpus::kBackendIf}) {
		std::ofstream f(std::string(dir) + "/corpus-" + std::to_string(n++), std::ios::binary);
		f.put(char(ifx == lg::corpus::kBackendIf ? 1 : 0));
		int k = 0;
		for (auto &c : lg::corpus::valid_frames())
			for (auto &st : c.steps)
				if (st.ifindex == ifx && k++ < 128) {
					f.put(char(st.frame.size() >> 8));
					f.put(char(st.frame.size()));
					f.write(reinterpret_cast<const char *>(st.frame.data()), std::streamsize(st.frame.size()));
				}
	}
}

#ifdef LG_WITH_DPDK
// The EAL of a DPDK test (tests/dpdk/dpdk_main.cpp), under the file prefix
// scripts/fuzz chooses and removes after the run, an abort's included.
bool eal_init()
{
	const char *prefix = std::getenv("LG_FUZZ_EAL_PREFIX");
	// Run by hand without scripts/fuzz: a prefix of its own, which
	// scripts/lib.sh sweeps (lgt*) once this process is gone.
	std::string own = "lgtfuzz-" + std::to_string(getpid());
	std::vector<std::string> args = {"lgfuzz", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix",
					 prefix ? prefix : own, "--log-level", "*:warning", "-l", "0"};
	std::vector<char *> av;
	for (auto &a : args)
		av.push_back(a.data());
	if (rte_eal_init(int(av.size()), av.data()) < 0)
		return false;
	// Before the statics' destructors: the engine frees into the EAL.
	std::atexit([] {
		pair.reset();
		rte_eal_cleanup();
	});
	return true;
}
#endif

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	if (!lg::xdptest::enter_netns())
		abort();
#ifdef LG_WITH_DPDK
	if (!eal_init())
		abort();
	const char *b = std::getenv("LG_FUZZ_BURSTS");
	bursts = b && std::strcmp(b, "1") == 0;
#endif
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
	// BPF_PROG_TEST_RUN refuses frames under ETH_HLEN; a burst may hold
	// runts (the engine alone decides it).
	if (size < (bursts ? 1u : 15u))
		return 0;
	uint32_t tmpl = (data[0] & 1) ? lg::corpus::kBackendIf : lg::corpus::kClientIf;
	pair->advance(uint64_t(data[0] >> 1) * 100000000ull);
	int before = failures();
#ifdef LG_WITH_DPDK
	if (bursts) {
		std::vector<std::vector<uint8_t>> frames;
		for (size_t at = 1; at + 2 <= size && frames.size() < 128;) {
			size_t len = std::min(size - at - 2, size_t(data[at]) << 8 | data[at + 1]);
			// One mbuf a frame (check_burst): cut to its data room.
			frames.emplace_back(data + at + 2, data + at + 2 + std::min<size_t>(len, 2048));
			at += 2 + len;
		}
		if (!frames.empty())
			pair->check_burst(frames, ifmap.at(tmpl), "fuzz");
		if (failures() != before)
			abort();
		return 0;
	}
#endif
	pair->check(std::vector<uint8_t>(data + 1, data + size), ifmap.at(tmpl), "fuzz");
	if (failures() != before)
		abort();
	return 0;
}
