// linkgate-dpdk: the DPDK fast path (SPEC §3–§5 on any DPDK port).
//
//   linkgate-dpdk <EAL args> -- [--socket PATH | --state FILE]
//       --port N[=VNET] ... [--route PREFIX=N,MAC ...] [--local IP ...]
//       [--flows N] [--acl-alg NAME] [--duration S] [--stats-json FILE]
//
// Worker lcores poll RX queues in bursts and run the engine (the XDP
// program's decision, rte_acl for NSGs); the main lcore talks to linkgated
// (generations in, counters and flows out), reclaims expired flows and
// serves DPDK telemetry (/linkgate/stats). docs/dpdk.md.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <rte_acl.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_telemetry.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cctype>
#include <cmath>
#include <mutex>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "arm_json.hpp"
#include "cli_decimal.hpp"
#include "compiler.hpp"
#include "engine.hpp"
#include "pipeline.hpp"
#include "flow_json.hpp"
#include "validate.hpp"
#include "dp_log.hpp"

using nlohmann::json;
using namespace lg;

namespace {

constexpr uint16_t kRing = 1024;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

// The telemetry thread reads the engine; the main lcore frees it only after
// clearing g_serving under this lock (DPDK 22.11 cannot unregister a command).
std::mutex g_tel_mu;
bool g_serving = false;

// A whole decimal field naming a DPDK port ("0x1", "1e0", "0 junk": none).
std::optional<uint16_t> port_number(std::string_view s)
{
	unsigned v = 0;
	auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
	if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v >= RTE_MAX_ETHPORTS)
		return std::nullopt;
	return uint16_t(v);
}

struct Port {
	uint16_t id;
	std::string vnet;
	Mac mac{};
	uint16_t queues = 1;
};

struct App {
	std::vector<Port> ports;
	std::unique_ptr<dp::Engine> engine;
	std::unique_ptr<dp::Pipeline> pipeline;
	std::vector<unsigned> worker_lcores;
	std::string name;
	// When the workers started (steady_clock ticks; 0: not yet). Atomic:
	// telemetry reads it from its own thread.
	std::atomic<std::chrono::steady_clock::rep> started{0};
	std::chrono::steady_clock::duration up() const
	{
		auto t = started.load(std::memory_order_relaxed);
		return t ? std::chrono::steady_clock::now().time_since_epoch() - std::chrono::steady_clock::duration(t)
			 : std::chrono::steady_clock::duration(0);
	}
};
App *g_app;

using dp::ifindex_of;

int worker_main(void *arg)
{
	g_app->pipeline->run(unsigned(reinterpret_cast<uintptr_t>(arg)), g_stop);
	return 0;
}

json totals()
{
	App &app = *g_app;
	dp::PipelineTotals t = app.pipeline->totals();
	auto up = app.up();
	double secs = std::chrono::duration<double>(up).count();
	// microseconds: read with the counters, so that a reader who waited for
	// the control lock still divides by the right interval (linkgate-bench).
	uint64_t us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(up).count());
	return {{"rx", t.rx},     {"tx", t.tx},      {"txFailed", t.tx_failed}, {"passed", t.passed}, {"dropped", t.dropped},
		{"seconds", secs}, {"microseconds", us}, {"tscHz", rte_get_tsc_hz()}, {"busyCycles", t.busy_cycles},
		{"cyclesPerPacket", t.rx ? double(t.busy_cycles) / double(t.rx) : 0.0}, {"workers", app.pipeline->workers()}};
}

// The EAL's vector width limit as linkgate-dpdk set it: 512 (raised, the
// default on AVX-512 CPUs), a value given in the EAL arguments, or 0: the
// EAL's own default (256 bits on x86).
int g_simd = 0;

// rte_acl: cycles and answers (what linkgate-bench divides), with the calls
// and tuples behind them (a burst classifies its candidates together).
json classify_json()
{
	auto [cycles, lookups] = g_app->engine->classify_stats();
	dp::Engine::BurstStats b = g_app->engine->burst_stats();
	return {{"cycles", cycles}, {"lookups", lookups}, {"calls", b.acl_calls}, {"tuples", b.acl_tuples},
		{"batched", b.acl_batched}, {"maxSimdBits", g_simd ? g_simd : 256}};
}

// The flow pre-lookup of each burst: lookups it answered, lookups it did not.
json hints_json()
{
	dp::Engine::BurstStats b = g_app->engine->burst_stats();
	return {{"hits", b.hint_hits}, {"misses", b.hint_misses}, {"forgotten", b.hints_forgotten}};
}

// The flow timeouts in force (seconds): linkgated's since registration.
// Main lcore only (the registration sets them there).
json timeouts_json()
{
	const EvaluatorConfig &t = g_app->engine->timeouts();
	return {{"tcpEstablished", double(t.tcp_established_ns) / 1e9},
		{"tcpTransient", double(t.tcp_transient_ns) / 1e9},
		{"tcpClose", double(t.tcp_close_ns) / 1e9},
		{"udp", double(t.udp_ns) / 1e9},
		{"icmp", double(t.icmp_ns) / 1e9}};
}

json counters_json()
{
	App &app = *g_app;
	dp::EngineCounters c = app.engine->counters();
	json reasons = json::object();
	for (int i = 0; i < LG_REASON__COUNT; i++)
		reasons[reason_name(lg_reason(i))] = c.reasons[size_t(i)];
	return {{"generation", app.engine->generation()},
		{"reasons", reasons},
		{"rules", c.rules},
		{"private_endpoints", c.private_endpoints},
		{"servers", c.servers},
		{"flows", c.flows},
		{"aclBuilds", app.engine->acl_builds()},
		{"walkDirections", app.engine->walk_directions()},
		{"classify", classify_json()},
		{"flowHints", hints_json()},
		{"fastPackets", lg_host_fast_packets()}, // decided by the program's established-flow fast path
		{"flowLog",
		 {{"on", app.engine->flow_log()},
		  {"written", app.engine->log_counter(LG_LOG_WRITTEN)},
		  {"lost", app.engine->log_counter(LG_LOG_LOST)}}},
		{"ports", totals()}};
}

// dataplane.flowLog: the flow-log records (drained: each is sent once) and
// the flows with their counts, as hex of the ABI structs. The records all go
// (at most LG_FLOWLOG_CAPACITY, about 10 MB); the flows as many as fit in
// 30 MiB of the agent's 32 MiB reply cap (about 80,000), `complete` says
// whether that was all of them.
json flow_log_json()
{
	App &app = *g_app;
	constexpr size_t kBudget = size_t(30) << 20;
	json events = json::array(), flows = json::array();
	size_t bytes = 0;
	for (auto &[k, v] : app.engine->drain_flowlog()) {
		std::string h = to_hex(&k, sizeof k) + to_hex(&v, sizeof v);
		bytes += h.size() + 3;
		events.push_back(std::move(h));
	}
	bool complete = true;
	size_t max = (kBudget - std::min(bytes, kBudget)) / (2 * sizeof(lg_flow_sample) + 3);
	std::vector<lg_flow_sample> all = app.engine->flow_samples(max + 1);
	if (all.size() > max) {
		all.resize(max);
		complete = false;
	}
	uint64_t now = dp::Engine::clock_ns(); // after the listing: a flow made since has its record next time
	for (lg_flow_sample &f : all)
		flows.push_back(to_hex(&f, sizeof f));
	return {{"events", events},
		{"flows", flows},
		{"complete", complete},
		{"now", now},
		{"lost", app.engine->log_counter(LG_LOG_LOST)}};
}

std::vector<InterfaceBinding> bindings()
{
	std::vector<InterfaceBinding> b;
	for (auto &p : g_app->ports)
		b.push_back(InterfaceBinding{ifindex_of(p.id), p.vnet, p.mac});
	return b;
}

// A state (a --state file, a dataplane.publish), read and validated.
Result<State> checked_state(const json &state_json)
{
	auto s = state_from_json(state_json);
	if (!s)
		return err(s.error()); // names the state already
	if (auto v = validate(*s); !v)
		return err("state: " + v.error());
	return s;
}

// Compile a checked state with this process's ports and publish; returns
// once every worker uses the generation.
Status apply_state(const State &s, uint64_t generation)
{
	// As linkgated's --xdp-interface IFACE=VNET: a VNet not (yet) in the
	// state binds nothing (VNI 0) until it appears.
	// Kept across publishes, as linkgated keeps its own: a change that
	// touches no backend list fills no Maglev table again (65,537 entries
	// a server). Only the main lcore publishes.
	static CompileCache cache;
	auto t = compile(s, bindings(), generation, &cache);
	if (!t)
		return err("compile: " + t.error());
	return g_app->engine->publish(*t);
}

int telemetry_stats(const char *, const char *params, rte_tel_data *d)
{
	if (params && *params)
		return -EINVAL; // takes no parameters
	std::lock_guard lk(g_tel_mu);
	rte_tel_data_start_dict(d);
	if (!g_serving)
		return 0; // stopping: the engine is gone
	json c;
	try { // a C callback: nothing may be thrown through DPDK
		c = counters_json();
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	}
	rte_tel_data_add_dict_u64(d, "generation", c["generation"].get<uint64_t>());
	rte_tel_data_add_dict_u64(d, "flows", c["flows"].get<uint64_t>());
	rte_tel_data_add_dict_u64(d, "fastPackets", c["fastPackets"].get<uint64_t>());
	for (auto &[k, v] : c["ports"].items())
		if (v.is_number_unsigned())
			rte_tel_data_add_dict_u64(d, k.c_str(), v.get<uint64_t>());
	// Telemetry names take letters, digits, '_' and '/' only: "nsg-deny"
	// is reason_nsg_deny.
	for (auto &[k, v] : c["reasons"].items()) {
		std::string n = "reason_" + k;
		std::replace(n.begin(), n.end(), '-', '_');
		rte_tel_data_add_dict_u64(d, n.c_str(), v.get<uint64_t>());
	}
	return 0;
}

// ---- linkgated channel (docs/agent.md, "The DPDK channel") ----
class AgentLink {
public:
	explicit AgentLink(std::string path) : path_(std::move(path)) {}
	~AgentLink() { close_fd(); }

	// One step: connect if needed, serve what arrived within timeout_ms.
	void step(int timeout_ms)
	{
		if (fd_ < 0) {
			auto now = std::chrono::steady_clock::now();
			if (now < next_try_) {
				std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 50)));
				return;
			}
			// Every attempt, failed or refused later (a bad --name, a
			// generation this process cannot apply), waits longer than
			// the last, up to 1 s; an acknowledged publish resets it.
			next_try_ = now + std::chrono::milliseconds(backoff_);
			backoff_ = std::min(backoff_ * 2, 1000);
			if (!connect_and_register())
				return;
		}
		if (registering_ && std::chrono::steady_clock::now() - registered_at_ > std::chrono::seconds(120)) {
			// Well past a commit's longest wait for the agent (its
			// dataplane timeout): the request was lost, not queued.
			lg::dp::log("linkgated did not answer the registration in 120 s; reconnecting");
			close_fd();
			return;
		}
		pollfd p{fd_, POLLIN, 0};
		if (poll(&p, 1, timeout_ms) <= 0)
			return;
		char buf[65536];
		ssize_t n = read(fd_, buf, sizeof buf);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			lg::dp::log("linkgated closed the channel; reconnecting");
			close_fd();
			return;
		}
		// A failed allocation (a huge publish under a memory limit) costs
		// the channel, not the process: the workers go on forwarding.
		try {
			in_.append(buf, size_t(n));
			size_t nl;
			// Only the bytes not searched before: a long line arrives in
			// many reads.
			while (fd_ >= 0 && (nl = in_.find('\n', scanned_)) != std::string::npos) {
				std::string line = in_.substr(0, nl);
				in_.erase(0, nl + 1);
				scanned_ = 0;
				serve(line);
			}
			scanned_ = in_.size();
			if (in_.size() > (64u << 20)) {
				lg::dp::log("oversized message from linkgated");
				close_fd();
			}
		} catch (const std::bad_alloc &) {
			lg::dp::log("out of memory reading linkgated's message; reconnecting");
			close_fd();
		}
	}

private:
	bool connect_and_register()
	{
		// Non-blocking: an agent that does not accept (its backlog full)
		// fails this try at once, and the main lcore goes on reclaiming.
		fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		sockaddr_un a{};
		a.sun_family = AF_UNIX;
		std::memcpy(a.sun_path, path_.c_str(), path_.size() + 1); // length checked at start
		if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a)) {
			int e = errno;
			if (e != last_errno_) // once per cause, not every retry
				lg::dp::log("cannot connect to %s: %s; retrying", path_.c_str(),
					     std::strerror(e));
			last_errno_ = e;
			close_fd();
			return false;
		}
		last_errno_ = 0;
		json reg = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "dataplane.register"},
			    {"params", {{"kind", "dpdk"}, {"name", g_app->name}, {"pid", getpid()},
					// What it enforces now: an agent with an empty state does
					// not replace it (docs/agent.md, "The DPDK channel").
					{"generation", g_app->engine->generation()}}}};
		if (!send_line(reg.dump())) {
			close_fd();
			return false;
		}
		registering_ = true;
		registered_at_ = std::chrono::steady_clock::now();
		lg::dp::log("connected to %s", path_.c_str());
		return true;
	}

	// The register reply's flow timeouts (seconds), linkgated's own:
	// flows expire alike in every dataplane. Absent: keep ours (false).
	// Read only: the reply is applied once all of it has been checked.
	static std::optional<bool> read_timeouts(const json &r, uint64_t (&ns)[5])
	{
		auto t = r.find("timeouts");
		if (t == r.end())
			return false;
		if (!t->is_object())
			return std::nullopt;
		const char *keys[5] = {"tcpEstablished", "tcpTransient", "tcpClose", "udp", "icmp"};
		for (int i = 0; i < 5; i++) {
			auto v = t->find(keys[i]);
			if (v == t->end() || !v->is_number() || !(v->get<double>() >= 0.001) || v->get<double>() > 1e6)
				return std::nullopt;
			ns[i] = uint64_t(v->get<double>() * 1e9);
		}
		return true;
	}

	static json error(int code, const std::string &message) { return {{"code", code}, {"message", message}}; }

	void serve(const std::string &line)
	{
		auto parsed = parse_json_text(line, "message from linkgated");
		if (!parsed || !parsed->is_object()) {
			lg::dp::log("malformed message from linkgated: %s",
				     parsed ? "not an object" : parsed.error().c_str());
			close_fd();
			return;
		}
		const json &m = *parsed;
		if (registering_ && !m.contains("method")) {
			registering_ = false;
			auto r = m.find("result");
			if (auto e = m.find("error"); e != m.end() || r == m.end() || !r->is_object()) {
				// Once per refusal, not at every retry.
				std::string why = e != m.end() ? e->dump(-1, ' ', false, json::error_handler_t::replace)
							       : "no result";
				if (why != last_refusal_)
					lg::dp::log("registration refused: %s; retrying", why.c_str());
				last_refusal_ = why;
				close_fd();
				return;
			}
			// A refused reply changes nothing: every field is checked
			// before any is applied.
			uint64_t ns[5];
			auto timeouts = read_timeouts(*r, ns);
			auto f = r->find("flowLog");
			if (!timeouts) {
				lg::dp::log("registration reply: timeouts are not 0.001-1000000 seconds");
				close_fd();
			} else if (f != r->end() && !f->is_boolean()) {
				lg::dp::log("registration reply: flowLog is not true or false");
				close_fd();
			} else {
				if (*timeouts)
					g_app->engine->set_flow_timeouts(ns[0], ns[1], ns[2], ns[3], ns[4]);
				// Flow-log records only for an agent that drains them;
				// an agent that does not say (an older one) does not.
				g_app->engine->set_flow_log(f != r->end() && f->get<bool>());
				last_refusal_.clear();
			}
			return;
		}
		json reply = {{"jsonrpc", "2.0"}, {"id", nullptr}};
		try {
			json result = answer(m, reply);
			if (!reply.contains("error"))
				reply["result"] = std::move(result);
		} catch (const std::exception &e) { // a bug, not the message: answer and keep the channel
			reply["error"] = error(-32603, std::string("internal error: ") + e.what());
		}
		if (!send_line(reply.dump(-1, ' ', false, json::error_handler_t::replace)))
			close_fd();
	}

	// The result of request m, or null with reply["error"] set.
	json answer(const json &m, json &reply)
	{
		auto id = m.find("id");
		if (id != m.end() && rpc_id_echoable(*id))
			reply["id"] = *id;
		auto mi = m.find("method");
		if (reply["id"].is_null() || mi == m.end() || !mi->is_string()) {
			reply["error"] = error(-32600, "invalid request: needs an id (a string or a number within 64 bits) "
						       "and a method name");
			return nullptr;
		}
		const std::string &method = mi->get_ref<const std::string &>();
		static const json kNoParams = json::object();
		auto pi = m.find("params");
		if (pi != m.end() && !pi->is_object()) {
			reply["error"] = error(-32602, "invalid params: params must be an object");
			return nullptr;
		}
		const json &params = pi == m.end() ? kNoParams : *pi;
		if (method == "dataplane.publish") {
			auto gi = params.find("generation"), si = params.find("state");
			if (gi == params.end() || !gi->is_number_unsigned() || gi->get<uint64_t>() == 0 ||
			    si == params.end() || !si->is_object()) {
				reply["error"] = error(-32602, "dataplane.publish needs generation (an integer > 0) and state");
				return nullptr;
			}
			uint64_t g = gi->get<uint64_t>();
			auto s = checked_state(*si);
			if (auto st = s ? apply_state(*s, g) : Status(err(s.error())); !st) {
				lg::dp::log("generation %llu refused: %s", (unsigned long long)g,
					     st.error().c_str());
				reply["error"] = error(-32003, st.error());
				return nullptr;
			}
			backoff_ = 50; // a working channel: reconnect at once if it drops
			return {{"generation", g}};
		}
		if (method == "dataplane.counters") {
			// The timeouts on this thread only: registration writes them here
			// too, and the telemetry thread's counters leave them out.
			json c = counters_json();
			c["timeouts"] = timeouts_json();
			return c;
		}
		if (method == "dataplane.flows") {
			// One line of at most 1 MiB, this program's own budget
			// (linkgated takes replies up to 32 MiB): the flows that fit
			// (a flow's object is 150-250 bytes, so no more than 16k are
			// copied out of the table).
			constexpr size_t kBudget = (1u << 20) - 4096; // room for the envelope
			json flows = json::array();
			size_t bytes = 0;
			for (const lg_flow_entry &e : g_app->engine->flows(16384)) {
				json f = flow_to_json(e, g_app->engine->live());
				size_t n = f.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1;
				if (bytes + n > kBudget)
					break;
				bytes += n;
				flows.push_back(std::move(f));
			}
			return {{"flows", flows}};
		}
		if (method == "dataplane.flowLog")
			return flow_log_json();
		reply["error"] = error(-32601, "unknown method " + method);
		return nullptr;
	}

	// A reply must make progress within 5 s (linkgated's own default wait
	// for us): an agent that stops reading loses the channel, and the main
	// lcore goes on reclaiming flows and answering signals.
	bool send_line(std::string s)
	{
		s += '\n';
		size_t off = 0;
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
		while (off < s.size()) {
			ssize_t n = send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				off += size_t(n);
				deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
				continue;
			}
			bool again = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
			if (again && !g_stop && std::chrono::steady_clock::now() < deadline) {
				pollfd p{fd_, POLLOUT, 0};
				poll(&p, 1, 100);
				continue;
			}
			if (again && !g_stop)
				lg::dp::log("linkgated has not read a reply for 5 s; reconnecting");
			return false;
		}
		return true;
	}

	void close_fd()
	{
		if (fd_ >= 0)
			close(fd_);
		fd_ = -1;
		in_.clear();
		scanned_ = 0;
		registering_ = false;
	}

	std::string path_;
	int fd_ = -1;
	bool registering_ = false;
	std::chrono::steady_clock::time_point registered_at_{};
	std::string in_;
	size_t scanned_ = 0; // in_'s bytes known to hold no newline
	int backoff_ = 50, last_errno_ = 0;
	std::string last_refusal_; // the last registration error logged
	std::chrono::steady_clock::time_point next_try_{};
};

Result<dp::MacRoute> parse_route(const std::string &s, const std::vector<Port> &ports)
{
	// PREFIX=PORT,MAC
	auto eq = s.find('='), comma = s.find(',');
	if (eq == std::string::npos || comma == std::string::npos || comma < eq)
		return err("--route " + s + ": expected PREFIX=PORT,MAC");
	bool host_bits = false;
	auto pfx = Prefix::parse(s.substr(0, eq), &host_bits);
	if (!pfx)
		return err("--route " + s + ": bad prefix");
	if (host_bits)
		return err("--route " + s + ": the prefix has bits set past its length (" + pfx->str() + "?)");
	auto port = port_number(std::string_view(s).substr(eq + 1, comma - eq - 1));
	bool known = port && std::any_of(ports.begin(), ports.end(), [&](const Port &p) { return p.id == *port; });
	if (!known)
		return err("--route " + s + ": port is not one of --port");
	rte_ether_addr a;
	if (rte_ether_unformat_addr(s.substr(comma + 1).c_str(), &a))
		return err("--route " + s + ": bad MAC");
	if (!rte_is_unicast_ether_addr(&a) || rte_is_zero_ether_addr(&a))
		return err("--route " + s + ": the next hop's MAC must be a unicast address");
	dp::MacRoute r;
	r.prefix = *pfx;
	r.ifindex = ifindex_of(*port);
	std::memcpy(r.mac.data(), a.addr_bytes, 6);
	return r;
}

} // namespace

// --classify-trace: the live generation's classifier of NSG direction `dir`
// alone, called as dpdk-test-acl calls rte_acl on the same trace (inputs
// built beforehand, `step` a call, `iter` passes, one TSC interval): the
// classifier's cost without the pipeline around it. The first pass is held
// to single-tuple lookups. 0, or 1 with a message.
static int classify_trace(const dp::Engine &eng, uint32_t dir, const std::string &path, unsigned step, unsigned iter)
{
	auto cls = eng.live_classifier(dir);
	if (!cls) {
		lg::dp::log("--classify-trace: NSG direction %u has no rte_acl classifier", dir);
		return 1;
	}
	// dpdk-test-acl's IPv4 trace: src dst sport dport proto, addresses as
	// 32-bit numbers; as IPv4-mapped inputs, as acl_input() builds them.
	auto text = read_text_file(path, kMaxJsonFileBytes);
	if (!text) {
		lg::dp::log("--classify-trace %s", text.error().c_str());
		return 1;
	}
	std::istringstream f(*text);
	std::vector<dp::AclInput> in;
	size_t lineno = 0;
	for (std::string line; std::getline(f, line);) {
		lineno++;
		if (line.find_first_not_of(" \t\r") == std::string::npos)
			continue;
		unsigned long v[5];
		const char *p = line.c_str();
		int k = 0;
		for (; k < 5; k++) {
			char *e;
			errno = 0;
			v[k] = std::strtoul(p, &e, 0);
			if (e == p || errno || (*e && !std::isspace(static_cast<unsigned char>(*e))))
				break;
			p = e;
		}
		if (k < 5 || v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > 0xffff || v[3] > 0xffff || v[4] > 0xff ||
		    std::string(p).find_first_not_of(" \t\r") != std::string::npos) {
			lg::dp::log("%s:%zu: not \"src dst sport dport proto\"", path.c_str(), lineno);
			return 1;
		}
		uint8_t src[16] = {}, dst[16] = {};
		src[10] = src[11] = dst[10] = dst[11] = 0xff;
		for (int b = 0; b < 4; b++) {
			src[12 + b] = uint8_t(v[0] >> (24 - 8 * b));
			dst[12 + b] = uint8_t(v[1] >> (24 - 8 * b));
		}
		uint8_t proto = uint8_t(v[4]);
		in.emplace_back();
		dp::acl_input(&in.back(), proto, proto == 6 || proto == 17, uint16_t(v[2]), uint16_t(v[3]), src, dst);
	}
	if (in.empty()) {
		lg::dp::log("--classify-trace %s: no tuples", path.c_str());
		return 1;
	}
	std::vector<const dp::AclInput *> ptr(in.size());
	for (size_t i = 0; i < in.size(); i++)
		ptr[i] = &in[i];
	std::vector<uint32_t> res(in.size());
	uint64_t t0 = rte_rdtsc();
	for (unsigned it = 0; it < iter; it++)
		for (size_t i = 0; i < in.size(); i += step)
			cls->classify(ptr.data() + i, res.data() + i, uint32_t(std::min<size_t>(step, in.size() - i)));
	uint64_t cycles = rte_rdtsc() - t0;
	for (size_t i = 0; i < in.size(); i++)
		if (res[i] != cls->first(in[i])) {
			lg::dp::log("--classify-trace: tuple %zu: batch answer %u, single %u", i + 1,
				     res[i], cls->first(in[i]));
			return 1;
		}
	double n = double(in.size()) * iter;
	std::printf("classify: direction %u, %zu tuples, %u per call, %u passes: %llu cycles, %.2f cycles/tuple\n", dir,
		    in.size(), step, iter, (unsigned long long)cycles, double(cycles) / n);
	return 0;
}

// The EAL limits vector code to 256 bits unless told otherwise; rte_acl's
// fastest classify on AVX-512 CPUs (avx512x32) needs 512. linkgate-dpdk
// raises the limit by default when the CPU has what rte_acl's AVX-512 code
// uses (F, VL, CD, BW); an explicit --force-max-simd-bitwidth in the EAL
// arguments wins (docs/dpdk.md).
static std::vector<char *> eal_args_with_simd(int argc, char **argv)
{
	static char simd512[] = "--force-max-simd-bitwidth=512";
	std::vector<char *> v(argv, argv + argc);
	bool given = false;
	for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; i++)
		if (std::strncmp(argv[i], "--force-max-simd-bitwidth", 25) == 0) {
			given = true;
			const char *eq = std::strchr(argv[i], '=');
			g_simd = eq ? std::atoi(eq + 1) : i + 1 < argc ? std::atoi(argv[i + 1]) : 0;
		}
#if defined(__x86_64__)
	__builtin_cpu_init();
	bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
		      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw");
#else
	bool avx512 = false;
#endif
	if (!given && avx512 && argc >= 1) {
		v.insert(v.begin() + 1, simd512);
		g_simd = 512;
	}
	v.push_back(nullptr);
	return v;
}

// Ports stopped, the engine freed (telemetry told first), then the EAL:
// the engine's memory is the EAL's, so the order matters.
static int finish(App &app, int rc)
{
	{
		std::lock_guard lk(g_tel_mu);
		g_serving = false;
	}
	for (auto &p : app.ports) {
		rte_eth_dev_stop(p.id);
		rte_eth_dev_close(p.id);
	}
	app.pipeline.reset();
	app.engine.reset();
	rte_eal_cleanup();
	return rc;
}

// Whether rte_acl can run algorithm alg here (CPU and the EAL's SIMD limit):
// asked at start, so a bad --acl-alg is an error, not every generation refused.
static bool acl_alg_runs(int alg)
{
	if (!alg)
		return true;
	rte_acl_param prm{};
	prm.name = "lg_alg_probe";
	prm.socket_id = SOCKET_ID_ANY;
	prm.rule_size = RTE_ACL_RULE_SZ(1);
	prm.max_rule_num = 1;
	rte_acl_ctx *ctx = rte_acl_create(&prm);
	if (!ctx)
		return false;
	int rc = rte_acl_set_ctx_classify(ctx, static_cast<enum rte_acl_classify_alg>(alg));
	rte_acl_free(ctx);
	return rc == 0;
}

int main(int argc, char **argv)
{
	std::vector<char *> eal_argv = eal_args_with_simd(argc, argv);
	argc = int(eal_argv.size()) - 1;
	argv = eal_argv.data();
	int used = rte_eal_init(argc, argv);
	if (used < 0) {
		lg::dp::log("EAL initialisation failed: %s", rte_strerror(rte_errno));
		return 2;
	}
	argc -= used;
	argv += used;
	argv[0] = const_cast<char *>("linkgate-dpdk");

	CLI::App cli{"linkgate-dpdk: the DPDK fast path of linkgate"};
	std::string socket_path, state_path, stats_json, acl_alg = "default", name = "dpdk", dump_acl;
	std::vector<std::string> port_specs, route_specs, local_specs;
	size_t flows = LG_CT_CAPACITY_DEFAULT;
	unsigned mbufs = 0;
	double duration = 0;
	unsigned reclaim_ms = 1000;
	cli.add_option("--socket", socket_path, "linkgated's control socket: generations come from it");
	cli.add_option("--state", state_path, "run standalone on this state file (no linkgated)")->check(CLI::ExistingFile);
	cli.add_option("--port", port_specs, "DPDK port N, and the VNet whose traffic arrives there (N=VNET)")->required();
	cli.add_option("--route", route_specs, "PREFIX=PORT,MAC: destinations in PREFIX leave by PORT to next hop MAC");
	cli.add_option("--local", local_specs, "an address of this host (passed, not forwarded)");
	cli.add_option("--flows", flows, "flow table capacity")->transform(kDecimal)->check(CLI::Range(size_t(1), size_t(100000000)));
	cli.add_option("--mbufs", mbufs, "mbuf pool size (default: every queue's rings and the lcores' caches, at least 8191 per port + 2048)")
		->transform(kDecimal)->check(CLI::Range(1024u, 16u << 20));
	cli.add_option("--acl-alg", acl_alg, "rte_acl classify algorithm")
		->check(CLI::IsMember({"default", "scalar", "sse", "avx2", "avx512x16", "avx512x32"}));
	cli.add_option("--name", name, "name shown by linkgatectl stats");
	// linkgated's option, but from 100 ms (this main loop's step; linkgated
	// takes 10). Each sweep walks the flow table: at 1M flows, every second
	// costs a fifth of a CPU.
	cli.add_option("--reclaim-interval", reclaim_ms, "milliseconds between sweeps of expired flows (default 1000)")
		->transform(kDecimal)->check(CLI::Range(100u, 3600000u));
	// Read with from_chars below (fixed: digits and a point), not CLI11's
	// strtod: that took hex floats ("0x1p3"), exponents and leading blanks.
	std::string duration_text = "0";
	cli.add_option("--duration", duration_text, "stop after this many seconds (0: until SIGINT/SIGTERM)");
	cli.add_option("--stats-json", stats_json, "write counters here when stopping");
	std::string classify_path;
	uint32_t classify_dir = 0;
	unsigned tracestep = 32, iter = 1;
	cli.add_option("--classify-trace", classify_path,
		       "with --state: time NSG direction --classify-dir's classifier alone on this dpdk-test-acl IPv4 "
		       "trace and exit");
	cli.add_option("--classify-dir", classify_dir, "NSG direction of --classify-trace")->transform(kDecimal);
	cli.add_option("--tracestep", tracestep, "--classify-trace: tuples per call")->transform(kDecimal)->check(CLI::Range(1u, 4096u));
	cli.add_option("--iter", iter, "--classify-trace: passes over the trace")->transform(kDecimal)->check(CLI::Range(1u, 1000000u));
	cli.add_option("--dump-acl", dump_acl,
		       "with --state: write each NSG direction's IPv4 rte_acl rules to PREFIX<dir>-<nsg>.rules "
		       "(dpdk-test-acl's format) and exit");
	try {
		cli.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		if (e.get_exit_code() == 0) { // --help
			cli.exit(e);
			rte_eal_cleanup();
			return 0;
		}
		// One line, as every other error of linkgate-dpdk.
		lg::dp::log("%s (see --help)", e.what());
		rte_eal_cleanup();
		return 2;
	}
	if (socket_path.empty() == state_path.empty()) {
		lg::dp::log("give exactly one of --socket and --state");
		rte_eal_cleanup();
		return 2;
	}

	if ((!dump_acl.empty() || !classify_path.empty()) && state_path.empty()) {
		lg::dp::log("--dump-acl and --classify-trace need --state");
		rte_eal_cleanup();
		return 2;
	}
	std::string bad;
	if (cli.count("--dump-acl") && dump_acl.empty())
		bad = "--dump-acl: give a path prefix";
	else if (cli.count("--classify-trace") && classify_path.empty())
		bad = "--classify-trace: give a file";
	else if (auto [end, ec] = std::from_chars(duration_text.data(), duration_text.data() + duration_text.size(),
						    duration, std::chars_format::fixed);
		 ec != std::errc() || end != duration_text.data() + duration_text.size() || !std::isfinite(duration) ||
		 std::signbit(duration)) // -0 too
		bad = "--duration: a number of seconds, 0 or more";
	else if (!valid_dataplane_name(name))
		bad = "--name: 1-64 characters of A-Z a-z 0-9 . _ -";
	else if (socket_path.size() >= sizeof(sockaddr_un::sun_path))
		bad = "--socket: the path is longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
		      " bytes, more than a Unix socket address holds";
	if (!bad.empty()) {
		lg::dp::log("%s", bad.c_str());
		rte_eal_cleanup();
		return 2;
	}

	App app;
	g_app = &app;
	app.name = name;
	for (auto &s : port_specs) {
		Port p{};
		auto eq = s.find('=');
		auto id = port_number(std::string_view(s).substr(0, eq));
		if (!id || !rte_eth_dev_is_valid_port(*id)) {
			lg::dp::log("--port %s: no such DPDK port (%u available)", s.c_str(),
				     rte_eth_dev_count_avail());
			rte_eal_cleanup();
			return 2;
		}
		if (std::any_of(app.ports.begin(), app.ports.end(), [&](const Port &o) { return o.id == *id; })) {
			lg::dp::log("--port %s: port %u is given twice", s.c_str(), unsigned(*id));
			rte_eal_cleanup();
			return 2;
		}
		p.id = *id;
		if (eq != std::string::npos)
			p.vnet = s.substr(eq + 1);
		app.ports.push_back(p);
	}
	// Arguments first, ports after: an argument error leaves no port started.
	dp::EngineConfig cfg;
	for (auto &r : route_specs) {
		auto mr = parse_route(r, app.ports);
		if (!mr) {
			lg::dp::log("%s", mr.error().c_str());
			rte_eal_cleanup();
			return 2;
		}
		// The first route of a prefix would win, unseen: one per prefix.
		if (std::any_of(cfg.mac_routes.begin(), cfg.mac_routes.end(),
				[&](const dp::MacRoute &o) { return o.prefix == mr->prefix; })) {
			lg::dp::log("--route %s: prefix %s is given twice", r.c_str(), mr->prefix.str().c_str());
			rte_eal_cleanup();
			return 2;
		}
		cfg.mac_routes.push_back(*mr);
	}
	for (auto &l : local_specs) {
		auto a = Addr::parse(l);
		if (!a) {
			lg::dp::log("--local %s: not an IP address", l.c_str());
			rte_eal_cleanup();
			return 2;
		}
		cfg.host.local_addresses.push_back(*a);
	}
	unsigned lcore;
	RTE_LCORE_FOREACH_WORKER(lcore)
	app.worker_lcores.push_back(lcore);
	if (app.worker_lcores.empty()) {
		lg::dp::log("no worker lcore: give the EAL at least two (-l 0,1)");
		rte_eal_cleanup();
		return 2;
	}
	unsigned workers = unsigned(app.worker_lcores.size());
	if (workers >= LG_HOST_CPUS) {
		lg::dp::log("%u worker lcores, more than the %d this build serves: give the EAL "
				     "fewer lcores (-l)", workers, LG_HOST_CPUS - 1);
		rte_eal_cleanup();
		return 2;
	}
	const std::pair<const char *, int> algs[] = {{"default", 0}, {"scalar", RTE_ACL_CLASSIFY_SCALAR},
		{"sse", RTE_ACL_CLASSIFY_SSE}, {"avx2", RTE_ACL_CLASSIFY_AVX2},
		{"avx512x16", RTE_ACL_CLASSIFY_AVX512X16}, {"avx512x32", RTE_ACL_CLASSIFY_AVX512X32}};
	for (auto &[n, v] : algs)
		if (acl_alg == n)
			cfg.acl_algorithm = v;
	if (!acl_alg_runs(cfg.acl_algorithm)) {
		lg::dp::log("--acl-alg %s: rte_acl cannot run it here (the CPU, or the EAL's "
			     "--force-max-simd-bitwidth)",
			     acl_alg.c_str());
		rte_eal_cleanup();
		return 2;
	}
	// After the arguments, before the ports: a state file that cannot be
	// read or is not valid stops the run before any port is set up
	// (compiling it needs the engine, below).
	std::optional<State> state;
	if (!state_path.empty()) {
		auto j = read_json_file(state_path);
		auto s = j ? checked_state(*j) : Result<State>(err(j.error()));
		if (!s) {
			lg::dp::log("%s", s.error().c_str());
			rte_eal_cleanup();
			return 1;
		}
		state = std::move(*s);
	}
	if (!mbufs) {
		// Every RX ring a NIC fills at start and every TX ring's unfreed
		// mbufs (a queue of each per worker and port), the lcores' pool
		// caches (up to 1.5 x 256 each) and a burst in flight per worker;
		// at least the old 8191 a port + 2048.
		unsigned ports = unsigned(app.ports.size());
		mbufs = std::max(8191 * ports + 2048, ports * workers * 2 * kRing + (workers + 1) * 384 + workers * 64 + 2048);
	}
	rte_mempool *pool = rte_pktmbuf_pool_create("lg_mbufs", mbufs, 256, 0,
						    RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
	if (!pool) {
		lg::dp::log("no mbuf pool: %s", rte_strerror(rte_errno));
		rte_eal_cleanup();
		return 1;
	}
	for (auto &p : app.ports) {
		auto q = dp::setup_port(p.id, workers, pool, &p.mac, kRing);
		if (!q) {
			lg::dp::log("%s", q.error().c_str());
			return finish(app, 1);
		}
		p.queues = *q;
	}

	cfg.workers = workers;
	cfg.timeouts.flow_capacity = flows;
	for (auto &p : app.ports)
		cfg.host.interfaces.push_back(HostInterface{ifindex_of(p.id), p.mac, p.vnet});
	auto eng = dp::Engine::create(cfg);
	if (!eng) {
		lg::dp::log("%s", eng.error().c_str());
		return finish(app, 1);
	}
	app.engine = std::move(*eng);

	// Spread (port, queue) pairs over the workers.
	std::vector<uint16_t> port_ids;
	for (auto &p : app.ports)
		port_ids.push_back(p.id);
	app.pipeline = std::make_unique<dp::Pipeline>(*app.engine, port_ids, workers);
	size_t k = 0;
	for (auto &p : app.ports)
		for (uint16_t q = 0; q < p.queues; q++)
			app.pipeline->assign(unsigned(k++ % workers), p.id, q);

	// No SA_RESTART: a signal ends the agent channel's blocking calls.
	struct sigaction sa {};
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	{
		std::lock_guard lk(g_tel_mu);
		g_serving = true;
	}
	rte_telemetry_register_cmd("/linkgate/stats", telemetry_stats, "linkgate-dpdk counters");

	std::unique_ptr<AgentLink> agent;
	if (!state_path.empty()) {
		if (auto st = apply_state(*state, 1); !st) {
			lg::dp::log("%s", st.error().c_str());
			return finish(app, 1);
		}
		state.reset(); // compiled: not kept for the whole run
		if (!dump_acl.empty() || !classify_path.empty()) {
			int rc = 0;
			if (!classify_path.empty())
				rc = classify_trace(*app.engine, classify_dir, classify_path, tracestep, iter);
			const CompiledTables &t = app.engine->live();
			for (uint32_t d = 0; d < t.nsg_dirs.size() && rc == 0 && !dump_acl.empty(); d++) {
				uint32_t nsg = t.nsg_dirs[d].nsg;
				std::string path = dump_acl + std::to_string(d) + "-" +
						   (nsg < t.nsg_names.size() ? t.nsg_names[nsg] : "nsg") + ".rules";
				auto rules = dp::acl_rules(t, d, cfg.acl_max_rules);
				std::string text = rules ? dp::acl_rules_test_acl_v4(*rules) : "";
				FILE *f = rules ? std::fopen(path.c_str(), "w") : nullptr;
				if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
					lg::dp::log("%s: %s", path.c_str(),
						     rules ? std::strerror(errno) : rules.error().c_str());
					rc = 1;
				} else {
					std::printf("%s %zu\n", path.c_str(), size_t(std::count(text.begin(), text.end(), '\n')));
				}
				if (f && std::fclose(f))
					rc = 1;
			}
			return finish(app, rc);
		}
	} else {
		agent = std::make_unique<AgentLink>(socket_path);
		// Nothing is forwarded before the first generation; --duration
		// bounds the wait too (an agent that never answers).
		auto wait_start = std::chrono::steady_clock::now();
		while (!g_stop && !app.engine->ready()) {
			agent->step(100);
			if (duration > 0 &&
			    std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count() >= duration)
				break;
		}
		if (!app.engine->ready()) {
			lg::dp::log("stopped before linkgated sent a generation");
			return finish(app, 0);
		}
	}
	app.started = std::chrono::steady_clock::now().time_since_epoch().count();
	for (unsigned w = 0; w < workers; w++)
		if (int e = rte_eal_remote_launch(worker_main, reinterpret_cast<void *>(uintptr_t(w)), app.worker_lcores[w])) {
			lg::dp::log("cannot start worker lcore %u: %s", app.worker_lcores[w],
				     std::strerror(-e));
			g_stop = true;
			rte_eal_mp_wait_lcore();
			return finish(app, 1);
		}
	lg::dp::log("%zu ports, %u workers, generation %llu", app.ports.size(), workers,
		     (unsigned long long)app.engine->generation());

	auto last_reclaim = std::chrono::steady_clock::now();
	while (!g_stop) {
		if (agent)
			agent->step(100);
		else
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		auto now = std::chrono::steady_clock::now();
		if (duration > 0 && std::chrono::duration<double>(app.up()).count() >= duration)
			g_stop = true;
		if (now - last_reclaim >= std::chrono::milliseconds(reclaim_ms)) {
			try {
				app.engine->reclaim(dp::Engine::clock_ns());
			} catch (const std::bad_alloc &) { // tried again at the next interval
				lg::dp::log("out of memory reclaiming flows");
			}
			last_reclaim = now;
		}
	}
	rte_eal_mp_wait_lcore();
	json out = counters_json();
	int rc = 0;
	if (!stats_json.empty()) {
		std::ofstream f(stats_json);
		f << out.dump(2) << "\n";
		f.close();
		if (!f) {
			lg::dp::log("--stats-json %s: cannot write it", stats_json.c_str());
			rc = 1;
		}
	}
	lg::dp::log("stopped: %s", out["ports"].dump().c_str());
	return finish(app, rc);
}
