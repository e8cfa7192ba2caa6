// linkgate-bench all, section "update": how long a change takes to be
// enforced through linkgated's control socket (JSON-RPC; the reply of a
// change is sent once its generation is live in the XDP dataplane,
// docs/agent.md), beside `nft -f` loading the same rules, and the share of
// linkgatectl's process start in a CLI call.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "arm_json.hpp"
#include "bench_common.hpp"
#include "bench_host.hpp"
#include "bench_registry.hpp"
#include "bench_rules.hpp"

#ifndef LG_LINKGATED
#define LG_LINKGATED "linkgated"
#endif
#ifndef LG_LINKGATECTL
#define LG_LINKGATECTL "linkgatectl"
#endif

namespace lg::bench {
namespace {

struct Opts {
	std::string agent_dir; // where linkgated and linkgatectl are ("" = build dir)
	int changes = 60;      // measured changes per kind
	int gap_ms = 20;       // pause before each measured change
} g_opts;

double now_ms()
{
	return double(std::chrono::duration_cast<std::chrono::nanoseconds>(
			      std::chrono::steady_clock::now().time_since_epoch())
			      .count()) /
	       1e6;
}

struct Pcts {
	static nlohmann::json of(std::vector<double> v)
	{
		if (v.empty())
			return nullptr;
		std::sort(v.begin(), v.end());
		auto q = [&](double p) { return v[std::min(v.size() - 1, size_t(std::ceil(p * double(v.size())) - 1))]; };
		return {{"n", v.size()}, {"p50", q(0.5)}, {"p90", q(0.9)}, {"p99", q(0.99)}, {"max", v.back()},
			{"min", v.front()}, {"samples_ms", v}};
	}
};

class Client {
public:
	~Client()
	{
		if (fd_ >= 0)
			close(fd_);
	}
	Status connect_to(const std::string &path, double timeout_s)
	{
		double t0 = now_ms();
		for (;;) {
			fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			sockaddr_un a{};
			a.sun_family = AF_UNIX;
			std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
			if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0)
				return Ok{};
			close(fd_);
			fd_ = -1;
			if (now_ms() - t0 > timeout_s * 1000)
				return err("linkgated does not answer on " + path);
			usleep(20000);
		}
	}
	// One request, its reply; errors of the agent are errors.
	Result<nlohmann::json> call(const std::string &method, const nlohmann::json &params)
	{
		nlohmann::json req = {{"jsonrpc", "2.0"}, {"id", ++id_}, {"method", method}, {"params", params}};
		std::string line = req.dump() + "\n";
		for (size_t off = 0; off < line.size();) {
			ssize_t n = write(fd_, line.data() + off, line.size() - off);
			if (n <= 0)
				return err("write to linkgated: " + std::string(std::strerror(errno)));
			off += size_t(n);
		}
		for (;;) {
			auto nl = buf_.find('\n');
			if (nl != std::string::npos) {
				auto j = nlohmann::json::parse(buf_.substr(0, nl));
				buf_.erase(0, nl + 1);
				if (j.contains("error"))
					return err(method + ": " + j["error"].dump());
				return j;
			}
			char b[65536];
			ssize_t n = read(fd_, b, sizeof b);
			if (n <= 0)
				return err("linkgated closed the connection");
			buf_.append(b, size_t(n));
		}
	}

private:
	int fd_ = -1;
	int id_ = 0;
	std::string buf_;
};

// fork + exec; returns the wall time to its exit in ms (-1: failed).
double run_timed(const std::vector<std::string> &args, bool *ok)
{
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(const_cast<char *>(a.c_str()));
	argv.push_back(nullptr);
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		dup2(dn, 1);
		dup2(dn, 2);
		execv(argv[0], argv.data());
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	double t = now_ms() - t0;
	*ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	return t;
}

std::string which(const std::string &name)
{
	for (auto *d : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"})
		if (std::filesystem::exists(std::string(d) + name))
			return std::string(d) + name;
	return name;
}

Result<nlohmann::json> run_update(const RunContext &ctx)
{
	auto &P = ctx.progress;
	std::string daemon = g_opts.agent_dir.empty() ? LG_LINKGATED : g_opts.agent_dir + "/linkgated";
	std::string cli = g_opts.agent_dir.empty() ? LG_LINKGATECTL : g_opts.agent_dir + "/linkgatectl";
	if (!std::filesystem::exists(daemon) || !std::filesystem::exists(cli))
		return err("linkgated / linkgatectl not built (" + daemon + ", " + cli + "): ninja -C BUILD control/agent/linkgated control/agent/linkgatectl");
	int n = ctx.quick ? 4 : g_opts.changes;
	int nr = ctx.quick ? 2 : std::max(5, n / 4); // full recompiles and nft loads
	int rules = ctx.quick ? 100 : 1000;

	TrafficBox box;
	box.src_lo = 0x0a008000;
	box.src_hi = 0x0a00ffff;
	box.dsts = {0xc0a8000a, 0xc0a8000b};
	auto rs = load_classbench(ctx.classbench, rules, box);
	if (!rs)
		return err(rs.error());
	auto pol = classbench_policy(rs->rules, 1000, ctx.seed);
	auto host = realize(pol.host);
	if (!host)
		return err(host.error());
	char n0[32] = {}, n1[32] = {};
	snprintf(n0, sizeof n0, "lgb0");
	snprintf(n1, sizeof n1, "lgb1");
	std::string dir = ctx.workdir + "/agent";
	std::filesystem::create_directories(dir);
	std::string state = dir + "/state.json", sock = dir + "/linkgated.sock", log = dir + "/linkgated.log";
	if (auto st = save_state_file(state, pol.state); !st)
		return err(st.error());

	P("starting linkgated (" + std::to_string(rules) + " rules)");
	pid_t agent = fork();
	if (agent == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(daemon.c_str(), daemon.c_str(), "--state", state.c_str(), "--socket", sock.c_str(), "--xdp-interface",
		      (std::string(n0) + "=scale").c_str(), "--xdp-interface", (std::string(n1) + "=").c_str(), "--pin-dir",
		      "/sys/fs/bpf/lgbench", "--flow-capacity", "65536", (char *)nullptr);
		_exit(127);
	}
	struct Stop {
		pid_t p;
		~Stop()
		{
			kill(p, SIGTERM);
			waitpid(p, nullptr, 0);
		}
	} stop{agent};
	Client c;
	if (auto st = c.connect_to(sock, 60); !st) {
		std::ifstream f(log);
		std::string l((std::istreambuf_iterator<char>(f)), {});
		return err(st.error() + ": " + l);
	}
	auto status = c.call("status", nlohmann::json::object());
	if (!status)
		return err(status.error());

	nlohmann::json out;
	auto gap = [&] { std::this_thread::sleep_for(std::chrono::milliseconds(g_opts.gap_ms)); };
	std::vector<double> t_status, t_pec, t_nsg, t_apply, t_nft, t_nft_set, t_cli_status, t_cli_pec;
	nlohmann::json pec = {{"serverName", "db"}, {"name", "pe"}};
	// Each rule update flips cb5's access: one that left it as it was
	// would change nothing and make no generation.
	auto cb5 = c.call("network.nsg.rule.show", {{"nsgName", "big"}, {"name", "cb5"}});
	if (!cb5)
		return err(cb5.error());
	bool cb5_allow = (*cb5)["result"].value("access", "") == "Allow";
	for (int i = 0; i < n; i++) {
		P("socket round trips, PEC approve, NSG rule change: " + std::to_string(i + 1) + "/" + std::to_string(n));
		double t0 = now_ms();
		if (auto r = c.call("status", nlohmann::json::object()); !r)
			return err(r.error());
		t_status.push_back(now_ms() - t0);
		if (auto r = c.call("mysql.server.private-endpoint-connection.reject", pec); !r)
			return err(r.error());
		gap();
		t0 = now_ms();
		if (auto r = c.call("mysql.server.private-endpoint-connection.approve", pec); !r)
			return err(r.error());
		t_pec.push_back(now_ms() - t0);
		gap();
		t0 = now_ms();
		nlohmann::json upd = {{"nsgName", "big"}, {"name", "cb5"}, {"access", (i % 2 == 0) == cb5_allow ? "Deny" : "Allow"}};
		if (auto r = c.call("network.nsg.rule.update", upd); !r)
			return err(r.error());
		t_nsg.push_back(now_ms() - t0);
		gap();
	}
	auto exported = c.call("export", nlohmann::json::object());
	if (!exported)
		return err(exported.error());
	nlohmann::json st_a = (*exported)["result"], st_b = st_a;
	// The second state differs by one rule's access: every apply changes something.
	for (auto &nsg : st_b["networkSecurityGroups"])
		if (nsg["name"] == "big")
			for (auto &r : nsg["properties"]["securityRules"])
				if (r["name"] == "cb7")
					r["properties"]["access"] = r["properties"]["access"] == "Allow" ? "Deny" : "Allow";
	std::string nft_file = dir + "/rules.nft", nft_set_file = dir + "/rules-set.nft";
	{
		std::ofstream f(nft_file);
		f << "table inet lgbench\ndelete table inet lgbench\n" << nft_linear(rs->rules, "lgbench");
		int kept = 0;
		std::ofstream g(nft_set_file);
		g << "table inet lgbench\ndelete table inet lgbench\n" << nft_set(rs->rules, "lgbench", &kept);
	}
	std::string nft = which("nft");
	for (int i = 0; i < nr; i++) {
		P("full recompile (apply) and nft -f: " + std::to_string(i + 1) + "/" + std::to_string(nr));
		double t0 = now_ms();
		if (auto r = c.call("apply", {{"state", i % 2 ? st_a : st_b}}); !r)
			return err(r.error());
		t_apply.push_back(now_ms() - t0);
		gap();
		bool ok = false;
		t_nft.push_back(run_timed({nft, "-f", nft_file}, &ok));
		if (!ok)
			return err("nft -f " + nft_file + " failed");
		t_nft_set.push_back(run_timed({nft, "-f", nft_set_file}, &ok));
		if (!ok)
			return err("nft -f " + nft_set_file + " failed");
		gap();
	}
	(void)sh("nft delete table inet lgbench");
	for (int i = 0; i < nr; i++) {
		P("linkgatectl: " + std::to_string(i + 1) + "/" + std::to_string(nr));
		bool ok = false;
		t_cli_status.push_back(run_timed({cli, "--socket", sock, "network", "nsg", "show", "-n", "big"}, &ok));
		if (!ok)
			return err("linkgatectl network nsg show failed");
		if (auto r = c.call("mysql.server.private-endpoint-connection.reject", pec); !r)
			return err(r.error());
		gap();
		t_cli_pec.push_back(run_timed({cli, "--socket", sock, "mysql", "server", "private-endpoint-connection",
					      "approve", "-s", "db", "-n", "pe"},
					     &ok));
		if (!ok)
			return err("linkgatectl ... private-endpoint-connection approve failed");
		gap();
	}
	// The same read over the socket, for the CLI's own share.
	std::vector<double> t_show;
	for (int i = 0; i < nr; i++) {
		double t0 = now_ms();
		if (auto r = c.call("network.nsg.show", {{"name", "big"}}); !r)
			return err(r.error());
		t_show.push_back(now_ms() - t0);
	}

	auto med = [](std::vector<double> v) { return Spread::of(std::move(v)).median; };
	out["agent"] = daemon;
	out["rules"] = rules;
	out["gap_ms"] = g_opts.gap_ms;
	out["latency_ms"] = {{"socket_status", Pcts::of(t_status)},
			     {"pec_approve", Pcts::of(t_pec)},
			     {"nsg_rule_change", Pcts::of(t_nsg)},
			     {"full_recompile_apply", Pcts::of(t_apply)},
			     {"nft_f_linear", Pcts::of(t_nft)},
			     {"nft_f_set", Pcts::of(t_nft_set)},
			     {"cli_nsg_show", Pcts::of(t_cli_status)},
			     {"socket_nsg_show", Pcts::of(t_show)},
			     {"cli_pec_approve", Pcts::of(t_cli_pec)}};
	double nftm = med(t_nft);
	double cli_start = med(t_cli_status) - med(t_show);
	out["ratios"] = nlohmann::json::array(
		{{{"name", "PEC approve / nft -f"}, {"median", med(t_pec) / nftm}},
		 {{"name", "NSG rule change / nft -f"}, {"median", med(t_nsg) / nftm}},
		 {{"name", "full recompile (apply) / nft -f"}, {"median", med(t_apply) / nftm}},
		 {{"name", "nft -f set / nft -f linear"}, {"median", med(t_nft_set) / nftm}}});
	out["cli"] = {{"process_start_ms", cli_start},
		      {"share_of_cli_pec_approve", med(t_cli_pec) > 0 ? cli_start / med(t_cli_pec) : 0},
		      {"what", "linkgatectl network nsg show (spawn to exit) minus the same request over an open socket: "
			       "process start, CLI parsing, connect"}};
	double p99 = out["latency_ms"]["pec_approve"]["p99"];
	out["targets"] = nlohmann::json::array({{{"name", "PEC approve -> enforced, ms (met: p99 <= 1 ms)"},
						 {"per_round", t_pec},
						 {"spread", Spread::of(t_pec).json()},
						 {"value", p99},
						 {"target", 1.0},
						 {"op", "<="},
						 {"met_median", med(t_pec) <= 1.0},
						 {"met_every_round", p99 <= 1.0}}});
	return out;
}

LG_BENCH_SECTION(Section{"update",
			 "change -> enforced through linkgated's socket (PEC, NSG rule, full recompile) vs nft -f",
			 [](CLI::App &a) {
				 a.add_option("--agent-dir", g_opts.agent_dir,
					      "update: directory of linkgated and linkgatectl (default: this build)");
				 a.add_option("--changes", g_opts.changes, "update: measured changes per kind")
					 ->check(CLI::Range(2, 10000));
				 a.add_option("--gap-ms", g_opts.gap_ms, "update: pause before each measured change")
					 ->check(CLI::Range(0, 10000));
			 },
			 run_update, true, 40});

} // namespace
} // namespace lg::bench
