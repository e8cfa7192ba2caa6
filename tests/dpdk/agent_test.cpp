// linkgate-dpdk with the real linkgated (tests/agent's Daemon: temp state and
// socket, no XDP interface): it registers, follows commits (its generation,
// through DPDK telemetry and `linkgatectl stats`), keeps forwarding when the
// agent is killed -9, and registers again by itself when the agent restarts
// on the same state and socket. net_pcap ports with infinite_rx keep
// traffic flowing the whole time.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <thread>

#include "agent_fixture.hpp"
#include "arm_json.hpp"
#include "dpdk_scenario.hpp"
#include "proc.hpp"

namespace lg {
namespace {

using namespace dpdktest;
using nlohmann::json;

const Mac kPcap0{0x02, 0x70, 0x63, 0x61, 0x70, 0x00}, kPcap1{0x02, 0x70, 0x63, 0x61, 0x70, 0x01};

// linkgatectl ARGS: exit code and stdout.
RunResult ctl(const Scratch &s, const lgtest::Daemon &d, std::vector<std::string> args)
{
	std::vector<std::string> a = {LINKGATECTL, "--socket", d.socket_path()};
	a.insert(a.end(), args.begin(), args.end());
	return run(a, s.dir(), 20000);
}

json telemetry(const Scratch &s)
{
	std::ofstream(s.path("tel.in")) << "/linkgate/stats\n";
	RunResult r = run({"/bin/sh", "-c", "exec /usr/bin/python3 /usr/bin/dpdk-telemetry.py -f " + s.prefix() + " < " + s.path("tel.in")}, s.dir(), 10000);
	auto b = r.out.find('{');
	auto e = r.out.rfind('}');
	if (r.code != 0 || b == std::string::npos || e == std::string::npos)
		return json();
	json j = json::parse(r.out.substr(b, e - b + 1), nullptr, false);
	return j.is_object() && j.contains("/linkgate/stats") && j["/linkgate/stats"].is_object() ? j["/linkgate/stats"] : json();
}

// Polls pred (every 50 ms, bounded): true once it holds.
bool eventually(const std::function<bool()> &pred, int timeout_ms = 20000)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	while (std::chrono::steady_clock::now() < deadline) {
		if (pred())
			return true;
		poll(nullptr, 0, 50);
	}
	return false;
}

// linkgate-dpdk attached to d as `name`: port 0 (the client VNet) replays
// in0.pcap for ever, port 1 is `vdev1`.
std::vector<std::string> dpdk_argv(const Scratch &s, const lgtest::Daemon &d, const std::string &vdev1,
				   const std::string &name)
{
	std::vector<std::string> a = {LINKGATE_DPDK, "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", s.prefix(), "-l", "0,1",
				      "--vdev", "net_pcap0,rx_pcap=" + s.path("in0.pcap") + ",tx_pcap=/dev/null,infinite_rx=1",
				      "--vdev", vdev1, "--", "--socket", d.socket_path(), "--name", name, "--flows", "4096",
				      "--port", "0=client-vnet", "--port", "1"};
	for (auto &r : scenario_routes()) {
		a.push_back("--route");
		a.push_back(r);
	}
	return a;
}

// The scenario's state as d's state file; d started on it.
::testing::AssertionResult start_on_scenario(lgtest::Daemon &d)
{
	std::filesystem::create_directories(std::filesystem::path(d.state_path()).parent_path());
	std::ofstream(d.state_path()) << state_to_json(scenario_state()).dump(2);
	if (!d.start())
		return ::testing::AssertionFailure() << d.log();
	return ::testing::AssertionSuccess();
}

// in0.pcap: the client frames of the scenario's first round.
bool write_first_round(const Scratch &s)
{
	std::vector<std::vector<uint8_t>> in0;
	auto rounds = scenario_rounds(kPcap0, kPcap1);
	for (auto &f : rounds[0])
		in0.push_back(f.bytes);
	return write_pcap(s.path("in0.pcap"), in0);
}

TEST(DpdkAgent, FollowsCommitsAndSurvivesAnAgentRestart)
{
	// Debian's dpdk-dev, which scripts/lib.sh installs: missing is a failure.
	ASSERT_EQ(access("/usr/bin/dpdk-telemetry.py", X_OK), 0) << "no /usr/bin/dpdk-telemetry.py (Debian package dpdk-dev)";
	Scratch s("agent");
	lgtest::Daemon d;
	ASSERT_TRUE(start_on_scenario(d));

	// The scenario's client frames, over and over, and its replies.
	std::vector<std::vector<uint8_t>> in0, in1;
	for (auto &round : scenario_rounds(kPcap0, kPcap1))
		for (auto &f : round)
			(f.port == 0 ? in0 : in1).push_back(f.bytes);
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), in0));
	ASSERT_TRUE(write_pcap(s.path("in1.pcap"), in1));
	Proc dp(dpdk_argv(s, d, "net_pcap1,rx_pcap=" + s.path("in1.pcap") + ",tx_pcap=/dev/null", "lgt"),
		s.path("dpdk.out"), s.path("dpdk.err"));

	// Registered, acknowledged the live generation, forwarding.
	json entry;
	auto listed = [&](uint64_t gen) {
		RunResult r = ctl(s, d, {"stats"});
		json j = json::parse(r.out, nullptr, false);
		if (r.code != 0 || !j.is_object() || !j.contains("dataplanes") || !j["dataplanes"].contains("dpdk:lgt"))
			return false;
		entry = j["dataplanes"]["dpdk:lgt"];
		return entry.value("generation", uint64_t(0)) == gen && entry.value("forwarded", uint64_t(0)) > 0;
	};
	uint64_t g1 = d.generation();
	ASSERT_TRUE(eventually([&] { return listed(g1); })) << "linkgatectl stats: " << entry.dump() << "\n"
							   << dp.err() << "\nlinkgated:\n" << d.log();
	json st = d.rpc("status")["result"];
	bool in_status = false;
	for (auto &x : st["dataplanes"])
		if (x.value("kind", "") == "dpdk" && x.value("name", "") == "lgt")
			in_status = x.value("pid", 0) == dp.pid();
	EXPECT_TRUE(in_status) << st.dump();
	EXPECT_EQ(entry["txFailed"], 0) << entry.dump(); // its ports' count (pcap to /dev/null)

	// A commit is acknowledged once linkgate-dpdk uses it.
	RunResult c = ctl(s, d, {"network", "nsg", "create", "--name", "extra-nsg"});
	ASSERT_EQ(c.code, 0) << c.out << c.err;
	uint64_t g2 = d.generation();
	ASSERT_GT(g2, g1);
	json t = telemetry(s);
	ASSERT_TRUE(t.is_object()) << dp.err();
	EXPECT_EQ(t["generation"].get<uint64_t>(), g2) << "the commit returned before linkgate-dpdk used it";
	EXPECT_TRUE(listed(g2)) << entry.dump();

	// kill -9 the agent: linkgate-dpdk keeps forwarding.
	d.kill9();
	uint64_t rx0 = t["rx"].get<uint64_t>();
	json t1;
	ASSERT_TRUE(eventually([&] {
		t1 = telemetry(s);
		return t1.is_object() && t1["rx"].get<uint64_t>() > rx0;
	})) << dp.err();
	json t2;
	ASSERT_TRUE(eventually([&] {
		t2 = telemetry(s);
		return t2.is_object() && t2["rx"].get<uint64_t>() > t1["rx"].get<uint64_t>();
	}));
	EXPECT_TRUE(dp.running()) << dp.err();
	EXPECT_EQ(t2["generation"].get<uint64_t>(), g2);
	EXPECT_GT(t2["reason_none"].get<uint64_t>(), t["reason_none"].get<uint64_t>()) << "forwarding stopped";

	// Restart on the same state and socket: it registers again by itself.
	ASSERT_TRUE(d.start()) << d.log();
	// The new agent continues the numbering (the live marker next to the
	// state file): a fast path never sees a generation number go back.
	uint64_t g3 = d.generation();
	EXPECT_GT(g3, g2) << "generation numbers went back across the restart";
	ASSERT_TRUE(eventually([&] { return listed(g3); })) << "not registered again: " << entry.dump() << "\n"
							   << dp.err() << "\nlinkgated:\n" << d.log();
	EXPECT_GT(entry["forwarded"].get<uint64_t>(), t2["reason_none"].get<uint64_t>())
		<< "linkgatectl stats shows linkgate-dpdk's totals since it started";
	EXPECT_TRUE(dp.running());
	EXPECT_EQ(dp.terminate(), 0) << dp.err();
	EXPECT_EQ(d.stop(), 0) << d.log();
}

// linkgated's flow timeouts reach linkgate-dpdk with its registration: with
// every timeout 7 s, each DPDK flow expires within 7 s of now (the defaults,
// 30 s and more, applied before).
TEST(DpdkAgent, FlowsTakeTheAgentsTimeouts)
{
	Scratch s("agentto");
	lgtest::Daemon d({"--tcp-established-timeout", "7", "--tcp-transient-timeout", "7", "--tcp-close-timeout", "7",
			  "--udp-timeout", "7", "--icmp-timeout", "7"});
	ASSERT_TRUE(start_on_scenario(d));
	std::vector<std::vector<uint8_t>> in0;
	for (auto &round : scenario_rounds(kPcap0, kPcap1))
		for (auto &f : round)
			if (f.port == 0)
				in0.push_back(f.bytes);
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), in0));
	Proc dp(dpdk_argv(s, d, "net_null1", "lgto"), s.path("dpdk.out"), s.path("dpdk.err"));
	json flows;
	uint64_t now = 0;
	ASSERT_TRUE(eventually([&] {
		RunResult r = ctl(s, d, {"flows"});
		timespec ts; // linkgate-dpdk's flow clock (Engine::clock_ns), after the listing
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
		json j = json::parse(r.out, nullptr, false);
		flows = json::array();
		if (r.code == 0 && j.is_array())
			for (auto &f : j)
				if (f.value("dataplane", "") == "dpdk:lgto")
					flows.push_back(f);
		return !flows.empty();
	})) << dp.err() << "\nlinkgated:\n" << d.log();
	for (auto &f : flows)
		EXPECT_LE(f["expiresNs"].get<uint64_t>(), now + 7'000'000'000ull) << f.dump();
	EXPECT_EQ(dp.terminate(), 0) << dp.err();
	EXPECT_EQ(d.stop(), 0) << d.log();
}

// SPEC §6 flow logs of linkgate-dpdk's traffic: linkgated drains the fast
// path's flow-log records and flow counts over the channel
// (dataplane.flowLog) and writes them as XDP's: the replayed SYN to the
// private endpoint begins under allow-pe, the SYN to port 8080 is denied by
// web, and the UDP flow the replay keeps feeding carries on with counts.
TEST(DpdkAgent, FlowLogsOfTheFastPath)
{
	Scratch s("agentlog");
	std::string path = s.path("flows.jsonl");
	lgtest::Daemon d({"--flow-log", path, "--flow-log-interval", "1"});
	ASSERT_TRUE(start_on_scenario(d));
	ASSERT_TRUE(write_first_round(s));
	Proc dp(dpdk_argv(s, d, "net_null1", "lglog"), s.path("dpdk.out"), s.path("dpdk.err"));
	auto has = [&](const std::string &rule, const std::string &mid) {
		std::ifstream f(path);
		std::string line;
		while (std::getline(f, line)) {
			json r = json::parse(line, nullptr, false);
			if (!r.is_object() || !r["resourceId"].is_string() ||
			    !r["resourceId"].get<std::string>().ends_with("/NETWORKSECURITYGROUPS/CLIENTS-NSG"))
				continue;
			for (auto &g : r["properties"]["flows"])
				for (auto &m : g["flows"])
					for (auto &t : m["flowTuples"])
						if (g["rule"] == rule && t.get<std::string>().find(mid) != std::string::npos)
							return true;
		}
		return false;
	};
	EXPECT_TRUE(eventually([&] {
		return has("UserRule_allow-pe", ",10.1.1.10,10.1.1.100,40000,3306,T,O,A,B,,,,") &&
		       has("UserRule_web", ",10.1.1.10,8.8.8.8,40001,8080,T,O,D,B,,,,") &&
		       has("DefaultRule_AllowInternetOutBound", ",10.1.1.10,8.8.8.8,5000,53,U,O,A,C,");
	})) << std::ifstream(path).rdbuf() << "\n" << dp.err() << "\nlinkgated:\n" << d.log();
	// The registration told it to make records; `stats` shows them.
	RunResult r = ctl(s, d, {"stats"});
	json j = json::parse(r.out, nullptr, false);
	ASSERT_TRUE(r.code == 0 && j.is_object()) << r.out << r.err;
	json fl = j["dataplanes"]["dpdk:lglog"]["flowLog"];
	EXPECT_EQ(fl["on"], true) << j.dump();
	EXPECT_GE(fl["written"].get<uint64_t>(), 3u) << j.dump();
	EXPECT_EQ(fl["lost"], 0) << j.dump();
	EXPECT_EQ(dp.terminate(), 0) << dp.err();
	EXPECT_EQ(d.stop(), 0) << d.log();
}

// More flows than one message holds (a flow's object is ~200 bytes, the
// channel's cap 1 MiB): linkgate-dpdk sends the flows that fit, and keeps
// its channel (before: the whole table in one line, which linkgated refused
// and answered by dropping the channel, on every listing).
TEST(DpdkAgent, AFlowListingPastTheMessageCapSendsTheFlowsThatFit)
{
	Scratch s("agentfl");
	lgtest::Daemon d;
	ASSERT_TRUE(start_on_scenario(d));
	constexpr int kFlows = 8000;
	std::vector<std::vector<uint8_t>> in0;
	for (int i = 0; i < kFlows; i++)
		in0.push_back(PacketBuilder()
				      .eth(kClientMac, kPcap0)
				      .ipv4("10.1.1.10", "8.8.8.8")
				      .udp(uint16_t(10000 + i), 53)
				      .payload("query")
				      .build());
	ASSERT_TRUE(write_pcap(s.path("in0.pcap"), in0));
	std::vector<std::string> argv = dpdk_argv(s, d, "net_null1", "lgfl");
	*std::find(argv.begin(), argv.end(), "4096") = "32768"; // --flows
	Proc dp(argv, s.path("dpdk.out"), s.path("dpdk.err"));
	uint64_t flows = 0;
	json plane;
	ASSERT_TRUE(eventually([&] {
		RunResult r = ctl(s, d, {"stats"});
		json j = json::parse(r.out, nullptr, false);
		if (r.code == 0 && j.is_object() && j.contains("dataplanes") && j["dataplanes"].contains("dpdk:lgfl")) {
			plane = j["dataplanes"]["dpdk:lgfl"];
			flows = plane.value("flows", uint64_t(0));
		}
		return flows >= kFlows;
	})) << flows << " flows\n" << dp.err() << "\nlinkgated:\n" << d.log();
	// An agent without --flow-log: 8,000 new flows and no flow-log record.
	EXPECT_EQ(plane["flowLog"], json({{"on", false}, {"written", 0}, {"lost", 0}})) << plane.dump();

	// --top past the 8,000: the channel's 1 MiB is what cuts the listing.
	RunResult r = ctl(s, d, {"flows", "--top", "10000"});
	ASSERT_EQ(r.code, 0) << r.err;
	json j = json::parse(r.out, nullptr, false);
	ASSERT_TRUE(j.is_array());
	size_t listed = 0;
	for (auto &f : j)
		listed += f.value("dataplane", "") == "dpdk:lgfl";
	EXPECT_GT(listed, 2000u) << d.log();
	EXPECT_LT(listed, size_t(kFlows));
	EXPECT_EQ(d.log().find("MiB cap"), std::string::npos) << d.log();
	json st = d.rpc("status")["result"];
	bool registered = false;
	for (auto &x : st["dataplanes"])
		registered = registered || (x.value("name", "") == "lgfl" && x.value("pid", 0) == dp.pid());
	EXPECT_TRUE(registered) << st.dump() << "\n" << d.log();
	EXPECT_EQ(dp.terminate(), 0) << dp.err();
	EXPECT_EQ(d.stop(), 0) << d.log();
}

// An agent started again on a mistyped --state (so on an empty state) does
// not empty a running linkgate-dpdk: the registration is refused, the fast
// path goes on enforcing its generation (the replay keeps being forwarded)
// and says so once however often it retries; a commit on that agent is the
// operator's state, and linkgate-dpdk then registers and takes it.
TEST(DpdkAgent, AnAgentOnAMistypedStateFileLeavesTheFastPathItsPolicy)
{
	Scratch s("agentmis");
	lgtest::Daemon d;
	ASSERT_TRUE(start_on_scenario(d));
	ASSERT_TRUE(write_first_round(s));
	Proc dp(dpdk_argv(s, d, "net_null1", "lgmis"), s.path("dpdk.out"), s.path("dpdk.err"));
	uint64_t g1 = d.generation();
	json t;
	ASSERT_TRUE(eventually([&] {
		t = telemetry(s);
		return t.is_object() && t["generation"].get<uint64_t>() == g1;
	})) << dp.err() << "\nlinkgated:\n" << d.log();

	ASSERT_EQ(d.stop(), 0) << d.log();
	d.set_state_path(d.dir() + "/lib/stat.json"); // the typo
	ASSERT_TRUE(d.start()) << d.log();
	EXPECT_EQ(d.generation(), 1u);
	auto count = [](const std::string &text, const std::string &what) {
		size_t n = 0;
		for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
			n++;
		return n;
	};
	// Connected (once before, then each retry) three times: refused twice or more.
	ASSERT_TRUE(eventually([&] { return count(dp.err(), "connected to") >= 4; })) << dp.err() << "\nlinkgated:\n"
										 << d.log();
	EXPECT_EQ(count(dp.err(), "registration refused"), 1u) << dp.err();
	EXPECT_NE(dp.err().find("-32014"), std::string::npos) << dp.err();
	EXPECT_EQ(count(d.log(), "'lgmis' (pid " + std::to_string(dp.pid()) + ") refused"), 1u) << d.log();
	EXPECT_TRUE(d.rpc("status")["result"]["dataplanes"].empty());
	json t2;
	ASSERT_TRUE(eventually([&] {
		t2 = telemetry(s);
		return t2.is_object() && t2["reason_none"].get<uint64_t>() > t["reason_none"].get<uint64_t>();
	})) << dp.err();
	EXPECT_EQ(t2["generation"].get<uint64_t>(), g1) << "the fast path took the empty state";

	RunResult c = ctl(s, d, {"network", "nsg", "create", "--name", "extra-nsg"});
	ASSERT_EQ(c.code, 0) << c.out << c.err;
	uint64_t g = d.generation();
	ASSERT_TRUE(eventually([&] {
		t = telemetry(s);
		return t.is_object() && t["generation"].get<uint64_t>() == g;
	})) << dp.err() << "\nlinkgated:\n" << d.log();
	EXPECT_EQ(dp.terminate(), 0) << dp.err();
	EXPECT_EQ(d.stop(), 0) << d.log();
}

} // namespace
} // namespace lg
