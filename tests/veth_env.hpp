// The three-namespace veth topology of the XDP, agent and benchmark tests
// (client — NIC host — backend): its setup, helpers that run in the client
// and backend namespaces (connect, echo, the echo server), the pass program
// for the veth peers, and the private endpoint policy.
#pragma once

#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "model.hpp"
#include "netns.hpp"
#include "policy_helpers.hpp"
#include "validate.hpp"

namespace lgtest {

using namespace lg;

// A connected socket, or -1 with *why the error (ETIMEDOUT: no answer).
inline int tcp_connect(const char *dst, uint16_t port, int timeout_ms, int *why = nullptr)
{
	int dummy;
	if (!why)
		why = &dummy;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, dst, &a.sin_addr);
	if (connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
		*why = errno;
		close(s);
		return -1;
	}
	pollfd p{s, POLLOUT, 0};
	int err = 0;
	socklen_t len = sizeof err;
	int ready = poll(&p, 1, timeout_ms);
	if (ready != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
		*why = ready == 0 ? ETIMEDOUT : err ? err : errno;
		close(s);
		return -1;
	}
	return s;
}

inline bool echo(int s, const char *msg, int timeout_ms)
{
	size_t n = strlen(msg);
	if (write(s, msg, n) != ssize_t(n))
		return false;
	std::string got;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	while (got.size() < n) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		pollfd p{s, POLLIN, 0};
		if (left.count() <= 0 || poll(&p, 1, int(left.count())) != 1)
			return false;
		char buf[256];
		ssize_t r = read(s, buf, sizeof buf);
		if (r <= 0)
			return false;
		got.append(buf, size_t(r));
	}
	return got == msg;
}

// 0: connected and echoed; 3: no answer (dropped); 4: refused (an RST:
// the SYN got through to a port nothing listens on); 5: another error.
inline int echo_once(const char *dst, uint16_t port, int timeout_ms)
{
	int why = 0;
	int s = tcp_connect(dst, port, timeout_ms, &why);
	if (s < 0)
		return why == ETIMEDOUT ? 3 : why == ECONNREFUSED ? 4 : 5;
	int rc = echo(s, "hello", timeout_ms) ? 0 : 6;
	close(s);
	return rc;
}

// Echo server on addr:port until `stop` is readable; tells `ready` once listening.
inline int echo_server(const char *addr, uint16_t port, int ready, int stop)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, addr, &a.sin_addr);
	if (bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) || listen(s, 64))
		return 10;
	if (write(ready, "r", 1) != 1)
		return 11;
	std::vector<pollfd> fds{{stop, POLLIN, 0}, {s, POLLIN, 0}};
	for (;;) {
		if (poll(fds.data(), fds.size(), 120000) <= 0)
			return 12; // bounded: no test runs this long
		if (fds[0].revents)
			return 0;
		if (fds[1].revents & POLLIN)
			fds.push_back({accept(s, nullptr, nullptr), POLLIN, 0});
		for (size_t i = 2; i < fds.size(); i++) {
			if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[256];
			ssize_t n = read(fds[i].fd, buf, sizeof buf);
			if (n <= 0 || write(fds[i].fd, buf, size_t(n)) != n) {
				close(fds[i].fd);
				fds.erase(fds.begin() + long(i--));
			}
		}
	}
}

inline int attach_pass(const char *dev)
{
	bpf_object *obj = bpf_object__open_file(LG_PASS_OBJ, nullptr);
	if (!obj || bpf_object__load(obj))
		return 20;
	bpf_program *prog = bpf_object__find_program_by_name(obj, "lg_pass");
	int ifindex = int(if_nametoindex(dev));
	if (!prog || !ifindex || bpf_xdp_attach(ifindex, bpf_program__fd(prog), XDP_FLAGS_DRV_MODE, nullptr))
		return 21;
	return 0;
}

// client 10.1.1.10/24 (cc) — hc 10.1.1.1 [NIC host] hb 192.168.20.1 —
// (bb) backend 192.168.20.11/24. "" on success, else what failed.
inline std::string three_ns_topology(lg::testing::Topology &topo)
{
	using lg::testing::Topology;
	topo.add_ns("cli");
	topo.add_ns("host");
	topo.add_ns("be");
	topo.add_veth("cli", "cc", "host", "hc", "02:00:00:00:c1:01", "02:00:00:00:01:01");
	topo.add_veth("host", "hb", "be", "bb", "02:00:00:00:02:01", "02:00:00:00:b1:01");
	if (!topo.run("cli", "ip addr add 10.1.1.10/24 dev cc && ip route add default via 10.1.1.1"))
		return "client addresses";
	if (!topo.run("be", "ip addr add 192.168.20.11/24 dev bb && ip route add default via 192.168.20.1"))
		return "backend addresses";
	if (!topo.run("host", "ip addr add 10.1.1.1/24 dev hc && ip addr add 192.168.20.1/24 dev hb && "
			      "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0"))
		return "host addresses";
	// The program writes finished checksums: senders must not leave them to
	// an offload the redirected frame no longer carries. Frames redirected
	// into a veth are received only when its peer runs an XDP program.
	if (!topo.run("cli", "ethtool -K cc tx off >/dev/null") || !topo.run("be", "ethtool -K bb tx off >/dev/null"))
		return "ethtool -K tx off";
	for (auto [ns, dev] : {std::pair{"cli", "cc"}, std::pair{"be", "bb"}})
		if (Topology::in_ns(topo.real(ns), [dev = dev] { return attach_pass(dev); }) != 0)
			return std::string("pass program on ") + dev;
	return "";
}

inline lg::State policy(const std::string &pec_status)
{
	lg::State s;
	VirtualNetwork v;
	v.name = "client-vnet";
	v.addressPrefixes = {"10.1.0.0/16"};
	v.subnets = {{"clients", "10.1.1.0/24", "clients-nsg", {}, "Disabled"}};
	s.virtualNetworks = {v};
	NetworkSecurityGroup n;
	n.name = "clients-nsg";
	n.securityRules = {lg::testing::make_rule("no-ssh", 100, "Outbound", "Deny", "Tcp", "*", "*", "22")};
	s.networkSecurityGroups = {n};
	MySqlServer e;
	e.name = "eastus-db";
	e.publicIp = "20.10.2.5";
	e.backends = {{"192.168.20.11", 3306, 1}};
	s.servers = {e};
	PrivateEndpoint pe = make_private_endpoint("pe-east", "client-vnet", "clients", "10.1.1.100", "eastus-db");
	pe.connectionState.status = pec_status;
	s.privateEndpoints = {pe};
	fill_defaults(s);
	return s;
}

// One long-lived connection echoing on command: each byte on `cmd` is one
// round trip, answered with '+' (echoed) or '-' on `res`; EOF ends it.
inline int persistent_client(const char *dst, uint16_t port, int cmd, int res)
{
	int s = tcp_connect(dst, port, 2000);
	if (s < 0)
		return 2;
	char c;
	while (read(cmd, &c, 1) == 1) {
		char r = echo(s, "ping", 2000) ? '+' : '-';
		if (write(res, &r, 1) != 1)
			return 3;
	}
	close(s);
	return 0;
}

// A persistent connection in the client namespace, driven one round trip at
// a time. A test that fails before finish() leaves it to the destructor:
// the child is killed and reaped, the pipes closed.
struct Persistent {
	int cmd[2] = {-1, -1}, res[2] = {-1, -1}, pid = -1;
	explicit Persistent(const std::string &ns, const char *dst = "10.1.1.100", uint16_t port = 3306)
	{
		EXPECT_EQ(pipe2(cmd, O_CLOEXEC), 0); // the agent (exec) must not hold them
		EXPECT_EQ(pipe2(res, O_CLOEXEC), 0);
		pid = lg::testing::Topology::spawn_in_ns(ns, [&] {
			close(cmd[1]);
			close(res[0]);
			return persistent_client(dst, port, cmd[0], res[1]);
		});
		close(cmd[0]);
		close(res[1]);
		cmd[0] = res[1] = -1;
	}
	~Persistent()
	{
		close_pipes();
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
	}
	Persistent(const Persistent &) = delete;
	Persistent &operator=(const Persistent &) = delete;
	bool round_trip()
	{
		if (write(cmd[1], "x", 1) != 1)
			return false;
		pollfd p{res[0], POLLIN, 0};
		char r = 0;
		return poll(&p, 1, 5000) == 1 && read(res[0], &r, 1) == 1 && r == '+';
	}
	int finish()
	{
		close_pipes();
		int rc = lg::testing::Topology::wait_child(pid);
		pid = -1;
		return rc;
	}

private:
	void close_pipes()
	{
		for (int *fd : {&cmd[1], &res[0]})
			if (*fd >= 0) {
				close(*fd);
				*fd = -1;
			}
	}
};

} // namespace lgtest
