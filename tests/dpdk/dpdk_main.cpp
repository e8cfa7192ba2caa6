// gtest main for the DPDK tests: a real EAL with no hugepages, no PCI and a
// file prefix of its own, so tests run beside any other DPDK process.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	std::string prefix = "lgtest-" + std::to_string(getpid());
	std::vector<std::string> args = {"lgtest", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", prefix,
					 "--log-level", "*:warning", "-l", "0"};
	// net_ring pairs for the pipeline test (dpdk_pipeline_test.cpp).
	if (const char *v = getenv("LG_TEST_VDEVS"))
		for (std::string s = v; !s.empty();) {
			auto c = s.find(';');
			args.push_back("--vdev");
			args.push_back(s.substr(0, c));
			s = c == std::string::npos ? "" : s.substr(c + 1);
		}
	std::vector<char *> av;
	for (auto &a : args)
		av.push_back(a.data());
	if (rte_eal_init(int(av.size()), av.data()) < 0) {
		std::fprintf(stderr, "rte_eal_init failed\n");
		return 1;
	}
	int rc = RUN_ALL_TESTS();
	rte_eal_cleanup();
	return rc;
}
