#include "plane.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <utility>

#include "arm_json.hpp"
#include "evaluator.hpp"
#include "flow_json.hpp"
#include "log.hpp"
#include "table_eval.hpp"

namespace lg::agent {

using json = nlohmann::json;

void test_pause(const char *point)
{
	static const char *want = std::getenv("LINKGATED_TEST_PAUSE");
	if (want && std::strcmp(want, point) == 0) {
		log("test pause at %s", point);
		raise(SIGSTOP);
	}
}

bool test_fail(const char *what)
{
	static const char *want = std::getenv("LINKGATED_TEST_FAIL");
	return want && std::strcmp(want, what) == 0;
}

namespace {

ControlScheduling sched_cfg;
pid_t control_tid = 0;
bool after_publish_now = false;

bool set_fifo(int prio)
{
	sched_param sp{};
	sp.sched_priority = prio;
	return pthread_setschedparam(pthread_self(), prio ? SCHED_FIFO : SCHED_OTHER, &sp) == 0;
}

} // namespace

Status configure_control_scheduling(const ControlScheduling &s)
{
	sched_cfg = s;
	control_tid = pid_t(syscall(SYS_gettid));
	if (s.fifo && !set_fifo(s.fifo))
		return err(std::string("cannot switch to SCHED_FIFO: ") + std::strerror(errno));
	return Ok{};
}

void control_scheduling_after_publish()
{
	if (!sched_cfg.fifo || after_publish_now || pid_t(syscall(SYS_gettid)) != control_tid)
		return;
	after_publish_now = true;
	set_fifo(0);
}

void control_scheduling_ready()
{
	if (!after_publish_now)
		return;
	after_publish_now = false;
	set_fifo(sched_cfg.fifo);
}

namespace {

// LINKGATED_TEST_TIMING=1: one stderr line per commit with the monotonic
// clock (ns) at its steps, for agent_bench (same clock as steady_clock).
bool timing_on()
{
	static const bool on = std::getenv("LINKGATED_TEST_TIMING") != nullptr;
	return on;
}
// This thread's minor page faults and involuntary context switches (the
// commit preempted), for the timing line.
std::pair<long, long> faults_preempts()
{
	rusage ru{};
	getrusage(RUSAGE_THREAD, &ru);
	return {ru.ru_minflt, ru.ru_nivcsw};
}
int64_t mono_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

} // namespace

Result<IfaceSpec> parse_iface_spec(const std::string &text)
{
	IfaceSpec s;
	auto eq = text.find('=');
	s.name = text.substr(0, eq);
	if (eq != std::string::npos) {
		s.vnet = text.substr(eq + 1); // "IFACE=": no VNet (the backend / Internet side)
		s.explicit_vnet = true;
	}
	if (s.name.empty() || s.name.size() >= IF_NAMESIZE)
		return err("--xdp-interface " + text + ": bad interface name");
	return s;
}

namespace {

Result<std::vector<Addr>> local_addresses()
{
	std::vector<Addr> out;
	ifaddrs *ifa = nullptr;
	if (getifaddrs(&ifa) != 0)
		return err(std::string("cannot read the host's addresses: ") + std::strerror(errno));
	for (ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			auto *sin = reinterpret_cast<sockaddr_in *>(i->ifa_addr);
			out.push_back(Addr::from_v4(ntohl(sin->sin_addr.s_addr)));
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			auto *sin6 = reinterpret_cast<sockaddr_in6 *>(i->ifa_addr);
			Addr a;
			std::memcpy(a.b.data(), &sin6->sin6_addr, 16);
			out.push_back(a);
		}
	}
	freeifaddrs(ifa);
	return out;
}

// FNV-1a: detects "the pinned generation is this state", not an adversary.
constexpr uint64_t kFnvBasis = 1469598103934665603ull;

// FNV-1a of [p, p + n), continuing from h (kFnvBasis to start).
uint64_t fnv1a(const void *p, size_t n, uint64_t h = kFnvBasis)
{
	for (const auto *c = static_cast<const unsigned char *>(p), *e = c + n; c < e; c++) {
		h ^= *c;
		h *= 1099511628211ull;
	}
	return h;
}

uint64_t fnv1a(const std::string &s) { return fnv1a(s.data(), s.size()); }

std::string marker_path(const std::string &state) { return state + ".live"; }

// The live marker: {"generation": N, "digest": D, "counters": C}. Anything
// else (missing, not JSON, wrong types, a generation near wrapping) reads as
// no marker; counters of the wrong shape read as none.
//
// C is the counters' bookkeeping as of that generation's publish, for each
// of rules, privateEndpoints and servers: the generation's names (index
// order), the totals by name credited before it (base) and the raw
// counters at its flip (snap). A restart whose pinned generation is N
// continues from it exactly; without it the raw counters cannot be told
// apart from those of earlier owners of the same index.
struct CounterBook {
	std::vector<std::string> names;
	std::map<std::string, uint64_t> base;
	std::vector<uint64_t> snap;
};
struct LiveMarker {
	uint64_t generation = 0;
	std::string digest;
	bool has_counters = false;
	CounterBook books[3]; // rules, privateEndpoints, servers
};
constexpr const char *kBooks[3] = {"rules", "privateEndpoints", "servers"};

json book_json(const std::vector<std::string> &names, const std::map<std::string, uint64_t> &base,
	       const std::vector<uint64_t> &snap)
{
	return json{{"names", names}, {"base", base}, {"snap", snap}};
}

bool read_book(const json &j, CounterBook &b)
{
	if (!j.is_object() || !j.contains("names") || !j.contains("base") || !j.contains("snap") ||
	    !j["names"].is_array() || !j["base"].is_object() || !j["snap"].is_array() ||
	    j["snap"].size() > j["names"].size())
		return false;
	for (const json &n : j["names"]) {
		if (!n.is_string())
			return false;
		b.names.push_back(n.get<std::string>());
	}
	for (auto &[k, v] : j["base"].items()) {
		if (!v.is_number_unsigned())
			return false;
		b.base[k] = v.get<uint64_t>();
	}
	for (const json &v : j["snap"]) {
		if (!v.is_number_unsigned())
			return false;
		b.snap.push_back(v.get<uint64_t>());
	}
	return true;
}

LiveMarker read_live_marker(const std::string &state)
{
	LiveMarker m;
	auto j = read_json_file(marker_path(state));
	if (!j || !j->is_object())
		return m;
	auto g = j->find("generation");
	auto d = j->find("digest");
	if (g == j->end() || !g->is_number_unsigned() || g->get<uint64_t>() >= (uint64_t(1) << 62))
		return m;
	m.generation = g->get<uint64_t>();
	if (d != j->end() && d->is_string())
		m.digest = d->get<std::string>();
	auto c = j->find("counters");
	if (c != j->end() && c->is_object()) {
		m.has_counters = true;
		for (int k = 0; k < 3; k++)
			m.has_counters = m.has_counters && c->contains(kBooks[k]) && read_book((*c)[kBooks[k]], m.books[k]);
		if (!m.has_counters)
			for (auto &b : m.books)
				b = CounterBook{};
	}
	return m;
}

} // namespace

Result<std::vector<InterfaceBinding>> Plane::bindings(const State &s) const
{
	std::vector<InterfaceBinding> out;
	for (size_t i = 0; i < o_.ifaces.size(); i++) {
		const IfaceSpec &f = o_.ifaces[i];
		InterfaceBinding b;
		b.ifindex = ifindex_[i];
		if (f.explicit_vnet) {
			b.vnet = f.vnet; // a VNet not (yet) in the state binds nothing: VNI 0
		} else if (s.virtualNetworks.size() == 1) {
			b.vnet = s.virtualNetworks[0].name;
		} else if (s.virtualNetworks.size() > 1) {
			// Guessing would move the interface's traffic to another VNet's policy.
			return err("interface " + f.name + " has no VNet and the state has " +
				   std::to_string(s.virtualNetworks.size()) + ": start linkgated with --xdp-interface " +
				   f.name + "=VNET");
		}
		out.push_back(b);
	}
	return out;
}

// This agent's build: the bytes of its executable, hashed once. A start by
// another build publishes the state file again rather than adopting the
// pinned tables, which the other build's compiler laid out.
static const std::string &build_identity()
{
	// In blocks: a character at a time took 21 s for a 91 MB sanitizer
	// build, long enough for clients of the listening socket to give up.
	static const std::string id = [] {
		int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return std::string("unknown");
		std::vector<char> blk(1 << 20);
		uint64_t h = kFnvBasis;
		ssize_t n;
		while ((n = ::read(fd, blk.data(), blk.size())) > 0 || (n < 0 && errno == EINTR))
			if (n > 0)
				h = fnv1a(blk.data(), size_t(n), h);
		::close(fd);
		if (n < 0)
			return std::string("unknown");
		char buf[17];
		std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
		return std::string(buf);
	}();
	return id;
}

std::string Plane::digest(const State &s, const std::vector<InterfaceBinding> &b) const
{
	std::string text = state_to_json(s).dump() + "|build=" + build_identity();
	for (const auto &x : b)
		text += "|" + std::to_string(x.ifindex) + "=" + x.vnet;
	char buf[17];
	std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)fnv1a(text));
	return buf;
}

// Which generation the pinned dataplane holds, and of which state: written
// after each publish (temp file + rename). Not fsynced: when it is lost or
// stale, the next start republishes the state file, which changes nothing
// that was correct.
Status Plane::write_live_marker(uint64_t generation, const std::string &dig) const
{
	json m{{"generation", generation}, {"digest", dig}};
	if (xdp_)
		m["counters"] = {{kBooks[0], book_json(live_.rule_names, base_rules_, snap_rules_)},
				 {kBooks[1], book_json(live_.pe_names, base_pes_, snap_pes_)},
				 {kBooks[2], book_json(live_.server_names, base_servers_, snap_servers_)}};
	// 0600 as the state file: it holds the state's object names.
	return write_file_atomic(marker_path(o_.state_path), m.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
				 false);
}

namespace {
// The interface's forwarding switch for the family (-1: unreadable), the one
// bpf_fib_lookup checks on the ingress device.
int forwarding_of(uint32_t ifindex, bool v6)
{
	char name[IF_NAMESIZE];
	if (!if_indextoname(ifindex, name))
		return -1;
	std::ifstream f(std::string("/proc/sys/net/") + (v6 ? "ipv6" : "ipv4") + "/conf/" + name + "/forwarding");
	int v = -1;
	return f >> v ? v : -1;
}

// Whether the state holds an address of the family: an address space (a
// VNet's, a local network gateway's), a NIC's or a private endpoint's
// address, a server's public IP or a backend. Forwarding off for a family
// it holds none of breaks nothing the operator configured.
bool holds_family(const State &s, bool v6)
{
	auto of = [v6](const std::string &a) { return !a.empty() && (a.find(':') != std::string::npos) == v6; };
	auto any = [&](const std::vector<std::string> &v) { return std::any_of(v.begin(), v.end(), of); };
	for (const auto &v : s.virtualNetworks)
		if (any(v.addressPrefixes))
			return true;
	for (const auto &l : s.localNetworkGateways)
		if (any(l.addressPrefixes))
			return true;
	for (const auto &n : s.networkInterfaces)
		for (const std::string *a : n.addresses())
			if (of(*a))
				return true;
	for (const auto &pe : s.privateEndpoints)
		if (of(pe.privateIPAddress))
			return true;
	for (const auto &m : s.servers) {
		if (of(m.publicIp))
			return true;
		for (const auto &b : m.backends)
			if (of(b.address))
				return true;
	}
	return false;
}
} // namespace

// With forwarding off the kernel's FIB lookup refuses every packet that
// arrives there, and the program drops what it would forward: said once per
// interface and family while it stays off, for the families the state holds
// (an IPv4-only state on a host without IPv6 forwarding is not a problem).
void Plane::warn_forwarding_off(const State &s) noexcept
{
	// After a commit's publish and state file: nothing here may fail it.
	try {
		const bool held[2] = {holds_family(s, false), holds_family(s, true)};
		for (size_t i = 0; i < ifindex_.size() && i < o_.ifaces.size(); i++)
			for (bool v6 : {false, true}) {
				std::pair<uint32_t, bool> key{ifindex_[i], v6};
				int on = held[v6] ? forwarding_of(ifindex_[i], v6) : -1;
				if (on > 0 || !held[v6]) // on, or the family gone: said again if it comes back off
					forwarding_warned_.erase(key);
				if (on != 0 || !forwarding_warned_.insert(key).second)
					continue;
				const char *name = o_.ifaces[i].name.c_str();
				log("%s: %s forwarding is off (sysctl net.%s.conf.%s.forwarding=0): "
				    "every %s packet arriving there that the policy allows is dropped no-route",
				    name, v6 ? "IPv6" : "IPv4", v6 ? "ipv6" : "ipv4", name, v6 ? "IPv6" : "IPv4");
			}
	} catch (...) {
		// Out of memory: the warning waits for the next commit.
	}
}

Result<std::unique_ptr<Plane>> Plane::open(const PlaneOptions &o, const State &initial)
{
	std::unique_ptr<Plane> p(new Plane);
	p->o_ = o;
	p->current_ = initial;
	for (const auto &f : o.ifaces) {
		unsigned idx = if_nametoindex(f.name.c_str());
		if (idx == 0)
			return err("--xdp-interface " + f.name + ": no such interface");
		p->ifindex_.push_back(idx);
	}
	auto b = p->bindings(initial);
	if (!b)
		return err(b.error());
	std::string dig = p->digest(initial, *b);
	// An empty state holds nothing a fast path may lose: one that runs a
	// generation this state file never had is enforcing another's state.
	const State &i = initial;
	if (i.virtualNetworks.empty() && i.localNetworkGateways.empty() && i.networkSecurityGroups.empty() &&
	    i.networkInterfaces.empty() && i.privateEndpoints.empty() && i.servers.empty())
		p->empty_guard_ = read_live_marker(o.state_path).generation;
	// A state file that is not there (a mistyped --state, a deleted file)
	// must not replace what runs with an empty state: every endpoint and
	// NSG would go at once.
	auto refuse_empty = [&](const std::string &runs) {
		return err("the state file " + o.state_path + " does not exist, and " + runs +
			   ": start with the state file it was published from; to publish an empty state over it, "
			   "write one first (echo '{}' > " + o.state_path + ")");
	};

	if (o.ifaces.empty()) {
		// Links pinned by an earlier XDP agent go on enforcing their
		// tables, which this agent would never update.
		if (!o.xdp.pin_dir.empty())
			if (DIR *d = opendir(o.xdp.pin_dir.c_str())) {
				std::string links;
				while (dirent *e = readdir(d))
					if (std::string_view(e->d_name).starts_with("link_"))
						links += std::string(links.empty() ? "" : ", ") + e->d_name;
				closedir(d);
				if (!links.empty())
					return err("no --xdp-interface, but XDP programs pinned in " + o.xdp.pin_dir + " (" + links +
						   ") still enforce an earlier agent's tables: give the interfaces with "
						   "--xdp-interface, or remove " + o.xdp.pin_dir + " to let them go");
			}
		// No XDP: the state loaded at start is the generation after the last
		// one committed (the live marker), so numbers never go back across a
		// restart: connected fast paths stamp their flows with them.
		uint64_t last = read_live_marker(o.state_path).generation;
		if (o.no_state_file && last)
			return refuse_empty("its live marker says generation " + std::to_string(last) + " was published");
		uint64_t gen = last + 1;
		auto t = compile(initial, *b, gen, &p->cache_);
		if (!t)
			return err("compile: " + t.error());
		if (Status st = p->write_live_marker(gen, dig); !st && p->empty_guard_ != UINT64_MAX) {
			// The next start would reuse this number: the guard would then
			// refuse the fast paths this agent served, with no end.
			log("%s (so a fast path that registers is not checked for running another state file's generation)",
			    st.error().c_str());
			p->empty_guard_ = UINT64_MAX;
		}
		p->live_ = std::move(*t);
		p->generation_ = gen;
		return p;
	}

	// One agent per pinned dataplane: a second one (on another socket) would
	// publish over the first one's tables and let go of its links.
	if (!o.xdp.pin_dir.empty()) {
		if (mkdir(o.xdp.pin_dir.c_str(), 0700) && errno != EEXIST)
			return err("cannot create the pin directory " + o.xdp.pin_dir + ": " + std::strerror(errno) +
				   " (is bpffs mounted?)");
		p->lock_fd_ = ::open(o.xdp.pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (p->lock_fd_ < 0)
			return err("cannot open the pin directory " + o.xdp.pin_dir + ": " + std::strerror(errno));
		if (flock(p->lock_fd_, LOCK_EX | LOCK_NB))
			return err(errno == EWOULDBLOCK ? "another linkgated is using the dataplane pinned in " + o.xdp.pin_dir
							: "cannot lock " + o.xdp.pin_dir + ": " + std::strerror(errno));
	}
	auto x = XdpDataplane::load(o.xdp);
	if (!x)
		return err("XDP dataplane: " + x.error());
	p->xdp_ = std::move(*x);
	p->nl_fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	sockaddr_nl nl{};
	nl.nl_family = AF_NETLINK;
	bool joined = p->nl_fd_ >= 0 && bind(p->nl_fd_, reinterpret_cast<sockaddr *>(&nl), sizeof nl) == 0;
	for (unsigned g : HostEvents::kGroups)
		joined = joined && setsockopt(p->nl_fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) == 0;
	if (!joined)
		return err(std::string("cannot watch the host's addresses and routes (netlink): ") + std::strerror(errno));
	// Room for a burst of neighbour notices; an overflow (ENOBUFS) is a
	// change of everything, so this only saves cache refills.
	int rcvbuf = 1 << 20;
	(void)setsockopt(p->nl_fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	// The neighbours' link-layer addresses as they are now, read after
	// joining (a change between the two is both read and announced): a
	// later notice that repeats one is a state change, not a change. Best
	// effort: without it each neighbour's first notice is a change.
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0 || !p->events_.remember_neighbours(fd))
		log("cannot read the host's neighbours (%s); each one's next notice counts as a change",
		    std::strerror(errno));
	if (fd >= 0)
		close(fd);
	auto addrs = local_addresses();
	if (!addrs)
		return err(addrs.error());
	if (Status st = p->xdp_->set_local_addresses(*addrs); !st)
		return err("XDP dataplane: " + st.error());
	// Until it is attached (below), this program trusts no cached next hop.
	p->xdp_->fib_distrust();

	// The pinned generation is kept when it is this state file on these
	// interfaces; otherwise the state file is published as the next one.
	uint64_t pinned = p->xdp_->adopted() ? p->xdp_->generation() : 0;
	if (o.no_state_file && pinned)
		return refuse_empty("the dataplane pinned in " + o.xdp.pin_dir + " runs generation " + std::to_string(pinned));
	// The marker can trail the pins (its write may fail after a publish):
	// what the pins run was published from this state file too.
	if (p->empty_guard_ != UINT64_MAX)
		p->empty_guard_ = std::max(p->empty_guard_, pinned);
	bool same = false;
	if (pinned) {
		LiveMarker m = read_live_marker(o.state_path);
		same = m.generation == pinned && m.digest == dig;
		if (m.generation == pinned && m.has_counters) {
			// The pinned generation's counter bookkeeping: the totals
			// carry on by name across the restart.
			p->live_.rule_names = std::move(m.books[0].names);
			p->base_rules_ = std::move(m.books[0].base);
			p->snap_rules_ = std::move(m.books[0].snap);
			p->live_.pe_names = std::move(m.books[1].names);
			p->base_pes_ = std::move(m.books[1].base);
			p->snap_pes_ = std::move(m.books[1].snap);
			p->live_.server_names = std::move(m.books[2].names);
			p->base_servers_ = std::move(m.books[2].base);
			p->snap_servers_ = std::move(m.books[2].snap);
		}
	}
	uint64_t gen = same ? pinned : pinned + 1;
	auto t = compile(initial, *b, gen, &p->cache_);
	if (!t)
		return err("compile: " + t.error());
	if (!same) {
		if (Status st = p->xdp_->publish(*t); !st)
			return err("publish: " + st.error());
	}
	// As at a commit's flip: what was counted since the bookkeeping was
	// written goes to its generation's names. Without bookkeeping of the
	// pinned generation (an older marker, a crash between a publish and
	// its marker) there are no names to credit, and the totals start
	// from zero rather than from counts of whichever rules held the
	// indices before.
	p->rebase(*t);
	p->live_ = std::move(*t);
	// Published already: a marker that cannot be written (a full or
	// read-only state directory) must not keep the interfaces unattached.
	// Stale, it costs the next start a republish, as after a commit.
	if (!same)
		if (Status st = p->write_live_marker(gen, dig); !st)
			log("%s (the next start publishes the state again)", st.error().c_str());
	p->generation_ = gen;
	// After the tables: the first packet already sees them. A pinned link is
	// taken over by an atomic program swap.
	for (uint32_t idx : p->ifindex_)
		if (Status st = p->xdp_->attach(idx); !st)
			return err("attach: " + st.error());
	// An earlier run's links of interfaces no longer configured (or gone)
	// would go on running this program, on bindings that lack them.
	p->prune_links();
	p->warn_forwarding_off(initial);
	// Whatever changed while no agent read the events (or before its socket
	// existed) is a change: no next hop resolved before now is trusted.
	// Dated a second ahead: a program older than lg_nexthop.at, which ran
	// until the attach, stored an expiry up to a second ahead there.
	p->xdp_->fib_changed(1000000000ull);
	p->fib_changes_++;
	return p;
}

Result<uint64_t> Plane::commit(const State &next)
{
	int64_t t_start = timing_on() ? mono_ns() : 0;
	auto fp0 = timing_on() ? faults_preempts() : std::pair<long, long>{};
	auto b = bindings(next);
	if (!b)
		return err(b.error());
	uint64_t gen = generation_ + 1;
	// Unchanged servers' Maglev tables are reused; when the whole Maglev
	// array is the same (a PEC or NSG change), it moves over from live_
	// instead of being filled again, and the publish skips it.
	auto t = compile(next, *b, gen, &cache_, &live_);
	if (!t)
		return err("compile: " + t.error());
	auto give_back = [&] {
		if (live_.maglev.empty() && live_.maglev_version == t->maglev_version)
			live_.maglev = std::move(t->maglev);
	};
	int64_t t_compiled = timing_on() ? mono_ns() : 0, t_published = 0;
	std::pair<long, long> fp1 = fp0;
	// Enforcement first, then the state file, then the reply (docs/agent.md,
	// "Commit and dataplane"). The reply is the acknowledgement: a crash
	// before the file is in place leaves the file and the live marker on the
	// previous generation, and the next start publishes the file again (the
	// old generation, for a commit nobody was told about); a crash after it
	// leaves the new file, which the next start publishes or adopts.
	test_pause("before-publish");
	if (xdp_) {
		Status st = test_fail("publish") ? Status(err("publish refused (LINKGATED_TEST_FAIL)")) : xdp_->publish(*t);
		if (!st) {
			give_back();
			return err(st.error()); // nothing was written: the previous generation stays live
		}
		if (timing_on()) {
			t_published = mono_ns();
			fp1 = faults_preempts();
		}
		test_pause("after-publish");
		control_scheduling_after_publish(); // the rest of the commit is bookkeeping
		rebase(*t); // counter totals move to the new names at the flip
	}
	CompiledTables previous = std::exchange(live_, std::move(*t));
	generation_ = gen;
	bool renamed = false;
	// The same state again (a republish on new interface bindings): the
	// file holds it already, and a full disk must not undo the publish.
	Status saved = next == current_ ? Status(Ok{})
		       : test_fail("state-write")
			       ? Status(err(o_.state_path + ": write refused (LINKGATED_TEST_FAIL)"))
			       : save_state_file(o_.state_path, next, true, &renamed); // temp, fsync, rename, fsync dir
	if (saved && test_fail("state-durable")) // as a failed fsync of the directory, after the rename
		saved = err(o_.state_path + ": directory fsync refused (LINKGATED_TEST_FAIL)");
	if (!saved) {
		// A failure after the rename (the directory's fsync) leaves the new
		// state in the file: the previous one goes back first, so that a
		// restart does not bring back what this reply refuses.
		if (Status back = renamed ? save_state_file(o_.state_path, current_) : Status(Ok{}); !back)
			saved = err(saved.error() + "; the previous state could not be written back (" + back.error() + ")");
		// Live but not on disk: put the previous state back before failing,
		// so the dataplane, the file and the agent agree again.
		if (xdp_)
			return err(saved.error() + restore(std::move(previous)));
		generation_ = gen - 1;
		if (previous.maglev.empty() && previous.maglev_version == live_.maglev_version)
			previous.maglev = std::move(live_.maglev);
		live_ = std::move(previous);
		return err(saved.error());
	}
	test_pause("after-state-write");
	if (!(next == current_))
		empty_guard_ = UINT64_MAX; // the operator's state from here on (a relink republishes the same)
	(void)write_live_marker(gen, digest(next, *b)); // stale marker: republish at start, harmless
	current_ = next;
	rebound_ = false; // live on the bindings of ifindex_ as they are
	warn_forwarding_off(next); // a family the state did not hold before
	if (timing_on())
		log("timing generation %llu start %lld compiled %lld published %lld saved %lld faults %ld preempted %ld",
			     (unsigned long long)gen, (long long)t_start, (long long)t_compiled, (long long)t_published,
			     (long long)mono_ns(), fp1.first - fp0.first, fp1.second - fp0.second);
	return gen;
}

// After a failed state file write: the previous state (current_, which is
// what the file still holds) is published again, as the next generation
// number (numbers never go back: flows and fast paths are stamped with
// them). Returns what to add to the error.
std::string Plane::restore(CompiledTables previous)
{
	uint64_t gen = generation_ + 1;
	previous.generation = gen;
	previous.gcfg.generation = gen;
	if (previous.maglev.empty() && previous.maglev_version == live_.maglev_version)
		previous.maglev = live_.maglev; // it moved to the refused generation's tables
	if (Status st = xdp_->publish(previous); !st)
		return "; the previous state could not be published again (" + st.error() +
		       "): the dataplane enforces the refused change until the next commit or restart";
	rebase(previous);
	live_ = std::move(previous);
	generation_ = gen;
	if (auto b = bindings(current_))
		(void)write_live_marker(gen, digest(current_, *b));
	return "; the previous state is live again as generation " + std::to_string(gen);
}

size_t Plane::reclaim() { return xdp_ ? xdp_->reclaim() : 0; }

Plane::~Plane()
{
	// Nobody reads the host's changes any more: the program's cached next
	// hops go back to a second (the pinned program outlives the agent).
	if (xdp_)
		xdp_->fib_unwatched();
	if (nl_fd_ >= 0)
		close(nl_fd_);
	if (lock_fd_ >= 0)
		close(lock_fd_);
}

Status Plane::host_events()
{
	if (nl_fd_ < 0)
		return Ok{};
	alignas(nlmsghdr) char buf[16384];
	HostEvents::Seen seen;
	for (;;) {
		ssize_t r = recv(nl_fd_, buf, sizeof buf, MSG_DONTWAIT);
		if (r < 0 && errno == ENOBUFS) {
			seen |= events_.lost();
			continue;
		}
		if (r <= 0)
			break;
		seen |= events_.feed(buf, size_t(r));
	}
	event_messages_ += seen.messages;
	relink_pending_ |= seen.links;
	Status st = Ok{};
	// The whole set is read again. A failure (getifaddrs needs a socket:
	// EMFILE) is tried again at each heartbeat, as no later notice may
	// come; but a set lg_local cannot hold waits for the next address
	// notice, the only thing that can make it smaller. A failure is
	// reported when its cause is new (the first, or another than the last
	// reported), and so is the recovery.
	if (seen.addresses || addresses_pending_) {
		auto addrs = local_addresses();
		bool too_many = false;
		st = addrs ? xdp_->set_local_addresses(*addrs, &too_many) : err(addrs.error());
		addresses_pending_ = !st && !too_many;
		if (st && !addresses_error_.empty()) {
			log("host addresses read again");
			seen.fib = true; // lg_local changed since the last stamp
			addresses_error_.clear();
		} else if (!st && st.error() == addresses_error_) {
			st = Ok{};
		} else if (!st) {
			addresses_error_ = st.error();
		}
	}
	// After lg_local: a next hop resolved from here on sees the new set.
	if (seen.fib) {
		xdp_->fib_changed();
		fib_changes_++;
	}
	return st;
}

Result<bool> Plane::relink()
{
	relink_pending_ = false;
	if (!xdp_)
		return false;
	for (size_t i = 0; i < o_.ifaces.size(); i++) {
		unsigned idx = if_nametoindex(o_.ifaces[i].name.c_str());
		if (!idx)
			continue; // gone, and its link with it: attached when it comes back
		if (idx == ifindex_[i] && xdp_->attached(idx))
			continue;
		if (Status st = xdp_->attach(idx); !st)
			return err("interface " + o_.ifaces[i].name + ": attach: " + st.error());
		if (idx != ifindex_[i]) {
			ifindex_[i] = idx;
			rebound_ = true;
		}
	}
	if (Status st = xdp_->refresh_macs(ifindex_); !st)
		return err(st.error());
	return rebound_;
}

void Plane::prune_links()
{
	if (!xdp_)
		return;
	auto gone = xdp_->prune_links(ifindex_);
	if (!gone)
		log("%s", gone.error().c_str());
	else
		for (uint32_t idx : *gone)
			log("let go of the XDP link of interface %u (no configured interface has it)", idx);
}

Status Plane::fib_heartbeat()
{
	if (!xdp_)
		return Ok{};
	Status st = host_events(); // drained first: the watch vouches for everything before it
	xdp_->fib_watched_for(kFibWatchNs);
	return st;
}

json Plane::next_hops() const
{
	if (!xdp_)
		return json::object();
	return json{{"watched", xdp_->fib_watched_until_ns() > xdp_->now_ns()},
		    {"hostEvents", event_messages_},
		    {"fibChanges", fib_changes_},
		    {"neighbours", events_.neighbours()},
		    {"fastPath", xdp_->fast_packets()}};
}

json Plane::flow_log_counts() const
{
	if (!xdp_)
		return json::object();
	return json{{"on", xdp_->flow_log()},
		    {"written", xdp_->log_counter(LG_LOG_WRITTEN)},
		    {"lost", xdp_->log_counter(LG_LOG_LOST)}};
}

bool Plane::forwards(uint32_t vni, bool v6) const
{
	bool bound = false;
	for (const auto &[idx, b] : live_.ifaces)
		if (b.vni == vni) {
			bound = true;
			if (forwarding_of(idx, v6) != 0)
				return true;
		}
	return !bound;
}

// How the host answers for dst, as the XDP program would: one of its
// addresses (lg_local), else the kernel's route (RTM_GETROUTE, the lookup
// behind bpf_fib_lookup): none (no route, or not a unicast one) or its
// output interface. Not known without XDP or on an error. Only explain
// asks, one request at a time.
Dataplane::Route Plane::route(const Addr &dst) const
{
	if (!xdp_)
		return {};
	// The host's addresses, as the program's lg_local holds them.
	if (auto addrs = local_addresses(); !addrs)
		return {};
	else if (std::find(addrs->begin(), addrs->end(), dst) != addrs->end())
		return {Route::local, 0};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return {};
	timeval tv{1, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	bool v4 = dst.is_v4();
	struct {
		nlmsghdr h;
		rtmsg r;
		alignas(RTA_ALIGNTO) char attr[RTA_SPACE(16)];
	} req{};
	req.h.nlmsg_type = RTM_GETROUTE;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.h.nlmsg_seq = 1;
	req.r.rtm_family = v4 ? AF_INET : AF_INET6;
	req.r.rtm_dst_len = v4 ? 32 : 128;
	auto *a = reinterpret_cast<rtattr *>(req.attr);
	a->rta_type = RTA_DST;
	a->rta_len = RTA_LENGTH(v4 ? 4 : 16);
	std::memcpy(RTA_DATA(a), dst.b.data() + (v4 ? 12 : 0), v4 ? 4 : 16);
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg)) + RTA_ALIGN(a->rta_len);
	alignas(nlmsghdr) char buf[8192];
	ssize_t n = -1;
	if (send(fd, &req, req.h.nlmsg_len, 0) == ssize_t(req.h.nlmsg_len))
		n = recv(fd, buf, sizeof buf, 0);
	close(fd);
	if (n <= 0)
		return {};
	for (auto *h = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(h, size_t(n)); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_seq != 1)
			continue;
		if (h->nlmsg_type == NLMSG_ERROR) {
			// No route: ENETUNREACH (and the like) instead of a route.
			auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(h));
			int code = -e->error;
			if (code == ENETUNREACH || code == EHOSTUNREACH || code == EACCES || code == EINVAL)
				return {Route::none, 0};
			return {};
		}
		if (h->nlmsg_type != RTM_NEWROUTE)
			continue;
		auto *rt = static_cast<rtmsg *>(NLMSG_DATA(h));
		uint32_t oif = 0;
		int len = int(RTM_PAYLOAD(h));
		for (auto *x = RTM_RTA(rt); RTA_OK(x, len); x = RTA_NEXT(x, len))
			if (x->rta_type == RTA_OIF && RTA_PAYLOAD(x) >= sizeof(uint32_t))
				std::memcpy(&oif, RTA_DATA(x), sizeof oif);
		// A local, unreachable or blackhole route leaves by no interface:
		// the program's bpf_fib_lookup finds no route either.
		if (rt->rtm_type != RTN_UNICAST || !oif)
			return {Route::none, 0};
		return {Route::via, oif};
	}
	return {};
}

void Plane::rebase(const CompiledTables &next)
{
	auto move = [](const std::vector<std::string> &old_names, const std::vector<std::string> &new_names,
		       std::map<std::string, uint64_t> &base, std::vector<uint64_t> &snap, auto raw) {
		size_t n = std::max(old_names.size(), new_names.size());
		std::vector<uint64_t> now(n);
		for (size_t i = 0; i < n; i++)
			now[i] = raw(uint32_t(i));
		for (size_t i = 0; i < old_names.size(); i++)
			base[old_names[i]] += now[i] - std::min(now[i], i < snap.size() ? snap[i] : 0);
		now.resize(new_names.size());
		snap = std::move(now);
		std::erase_if(base, [&](auto &kv) {
			return std::find(new_names.begin(), new_names.end(), kv.first) == new_names.end();
		});
	};
	move(live_.rule_names, next.rule_names, base_rules_, snap_rules_, [&](uint32_t i) { return xdp_->rule_hits(i); });
	move(live_.pe_names, next.pe_names, base_pes_, snap_pes_, [&](uint32_t i) { return xdp_->pe_packets(i); });
	move(live_.server_names, next.server_names, base_servers_, snap_servers_,
	     [&](uint32_t i) { return xdp_->server_packets(i); });
}

DataplaneCounters Plane::counters()
{
	DataplaneCounters c;
	if (!xdp_)
		return c;
	c.reasons = xdp_->reason_counts();
	auto fill = [](const std::vector<std::string> &names, const std::map<std::string, uint64_t> &base,
		       const std::vector<uint64_t> &snap, std::map<std::string, uint64_t> &out, auto raw) {
		for (size_t i = 0; i < names.size(); i++) {
			uint64_t r = raw(uint32_t(i)), s = i < snap.size() ? snap[i] : 0;
			auto it = base.find(names[i]);
			out[names[i]] = (it == base.end() ? 0 : it->second) + (r > s ? r - s : 0);
		}
	};
	fill(live_.rule_names, base_rules_, snap_rules_, c.rules, [&](uint32_t i) { return xdp_->rule_hits(i); });
	fill(live_.pe_names, base_pes_, snap_pes_, c.private_endpoints, [&](uint32_t i) { return xdp_->pe_packets(i); });
	fill(live_.server_names, base_servers_, snap_servers_, c.servers,
	     [&](uint32_t i) { return xdp_->server_packets(i); });
	// The last sweep's count while no later one could have ended: a walk
	// of a full table here took 0.63 s of this thread, which commits wait
	// for. Otherwise (before the first sweep, a sweep starved far past its
	// interval) the walk.
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
	auto keys = xdp_->recent_sweep_keys(now, o_.sweep_interval_ns);
	c.flows = (keys ? *keys : xdp_->flow_entries()) / 2;
	return c;
}

json Plane::flows(size_t limit)
{
	json out = json::array();
	if (!xdp_)
		return out;
	for (const lg_flow_entry &e : xdp_->flows(limit))
		out.push_back(flow_to_json(e, live_));
	return out;
}

FlowSample flow_sample(const lg_flow_sample &f)
{
	FlowSample s;
	s.e = f.e;
	s.packets[0] = f.e.packets;
	s.bytes[0] = f.e.bytes;
	s.packets[1] = f.reply_packets;
	s.bytes[1] = f.reply_bytes;
	s.reply_found = f.reply_found != 0;
	return s;
}

std::optional<FlowLogInput> Plane::flow_log()
{
	if (!xdp_)
		return std::nullopt;
	FlowLogInput in;
	in.plane = "xdp";
	// Records first: a flow made after the listing is then learnt from its
	// record at the next tick, not missed between the two.
	for (auto &[k, v] : xdp_->drain_flowlog())
		in.events.push_back(FlowEvent{k, v});
	for (const lg_flow_sample &f : xdp_->flow_samples(SIZE_MAX, &in.flows_complete))
		in.flows.push_back(flow_sample(f));
	in.listed_ns = xdp_->now_ns();
	in.lost = xdp_->log_counter(LG_LOG_LOST);
	return in;
}

} // namespace lg::agent
