// The real linkgate-dpdk on net_pcap ports: the scenario's frames in input
// pcaps, the output pcaps compared byte for byte with the reference
// evaluator, the --stats-json counters, DPDK telemetry (dpdk-telemetry.py)
// while it runs, and its answers to bad arguments and a bad state file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
	RunResult r = run({"/bin/sh", "-c", "exec /usr/bin/dpdk-telemetry.py -f " + s.prefix() + " < " + s.path("tel.in")}, s.dir(), 10000);
	// The script prints a prompt, then the answer as JSON.
	auto b = r.out.find('{');
	auto e = r.out.rfind('}');
	if (r.code != 0 || b == std::string::npos || e == std::string::npos)
		return json();
	return json::parse(r.out.substr(b, e - b + 1), nullptr, false);
}

TEST(DpdkBinary, TelemetryAnswersWhileRunning)
{
	if (access("/usr/bin/dpdk-telemetry.py", X_OK) != 0)
		GTEST_SKIP() << "no /usr/bin/dpdk-telemetry.py (Debian package dpdk)";
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
		EXPECT_NE(r.code, 0);
		EXPECT_NE(r.code, 128 + SIGKILL) << "did not exit by itself";
		auto own = own_lines(r.err);
		ASSERT_EQ(own.size(), 1u) << r.err;
		EXPECT_NE(own[0].find(says), std::string::npos) << own[0];
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
