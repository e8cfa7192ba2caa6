// gtest main for the DPDK tests: a real EAL with no hugepages, no PCI and a
// file prefix of its own, so tests run beside any other DPDK process.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

pid_t g_child = -1;

void forward(int sig)
{
	if (g_child > 0)
		kill(g_child, sig);
}

// Where the EAL puts /<prefix> (eal_create_runtime_dir).
std::string runtime_dir(const std::string &prefix)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	std::string base = getuid() == 0 ? "/var/run" : xdg ? xdg : "/tmp";
	return base + "/dpdk/" + prefix;
}

int run_tests(const std::string &prefix)
{
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
	rte_eal_cleanup();
	return rc;
}

} // namespace

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	std::string prefix = "lgtest-" + std::to_string(getpid());
	// The tests run in a child; this process removes the EAL's runtime dir
	// (/var/run/dpdk/<prefix>) after it however it ended, a crash included.
	std::fflush(nullptr);
	g_child = fork();
	if (g_child < 0) {
		std::perror("lgtest: fork");
		return 1;
	}
	if (g_child == 0) {
		int rc = run_tests(prefix);
		std::fflush(nullptr);
		_exit(rc);
	}
	// A timeout's SIGTERM, a ^C: to the tests, then clean up as usual.
	signal(SIGTERM, forward);
	signal(SIGINT, forward);
	int st = 0;
	while (waitpid(g_child, &st, 0) < 0 && errno == EINTR) {
	}
	std::error_code ec;
	std::filesystem::remove_all(runtime_dir(prefix), ec);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	std::fprintf(stderr, "lgtest: the tests died by signal %d (%s)\n", WTERMSIG(st), strsignal(WTERMSIG(st)));
	return 128 + WTERMSIG(st);
}
