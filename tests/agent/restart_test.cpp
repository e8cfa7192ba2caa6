// The real linkgated with its XDP dataplane on veths between namespaces: a
// client namespace, the NIC host namespace (where the agent runs, the program
// on both its veths) and a backend namespace with an echo server. Live TCP
// across kill -9 and restart, a kill -9 at each point of a commit, and the
// background reclaim of expired flows. Pins go to a per-test bpffs directory.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <fstream>
#include <thread>

#include "agent_fixture.hpp"
#include "veth_env.hpp"
#include "arm_json.hpp"
#include "netns.hpp"
#include "service.hpp"
#include "policy_helpers.hpp"
#include "validate.hpp"
#include "xdp_loader.hpp"

extern "C" {
#include "lg_xdp.h"
}

using namespace lg;
using lg::testing::Topology;
using lgtest::Daemon;
using lgtest::json;
using namespace lgtest;

namespace {

// Polls pred every 20 ms for up to 10 s: true once it holds.
template <class Pred> bool until(Pred pred)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	while (std::chrono::steady_clock::now() < deadline) {
		if (pred())
			return true;
		poll(nullptr, 0, 20);
	}
	return false;
}

class AgentRestart : public ::testing::Test {
protected:
	// Starts the agent with its commits failing at `what`
	// (LINKGATED_TEST_FAIL), then rejects pe-east: the reply, and the
	// generation and state file from before it.
	void failed_state_write(const char *point);
	json failing_reject(const char *what, uint64_t &g, std::string &before)
	{
		setenv("LINKGATED_TEST_FAIL", what, 1);
		start_agent(policy("Approved"));
		unsetenv("LINKGATED_TEST_FAIL");
		g = agent->generation();
		before = lgtest::slurp(agent->state_path());
		return agent->rpc("mysql.server.private-endpoint-connection.reject",
				  {{"serverName", "eastus-db"}, {"name", "pe-east"}});
	}

	void SetUp() override
	{
		ASSERT_EQ(geteuid(), 0u) << "needs root; CI runs as root";
		struct statfs fs {};
		if (statfs("/sys/fs/bpf", &fs) != 0 || fs.f_type != BPF_FS_MAGIC) {
			ASSERT_EQ(mount("bpf", "/sys/fs/bpf", "bpf", 0, nullptr), 0) << strerror(errno);
		}
		pin_dir = "/sys/fs/bpf/lgtest-agent-" + std::to_string(getpid());
		ASSERT_EQ(three_ns_topology(topo), "");

		int ready[2];
		ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
		ASSERT_EQ(pipe2(stop, O_CLOEXEC), 0);
		server = Topology::spawn_in_ns(topo.real("be"),
					       [&] { return echo_server("192.168.20.11", 3306, ready[1], stop[0]); });
		close(ready[1]); // a server that dies before it is ready ends the read
		char c;
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		close(ready[0]);

		// The agent is started from the NIC host namespace (it inherits it).
		orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		int host = open(("/run/netns/" + topo.real("host")).c_str(), O_RDONLY | O_CLOEXEC);
		ASSERT_GE(orig_ns, 0);
		ASSERT_GE(host, 0);
		ASSERT_EQ(setns(host, CLONE_NEWNET), 0);
		close(host);
	}

	void TearDown() override
	{
		unsetenv("LINKGATED_TEST_PAUSE");
		agent.reset(); // SIGTERM; a stopped or killed agent is reaped
		std::error_code ec;
		std::filesystem::remove_all(pin_dir, ec);
		if (server > 0) {
			EXPECT_EQ(write(stop[1], "s", 1), 1);
			EXPECT_EQ(Topology::wait_child(server), 0) << "echo server";
		}
		for (int &fd : stop)
			if (fd >= 0) {
				close(fd);
				fd = -1;
			}
		if (orig_ns >= 0) {
			setns(orig_ns, CLONE_NEWNET);
			close(orig_ns);
		}
	}

	std::vector<std::string> agent_args(std::vector<std::string> extra = {}) const
	{
		std::vector<std::string> a{"--pin-dir", pin_dir, "--xdp-interface", "hc=client-vnet", "--xdp-interface",
					   "hb="};
		a.insert(a.end(), extra.begin(), extra.end());
		return a;
	}

	// A new agent on a fresh state file holding `initial`.
	void start_agent(const State &initial, std::vector<std::string> extra = {})
	{
		agent = std::make_unique<Daemon>(agent_args(std::move(extra)));
		std::filesystem::create_directories(agent->dir() + "/lib");
		ASSERT_TRUE(save_state_file(agent->state_path(), initial).ok());
		ASSERT_TRUE(started()) << agent->log();
	}

	// Started and serving: the socket accepts before the dataplane is
	// attached (clients wait in the backlog), the first answer comes after.
	bool started() { return agent->start() && agent->rpc("status").contains("result"); }

	// One linkgate-dpdk registration's reply (the connection is closed
	// after it): `gen` is the generation the fast path says it enforces.
	json register_dpdk(const std::string &name, uint64_t gen)
	{
		int fd = connect_unix(agent->socket_path());
		send_all(fd, json{{"jsonrpc", "2.0"},
				  {"id", 1},
				  {"method", "dataplane.register"},
				  {"params", {{"kind", "dpdk"}, {"name", name}, {"pid", 1}, {"generation", gen}}}}
				     .dump() +
				     "\n");
		std::string line = read_line(fd);
		close(fd);
		return line.empty() ? json() : json::parse(line);
	}

	// The generation the pinned lg_active says is live (0 when unreadable).
	uint64_t pinned_generation() const
	{
		int fd = bpf_obj_get((pin_dir + "/lg_active").c_str());
		if (fd < 0)
			return 0;
		uint32_t key = 0;
		lg_active a{};
		int rc = bpf_map_lookup_elem(fd, &key, &a);
		close(fd);
		return rc == 0 ? a.generation : 0;
	}

	int client(const char *dst, uint16_t port, int timeout_ms = 2000)
	{
		return Topology::in_ns(topo.real("cli"), [&] { return echo_once(dst, port, timeout_ms); });
	}

	// Packets the pinned dataplane dropped for `r` (read from the pins: the
	// agent may be dead).
	uint64_t pinned_drops(lg_reason r) const
	{
		int fd = bpf_obj_get((pin_dir + "/lg_reason_cnt").c_str());
		if (fd < 0)
			return 0;
		int cpus = libbpf_num_possible_cpus();
		std::vector<uint64_t> v(size_t(cpus > 0 ? cpus : 1));
		uint32_t key = r;
		uint64_t sum = 0;
		if (bpf_map_lookup_elem(fd, &key, v.data()) == 0)
			for (uint64_t x : v)
				sum += x;
		close(fd);
		return sum;
	}

	// A new connection to pe-east: true when it goes through (the default
	// 2 s connect: a slow handshake under load is no drop); false only
	// when it was dropped pec-rejected (any other failure fails the test).
	bool pe_reachable()
	{
		uint64_t rejected = pinned_drops(LG_REASON_PEC_REJECTED);
		if (client("10.1.1.100", 3306) == 0)
			return true;
		EXPECT_GT(pinned_drops(LG_REASON_PEC_REJECTED), rejected) << "the connection failed, and not by pec-rejected";
		return false;
	}

	json ok(const std::string &method, const json &params = json::object())
	{
		json r = agent->rpc(method, params);
		EXPECT_TRUE(r.is_object() && r.contains("result")) << method << ": " << r.dump();
		return r.is_object() && r.contains("result") ? r["result"] : json();
	}

	Topology topo;
	std::string pin_dir;
	std::unique_ptr<Daemon> agent;
	int orig_ns = -1;
	int server = -1;
	int stop[2] = {-1, -1};
};

TEST_F(AgentRestart, LiveTcpSurvivesKillAndRestartAdoptsThePinnedGeneration)
{
	start_agent(policy("Approved"));
	uint64_t g = agent->generation();
	EXPECT_EQ(pinned_generation(), g);

	Persistent conn(topo.real("cli"));
	ASSERT_TRUE(conn.round_trip()) << agent->log();
	EXPECT_EQ(client("192.168.20.11", 22, 500), 3) << "NSG denies outbound ssh";

	agent->kill9();
	// Without the agent: the flow carries on, the policy is still enforced.
	for (int i = 0; i < 20; i++)
		ASSERT_TRUE(conn.round_trip()) << "round trip " << i << " with the agent dead";
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "new flows are decided by the pinned tables";
	EXPECT_EQ(client("192.168.20.11", 22, 500), 3);
	EXPECT_EQ(client("10.1.1.100", 3307, 500), 3);

	// The restarted agent adopts: same generation, same flows, no republish.
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g);
	EXPECT_EQ(pinned_generation(), g);
	for (int i = 0; i < 5; i++)
		ASSERT_TRUE(conn.round_trip()) << "after restart " << i;

	json flows = ok("flows");
	bool found = false;
	for (const auto &f : flows)
		if (f["kind"] == "private-endpoint" && f["object"] == "pe-east" && f["backend"] == "192.168.20.11:3306" &&
		    f["state"] == "established")
			found = true;
	EXPECT_TRUE(found) << flows.dump();
	json st = ok("stats");
	EXPECT_GT(st["forwarded"].get<uint64_t>(), 20u);
	EXPECT_GT(st["privateEndpoints"]["pe-east"].get<uint64_t>(), 20u);
	EXPECT_GT(st["servers"]["eastus-db"].get<uint64_t>(), 20u);
	EXPECT_GE(st["nsgRules"]["clients-nsg/no-ssh"].get<uint64_t>(), 2u);
	EXPECT_GE(st["drops"]["nsg-deny"].get<uint64_t>(), 2u);
	EXPECT_GE(st["drops"]["pe-port"].get<uint64_t>(), 1u);
	EXPECT_GE(st["flows"].get<uint64_t>(), 1u);
	// No --flow-log: the program makes no flow-log records.
	EXPECT_EQ(st["dataplanes"]["xdp"]["flowLog"], json({{"on", false}, {"written", 0}, {"lost", 0}})) << st.dump();

	// explain comes from the live generation's compiled tables.
	json e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"sport", 40000},
				{"dport", 3306}});
	EXPECT_EQ(e["verdict"], "forward");
	EXPECT_EQ(e["generation"], g);
	EXPECT_EQ(e["backend"], "192.168.20.11:3306");

	// The next change numbers on from the pinned generation and cuts the flow.
	json r = agent->rpc("mysql.server.private-endpoint-connection.reject",
			    {{"serverName", "eastus-db"}, {"name", "pe-east"}});
	ASSERT_TRUE(r.contains("result")) << r.dump();
	EXPECT_EQ(r["generation"], g + 1);
	EXPECT_EQ(pinned_generation(), g + 1);
	EXPECT_FALSE(conn.round_trip()) << "rejected: the existing flow is cut at its next packet";
	EXPECT_EQ(client("10.1.1.100", 3306, 500), 3);
	EXPECT_GE(ok("stats")["drops"]["pec-rejected"].get<uint64_t>(), 1u);
	EXPECT_EQ(conn.finish(), 0);
}

// kill -9 at each named point of a commit (LINKGATED_TEST_PAUSE stops the
// agent there): the pinned dataplane holds the old or the new generation,
// never a mix, and after a restart the state file, the agent and the
// dataplane agree. The commit order is publish, state file, reply: a commit
// killed before its state file was in place was never acknowledged, and the
// restart puts the old state back (docs/agent.md, "Commit and dataplane").
TEST_F(AgentRestart, KillInTheMiddleOfACommitLeavesOldOrNew)
{
	for (const char *point : {"before-publish", "after-publish", "after-state-write"}) {
		SCOPED_TRACE(point);
		std::error_code ec;
		std::filesystem::remove_all(pin_dir, ec);
		setenv("LINKGATED_TEST_PAUSE", point, 1);
		start_agent(policy("Approved"));
		uint64_t g = agent->generation();
		ASSERT_EQ(client("10.1.1.100", 3306), 0);

		int fd = lgtest::connect_unix(agent->socket_path());
		ASSERT_GE(fd, 0);
		json req{{"jsonrpc", "2.0"},
			 {"id", 1},
			 {"method", "mysql.server.private-endpoint-connection.reject"},
			 {"params", {{"serverName", "eastus-db"}, {"name", "pe-east"}}}};
		ASSERT_TRUE(lgtest::send_all(fd, req.dump() + "\n"));
		ASSERT_TRUE(agent->wait_stopped()) << agent->log();
		uint64_t mid = pinned_generation();
		EXPECT_TRUE(mid == g || mid == g + 1) << mid;
		agent->kill9();
		EXPECT_TRUE(lgtest::closed_by_peer(fd)) << "no reply from a killed commit";
		close(fd);
		// Killed: the dataplane keeps enforcing exactly one generation.
		bool approved_mid = pe_reachable();
		EXPECT_EQ(approved_mid, mid == g);

		unsetenv("LINKGATED_TEST_PAUSE");
		ASSERT_TRUE(started()) << agent->log();
		uint64_t after = agent->generation();
		EXPECT_EQ(pinned_generation(), after);
		EXPECT_GE(after, mid);
		json state = ok("export");
		auto file = load_state_file(agent->state_path());
		ASSERT_TRUE(file.ok()) << file.error();
		EXPECT_EQ(state_to_json(*file), state) << "the state file is what the agent serves";
		std::string status = ok("mysql.server.private-endpoint-connection.show",
					{{"serverName", "eastus-db"}, {"name", "pe-east"}})["privateLinkServiceConnectionState"]
					   ["status"];
		EXPECT_TRUE(status == "Approved" || status == "Rejected") << status;
		// The dataplane enforces exactly what the agent and the file say.
		EXPECT_EQ(pe_reachable(), status == "Approved");
		if (std::string(point) == "before-publish") {
			EXPECT_EQ(mid, g);
			EXPECT_EQ(after, g) << "nothing was published: the pinned generation is adopted";
		} else {
			EXPECT_EQ(mid, g + 1) << "published before the state file";
			EXPECT_EQ(after, g + 2) << "the live marker is behind the pins: the file is published";
		}
		if (std::string(point) == "after-state-write")
			EXPECT_EQ(status, "Rejected") << "the state file was written: the restart publishes it";
		else
			EXPECT_EQ(status, "Approved") << "the state file was not written: the old state comes back";
		agent.reset();
	}
}

// SPEC §6, NSG flow logs (v2) of real traffic, appended by the agent every
// --flow-log-interval: the private endpoint connection begins (B), carries on
// with its counts (C) and ends (E) in clients-nsg's log under the default rule
// that admitted it (its subnet NSG applies Outbound; the endpoint's subnet
// has network policies off); the ssh that no-ssh denies is a D tuple.
TEST_F(AgentRestart, FlowLogsRecordRealTrafficInTheV2TupleFormat)
{
	std::string path = "/tmp/lgtest-flowlog-" + std::to_string(getpid()) + ".jsonl";
	std::filesystem::remove(path);
	struct Remove {
		std::string p;
		~Remove() { std::filesystem::remove(p); } // also when an ASSERT ends the test
	} remove_at_end{path};
	start_agent(policy("Approved"), {"--flow-log", path, "--flow-log-interval", "1"});
	// The tuples are clients-nsg's Outbound ones: logged under the MAC of
	// the interface the client's packets came in by (this namespace's hc).
	std::string hc_mac;
	{
		ifreq ifr{};
		std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "hc");
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(ioctl(fd, SIOCGIFHWADDR, &ifr), 0);
		close(fd);
		char m[13];
		const auto *b = reinterpret_cast<const unsigned char *>(ifr.ifr_hwaddr.sa_data);
		std::snprintf(m, sizeof m, "%02X%02X%02X%02X%02X%02X", b[0], b[1], b[2], b[3], b[4], b[5]);
		hc_mac = m;
	}
	// Every tuple written so far as "rule|tuple"; each record's shape checked.
	auto tuples = [&] {
		std::vector<std::string> out;
		std::ifstream f(path);
		std::string line;
		while (std::getline(f, line)) {
			json r = json::parse(line, nullptr, false);
			if (r.is_discarded() || !r.is_object()) {
				ADD_FAILURE() << "not a JSON record: " << line;
				continue;
			}
			EXPECT_EQ(r["category"], "NetworkSecurityGroupFlowEvent");
			EXPECT_EQ(r["operationName"], "NetworkSecurityGroupFlowEvents");
			EXPECT_TRUE(r["resourceId"].get<std::string>().ends_with("/NETWORKSECURITYGROUPS/CLIENTS-NSG")) << line;
			EXPECT_EQ(r["properties"]["Version"], 2);
			EXPECT_EQ(r["macAddress"], hc_mac);
			for (auto &g : r["properties"]["flows"])
				for (auto &m : g["flows"]) {
					EXPECT_EQ(m["mac"], hc_mac);
					for (auto &t : m["flowTuples"])
						out.push_back(g["rule"].get<std::string>() + "|" + t.get<std::string>());
				}
		}
		return out;
	};
	// The tuples of `rule` that hold `mid` and end with `tail`.
	auto find = [&](const std::string &rule, const std::string &mid, const std::string &tail) {
		std::vector<std::string> hit;
		for (const std::string &t : tuples())
			if (t.starts_with(rule + "|") && t.find(mid) != std::string::npos && t.ends_with(tail))
				hit.push_back(t.substr(rule.size() + 1));
		return hit;
	};
	auto dump = [&] {
		std::string all;
		for (const std::string &t : tuples())
			all += t + "\n";
		return all + agent->log();
	};
	const std::string pe = "DefaultRule_AllowVnetOutBound", conn_mid = ",10.1.1.10,10.1.1.100,";

	Persistent conn(topo.real("cli"));
	ASSERT_TRUE(conn.round_trip());
	EXPECT_EQ(client("192.168.20.11", 22, 500), 3) << "no-ssh";
	ASSERT_TRUE(until([&] {
		return !find(pe, conn_mid, ",3306,T,O,A,B,,,,").empty() &&
		       !find("UserRule_no-ssh", ",10.1.1.10,192.168.20.11,", ",22,T,O,D,B,,,,").empty();
	})) << dump();
	for (int i = 0; i < 5; i++)
		ASSERT_TRUE(conn.round_trip());
	ASSERT_TRUE(until([&] { return !find(pe, conn_mid, "").empty() && !find(pe, ",3306,T,O,A,C,", "").empty(); }))
		<< dump();
	EXPECT_EQ(conn.finish(), 0);
	ASSERT_TRUE(until([&] { return !find(pe, ",3306,T,O,A,E,", "").empty(); })) << dump();

	// One B and one E for the connection, and its counts in C and E add up
	// to at least the six round trips each way (a request and its echo).
	EXPECT_EQ(find(pe, conn_mid, ",B,,,,").size(), 1u) << dump();
	EXPECT_EQ(find(pe, ",3306,T,O,A,E,", "").size(), 1u) << dump();
	uint64_t sums[4] = {};
	for (const std::string &t : find(pe, conn_mid, "")) {
		std::vector<std::string> f;
		for (size_t a = 0, b; ; a = b + 1) {
			b = t.find(',', a);
			f.push_back(t.substr(a, b == std::string::npos ? std::string::npos : b - a));
			if (b == std::string::npos)
				break;
		}
		ASSERT_EQ(f.size(), 13u) << t;
		EXPECT_NEAR(double(std::stoll(f[0])), double(std::time(nullptr)), 60.0) << "unix seconds: " << t;
		if (f[8] == "B")
			continue;
		for (int k = 0; k < 4; k++)
			sums[k] += std::stoull(f[9 + size_t(k)]);
	}
	EXPECT_GE(sums[0], 6u) << dump();
	EXPECT_GE(sums[2], 6u) << dump();
	EXPECT_GT(sums[1], sums[0] * 54) << "bytes are frame lengths: more than 54 a TCP/IPv4 frame";
	EXPECT_GT(sums[3], sums[2] * 54);
	// `stats` shows the records made: at least the connection's B and the ssh's D.
	json fl = ok("stats")["dataplanes"]["xdp"]["flowLog"];
	EXPECT_EQ(fl["on"], true) << fl.dump();
	EXPECT_GE(fl["written"].get<uint64_t>(), 2u) << fl.dump();
	EXPECT_EQ(fl["lost"], 0) << fl.dump();
}

TEST_F(AgentRestart, ExpiredFlowsAreReclaimedInTheBackground)
{
	// A flow that lives 3 s: long enough to be seen between two flows
	// queries of an agent under load, short enough to wait for it to go.
	start_agent(policy("Approved"), {"--udp-timeout", "3", "--reclaim-interval", "50"});
	// One UDP datagram from the client to the backend network: a routed flow.
	ASSERT_EQ(Topology::in_ns(topo.real("cli"),
				  [] {
					  int s = socket(AF_INET, SOCK_DGRAM, 0);
					  sockaddr_in a{};
					  a.sin_family = AF_INET;
					  a.sin_port = htons(9999);
					  inet_pton(AF_INET, "192.168.20.11", &a.sin_addr);
					  return sendto(s, "x", 1, 0, reinterpret_cast<sockaddr *>(&a), sizeof a) == 1 ? 0 : 1;
				  }),
		  0);
	auto udp_flows = [&] {
		int n = 0;
		for (const auto &f : ok("flows"))
			if (f["original"].get<std::string>().find(" 17 10.1.1.10:") != std::string::npos)
				n++;
		return n;
	};
	// Seen, then gone within a bounded time (3 s timeout, 50 ms sweeps).
	EXPECT_TRUE(until([&] { return udp_flows() == 1; })) << ok("flows").dump();
	EXPECT_TRUE(until([&] { return udp_flows() == 0; })) << ok("flows").dump();
	EXPECT_NE(agent->log().find("reclaimed"), std::string::npos) << agent->log();
}

// Counter totals by name across a restart: a rule's hits stay with it, and
// a rule that took over a deleted rule's counter index starts from zero
// (before: a restarted agent read the raw counters under the live names,
// so the new rule showed the deleted one's hits).
TEST_F(AgentRestart, CountersFollowTheirNamesAcrossARestart)
{
	start_agent(policy("Approved"));
	// Counts that differ from rule to rule: 2 (no-ssh), 3 (the private
	// endpoint's connections, also AllowVnetOutBound's), 1 (no-telnet).
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(client("192.168.20.11", 22, 300), 3) << "no-ssh denies";
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(client("10.1.1.100", 3306), 0);
	json before = ok("stats");
	uint64_t ssh = before["nsgRules"]["clients-nsg/no-ssh"].get<uint64_t>();
	uint64_t pe = before["privateEndpoints"]["pe-east"].get<uint64_t>();
	ASSERT_GE(ssh, 2u);
	ASSERT_GT(pe, 0u);

	// no-telnet takes no-ssh's place, and so its counter index.
	ok("network.nsg.rule.delete", {{"nsgName", "clients-nsg"}, {"name", "no-ssh"}});
	ok("network.nsg.rule.create", {{"nsgName", "clients-nsg"},
				       {"name", "no-telnet"},
				       {"priority", 100},
				       {"direction", "Outbound"},
				       {"access", "Deny"},
				       {"protocol", "Tcp"},
				       {"destinationPortRanges", {"23"}}});
	EXPECT_EQ(ok("stats")["nsgRules"]["clients-nsg/no-telnet"].get<uint64_t>(), 0u);
	EXPECT_EQ(client("192.168.20.11", 23, 300), 3) << "no-telnet denies";
	uint64_t telnet = ok("stats")["nsgRules"]["clients-nsg/no-telnet"].get<uint64_t>();
	ASSERT_GE(telnet, 1u);

	// SIGTERM and start again: the pinned generation is adopted.
	uint64_t g = agent->generation();
	ASSERT_EQ(agent->stop(), 0) << agent->log();
	ASSERT_TRUE(started()) << agent->log();
	ASSERT_EQ(agent->generation(), g);
	json after = ok("stats");
	EXPECT_EQ(after["nsgRules"]["clients-nsg/no-telnet"].get<uint64_t>(), telnet) << after.dump();
	EXPECT_FALSE(after["nsgRules"].contains("clients-nsg/no-ssh"));
	EXPECT_GE(after["privateEndpoints"]["pe-east"].get<uint64_t>(), pe);

	// kill -9 and start again: the same.
	agent->kill9();
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(ok("stats")["nsgRules"]["clients-nsg/no-telnet"].get<uint64_t>(), telnet);

	// The state file changed while the agent was stopped: the next start
	// publishes it as a new generation, with a rule before no-telnet (its
	// index moves); the totals still go by name.
	ASSERT_EQ(agent->stop(), 0) << agent->log();
	auto st = load_state_file(agent->state_path());
	ASSERT_TRUE(st) << st.error();
	st->networkSecurityGroups[0].securityRules.insert(
		st->networkSecurityGroups[0].securityRules.begin(),
		lg::testing::make_rule("first", 90 + 20, "Inbound", "Deny", "Udp", "*", "*", "9"));
	ASSERT_TRUE(save_state_file(agent->state_path(), *st).ok());
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g + 1);
	json moved = ok("stats");
	EXPECT_EQ(moved["nsgRules"]["clients-nsg/no-telnet"].get<uint64_t>(), telnet) << moved.dump();
	EXPECT_EQ(moved["nsgRules"]["clients-nsg/first"].get<uint64_t>(), 0u) << moved.dump();
}

// The host's own addresses follow the host while the agent runs (netlink):
// one added after the start goes to the host stack (before: decided by
// policy, no-route), a removed one stops being the host's, and the others
// stay in lg_local throughout.
TEST_F(AgentRestart, HostAddressesFollowTheHost)
{
	// No IPv6: its addresses change at times of their own (DAD), and each
	// such notice reads the set again; the retry below must be the only way.
	ASSERT_TRUE(topo.run("host", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"));
	start_agent(policy("Approved"));
	auto local_has = [&](const char *ip) {
		int fd = bpf_obj_get((pin_dir + "/lg_local").c_str());
		if (fd < 0)
			return false;
		lg_local_key k{};
		Addr a = *Addr::parse(ip);
		std::memcpy(k.addr, a.b.data(), 16);
		uint8_t v = 0;
		bool found = bpf_map_lookup_elem(fd, &k, &v) == 0;
		close(fd);
		return found;
	};
	ASSERT_TRUE(local_has("10.1.1.1"));
	ASSERT_FALSE(local_has("10.1.1.7"));
	ASSERT_TRUE(topo.run("host", "ip addr add 10.1.1.7/32 dev hc"));
	ASSERT_TRUE(until([&] { return local_has("10.1.1.7"); })) << agent->log();
	EXPECT_TRUE(local_has("10.1.1.1"));

	// A TCP service of the host on the new address answers the client.
	int ready[2], halt[2];
	ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(halt, O_CLOEXEC), 0);
	int srv = Topology::spawn_in_ns(topo.real("host"), [&] { return echo_server("10.1.1.7", 7777, ready[1], halt[0]); });
	close(ready[1]); // a server that dies before it is ready ends the read
	char c;
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	EXPECT_EQ(client("10.1.1.7", 7777), 0);
	EXPECT_EQ(write(halt[1], "s", 1), 1);
	EXPECT_EQ(Topology::wait_child(srv), 0);
	for (int fd : {ready[0], halt[0], halt[1]})
		close(fd);

	ASSERT_TRUE(topo.run("host", "ip addr del 10.1.1.7/32 dev hc"));
	EXPECT_TRUE(until([&] { return !local_has("10.1.1.7"); })) << agent->log();
	EXPECT_TRUE(local_has("10.1.1.1"));

	// A re-read that fails (getifaddrs finds no descriptor for its socket:
	// the agent's limit lowered to its lowest free one) is tried again at
	// each heartbeat: no later notice need come.
	pid_t ap = agent->pid();
	rlimit old{};
	ASSERT_EQ(prlimit(ap, RLIMIT_NOFILE, nullptr, &old), 0);
	std::set<int> open_fds;
	for (auto &e : std::filesystem::directory_iterator("/proc/" + std::to_string(ap) + "/fd"))
		open_fds.insert(std::stoi(e.path().filename().string()));
	rlim_t free_fd = 0;
	while (open_fds.count(int(free_fd)))
		free_fd++;
	rlimit low{free_fd, old.rlim_max};
	ASSERT_EQ(prlimit(ap, RLIMIT_NOFILE, &low, nullptr), 0);
	ASSERT_TRUE(topo.run("host", "ip addr add 10.1.1.8/32 dev hc"));
	bool failed = until([&] { return agent->log().find("host addresses not updated") != std::string::npos; });
	bool held = !local_has("10.1.1.8");
	// Then more addresses than lg_local holds (1,024): once descriptors
	// are back, the retry fails for another cause, which is reported too.
	bool many = topo.run("host", "for i in $(seq 0 1099); do echo addr add 10.200.$((i / 250)).$((i % 250 + 1))/32 dev hc; "
				     "done | ip -batch -");
	ASSERT_EQ(prlimit(ap, RLIMIT_NOFILE, &old, nullptr), 0);
	ASSERT_TRUE(failed) << agent->log();
	EXPECT_TRUE(held) << "the set was read while the agent had no descriptor to spare";
	ASSERT_TRUE(many);
	EXPECT_TRUE(until([&] { return agent->log().find("too many host addresses") != std::string::npos; }))
		<< agent->log();
	EXPECT_FALSE(local_has("10.1.1.8")) << "no new address of a set that does not fit";
	EXPECT_TRUE(local_has("10.1.1.1")) << "an address that stays";
	ASSERT_TRUE(topo.run("host", "ip addr flush dev hc to 10.200.0.0/16"));
	EXPECT_TRUE(until([&] { return local_has("10.1.1.8"); })) << "read again at the flush's notices" << agent->log();
	EXPECT_TRUE(until([&] { return agent->log().find("host addresses read again") != std::string::npos; }))
		<< agent->log();
	// Each cause once, however many heartbeats retried it.
	std::string log = agent->log();
	size_t reports = 0;
	for (size_t at = log.find("host addresses not updated"); at != std::string::npos;
	     at = log.find("host addresses not updated", at + 1))
		reports++;
	EXPECT_EQ(reports, 2u) << log;
	ASSERT_TRUE(topo.run("host", "ip addr del 10.1.1.8/32 dev hc"));
}

// The XDP program's cached next hops follow the host (docs/agent.md, "The
// host's FIB"): the agent watches (so a cached next hop may live an hour,
// XdpTest.CachedNextHopLifetime), and when the host changes the backend's
// MAC, the established flow's next frame takes the new one.
TEST_F(AgentRestart, CachedNextHopsFollowTheHostsNeighbours)
{
	// IPv6 would change the host's addresses at times of its own (DAD), and
	// each of those ends every cached next hop too: the change below must
	// be the only one.
	ASSERT_TRUE(topo.run("host", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"));
	// The backend's entry, there before the agent: it reads it at start.
	ASSERT_TRUE(topo.run("host", "ip neigh replace 192.168.20.11 lladdr 02:00:00:00:b1:01 dev hb nud permanent"));
	start_agent(policy("Approved"));
	auto next_hops = [&] { return ok("stats")["dataplanes"]["xdp"]["nextHops"]; };
	json nh = next_hops();
	ASSERT_TRUE(nh.is_object()) << ok("stats").dump();
	EXPECT_EQ(nh["watched"], true) << nh.dump();
	EXPECT_GE(nh["fibChanges"].get<uint64_t>(), 1u) << "the start is a change: nothing cached before it is trusted";
	EXPECT_GE(nh["neighbours"].get<uint64_t>(), 1u) << "the backend's entry, read from the table at start" << agent->log();

	Persistent conn(topo.real("cli"));
	ASSERT_TRUE(conn.round_trip()) << agent->log();
	// The host's first sight of each neighbour is a change: the frames
	// around it take the full path; later ones the fast path.
	uint64_t fast = next_hops()["fastPath"].get<uint64_t>();
	EXPECT_TRUE(until([&] { return conn.round_trip() && next_hops()["fastPath"].get<uint64_t>() > fast; }))
		<< "an established flow: the fast path";

	uint64_t changes = next_hops()["fibChanges"].get<uint64_t>();
	ASSERT_TRUE(topo.run("host", "ip neigh replace 192.168.20.11 lladdr 02:00:00:00:00:99 dev hb nud permanent"));
	ASSERT_TRUE(until([&] { return next_hops()["fibChanges"].get<uint64_t>() > changes; })) << agent->log();
	EXPECT_FALSE(conn.round_trip()) << "the flow's next frame should have gone to the new (wrong) MAC";
	ASSERT_TRUE(topo.run("host", "ip neigh replace 192.168.20.11 lladdr 02:00:00:00:b1:01 dev hb nud permanent"));
	// (The old flow's stream now holds its retransmitted ping: a new one.)
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "the backend's own MAC again";
	EXPECT_EQ(conn.finish(), 0);
}

// After a kill -9 nobody reads the host's changes: the watch window the
// agent last renewed lapses within a second, and the program trusts a
// cached next hop for a second again (docs/agent.md, "The host's FIB").
// With the window left open the old MAC would be used for up to an hour.
TEST_F(AgentRestart, AKilledAgentsWatchLapses)
{
	ASSERT_TRUE(topo.run("host", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"));
	start_agent(policy("Approved"));
	auto next_hops = [&] { return ok("stats")["dataplanes"]["xdp"]["nextHops"]; };
	Persistent conn(topo.real("cli"));
	ASSERT_TRUE(conn.round_trip()) << agent->log();
	uint64_t fast = next_hops()["fastPath"].get<uint64_t>();
	ASSERT_TRUE(until([&] { return conn.round_trip() && next_hops()["fastPath"].get<uint64_t>() > fast; }))
		<< "an established flow: the fast path";
	ASSERT_EQ(next_hops()["watched"], true);

	agent->kill9();
	auto killed = std::chrono::steady_clock::now();
	ASSERT_TRUE(topo.run("host", "ip neigh replace 192.168.20.11 lladdr 02:00:00:00:00:99 dev hb nud permanent"));
	// Round trips go on with the cached next hop until the window and the
	// next hop's second have passed; then the full path finds the new MAC.
	std::chrono::steady_clock::time_point failed{};
	EXPECT_TRUE(until([&] {
		auto t = std::chrono::steady_clock::now();
		if (conn.round_trip())
			return false;
		failed = t;
		return true;
	})) << "10 s after the kill the flow still used the old MAC: the window did not lapse";
	if (failed != std::chrono::steady_clock::time_point{})
		std::printf("the first round trip to the new MAC began %.2f s after the kill\n",
			    std::chrono::duration<double>(failed - killed).count());
	ASSERT_TRUE(topo.run("host", "ip neigh replace 192.168.20.11 lladdr 02:00:00:00:b1:01 dev hb nud permanent"));
	EXPECT_EQ(conn.finish(), 0);
}

// explain asks the host's routes which interface the destination leaves
// by, and looks the destination up in that interface's VNet, as the XDP
// program does after its bpf_fib_lookup: a packet explained in a peered
// VNet toward client-vnet meets the clients subnet's Inbound rules.
TEST_F(AgentRestart, ExplainLooksTheDestinationUpInTheEgressInterfacesVnet)
{
	State s = policy("Approved");
	VirtualNetwork peer;
	peer.name = "peer-vnet";
	peer.addressPrefixes = {"10.9.0.0/16"};
	peer.subnets = {{"far", "10.9.1.0/24", "", {}, "Disabled"}};
	peer.peerings = {"client-vnet"};
	s.virtualNetworks[0].peerings = {"peer-vnet"};
	s.virtualNetworks.push_back(peer);
	s.networkSecurityGroups[0].securityRules.push_back(
		lg::testing::make_rule("no-peer-web", 300, "Inbound", "Deny", "Tcp", "10.9.0.0/16", "*", "80"));
	start_agent(s);
	auto explain = [&](const char *vnet, const char *src, const char *dst) {
		return ok("explain", {{"vnetName", vnet}, {"src", src}, {"dst", dst}, {"protocol", "Tcp"}, {"sport", 1000},
				      {"dport", 80}});
	};
	// 10.1.1.0/24 leaves by hc, bound to client-vnet.
	json e = explain("peer-vnet", "10.9.1.10", "10.1.1.50");
	EXPECT_EQ(e["verdict"], "drop") << e.dump();
	EXPECT_EQ(e["reason"], "nsg-deny") << e.dump();
	EXPECT_EQ(e["stage"], "subnet-inbound") << e.dump();
	EXPECT_EQ(e["rule"], "no-peer-web") << e.dump();
	// The same packet from client-vnet itself is not from 10.9.0.0/16.
	e = explain("client-vnet", "10.1.1.10", "10.1.1.50");
	EXPECT_EQ(e["verdict"], "forward") << e.dump();
	// 192.168.20.0/24 leaves by hb, which no VNet is bound to: the packet's
	// VNet is the destination's, and 192.168.20.11 is in none of its subnets.
	e = explain("client-vnet", "10.1.1.10", "192.168.20.11");
	EXPECT_EQ(e["verdict"], "forward") << e.dump();
}

// explain answers what the program does before and after the policy: the
// host's own addresses, multicast and broadcast go to the host (pass, no
// NSG), and an allowed packet without a route is dropped no-route. Before
// 2026-11-30 it gave an NSG verdict for the host's SSH port, and forward
// for destinations the host cannot reach.
TEST_F(AgentRestart, ExplainAnswersHostTrafficAndMissingRoutesAsTheProgramDoes)
{
	start_agent(policy("Approved")); // the clients' NSG denies SSH out (no-ssh)
	ASSERT_TRUE(topo.run("host", "ip route add blackhole 198.51.100.0/24"));
	auto explain = [&](const char *dst, const char *proto, int dport) {
		return ok("explain", {{"vnetName", "client-vnet"}, {"src", "10.1.1.10"}, {"dst", dst}, {"protocol", proto},
				      {"sport", 1000}, {"dport", dport}});
	};
	json e = explain("10.1.1.1", "Tcp", 22); // the host's address on hc
	EXPECT_EQ(e["verdict"], "pass") << e.dump();
	EXPECT_TRUE(e["reason"].is_null()) << e.dump();
	EXPECT_TRUE(e["rule"].is_null()) << e.dump();
	e = explain("10.1.1.50", "Tcp", 22);
	EXPECT_EQ(e["verdict"], "drop") << "a VNet address that is not the host's meets the NSG: " << e.dump();
	EXPECT_EQ(e["rule"], "no-ssh") << e.dump();
	for (const char *m : {"224.0.0.18", "255.255.255.255"}) {
		e = explain(m, "Udp", 5000);
		EXPECT_EQ(e["verdict"], "pass") << m << ": " << e.dump();
	}
	// The host namespace has no default route; 198.51.100.0/24 is a blackhole.
	for (const char *far : {"8.8.8.8", "198.51.100.7"}) {
		e = explain(far, "Tcp", 443);
		EXPECT_EQ(e["verdict"], "drop") << far << ": " << e.dump();
		EXPECT_EQ(e["reason"], "no-route") << far << ": " << e.dump();
		EXPECT_EQ(e["stage"], "forward") << far << ": " << e.dump();
	}
	// IPv6 to a link-local address: a route (the interfaces' fe80::/64), but
	// bpf_fib_lookup forwards nothing from or to link-local.
	e = ok("explain", {{"vnetName", "client-vnet"}, {"src", "fd00:1:0:1::10"}, {"dst", "fe80::1"}, {"protocol", "Tcp"},
			   {"sport", 1000}, {"dport", 443}});
	EXPECT_EQ(e["reason"], "no-route") << e.dump();
	// The private endpoint's backend has a route (hb): forward, translated.
	e = explain("10.1.1.100", "Tcp", 3306);
	EXPECT_EQ(e["verdict"], "forward") << e.dump();
	EXPECT_EQ(e["backend"], "192.168.20.11:3306") << e.dump();
	ASSERT_TRUE(topo.run("host", "ip route add blackhole 192.168.20.11/32"));
	e = explain("10.1.1.100", "Tcp", 3306);
	EXPECT_EQ(e["verdict"], "drop") << "the backend unreachable: " << e.dump();
	EXPECT_EQ(e["reason"], "no-route") << e.dump();
	// What the program does with such a SYN, for comparison.
	EXPECT_NE(client("10.1.1.100", 3306, 2000), 0);
	EXPECT_GE(ok("stats")["drops"]["no-route"].get<uint64_t>(), 1u);
}

// Forwarding off on the ingress interface: bpf_fib_lookup answers
// FWD_DISABLED and the program drops what the policy allows as no-route.
// The agent says so at start, for the families the state holds addresses of
// (once, and at the commit that brings the first address of a family), and
// explain answers as the program does.
TEST_F(AgentRestart, ForwardingOffIsLoggedAndExplainedAsTheProgramDoes)
{
	ASSERT_TRUE(topo.run("host", "sysctl -qw net.ipv4.conf.hc.forwarding=0 net.ipv6.conf.hc.forwarding=0"));
	start_agent(policy("Approved"));
	EXPECT_NE(agent->log().find("hc: IPv4 forwarding is off (sysctl net.ipv4.conf.hc.forwarding=0)"), std::string::npos)
		<< agent->log();
	EXPECT_EQ(agent->log().find("hb: IPv4 forwarding is off"), std::string::npos) << agent->log();
	const std::string v6_off = "hc: IPv6 forwarding is off (sysctl net.ipv6.conf.hc.forwarding=0)";
	auto count = [&](const std::string &what) {
		size_t n = 0;
		std::string log = agent->log();
		for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1))
			n++;
		return n;
	};
	EXPECT_EQ(count(v6_off), 0u) << "an IPv4-only state: " << agent->log();
	ok("network.vnet.create", {{"name", "v6-vnet"}, {"addressPrefixes", {"fd00:6::/48"}}});
	EXPECT_EQ(count(v6_off), 1u) << "the state holds IPv6 now: " << agent->log();
	ok("network.vnet.create", {{"name", "v6-vnet-2"}, {"addressPrefixes", {"fd00:7::/48"}}});
	EXPECT_EQ(count(v6_off), 1u) << "said once while it stays off: " << agent->log();
	EXPECT_EQ(count("hc: IPv4 forwarding is off"), 1u) << agent->log();
	auto explain = [&] {
		return ok("explain", {{"vnetName", "client-vnet"}, {"src", "10.1.1.10"}, {"dst", "10.1.1.100"},
				      {"protocol", "Tcp"}, {"sport", 1000}, {"dport", 3306}});
	};
	json e = explain();
	EXPECT_EQ(e["verdict"], "drop") << e.dump();
	EXPECT_EQ(e["reason"], "no-route") << e.dump();
	uint64_t before = ok("stats")["drops"].value("no-route", uint64_t(0));
	EXPECT_NE(client("10.1.1.100", 3306, 2000), 0);
	EXPECT_GT(ok("stats")["drops"].value("no-route", uint64_t(0)), before) << "the program drops it as explained";
	// Back on: forwarded, and explained so.
	ASSERT_TRUE(topo.run("host", "sysctl -qw net.ipv4.conf.hc.forwarding=1"));
	e = explain();
	EXPECT_EQ(e["verdict"], "forward") << e.dump();
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

// An interface recreated (a driver reload, a device made again) comes back
// with a new ifindex and no program, and its traffic would go to the host's
// stack unfiltered. The agent attaches to it, binds it by a new generation
// of the same state and lets the old link go; a new MAC is answered with.
TEST_F(AgentRestart, ARecreatedInterfaceIsAttachedAndBoundAgain)
{
	start_agent(policy("Approved"));
	ASSERT_EQ(client("10.1.1.100", 3306), 0);
	uint64_t g = agent->generation();
	unsigned old_idx = if_nametoindex("hc");
	ASSERT_NE(old_idx, 0u);
	ASSERT_TRUE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(old_idx)));
	ASSERT_TRUE(topo.run("host", "ip link del hc"));
	topo.add_veth("cli", "cc", "host", "hc", "02:00:00:00:c1:01", "02:00:00:00:01:01");
	ASSERT_TRUE(topo.run("cli", "ip addr add 10.1.1.10/24 dev cc && ip route add default via 10.1.1.1 && "
				    "ethtool -K cc tx off >/dev/null"));
	ASSERT_TRUE(topo.run("host", "ip addr add 10.1.1.1/24 dev hc"));
	ASSERT_EQ(Topology::in_ns(topo.real("cli"), [] { return attach_pass("cc"); }), 0);
	unsigned idx = if_nametoindex("hc");
	ASSERT_NE(idx, old_idx);
	ASSERT_TRUE(until([&] { return agent->generation() > g; })) << agent->log();
	EXPECT_TRUE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(idx))) << agent->log();
	EXPECT_FALSE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(old_idx))) << agent->log();
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "translated through the new hc: " << agent->log();

	// A new MAC: the ARP and neighbour answers carry it (lg_ifmac).
	auto ifmac = [&] {
		int fd = bpf_obj_get((pin_dir + "/lg_ifmac").c_str());
		lg_ifmac m{};
		uint32_t k = idx;
		bool ok = fd >= 0 && bpf_map_lookup_elem(fd, &k, &m) == 0;
		if (fd >= 0)
			close(fd);
		return ok ? std::vector<uint8_t>(m.mac, m.mac + 6) : std::vector<uint8_t>{};
	};
	EXPECT_EQ(ifmac(), (std::vector<uint8_t>{0x02, 0, 0, 0, 0x01, 0x01}));
	ASSERT_TRUE(topo.run("host", "ip link set hc address 02:00:00:00:01:99"));
	EXPECT_TRUE(until([&] { return ifmac() == std::vector<uint8_t>{0x02, 0, 0, 0, 0x01, 0x99}; })) << agent->log();
	ASSERT_TRUE(topo.run("host", "ip link set hc address 02:00:00:00:01:01"));
	EXPECT_TRUE(until([&] { return ifmac() == std::vector<uint8_t>{0x02, 0, 0, 0, 0x01, 0x01}; })) << agent->log();
}

// On an empty start (no state file) a recreated interface republishes the
// same empty state; that is no change of the operator's, so the agent still
// refuses it to a fast path that runs another state file's generation
// (docs/decisions.md, "An empty start and the fast paths that run").
TEST_F(AgentRestart, ARelinkOnAnEmptyStartDoesNotHandItToAnotherStatesFastPath)
{
	agent = std::make_unique<Daemon>(agent_args());
	ASSERT_TRUE(started()) << agent->log();
	uint64_t g = agent->generation();
	// A fast path this agent serves (it starts with nothing, takes g).
	ASSERT_TRUE(register_dpdk("fp", 0).contains("result")) << agent->log();
	ASSERT_TRUE(topo.run("host", "ip link del hc"));
	topo.add_veth("cli", "cc", "host", "hc", "02:00:00:00:c1:01", "02:00:00:00:01:01");
	ASSERT_TRUE(until([&] {
		return agent->generation() > g && agent->rpc("status")["result"]["dataplanes"].size() == 1; // xdp alone
	})) << agent->log();
	EXPECT_EQ(register_dpdk("other", 57)["error"]["code"], -32014) << agent->log();
	// The one it served, its channel dropped, comes back with g: its own.
	json back = register_dpdk("fp", g);
	EXPECT_TRUE(back.contains("result")) << back.dump() << "\n" << agent->log();
}

// An empty state file whose live marker was lost (it is not fsynced): the
// pinned generation was published from it, so a fast path that runs it was
// served by this state file's agents and is given the state; one that runs
// a later generation runs another state file's (docs/decisions.md, "An
// empty start and the fast paths that run").
TEST_F(AgentRestart, PinsStandInForALostLiveMarkerOnAnEmptyStart)
{
	agent = std::make_unique<Daemon>(agent_args()); // no state file: an empty first start
	ASSERT_TRUE(started()) << agent->log();
	uint64_t g = agent->generation();
	ASSERT_TRUE(register_dpdk("fp", 0).contains("result")) << agent->log();
	EXPECT_EQ(agent->stop(), 0) << agent->log();
	ASSERT_TRUE(std::filesystem::exists(agent->state_path())) << "the first start writes the empty state";
	ASSERT_TRUE(std::filesystem::remove(agent->state_path() + ".live"));
	ASSERT_TRUE(started()) << agent->log();
	ASSERT_EQ(pinned_generation(), g + 1) << "no marker: the state is published again";
	json back = register_dpdk("fp", g);
	EXPECT_TRUE(back.contains("result")) << back.dump() << "\n" << agent->log();
	EXPECT_EQ(register_dpdk("other", g + 2)["error"]["code"], -32014) << agent->log();
}

// An earlier run's link on an interface no longer configured is let go at
// start: it would go on running the program on bindings that lack it.
TEST_F(AgentRestart, ALinkOfAnInterfaceNoLongerConfiguredIsLetGo)
{
	start_agent(policy("Approved"));
	unsigned hb = if_nametoindex("hb");
	ASSERT_TRUE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(hb)));
	agent.reset();
	agent = std::make_unique<Daemon>(std::vector<std::string>{"--pin-dir", pin_dir, "--xdp-interface", "hc=client-vnet"});
	std::filesystem::create_directories(agent->dir() + "/lib");
	ASSERT_TRUE(save_state_file(agent->state_path(), policy("Approved")).ok());
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_FALSE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(hb))) << agent->log();
	std::string out;
	ASSERT_TRUE(topo.run("host", "ip link show hb", &out));
	EXPECT_EQ(out.find("xdp"), std::string::npos) << out;
	EXPECT_TRUE(std::filesystem::exists(pin_dir + "/link_" + std::to_string(if_nametoindex("hc"))));
}

// The live marker cannot be written at start (a full or read-only state
// directory): the state is published already, so the agent attaches and
// serves, and says so; the next start publishes again.
TEST_F(AgentRestart, AnUnwritableLiveMarkerDoesNotKeepTheInterfacesBare)
{
	agent = std::make_unique<Daemon>(agent_args());
	std::filesystem::create_directories(agent->dir() + "/lib");
	ASSERT_TRUE(save_state_file(agent->state_path(), policy("Approved")).ok());
	std::filesystem::create_directories(agent->state_path() + ".live"); // a rename onto it fails
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_NE(agent->log().find("the next start publishes the state again"), std::string::npos) << agent->log();
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "attached: the endpoint is translated";
}

// A missing state file does not publish an empty state over the pinned
// generation: the agent refuses to start and the pins are untouched.
TEST_F(AgentRestart, AMissingStateFileDoesNotReplaceThePinnedGeneration)
{
	start_agent(policy("Approved"));
	uint64_t g = agent->generation();
	EXPECT_EQ(agent->stop(), 0);
	ASSERT_TRUE(std::filesystem::remove(agent->state_path()));
	agent->start(); // the socket listens first: start() may see it accept
	EXPECT_EQ(agent->wait_exit(20), 1);
	EXPECT_NE(agent->log().find("the state file " + agent->state_path() + " does not exist, and the dataplane "
				    "pinned in " + pin_dir + " runs generation " + std::to_string(g)),
		  std::string::npos)
		<< agent->log();
	EXPECT_EQ(pinned_generation(), g);
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "the pinned tables still serve the endpoint";
}

// One agent per pinned dataplane: a second one on another socket and state
// file is refused before it publishes or lets go of a link.
TEST_F(AgentRestart, ASecondAgentOnThePinnedDataplaneIsRefused)
{
	start_agent(policy("Approved"));
	uint64_t g = agent->generation();
	Daemon other(agent_args());
	other.start(); // the socket listens first: start() may see it accept
	EXPECT_EQ(other.wait_exit(20), 1);
	EXPECT_NE(other.log().find("another linkgated is using the dataplane pinned in " + pin_dir), std::string::npos)
		<< other.log();
	EXPECT_EQ(pinned_generation(), g);
	EXPECT_EQ(agent->generation(), g);
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

// An agent without --xdp-interface does not start beside XDP programs an
// earlier agent pinned: they would go on enforcing tables it never updates.
TEST_F(AgentRestart, WithoutInterfacesPinnedProgramsAreRefused)
{
	start_agent(policy("Approved"));
	EXPECT_EQ(agent->stop(), 0);
	Daemon bare({"--pin-dir", pin_dir});
	std::filesystem::create_directories(bare.dir() + "/lib");
	ASSERT_TRUE(save_state_file(bare.state_path(), policy("Approved")).ok());
	bare.start(); // the socket listens first: start() may see it accept
	EXPECT_EQ(bare.wait_exit(20), 1);
	EXPECT_NE(bare.log().find("no --xdp-interface, but XDP programs pinned in " + pin_dir), std::string::npos)
		<< bare.log();
}

// A publish that fails: nothing was written, the error is "commit failed",
// and a restart keeps the old generation.
TEST_F(AgentRestart, FailedPublishLeavesTheStateFileAsItWas)
{
	uint64_t g = 0;
	std::string before;
	json r = failing_reject("publish", g, before);
	ASSERT_TRUE(r.contains("error")) << r.dump();
	EXPECT_EQ(r["error"]["code"], lg::agent::kCommitFailed);
	EXPECT_EQ(lgtest::slurp(agent->state_path()), before);
	EXPECT_EQ(agent->generation(), g);
	EXPECT_EQ(pinned_generation(), g);
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
	// The operator's log says so too, not only the client's reply.
	EXPECT_NE(agent->log().find("linkgated: commit failed: publish refused (LINKGATED_TEST_FAIL)"), std::string::npos)
		<< agent->log();

	agent->kill9();
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g) << "adopted: the file and the dataplane agree";
	EXPECT_EQ(ok("mysql.server.private-endpoint-connection.show", {{"serverName", "eastus-db"}, {"name", "pe-east"}})
			  ["privateLinkServiceConnectionState"]["status"],
		  "Approved");
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

// A state file write that fails after the publish: the previous state is
// published again (as the next generation number), the error is "commit
// failed", the file is unchanged, and a restart adopts the restored
// generation.
TEST_F(AgentRestart, FailedStateWriteAfterThePublishRestoresThePreviousState)
{
	failed_state_write("state-write");
}

// The same when the write fails after its rename (the directory's fsync):
// the file held the refused state, which a restart would have served.
TEST_F(AgentRestart, FailedStateWriteAfterTheRenameRestoresThePreviousFile)
{
	failed_state_write("state-durable");
}

void AgentRestart::failed_state_write(const char *point)
{
	SCOPED_TRACE(point);
	uint64_t g = 0;
	std::string before;
	json r = failing_reject(point, g, before);
	ASSERT_TRUE(r.contains("error")) << r.dump();
	EXPECT_EQ(r["error"]["code"], lg::agent::kCommitFailed);
	EXPECT_NE(r["error"]["message"].get<std::string>().find("live again as generation " + std::to_string(g + 2)),
		  std::string::npos)
		<< r.dump();
	EXPECT_EQ(lgtest::slurp(agent->state_path()), before);
	EXPECT_EQ(pinned_generation(), g + 2) << "the previous state, published again";
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
	EXPECT_EQ(ok("mysql.server.private-endpoint-connection.show", {{"serverName", "eastus-db"}, {"name", "pe-east"}})
			  ["privateLinkServiceConnectionState"]["status"],
		  "Approved");

	agent->kill9();
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g + 2) << "adopted: the live marker names the restored generation";
	EXPECT_EQ(pinned_generation(), g + 2);
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

// kill -9 at random moments while commits run back to back: each time the
// restarted agent, its state file and the pinned dataplane agree, and the
// traffic is what they say.
TEST_F(AgentRestart, RandomKillsWhileCommitting)
{
	start_agent(policy("Approved"));
	std::srand(unsigned(getpid()));
	std::atomic<int> committed{0}; // commits answered with a result, over all rounds
	for (int round = 0; round < 5; round++) {
		SCOPED_TRACE(round);
		std::thread writer([path = agent->socket_path(), &committed] {
			int fd = lgtest::connect_unix(path);
			for (int i = 0; fd >= 0; i++) {
				json req{{"jsonrpc", "2.0"},
					 {"id", i},
					 {"method", i % 2 ? "mysql.server.private-endpoint-connection.approve"
							  : "mysql.server.private-endpoint-connection.reject"},
					 {"params", {{"serverName", "eastus-db"}, {"name", "pe-east"}}}};
				std::string reply;
				if (!lgtest::send_all(fd, req.dump() + "\n") || (reply = lgtest::read_line(fd, 20000)).empty())
					break; // the agent was killed
				// No throw: an exception on this thread would abort the
				// process past every teardown (namespaces, pins).
				json r = json::parse(reply, nullptr, false);
				committed += r.is_object() && r.contains("result");
			}
			if (fd >= 0)
				close(fd);
		});
		// The kill comes after a commit of this round went through (so it
		// lands among commits, not on an agent that refuses them all), at a
		// random point of some later one.
		int before = committed;
		bool went = until([&] { return committed > before; });
		poll(nullptr, 0, std::rand() % 600);
		agent->kill9();
		uint64_t at_kill = pinned_generation();
		writer.join();

		ASSERT_TRUE(went) << "no commit went through in 10 s\n" << agent->log();
		ASSERT_TRUE(started()) << agent->log();
		uint64_t g = agent->generation();
		EXPECT_EQ(pinned_generation(), g);
		EXPECT_GE(g, at_kill);
		auto file = load_state_file(agent->state_path());
		ASSERT_TRUE(file.ok()) << file.error();
		EXPECT_EQ(state_to_json(*file), ok("export"));
		std::string status = ok("mysql.server.private-endpoint-connection.show",
					{{"serverName", "eastus-db"}, {"name", "pe-east"}})["privateLinkServiceConnectionState"]
					   ["status"];
		EXPECT_EQ(pe_reachable(), status == "Approved") << status;
	}
}

// Pins of a dataplane with another generation slot count (an earlier
// linkgate with two slots) are refused at start with a clear error, and
// left as they were.
// A start by another build of the agent publishes the state file again: its
// compiler may lay the same state out otherwise (a fix among them), and
// adopting would keep the old build's tables until the next commit. A
// start by the same build adopts the pinned generation as it is.
TEST_F(AgentRestart, AnotherBuildPublishesTheStateAgain)
{
	start_agent(policy("Approved"));
	uint64_t g = agent->generation();
	agent->kill9();
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g) << "the same build adopts";
	// Another build: the executable with one more byte.
	std::string copy = agent->dir() + "/linkgated-other";
	std::filesystem::copy_file(LINKGATED, copy);
	std::filesystem::permissions(copy, std::filesystem::perms::owner_all);
	{
		std::ofstream(copy, std::ios::binary | std::ios::app) << '\n';
	}
	agent->kill9();
	agent->set_binary(copy);
	ASSERT_TRUE(started()) << agent->log();
	EXPECT_EQ(agent->generation(), g + 1) << "another build publishes the state again";
	EXPECT_EQ(pinned_generation(), g + 1);
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

// The tables inside the pinned outer maps are checked too: libbpf compares
// an outer map's own sizes only, so a pinned lg_pe whose tables hold wider
// values (a build that changed lg_pe without a layout version) was adopted
// and read with the wrong stride.
TEST_F(AgentRestart, PinnedTablesOfAnotherShapeAreRefused)
{
	XdpConfig c;
	c.pin_dir = pin_dir;
	{
		auto dp = XdpDataplane::load(c);
		ASSERT_TRUE(dp) << dp.error();
		auto t = lg::compile(policy("Approved"), {}, 1);
		ASSERT_TRUE(t) << t.error();
		ASSERT_TRUE((*dp)->publish(*t)) << "a generation: every slot's tables exist";
	}
	std::string path = pin_dir + "/lg_pe";
	int old = bpf_obj_get(path.c_str());
	ASSERT_GE(old, 0);
	bpf_map_info oi{};
	uint32_t len = sizeof oi;
	ASSERT_EQ(bpf_obj_get_info_by_fd(old, &oi, &len), 0);
	close(old);
	LIBBPF_OPTS(bpf_map_create_opts, io);
	int inner = bpf_map_create(BPF_MAP_TYPE_HASH, "lg_pe_g", sizeof(lg_addr_key), sizeof(lg_pe) + 8, 64, &io);
	ASSERT_GE(inner, 0) << strerror(errno);
	LIBBPF_OPTS(bpf_map_create_opts, oo, .inner_map_fd = uint32_t(inner), .map_flags = oi.map_flags);
	int outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "lg_pe", 4, 4, oi.max_entries, &oo);
	ASSERT_GE(outer, 0) << strerror(errno);
	for (uint32_t slot = 0; slot < oi.max_entries; slot++)
		ASSERT_EQ(bpf_map_update_elem(outer, &slot, &inner, BPF_ANY), 0) << strerror(errno);
	ASSERT_EQ(unlink(path.c_str()), 0);
	ASSERT_EQ(bpf_obj_pin(outer, path.c_str()), 0) << strerror(errno);
	close(outer);
	close(inner);
	auto dp = XdpDataplane::load(c);
	ASSERT_FALSE(dp) << "adopted a table of another shape";
	EXPECT_NE(dp.error().find("the table lg_pe pinned in " + pin_dir), std::string::npos) << dp.error();
}

TEST_F(AgentRestart, PinsOfAnotherSlotCountAreRefused)
{
	{
		XdpConfig old;
		old.pin_dir = pin_dir;
		old.gen_slots = 2;
		auto dp = XdpDataplane::load(old);
		ASSERT_TRUE(dp) << dp.error();
	}
	agent = std::make_unique<Daemon>(agent_args());
	std::filesystem::create_directories(agent->dir() + "/lib");
	ASSERT_TRUE(save_state_file(agent->state_path(), policy("Approved")).ok());
	// The socket listens before the pins are loaded (clients wait in the
	// backlog), so start() may see it accept: the agent must still exit 1.
	agent->start();
	EXPECT_EQ(agent->wait_exit(20), 1);
	EXPECT_NE(agent->log().find("cannot load the XDP program over the maps pinned in " + pin_dir), std::string::npos)
		<< agent->log();
	EXPECT_TRUE(std::filesystem::exists(pin_dir + "/lg_active"));
}

} // namespace
