// The control socket of the real linkgated (SPEC §6): framing, limits, peer
// credentials, concurrency, persistence. Every refused request must leave the
// state and the generation as they were.
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "agent_fixture.hpp"
#include "flow_log.hpp"
#include "log.hpp"
#include "service.hpp"

using namespace lgtest;
using lg::agent::kMaxMessage;

namespace {

// Runs linkgated with args (stderr to /dev/null) for at most 10 s: its exit
// code, or -1 when it kept running (was killed): these runs should refuse.
int refused_exit(std::vector<std::string> args)
{
	// Beside its state file, not the host's default pin directory: a
	// check that broke would otherwise leave pins there (Daemon::start).
	auto sf = std::find(args.begin(), args.end(), "--state");
	if (sf != args.end() && sf + 1 != args.end() && !(sf + 1)->empty() &&
	    std::find(args.begin(), args.end(), "--pin-dir") == args.end()) {
		args.push_back("--pin-dir");
		args.push_back(std::filesystem::path(*(sf + 1)).parent_path().string() + "/pins");
	}
	args.insert(args.begin(), LINKGATED);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		std::vector<char *> av;
		for (auto &a : args)
			av.push_back(a.data());
		av.push_back(nullptr);
		execv(LINKGATED, av.data());
		_exit(127);
	}
	int st = 0;
	for (int i = 0; i < 1000 && waitpid(pid, &st, WNOHANG) == 0; i++)
		poll(nullptr, 0, 10);
	if (waitpid(pid, &st, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

class DaemonTest : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_TRUE(d.start()) << d.log(); }

	// A change that commits one generation.
	void create_nsg(const std::string &name)
	{
		json r = d.rpc("network.nsg.create", {{"name", name}});
		ASSERT_TRUE(r.contains("result")) << r.dump();
	}
	json exported() const { return d.rpc("export").at("result"); }

	// The raw reply to one line sent on its own connection.
	json raw(const std::string &line)
	{
		int fd = connect_unix(d.socket_path());
		EXPECT_GE(fd, 0);
		send_all(fd, line);
		std::string reply = read_line(fd);
		close(fd);
		return reply.empty() ? json(nullptr) : json::parse(reply);
	}

	Daemon d;
};

TEST_F(DaemonTest, SocketIsMode0600AndRemovedOnSigterm)
{
	struct stat sb;
	ASSERT_EQ(lstat(d.socket_path().c_str(), &sb), 0);
	EXPECT_TRUE(S_ISSOCK(sb.st_mode));
	EXPECT_EQ(sb.st_mode & 0777, 0600u);
	EXPECT_EQ(d.stop(), 0);
	EXPECT_NE(lstat(d.socket_path().c_str(), &sb), 0);
}

TEST_F(DaemonTest, ReplyNamesTheNewGeneration)
{
	uint64_t g0 = d.generation();
	json r = d.rpc("network.nsg.create", {{"name", "web"}}, 7);
	EXPECT_EQ(r["id"], 7);
	EXPECT_EQ(r["jsonrpc"], "2.0");
	EXPECT_EQ(r["generation"], g0 + 1);
	EXPECT_EQ(r["result"]["NewNSG"]["name"], "web");
	EXPECT_EQ(d.generation(), g0 + 1);
}

TEST_F(DaemonTest, MalformedJsonIsAParseErrorAndTheConnectionStaysUsable)
{
	create_nsg("web");
	json before = exported();
	uint64_t g = d.generation();
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, "{\"jsonrpc\": \"2.0\", \"method\": \n");
	json e = json::parse(read_line(fd));
	EXPECT_EQ(e["error"]["code"], -32700);
	EXPECT_TRUE(e["id"].is_null());
	send_all(fd, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"status\"}\n");
	json ok = json::parse(read_line(fd));
	EXPECT_EQ(ok["id"], 2);
	EXPECT_EQ(ok["result"]["generation"], g);
	close(fd);
	EXPECT_EQ(exported(), before);
}

TEST_F(DaemonTest, HostileBytesAreParseErrorsAndTheAgentStaysUp)
{
	create_nsg("web");
	json before = exported();
	uint64_t g = d.generation();
	EXPECT_EQ(raw(std::string("\xff\xfe\x00garbage\n", 11))["error"]["code"], -32700);
	EXPECT_EQ(raw("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"st\xc3\"}\n")["error"]["code"], -32700);
	// Deep nesting within the cap: refused before it is parsed.
	constexpr size_t kDepth = 400000;
	EXPECT_EQ(raw(std::string(kDepth, '[') + std::string(kDepth, ']') + "\n")["error"]["code"], -32600);
	EXPECT_EQ(raw(std::string(kDepth, '[') + "\n")["error"]["code"], -32600);
	std::string deep = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"apply\",\"params\":{\"state\":{\"virtualNetworks\":[" +
			   std::string(kDepth, '[') + std::string(kDepth, ']') + "]}}}\n";
	EXPECT_EQ(raw(deep)["error"]["code"], -32600);
	// Brackets inside strings do not count.
	json r = d.rpc("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "r"}, {"priority", 100},
						   {"description", std::string(130, '[')}});
	EXPECT_EQ(r["generation"], g + 1);
	g++;
	before = exported();
	EXPECT_EQ(d.generation(), g);
	EXPECT_EQ(exported(), before);
}

TEST_F(DaemonTest, InvalidRequestsGetTypedErrors)
{
	create_nsg("web");
	json before = exported();
	uint64_t g = d.generation();
	EXPECT_EQ(raw("[1,2]\n")["error"]["code"], -32600);
	EXPECT_EQ(raw("42\n")["error"]["code"], -32600);
	EXPECT_EQ(raw("{\"id\":1,\"method\":\"status\"}\n")["error"]["code"], -32600); // no jsonrpc
	EXPECT_EQ(raw("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}\n")["error"]["code"], -32600);
	EXPECT_EQ(raw("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"status\"}\n")["error"]["code"], -32600);
	json unknown = raw("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"network.nsg.frobnicate\"}\n");
	EXPECT_EQ(unknown["error"]["code"], -32601);
	EXPECT_EQ(unknown["id"], 3);
	json bad = d.rpc("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "r"}, {"priority", "high"}});
	EXPECT_EQ(bad["error"]["code"], -32602);
	EXPECT_EQ(bad["error"]["data"]["param"], "priority");
	json extra = d.rpc("network.nsg.delete", {{"name", "web"}, {"force", true}});
	EXPECT_EQ(extra["error"]["code"], -32602);
	EXPECT_EQ(extra["error"]["data"]["param"], "force");
	json arr = raw("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"network.nsg.delete\",\"params\":[\"web\"]}\n");
	EXPECT_EQ(arr["error"]["code"], -32602);
	EXPECT_EQ(d.generation(), g);
	EXPECT_EQ(exported(), before);
}

TEST_F(DaemonTest, RejectedAndNotFoundChangeNothing)
{
	create_nsg("web");
	json before = exported();
	uint64_t g = d.generation();
	json rej = d.rpc("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "r"}, {"priority", 5000}});
	EXPECT_EQ(rej["error"]["code"], -32001);
	EXPECT_NE(rej["error"]["message"].get<std::string>().find("networkSecurityGroups/web/securityRules/r: priority"),
		  std::string::npos);
	json nf = d.rpc("network.nsg.rule.delete", {{"nsgName", "web"}, {"name", "nope"}});
	EXPECT_EQ(nf["error"]["code"], -32002);
	EXPECT_EQ(nf["error"]["data"]["object"], "networkSecurityGroups/web/securityRules/nope");
	EXPECT_EQ(d.generation(), g);
	EXPECT_EQ(exported(), before);
}

TEST_F(DaemonTest, NotificationsGetNoReply)
{
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, "{\"jsonrpc\":\"2.0\",\"method\":\"status\"}\n{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"status\"}\n");
	json r = json::parse(read_line(fd));
	EXPECT_EQ(r["id"], 9);
	close(fd);
}

TEST_F(DaemonTest, PipelinedRequestsAreAnsweredInOrder)
{
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	std::string batch;
	for (int i = 0; i < 50; i++)
		batch += json{{"jsonrpc", "2.0"}, {"id", i}, {"method", "network.nsg.create"},
			      {"params", {{"name", "n" + std::to_string(i)}}}}.dump() + "\r\n";
	send_all(fd, batch);
	uint64_t last = 0;
	for (int i = 0; i < 50; i++) {
		json r = json::parse(read_line(fd));
		EXPECT_EQ(r["id"], i);
		EXPECT_GT(r["generation"].get<uint64_t>(), last);
		last = r["generation"];
	}
	close(fd);
	EXPECT_EQ(exported()["networkSecurityGroups"].size(), 50u);
}

// What a client sent before its end (a half-close) is all served, one a
// round: notifications, then the request whose reply it waits for.
TEST_F(DaemonTest, RequestsQueuedBeforeTheClientsEndAreServed)
{
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	std::string batch;
	for (int i = 0; i < 5; i++)
		batch += json{{"jsonrpc", "2.0"}, {"method", "network.nsg.create"}, {"params", {{"name", "q" + std::to_string(i)}}}}
				 .dump() + "\n";
	batch += "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"network.nsg.list\"}\n";
	ASSERT_TRUE(send_all(fd, batch));
	ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
	std::string line = read_line(fd);
	ASSERT_FALSE(line.empty()) << "the request after the notifications was not answered";
	json r = json::parse(line);
	EXPECT_EQ(r["id"], 7);
	EXPECT_EQ(r["result"].size(), 5u);
	close(fd);
}

// Notifications have no reply, so nothing held a client that sent many in
// one write to its turn: every one was a commit served before anyone else.
// One request a round per client now, notification or not.
TEST_F(DaemonTest, AFloodOfNotificationsTakesTurnsWithOtherClients)
{
	const int kFlood = 150;
	// a is accepted first, so a round serves a before b; the agent is
	// stopped while both write, so one round finds both.
	int a = connect_unix(d.socket_path());
	ASSERT_GE(a, 0);
	send_all(a, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"status\"}\n");
	ASSERT_FALSE(read_line(a).empty());
	int b = connect_unix(d.socket_path());
	ASSERT_GE(b, 0);
	send_all(b, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"status\"}\n");
	json r = json::parse(read_line(b));
	uint64_t g0 = r["result"]["generation"];
	std::string flood;
	for (int i = 0; i < kFlood; i++)
		flood += json{{"jsonrpc", "2.0"}, {"method", "network.nsg.create"}, {"params", {{"name", "f" + std::to_string(i)}}}}
				 .dump() + "\n";
	ASSERT_EQ(kill(d.pid(), SIGSTOP), 0);
	ASSERT_TRUE(send_all(a, flood)); // one write: read by the agent at once
	send_all(b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n");
	ASSERT_EQ(kill(d.pid(), SIGCONT), 0);
	r = json::parse(read_line(b));
	uint64_t gb = r["result"]["generation"];
	EXPECT_LE(gb, g0 + 2) << "b waited for the flood";
	// And the flood is served, every one of them.
	for (int i = 2; i < 100000 && gb < g0 + kFlood; i++) {
		send_all(b, "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(i) + ",\"method\":\"status\"}\n");
		std::string line = read_line(b);
		ASSERT_FALSE(line.empty());
		gb = json::parse(line)["result"]["generation"];
	}
	EXPECT_EQ(gb, g0 + kFlood);
	close(a);
	close(b);
	EXPECT_EQ(exported()["networkSecurityGroups"].size(), size_t(kFlood));
}

// The agent's peak resident memory (kB), from /proc.
static long peak_rss_kb(pid_t pid)
{
	std::ifstream f("/proc/" + std::to_string(pid) + "/status");
	for (std::string line; std::getline(f, line);)
		if (line.starts_with("VmHWM:"))
			return std::stol(line.substr(6));
	return -1;
}

// A client that pipelines notifications without end (a runaway script)
// gets backpressure, not the agent's memory: the agent reads again only
// once it has taken every whole request it holds, so what it buffers stays
// within one read and one line's cap, and the rest waits in the socket.
TEST_F(DaemonTest, APipelineOfNotificationsIsHeldInTheSocketNotTheAgent)
{
	const size_t kFlood = 32u << 20;
	const std::string note = "{\"jsonrpc\":\"2.0\",\"method\":\"status\"}\n";
	std::string chunk;
	while (chunk.size() < (256u << 10))
		chunk += note;
	long before = peak_rss_kb(d.pid());
	ASSERT_GT(before, 0);
	int a = connect_unix(d.socket_path());
	ASSERT_GE(a, 0);
	ASSERT_EQ(fcntl(a, F_SETFL, O_NONBLOCK), 0);
	// Up to 32 MiB or 3 s, whichever comes first: the agent takes one
	// request a round, so with backpressure this runs into the deadline.
	size_t sent = 0, off = 0;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
	while (sent < kFlood && std::chrono::steady_clock::now() < deadline) {
		ssize_t n = send(a, chunk.data() + off, chunk.size() - off, MSG_NOSIGNAL);
		if (n > 0) {
			sent += size_t(n);
			off = (off + size_t(n)) % chunk.size();
		} else {
			ASSERT_EQ(errno, EAGAIN) << strerror(errno);
			pollfd p{a, POLLOUT, 0};
			poll(&p, 1, 100);
		}
	}
	long after = peak_rss_kb(d.pid());
	close(a);
	EXPECT_LT(after - before, 8 * 1024) << "kB more at the peak, after " << sent << " bytes sent";
	// And the agent goes on serving.
	EXPECT_TRUE(d.rpc("status").contains("result"));
}

TEST_F(DaemonTest, MessageOfExactlyOneMebibyteIsServed)
{
	std::string head = "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"status\"";
	std::string line = head + std::string(kMaxMessage - head.size() - 1, ' ') + "}";
	ASSERT_EQ(line.size(), kMaxMessage);
	json r = raw(line + "\n");
	EXPECT_EQ(r["id"], 5);
	EXPECT_TRUE(r.contains("result"));
}

// The same line ending in CRLF, its '\r' read before its '\n' has been
// sent: 1 MiB and a '\r' may still be a whole line.
TEST_F(DaemonTest, MessageOfExactlyOneMebibyteEndingInCrlfSplitIsServed)
{
	std::string head = "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"status\"";
	std::string line = head + std::string(kMaxMessage - head.size() - 1, ' ') + "}";
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, line + "\r");
	ASSERT_TRUE(peer_read_all(fd)) << "the agent did not read the request";
	send_all(fd, "\n");
	json r = json::parse(read_line(fd));
	EXPECT_EQ(r["id"], 6) << r.dump();
	EXPECT_TRUE(r.contains("result")) << r.dump();
	close(fd);
}

TEST_F(DaemonTest, OversizeMessageIsRefusedAndTheConnectionClosed)
{
	create_nsg("web");
	json before = exported();
	uint64_t g = d.generation();
	// A valid change padded one byte past the cap: it must not be applied.
	std::string head = "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"network.nsg.delete\",\"params\":{\"name\":\"web\"}";
	std::string line = head + std::string(kMaxMessage - head.size(), ' ') + "}";
	ASSERT_EQ(line.size(), kMaxMessage + 1);
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, line + "\n");
	json e = json::parse(read_line(fd));
	EXPECT_EQ(e["error"]["code"], -32010);
	EXPECT_TRUE(closed_by_peer(fd));
	close(fd);

	// Without any newline: refused as soon as the cap is passed.
	fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, std::string(kMaxMessage + 1, 'x'));
	e = json::parse(read_line(fd));
	EXPECT_EQ(e["error"]["code"], -32010);
	EXPECT_TRUE(closed_by_peer(fd));
	close(fd);
	EXPECT_EQ(d.generation(), g);
	EXPECT_EQ(exported(), before);
}

TEST_F(DaemonTest, ManyConcurrentClientsAreAllServedInOrder)
{
	constexpr int kClients = 16, kEach = 5;
	uint64_t g0 = d.generation();
	create_nsg("web");
	std::atomic<int> ok{0};
	std::vector<std::thread> ts;
	std::mutex m;
	std::set<uint64_t> gens;
	for (int c = 0; c < kClients; c++)
		ts.emplace_back([&, c] {
			// One connection per client, several requests on it.
			int fd = connect_unix(d.socket_path());
			if (fd < 0)
				return;
			for (int k = 0; k < kEach; k++) {
				int prio = 100 + c * kEach + k;
				json req{{"jsonrpc", "2.0"},
					 {"id", prio},
					 {"method", "network.nsg.rule.create"},
					 {"params",
					  {{"nsgName", "web"}, {"name", "r" + std::to_string(prio)}, {"priority", prio}}}};
				send_all(fd, req.dump() + "\n");
				std::string line = read_line(fd);
				if (line.empty())
					break;
				json r = json::parse(line);
				if (r.contains("result") && r["id"] == prio) {
					ok++;
					std::lock_guard<std::mutex> g(m);
					gens.insert(r["generation"].get<uint64_t>());
				}
			}
			close(fd);
		});
	for (auto &t : ts)
		t.join();
	EXPECT_EQ(ok, kClients * kEach);
	EXPECT_EQ(gens.size(), size_t(kClients * kEach)); // one generation per change
	EXPECT_EQ(d.generation(), g0 + 1 + kClients * kEach);
	EXPECT_EQ(exported()["networkSecurityGroups"][0]["securityRules"].size(), size_t(kClients * kEach));
}

// SIGTERM during a commit: the agent finishes it and its reply still goes
// out before the agent exits (a committed change must not look refused).
TEST(DaemonStop, SigtermDuringACommitStillSendsItsReply)
{
	setenv("LINKGATED_TEST_PAUSE", "after-state-write", 1);
	Daemon a;
	bool started = a.start();
	unsetenv("LINKGATED_TEST_PAUSE");
	ASSERT_TRUE(started) << a.log();
	int fd = connect_unix(a.socket_path());
	ASSERT_GE(fd, 0);
	json req{{"jsonrpc", "2.0"}, {"id", 3}, {"method", "network.nsg.create"}, {"params", {{"name", "late"}}}};
	ASSERT_TRUE(send_all(fd, req.dump() + "\n"));
	ASSERT_TRUE(a.wait_stopped()) << a.log();
	EXPECT_EQ(a.stop(), 0) << a.log(); // SIGTERM, then SIGCONT: the commit goes on
	std::string line = read_line(fd);
	close(fd);
	ASSERT_FALSE(line.empty()) << "no reply to a committed request";
	json r = json::parse(line);
	EXPECT_EQ(r["id"], 3);
	EXPECT_TRUE(r.contains("result")) << r.dump();
}

TEST_F(DaemonTest, StateIsPersistedAndRestored)
{
	create_nsg("web");
	ASSERT_TRUE(d.rpc("network.vnet.create", {{"name", "v1"}, {"addressPrefixes", {"10.1.0.0/16"}}}).contains("result"));
	json before = exported();
	struct stat sb;
	ASSERT_EQ(stat(d.state_path().c_str(), &sb), 0);
	EXPECT_EQ(sb.st_mode & 0777, 0600u);
	// The live marker names the state's objects too.
	ASSERT_EQ(stat((d.state_path() + ".live").c_str(), &sb), 0);
	EXPECT_EQ(sb.st_mode & 0777, 0600u);
	EXPECT_EQ(d.stop(), 0);
	ASSERT_TRUE(d.start()) << d.log();
	EXPECT_EQ(exported(), before);
}

TEST(DaemonStart, BadStateFileIsAClearStartupError)
{
	Daemon d;
	std::filesystem::create_directories(std::filesystem::path(d.state_path()).parent_path());
	std::ofstream(d.state_path()) << "{\"networkSecurityGroups\": [{\"name\": \"web\", \"securityRules\": "
					 "[{\"name\": \"r\", \"priority\": 5}]}]}";
	EXPECT_FALSE(d.start());
	EXPECT_EQ(d.exit_code(), 1);
	EXPECT_NE(d.log().find("networkSecurityGroups/web/securityRules/r: priority 5"), std::string::npos) << d.log();

	std::ofstream(d.state_path()) << "{not json";
	EXPECT_FALSE(d.start());
	EXPECT_EQ(d.exit_code(), 1);
	EXPECT_NE(d.log().find(d.state_path()), std::string::npos);

	// Beyond a double, and nested past the limit: one line and exit 1, not
	// an abort or a stack overflow.
	std::ofstream(d.state_path()) << R"({"virtualNetworks":[{"name":"a","vni":1e999}]})";
	EXPECT_FALSE(d.start());
	EXPECT_EQ(d.exit_code(), 1);
	EXPECT_NE(d.log().find(d.state_path() + ": number overflow"), std::string::npos) << d.log();
	std::ofstream(d.state_path()) << std::string(200000, '[') + std::string(200000, ']');
	EXPECT_FALSE(d.start());
	EXPECT_EQ(d.exit_code(), 1);
	EXPECT_NE(d.log().find(d.state_path() + ": JSON nested deeper than 64 levels"), std::string::npos) << d.log();
	std::filesystem::remove(d.state_path());
	std::filesystem::create_directory(d.state_path());
	EXPECT_FALSE(d.start());
	EXPECT_EQ(d.exit_code(), 1);
	EXPECT_NE(d.log().find(d.state_path() + ": not a regular file"), std::string::npos) << d.log();
}

// A state path that is no file is refused at start, not at every commit.
TEST(DaemonStart, StatePathThatIsNoFileIsRefused)
{
	Daemon scratch; // its directory only
	std::string sock = scratch.dir() + "/unused.sock", nodir = scratch.dir() + "/no-such-dir/";
	for (const std::string &path : {std::string(), nodir})
		EXPECT_EQ(refused_exit({"--state", path, "--socket", sock}), 2) << path;
	EXPECT_FALSE(std::filesystem::exists(nodir));
	EXPECT_FALSE(std::filesystem::exists(sock));
}

// Flow timeouts outside 1 ms .. 10^7 s are usage errors: `inf` or 1e300
// seconds in nanoseconds overflowed, and linkgate-dpdk refuses them.
TEST(DaemonStart, FlowTimeoutsOutOfRangeAreRefused)
{
	Daemon scratch; // its directory only
	std::string sock = scratch.dir() + "/unused.sock";
	for (const char *v : {"inf", "1e300", "0", "-5", "nan", "1000001"}) // past 10^6 s: next-hop ages wrap
		EXPECT_EQ(refused_exit({"--udp-timeout", v, "--state", scratch.dir() + "/unused.json", "--socket", sock}), 2)
			<< v << " (-1: accepted)";
	EXPECT_FALSE(std::filesystem::exists(sock));
}

// Whole numbers are decimal: CLI11 alone read 0x400 as 1024, 010 as 8, and
// wrapped a minus sign around.
TEST(DaemonStart, NumbersThatAreNotDecimalAreRefused)
{
	Daemon scratch; // its directory only
	std::string sock = scratch.dir() + "/unused.sock";
	for (auto [flag, v] : {std::pair{"--flow-capacity", "0x400"}, {"--flow-capacity", "-18446744073709551615"},
			       {"--reclaim-interval", "+1000"}, {"--idle-timeout", "1e3"}, {"--max-connections", " 5"}})
		EXPECT_EQ(refused_exit({flag, v, "--state", scratch.dir() + "/unused.json", "--socket", sock}), 2)
			<< flag << " " << v << " (-1: accepted)";
	EXPECT_FALSE(std::filesystem::exists(sock));
}

// A live marker of the wrong shape reads as none: the agent starts at
// generation 1 instead of aborting or wrapping.
TEST(DaemonStart, BadLiveMarkerReadsAsNone)
{
	for (const char *marker : {R"({"generation":"7"})", R"({"generation":18446744073709551615})", "[1]",
				   R"({"generation":-3,"digest":5})"}) {
		Daemon d;
		std::filesystem::create_directories(std::filesystem::path(d.state_path()).parent_path());
		std::ofstream(d.state_path()) << "{}";
		std::ofstream(d.state_path() + ".live") << marker;
		ASSERT_TRUE(d.start()) << marker << "\n" << d.log();
		EXPECT_EQ(d.rpc("status")["result"]["generation"], 1) << marker;
	}
}

// A state file that is gone (a mistyped --state, a deleted file) does not
// replace the published state with an empty one: the agent refuses to
// start until the file is there, or an empty state is written on purpose.
TEST(DaemonStart, AMissingStateFileDoesNotReplaceAPublishedState)
{
	Daemon d;
	ASSERT_TRUE(d.start()) << d.log();
	EXPECT_NE(d.log().find("does not exist: starting with an empty state"), std::string::npos) << d.log();
	// The first start writes its empty state: a restart before any change
	// finds it.
	EXPECT_TRUE(d.rpc("status").contains("result"));
	EXPECT_TRUE(std::filesystem::exists(d.state_path()));
	EXPECT_EQ(d.stop(), 0);
	ASSERT_TRUE(d.start()) << d.log();
	ASSERT_TRUE(d.rpc("network.vnet.create", {{"name", "v1"}, {"addressPrefixes", {"10.1.0.0/16"}}}).contains("result"));
	EXPECT_EQ(d.stop(), 0);
	ASSERT_TRUE(std::filesystem::remove(d.state_path()));
	d.start(); // the socket listens first: start() may see it accept
	EXPECT_EQ(d.wait_exit(20), 1);
	EXPECT_NE(d.log().find("the state file " + d.state_path() + " does not exist, and its live marker says "
			       "generation 3 was published"),
		  std::string::npos)
		<< d.log();
	std::ofstream(d.state_path()) << "{}";
	ASSERT_TRUE(d.start()) << d.log();
	EXPECT_EQ(d.rpc("status")["result"]["generation"], 4);
}

// An interface given twice is a usage error: the dataplane would keep one
// binding and explain the other. The name is no host's interface: were the
// check gone, the agent would fail on it (exit 1), never attach to it.
TEST(DaemonStart, AnInterfaceGivenTwiceIsRefused)
{
	Daemon scratch; // its directory only
	std::string sock = scratch.dir() + "/unused.sock";
	EXPECT_EQ(refused_exit({"--state", scratch.dir() + "/s.json", "--socket", sock, "--xdp-interface",
				"lgt-nosuch0=a", "--xdp-interface", "lgt-nosuch0=b"}),
		  2);
	EXPECT_FALSE(std::filesystem::exists(sock));
}

// SIGHUP (a closed terminal, a reload by habit) does not stop the agent.
TEST_F(DaemonTest, SighupIsLoggedAndIgnored)
{
	ASSERT_EQ(kill(d.pid(), SIGHUP), 0);
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	while (d.log().find("SIGHUP ignored") == std::string::npos && std::chrono::steady_clock::now() < deadline)
		poll(nullptr, 0, 10);
	EXPECT_NE(d.log().find("SIGHUP ignored"), std::string::npos) << d.log();
	EXPECT_TRUE(d.rpc("status").contains("result"));
	EXPECT_EQ(d.stop(), 0);
}

// Every log line is dated (UTC, milliseconds), as a file or a terminal needs
// it; under systemd, whose journal dates every line itself (JOURNAL_STREAM
// names stderr's device and inode), it is not.
TEST(DaemonLog, LinesAreDatedUnlessStderrIsTheJournal)
{
	EXPECT_EQ(lg::iso_time(1796051572123456789), "2026-11-30T15:12:52.123Z");
	EXPECT_EQ(lg::iso_time(999999), "1970-01-01T00:00:00.000Z");
	auto lines = [](const std::string &text) {
		std::vector<std::string> out;
		std::istringstream in(text);
		for (std::string l; std::getline(in, l);)
			out.push_back(l);
		return out;
	};
	const std::regex dated(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z linkgated: .+)");
	{
		Daemon d;
		ASSERT_TRUE(d.start()) << d.log();
		ASSERT_EQ(d.stop(), 0);
		auto ls = lines(d.log());
		ASSERT_GE(ls.size(), 2u) << d.log();
		for (const auto &l : ls)
			EXPECT_TRUE(std::regex_match(l, dated)) << l;
	}
	{
		Daemon d;
		// The journal's stream stands for the log file the agent's stderr is.
		std::string path = d.dir() + "/linkgated.log";
		close(open(path.c_str(), O_WRONLY | O_CREAT, 0600));
		struct stat st {};
		ASSERT_EQ(stat(path.c_str(), &st), 0);
		setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
		bool started = d.start();
		unsetenv("JOURNAL_STREAM");
		ASSERT_TRUE(started) << d.log();
		ASSERT_EQ(d.stop(), 0);
		auto ls = lines(d.log());
		ASSERT_GE(ls.size(), 2u) << d.log();
		for (const auto &l : ls)
			EXPECT_EQ(l.rfind("linkgated: ", 0), 0u) << l;
	}
}

TEST(DaemonStart, SecondAgentOnTheSameSocketRefuses)
{
	Daemon a;
	ASSERT_TRUE(a.start());
	Daemon b;
	EXPECT_EQ(refused_exit({"--state", b.state_path(), "--socket", a.socket_path()}), 1) << "(-1: it served)";
	EXPECT_TRUE(a.rpc("status").contains("result")); // the first one is untouched
}

class SilentClientTest : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_TRUE(d.start()) << d.log(); }
	Daemon d{{"--idle-timeout", "1"}};
};

TEST_F(SilentClientTest, SilentClientBlocksNobodyAndIsClosed)
{
	int silent = connect_unix(d.socket_path());
	ASSERT_GE(silent, 0);
	// A half-sent request holds nothing up either.
	int partial = connect_unix(d.socket_path());
	ASSERT_GE(partial, 0);
	send_all(partial, "{\"jsonrpc\":\"2.0\",\"id\":1,");
	uint64_t g = d.generation();
	json r = d.rpc("network.nsg.create", {{"name", "web"}});
	EXPECT_EQ(r["generation"], g + 1);
	for (int fd : {silent, partial}) {
		std::string line = read_line(fd, 10000);
		ASSERT_FALSE(line.empty());
		EXPECT_EQ(json::parse(line)["error"]["code"], -32013);
		EXPECT_TRUE(closed_by_peer(fd));
		close(fd);
	}
	EXPECT_EQ(d.generation(), g + 1);
}

// A request sent a byte at a time keeps the connection busy but never
// completes: it is closed once the request has taken the idle timeout.
TEST_F(SilentClientTest, TrickledRequestIsClosed)
{
	int fd = connect_unix(d.socket_path());
	ASSERT_GE(fd, 0);
	std::string req = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{}}";
	auto t0 = std::chrono::steady_clock::now();
	std::string line;
	// One byte every 200 ms (the pace of the attack, well inside the 1 s
	// idle timeout); the request would take 10 s to arrive.
	size_t sent = 0;
	for (; sent < req.size() && line.empty(); sent++) {
		if (!send_all(fd, req.substr(sent, 1)))
			break;
		pollfd p{fd, POLLIN, 0};
		if (poll(&p, 1, 200) > 0)
			line = read_line(fd, 1000);
	}
	double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	ASSERT_FALSE(line.empty()) << "still connected after " << s << " s";
	json e = json::parse(line);
	EXPECT_EQ(e["error"]["code"], -32013);
	EXPECT_NE(e["error"]["message"].get<std::string>().find("not complete"), std::string::npos) << line;
	// Closed with the request still short, and long before it would have
	// been complete (about 11 s): within a few idle timeouts (1 s each).
	EXPECT_LT(sent, req.size()) << "the whole request went through";
	EXPECT_LT(s, 5.0);
	close(fd);
	EXPECT_TRUE(d.rpc("status").contains("result"));
}

class StalledReaderTest : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_TRUE(d.start()) << d.log(); }
	Daemon d{{"--idle-timeout", "1", "--max-connections", "1"}};
};

// A client that pipelines requests and never reads its replies is closed
// once nothing moves, freeing its slot.
TEST_F(StalledReaderTest, ClientThatStopsReadingLosesItsSlot)
{
	int stalled = served_connection(d.socket_path()); // holds the one slot
	ASSERT_GE(stalled, 0);
	EXPECT_EQ(d.rpc("status")["error"]["code"], -32012);
	std::string batch;
	for (int i = 0; i < 5000; i++)
		batch += "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n";
	ASSERT_GT(send(stalled, batch.data(), batch.size(), MSG_DONTWAIT | MSG_NOSIGNAL), 0);
	// The only slot is taken until the agent gives up on the stalled client.
	bool served = false;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
	while (!served && std::chrono::steady_clock::now() < deadline) {
		json r = d.rpc("status");
		served = r.is_object() && r.contains("result");
		if (!served)
			poll(nullptr, 0, 50);
	}
	EXPECT_TRUE(served);
	// The stalled client sees the replies that were sent, then the end (a
	// reset: the agent closed with requests of it unread).
	EXPECT_TRUE(closed_by_peer(stalled));
	close(stalled);
}

class ConnectionCapTest : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_TRUE(d.start()) << d.log(); }
	Daemon d{{"--max-connections", "3"}};
};

TEST_F(ConnectionCapTest, ConnectionsPastTheCapAreRefused)
{
	std::vector<int> fds;
	for (int i = 0; i < 3; i++) {
		fds.push_back(served_connection(d.socket_path()));
		ASSERT_GE(fds.back(), 0);
	}
	int extra = connect_unix(d.socket_path());
	ASSERT_GE(extra, 0);
	json e = json::parse(read_line(extra));
	EXPECT_EQ(e["error"]["code"], -32012);
	EXPECT_TRUE(closed_by_peer(extra));
	close(extra);
	// The held ones still work.
	send_all(fds[0], "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"status\"}\n");
	EXPECT_EQ(json::parse(read_line(fds[0]))["id"], 2);
	for (int fd : fds)
		close(fd);
}

// Out of file descriptors (ulimit -n below --max-connections): a client
// past the limit is taken and refused, not left in the backlog where it
// would wake every poll and never be answered.
TEST(DaemonStart, ClientsPastTheDescriptorLimitAreRefused)
{
	Daemon d{{"--max-connections", "100"}};
	rlimit old{};
	ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	rlimit low = old;
	low.rlim_cur = 24; // inherited by linkgated only; restored right after
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	bool started = d.start();
	ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	ASSERT_TRUE(started) << d.log();
	std::vector<int> held;
	json refusal;
	for (int i = 0; i < 40 && refusal.is_null(); i++) {
		int fd = connect_unix(d.socket_path());
		ASSERT_GE(fd, 0);
		send_all(fd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n");
		std::string line = read_line(fd);
		ASSERT_FALSE(line.empty()) << "client " << i << " got no answer";
		json r = json::parse(line);
		if (r.contains("error")) {
			refusal = r;
			EXPECT_TRUE(closed_by_peer(fd));
			close(fd);
		} else {
			held.push_back(fd);
		}
	}
	ASSERT_FALSE(refusal.is_null()) << "no client was refused";
	EXPECT_EQ(refusal["error"]["code"], -32012);
	EXPECT_NE(refusal["error"]["message"].get<std::string>().find("out of file descriptors"), std::string::npos);
	EXPECT_GT(held.size(), 5u);
	for (int fd : held)
		close(fd);
	// Descriptors freed: served again.
	int fd = served_connection(d.socket_path());
	EXPECT_GE(fd, 0);
	if (fd >= 0)
		close(fd);
	EXPECT_TRUE(d.rpc("status").contains("result"));
}

// Another uid: refused before anything it sends is read. CI runs as root, so
// the child drops to nobody; the directory and socket are opened up for this
// test only, so that the credential check (not file modes) is what refuses.
TEST_F(DaemonTest, PeerWithTheWrongUidIsRefused)
{
	ASSERT_EQ(geteuid(), 0u) << "needs root to switch to another uid; CI runs as root";
	uint64_t g = d.generation();
	json before = exported();
	std::string run = std::filesystem::path(d.socket_path()).parent_path();

	auto as_nobody = [&](bool expect_connect) {
		int pipefd[2];
		EXPECT_EQ(pipe(pipefd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pipefd[0]);
			if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
				_exit(2);
			int fd = connect_unix(d.socket_path());
			std::string out = fd < 0 ? std::string("connect: ") + std::strerror(errno) : "";
			if (fd >= 0) {
				send_all(fd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"network.nsg.create\",\"params\":{\"name\":\"evil\"}}\n");
				out = read_line(fd);
			}
			(void)!write(pipefd[1], out.data(), out.size());
			_exit(0);
		}
		close(pipefd[1]);
		std::string out;
		char buf[4096];
		for (ssize_t n; (n = read(pipefd[0], buf, sizeof(buf))) > 0;)
			out.append(buf, size_t(n));
		close(pipefd[0]);
		int st = 0;
		waitpid(pid, &st, 0);
		EXPECT_EQ(WEXITSTATUS(st), 0);
		if (expect_connect) {
			EXPECT_FALSE(out.empty());
			if (!out.empty() && out[0] == '{') {
				json e = json::parse(out);
				EXPECT_EQ(e["error"]["code"], -32011);
			} else {
				ADD_FAILURE() << out;
			}
		} else {
			EXPECT_EQ(out.rfind("connect:", 0), 0u) << out;
		}
	};

	// As deployed (0600 socket): nobody cannot even connect.
	ASSERT_EQ(chmod(d.dir().c_str(), 0755), 0);
	ASSERT_EQ(chmod(run.c_str(), 0755), 0);
	as_nobody(false);
	// With the socket opened up, the credential check still refuses.
	ASSERT_EQ(chmod(d.socket_path().c_str(), 0666), 0);
	as_nobody(true);
	EXPECT_EQ(d.generation(), g);
	EXPECT_EQ(exported(), before);
	EXPECT_NE(d.log().find("refused a client with uid 65534"), std::string::npos);
}

} // namespace
