#include "runners.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

extern char **environ;

namespace lg::bench::dpdk {
namespace {

double median_of(std::vector<double> v)
{
	if (v.empty())
		return 0;
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string tail(const std::string &s, size_t n = 1500)
{
	return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string joined(const std::vector<std::string> &argv)
{
	std::string s;
	for (auto &a : argv)
		s += (s.empty() ? "" : " ") + a;
	return s;
}

} // namespace

double process_cpu(pid_t pid)
{
	std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
	std::string st((std::istreambuf_iterator<char>(f)), {});
	auto paren = st.rfind(')');
	if (paren == std::string::npos)
		return -1;
	std::istringstream in(st.substr(paren + 2));
	std::string tok;
	double ut = -1, stt = -1;
	for (int field = 3; in >> tok && field <= 15; field++) {
		if (field == 14)
			ut = std::stod(tok);
		if (field == 15)
			stt = std::stod(tok);
	}
	if (ut < 0 || stt < 0)
		return -1;
	return (ut + stt) / double(sysconf(_SC_CLK_TCK));
}

Telemetry::~Telemetry()
{
	if (fd_ >= 0)
		close(fd_);
}

std::string Telemetry::query(const std::string &command)
{
	char buf[65536];
	if (fd_ < 0) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return "";
		sockaddr_un a{};
		a.sun_family = AF_UNIX;
		std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
		if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || read(fd, buf, sizeof buf) <= 0) {
			close(fd); // the first message: version and limits
			return "";
		}
		fd_ = fd;
	}
	ssize_t n = -1;
	if (write(fd_, command.data(), command.size()) == ssize_t(command.size()))
		n = read(fd_, buf, sizeof buf);
	if (n <= 0) {
		close(fd_);
		fd_ = -1;
		return "";
	}
	nlohmann::json j = nlohmann::json::parse(std::string(buf, size_t(n)), nullptr, false);
	if (j.is_discarded() || !j.is_object() || !j.contains(command))
		return "";
	return j[command].dump();
}

Result<ProcResult> run_process(const std::vector<std::string> &argv, double interrupt_after_s, double kill_after_s,
			       const std::string &start_marker, double start_timeout_s, const ProcHook &hook)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return err(std::string("pipe: ") + std::strerror(errno));
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	std::vector<char *> cargv;
	for (auto &a : argv)
		cargv.push_back(const_cast<char *>(a.c_str()));
	cargv.push_back(nullptr);
	pid_t pid = -1;
	int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return err("cannot run " + argv[0] + ": " + std::strerror(rc));
	}
	using clock = std::chrono::steady_clock;
	auto t0 = clock::now();
	auto since = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
	// With a start marker, the SIGINT clock starts when it appears (start-up
	// such as loading a large pcap is not forwarding time).
	double t_start = 0;
	bool started = start_marker.empty();
	double kill_at = interrupt_after_s > 0 ? interrupt_after_s + kill_after_s : kill_after_s;
	if (!started)
		kill_at += start_timeout_s;
	bool interrupted = false, killed = false;
	double cpu_start = -1;
	ProcResult r;
	char buf[8192];
	for (;;) {
		double now = since();
		if (!started && r.output.find(start_marker) != std::string::npos) {
			started = true;
			t_start = now;
			r.started_after_s = now;
			cpu_start = process_cpu(pid);
			kill_at = now + (interrupt_after_s > 0 ? interrupt_after_s + kill_after_s : kill_after_s);
		}
		if (!started && now >= start_timeout_s && !interrupted) {
			kill(pid, SIGINT); // never started: stop it, the caller reports the output
			interrupted = true;
		}
		double int_at = started ? t_start + interrupt_after_s : 1e18;
		if (hook && started && !interrupted && hook(pid, now - t_start)) {
			kill(pid, SIGINT);
			interrupted = true;
		}
		if (interrupt_after_s > 0 && !interrupted && now >= int_at) {
			double cpu_end = process_cpu(pid);
			if (cpu_start >= 0 && cpu_end >= cpu_start) {
				r.window_cpu = cpu_end - cpu_start;
				r.window_wall = now - t_start;
			}
			kill(pid, SIGINT);
			interrupted = true;
		}
		if (!killed && now >= kill_at) {
			kill(pid, SIGKILL);
			killed = true;
		}
		double next = !interrupted && interrupt_after_s > 0 && started ? int_at : kill_at;
		int wait_ms = killed ? 200 : std::max(1, int((next - now) * 1000) + 1);
		pollfd p{fds[0], POLLIN, 0};
		int pr = poll(&p, 1, std::min(wait_ms, hook && started && !interrupted ? 100 : 200));
		if (pr > 0) {
			ssize_t n = read(fds[0], buf, sizeof buf);
			if (n > 0) {
				r.output.append(buf, size_t(n));
				continue;
			}
			if (n == 0)
				break; // every writer closed: the child is gone
		}
		if (pr < 0 && errno != EINTR)
			break;
	}
	close(fds[0]);
	int status = 0;
	rusage ru{};
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
	}
	r.timed_out = killed;
	if (WIFEXITED(status))
		r.exit_code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT && interrupted)
		r.exit_code = 0;
	r.cpu_seconds = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	r.wall_seconds = since();
	return r;
}

std::vector<std::string> Eal::args() const
{
	std::vector<std::string> a{"-l", lcores};
	if (huge_dir.empty())
		a.push_back("--no-huge");
	else
		a.insert(a.end(), {"--huge-dir", huge_dir, "--huge-unlink"});
	a.insert(a.end(), {"-m", std::to_string(mem_mb), "--no-pci", "--file-prefix", prefix, "--log-level",
			   "lib.eal:error"});
	return a;
}

std::string Eal::runtime_dir() const
{
	if (getuid() == 0)
		return "/var/run/dpdk/" + prefix;
	const char *x = getenv("XDG_RUNTIME_DIR");
	return std::string(x && *x ? x : "/tmp") + "/dpdk/" + prefix;
}

void Eal::remove_runtime_dir() const
{
	if (prefix.empty())
		return;
	std::error_code ec;
	std::filesystem::remove_all(runtime_dir(), ec);
}

std::vector<std::string> vdev_args(const std::string &pcap)
{
	return {"--vdev", "net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1", "--vdev", "net_null0,no-rx=1"};
}

// ---- testpmd ---------------------------------------------------------------

Result<TestpmdRun> parse_testpmd(const std::string &out)
{
	TestpmdRun t;
	std::istringstream in(out);
	std::string line;
	int port = -1;
	bool accumulated = false;
	static const std::regex nic(R"(NIC statistics for port (\d+))"), txpps(R"(Tx-pps:\s+(\d+))"),
		mac(R"(^Port 0: ([0-9A-Fa-f:]{17}))"), rxp(R"(RX-packets:\s+(\d+))"), txp(R"(TX-packets:\s+(\d+))");
	std::smatch m;
	while (std::getline(in, line)) {
		if (std::regex_search(line, m, nic))
			port = std::stoi(m[1]);
		else if (port == 1 && std::regex_search(line, m, txpps))
			t.tx_pps.push_back(std::stod(m[1]));
		else if (std::regex_search(line, m, mac))
			t.port0_mac = m[1];
		else if (line.find("Accumulated forward statistics") != std::string::npos)
			accumulated = true;
		else if (accumulated && std::regex_search(line, m, rxp)) {
			t.rx_total = std::stoull(m[1]);
			if (std::regex_search(line, m, txp))
				t.tx_total = std::stoull(m[1]);
		} else if (accumulated && std::regex_search(line, m, txp)) {
			t.tx_total = std::stoull(m[1]);
			accumulated = false;
		}
	}
	if (t.tx_pps.size() < 2)
		return err("dpdk-testpmd printed fewer than two statistics periods");
	// The first period includes start-up; the last may be cut by SIGINT
	// (a sample only appears for full periods, so keep it).
	t.mpps = median_of(std::vector<double>(t.tx_pps.begin() + 1, t.tx_pps.end())) / 1e6;
	return t;
}

Result<TestpmdRun> run_testpmd(const std::string &bin, const Eal &eal, const std::string &pcap, size_t frames,
			       double seconds, int mbuf_size)
{
	// stdbuf: testpmd's stdout is a pipe; line-buffered, its "start packet
	// forwarding" arrives when it is printed.
	std::vector<std::string> argv{"stdbuf", "-oL", bin};
	for (auto &a : eal.args())
		argv.push_back(a);
	for (auto &a : vdev_args(pcap))
		argv.push_back(a);
	// infinite_rx copies the whole pcap into mbufs of the pool at start, so
	// the pool holds every frame plus what is in flight.
	size_t mbufs = frames + 8192;
	argv.insert(argv.end(), {"--", "--forward-mode=io", "--stats-period", "1", "--total-num-mbufs",
				 std::to_string(mbufs), "--mbuf-size", std::to_string(mbuf_size), "--burst", "64"});
	// Forwarding starts once every port is up (infinite_rx has read the pcap).
	auto pr = run_process(argv, seconds + 0.5, 20, "start packet forwarding", 180);
	eal.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	if (pr->exit_code != 0)
		return err("dpdk-testpmd failed (exit " + std::to_string(pr->exit_code) + "): " + joined(argv) + "\n" +
			   tail(pr->output));
	auto t = parse_testpmd(pr->output);
	if (!t)
		return err(t.error() + ": " + joined(argv) + "\n" + tail(pr->output));
	t->cpu_seconds = pr->cpu_seconds;
	t->startup_seconds = pr->started_after_s;
	t->cpu_share = pr->cpu_share();
	return t;
}

// ---- test-acl --------------------------------------------------------------

std::optional<AclRun> parse_test_acl(const std::string &out)
{
	static const std::regex line(
		R"(search_ip5tuples\s+@lcore \d+: \d+ iterations, (\d+) pkts, \d+ categories, \d+ cycles \([0-9.]+ sec\), ([0-9.]+) cycles/pkt, ([0-9.]+) pkt/sec)");
	std::smatch m;
	if (!std::regex_search(out, m, line))
		return std::nullopt;
	AclRun a;
	a.supported = true;
	a.packets = std::stoull(m[1]);
	a.cycles_per_pkt = std::stod(m[2]);
	a.pps = std::stod(m[3]);
	return a;
}

Result<AclRun> run_test_acl(const std::string &bin, const Eal &eal, const std::string &rules, const std::string &trace,
			    size_t trace_len, const std::string &alg, int iterations, int tracestep, bool ipv6)
{
	Eal one = eal;
	one.lcores = eal.lcores.substr(eal.lcores.rfind(',') == std::string::npos ? 0 : eal.lcores.rfind(',') + 1);
	std::vector<std::string> argv{bin};
	for (auto &a : one.args())
		argv.push_back(a);
	// AVX-512 classify needs the EAL to allow 512-bit vectors.
	argv.insert(argv.end(), {"--force-max-simd-bitwidth=512", "--", "--rulesf=" + rules, "--tracef=" + trace,
				 "--tracenum=" + std::to_string(trace_len), "--tracestep=" + std::to_string(tracestep),
				 "--iter=" + std::to_string(iterations), "--alg=" + alg, "--verbose=0"});
	if (ipv6)
		argv.push_back("--ipv6");
	auto pr = run_process(argv, 0, 120);
	one.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	auto a = parse_test_acl(pr->output);
	if (!a || pr->exit_code != 0) {
		AclRun no;
		no.alg = alg;
		// An algorithm this CPU or build lacks: rte_acl_set_ctx_classify fails.
		no.why = "exit " + std::to_string(pr->exit_code);
		if (auto c = pr->output.find("Cause: "); c != std::string::npos)
			no.why += ", " + pr->output.substr(c + 7, pr->output.find('\n', c) - c - 7);
		else
			no.why += ": " + tail(pr->output, 300);
		return no;
	}
	a->alg = alg;
	return *a;
}

// ---- linkgate-dpdk ---------------------------------------------------------

Result<LinkgateRun> parse_linkgate_stats(const std::string &text)
{
	nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
	if (j.is_discarded() || !j.is_object())
		return err("linkgate-dpdk --stats-json is not a JSON object");
	// Port totals at the top or under "ports"; names in snake_case or camelCase.
	const nlohmann::json &p = j.contains("ports") && j["ports"].is_object() ? j["ports"] : j;
	auto num = [](const nlohmann::json &o, std::initializer_list<const char *> keys) -> std::optional<double> {
		for (const char *k : keys)
			if (auto it = o.find(k); it != o.end() && it->is_number())
				return it->get<double>();
		return std::nullopt;
	};
	LinkgateRun r;
	auto rx = num(p, {"rx"}), tx = num(p, {"tx"}), secs = num(p, {"seconds"});
	if (!rx || !tx || !secs)
		return err("linkgate-dpdk --stats-json lacks rx, tx or seconds");
	r.rx = uint64_t(*rx);
	r.tx = uint64_t(*tx);
	r.seconds = *secs;
	r.dropped = uint64_t(num(p, {"dropped"}).value_or(0));
	r.tsc_hz = num(p, {"tsc_hz", "tscHz"}).value_or(0);
	r.busy_cycles = num(p, {"busy_cycles", "busyCycles"}).value_or(0);
	r.mpps = r.seconds > 0 ? double(r.tx) / r.seconds / 1e6 : 0;
	r.cycles_per_pkt = r.rx ? r.busy_cycles / double(r.rx) : 0;
	// Classification alone, when the binary reports it: {"classify":{"cycles":C,
	// "packets":P}} or classify_cycles/classify_packets (camelCase too), at the
	// top or under "ports".
	for (const nlohmann::json *o : std::initializer_list<const nlohmann::json *>{&j, &p}) {
		std::optional<double> cc, cp;
		if (auto it = o->find("classify"); it != o->end() && it->is_object()) {
			cc = num(*it, {"cycles"});
			cp = num(*it, {"packets", "lookups"});
		} else {
			cc = num(*o, {"classify_cycles", "classifyCycles"});
			cp = num(*o, {"classify_packets", "classifyPackets", "classifyLookups"});
		}
		if (cc && cp && *cp > 0) {
			r.classify_cycles_per_pkt = *cc / *cp;
			break;
		}
	}
	if (auto it = j.find("reasons"); it != j.end() && it->is_object())
		for (auto &[k, v] : it->items())
			if (v.is_number())
				r.reasons[k] = v.get<uint64_t>();
	if (auto it = j.find("rules"); it != j.end() && it->is_object())
		for (auto &[k, v] : it->items())
			if (v.is_number() && v.get<uint64_t>() > 0)
				r.rule_hits[k] = v.get<uint64_t>();
	r.raw = j.dump();
	return r;
}

Result<std::string> linkgate_help(const std::string &bin, const Eal &eal)
{
	std::vector<std::string> argv{bin};
	for (auto &a : eal.args())
		argv.push_back(a);
	argv.insert(argv.end(), {"--", "--help"});
	auto pr = run_process(argv, 0, 30);
	eal.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	return pr->output;
}

Result<std::pair<std::string, size_t>> linkgate_dump_acl(const std::string &bin, const Eal &eal,
							 const std::string &state, const std::string &vnet,
							 const std::string &prefix)
{
	std::vector<std::string> argv{bin};
	for (auto &a : eal.args())
		argv.push_back(a);
	argv.insert(argv.end(), {"--vdev", "net_null0", "--vdev", "net_null1", "--", "--state", state, "--port",
				 "0=" + vnet, "--port", "1", "--flows", "65536", "--dump-acl", prefix});
	auto pr = run_process(argv, 0, 60);
	eal.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	if (pr->exit_code != 0)
		return err("linkgate-dpdk --dump-acl failed (exit " + std::to_string(pr->exit_code) + "): " + pr->output);
	// One "PATH COUNT" line per NSG direction.
	std::pair<std::string, size_t> best{"", 0};
	std::istringstream in(pr->output);
	for (std::string line; std::getline(in, line);) {
		auto sp = line.rfind(' ');
		if (sp == std::string::npos || line.compare(0, prefix.size(), prefix) != 0)
			continue;
		size_t n = std::strtoul(line.c_str() + sp + 1, nullptr, 10);
		if (n > best.second)
			best = {line.substr(0, sp), n};
	}
	if (best.first.empty())
		return err("linkgate-dpdk --dump-acl wrote no rules: " + pr->output);
	return best;
}

std::optional<double> parse_linkgate_classify(const std::string &out)
{
	static const std::regex re(R"(classify: direction \d+, (\d+) tuples, .* ([0-9.]+) cycles/tuple)");
	std::smatch m;
	if (!std::regex_search(out, m, re))
		return std::nullopt;
	return std::stod(m[2]);
}

Result<AclRun> run_linkgate_classify(const std::string &bin, const Eal &eal, const std::string &state,
				     const std::string &vnet, uint32_t dir, const std::string &trace, const std::string &alg,
				     int iterations, int tracestep)
{
	std::vector<std::string> argv{bin};
	for (auto &a : eal.args())
		argv.push_back(a);
	argv.insert(argv.end(), {"--vdev", "net_null0", "--vdev", "net_null1", "--", "--state", state, "--port",
				 "0=" + vnet, "--port", "1", "--flows", "65536", "--acl-alg", alg, "--classify-trace", trace,
				 "--classify-dir", std::to_string(dir), "--iter", std::to_string(iterations), "--tracestep",
				 std::to_string(tracestep)});
	auto pr = run_process(argv, 0, 120);
	eal.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	AclRun a;
	a.alg = alg;
	auto c = parse_linkgate_classify(pr->output);
	if (pr->exit_code != 0 || !c) {
		if (pr->output.find("not supported on this CPU") != std::string::npos) {
			a.why = "linkgate-dpdk: not supported on this CPU";
			return a;
		}
		return err("linkgate-dpdk --classify-trace failed (exit " + std::to_string(pr->exit_code) +
			   "): " + tail(pr->output, 300));
	}
	a.supported = true;
	a.cycles_per_pkt = *c;
	return a;
}

Result<LinkgateRun> run_linkgate(const LinkgateOptions &o, const Eal &eal, const std::string &pcap)
{
	std::vector<std::string> argv{o.bin};
	for (auto &a : eal.args())
		argv.push_back(a);
	for (auto &a : vdev_args(pcap))
		argv.push_back(a);
	for (auto &v : o.extra_vdevs)
		argv.insert(argv.end(), {"--vdev", v});
	argv.insert(argv.end(), {"--", "--state", o.state, "--port", "0=" + o.vnet, "--port", "1", "--route", o.route});
	for (auto &p : o.extra_ports)
		argv.insert(argv.end(), {"--port", p});
	for (auto &r : o.extra_routes)
		argv.insert(argv.end(), {"--route", r});
	if (o.flow_capacity)
		argv.insert(argv.end(), {"--flows", std::to_string(o.flow_capacity)});
	if (o.mbufs)
		argv.insert(argv.end(), {"--mbufs", std::to_string(o.mbufs)});
	if (!o.acl_alg.empty())
		argv.insert(argv.end(), {"--acl-alg", o.acl_alg});
	char dur[32];
	std::snprintf(dur, sizeof dur, "%.3f", o.seconds + 30);
	argv.insert(argv.end(), {"--duration", dur, "--stats-json", o.stats_json});
	unlink(o.stats_json.c_str());
	// SIGINT `seconds` after its workers start (it writes --stats-json then),
	// or, measuring a window after the warm-up, `seconds` after the window
	// opened: telemetry every 100 ms until fastPackets / rx of the last
	// interval reaches warm_fast_share, then the counters at both ends.
	struct Sample {
		double t = 0, cpu = 0;
		uint64_t rx = 0, tx = 0, busy = 0, fast = 0, us = 0;
		bool ok = false;
	};
	Telemetry tel(o.telemetry_socket.empty() ? eal.runtime_dir() + "/dpdk_telemetry.v2" : o.telemetry_socket);
	Sample prev, w0, w1;
	bool warm = false, warm_failed = false;
	auto sample = [&](pid_t pid, double t) {
		Sample s;
		std::string js = tel.query("/linkgate/stats");
		nlohmann::json j = nlohmann::json::parse(js.empty() ? "null" : js, nullptr, false);
		if (!j.is_object() || !j.contains("rx") || !j.contains("fastPackets"))
			return s;
		s.t = t;
		s.cpu = process_cpu(pid);
		s.rx = j["rx"].get<uint64_t>();
		s.tx = j.value("tx", uint64_t(0));
		s.busy = j.value("busyCycles", uint64_t(0));
		s.fast = j["fastPackets"].get<uint64_t>();
		s.us = j.value("microseconds", uint64_t(0));
		s.ok = true;
		return s;
	};
	// The rate is taken as testpmd's is: the median of one-second rates
	// (testpmd prints one a second and the first is left out, as here
	// without a warm-up window), timed by linkgate-dpdk's own clock when it
	// read the counters.
	std::vector<Sample> ticks;
	// Ticks a second apart on a fixed schedule (the hook runs every ~0.1 s:
	// "a second after the last tick taken" would drift later each time and
	// leave a short last interval). After a stall of the harness the
	// schedule restarts from the late tick: the ticks due meanwhile, taken
	// back to back, would weigh short intervals in the median as much as
	// whole seconds.
	double due = -1;
	auto tick = [&](pid_t pid, double t, double from) {
		if (due < 0)
			due = from + double(ticks.size()); // the window's first sample is ticks[0]
		if (t < due)
			return;
		due = t > due + 0.5 ? t + 1 : due + 1;
		if (Sample s = sample(pid, t); s.ok && s.us)
			ticks.push_back(s);
		else
			ticks.push_back(Sample{}); // keeps the schedule; a gap in the rates
	};
	ProcHook hook = [&](pid_t pid, double t) {
		tick(pid, t, 0);
		return false;
	};
	if (o.window_after_warmup)
		hook = [&](pid_t pid, double t) {
			if (!warm) {
				if (t >= o.warmup_timeout) {
					warm_failed = true;
					return true;
				}
				Sample s = sample(pid, t);
				if (!s.ok)
					return false;
				if (prev.ok && s.rx > prev.rx && s.rx >= o.warm_rx &&
				    double(s.fast - prev.fast) >= o.warm_fast_share * double(s.rx - prev.rx)) {
					warm = true;
					w0 = s;
					ticks.push_back(s);
				}
				prev = s;
				return false;
			}
			if (t - w0.t < o.seconds) {
				tick(pid, t, w0.t);
				return false;
			}
			w1 = sample(pid, t);
			if (w1.ok && w1.us)
				ticks.push_back(w1);
			return true;
		};
	double int_after = o.window_after_warmup ? o.warmup_timeout + o.seconds + 10 : o.seconds;
	auto pr = run_process(argv, int_after, 30, o.start_marker, 120, hook);
	eal.remove_runtime_dir();
	if (!pr)
		return err(pr.error());
	if (pr->exit_code != 0)
		return err("linkgate-dpdk failed (exit " + std::to_string(pr->exit_code) + "): " + joined(argv) + "\n" +
			   tail(pr->output));
	std::ifstream f(o.stats_json);
	if (!f)
		return err("linkgate-dpdk wrote no " + o.stats_json + ": " + joined(argv) + "\n" + tail(pr->output));
	std::stringstream ss;
	ss << f.rdbuf();
	auto r = parse_linkgate_stats(ss.str());
	if (!r)
		return err(r.error() + " (" + o.stats_json + ")");
	r->cpu_seconds = pr->cpu_seconds;
	r->wall_seconds = pr->wall_seconds;
	r->cpu_share = pr->cpu_share();
	nlohmann::json j = nlohmann::json::parse(r->raw, nullptr, false);
	if (j.is_object() && j.contains("fastPackets") && j["fastPackets"].is_number())
		r->fast_packets = j["fastPackets"].get<uint64_t>();
	if (o.window_after_warmup) {
		if (warm_failed || !warm)
			return err("linkgate-dpdk never warmed up: within " + std::to_string(int(o.warmup_timeout)) +
				   " s, rx did not reach " + std::to_string(o.warm_rx) + " with " +
				   std::to_string(int(o.warm_fast_share * 100)) + " % of 100 ms of frames on the fast path " +
				   "(last fastPackets " + std::to_string(prev.fast) + " of rx " + std::to_string(prev.rx) + ")");
		if (!w1.ok || w1.t <= w0.t || w1.rx <= w0.rx)
			return err("linkgate-dpdk: no telemetry at the end of the window");
		// linkgate-dpdk's clock read with the counters, when it has one:
		// the harness's own times include any wait for the control lock.
		double dt = w0.us && w1.us > w0.us ? double(w1.us - w0.us) / 1e6 : w1.t - w0.t;
		r->windowed = true;
		r->warmup_seconds = w0.t;
		r->window_seconds = dt;
		r->window_rx = w1.rx - w0.rx;
		r->window_tx = w1.tx - w0.tx;
		r->window_fast = w1.fast - w0.fast;
		r->fast_share = double(r->window_fast) / double(r->window_rx);
		r->mpps = double(r->window_tx) / dt / 1e6;
		r->cycles_per_pkt = double(w1.busy - w0.busy) / double(r->window_rx);
		r->cpu_share = w1.cpu >= w0.cpu && w0.cpu >= 0 ? (w1.cpu - w0.cpu) / (w1.t - w0.t) : 0;
	}
	// One-second rates: every interval of the window (it opens warm), or
	// every interval but the first (start-up) of a run without one.
	for (size_t i = o.window_after_warmup ? 1 : 2; i < ticks.size(); i++) {
		const Sample &a = ticks[i - 1], &b = ticks[i];
		if (a.ok && b.ok && b.us > a.us && b.tx >= a.tx)
			r->interval_mpps.push_back(double(b.tx - a.tx) / double(b.us - a.us));
	}
	r->mean_mpps = r->mpps;
	if (!r->interval_mpps.empty())
		r->mpps = median_of(r->interval_mpps);
	return r;
}

} // namespace lg::bench::dpdk
