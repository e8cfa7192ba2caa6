// The agent's side of the DPDK channel (docs/agent.md, "The DPDK channel"):
// an in-test fast path speaks the protocol over the real socket of a real
// linkgated. Register → publish of the current generation with the exported
// state; commits wait for the ack; a channel that is silent, refuses or sends
// garbage is dropped and the commit still succeeds; counters and flows of the
// channel appear in stats and flows (also through linkgatectl); an agent
// restart makes the fast path register again.
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "agent_fixture.hpp"

extern "C" {
#include "lg_flow.h"
}

using namespace lgtest;
using Clock = std::chrono::steady_clock;

namespace {

// How the fake fast path answers one kind of request.
enum class Answer { Ack, Silent, Error, Garbage, WrongId };

// A linkgate-dpdk stand-in: connects, registers, answers the agent's
// requests on a thread of its own, records everything it receives, and (when
// asked) reconnects and registers again after the agent closed the channel.
class FakeDpdk {
public:
	FakeDpdk(std::string socket, std::string name, bool reconnect = false)
		: socket_(std::move(socket)), name_(std::move(name)), reconnect_(reconnect)
	{
		if (pipe(stop_) != 0)
			std::abort();
	}
	~FakeDpdk()
	{
		(void)!write(stop_[1], "x", 1);
		if (thread_.joinable())
			thread_.join();
		if (fd_ >= 0)
			close(fd_);
		close(stop_[0]);
		close(stop_[1]);
	}

	void start() { thread_ = std::thread([this] { run(); }); }

	void set(const std::string &method, Answer a, int delay_ms = 0)
	{
		std::lock_guard<std::mutex> l(mu_);
		answer_[method] = {a, delay_ms};
	}
	void set_result(const std::string &method, json result)
	{
		std::lock_guard<std::mutex> l(mu_);
		results_[method] = std::move(result);
	}

	// Everything received, in order: register replies ({"registered": reply})
	// and the agent's requests; plus when each publish was acked.
	struct Event {
		json msg;
		Clock::time_point at;
	};
	std::vector<Event> events()
	{
		std::lock_guard<std::mutex> l(mu_);
		return events_;
	}
	// Waits (with a deadline) until pred holds over the events.
	bool wait(const std::function<bool(const std::vector<Event> &)> &pred, int timeout_ms = 10000)
	{
		std::unique_lock<std::mutex> l(mu_);
		return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return pred(events_); });
	}
	// The n-th publish request (0-based), once received.
	json publish(size_t n, int timeout_ms = 10000)
	{
		json out;
		wait(
			[&](const std::vector<Event> &ev) {
				size_t k = 0;
				for (const auto &e : ev)
					if (e.msg.value("method", "") == "dataplane.publish" && k++ == n) {
						out = e.msg;
						return true;
					}
				return false;
			},
			timeout_ms);
		return out;
	}
	size_t count(const std::string &what)
	{
		size_t k = 0;
		for (const auto &e : events())
			if (e.msg.value("method", "") == what || (what == "registered" && e.msg.contains("registered")) ||
			    (what == "closed" && e.msg.contains("closed")))
				k++;
		return k;
	}
	bool wait_count(const std::string &what, size_t n, int timeout_ms = 10000)
	{
		return poll_until([&] { return count(what) >= n; }, Clock::now() + std::chrono::milliseconds(timeout_ms));
	}
	Clock::time_point last_ack()
	{
		std::lock_guard<std::mutex> l(mu_);
		return last_ack_;
	}

private:
	static bool poll_until(const std::function<bool()> &f, Clock::time_point deadline)
	{
		while (!f()) {
			if (Clock::now() >= deadline)
				return false;
			poll(nullptr, 0, 5);
		}
		return true;
	}

	void record(json msg)
	{
		std::lock_guard<std::mutex> l(mu_);
		events_.push_back({std::move(msg), Clock::now()});
		cv_.notify_all();
	}

	bool stopping(int ms)
	{
		pollfd p{stop_[0], POLLIN, 0};
		return poll(&p, 1, ms) > 0;
	}

	// Connect and register (retrying while the agent is away).
	bool connect_and_register()
	{
		for (;;) {
			fd_ = connect_unix(socket_);
			if (fd_ >= 0) {
				json reg{{"jsonrpc", "2.0"},
					 {"id", 1},
					 {"method", "dataplane.register"},
					 {"params", {{"kind", "dpdk"}, {"name", name_}, {"pid", int(getpid())}}}};
				send_all(fd_, reg.dump() + "\n");
				std::string line;
				if (read_line_or_stop(line) && !line.empty()) {
					json r = json::parse(line, nullptr, false);
					record(json{{"registered", r}});
					if (r.contains("result"))
						return true;
				}
				close(fd_);
				fd_ = -1;
			}
			if (!reconnect_ || stopping(10))
				return false;
		}
	}

	// One line, or false on end of stream / stop.
	bool read_line_or_stop(std::string &line)
	{
		line.clear();
		for (;;) {
			size_t nl = buf_.find('\n');
			if (nl != std::string::npos) {
				line = buf_.substr(0, nl);
				buf_.erase(0, nl + 1);
				return true;
			}
			pollfd p[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
			if (poll(p, 2, -1) < 0 && errno != EINTR)
				return false;
			if (p[1].revents)
				return false;
			char b[65536];
			ssize_t n = recv(fd_, b, sizeof b, 0);
			if (n <= 0)
				return false;
			buf_.append(b, size_t(n));
		}
	}

	void run()
	{
		for (;;) {
			if (!connect_and_register())
				return;
			std::string line;
			while (read_line_or_stop(line)) {
				// No throw on this thread (it would terminate the binary): a
				// line that is not a request is recorded and ends the channel.
				json req = json::parse(line, nullptr, false);
				if (!req.is_object() || !req.contains("id") || !req["id"].is_number_integer()) {
					record(json{{"unparsable", line}});
					break;
				}
				record(req);
				std::string method =
					req.contains("method") && req["method"].is_string() ? req["method"].get<std::string>() : "";
				std::pair<Answer, int> how;
				json result;
				{
					std::lock_guard<std::mutex> l(mu_);
					how = answer_.count(method) ? answer_[method] : std::pair<Answer, int>{Answer::Ack, 0};
					result = results_.count(method) ? results_[method] : json::object();
				}
				if (method == "dataplane.publish") {
					const json &pp = req.contains("params") ? req["params"] : json();
					generation_ = pp.is_object() && pp.contains("generation") && pp["generation"].is_number_unsigned()
							      ? pp["generation"].get<uint64_t>()
							      : 0;
					result = json{{"generation", generation_}};
				} else if (method == "dataplane.counters") {
					result["generation"] = generation_;
				} else if (method == "dataplane.flows" && !result.contains("flows")) {
					result["flows"] = json::array();
				}
				if (how.second > 0 && stopping(how.second))
					return;
				json reply{{"jsonrpc", "2.0"}, {"id", req["id"]}};
				switch (how.first) {
				case Answer::Silent:
					continue;
				case Answer::Ack:
					reply["result"] = result;
					break;
				case Answer::Error:
					reply["error"] = json{{"code", -32000}, {"message", "cannot apply this generation"}};
					break;
				case Answer::WrongId:
					reply["id"] = req["id"].get<int64_t>() + 1000;
					reply["result"] = result;
					break;
				case Answer::Garbage:
					send_all(fd_, "this is not JSON\n");
					continue;
				}
				send_all(fd_, reply.dump() + "\n");
				if (method == "dataplane.publish") {
					std::lock_guard<std::mutex> l(mu_);
					last_ack_ = Clock::now();
				}
			}
			record(json{{"closed", true}});
			close(fd_);
			fd_ = -1;
			buf_.clear();
			if (!reconnect_ || stopping(0))
				return;
		}
	}

	std::string socket_, name_;
	bool reconnect_;
	int fd_ = -1, stop_[2] = {-1, -1};
	std::string buf_;
	uint64_t generation_ = 0;
	std::thread thread_;
	std::mutex mu_;
	std::condition_variable cv_;
	std::vector<Event> events_;
	std::map<std::string, std::pair<Answer, int>> answer_;
	std::map<std::string, json> results_;
	Clock::time_point last_ack_{};
};

// Polls `f` until it holds or timeout_ms passes.
bool eventually(const std::function<bool()> &f, int timeout_ms = 10000)
{
	auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
	while (!f()) {
		if (Clock::now() >= deadline)
			return false;
		poll(nullptr, 0, 5);
	}
	return true;
}

// linkgatectl's stdout (exit code in *code).
std::string ctl(const std::string &socket, const std::string &args, int *code = nullptr)
{
	std::string cmd = std::string(LINKGATECTL) + " --socket " + socket + " " + args + " 2>&1";
	FILE *p = popen(cmd.c_str(), "r");
	std::string out;
	char b[4096];
	size_t n;
	while (p && (n = fread(b, 1, sizeof b, p)) > 0)
		out.append(b, n);
	int st = p ? pclose(p) : -1;
	if (code)
		*code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

class DpdkChannelTest : public ::testing::Test {
protected:
	void start(std::vector<std::string> extra = {})
	{
		d = std::make_unique<Daemon>(std::move(extra));
		ASSERT_TRUE(d->start()) << d->log();
	}
	json ok(const std::string &method, const json &params = json::object())
	{
		json r = d->rpc(method, params);
		EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
		return r;
	}
	json dataplanes() { return d->rpc("status")["result"]["dataplanes"]; }
	bool registered(const std::string &name)
	{
		for (const auto &x : dataplanes())
			if (x.value("name", "") == name)
				return true;
		return false;
	}

	std::unique_ptr<Daemon> d;
};

TEST_F(DpdkChannelTest, RegisterGetsTheCurrentGenerationAndTheExportedState)
{
	start();
	ok("network.nsg.create", {{"name", "web"}});
	ok("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "ssh"}, {"priority", 100}});
	uint64_t g = d->generation();
	json state = ok("export")["result"];

	FakeDpdk fp(d->socket_path(), "fp0");
	fp.start();
	json p = fp.publish(0);
	ASSERT_FALSE(p.is_null()) << d->log();
	auto ev = fp.events();
	ASSERT_GE(ev.size(), 2u);
	// The register reply first, exactly as documented.
	json timeouts{{"tcpEstablished", 240.0}, {"tcpTransient", 30.0}, {"tcpClose", 10.0}, {"udp", 30.0}, {"icmp", 30.0}};
	EXPECT_EQ(ev[0].msg["registered"],
		  json({{"jsonrpc", "2.0"},
		        {"id", 1},
		        {"result", {{"generation", g}, {"timeouts", timeouts}, {"flowLog", false}}}}));
	EXPECT_EQ(p["jsonrpc"], "2.0");
	EXPECT_TRUE(p["id"].is_number_integer());
	EXPECT_EQ(p["params"]["generation"], g);
	EXPECT_EQ(p["params"]["state"], state);
	EXPECT_EQ(p["params"].size(), 2u);
	ASSERT_TRUE(eventually([&] { return registered("fp0"); })) << dataplanes().dump();
	json dp = dataplanes();
	ASSERT_EQ(dp.size(), 1u);
	EXPECT_EQ(dp[0], json({{"kind", "dpdk"}, {"name", "fp0"}, {"pid", int(getpid())}, {"generation", g}}));
	EXPECT_EQ(d->generation(), g); // registering commits nothing
	EXPECT_NE(d->log().find("dataplane dpdk 'fp0' (pid " + std::to_string(getpid()) + ") registered"),
		  std::string::npos)
		<< d->log();
}

TEST_F(DpdkChannelTest, ACommitWaitsForEveryAck)
{
	start();
	FakeDpdk a(d->socket_path(), "fp-a"), b(d->socket_path(), "fp-b");
	a.start();
	b.start();
	ASSERT_FALSE(a.publish(0).is_null());
	ASSERT_FALSE(b.publish(0).is_null());
	ASSERT_TRUE(eventually([&] { return dataplanes().size() == 2; })) << dataplanes().dump();
	uint64_t g = d->generation();
	b.set("dataplane.publish", Answer::Ack, 400); // b takes its time

	auto t0 = Clock::now();
	json r = ok("network.nsg.create", {{"name", "web"}});
	auto t1 = Clock::now();
	EXPECT_EQ(r["generation"], g + 1);
	// The reply came after b's ack, and both got the new generation with the new state.
	EXPECT_GE(t1 - t0, std::chrono::milliseconds(400));
	EXPECT_LE(b.last_ack(), t1);
	json state = ok("export")["result"];
	for (FakeDpdk *fp : {&a, &b}) {
		json p = fp->publish(1);
		ASSERT_FALSE(p.is_null());
		EXPECT_EQ(p["params"]["generation"], g + 1);
		EXPECT_EQ(p["params"]["state"], state);
	}
	// Ids are not reused on a channel.
	EXPECT_NE(a.publish(0)["id"], a.publish(1)["id"]);
	EXPECT_EQ(dataplanes().size(), 2u);

	// A refused change reaches no dataplane.
	json bad = d->rpc("network.nsg.create", {{"name", "web"}});
	EXPECT_EQ(bad["error"]["code"], -32001);
	EXPECT_EQ(a.count("dataplane.publish"), 2u);
}

TEST_F(DpdkChannelTest, ASilentFastPathIsDroppedAfterTheTimeoutAndTheCommitStands)
{
	start({"--dataplane-timeout", "300"});
	FakeDpdk ok_fp(d->socket_path(), "good"), silent(d->socket_path(), "wedged");
	ok_fp.start();
	silent.start();
	ASSERT_FALSE(silent.publish(0).is_null());
	ASSERT_TRUE(eventually([&] { return dataplanes().size() == 2; })) << dataplanes().dump();
	silent.set("dataplane.publish", Answer::Silent);
	uint64_t g = d->generation();

	auto t0 = Clock::now();
	json r = ok("network.nsg.create", {{"name", "web"}});
	auto took = Clock::now() - t0;
	EXPECT_EQ(r["generation"], g + 1);
	EXPECT_GE(took, std::chrono::milliseconds(300));
	EXPECT_LT(took, std::chrono::milliseconds(3000));
	ASSERT_TRUE(silent.wait_count("closed", 1)) << d->log();
	EXPECT_NE(d->log().find("dataplane dpdk 'wedged' (pid " + std::to_string(getpid()) +
				") dropped: no answer within 300 ms"),
		  std::string::npos)
		<< d->log();
	// The change is in effect and the healthy fast path has it.
	EXPECT_EQ(d->generation(), g + 1);
	EXPECT_EQ(ok("network.nsg.show", {{"name", "web"}})["result"]["name"], "web");
	EXPECT_EQ(ok_fp.publish(1)["params"]["generation"], g + 1);
	json dp = dataplanes();
	ASSERT_EQ(dp.size(), 1u);
	EXPECT_EQ(dp[0]["name"], "good");
	// The next commit does not wait for the dropped one: it is no target
	// (no request, so no second timeout and drop), and the commit stands.
	auto drops = [&] {
		size_t n = 0;
		std::string l = d->log(), what = "'wedged' (pid " + std::to_string(getpid()) + ") dropped";
		for (size_t at = l.find(what); at != std::string::npos; at = l.find(what, at + 1))
			n++;
		return n;
	};
	EXPECT_EQ(ok("network.nsg.create", {{"name", "db"}})["generation"], g + 2);
	EXPECT_EQ(ok_fp.publish(2)["params"]["generation"], g + 2);
	EXPECT_EQ(drops(), 1u) << d->log();
	EXPECT_EQ(dataplanes().size(), 1u);

	// A fast path that never acks its first generation is dropped the same way.
	FakeDpdk mute(d->socket_path(), "mute");
	mute.set("dataplane.publish", Answer::Silent);
	mute.start();
	ASSERT_TRUE(mute.wait_count("closed", 1)) << d->log();
	EXPECT_NE(d->log().find("'mute' (pid " + std::to_string(getpid()) + ") dropped: no answer within 300 ms"),
		  std::string::npos);
}

TEST_F(DpdkChannelTest, AnErrorReplyDropsTheChannelAndTheCommitStands)
{
	start();
	FakeDpdk fp(d->socket_path(), "refuser");
	fp.start();
	ASSERT_FALSE(fp.publish(0).is_null());
	ASSERT_TRUE(eventually([&] { return registered("refuser"); }));
	fp.set("dataplane.publish", Answer::Error);
	uint64_t g = d->generation();
	json r = ok("network.nsg.create", {{"name", "web"}});
	EXPECT_EQ(r["generation"], g + 1);
	ASSERT_TRUE(fp.wait_count("closed", 1));
	EXPECT_NE(d->log().find("'refuser' (pid " + std::to_string(getpid()) + ") dropped: refused generation " +
				std::to_string(g + 1) + ": cannot apply this generation (-32000)"),
		  std::string::npos)
		<< d->log();
	EXPECT_TRUE(dataplanes().empty());
}

// A dataplane.flowLog reply whose record is not hex (right length, bad
// digits) is malformed: the channel is dropped before any of it is used,
// nothing is written to the flow log, and the agent goes on.
TEST_F(DpdkChannelTest, AMalformedFlowLogReplyDropsTheChannelAndWritesNothing)
{
	std::string path = "/tmp/lgtest-chflowlog-" + std::to_string(getpid()) + ".jsonl";
	std::filesystem::remove(path);
	struct Remove {
		std::string p;
		~Remove() { std::filesystem::remove(p); }
	} remove_at_end{path};
	start({"--flow-log", path, "--flow-log-interval", "1"});
	FakeDpdk fp(d->socket_path(), "badlog");
	std::string record(2 * (sizeof(lg_flow_key) + sizeof(lg_flowlog_entry)), '0');
	record[7] = 'g';
	fp.set_result("dataplane.flowLog",
		      json{{"events", {record}}, {"flows", json::array()}, {"complete", true}, {"now", 1}, {"lost", 0}});
	fp.start();
	ASSERT_TRUE(fp.wait_count("closed", 1)) << d->log();
	EXPECT_NE(d->log().find("'badlog' (pid " + std::to_string(getpid()) +
				") dropped: malformed reply to dataplane.flowLog"),
		  std::string::npos)
		<< d->log();
	EXPECT_FALSE(std::filesystem::exists(path));
	ok("status");
}

TEST_F(DpdkChannelTest, CountersAndFlowsOfTheChannelAppearInStatsAndFlows)
{
	start();
	ok("network.nsg.create", {{"name", "web"}});
	ok("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "ssh"}, {"priority", 100}});
	FakeDpdk a(d->socket_path(), "fp-a"), b(d->socket_path(), "fp-b");
	a.set_result("dataplane.counters",
		     json{{"reasons", {{"none", 5}, {"nsg-deny", 3}, {"some-future-reason", 9}}},
			  {"rules", {{"web/ssh", 7}, {"web/DenyAllInBound", 1}}},
			  {"private_endpoints", json::object()},
			  {"servers", json::object()},
			  {"ports", {{"rx", 20}, {"tx", 3}, {"txFailed", 2}}}});
	b.set_result("dataplane.counters",
		     json{{"reasons", {{"none", 10}, {"nsg-deny", 1}, {"pec-rejected", 2}}}, {"rules", {{"web/ssh", 4}}}});
	json flow{{"original", "0 6 10.0.0.4:40000 > 10.0.0.5:22"},
		  {"reply", "0 6 10.0.0.5:22 > 10.0.0.4:40000"},
		  {"state", "established"},
		  {"kind", "routed"},
		  {"object", nullptr},
		  {"backend", nullptr},
		  {"generation", 3},
		  {"expiresNs", 123456789}};
	json flow2 = flow;
	flow2["original"] = "0 6 10.0.0.4:40001 > 10.0.0.5:22";
	flow2["reply"] = "0 6 10.0.0.5:22 > 10.0.0.4:40001";
	a.set_result("dataplane.flows", json{{"flows", {flow, flow2}}});
	a.start();
	b.start();
	ASSERT_TRUE(eventually([&] { return dataplanes().size() == 2; })) << dataplanes().dump();

	json s = ok("stats")["result"];
	EXPECT_EQ(s["forwarded"], 15); // no XDP here: the channels' totals alone
	EXPECT_EQ(s["drops"]["nsg-deny"], 4);
	EXPECT_EQ(s["drops"]["pec-rejected"], 2);
	EXPECT_EQ(s["nsgRules"]["web/ssh"], 11);
	EXPECT_EQ(s["nsgRules"]["web/DenyAllInBound"], 1);
	// Forwarded by the policy, then not sent by a port: shown beside it.
	EXPECT_EQ(s["dataplanes"]["dpdk:fp-a"],
		  json({{"generation", d->generation()}, {"forwarded", 5}, {"dropped", 3}, {"txFailed", 2}}));
	EXPECT_EQ(s["dataplanes"]["dpdk:fp-b"], json({{"generation", d->generation()}, {"forwarded", 10}, {"dropped", 3}}));

	json f = ok("flows")["result"];
	ASSERT_EQ(f.size(), 2u);
	json tagged = flow;
	tagged["dataplane"] = "dpdk:fp-a";
	EXPECT_EQ(f[0], tagged);
	// At most `top` flows; a `top` out of range is a typed error.
	f = ok("flows", {{"top", 1}})["result"];
	ASSERT_EQ(f.size(), 1u);
	EXPECT_EQ(f[0], tagged);
	for (json bad : {json(0), json(-1), json("1"), json(10000001)})
		EXPECT_EQ(d->rpc("flows", {{"top", bad}})["error"]["code"], -32602) << bad.dump(); // invalid params

	// Through linkgatectl.
	int code = -1;
	json cs = json::parse(ctl(d->socket_path(), "stats", &code));
	EXPECT_EQ(code, 0);
	EXPECT_EQ(cs["forwarded"], 15);
	EXPECT_EQ(cs["nsgRules"]["web/ssh"], 11);
	std::string t = ctl(d->socket_path(), "flows -o table", &code);
	EXPECT_EQ(code, 0);
	EXPECT_EQ(t.rfind("Original", 0), 0u) << t;
	EXPECT_NE(t.find("Dataplane"), std::string::npos) << t;
	EXPECT_NE(t.find("dpdk:fp-a"), std::string::npos) << t;
	EXPECT_EQ(t.find("--top for more"), std::string::npos) << "2 flows of the default 1000: complete\n" << t;
	t = ctl(d->socket_path(), "flows --top 1 -o table", &code);
	EXPECT_EQ(code, 0);
	EXPECT_NE(t.find("10.0.0.4:40000"), std::string::npos) << t;
	EXPECT_EQ(t.find("10.0.0.4:40001"), std::string::npos) << t;
	EXPECT_NE(t.find("linkgatectl: the first 1 flows; --top for more, stats for the count"), std::string::npos) << t;
	t = ctl(d->socket_path(), "flows --top 2 -o table", &code);
	EXPECT_EQ(code, 0);
	EXPECT_NE(t.find("10.0.0.4:40001"), std::string::npos) << t;
	EXPECT_EQ(t.find("--top for more"), std::string::npos) << "exactly 2 flows of 2: complete\n" << t;
	ctl(d->socket_path(), "flows --top 0", &code);
	EXPECT_EQ(code, 2) << "a usage error";

	// A fast path that refuses a query keeps its channel; its part is left out.
	b.set("dataplane.counters", Answer::Error);
	s = ok("stats")["result"];
	EXPECT_EQ(s["forwarded"], 5);
	EXPECT_FALSE(s["dataplanes"].contains("dpdk:fp-b"));
	EXPECT_EQ(dataplanes().size(), 2u);
}

// A fast path's counters name every rule of the live state: a state of
// tens of thousands of rules makes a reply past a client's 1 MiB, which
// the agent takes (it dropped the channel at every stats before).
TEST_F(DpdkChannelTest, CountersOfALargeStateFitTheChannel)
{
	start();
	FakeDpdk a(d->socket_path(), "fp-big");
	json rules = json::object();
	for (int i = 0; i < 40000; i++)
		rules["a-network-security-group-of-some-length/rule-number-" + std::to_string(i)] = i;
	json counters{{"reasons", {{"none", 5}}}, {"rules", rules}, {"private_endpoints", json::object()},
		      {"servers", json::object()}};
	ASSERT_GT(counters.dump().size(), size_t(2) << 20);
	a.set_result("dataplane.counters", counters);
	a.start();
	ASSERT_TRUE(eventually([&] { return registered("fp-big"); })) << dataplanes().dump();
	json s = ok("stats")["result"];
	EXPECT_EQ(s["forwarded"], 5) << d->log();
	EXPECT_EQ(s["dataplanes"]["dpdk:fp-big"]["forwarded"], 5) << d->log();
	EXPECT_TRUE(registered("fp-big")) << d->log();
}

TEST_F(DpdkChannelTest, GarbageOrAWrongIdDropsTheChannel)
{
	start();
	FakeDpdk g1(d->socket_path(), "garbage"), g2(d->socket_path(), "wrong-id");
	g1.set_result("dataplane.counters", json{{"reasons", {{"none", 100}}}});
	g2.set_result("dataplane.counters", json{{"reasons", {{"none", 1000}}}});
	g1.start();
	g2.start();
	ASSERT_TRUE(eventually([&] { return dataplanes().size() == 2; })) << dataplanes().dump();
	g1.set("dataplane.counters", Answer::Garbage);
	g2.set("dataplane.counters", Answer::WrongId);
	json s = ok("stats")["result"];
	EXPECT_EQ(s["forwarded"], 0);
	ASSERT_TRUE(g1.wait_count("closed", 1));
	ASSERT_TRUE(g2.wait_count("closed", 1));
	EXPECT_NE(d->log().find("'garbage' (pid " + std::to_string(getpid()) + ") dropped: malformed reply: not JSON"),
		  std::string::npos)
		<< d->log();
	EXPECT_NE(d->log().find("'wrong-id' (pid " + std::to_string(getpid()) +
				") dropped: malformed reply: not the reply to request"),
		  std::string::npos)
		<< d->log();
	EXPECT_TRUE(dataplanes().empty());

	// A message outside a request of the agent's is a protocol error too.
	// (The agent waits for the first ack before it serves anyone else, so
	// nothing is asked of it until then.)
	uint64_t g = d->generation();
	int fd = connect_unix(d->socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, R"({"jsonrpc":"2.0","id":1,"method":"dataplane.register","params":{"kind":"dpdk","name":"chatty","pid":1}})"
		     "\n");
	json reg = json::parse(read_line(fd));
	EXPECT_EQ(reg["result"]["generation"], g);
	json p = json::parse(read_line(fd));
	ASSERT_EQ(p["method"], "dataplane.publish");
	send_all(fd, json{{"jsonrpc", "2.0"}, {"id", p["id"]}, {"result", {{"generation", g}}}}.dump() + "\n");
	ASSERT_TRUE(eventually([&] { return registered("chatty"); }));
	send_all(fd, R"({"jsonrpc":"2.0","id":2,"method":"status"})"
		     "\n");
	EXPECT_TRUE(closed_by_peer(fd));
	close(fd);
	EXPECT_NE(d->log().find("'chatty' (pid 1) dropped: sent a message that is not the reply to a request"),
		  std::string::npos)
		<< d->log();
	EXPECT_TRUE(dataplanes().empty());
}

// The register reply on a connection of its own; retried while the agent
// is at its client cap (it has not seen an earlier client's close yet).
json register_raw(const std::string &socket, const json &params)
{
	auto deadline = Clock::now() + std::chrono::seconds(10);
	for (;;) {
		int fd = connect_unix(socket);
		json req{{"jsonrpc", "2.0"}, {"id", 4}, {"method", "dataplane.register"}, {"params", params}};
		send_all(fd, req.dump() + "\n");
		std::string line = read_line(fd);
		close(fd);
		json r = line.empty() ? json(nullptr) : json::parse(line);
		if (!r.contains("error") || r["error"]["message"].get<std::string>().find("too many connections") == std::string::npos ||
		    Clock::now() >= deadline)
			return r;
		poll(nullptr, 0, 5);
	}
}

TEST_F(DpdkChannelTest, RegisterErrors)
{
	start();
	auto reg = [&](const json &params) { return register_raw(d->socket_path(), params); };
	EXPECT_EQ(reg({{"kind", "xdp"}, {"name", "x"}, {"pid", 1}})["error"]["data"]["param"], "kind");
	EXPECT_EQ(reg({{"kind", "dpdk"}, {"name", "a b"}, {"pid", 1}})["error"]["data"]["param"], "name");
	EXPECT_EQ(reg({{"kind", "dpdk"}, {"name", std::string(65, 'x')}, {"pid", 1}})["error"]["data"]["param"], "name");
	EXPECT_EQ(reg({{"kind", "dpdk"}, {"name", "x"}})["error"]["data"]["param"], "pid");
	EXPECT_EQ(reg({{"kind", "dpdk"}, {"name", "x"}, {"pid", 1}, {"extra", 1}})["error"]["code"], -32602);
	for (json bad : {json(-1), json("7"), json(1.5), json(nullptr)})
		EXPECT_EQ(reg({{"kind", "dpdk"}, {"name", "x"}, {"pid", 1}, {"generation", bad}})["error"]["data"]["param"],
			  "generation")
			<< bad;
	// A notification cannot register (there is no id to answer).
	int fd = connect_unix(d->socket_path());
	send_all(fd, R"({"jsonrpc":"2.0","method":"dataplane.register","params":{"kind":"dpdk","name":"n","pid":1}})"
		     "\n");
	EXPECT_EQ(json::parse(read_line(fd))["error"]["code"], -32600);
	close(fd);
	// Nor can an id that would not come back as sent.
	fd = connect_unix(d->socket_path());
	send_all(fd, R"({"jsonrpc":"2.0","id":18446744073709551616,"method":"dataplane.register","params":{"kind":"dpdk","name":"n","pid":1}})"
		     "\n");
	json big = json::parse(read_line(fd));
	EXPECT_EQ(big["error"]["code"], -32600);
	EXPECT_TRUE(big["id"].is_null());
	close(fd);
	// Parsed as every request is: a key given twice is a parse error.
	fd = connect_unix(d->socket_path());
	send_all(fd, R"({"jsonrpc":"2.0","id":1,"method":"dataplane.register","params":{"kind":"dpdk","name":"a","name":"b","pid":1}})"
		     "\n");
	EXPECT_EQ(json::parse(read_line(fd))["error"]["code"], -32700);
	close(fd);
	// The agent's own methods are not methods a client may call.
	EXPECT_EQ(d->rpc("dataplane.publish", {{"generation", 1}})["error"]["code"], -32601);
	EXPECT_EQ(d->rpc("dataplane.counters")["error"]["code"], -32601);
	EXPECT_TRUE(dataplanes().empty());
}

// Blank lines between a fast path's messages mean nothing: they are not
// kept, and a commit's exchange is not slowed by them (each used to cost a
// move of all the input after it: 4 MiB of them held the agent for hours).
TEST_F(DpdkChannelTest, BlankLinesFromAFastPathAreNothing)
{
	// The exchange's deadline: blank lines that cost the agent longer than
	// this are a channel dropped "no answer within 5000 ms".
	start({"--dataplane-timeout", "5000"});
	uint64_t g = d->generation();
	int fd = connect_unix(d->socket_path());
	ASSERT_GE(fd, 0);
	send_all(fd, R"({"jsonrpc":"2.0","id":1,"method":"dataplane.register","params":{"kind":"dpdk","name":"blank","pid":1}})"
		     "\n");
	ASSERT_EQ(json::parse(read_line(fd))["result"]["generation"], g);
	json p = json::parse(read_line(fd));
	ASSERT_EQ(p["method"], "dataplane.publish");
	send_all(fd, json{{"jsonrpc", "2.0"}, {"id", p["id"]}, {"result", {{"generation", g}}}}.dump() + "\n");
	ASSERT_TRUE(eventually([&] { return registered("blank"); }));
	// Read between requests: all of it, before the commit.
	std::string blank(4u << 20, '\n');
	for (size_t i = 0; i < blank.size(); i += 64)
		blank[i] = ' ';
	send_all(fd, blank);
	ASSERT_TRUE(peer_read_all(fd)) << "the agent did not read the blank lines";
	// And inside the commit's exchange, before the ack.
	std::string acker_got; // what the acker read, when it was no publish
	std::thread acker([&] {
		// No throw on this thread: it would terminate the binary.
		std::string line = read_line(fd, 60000);
		json q = json::parse(line, nullptr, false);
		if (!q.is_object() || !q.contains("id") || !q.contains("method") || q["method"] != "dataplane.publish" ||
		    !q.contains("params") || !q["params"].is_object()) {
			acker_got = "'" + line + "'";
			return;
		}
		send_all(fd, blank.substr(0, 1u << 20) + json{{"jsonrpc", "2.0"}, {"id", q["id"]},
								      {"result", {{"generation", q["params"]["generation"]}}}}
								    .dump() +
				     "\r\n");
	});
	json r = d->rpc("network.nsg.create", {{"name", "after-blanks"}});
	acker.join();
	ASSERT_EQ(acker_got, "") << "the acker read no publish";
	EXPECT_TRUE(r.contains("result")) << r.dump() << d->log();
	// Acked within the exchange's deadline: the channel stays.
	EXPECT_EQ(d->log().find("'blank' (pid 1) dropped"), std::string::npos) << d->log();
	EXPECT_TRUE(registered("blank")) << d->log();
	close(fd);
}

TEST_F(DpdkChannelTest, ChannelsHaveTheirOwnCapAndNoIdleTimeout)
{
	start({"--max-dataplanes", "1", "--max-connections", "1", "--idle-timeout", "1"});
	FakeDpdk fp(d->socket_path(), "only", /*reconnect=*/true); // retries past the client cap at start-up
	fp.start();
	ASSERT_TRUE(fp.wait_count("dataplane.publish", 1)) << d->log();
	// Its own cap: a second fast path is refused and closed.
	json r = register_raw(d->socket_path(), {{"kind", "dpdk"}, {"name", "second"}, {"pid", 2}});
	EXPECT_EQ(r["error"]["code"], -32012) << r.dump();
	EXPECT_EQ(r["error"]["message"], "too many dataplanes: the limit is 1");
	// The channel does not count against the client cap (1): a client is
	// served. It outlives the idle timeout (1 s) that closes that client, and
	// the next commit still goes to it.
	auto before = fp.count("dataplane.publish");
	int idle = served_connection(d->socket_path());
	ASSERT_GE(idle, 0);
	json timeout = json::parse(read_line(idle, 5000));
	EXPECT_EQ(timeout["error"]["code"], -32013);
	close(idle);
	// One client at a time: retried while the agent has not seen the last close.
	auto rpc = [&](const std::string &m, const json &p) {
		for (auto deadline = Clock::now() + std::chrono::seconds(10);; poll(nullptr, 0, 5)) {
			json r = d->rpc(m, p);
			if (!r.contains("error") || r["error"]["code"] != -32012 || Clock::now() >= deadline)
				return r;
		}
	};
	uint64_t g = rpc("status", json::object())["result"]["generation"].get<uint64_t>();
	EXPECT_TRUE(rpc("network.nsg.create", {{"name", "web"}}).contains("result"));
	EXPECT_EQ(fp.count("dataplane.publish"), before + 1);
	EXPECT_EQ(fp.count("closed"), 0u);
	EXPECT_EQ(fp.publish(before)["params"]["generation"], g + 1);
}

TEST_F(DpdkChannelTest, DuplicateNamesAreRefused)
{
	start();
	FakeDpdk fp(d->socket_path(), "twin");
	fp.start();
	ASSERT_TRUE(eventually([&] { return registered("twin"); }));
	int fd = connect_unix(d->socket_path());
	send_all(fd, R"({"jsonrpc":"2.0","id":"r","method":"dataplane.register","params":{"kind":"dpdk","name":"twin","pid":2}})"
		     "\n");
	json r = json::parse(read_line(fd));
	EXPECT_EQ(r["id"], "r");
	EXPECT_EQ(r["error"]["code"], -32602);
	EXPECT_EQ(r["error"]["data"]["param"], "name");
	// The connection stays an ordinary client.
	send_all(fd, R"({"jsonrpc":"2.0","id":2,"method":"status"})"
		     "\n");
	EXPECT_EQ(json::parse(read_line(fd))["result"]["dataplanes"].size(), 1u);
	close(fd);
}

// An agent that starts on an empty state (its state file missing: a first
// start, or a mistyped --state) does not hand it to a fast path that runs a
// generation this state file never had: that registration is refused
// (-32014, connection closed) and the fast path keeps its policy. A fast
// path that runs nothing yet, or one of this state file's generations,
// registers; after a commit every one does.
TEST_F(DpdkChannelTest, AnEmptyStartDoesNotEmptyAFastPathThatRunsAnotherState)
{
	start(); // no state file: empty, and no live marker before it
	auto reg = [&](const std::string &name, uint64_t gen) {
		return register_raw(d->socket_path(), {{"kind", "dpdk"}, {"name", name}, {"pid", 1}, {"generation", gen}});
	};
	int fd = connect_unix(d->socket_path());
	send_all(fd, R"({"jsonrpc":"2.0","id":"r","method":"dataplane.register","params":{"kind":"dpdk","name":"fp0","pid":1,"generation":57}})"
		     "\n");
	json r = json::parse(read_line(fd));
	EXPECT_EQ(r["id"], "r");
	EXPECT_EQ(r["error"]["code"], -32014) << r.dump();
	std::string msg = r["error"].value("message", "");
	EXPECT_NE(msg.find("generation 57"), std::string::npos) << msg;
	EXPECT_NE(msg.find(d->state_path()), std::string::npos) << msg;
	// Closed: the fast path keeps enforcing what it has and tries again later.
	pollfd pf{fd, POLLIN, 0};
	ASSERT_EQ(poll(&pf, 1, 10000), 1);
	char b;
	EXPECT_EQ(read(fd, &b, 1), 0);
	close(fd);
	EXPECT_TRUE(dataplanes().empty());
	EXPECT_EQ(reg("fp0", 57)["error"]["code"], -32014);
	// Logged once per fast path, not at every retry.
	std::string log = d->log(), line = "dataplane dpdk 'fp0' (pid 1) refused";
	ASSERT_NE(log.find(line), std::string::npos) << log;
	EXPECT_EQ(log.find(line, log.find(line) + 1), std::string::npos) << log;

	// Running nothing yet (or not saying, an older fast path): registers.
	EXPECT_TRUE(reg("fresh", 0).contains("result"));
	EXPECT_TRUE(register_raw(d->socket_path(), {{"kind", "dpdk"}, {"name", "old"}, {"pid", 1}}).contains("result"));

	// Restarted on the same path: the file written empty at the first start
	// and its marker (generation 1) are there now. Still empty, so 57 is
	// still refused; generation 1, this state file's, registers.
	ASSERT_EQ(d->stop(), 0);
	ASSERT_TRUE(d->start()) << d->log();
	uint64_t g = d->generation();
	ASSERT_EQ(g, 2u);
	EXPECT_EQ(reg("fp0", 57)["error"]["code"], -32014);
	EXPECT_TRUE(reg("fp1", 1).contains("result"));
	// This agent's own number: from a fast path that took it here (its
	// channel dropped, it registers again), but not from another that only
	// has the same number from another state file.
	EXPECT_EQ(reg("fp2", g)["error"]["code"], -32014);
	EXPECT_TRUE(reg("fp3", 0).contains("result"));
	ASSERT_TRUE(eventually([&] { return !registered("fp3"); })) << dataplanes().dump();
	EXPECT_TRUE(reg("fp3", g).contains("result"));

	// A commit that fails (the state file refused) changes nothing: still refused.
	{
		setenv("LINKGATED_TEST_FAIL", "state-write", 1);
		Daemon failing;
		bool started = failing.start();
		unsetenv("LINKGATED_TEST_FAIL");
		ASSERT_TRUE(started) << failing.log();
		EXPECT_EQ(failing.rpc("network.nsg.create", {{"name", "web"}})["error"]["code"], -32003);
		EXPECT_EQ(register_raw(failing.socket_path(),
				       {{"kind", "dpdk"}, {"name", "fp0"}, {"pid", 1}, {"generation", 57}})["error"]["code"],
			  -32014);
	}

	// A commit makes the state the operator's: the same fast path registers.
	ok("network.nsg.create", {{"name", "web"}});
	json a = reg("fp0", 57);
	EXPECT_EQ(a["result"]["generation"], g + 1) << a.dump();
}

TEST_F(DpdkChannelTest, AfterAnAgentRestartTheFastPathRegistersAgain)
{
	start();
	ok("network.nsg.create", {{"name", "web"}});
	FakeDpdk fp(d->socket_path(), "fp0", /*reconnect=*/true);
	fp.start();
	ASSERT_FALSE(fp.publish(0).is_null());
	ASSERT_EQ(d->stop(), 0);
	ASSERT_TRUE(fp.wait_count("closed", 1));
	ASSERT_TRUE(d->start()) << d->log();
	// Registered again, and given the current generation and state.
	json p = fp.publish(1, 20000);
	ASSERT_FALSE(p.is_null()) << d->log();
	EXPECT_EQ(p["params"]["generation"], d->generation());
	EXPECT_EQ(p["params"]["state"], ok("export")["result"]);
	EXPECT_EQ(fp.count("registered"), 2u);
	ASSERT_TRUE(eventually([&] { return registered("fp0"); }));

	// kill -9 too: the channel ends with the agent, and the next agent gets it back.
	d->kill9();
	ASSERT_TRUE(fp.wait_count("closed", 2));
	ASSERT_TRUE(d->start()) << d->log();
	ASSERT_FALSE(fp.publish(2, 20000).is_null()) << d->log();
	uint64_t g = d->generation();
	ok("network.nsg.create", {{"name", "db"}});
	EXPECT_EQ(fp.publish(3)["params"]["generation"], g + 1);
}

} // namespace
