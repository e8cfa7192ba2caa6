// Benchmark (not a CI test; root): how long a change takes to be enforced.
//
//   build/tests/agent/agent_bench [runs] [agent-nice] [--pec-only]
//                                 [--realtime=PRIO] [--own-session]
//
// --pec-only: only the PEC approve series at the socket, spaced (the
// issue 4 target), and the sweeps; a quicker run when working on it.
// --realtime=PRIO: linkgated --realtime PRIO (its control thread at
// SCHED_FIFO). --own-session: linkgated in a session of its own (setsid),
// as a service manager starts it; otherwise it shares the bench's session,
// hence with autogroup scheduling the CPU share of the prober thread.
// agent-nice (default: none, the agent runs at the bench's priority): the
// nice value the started linkgated gets (setpriority), e.g. -10 for an
// agent that a loaded host schedules first.
//
// - PEC approve → enforced: from the linkgatectl call (posix_spawn) to the
//   first TCP connection to the private endpoint that the backend accepts.
// - one NSG rule change (Deny → Allow) → enforced, the same way, on a small
//   state and on a state of 1,000 rules with a 10,000-prefix service tag.
// - the same changes at the socket: from writing the JSON-RPC request on an
//   open connection to its reply, and to the first accepted connection (no
//   CLI process start); and, from the agent's LINKGATED_TEST_TIMING lines
//   (same monotonic clock), to the return of its XDP publish (the new
//   generation live), with the time until the commit starts (wake-up, read,
//   parse, validate) and the commit's compile and publish times.
// - compile time of the small state (a PEC change, from scratch and with
//   the agent's compile cache) and of that large state, the agent's publish
//   alone, and the state file write.
// Every measured change comes right after the undo of the previous one (one
// flip just before it). "spaced": that undo comes 80 ms (longer than a grace
// period) after the previous measured change, so only one flip is that
// close; "burst": it comes at once, so the measured change is the third flip
// within a few ms.
// Two prober threads in the client namespace, one per CPU, each send a SYN every 100 µs (a new
// non-blocking connect); an acceptor thread in the backend namespace stamps
// each accepted connection. Results are in docs/agent-performance.md.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
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

// Every failure ends here, from any thread: the first caller runs the exit
// handlers and statics' teardown (main's comment on them), a later one waits
// for it, so no two run them at once.
[[noreturn]] void fail()
{
	static std::atomic_flag once = ATOMIC_FLAG_INIT;
	if (once.test_and_set())
		for (;;)
			pause();
	std::exit(1);
}

std::atomic<bool> stop{false};
std::atomic<int64_t> last_accept[2]{0, 0}; // 3306, 5000
// The first SYN to 3306 / 5000 that reached the backend's interface after
// syn_armed (kernel arrival time, on the steady clock); 0: none yet.
std::atomic<int64_t> syn_armed{0}, first_syn[2]{0, 0};
std::atomic<int> probe_port{3306};
std::atomic<const char *> probe_dst{"10.1.1.100"};

void acceptor(std::string ns)
{
	if (!enter(ns))
		fail();
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
			fail();
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

// Stamps every SYN that reaches the backend's interface (bb): the packet the
// new generation forwarded, before the backend's TCP stack and the acceptor
// thread's scheduling.
void sniffer(std::string ns)
{
	if (!enter(ns))
		fail();
	int s = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_IP));
	sockaddr_ll ll{};
	ll.sll_family = AF_PACKET;
	ll.sll_protocol = htons(ETH_P_IP);
	ll.sll_ifindex = int(if_nametoindex("bb"));
	if (s < 0 || bind(s, reinterpret_cast<sockaddr *>(&ll), sizeof ll) != 0)
		fail();
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
	pollfd p{s, POLLIN, 0};
	uint8_t b[256];
	char ctl[256];
	while (!stop) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		for (;;) {
			iovec iov{b, sizeof b};
			msghdr mh{};
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			mh.msg_control = ctl;
			mh.msg_controllen = sizeof ctl;
			ssize_t n = recvmsg(s, &mh, 0);
			if (n <= 0)
				break;
			// Arrival time: the kernel's CLOCK_REALTIME stamp moved to the steady clock.
			timespec rt, mt;
			clock_gettime(CLOCK_REALTIME, &rt);
			int64_t mono = now_ns(), t = mono;
			for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
				if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
					std::memcpy(&mt, CMSG_DATA(c), sizeof mt);
					t = mono - ((rt.tv_sec - mt.tv_sec) * 1'000'000'000 + (rt.tv_nsec - mt.tv_nsec));
				}
			size_t ihl = size_t(b[0] & 15) * 4;
			if (n < ssize_t(ihl + 14) || b[9] != IPPROTO_TCP || (b[ihl + 13] & 0x12) != 0x02)
				continue; // SYN without ACK only
			uint16_t dport = uint16_t(b[ihl + 2] << 8 | b[ihl + 3]);
			if ((dport == 3306 || dport == 5000) && t > syn_armed) {
				int64_t none = 0;
				first_syn[dport == 5000].compare_exchange_strong(none, t);
			}
		}
	}
	close(s);
}

// One of two probers, each pinned to its own CPU and sending every 100 µs:
// clients reach a real NIC host from outside it, so a CPU of this host that
// is busy (a non-preemptible syscall, a fsync) must not stop the stream.
void prober(std::string ns, int cpu)
{
	if (!enter(ns))
		fail();
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)sched_setaffinity(0, sizeof set, &set); // best effort: one CPU is fine
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
		timespec d{0, 100'000};
		nanosleep(&d, nullptr);
	}
	for (auto &[t, s] : open_fds)
		close(s);
}

// Arms the sniffer: the next SYN after now is the one measured.
int64_t arm_syn(int port_slot)
{
	int64_t t = now_ns();
	syn_armed = t;
	first_syn[port_slot] = 0;
	return t;
}
// ns from t0 to the first SYN on the backend side after it (the accept,
// which comes later, was already waited for).
int64_t syn_after(int64_t t0, int port_slot)
{
	int64_t deadline = now_ns() + 1'000'000'000;
	while (first_syn[port_slot] == 0 && now_ns() < deadline)
		std::this_thread::yield();
	int64_t t = first_syn[port_slot];
	if (t == 0) {
		std::fprintf(stderr, "no SYN seen on the backend side\n");
		fail();
	}
	return t - t0;
}

// ns from the start of a change to: its end (CLI exit or reply), the first
// SYN the new generation forwarded (arrival on the backend's interface), the
// first connection the backend accepted.
struct Timed {
	int64_t done, syn, accept;
	// From the agent's LINKGATED_TEST_TIMING line (socket runs; -1 unknown):
	// t0 → the publish returned (the generation is live in XDP), and inside
	// the commit: its start → compiled → published.
	int64_t live = -1, compile = -1, publish = -1, start = -1;
	int64_t faults = -1, preempted = -1; // in the commit, up to the publish's return
};

lgtest::Daemon *the_agent = nullptr;

// The agent's timing line of generation g: start, compiled, published, saved,
// and the commit thread's page faults and involuntary context switches
// between its start and the publish's return (-1: not printed).
bool agent_timing(uint64_t g, int64_t out[6])
{
	std::string log = the_agent->log(), key = "linkgated: timing generation " + std::to_string(g) + " ";
	size_t at = log.rfind(key);
	if (at == std::string::npos)
		return false;
	long long v[4];
	if (std::sscanf(log.c_str() + at + key.size(), "start %lld compiled %lld published %lld saved %lld", &v[0], &v[1],
			&v[2], &v[3]) != 4)
		return false;
	for (int i = 0; i < 4; i++)
		out[i] = v[i];
	long f = -1, p = -1;
	const char *rest = std::strstr(log.c_str() + at + key.size(), " faults ");
	const char *eol = std::strchr(log.c_str() + at, '\n');
	if (rest && (!eol || rest < eol))
		(void)std::sscanf(rest, " faults %ld preempted %ld", &f, &p);
	out[4] = f;
	out[5] = p;
	return true;
}

// The backend accepts a connection begun after t0 within 5 s, or the run ends.
void await_accept(int64_t t0, int port_slot)
{
	int64_t deadline = t0 + 5'000'000'000;
	while (last_accept[port_slot] <= t0 && now_ns() < deadline)
		std::this_thread::yield();
	if (last_accept[port_slot] <= t0) {
		std::fprintf(stderr, "no connection within 5 s\n");
		fail();
	}
}

// Runs linkgatectl.
Timed timed_ctl(const std::string &sock, std::vector<std::string> args, int port_slot)
{
	args.insert(args.begin(), {LINKGATECTL, "--socket", sock});
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int64_t t0 = arm_syn(port_slot);
	pid_t pid;
	if (posix_spawn(&pid, LINKGATECTL, &fa, nullptr, argv.data(), environ) != 0)
		fail();
	int st = 0;
	waitpid(pid, &st, 0);
	int64_t t_exit = now_ns();
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		std::fprintf(stderr, "linkgatectl failed\n");
		fail();
	}
	await_accept(t0, port_slot);
	posix_spawn_file_actions_destroy(&fa);
	return {t_exit - t0, syn_after(t0, port_slot), last_accept[port_slot] - t0};
}

// A persistent JSON-RPC connection to the agent.
struct Rpc {
	int fd = -1;
	explicit Rpc(const std::string &sock) : fd(lgtest::connect_unix(sock)) {}
	~Rpc()
	{
		if (fd >= 0)
			close(fd);
	}
	json call(const std::string &method, const json &params)
	{
		json req{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}};
		if (!lgtest::send_all(fd, req.dump() + "\n"))
			return nullptr;
		std::string line = lgtest::read_line(fd);
		return line.empty() ? json(nullptr) : json::parse(line);
	}
};

// One change over the open connection, from writing the request.
Timed timed_rpc(Rpc &rpc, const std::string &method, const json &params, int port_slot)
{
	int64_t t0 = arm_syn(port_slot);
	json r = rpc.call(method, params);
	int64_t t_reply = now_ns();
	if (!r.is_object() || !r.contains("result")) {
		std::fprintf(stderr, "%s: %s\n", method.c_str(), r.dump().c_str());
		fail();
	}
	await_accept(t0, port_slot);
	Timed out{t_reply - t0, syn_after(t0, port_slot), last_accept[port_slot] - t0};
	int64_t a[6];
	if (r.contains("generation") && agent_timing(r["generation"].get<uint64_t>(), a)) {
		out.live = a[2] - t0;
		out.start = a[0] - t0;
		out.compile = a[1] - a[0];
		out.publish = a[2] - a[1];
		out.faults = a[4];
		out.preempted = a[5];
	}
	return out;
}

void pause_ms(int ms)
{
	timespec d{ms / 1000, (ms % 1000) * 1'000'000L};
	nanosleep(&d, nullptr);
}

struct Pct {
	double p50, p90, p99, max;
	size_t over_1ms;
};
Pct pct(std::vector<int64_t> v)
{
	std::sort(v.begin(), v.end());
	auto at = [&](double q) { return double(v[std::min(v.size() - 1, size_t(q * double(v.size())))]) / 1e6; };
	size_t over = size_t(v.end() - std::upper_bound(v.begin(), v.end(), int64_t(1'000'000)));
	return {at(0.5), at(0.9), at(0.99), double(v.back()) / 1e6, over};
}
void report(const char *what, const std::vector<int64_t> &v)
{
	Pct p = pct(v);
	std::printf("%-76s n=%zu  p50 %8.3f ms  p90 %8.3f ms  p99 %8.3f ms  max %8.3f ms  >1ms %zu\n", what, v.size(),
		    p.p50, p.p90, p.p99, p.max, p.over_1ms);
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
	std::vector<std::string> pos;
	bool pec_only = false, own_session = false;
	std::string realtime; // linkgated --realtime PRIO
	for (int i = 1; i < argc; i++) {
		if (std::string(argv[i]) == "--pec-only")
			pec_only = true;
		else if (std::string(argv[i]) == "--own-session")
			own_session = true;
		else if (std::string(argv[i]).rfind("--realtime=", 0) == 0)
			realtime = argv[i] + 11;
		else
			pos.push_back(argv[i]);
	}
	int runs = pos.size() > 0 ? std::atoi(pos[0].c_str()) : 200;
	bool renice = pos.size() > 1;
	int agent_nice = renice ? std::atoi(pos[1].c_str()) : 0;
	setvbuf(stdout, nullptr, _IOLBF, 0);
	if (geteuid() != 0) {
		std::fprintf(stderr, "needs root\n");
		return 1;
	}
	struct statfs fs {};
	if (statfs("/sys/fs/bpf", &fs) != 0 || fs.f_type != BPF_FS_MAGIC)
		mount("bpf", "/sys/fs/bpf", "bpf", 0, nullptr);
	std::string pin_dir = "/sys/fs/bpf/lgbench-" + std::to_string(getpid());
	// Removed however the bench ends (its failures std::exit from threads;
	// scripts/lib.sh sweeps one a killed run left).
	static std::string s_pins;
	s_pins = pin_dir;
	std::atexit([] {
		std::error_code ec;
		std::filesystem::remove_all(s_pins, ec);
	});

	// Compile time of the small state, a PEC change: from scratch (every
	// server's Maglev tables filled again), with the cache linkgated carries
	// from one compile to the next, and as linkgated compiles now (the
	// cache, the previous output's Maglev array moved over) with the CPU's
	// caches cold: 64 MB touched before each compile, as other processes do
	// to the agent between two requests.
	{
		State pec = lgtest::policy("Approved");
		CompileCache cache, cache2;
		(void)compile(pec, {}, 1, &cache);
		auto live = compile(pec, {}, 1, &cache2);
		std::vector<int64_t> fresh, inc, cold, cold_moved;
		std::vector<uint8_t> junk(64 << 20);
		auto thrash = [&] {
			for (size_t q = 0; q < junk.size(); q += 64)
				junk[q]++;
		};
		for (int i = 0; i < runs; i++) {
			pec.privateEndpoints[0].connectionState.status = i % 2 ? "Approved" : "Rejected";
			int64_t a = now_ns();
			auto c1 = compile(pec, {}, uint64_t(i + 2));
			int64_t b = now_ns();
			auto c2 = compile(pec, {}, uint64_t(i + 2), &cache);
			int64_t c = now_ns();
			thrash();
			int64_t d = now_ns();
			auto c3 = compile(pec, {}, uint64_t(i + 2), &cache);
			int64_t e = now_ns();
			thrash();
			int64_t f = now_ns();
			auto c4 = compile(pec, {}, uint64_t(i + 2), &cache2, &*live);
			int64_t g = now_ns();
			if (!c1 || !c2 || !c3 || !c4) {
				std::fprintf(stderr, "compile failed\n");
				return 1;
			}
			live = std::move(c4);
			fresh.push_back(b - a);
			inc.push_back(c - b);
			cold.push_back(e - d);
			cold_moved.push_back(g - f);
		}
		report("compile: small state, PEC change, from scratch", fresh);
		report("compile: small state, PEC change, with the cache", inc);
		report("compile: small state, PEC change, with the cache, cold CPU caches", cold);
		report("compile: ... with the cache and the Maglev array moved (as linkgated), cold", cold_moved);
	}

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

	// The topology, our own namespace's return and the agent are statics:
	// a failure std::exits from any thread, and that runs their teardown
	// as a return from main does, newest first: the agent, our namespace
	// back (the topology's teardown kills every process inside), the
	// namespaces, then the pins.
	static Topology topo;
	bool ok = lgtest::three_ns_topology(topo).empty();
	static int orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	std::atexit([] { setns(orig_ns, CLONE_NEWNET); });
	if (!ok || !enter(topo.real("host"))) {
		std::fprintf(stderr, "topology setup failed\n");
		return 1;
	}

	// Publish alone, in-process (its own unpinned dataplane, not attached).
	{
		XdpConfig xc;
		xc.gen_slots = LG_GEN_SLOTS; // as linkgated
		auto dp = XdpDataplane::load(xc);
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
	std::vector<std::string> agent_args{"--pin-dir", pin_dir, "--xdp-interface", "hc=client-vnet", "--xdp-interface",
					   "hb="};
	if (!realtime.empty()) {
		agent_args.push_back("--realtime");
		agent_args.push_back(realtime);
		std::printf("linkgated --realtime %s\n", realtime.c_str());
	}
	static std::unique_ptr<lgtest::Daemon> agent;
	agent = std::make_unique<lgtest::Daemon>(agent_args);
	agent->set_own_session(own_session);
	if (own_session)
		std::printf("linkgated runs in a session of its own\n");
	std::filesystem::create_directories(agent->dir() + "/lib");
	(void)save_state_file(agent->state_path(), small);
	setenv("LINKGATED_TEST_TIMING", "1", 1); // per-commit step times on the agent's stderr
	the_agent = agent.get();
	if (!agent->start()) {
		std::fprintf(stderr, "linkgated did not start:\n%s", agent->log().c_str());
		return 1;
	}
	if (renice) {
		if (setpriority(PRIO_PROCESS, id_t(agent->pid()), agent_nice) != 0) {
			std::fprintf(stderr, "setpriority: %s\n", std::strerror(errno));
			return 1;
		}
		std::printf("linkgated runs at nice %d\n", agent_nice);
	}
	std::thread acc(acceptor, topo.real("be")), snf(sniffer, topo.real("be")), prb(prober, topo.real("cli"), 0),
		prb2(prober, topo.real("cli"), 1 % std::max(1, get_nprocs()));
	std::string sock = agent->socket_path();
	Rpc rpc(sock);
	auto must = [&](const std::string &m, const json &p) {
		json r = rpc.call(m, p);
		if (!r.is_object() || !r.contains("result")) {
			std::fprintf(stderr, "%s: %s\n", m.c_str(), r.dump().c_str());
			fail();
		}
	};

	// One measured series: n changes (through the CLI or the socket), each
	// right after the undo of the previous one.
	auto series = [&](const std::string &label, int n, bool cli, bool spaced, const std::vector<std::string> &ctl_args,
			  const std::string &method, const json &params, const std::string &undo_method,
			  const json &undo_params, int port_slot) {
		std::vector<int64_t> a, f, e, live, comp, pub, start, faults, f_pre, f_calm, live_syn;
		int over_shown = 0;
		// One change more than counted: the first of a series waits for
		// the client's path to the target to warm up (its first forwarded
		// SYN came 100-400 ms late in every run, with the generation live
		// in < 0.2 ms: not the agent's time). Printed, not counted.
		for (int i = -1; i < n; i++) {
			if (spaced)
				pause_ms(80); // a workload shape, not a synchronisation
			must(undo_method, undo_params);
			Timed t = cli ? timed_ctl(sock, ctl_args, port_slot) : timed_rpc(rpc, method, params, port_slot);
			if (i < 0) {
				std::printf("  %s: the series' first change (not counted): first SYN %.3f ms, live %.3f ms\n",
					    label.c_str(), double(t.syn) / 1e6, double(t.live) / 1e6);
				continue;
			}
			a.push_back(t.done);
			f.push_back(t.syn);
			e.push_back(t.accept);
			if (t.live >= 0) {
				live.push_back(t.live);
				comp.push_back(t.compile);
				pub.push_back(t.publish);
				start.push_back(t.start);
				live_syn.push_back(t.syn - t.live);
			}
			if (t.syn > 1'000'000 && ++over_shown <= 12) // the first dozen, to see where the time went
				std::printf("  %s run %d over 1 ms: first SYN %.3f ms, live %.3f (request → commit %.3f, compile "
					    "%.3f, publish %.3f), commit preempted %lld times\n",
					    label.c_str(), i, double(t.syn) / 1e6, double(t.live) / 1e6, double(t.start) / 1e6,
					    double(t.compile) / 1e6, double(t.publish) / 1e6, (long long)t.preempted);
			if (t.faults >= 0) {
				faults.push_back(t.faults);
				(t.preempted > 0 ? f_pre : f_calm).push_back(t.syn);
			}
		}
		std::string tag = label + (cli ? " [linkgatectl, " : " [socket, ") + (spaced ? "spaced]" : "burst]");
		report((tag + (cli ? ": CLI exit" : ": reply")).c_str(), a);
		report((tag + ": first forwarded SYN").c_str(), f);
		report((tag + ": first accepted connection").c_str(), e);
		if (!live.empty()) {
			report((tag + ": live in XDP (agent's publish returned)").c_str(), live);
			report((tag + ": request written → agent's commit starts").c_str(), start);
			report((tag + ": agent compile").c_str(), comp);
			report((tag + ": agent publish").c_str(), pub);
			report((tag + ": live in XDP → first forwarded SYN (the prober's next SYN)").c_str(), live_syn);
		}
		if (!faults.empty()) {
			std::sort(faults.begin(), faults.end());
			std::printf("%s: commit thread's page faults (start → publish returned) p50 %lld p99 %lld max %lld\n",
				    tag.c_str(), (long long)faults[faults.size() / 2],
				    (long long)faults[std::min(faults.size() - 1, faults.size() * 99 / 100)],
				    (long long)faults.back());
			if (!f_calm.empty())
				report((tag + ": first forwarded SYN, commit not preempted").c_str(), f_calm);
			if (!f_pre.empty())
				report((tag + ": first forwarded SYN, commit preempted (involuntary switch)").c_str(), f_pre);
		}
	};

	json approve{{"serverName", "eastus-db"}, {"name", "pe-east"}};
	// Warm-up: the first publishes into each of the fresh dataplane's three
	// generation slots create its inner maps (one grace period each), once
	// in the dataplane's life. Reported apart, not mixed into the series.
	{
		std::vector<int64_t> first;
		for (int i = 0; i < 6; i++) {
			json r = rpc.call(i % 2 ? "mysql.server.private-endpoint-connection.reject"
						: "mysql.server.private-endpoint-connection.approve",
					  approve);
			int64_t a[6];
			if (r.is_object() && r.contains("generation") && agent_timing(r["generation"].get<uint64_t>(), a))
				first.push_back(a[2] - a[1]);
		}
		for (size_t i = 0; i < first.size(); i++)
			std::printf("warm-up commit %zu after the agent's start: agent publish %.3f ms\n", i + 1,
				    double(first[i]) / 1e6);
	}
	std::vector<std::string> approve_ctl{"mysql", "server", "private-endpoint-connection", "approve",
					     "--server-name", "eastus-db", "--name", "pe-east"};
	for (bool spaced : {true, false})
		for (bool cli : {false, true})
			if (!pec_only || (spaced && !cli))
				series("PEC approve (small)", runs, cli, spaced, approve_ctl,
				       "mysql.server.private-endpoint-connection.approve", approve,
				       "mysql.server.private-endpoint-connection.reject", approve, 0);
	must("mysql.server.private-endpoint-connection.reject", approve);

	json allow{{"nsgName", "clients-nsg"}, {"name", "bench"}, {"access", "Allow"}},
		deny{{"nsgName", "clients-nsg"}, {"name", "bench"}, {"access", "Deny"}};
	std::vector<std::string> allow_ctl{"network", "nsg", "rule", "update", "--nsg-name", "clients-nsg",
					   "--name", "bench", "--access", "Allow"};
	auto nsg_runs = [&](const std::string &label, int n, bool burst_too) {
		probe_dst = "192.168.20.11";
		probe_port = 5000;
		for (bool spaced : {true, false})
			if (spaced || burst_too)
				for (bool cli : {false, true})
					series("NSG rule change (" + label + ")", n, cli, spaced, allow_ctl,
					       "network.nsg.rule.update", allow, "network.nsg.rule.update", deny, 1);
		must("network.nsg.rule.update", deny);
		probe_dst = "10.1.1.100";
		probe_port = 3306;
	};
	if (!pec_only)
		nsg_runs("small", runs, true);

	State big = large_state(998, 10000); // + no-ssh + bench: 1,000
	big.privateEndpoints[0].connectionState.status = "Rejected";
	big.networkSecurityGroups[0].securityRules.push_back(
		lg::testing::make_rule("bench", 200, "Outbound", "Deny", "Tcp", "*", "192.168.20.11", "5000"));
	fill_defaults(big);
	if (!pec_only) {
		must("apply", {{"state", state_to_json(big)}});
		nsg_runs("1,000 rules + 10,000-prefix tag", std::min(runs, 100), false);
	}

	// The agent's background sweeps of expired flows (every second, between
	// requests): a request that arrives during one waits for it.
	{
		std::vector<int64_t> sweeps;
		std::string log = agent->log();
		for (size_t at = 0; (at = log.find("sweep ", at)) != std::string::npos; at += 6) {
			double ms = std::atof(log.c_str() + at + 6);
			sweeps.push_back(int64_t(ms * 1e6));
		}
		if (!sweeps.empty())
			report("agent: background sweep of expired flows (reclaim)", sweeps);
	}
	stop = true;
	acc.join();
	snf.join();
	prb.join();
	prb2.join();
	agent.reset();
	std::error_code ec;
	std::filesystem::remove_all(pin_dir, ec);
	return 0;
}
