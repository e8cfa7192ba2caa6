// Benchmark (not a CI test; root): how long a change takes to be enforced.
//
//   build/tests/agent/agent_bench [runs]
//
// - PEC approve → enforced: from the linkgatectl call (posix_spawn) to the
//   first TCP connection to the private endpoint that the backend accepts.
// - one NSG rule change (Deny → Allow) → enforced, the same way, on a small
//   state and on a state of 1,000 rules with a 10,000-prefix service tag.
// - compile time of that large state, the agent's publish alone, and the
//   state file write.
// A prober thread in the client namespace sends a SYN every 50 µs (a new
// non-blocking connect); an acceptor thread in the backend namespace stamps
// each accepted connection. Results are in docs/agent-performance.md.
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <thread>

#include "agent_fixture.hpp"
#include "arm_json.hpp"
#include "compiler.hpp"
#include "netns.hpp"
#include "veth_env.hpp"
#include "xdp_loader.hpp"

using namespace lg;
using lg::testing::Topology;
using lgtest::json;
using Clock = std::chrono::steady_clock;

namespace {

extern "C" char **environ;

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

bool enter(const std::string &real_ns)
{
	int fd = open(("/run/netns/" + real_ns).c_str(), O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

std::atomic<bool> stop{false};
std::atomic<int64_t> last_accept[2]{0, 0}; // 3306, 5000
std::atomic<int> probe_port{3306};
std::atomic<const char *> probe_dst{"10.1.1.100"};

void acceptor(std::string ns)
{
	if (!enter(ns))
		std::abort();
	int ls[2];
	uint16_t ports[2] = {3306, 5000};
	for (int i = 0; i < 2; i++) {
		ls[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		int one = 1;
		setsockopt(ls[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_port = htons(ports[i]);
		inet_pton(AF_INET, "192.168.20.11", &a.sin_addr);
		if (bind(ls[i], reinterpret_cast<sockaddr *>(&a), sizeof a) || listen(ls[i], 1024))
			std::abort();
	}
	pollfd p[2] = {{ls[0], POLLIN, 0}, {ls[1], POLLIN, 0}};
	while (!stop) {
		if (poll(p, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++)
			if (p[i].revents & POLLIN)
				for (int c; (c = accept(ls[i], nullptr, nullptr)) >= 0;) {
					last_accept[i] = now_ns();
					close(c);
				}
	}
}

void prober(std::string ns)
{
	if (!enter(ns))
		std::abort();
	std::deque<std::pair<int64_t, int>> open_fds;
	while (!stop) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_port = htons(uint16_t(probe_port.load()));
		inet_pton(AF_INET, probe_dst.load(), &a.sin_addr);
		(void)connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a);
		int64_t t = now_ns();
		open_fds.push_back({t, s});
		// Closed long before the 1 s SYN retransmission: one SYN per socket.
		while (!open_fds.empty() && t - open_fds.front().first > 20'000'000) {
			close(open_fds.front().second);
			open_fds.pop_front();
		}
		timespec d{0, 50'000};
		nanosleep(&d, nullptr);
	}
	for (auto &[t, s] : open_fds)
		close(s);
}

// Runs linkgatectl; returns {ns to its exit, ns to the first accept after the call}.
std::pair<int64_t, int64_t> timed_ctl(const std::string &sock, std::vector<std::string> args, int port_slot)
{
	args.insert(args.begin(), {LINKGATECTL, "--socket", sock});
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int64_t t0 = now_ns();
	pid_t pid;
	if (posix_spawn(&pid, LINKGATECTL, &fa, nullptr, argv.data(), environ) != 0)
		std::abort();
	int st = 0;
	waitpid(pid, &st, 0);
	int64_t t_exit = now_ns();
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		std::fprintf(stderr, "linkgatectl failed\n");
		std::exit(1);
	}
	int64_t deadline = t0 + 5'000'000'000;
	while (last_accept[port_slot] <= t0 && now_ns() < deadline)
		std::this_thread::yield();
	if (last_accept[port_slot] <= t0) {
		std::fprintf(stderr, "no connection within 5 s\n");
		std::exit(1);
	}
	posix_spawn_file_actions_destroy(&fa);
	return {t_exit - t0, last_accept[port_slot] - t0};
}

struct Pct {
	double p50, p99, max;
};
Pct pct(std::vector<int64_t> v)
{
	std::sort(v.begin(), v.end());
	auto at = [&](double q) { return double(v[std::min(v.size() - 1, size_t(q * double(v.size())))]) / 1e6; };
	return {at(0.5), at(0.99), double(v.back()) / 1e6};
}
void report(const char *what, const std::vector<int64_t> &v)
{
	Pct p = pct(v);
	std::printf("%-52s n=%zu  p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms\n", what, v.size(), p.p50, p.p99, p.max);
}

State large_state(int rules, int prefixes)
{
	State s = lgtest::policy("Approved");
	ServiceTag tag;
	tag.name = "BigTag";
	tag.id = "BigTag";
	for (int i = 0; i < prefixes; i++)
		tag.addressPrefixes.push_back("172." + std::to_string(16 + i / 4096 % 16) + "." +
					      std::to_string(i / 16 % 256) + "." + std::to_string(i % 16 * 16) + "/28");
	s.serviceTags.values.push_back(tag);
	auto &nsg = s.networkSecurityGroups[0];
	for (int i = 0; i < rules; i++)
		nsg.securityRules.push_back(lg::testing::make_rule(
			"r" + std::to_string(i), 1000 + i, i % 2 ? "Inbound" : "Outbound", i % 3 ? "Allow" : "Deny",
			i % 2 ? "Udp" : "Tcp", i % 4 == 0 ? "BigTag" : "10." + std::to_string(i % 200) + ".0.0/16", "*",
			std::to_string(1024 + i)));
	fill_defaults(s);
	return s;
}

} // namespace

int main(int argc, char **argv)
{
	int runs = argc > 1 ? std::atoi(argv[1]) : 200;
	setvbuf(stdout, nullptr, _IOLBF, 0);
	if (geteuid() != 0) {
		std::fprintf(stderr, "needs root\n");
		return 1;
	}
	struct statfs fs {};
	if (statfs("/sys/fs/bpf", &fs) != 0 || fs.f_type != BPF_FS_MAGIC)
		mount("bpf", "/sys/fs/bpf", "bpf", 0, nullptr);
	std::string pin_dir = "/sys/fs/bpf/lgbench-" + std::to_string(getpid());

	// Compile time of the large state (no kernel involved).
	{
		State big = large_state(999, 10000); // + no-ssh: 1,000 (the per-NSG limit)
		if (auto v = validate(big); !v) {
			std::fprintf(stderr, "large state: %s\n", v.error().c_str());
			return 1;
		}
		std::vector<int64_t> t;
		for (int i = 0; i < 20; i++) {
			int64_t a = now_ns();
			auto c = compile(big, {}, 1);
			t.push_back(now_ns() - a);
			if (!c) {
				std::fprintf(stderr, "compile: %s\n", c.error().c_str());
				return 1;
			}
		}
		report("compile: 1,000 rules, 10,000-prefix tag", t);
		std::vector<int64_t> w;
		std::string f = "/tmp/lgbench-state-" + std::to_string(getpid()) + ".json";
		for (int i = 0; i < 20; i++) {
			int64_t a = now_ns();
			(void)save_state_file(f, big);
			w.push_back(now_ns() - a);
		}
		std::filesystem::remove(f);
		report("state file write (fsync): large state", w);
	}

	Topology topo;
	bool ok = lgtest::three_ns_topology(topo).empty();
	// Back to our own namespace before the topology goes: its teardown kills
	// every process inside.
	int orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	struct Restore {
		int fd;
		~Restore() { setns(fd, CLONE_NEWNET); }
	} restore{orig_ns};
	if (!ok || !enter(topo.real("host"))) {
		std::fprintf(stderr, "topology setup failed\n");
		return 1;
	}

	// Publish alone, in-process (its own unpinned dataplane, not attached).
	{
		auto dp = XdpDataplane::load();
		if (!dp) {
			std::fprintf(stderr, "load: %s\n", dp.error().c_str());
			return 1;
		}
		auto small = compile(lgtest::policy("Approved"), {}, 1);
		auto big = compile(large_state(999, 10000), {}, 1);
		std::vector<int64_t> ts, tb;
		for (int i = 0; i < runs; i++) {
			int64_t a = now_ns();
			(void)(*dp)->publish(*small);
			ts.push_back(now_ns() - a);
		}
		for (int i = 0; i < 20; i++) {
			int64_t a = now_ns();
			(void)(*dp)->publish(*big);
			tb.push_back(now_ns() - a);
		}
		report("XdpDataplane::publish: small state", ts);
		report("XdpDataplane::publish: large state", tb);
	}

	State small = lgtest::policy("Rejected");
	small.networkSecurityGroups[0].securityRules.push_back(
		lg::testing::make_rule("bench", 200, "Outbound", "Deny", "Tcp", "*", "192.168.20.11", "5000"));
	fill_defaults(small);
	auto agent = std::make_unique<lgtest::Daemon>(std::vector<std::string>{
		"--pin-dir", pin_dir, "--xdp-interface", "hc=client-vnet", "--xdp-interface", "hb="});
	std::filesystem::create_directories(agent->dir() + "/lib");
	(void)save_state_file(agent->state_path(), small);
	if (!agent->start()) {
		std::fprintf(stderr, "linkgated did not start:\n%s", agent->log().c_str());
		return 1;
	}
	std::thread acc(acceptor, topo.real("be")), prb(prober, topo.real("cli"));
	std::string sock = agent->socket_path();
	auto must = [&](const std::string &m, const json &p) {
		json r = agent->rpc(m, p);
		if (!r.is_object() || !r.contains("result")) {
			std::fprintf(stderr, "%s: %s\n", m.c_str(), r.dump().c_str());
			std::exit(1);
		}
	};

	std::vector<int64_t> pec_cli, pec_enf;
	for (int i = 0; i < runs; i++) {
		auto [cli, enf] = timed_ctl(sock,
					    {"mysql", "server", "private-endpoint-connection", "approve", "--server-name",
					     "eastus-db", "--name", "pe-east"},
					    0);
		pec_cli.push_back(cli);
		pec_enf.push_back(enf);
		must("mysql.server.private-endpoint-connection.reject", {{"serverName", "eastus-db"}, {"name", "pe-east"}});
	}
	report("PEC approve: linkgatectl exit (small state)", pec_cli);
	report("PEC approve -> first forwarded (small state)", pec_enf);

	auto nsg_runs = [&](const char *label, int n) {
		probe_dst = "192.168.20.11";
		probe_port = 5000;
		std::vector<int64_t> c, e;
		for (int i = 0; i < n; i++) {
			auto [cli, enf] = timed_ctl(sock,
						    {"network", "nsg", "rule", "update", "--nsg-name", "clients-nsg", "--name",
						     "bench", "--access", "Allow"},
						    1);
			c.push_back(cli);
			e.push_back(enf);
			must("network.nsg.rule.update", {{"nsgName", "clients-nsg"}, {"name", "bench"}, {"access", "Deny"}});
		}
		report((std::string("NSG rule change: linkgatectl exit (") + label + ")").c_str(), c);
		report((std::string("NSG rule change -> first forwarded (") + label + ")").c_str(), e);
		probe_dst = "10.1.1.100";
		probe_port = 3306;
	};
	nsg_runs("small state", runs);

	State big = large_state(998, 10000); // + no-ssh + bench: 1,000
	big.privateEndpoints[0].connectionState.status = "Rejected";
	big.networkSecurityGroups[0].securityRules.push_back(
		lg::testing::make_rule("bench", 200, "Outbound", "Deny", "Tcp", "*", "192.168.20.11", "5000"));
	fill_defaults(big);
	must("apply", {{"state", state_to_json(big)}});
	nsg_runs("1,000 rules + 10,000-prefix tag", std::min(runs, 100));

	stop = true;
	acc.join();
	prb.join();
	agent.reset();
	std::error_code ec;
	std::filesystem::remove_all(pin_dir, ec);
	return 0;
}
