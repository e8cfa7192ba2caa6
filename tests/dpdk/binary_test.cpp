// The real linkgate-dpdk on net_pcap ports: the scenario's frames in input
// pcaps, the output pcaps compared byte for byte with the reference
// evaluator, the --stats-json counters, DPDK telemetry (dpdk-telemetry.py)
// while it runs, and its answers to bad arguments and a bad state file.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/un.h>

#include <map>
#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "arm_json.hpp"
#include "dpdk_scenario.hpp"
#include "hex.hpp"
#include "proc.hpp"

namespace lg {
namespace {

using namespace dpdktest;
using nlohmann::json;

using lg::testing::hex;

const char *binary() { return LINKGATE_DPDK; }

// net_pcap's MACs: 02:70:63:61:70:<device index>.
const Mac kPcap0{0x02, 0x70, 0x63, 0x61, 0x70, 0x00}, kPcap1{0x02, 0x70, 0x63, 0x61, 0x70, 0x01};

std::vector<std::string> eal(const Scratch &s, const std::vector<std::string> &vdevs)
{
	std::vector<std::string> a = {binary(), "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", s.prefix(), "-l", "0,1"};
	for (auto &v : vdevs) {
		a.push_back("--vdev");
		a.push_back(v);
	}
	a.push_back("--");
	return a;
}

std::vector<std::string> ports_and_routes()
{
	std::vector<std::string> a = {"--port", "0=client-vnet", "--port", "1", "--flows", "4096"};
	for (auto &r : scenario_routes()) {
		a.push_back("--route");
		a.push_back(r);
	}
	return a;
}

bool write_state(const std::string &path, const State &s)
{
	std::ofstream f(path);
	f << state_to_json(s).dump(2);
	return bool(f);
}

// The scenario's frames as two input pcaps, and what the evaluator says
// comes out of each port when linkgate-dpdk's one worker reads all of port
// 0's frames, then all of port 1's (one burst each).
struct Expected {
	std::map<uint16_t, std::vector<std::vector<uint8_t>>> in, out;
	std::map<uint16_t, std::vector<std::string>> out_what;
	Counters counters;
	uint64_t forwarded = 0;
};

Expected expected()
{
	Expected x;
	std::map<uint16_t, std::vector<Frame>> by_port;
	for (auto &round : scenario_rounds(kPcap0, kPcap1))
		for (auto &f : round)
			by_port[f.port].push_back(f);
	Evaluator ev(scenario_host(kPcap0, kPcap1));
	EXPECT_TRUE(ev.commit(scenario_state()).ok());
	for (uint16_t port : {uint16_t(0), uint16_t(1)})
		for (auto &f : by_port[port]) {
			x.in[port].push_back(f.bytes);
			Decision d = ev.process(f.bytes, port + 1u, 0);
			uint16_t out = d.verdict == LG_VERDICT_FORWARD ? uint16_t(d.egress_ifindex - 1) : port;
			if (d.verdict == LG_VERDICT_FORWARD || d.verdict == LG_VERDICT_TX) {
				x.out[out].push_back(d.frame);
				x.out_what[out].push_back(f.what);
				x.forwarded++;
			}
		}
	x.counters = ev.counters();
	return x;
}

TEST(DpdkBinary, PcapPortsMatchTheEvaluator)
{
	Scratch s("pcap");
	Expected x = expected();
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), x.in[0]));
	ASSERT_TRUE(write_pcap(s.path("in1.pcap"), x.in[1]));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	auto args = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=" + s.path("out0.pcap"),
			    "net_pcap1,rx_pcap=" + s.path("in1.pcap") + ",tx_pcap=" + s.path("out1.pcap")});
	for (auto &a : std::vector<std::string>{"--state", s.path("state.json"), "--duration", "1", "--stats-json", s.path("stats.json")})
		args.push_back(a);
	for (auto &a : ports_and_routes())
		args.push_back(a);
	RunResult r = run(args, s.dir());
	ASSERT_EQ(r.code, 0) << r.err;

	for (uint16_t port : {uint16_t(0), uint16_t(1)}) {
		auto got = read_pcap(s.path("out" + std::to_string(port) + ".pcap"));
		auto &want = x.out[port];
		ASSERT_EQ(got.size(), want.size()) << "frames out of port " << port;
		for (size_t i = 0; i < got.size(); i++)
			EXPECT_EQ(got[i], want[i]) << x.out_what[port][i] << " (port " << port << ")\nlinkgate-dpdk:\n"
						   << hex(got[i]) << "\nevaluator:\n" << hex(want[i]);
	}

	json st = json::parse(slurp_file(s.path("stats.json")), nullptr, false);
	ASSERT_FALSE(st.is_discarded()) << slurp_file(s.path("stats.json"));
	EXPECT_EQ(st["generation"], 1);
	EXPECT_EQ(st["ports"]["rx"], x.in[0].size() + x.in[1].size());
	EXPECT_EQ(st["ports"]["tx"], x.forwarded);
	EXPECT_EQ(st["ports"]["txFailed"], 0);
	for (int i = 0; i < LG_REASON__COUNT; i++)
		EXPECT_EQ(st["reasons"][reason_name(lg_reason(i))], x.counters.reasons[size_t(i)]) << reason_name(lg_reason(i));
	EXPECT_GT(x.counters.reasons[LG_REASON_NSG_DENY], 0u);
	EXPECT_EQ(st["rules"]["clients-nsg/web"], 1) << st["rules"].dump();
	EXPECT_GE(st["aclBuilds"].get<int>(), 2);
}

// dpdk-telemetry.py -f PREFIX with one command on stdin; the JSON answer.
json telemetry(const Scratch &s, const std::string &cmd)
{
	std::ofstream(s.path("tel.in")) << cmd << "\n";
	RunResult r = run({"/bin/sh", "-c", "exec /usr/bin/python3 /usr/bin/dpdk-telemetry.py -f " + s.prefix() + " < " + s.path("tel.in")}, s.dir(), 10000);
	// The script prints a prompt, then the answer as JSON.
	auto b = r.out.find('{');
	auto e = r.out.rfind('}');
	if (r.code != 0 || b == std::string::npos || e == std::string::npos)
		return json();
	return json::parse(r.out.substr(b, e - b + 1), nullptr, false);
}

TEST(DpdkBinary, TelemetryAnswersWhileRunning)
{
	// Debian's dpdk-dev, which scripts/lib.sh installs: missing is a failure.
	ASSERT_EQ(access("/usr/bin/dpdk-telemetry.py", X_OK), 0) << "no /usr/bin/dpdk-telemetry.py (Debian package dpdk-dev)";
	Scratch s("tel");
	Expected x = expected();
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), x.in[0]));
	ASSERT_TRUE(write_pcap(s.path("in1.pcap"), x.in[1]));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	auto args = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=/dev/null,infinite_rx=1",
			    "net_pcap1,rx_pcap=" + s.path("in1.pcap") + ",tx_pcap=/dev/null"});
	for (auto &a : std::vector<std::string>{"--state", s.path("state.json"), "--duration", "30"})
		args.push_back(a);
	for (auto &a : ports_and_routes())
		args.push_back(a);
	Proc p(args, s.path("dpdk.out"), s.path("dpdk.err"));
	json first, later;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
	while (std::chrono::steady_clock::now() < deadline && p.running()) {
		json t = telemetry(s, "/linkgate/stats");
		if (t.is_object() && t.contains("/linkgate/stats") && t["/linkgate/stats"].is_object() &&
		    t["/linkgate/stats"].value("rx", 0) > 0) {
			if (first.is_null())
				first = t["/linkgate/stats"];
			else if (t["/linkgate/stats"]["rx"].get<uint64_t>() > first["rx"].get<uint64_t>()) {
				later = t["/linkgate/stats"];
				break;
			}
		}
		poll(nullptr, 0, 50);
	}
	ASSERT_TRUE(p.running()) << p.err();
	ASSERT_TRUE(first.is_object()) << "no /linkgate/stats answer with rx > 0\n" << p.err();
	ASSERT_TRUE(later.is_object()) << "rx did not grow: " << first.dump();
	EXPECT_GE(later["generation"].get<uint64_t>(), 1u);
	EXPECT_GT(later["reason_nsg_deny"].get<uint64_t>(), 0u) << later.dump();
	EXPECT_GT(later["reason_none"].get<uint64_t>(), 0u) << later.dump();
	EXPECT_EQ(p.terminate(), 0) << p.err();
}

TEST(DpdkBinary, BadArgumentsExit2WithOneLine)
{
	Scratch s("args");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), {}));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	auto base = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=" + s.path("out0.pcap")});
	struct Case {
		std::vector<std::string> args;
		std::string says;
	};
	std::string st = s.path("state.json");
	std::vector<Case> cases = {
		{{"--state", st, "--port", "9"}, "--port 9"},
		{{"--state", st, "--port", "0", "--route", "garbage"}, "--route garbage"},
		{{"--state", st, "--port", "0", "--route", "10.0.0.0/8=5,02:00:00:00:00:01"}, "port is not one of --port"},
		{{"--port", "0"}, "exactly one of --socket and --state"},
		{{"--state", st, "--socket", s.path("sock"), "--port", "0"}, "exactly one of --socket and --state"},
		{{"--state", st, "--port", "0", "--acl-alg", "fastest"}, "--acl-alg"},
		{{"--state", st}, "--port"},
		{{"--socket", s.path("sock"), "--port", "0", "--classify-trace", st}, "need --state"},
		// A field must be what it says, whole.
		{{"--state", st, "--port", "0x0"}, "--port 0x0"},
		{{"--state", st, "--port", "0 junk"}, "--port 0 junk"},
		{{"--state", st, "--port", "0", "--port", "0=client-vnet"}, "given twice"},
		{{"--state", st, "--port", "0", "--route", "10.0.0.0/8=0junk,02:00:00:00:00:01"}, "port is not one of --port"},
		{{"--state", st, "--port", "0", "--route", "10.0.0.5/8=0,02:00:00:00:00:01"}, "bits set past its length"},
		{{"--state", st, "--port", "0", "--route", "10.0.0.0/8=0,ff:ff:ff:ff:ff:ff"}, "unicast"},
		{{"--state", st, "--port", "0", "--route", "10.0.0.0/8=0,02:00:00:00:00:01", "--route",
		  "10.0.0.0/8=0,02:00:00:00:00:02"},
		 "prefix 10.0.0.0/8 is given twice"},
		// Numbers are decimal: CLI11 alone read 0x400 as 1024 and wrapped
		// a minus sign around.
		{{"--state", st, "--port", "0", "--flows", "0x400"}, "--flows"},
		{{"--state", st, "--port", "0", "--flows", "-18446744073709551615"}, "--flows"},
		{{"--state", st, "--port", "0", "--mbufs", "-18446744073709550592"}, "--mbufs"},
		{{"--state", st, "--port", "0", "--reclaim-interval", "+1000"}, "--reclaim-interval"},
		{{"--state", st, "--port", "0", "--duration", "-1"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "-0"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "nan"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "0x1p3"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", " 1"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "1s"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "1e3"}, "--duration"},
		{{"--state", st, "--port", "0", "--duration", "+1"}, "--duration"},
		{{"--state", st, "--port", "0", "--reclaim-interval", "5"}, "--reclaim-interval"},
		{{"--state", st, "--port", "0", "--reclaim-interval", "1s"}, "--reclaim-interval"},
		{{"--state", st, "--port", "0", "--dump-acl", ""}, "--dump-acl"},
		{{"--state", st, "--port", "0", "--name", "no spaces"}, "--name"},
		{{"--socket", "/tmp/" + std::string(120, 'x'), "--port", "0"}, "--socket"},
	};
	for (auto &c : cases) {
		auto a = base;
		a.insert(a.end(), c.args.begin(), c.args.end());
		std::string what;
		for (auto &x : c.args)
			what += x + " ";
		SCOPED_TRACE(what);
		RunResult r = run(a, s.dir());
		EXPECT_EQ(r.code, 2) << r.err;
		auto own = own_lines(r.err);
		ASSERT_EQ(own.size(), 1u) << r.err;
		EXPECT_NE(own[0].find(c.says), std::string::npos) << own[0];
		EXPECT_EQ(r.err.find("Run with --help"), std::string::npos) << "one line, not CLI11's two";
	}
}

TEST(DpdkBinary, InvalidStateFileExitsNamingTheProblem)
{
	Scratch s("bad");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), {}));
	State bad = scenario_state();
	bad.privateEndpoints[0].server = "no-such-db";
	ASSERT_TRUE(write_state(s.path("state.json"), bad));
	std::ofstream(s.path("broken.json")) << "{\"virtualNetworks\": [";
	auto base = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=" + s.path("out0.pcap")});
	for (auto &[file, says] : std::vector<std::pair<std::string, std::string>>{{"state.json", "no-such-db"}, {"broken.json", "broken.json"}}) {
		SCOPED_TRACE(file);
		auto a = base;
		for (auto &x : std::vector<std::string>{"--state", s.path(file), "--port", "0=client-vnet"})
			a.push_back(x);
		RunResult r = run(a, s.dir());
		EXPECT_EQ(r.code, 1) << r.err; // not a crash after the message
		auto own = own_lines(r.err);
		ASSERT_EQ(own.size(), 1u) << r.err;
		EXPECT_NE(own[0].find(says), std::string::npos) << own[0];
	}
}

// --duration bounds the wait for a first generation too: with no agent at
// the socket, linkgate-dpdk stops on time and exits 0 (before: it waited
// for ever).
TEST(DpdkBinary, DurationEndsTheWaitForAnAgent)
{
	Scratch s("noagent");
	auto a = eal(s, {"net_null0"});
	for (auto &x : std::vector<std::string>{"--socket", s.path("nobody.sock"), "--port", "0=client-vnet", "--duration", "1"})
		a.push_back(x);
	auto t0 = std::chrono::steady_clock::now();
	RunResult r = run(a, s.dir(), 15000);
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_GE(secs, 1.0);
	EXPECT_NE(r.err.find("stopped before linkgated sent a generation"), std::string::npos) << r.err;
}

// An agent whose listen backlog is full does not hold the main lcore: the
// connect fails at once and is retried, and --duration still ends the run
// (before 2026-11-30 connect blocked until the agent accepted).
TEST(DpdkBinary, AnAgentThatDoesNotAcceptDoesNotHoldTheMainLcore)
{
	Scratch s("backlog");
	std::string path = s.path("full.sock");
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	ASSERT_GE(l, 0);
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
	ASSERT_EQ(bind(l, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
	ASSERT_EQ(listen(l, 0), 0);
	std::vector<int> fill; // connections nobody accepts, until the backlog refuses
	for (int i = 0; i < 64; i++) {
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ASSERT_GE(c, 0);
		fill.push_back(c);
		if (connect(c, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
			ASSERT_EQ(errno, EAGAIN);
			break;
		}
		ASSERT_LT(i, 63) << "the backlog never filled";
	}
	auto args = eal(s, {"net_null0"});
	for (auto &x : std::vector<std::string>{"--socket", path, "--port", "0=client-vnet", "--duration", "1"})
		args.push_back(x);
	RunResult r = run(args, s.dir(), 20000);
	for (int c : fill)
		close(c);
	close(l);
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_NE(r.err.find("cannot connect to " + path + ": Resource temporarily unavailable"), std::string::npos)
		<< r.err;
	EXPECT_NE(r.err.find("stopped before linkgated sent a generation"), std::string::npos) << r.err;
}

// More worker lcores than the build serves is a usage error before any port
// is started (it was found by the engine, after the ports, as exit 1).
TEST(DpdkBinary, TooManyWorkerLcoresIsAUsageError)
{
	Scratch s("lcores");
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	std::vector<std::string> a = {binary(), "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", s.prefix(),
				      "--lcores", "0@0,(1-16)@1", "--vdev", "net_null0", "--", "--state",
				      s.path("state.json"), "--port", "0"};
	RunResult r = run(a, s.dir());
	EXPECT_EQ(r.code, 2) << r.err;
	auto own = own_lines(r.err);
	ASSERT_EQ(own.size(), 1u) << r.err;
	EXPECT_NE(own[0].find("16 worker lcores, more than the 15 this build serves"), std::string::npos) << own[0];
}

// An --acl-alg the EAL's SIMD limit rules out is an error at start, not a
// refusal of every generation.
TEST(DpdkBinary, AclAlgorithmThatCannotRunIsRefusedAtStart)
{
	Scratch s("aclalg");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), {}));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	std::vector<std::string> a = {binary(), "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", s.prefix(), "-l",
				      "0,1", "--force-max-simd-bitwidth=128", "--vdev", "net_pcap0,rx_pcap=" + s.path("in0.pcap"),
				      "--", "--state", s.path("state.json"), "--port", "0", "--acl-alg", "avx2"};
	RunResult r = run(a, s.dir());
	EXPECT_EQ(r.code, 2) << r.err;
	auto own = own_lines(r.err);
	ASSERT_EQ(own.size(), 1u) << r.err;
	EXPECT_NE(own[0].find("--acl-alg avx2"), std::string::npos) << own[0];
}

// /linkgate/stats asked without a pause while linkgate-dpdk stops: every
// answer comes from a live engine or none, and the exit is clean (the
// telemetry thread used to read the freed engine). --stats-json that cannot
// be written is exit 1.
TEST(DpdkBinary, TelemetryWhileStoppingAndAnUnwritableStatsFile)
{
	Scratch s("telstop");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), expected().in[0]));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	auto a = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=/dev/null,infinite_rx=1", "net_null0"});
	for (auto &x : std::vector<std::string>{"--state", s.path("state.json"), "--port", "0=client-vnet", "--port", "1",
						"--flows", "4096", "--duration", "1.5", "--stats-json",
						s.path("no-such-dir/stats.json")})
		a.push_back(x);
	Proc p(a, s.path("dpdk.out"), s.path("dpdk.err"));
	uint64_t answers = 0;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
	while (p.running() && std::chrono::steady_clock::now() < deadline) {
		std::string sock;
		for (auto &d : s.runtime_dirs()) // the EAL's runtime directory for this user
			if (std::filesystem::exists(d + "/dpdk_telemetry.v2"))
				sock = d + "/dpdk_telemetry.v2";
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		timeval tv{2, 0}; // a process that hangs does not hang the test
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		sockaddr_un sa{};
		sa.sun_family = AF_UNIX;
		std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock.c_str());
		char buf[65536];
		if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0 && recv(fd, buf, sizeof buf, 0) > 0)
			while (send(fd, "/linkgate/stats", 15, MSG_NOSIGNAL) == 15 && recv(fd, buf, sizeof buf, 0) > 0)
				answers++;
		if (fd >= 0)
			close(fd);
		poll(nullptr, 0, 1);
	}
	EXPECT_EQ(p.wait(10000), 1) << p.err();
	EXPECT_GT(answers, 0u);
	EXPECT_NE(p.err().find("--stats-json"), std::string::npos) << p.err();
}

// The agent's side of the channel, played by the test: one listening Unix
// socket, lines in and out with deadlines.
class FakeAgent {
public:
	explicit FakeAgent(const std::string &path)
	{
		lfd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_un a{};
		a.sun_family = AF_UNIX;
		std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
		ok_ = lfd_ >= 0 && bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 && listen(lfd_, 8) == 0;
	}
	~FakeAgent()
	{
		drop();
		for (int fd : held_)
			close(fd);
		if (lfd_ >= 0)
			close(lfd_);
	}
	bool ok() const { return ok_; }
	// keep_old: the current connection stays open, unread, until the end.
	bool accept_one(int timeout_ms = 20000, bool keep_old = false)
	{
		if (keep_old && fd_ >= 0) {
			held_.push_back(fd_);
			fd_ = -1;
			buf_.clear();
		}
		drop();
		pollfd p{lfd_, POLLIN, 0};
		if (poll(&p, 1, timeout_ms) != 1)
			return false;
		fd_ = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
		return fd_ >= 0;
	}
	void drop()
	{
		if (fd_ >= 0)
			close(fd_);
		fd_ = -1;
		buf_.clear();
	}
	bool send_line(const std::string &l)
	{
		std::string x = l + "\n";
		for (size_t off = 0; off < x.size();) {
			ssize_t n = send(fd_, x.data() + off, x.size() - off, MSG_NOSIGNAL);
			if (n <= 0)
				return false;
			off += size_t(n);
		}
		return true;
	}
	// The next line, or "" on EOF or after timeout_ms.
	std::string line(int timeout_ms = 20000)
	{
		auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
		size_t nl;
		while ((nl = buf_.find('\n')) == std::string::npos) {
			int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
			pollfd p{fd_, POLLIN, 0};
			char b[65536];
			ssize_t n = left > 0 && poll(&p, 1, left) == 1 ? read(fd_, b, sizeof b) : 0;
			if (n <= 0)
				return "";
			buf_.append(b, size_t(n));
		}
		std::string l = buf_.substr(0, nl);
		buf_.erase(0, nl + 1);
		return l;
	}
	// Writes line until the socket takes no more (true) or max times.
	bool flood(const std::string &line, int max)
	{
		for (int i = 0; i < max; i++)
			for (size_t off = 0; off < line.size();) {
				ssize_t n = send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
					pollfd p{fd_, POLLOUT, 0};
					if (poll(&p, 1, 500) == 0) // nothing drained for 0.5 s
						return true;
					continue;
				}
				if (n <= 0)
					return false;
				off += size_t(n);
			}
		return false;
	}
	json request(const std::string &l)
	{
		if (!send_line(l))
			return json();
		return json::parse(line(), nullptr, false);
	}
	// Reads (and forgets) what has arrived, up to max bytes, without waiting.
	size_t discard(size_t max)
	{
		char b[65536];
		ssize_t n = recv(fd_, b, std::min(max, sizeof b), MSG_DONTWAIT);
		return n > 0 ? size_t(n) : 0;
	}

private:
	int lfd_ = -1, fd_ = -1;
	std::vector<int> held_;
	bool ok_ = false;
	std::string buf_;
};

// Messages from the agent of the wrong shape get a JSON-RPC error and leave
// the channel working (they aborted the process); one nested too deep closes
// the channel, not the process (it overflowed the stack); a registration
// refused again and again is retried with a growing pause (it was retried
// thousands of times a second); an agent that stops reading costs the
// channel after 5 s, not the main lcore.
TEST(DpdkBinary, AgentChannelMessagesOfTheWrongShape)
{
	Scratch s("chan");
	std::string sock = s.path("agent.sock");
	FakeAgent fa(sock);
	ASSERT_TRUE(fa.ok());
	auto a = eal(s, {"net_null0"});
	for (auto &x : std::vector<std::string>{"--socket", sock, "--port", "0=client-vnet", "--flows", "4096"})
		a.push_back(x);
	Proc p(a, s.path("dpdk.out"), s.path("dpdk.err"));
	ASSERT_TRUE(fa.accept_one()) << p.err();
	json reg = json::parse(fa.line(), nullptr, false);
	ASSERT_TRUE(reg.is_object()) << p.err();
	EXPECT_EQ(reg["method"], "dataplane.register");
	EXPECT_EQ(reg["params"]["generation"], 0) << "it enforces nothing yet";
	ASSERT_TRUE(fa.send_line(json{{"jsonrpc", "2.0"}, {"id", reg["id"]}, {"result", {{"generation", 0}}}}.dump()));
	json pub{{"jsonrpc", "2.0"}, {"id", 2}, {"method", "dataplane.publish"},
		 {"params", {{"generation", 1}, {"state", state_to_json(scenario_state())}}}};
	json ack = fa.request(pub.dump());
	ASSERT_EQ(ack["result"]["generation"], 1) << ack.dump() << p.err();

	struct Case {
		std::string line;
		int code;
		json id;
	};
	std::vector<Case> cases = {
		{R"({"jsonrpc":"2.0","id":3,"method":5})", -32600, 3},
		{R"({"jsonrpc":"2.0","id":[3],"method":"dataplane.counters"})", -32600, nullptr},
		{R"({"jsonrpc":"2.0","id":18446744073709551616,"method":"dataplane.counters"})", -32600, nullptr},
		{R"({"jsonrpc":"2.0","id":4,"method":"dataplane.publish","params":5})", -32602, 4},
		{R"({"jsonrpc":"2.0","id":5,"method":"dataplane.publish","params":null})", -32602, 5},
		{R"({"jsonrpc":"2.0","id":6,"method":"dataplane.publish","params":{"generation":"2","state":{}}})", -32602, 6},
		{R"({"jsonrpc":"2.0","id":7,"method":"dataplane.publish","params":{"generation":-1,"state":{}}})", -32602, 7},
		{R"({"jsonrpc":"2.0","id":8,"method":"dataplane.publish","params":{"generation":2.5,"state":{}}})", -32602, 8},
		{R"({"jsonrpc":"2.0","id":9,"method":"dataplane.publish","params":{"generation":2,"state":{"virtualNetworks":5}}})", -32003, 9},
		{R"({"jsonrpc":"2.0","id":"x","method":"dataplane.nothing"})", -32601, "x"},
	};
	for (auto &c : cases) {
		SCOPED_TRACE(c.line);
		json r = fa.request(c.line);
		ASSERT_TRUE(r.is_object()) << p.err();
		EXPECT_EQ(r["error"]["code"], c.code) << r.dump();
		EXPECT_EQ(r["id"], c.id) << r.dump();
		json alive = fa.request(R"({"jsonrpc":"2.0","id":10,"method":"dataplane.counters"})");
		EXPECT_EQ(alive["result"]["generation"], 1) << alive.dump() << p.err();
	}

	// The largest id that fits is echoed as sent.
	json top = fa.request(R"({"jsonrpc":"2.0","id":18446744073709551615,"method":"dataplane.counters"})");
	EXPECT_EQ(top["id"], UINT64_MAX) << top.dump();

	// Nested 200,000 deep: the channel closes, the process reconnects.
	ASSERT_TRUE(fa.send_line(R"({"jsonrpc":"2.0","id":11,"method":"x","params":{"a":)" + std::string(200000, '[') +
				 std::string(200000, ']') + "}}"));
	EXPECT_EQ(fa.line(), "") << "the channel stays open";
	ASSERT_TRUE(fa.accept_one()) << "no reconnect: " << p.err();
	ASSERT_TRUE(p.running()) << p.err();

	// A registration reply whose flowLog is not a boolean: the channel
	// closes with a message, the process reconnects, and the reply's valid
	// timeouts are not applied either (nothing of a refused reply is).
	{
		auto timeouts = [](double s) {
			return json{{"tcpEstablished", s}, {"tcpTransient", s}, {"tcpClose", s}, {"udp", s}, {"icmp", s}};
		};
		json r = json::parse(fa.line(), nullptr, false);
		ASSERT_TRUE(r.is_object()) << p.err();
		EXPECT_EQ(r["params"]["generation"], 1) << "the generation it enforces";
		ASSERT_TRUE(fa.send_line(json{{"jsonrpc", "2.0"},
					      {"id", r["id"]},
					      {"result", {{"generation", 1}, {"timeouts", timeouts(1)}, {"flowLog", "yes"}}}}
						 .dump()));
		EXPECT_EQ(fa.line(), "") << "the channel stays open";
		ASSERT_TRUE(fa.accept_one()) << "no reconnect: " << p.err();
		EXPECT_NE(p.err().find("registration reply: flowLog is not true or false"), std::string::npos) << p.err();
		r = json::parse(fa.line(), nullptr, false);
		ASSERT_TRUE(r.is_object()) << p.err();
		json c = fa.request(R"({"jsonrpc":"2.0","id":12,"method":"dataplane.counters"})"); // served while registering
		EXPECT_EQ(c["result"]["timeouts"], json({{"tcpEstablished", 240.0}, {"tcpTransient", 30.0}, {"tcpClose", 10.0},
							  {"udp", 30.0}, {"icmp", 30.0}}))
			<< c.dump();
		// A reply that holds: its timeouts are in force.
		ASSERT_TRUE(fa.send_line(
			json{{"jsonrpc", "2.0"}, {"id", r["id"]}, {"result", {{"generation", 1}, {"timeouts", timeouts(7)}}}}.dump()));
		c = fa.request(R"({"jsonrpc":"2.0","id":13,"method":"dataplane.counters"})");
		EXPECT_EQ(c["result"]["timeouts"], timeouts(7)) << c.dump();
		// Not an object: the channel closes, the process registers again.
		ASSERT_TRUE(fa.send_line("[1]"));
		EXPECT_EQ(fa.line(), "") << "the channel stays open";
		ASSERT_TRUE(fa.accept_one()) << "no reconnect: " << p.err();
	}

	// Refused at every registration: at most a handful of attempts in 2 s.
	auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
	int attempts = 0;
	do {
		json r = json::parse(fa.line(2000), nullptr, false);
		if (r.is_object())
			fa.send_line(json{{"jsonrpc", "2.0"}, {"id", r["id"]}, {"error", {{"code", -32602}, {"message", "no"}}}}.dump());
		attempts++;
	} while (std::chrono::steady_clock::now() < until &&
		 fa.accept_one(int(std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count())));
	EXPECT_LE(attempts, 8);
	EXPECT_GE(attempts, 2) << p.err();
	// Logged once, not at every attempt.
	std::string err = p.err(), refused = R"(registration refused: {"code":-32602,"message":"no"})";
	ASSERT_NE(err.find(refused), std::string::npos) << err;
	EXPECT_EQ(err.find(refused, err.find(refused) + 1), std::string::npos) << err;

	// An agent that stops reading: once linkgate-dpdk stops reading too
	// (its replies have filled the socket), it gives the channel up within
	// 5 s and connects again; SIGTERM ends it at once even then.
	for (bool then_stop : {false, true}) {
		SCOPED_TRACE(then_stop ? "then SIGTERM" : "then reconnect");
		ASSERT_TRUE(fa.accept_one(20000, then_stop)) << p.err();
		json r2 = json::parse(fa.line(), nullptr, false);
		ASSERT_TRUE(r2.is_object()) << p.err();
		ASSERT_TRUE(fa.send_line(json{{"jsonrpc", "2.0"}, {"id", r2["id"]}, {"result", {{"generation", 1}}}}.dump()));
		EXPECT_TRUE(fa.flood(R"({"jsonrpc":"2.0","id":12,"method":"dataplane.counters"})" "\n", 200000))
			<< "linkgate-dpdk read everything";
		if (!then_stop)
			continue; // the next accept_one() is the new connection
		// SIGTERM, and the agent reads again, slowly: 1 KiB every 100 ms
		// keeps every reply making progress, so linkgate-dpdk never gives
		// the channel up; replies to the ~1000 requests it holds would take
		// minutes at that pace. Only a SIGTERM that ends the wait at once
		// lets it exit within the 20 s this waits.
		kill(p.pid(), SIGTERM);
		int rc = -1;
		size_t drained = 0;
		for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
		     rc == -1 && std::chrono::steady_clock::now() < deadline;) {
			drained += fa.discard(1024);
			rc = p.wait(100);
		}
		EXPECT_EQ(rc, 0) << "SIGTERM waited on the agent (" << drained << " bytes of replies read since)\n" << p.err();
	}
}

// --dump-acl: each NSG direction's IPv4 rte_acl rules in dpdk-test-acl's
// format, highest priority first (linkgate-bench dpdk runs raw rte_acl on
// them), then exit 0 without forwarding.
TEST(DpdkBinary, DumpAclWritesEachDirectionsRulesInPriorityOrder)
{
	Scratch s("dumpacl");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), {}));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	auto a = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap"), "net_null0"});
	for (auto &x : std::vector<std::string>{"--state", s.path("state.json"), "--port", "0=client-vnet", "--port",
						"1", "--flows", "4096", "--dump-acl", s.path("acl-")})
		a.push_back(x);
	RunResult r = run(a, s.dir());
	ASSERT_EQ(r.code, 0) << r.err;
	std::map<std::string, size_t> files; // path -> rules it says it wrote
	std::istringstream out(r.out);
	for (std::string line; std::getline(out, line);)
		if (auto sp = line.rfind(' '); line.rfind(s.path("acl-"), 0) == 0 && sp != std::string::npos)
			files[line.substr(0, sp)] = std::stoul(line.substr(sp + 1));
	ASSERT_FALSE(files.empty()) << r.out;
	const std::string pe = "@0.0.0.0/0\t10.1.1.100/32\t0 : 65535\t3306 : 3306\t0x06/0xFF",
			  westus = "@0.0.0.0/0\t20.10.1.0/24\t0 : 65535\t3306 : 3306\t0x06/0xFF";
	bool outbound = false;
	for (auto &[path, n] : files) {
		std::ifstream f(path);
		std::vector<std::string> lines;
		for (std::string l; std::getline(f, l);)
			lines.push_back(l);
		EXPECT_EQ(lines.size(), n) << path;
		if (lines.empty() || lines[0] != pe)
			continue;
		// The Outbound direction: allow-pe (100) first, allow-westus (200) after it.
		outbound = true;
		EXPECT_NE(std::find(lines.begin() + 1, lines.end(), westus), lines.end()) << path;
	}
	EXPECT_TRUE(outbound) << "no direction starts with allow-pe's rule";
}

// --classify-trace: a direction's classifier alone on a dpdk-test-acl trace
// (linkgate-bench dpdk compares it with raw rte_acl). Batch answers are held
// to single lookups inside; a line that is not a 5-tuple is an error naming
// it; nothing is forwarded.
TEST(DpdkBinary, ClassifyTraceTimesEachDirectionAndRejectsBadLines)
{
	Scratch s("clstrace");
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), {}));
	ASSERT_TRUE(write_state(s.path("state.json"), scenario_state()));
	// 10.0.0.5 -> 10.1.1.100:3306 TCP, decimal and hex; one UDP, one portless (ICMP).
	std::ofstream(s.path("ok.trace")) << "167772165\t167838052\t40000\t3306\t6\n"
					     "0x0a000005 0x0a010164 40001 3306 6\n\n"
					     "167772165\t167838052\t53\t53\t17\n"
					     "167772165\t167838052\t0\t0\t1\n";
	std::ofstream(s.path("bad.trace")) << "167772165\t167838052\t40000\t3306\t6\n"
					      "167772165\t167838052\t70000\t3306\t6\n";
	auto base = eal(s, {"net_pcap0,rx_pcap=" + s.path("in0.pcap"), "net_null0"});
	for (auto &x : std::vector<std::string>{"--state", s.path("state.json"), "--port", "0=client-vnet", "--port",
						"1", "--flows", "4096"})
		base.push_back(x);
	auto dump = base;
	dump.insert(dump.end(), {"--dump-acl", s.path("acl-")});
	RunResult d = run(dump, s.dir());
	ASSERT_EQ(d.code, 0) << d.err;
	size_t dirs = size_t(std::count(d.out.begin(), d.out.end(), '\n'));
	ASSERT_GT(dirs, 0u) << d.out;
	for (size_t dir = 0; dir < dirs; dir++) {
		SCOPED_TRACE("direction " + std::to_string(dir));
		auto a = base;
		a.insert(a.end(), {"--classify-trace", s.path("ok.trace"), "--classify-dir", std::to_string(dir), "--iter",
				   "3", "--tracestep", "2"});
		RunResult r = run(a, s.dir());
		ASSERT_EQ(r.code, 0) << r.err;
		std::string want = "classify: direction " + std::to_string(dir) + ", 4 tuples, 2 per call, 3 passes: ";
		EXPECT_EQ(r.out.rfind(want, 0), 0u) << r.out;
		EXPECT_NE(r.out.find(" cycles/tuple"), std::string::npos) << r.out;
	}
	auto a = base;
	a.insert(a.end(), {"--classify-trace", s.path("bad.trace")});
	RunResult r = run(a, s.dir());
	EXPECT_EQ(r.code, 1);
	auto own = own_lines(r.err);
	ASSERT_EQ(own.size(), 1u) << r.err;
	EXPECT_NE(own[0].find("bad.trace:2: not \"src dst sport dport proto\""), std::string::npos) << own[0];
}

} // namespace
} // namespace lg
