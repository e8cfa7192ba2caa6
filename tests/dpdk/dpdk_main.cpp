// gtest main for the DPDK tests: a real EAL with no hugepages, no PCI and a
// file prefix of its own, so tests run beside any other DPDK process.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	std::string prefix = "lgtest-" + std::to_string(getpid());
	std::vector<std::string> args = {"lgtest", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", prefix,
					 "--log-level", "*:warning", "-l", "0"};
	// Extra --vdev arguments, ';'-separated (the pipeline test makes its
	// net_ring ports in-process instead).
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
	// The EAL leaves its runtime dir (/var/run/dpdk/<prefix>) behind.
	std::string runtime = rte_eal_get_runtime_dir();
	rte_eal_cleanup();
	std::error_code ec;
	if (runtime.find(prefix) != std::string::npos)
		std::filesystem::remove_all(runtime, ec);
	return rc;
}
