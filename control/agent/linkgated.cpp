// linkgated: the linkgate control agent. Holds the desired state (restored
// from and written atomically to its state file), serves the control socket
// (SPEC §6), and commits every validated change to the dataplanes.
//
// One thread, one poll() loop: every request is short (validate, compile,
// commit), so serialising them is both simple and what keeps generations in
// order. Slow or silent clients cost a slot, never the loop.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "arm_json.hpp"
#include "channels.hpp"
#include "cli_decimal.hpp"
#include "log.hpp"
#include "plane.hpp"
#include "service.hpp"
#include "validate.hpp"

using namespace lg;
using namespace lg::agent;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
	std::string state = "/var/lib/linkgate/state.json";
	std::string socket = "/run/linkgate/linkgated.sock";
	std::vector<std::string> xdp_interfaces;
	int idle_timeout = 30;  // seconds a connection may stay silent
	int max_connections = 64;
	int dataplane_timeout_ms = 5000; // for each request to a DPDK channel
	int max_dataplanes = 16;
	std::string pin_dir = "/sys/fs/bpf/linkgate";
	int reclaim_ms = 1000; // period of the expired-flow sweep
	std::string flow_log;       // NSG flow log v2 records appended here ("": none)
	int flow_log_interval = 60; // seconds between two flow-log records of an NSG
	uint32_t flow_capacity = LG_CT_CAPACITY_DEFAULT;
	int realtime = 0; // SCHED_FIFO priority of the control thread; 0: the default scheduling
	// Flow timeouts in seconds (SPEC §4 defaults).
	double tcp_established = LG_TIMEOUT_TCP_ESTABLISHED, tcp_transient = LG_TIMEOUT_TCP_TRANSIENT,
	       tcp_close = LG_TIMEOUT_TCP_CLOSE, udp = LG_TIMEOUT_UDP, icmp = LG_TIMEOUT_ICMP;
};

std::string dirname_of(const std::string &p)
{
	auto slash = p.rfind('/');
	return slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
}

// mkdir -p; directories it creates are 0700 (only the agent's user needs them).
bool mkdir_p(const std::string &dir)
{
	for (size_t i = 1; i <= dir.size(); i++) {
		if (i < dir.size() && dir[i] != '/')
			continue;
		std::string part = dir.substr(0, i);
		if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
			return false;
	}
	return true;
}

int listen_on(const std::string &path)
{
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	if (path.size() >= sizeof(sa.sun_path)) {
		log("%s: socket path is longer than %zu bytes", path.c_str(), sizeof(sa.sun_path) - 1);
		return -1;
	}
	std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
	if (!mkdir_p(dirname_of(path))) {
		log("%s: cannot create directory: %s", dirname_of(path).c_str(), std::strerror(errno));
		return -1;
	}
	struct stat sb;
	if (lstat(path.c_str(), &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			log("%s: exists and is not a socket", path.c_str());
			return -1;
		}
		// A socket that accepts belongs to a running agent; otherwise it is stale.
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			log("%s: another linkgated is serving this socket", path.c_str());
			return -1;
		}
		unlink(path.c_str());
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log("socket: %s", std::strerror(errno));
		return -1;
	}
	// The umask makes the socket 0600 from its first instant.
	mode_t old = umask(0177);
	int rc = bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
	umask(old);
	if (rc != 0 || chmod(path.c_str(), 0600) != 0 || listen(fd, 128) != 0) {
		log("%s: cannot listen: %s", path.c_str(), std::strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct Conn {
	int fd = -1;
	std::string in, out;
	Clock::time_point last;
	Clock::time_point started; // first byte of the request being received
	bool closing = false; // close once `out` is flushed
	bool eof = false;
	bool handed_off = false; // registered as a dataplane channel: the fd moved there
};

class Server {
public:
	Server(Service &svc, const Options &o, int listen_fd, int sig_fd, Plane &plane, DataplaneChannels &channels,
	       Dataplanes &dataplanes)
		: svc_(svc), o_(o), lfd_(listen_fd), sfd_(sig_fd), plane_(plane), channels_(channels),
		  dataplanes_(dataplanes), start_gen_(svc.generation())
	{
		next_flow_log_ = Clock::now() + std::chrono::seconds(o_.flow_log_interval);
		// The expired-flow sweep has its own thread: a sweep of a large
		// table takes tens of ms, and a request must not wait for it. It
		// only reads and deletes flow entries (map syscalls), which is
		// safe beside a commit, as the program's own deletes are.
		if (plane_.has_xdp())
			sweeper_ = std::thread([this] { sweep_loop(); });
		spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}

	~Server()
	{
		{
			std::lock_guard lk(sweep_mu_);
			stop_ = true;
		}
		sweep_cv_.notify_all();
		if (sweeper_.joinable())
			sweeper_.join();
		if (spare_fd_ >= 0)
			close(spare_fd_);
	}

	// Until SIGTERM or SIGINT (true), or a failure of the loop itself (false).
	bool run()
	{
		for (;;) {
			std::vector<pollfd> fds{{sfd_, POLLIN, 0}, {lfd_, POLLIN, 0}};
			for (auto &c : conns_) {
				short ev = 0;
				if (!c.out.empty())
					ev |= POLLOUT;
				else if (!c.closing && !c.eof && !ready(c))
					ev |= POLLIN; // no reading while a reply or a whole request waits: backpressure
				fds.push_back({c.fd, ev, 0});
			}
			// Dataplane channels: read only inside a request of the agent's;
			// input at any other time is their end (or a protocol error).
			size_t first_channel = fds.size();
			for (int fd : channels_.fds())
				fds.push_back({fd, POLLIN, 0});
			size_t nl = fds.size(); // the host's address and route changes (XDP only)
			if (plane_.host_events_fd() >= 0)
				fds.push_back({plane_.host_events_fd(), POLLIN, 0});
			control_scheduling_ready();
			int timeout = next_timeout_ms();
			if (plane_.has_xdp()) {
				// This loop vouches that it reads the host's changes as they
				// come: a window renewed from here, not from a thread of its
				// own, lapses while a request holds the loop up.
				auto now = Clock::now();
				if (now >= next_beat_) {
					if (Status st = plane_.fib_heartbeat(); !st)
						log("host addresses not updated: %s", st.error().c_str());
					next_beat_ = now + std::chrono::milliseconds(Plane::kFibBeatMs);
				}
				timeout = timeout < 0 ? Plane::kFibBeatMs : std::min(timeout, Plane::kFibBeatMs);
			}
			if (!o_.flow_log.empty()) {
				auto now = Clock::now();
				if (now >= next_flow_log_) {
					write_flow_log();
					next_flow_log_ = now + std::chrono::seconds(o_.flow_log_interval);
				}
				int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(next_flow_log_ - now).count());
				timeout = timeout < 0 ? std::max(left, 0) : std::min(timeout, std::max(left, 0));
			}
			int n = poll(fds.data(), fds.size(), timeout);
			if (n < 0 && errno != EINTR) {
				log("poll: %s", std::strerror(errno));
				return false;
			}
			if (n > 0 && fds[0].revents) {
				signalfd_siginfo si{};
				if (read(sfd_, &si, sizeof si) == ssize_t(sizeof si) && si.ssi_signo == SIGHUP) {
					// A closed terminal or a reload by habit must not stop
					// the agent; there is nothing to reload.
					log("SIGHUP ignored: the state file is read at start only (linkgatectl apply -f "
					    "changes the state)");
				} else { // SIGTERM or SIGINT
					flush_replies();
					return true;
				}
			}
			// Channels first: a fast path that died and is registering
			// again on a new connection frees its name here.
			for (size_t k = first_channel; n > 0 && k < nl; k++)
				if (fds[k].revents)
					channels_.readable(fds[k].fd);
			if (n > 0 && nl < fds.size() && fds[nl].revents) {
				if (Status st = plane_.host_events(); !st)
					log("host addresses not updated: %s", st.error().c_str());
			}
			if (plane_.relink_pending() && Clock::now() >= relink_after_)
				relink();
			if (n > 0 && (fds[1].revents & POLLIN))
				accept_all();
			size_t i = 2;
			for (auto it = conns_.begin(); it != conns_.end(); i++) {
				// Connections accepted in this round have no pollfd yet.
				short rev = i < first_channel && fds[i].fd == it->fd ? fds[i].revents : 0;
				if (!service(*it, rev)) {
					if (!it->handed_off)
						close(it->fd);
					it = conns_.erase(it);
				} else {
					++it;
				}
			}
		}
	}

private:
	Service &svc_;
	const Options &o_;
	int lfd_, sfd_;
	Plane &plane_;
	DataplaneChannels &channels_;
	Dataplanes &dataplanes_;
	FlowLogger flow_logger_;
	Clock::time_point next_flow_log_{};
	std::map<std::string, uint64_t> flow_log_lost_; // each plane's lost records at the last interval
	std::set<std::string> refused_; // "name/pid/generation" refused an empty state (logged once each)
	std::set<std::string> registered_; // names registered since the start
	const uint64_t start_gen_; // the generation this agent started with
	std::thread sweeper_;
	Clock::time_point next_beat_{}; // the next fib_heartbeat
	Clock::time_point relink_after_{}; // a failed relink's next try
	std::mutex sweep_mu_;
	std::condition_variable sweep_cv_;
	bool stop_ = false;
	const bool timing_ = std::getenv("LINKGATED_TEST_TIMING") != nullptr; // agent_bench
	std::list<Conn> conns_;
	int spare_fd_ = -1; // given up to accept and refuse a client when the process is out of descriptors

	void sweep_loop()
	{
		// The lowest priority there is: the sweep runs when nothing else of
		// the agent (a commit) wants the CPU; its map reads are batches of
		// ~0.2 ms (XdpDataplane::reclaim), the longest a commit waits.
		sched_param sp{};
		if (int e = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp))
			log("the flow sweep cannot run at SCHED_IDLE (%s); it keeps the agent's priority",
			    std::strerror(e));
		// At most a line a minute: a busy host reclaims at every sweep.
		size_t unlogged = 0;
		unsigned sweeps = 0;
		double longest = 0;
		Clock::time_point logged{};
		std::unique_lock lk(sweep_mu_);
		while (!sweep_cv_.wait_for(lk, std::chrono::milliseconds(o_.reclaim_ms), [this] { return stop_; })) {
			lk.unlock();
			auto t0 = Clock::now();
			size_t gone = plane_.reclaim();
			auto t1 = Clock::now();
			double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
			if (gone) {
				unlogged += gone;
				sweeps++;
				longest = std::max(longest, ms);
			} else if (timing_) {
				log("timing: sweep %.1f ms", ms);
			}
			if (unlogged && t1 - logged >= std::chrono::minutes(1)) {
				log("reclaimed %zu expired flows (%u sweeps, the longest %.1f ms)", unlogged, sweeps, longest);
				unlogged = 0;
				sweeps = 0;
				longest = 0;
				logged = t1;
			}
			lk.lock();
		}
	}

	// One flow-log interval: every plane's records and flows through the
	// logger, its records appended as JSON lines (docs/agent.md, "Flow
	// logs"). A write that fails is logged and the records are lost; the
	// next interval tries again.
	void write_flow_log()
	{
		const CompiledTables *live = dataplanes_.live_tables();
		if (!live)
			return;
		timespec wall{}, mono{};
		clock_gettime(CLOCK_REALTIME, &wall);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		uint64_t unix_ns = uint64_t(wall.tv_sec) * 1000000000ull + uint64_t(wall.tv_nsec);
		uint64_t mono_ns = uint64_t(mono.tv_sec) * 1000000000ull + uint64_t(mono.tv_nsec);
		// XDP's interfaces are the host's; a DPDK port's number is no host
		// ifindex, and its MAC is not known here.
		std::map<uint32_t, std::string> macs; // this interval's lookups
		FlowLogger::MacOf host_mac = [&](uint32_t ifindex) {
			auto it = macs.find(ifindex);
			return it != macs.end() ? it->second : macs[ifindex] = mac_of(ifindex);
		};
		FlowLogger::MacOf no_mac = [](uint32_t) { return std::string(); };
		std::string text;
		std::vector<std::string> planes;
		uint64_t stale = flow_logger_.stale();
		for (const FlowLogInput &in : dataplanes_.flow_log()) {
			planes.push_back(in.plane);
			const FlowLogger::MacOf &mac = in.plane == "xdp" ? host_mac : no_mac;
			for (const nlohmann::json &r : flow_logger_.tick(in, svc_.state(), *live, unix_ns, mono_ns, mac))
				text += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
			// The first interval of a plane only learns where its count
			// stands (records lost before this agent logged are not news).
			auto [it, first] = flow_log_lost_.try_emplace(in.plane, in.lost);
			if (!first && in.lost > it->second)
				log("flow log: %llu records of %s lost (its table was full between two intervals)",
				    (unsigned long long)(in.lost - it->second), in.plane.c_str());
			it->second = in.lost;
		}
		if (flow_logger_.stale() > stale)
			log("flow log: %llu deny records left out (an older generation's, which the live policy no "
			    "longer denies at an NSG)",
			    (unsigned long long)(flow_logger_.stale() - stale));
		flow_logger_.keep_planes(planes);
		std::erase_if(flow_log_lost_, [&](const auto &p) {
			return std::find(planes.begin(), planes.end(), p.first) == planes.end();
		});
		if (text.empty())
			return;
		int fd = open(o_.flow_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		bool ok = fd >= 0;
		for (size_t off = 0; ok && off < text.size();) {
			ssize_t w = write(fd, text.data() + off, text.size() - off);
			if (w < 0 && errno == EINTR)
				continue;
			ok = w > 0;
			off += ok ? size_t(w) : 0;
		}
		if (!ok)
			log("flow log %s: %s; this interval's records are lost", o_.flow_log.c_str(), std::strerror(errno));
		if (fd >= 0)
			close(fd);
	}

	// The MAC of a host interface as a flow log names it (12 upper-case hex
	// digits), "" when it has none or is gone.
	static std::string mac_of(uint32_t ifindex)
	{
		// SIOCGIFHWADDR, not /sys/class/net: sysfs shows the namespace it
		// was mounted in, the ioctl the agent's own.
		ifreq ifr{};
		if (!ifindex || !if_indextoname(ifindex, ifr.ifr_name))
			return "";
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return "";
		int rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
		close(fd);
		if (rc != 0 || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
			return "";
		char out[13];
		const auto *m = reinterpret_cast<const unsigned char *>(ifr.ifr_hwaddr.sa_data);
		std::snprintf(out, sizeof out, "%02X%02X%02X%02X%02X%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
		return out;
	}

	// A configured interface recreated (driver reload, a device made again)
	// has a new ifindex and no program: attached here and bound by a new
	// generation of the same state, before the next request is served.
	void relink()
	{
		// A failure is tried again a second later (the heartbeat's poll
		// timeout brings the loop back), until it succeeds.
		auto again = [&] {
			plane_.relink_later();
			relink_after_ = Clock::now() + std::chrono::seconds(1);
		};
		auto r = plane_.relink();
		if (!r) {
			log("XDP not attached to a recreated interface: %s", r.error().c_str());
			again();
			return;
		}
		if (!*r)
			return;
		auto g = svc_.republish();
		if (!g) {
			log("interfaces changed; publishing their bindings failed: %s", g.error().c_str());
			again();
			return;
		}
		log("interfaces changed: attached, generation %llu is live", (unsigned long long)*g);
		plane_.prune_links();
	}

	// At SIGTERM: replies already made (a commit answered, say) still go
	// out, for up to a second; requests not read yet are not started.
	void flush_replies()
	{
		auto deadline = Clock::now() + std::chrono::seconds(1);
		for (;;) {
			std::vector<pollfd> fds;
			for (const Conn &c : conns_)
				if (!c.out.empty())
					fds.push_back({c.fd, POLLOUT, 0});
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
			if (fds.empty() || left <= 0)
				return;
			int n = poll(fds.data(), fds.size(), int(left));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			for (Conn &c : conns_) {
				auto it = std::find_if(fds.begin(), fds.end(), [&](const pollfd &p) { return p.fd == c.fd; });
				if (c.out.empty() || it == fds.end() || !it->revents)
					continue;
				ssize_t k = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
				if (k > 0)
					c.out.erase(0, size_t(k));
				else if (k < 0 && errno != EAGAIN && errno != EINTR)
					c.out.clear(); // the client is gone
			}
		}
	}

	static void send_line(int fd, const nlohmann::json &j)
	{
		std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
		(void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
	}

	// Bytes of a request whose newline has not come yet.
	static bool partial(const Conn &c) { return !c.in.empty() && c.in.find('\n') == std::string::npos; }

	int next_timeout_ms() const
	{
		auto now = Clock::now();
		auto soonest = std::chrono::milliseconds::max();
		if (conns_.empty())
			return -1;
		for (const auto &c : conns_) {
			if (ready(c))
				return 0;
			auto from = partial(c) && c.out.empty() ? std::min(c.last, c.started) : c.last;
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				from + std::chrono::seconds(o_.idle_timeout) - now);
			soonest = std::min(soonest, std::max(left, std::chrono::milliseconds(0)));
		}
		return int(std::min<int64_t>(soonest.count() + 1, 60000));
	}

	void accept_all()
	{
		if (spare_fd_ < 0)
			spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
		for (;;) {
			int fd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare_fd_ >= 0) {
				// Left in the backlog, the client would wake every poll
				// and never be answered: take it with the spare, refuse it.
				close(spare_fd_);
				fd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd >= 0) {
					send_line(fd, error_response(nullptr, kTooManyConnections,
								     "too many connections: linkgated is out of file descriptors"));
					close(fd);
					log("refused a client: out of file descriptors (ulimit -n)");
				}
				spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
				if (fd >= 0 && spare_fd_ >= 0)
					continue;
				return; // the backlog is empty (accept4 says EMFILE before it looks)
			}
			if (fd < 0)
				return;
			// Credentials first: nothing from a stranger is ever read.
			ucred cred{};
			socklen_t len = sizeof(cred);
			if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
			    (cred.uid != 0 && cred.uid != geteuid())) {
				log("refused a client with uid %u (pid %d)", unsigned(cred.uid), int(cred.pid));
				send_line(fd, error_response(nullptr, kPermissionDenied,
							     "permission denied: uid " + std::to_string(cred.uid) +
								     " may not use this socket (root or uid " +
								     std::to_string(geteuid()) + " only)"));
				close(fd);
				continue;
			}
			if (int(conns_.size()) >= o_.max_connections) {
				send_line(fd, error_response(nullptr, kTooManyConnections,
							     "too many connections: the limit is " +
								     std::to_string(o_.max_connections)));
				close(fd);
				continue;
			}
			conns_.push_back(Conn{fd, {}, {}, Clock::now(), Clock::now(), false, false});
		}
	}

	// dataplane.register turns the connection into a dataplane channel:
	// true when `line` was one (answered here, or handed off).
	bool try_register(Conn &c, const std::string &line)
	{
		if (line.find("dataplane.register") == std::string::npos || nesting_depth(line) > kMaxDepth ||
		    line.find('\0') != std::string::npos)
			return false; // the service answers (parse error, invalid request, ...)
		// Parsed as the service parses (a key given twice is a parse error).
		nlohmann::json req;
		try {
			req = lg::parse_json_unique_keys(line);
		} catch (const std::exception &) {
			return false; // the service answers the parse error
		}
		if (!req.is_object() || req.value("method", nlohmann::json()) != "dataplane.register")
			return false; // the service answers (parse error, invalid request, ...)
		nlohmann::json error;
		auto r = channels_.check_register(req, error);
		if (!r) {
			c.out += error.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
			if (error["error"]["code"] == kTooManyConnections)
				c.closing = true;
			return true;
		}
		// Numbers alone cannot tell this agent's generations from another
		// state file's with the same numbers: a fast path that registered
		// here registers again with one of them (a dropped channel). While
		// the guard holds, every one since the start is the same empty
		// state (a relink republishes it).
		bool ours = registered_.count(r->name) && r->generation >= start_gen_ && r->generation <= svc_.generation();
		if (plane_.would_empty(r->generation) && !ours) {
			std::string msg = "refused: this fast path runs generation " + std::to_string(r->generation) +
					  ", which " + o_.state + " never had, and linkgated has an empty state and has "
					  "committed nothing since it started (a mistyped --state?): start linkgated with "
					  "the state file that generation came from; to give this fast path the empty "
					  "state, commit a change or restart the fast path";
			// Once per fast path and generation: it tries again every second.
			if (refused_.size() > 1024)
				refused_.clear();
			if (refused_.insert(r->name + "/" + std::to_string(r->pid) + "/" + std::to_string(r->generation))
				    .second)
				log("dataplane %s '%s' (pid %lld) %s", r->kind.c_str(), r->name.c_str(), (long long)r->pid,
				    msg.c_str());
			c.out += error_response(req["id"], kWouldEmpty, msg).dump(-1, ' ', false,
									nlohmann::json::error_handler_t::replace) +
				 "\n";
			c.closing = true;
			return true;
		}
		uint64_t g = svc_.generation();
		// The flow timeouts go with it: flows expire alike in every dataplane.
		nlohmann::json timeouts{{"tcpEstablished", o_.tcp_established}, {"tcpTransient", o_.tcp_transient},
					{"tcpClose", o_.tcp_close}, {"udp", o_.udp}, {"icmp", o_.icmp}};
		// And whether to make flow-log records: only if this agent drains them.
		nlohmann::json ok{{"jsonrpc", "2.0"},
				  {"id", req["id"]},
				  {"result", {{"generation", g}, {"timeouts", timeouts}, {"flowLog", !o_.flow_log.empty()}}}};
		c.handed_off = true;
		registered_.insert(r->name);
		channels_.add(c.fd, std::move(*r), std::move(c.in),
			      ok.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", g,
			      state_to_json(svc_.state()));
		c.in.clear();
		return true;
	}

	void reply(Conn &c, const std::string &line)
	{
		control_scheduling_ready(); // a request right after a commit's bookkeeping
		if (try_register(c, line))
			return;
		uint64_t before = svc_.generation();
		std::string out = svc_.handle_line(line);
		if (svc_.generation() != before) {
			log("generation %llu is live", (unsigned long long)svc_.generation());
		} else if (out.find("-32003") != std::string::npos) {
			// A dataplane or the state file refused a valid change: the
			// operator's log says so, not only the client's reply.
			auto j = nlohmann::json::parse(out, nullptr, false);
			if (j.is_object() && j.contains("error") && j["error"].value("code", 0) == kCommitFailed)
				log("%s", j["error"].value("message", "").c_str());
		}
		if (!out.empty())
			c.out += out + "\n";
	}

	void refuse(Conn &c, int code, const std::string &msg)
	{
		c.out += error_response(nullptr, code, msg).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
		c.out += "\n";
		c.in.clear();
		c.closing = true;
	}

	// Returns false when the connection is done.
	bool service(Conn &c, short rev)
	{
		auto now = Clock::now();
		if (rev & POLLOUT) {
			ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return false;
			if (n > 0) {
				c.out.erase(0, size_t(n));
				c.last = now;
				if (c.out.empty())
					c.started = now; // reading resumes: the next request's time starts here
			}
		}
		if (rev & (POLLIN | POLLHUP | POLLERR)) {
			char buf[65536];
			ssize_t n = recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return false;
			if (n == 0)
				c.eof = true;
			if (n > 0) {
				// A full buffer means more was queued: the client is not
				// trickling, the agent is reading slower than it sends.
				if (c.in.empty() || size_t(n) == sizeof(buf))
					c.started = now;
				c.in.append(buf, size_t(n));
				c.last = now;
			}
		}
		process(c);
		if (c.handed_off)
			return false;
		// After the client's end, what it sent before is still served, a
		// request a round.
		if ((c.closing || c.eof) && c.out.empty() && !ready(c))
			return false;
		// A request trickled in a byte at a time would hold its slot for
		// ever: the whole of it must arrive within the idle timeout.
		if (partial(c) && c.out.empty() && now - c.started >= std::chrono::seconds(o_.idle_timeout)) {
			send_line(c.fd, error_response(nullptr, kIdleTimeout,
						       "idle timeout: a request not complete after " +
							       std::to_string(o_.idle_timeout) + " s"));
			return false;
		}
		// No progress either way: a silent client, or one that stopped reading its replies.
		if (now - c.last >= std::chrono::seconds(o_.idle_timeout)) {
			send_line(c.fd, error_response(nullptr, kIdleTimeout,
						       "idle timeout: no traffic for " + std::to_string(o_.idle_timeout) +
							       " s"));
			return false;
		}
		return true;
	}

	// Answers one buffered request a round: the next is taken only once the
	// previous reply is sent, so a client that pipelines without reading
	// holds one reply in memory, and every client gets a turn per round,
	// also one that sends notifications (no reply) by the thousand.
	void process(Conn &c)
	{
		// Blank lines are skipped by position and erased with the next
		// request: one erase each would move the buffer once per line.
		size_t pos = 0;
		while (c.out.empty() && !c.closing && !c.handed_off) {
			size_t nl = c.in.find('\n', pos);
			if (nl == std::string::npos) {
				c.in.erase(0, pos);
				// No newline within the cap: it can only become an oversize
				// message (a last '\r' may be the first half of its CRLF).
				if (c.in.size() > kMaxMessage + (c.in.ends_with('\r') ? 1 : 0))
					refuse(c, kMessageTooLarge, too_large());
				else if (c.eof && !c.in.empty()) { // a last request without its newline
					reply(c, c.in);
					c.in.clear();
				}
				return;
			}
			size_t len = nl > pos && c.in[nl - 1] == '\r' ? nl - 1 - pos : nl - pos;
			if (len > kMaxMessage) {
				refuse(c, kMessageTooLarge, too_large());
				return;
			}
			c.started = Clock::now(); // what is left is the next request
			if (len == 0) {
				pos = nl + 1;
				continue;
			}
			std::string line = c.in.substr(pos, len);
			c.in.erase(0, nl + 1);
			c.last = Clock::now(); // a request taken is progress: queued ones do not idle out
			reply(c, line);
			return; // the rest next round (ready(): the loop does not wait)
		}
		c.in.erase(0, pos);
	}

	// A request already read waits for its turn: the next round is now.
	static bool ready(const Conn &c)
	{
		return c.out.empty() && !c.closing && !c.handed_off && c.in.find('\n') != std::string::npos;
	}

	static std::string too_large()
	{
		return "message too large: the limit is " + std::to_string(kMaxMessage) + " bytes per line";
	}
};

} // namespace

int main(int argc, char **argv)
{
	Options o;
	CLI::App app{"linkgated: the linkgate control agent"};
	app.add_option("--state", o.state, "state file (ARM JSON), written atomically on every change")
		->capture_default_str();
	app.add_option("--socket", o.socket, "control socket path")->envname("LINKGATE_SOCKET")->capture_default_str();
	app.add_option("--xdp-interface", o.xdp_interfaces,
		       "IFACE[=VNET]: attach the XDP dataplane to IFACE, whose traffic belongs to VNET (default: the "
		       "state's only VNet); repeatable");
	app.add_option("--pin-dir", o.pin_dir, "bpffs directory of the pinned dataplane")->capture_default_str();
	app.add_option("--flow-log", o.flow_log,
		       "append NSG flow log (version 2) records to FILE, one JSON record a line (docs/agent.md)");
	app.add_option("--flow-log-interval", o.flow_log_interval, "seconds between two flow-log intervals")
		->transform(kDecimal)->check(CLI::Range(1, 3600))
		->capture_default_str();
	app.add_option("--reclaim-interval", o.reclaim_ms, "milliseconds between sweeps of expired flows")
		->transform(kDecimal)->check(CLI::Range(10, 3600000))
		->capture_default_str();
	app.add_option("--flow-capacity", o.flow_capacity, "flows the dataplane holds")
		->transform(kDecimal)->check(CLI::Range(1u, 100000000u))
		->capture_default_str();
	// Seconds; at most 10^6 (11.6 days), which linkgate-dpdk accepts too:
	// a flow idle that long is still within the 52 days after which the
	// program's 32-bit next-hop ages wrap (bpf/lg_ct.bpf.h).
	const CLI::Validator kTimeout(
		[](std::string &v) {
			double d = 0;
			auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
			return ec == std::errc() && end == v.data() + v.size() && d >= 0.001 && d <= 1e6
				       ? std::string()
				       : "seconds from 0.001 to 1000000 expected, not " + v;
		},
		"SECONDS");
	app.add_option("--tcp-established-timeout", o.tcp_established, "seconds")->check(kTimeout)->capture_default_str();
	app.add_option("--tcp-transient-timeout", o.tcp_transient, "seconds (opening, closing)")
		->check(kTimeout)
		->capture_default_str();
	app.add_option("--tcp-close-timeout", o.tcp_close, "seconds after FIN both ways or RST")
		->check(kTimeout)
		->capture_default_str();
	app.add_option("--udp-timeout", o.udp, "seconds")->check(kTimeout)->capture_default_str();
	app.add_option("--icmp-timeout", o.icmp, "seconds")->check(kTimeout)->capture_default_str();
	app.add_option("--idle-timeout", o.idle_timeout, "seconds a client may stay silent before it is closed")
		->transform(kDecimal)->check(CLI::Range(1, 86400))
		->capture_default_str();
	app.add_option("--max-connections", o.max_connections, "concurrent client connections")
		->transform(kDecimal)->check(CLI::Range(1, 4096))
		->capture_default_str();
	app.add_option("--dataplane-timeout", o.dataplane_timeout_ms,
		       "milliseconds a linkgate-dpdk may take to answer (a publish, counters, flows) before it is "
		       "dropped")
		->transform(kDecimal)->check(CLI::Range(1, 3600000))
		->capture_default_str();
	app.add_option("--realtime", o.realtime,
		       "run the control thread (requests, commits) at this SCHED_FIFO priority (1-99), so that a "
		       "change is enforced without waiting for the CPU on a busy host; default: normal scheduling")
		->transform(kDecimal)
		->check(CLI::Range(1, 99));
	app.add_option("--max-dataplanes", o.max_dataplanes, "registered linkgate-dpdk channels")
		->transform(kDecimal)->check(CLI::Range(1, 1024))
		->capture_default_str();
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e) == 0 ? 0 : 2;
	}

	if (o.state.empty() || o.state.back() == '/') {
		log("--state '%s': not a file path", o.state.c_str());
		return 2;
	}
	State state;
	bool no_state_file = false;
	struct stat sb;
	if (stat(o.state.c_str(), &sb) == 0) {
		auto loaded = load_state_file(o.state);
		if (!loaded) {
			log("cannot load state: %s", loaded.error().c_str());
			return 1;
		}
		state = std::move(*loaded);
		fill_defaults(state);
		if (auto v = validate(state); !v) {
			log("cannot load state: %s: %s", o.state.c_str(), v.error().c_str());
			return 1;
		}
	} else if (errno != ENOENT) {
		log("cannot load state: %s: %s", o.state.c_str(), std::strerror(errno));
		return 1;
	} else {
		no_state_file = true;
	}
	if (!mkdir_p(dirname_of(o.state))) {
		log("%s: cannot create directory: %s", dirname_of(o.state).c_str(), std::strerror(errno));
		return 1;
	}
	PlaneOptions po;
	po.state_path = o.state;
	po.no_state_file = no_state_file;
	if (no_state_file)
		log("%s does not exist: starting with an empty state", o.state.c_str());
	for (const auto &text : o.xdp_interfaces) {
		auto spec = parse_iface_spec(text);
		if (!spec) {
			log("%s", spec.error().c_str());
			return 2;
		}
		// The dataplane would keep one binding and explain another.
		for (const auto &f : po.ifaces)
			if (f.name == spec->name) {
				log("--xdp-interface %s: interface %s is given twice", text.c_str(), f.name.c_str());
				return 2;
			}
		po.ifaces.push_back(*spec);
	}
	auto ns = [](double s) { return uint64_t(s * 1e9); };
	po.xdp.pin_dir = o.pin_dir;
	po.sweep_interval_ns = uint64_t(o.reclaim_ms) * 1000000ull;
	po.xdp.gen_slots = LG_GEN_SLOTS; // a change right after another does not wait for a grace period
	po.xdp.flow_capacity = o.flow_capacity;
	po.xdp.tcp_established_ns = ns(o.tcp_established);
	po.xdp.tcp_transient_ns = ns(o.tcp_transient);
	po.xdp.tcp_close_ns = ns(o.tcp_close);
	po.xdp.udp_ns = ns(o.udp);
	po.xdp.icmp_ns = ns(o.icmp);
	po.xdp.flow_log = !o.flow_log.empty(); // records only for an agent that drains them
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, nullptr);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	int lfd = listen_on(o.socket);
	if (sfd < 0 || lfd < 0)
		return 1;
	struct stat mine {};
	(void)lstat(o.socket.c_str(), &mine);
	// The socket first: a second agent must be refused before it touches the
	// pinned dataplane. Clients wait in the backlog meanwhile.
	// Adopts a pinned dataplane and continues its generation numbers.
	auto plane = Plane::open(po, state);
	if (!plane) {
		log("%s", plane.error().c_str());
		unlink(o.socket.c_str());
		return 1;
	}
	// A first start writes its empty state: the next start then finds the
	// file that goes with what it published, not a missing one.
	if (no_state_file)
		if (Status st = save_state_file(o.state, state); !st)
			log("%s (the next start will refuse to replace generation %llu with an empty state)", st.error().c_str(),
			    (unsigned long long)(*plane)->generation());
	DataplaneChannels channels(ChannelOptions{o.dataplane_timeout_ms, o.max_dataplanes});
	// XDP first (and the state file), then every DPDK channel: the reply
	// waits for all their acks. A channel that refuses or does not answer in
	// time is dropped; the commit stands (see docs/agent.md).
	CommitHook commit = [&](const State &s) -> Result<uint64_t> {
		auto g = (*plane)->commit(s);
		if (g && channels.size())
			channels.publish(*g, state_to_json(s));
		return g;
	};
	Service svc(std::move(state), (*plane)->generation(), commit);
	Dataplanes dataplanes(**plane, channels);
	svc.set_dataplane(&dataplanes);

	log("serving %s (state %s, generation %llu%s)", o.socket.c_str(), o.state.c_str(),
	    (unsigned long long)svc.generation(),
	    (*plane)->has_xdp() ? (", XDP pinned under " + o.pin_dir).c_str() : "");

	Server server(svc, o, lfd, sfd, **plane, channels, dataplanes);
	// This thread only: the sweep and the publish barriers (started above)
	// keep theirs.
	ControlScheduling cs;
	cs.fifo = o.realtime;
	if (Status st = configure_control_scheduling(cs); !st) {
		log("--realtime %d: %s; normal scheduling", o.realtime, st.error().c_str());
		cs.fifo = 0;
		(void)configure_control_scheduling(cs);
	}
	bool clean = server.run();

	// Remove the socket only if it is still ours (a successor may have bound it).
	struct stat now;
	if (lstat(o.socket.c_str(), &now) == 0 && now.st_ino == mine.st_ino && now.st_dev == mine.st_dev)
		unlink(o.socket.c_str());
	close(lfd);
	log("stopped at generation %llu", (unsigned long long)svc.generation());
	return clean ? 0 : 1;
}
