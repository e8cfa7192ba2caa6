// Real TCP connections through the XDP program between network namespaces:
// a client namespace, the NIC host namespace (the program attached natively
// on both of its veths), and a backend namespace with a listening server.
// The client connects to the private endpoint's address; the program answers
// ARP for it, translates to the backend and back, and cuts the connection
// when the private endpoint connection is rejected.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "compiler.hpp"
#include "netns.hpp"
#include "policy_helpers.hpp"
#include "validate.hpp"
#include "xdp_loader.hpp"

using namespace lg;
using lg::testing::Topology;

namespace {

// Connect with a bounded wait, send a line, expect it echoed. 0 on success,
// a distinct code per failure.
int echo_once(const char *dst, uint16_t port, const char *msg, int timeout_ms)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, dst, &a.sin_addr);
	if (connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 && errno != EINPROGRESS)
		return 2;
	pollfd p{s, POLLOUT, 0};
	if (poll(&p, 1, timeout_ms) != 1)
		return 3; // no answer: dropped
	int err = 0;
	socklen_t len = sizeof err;
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err)
		return 4;
	size_t n = strlen(msg);
	if (write(s, msg, n) != ssize_t(n))
		return 5;
	char buf[64] = {};
	p = {s, POLLIN, 0};
	if (poll(&p, 1, timeout_ms) != 1 || read(s, buf, sizeof buf) != ssize_t(n) || memcmp(buf, msg, n) != 0)
		return 6;
	close(s);
	return 0;
}

// Echo server: accepts until `stop` is readable, echoing each connection's
// messages. Tells `ready` once listening.
int echo_server(const char *addr, uint16_t port, int ready, int stop)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, addr, &a.sin_addr);
	if (bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) || listen(s, 16))
		return 10;
	if (write(ready, "r", 1) != 1)
		return 11;
	std::vector<pollfd> fds{{stop, POLLIN, 0}, {s, POLLIN, 0}};
	for (;;) {
		if (poll(fds.data(), fds.size(), 20000) <= 0)
			return 12; // bounded: the test never runs this long
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

// Load the pass program and attach it natively to dev (in the caller's
// namespace); the attachment outlives this process.
int attach_pass(const char *dev)
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

State policy(const std::string &pec_status)
{
	State s;
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
	PrivateEndpoint pe;
	pe.name = "pe-east";
	pe.vnet = "client-vnet";
	pe.subnet = "clients";
	pe.privateIPAddress = "10.1.1.100";
	pe.server = "eastus-db";
	pe.connectionState.status = pec_status;
	s.privateEndpoints = {pe};
	fill_defaults(s);
	return s;
}

class VethTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		ASSERT_EQ(geteuid(), 0u) << "needs root; CI runs as root";
		topo.add_ns("cli");
		topo.add_ns("host");
		topo.add_ns("be");
		topo.add_veth("cli", "cc", "host", "hc", "02:00:00:00:c1:01", "02:00:00:00:01:01");
		topo.add_veth("host", "hb", "be", "bb", "02:00:00:00:02:01", "02:00:00:00:b1:01");
		ASSERT_TRUE(topo.run("cli", "ip addr add 10.1.1.10/24 dev cc && ip route add default via 10.1.1.1"));
		ASSERT_TRUE(topo.run("be", "ip addr add 192.168.20.11/24 dev bb && ip route add default via 192.168.20.1"));
		ASSERT_TRUE(topo.run("host", "ip addr add 10.1.1.1/24 dev hc && ip addr add 192.168.20.1/24 dev hb && "
					     "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0"));
		// The program rewrites finished checksums: senders must not leave
		// them to an offload that the redirected frame no longer carries.
		ASSERT_TRUE(topo.run("cli", "ethtool -K cc tx off >/dev/null"));
		ASSERT_TRUE(topo.run("be", "ethtool -K bb tx off >/dev/null"));
		// Frames redirected into a veth are received by its peer's NAPI,
		// which runs when the peer has an XDP program: give both peers one.
		for (auto [ns, dev] : {std::pair{"cli", "cc"}, std::pair{"be", "bb"}})
			ASSERT_EQ(Topology::in_ns(topo.real(ns), [dev = dev] { return attach_pass(dev); }), 0) << dev;

		// The test process itself becomes the NIC host.
		int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		int host = open(("/run/netns/" + topo.real("host")).c_str(), O_RDONLY | O_CLOEXEC);
		ASSERT_GE(self, 0);
		ASSERT_GE(host, 0);
		orig_ns = self;
		ASSERT_EQ(setns(host, CLONE_NEWNET), 0);
		close(host);
		hc = uint32_t(topo.ifindex("host", "hc"));
		hb = uint32_t(topo.ifindex("host", "hb"));

		auto dp = XdpDataplane::load();
		ASSERT_TRUE(dp.ok()) << dp.error();
		xdp = std::move(*dp);
		ASSERT_TRUE(xdp->set_local_addresses({*Addr::parse("10.1.1.1"), *Addr::parse("192.168.20.1")}).ok());
		publish("Approved");
		for (uint32_t i : {hc, hb}) {
			auto st = xdp->attach(i, XDP_FLAGS_DRV_MODE);
			ASSERT_TRUE(st.ok()) << st.error();
		}

		int ready[2];
		ASSERT_EQ(pipe(ready), 0);
		ASSERT_EQ(pipe(stop), 0);
		server = Topology::spawn_in_ns(topo.real("be"), [&] { return echo_server("192.168.20.11", 3306, ready[1], stop[0]); });
		char c;
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		close(ready[0]);
		close(ready[1]);
	}

	void TearDown() override
	{
		if (server > 0) {
			EXPECT_EQ(write(stop[1], "s", 1), 1);
			EXPECT_EQ(Topology::wait_child(server), 0) << "echo server";
		}
		xdp.reset();
		if (orig_ns >= 0) {
			setns(orig_ns, CLONE_NEWNET);
			close(orig_ns);
		}
	}

	void publish(const std::string &pec_status)
	{
		State s = policy(pec_status);
		ASSERT_TRUE(validate(s).ok()) << validate(s).error();
		auto t = compile(s, {{hc, "client-vnet", {}}, {hb, "", {}}}, ++generation);
		ASSERT_TRUE(t.ok()) << t.error();
		auto st = xdp->publish(*t);
		ASSERT_TRUE(st.ok()) << st.error();
	}

	std::string counts() const
	{
		std::string out = "counters:";
		auto c = xdp->reason_counts();
		for (size_t i = 0; i < c.size(); i++)
			if (c[i])
				out += " " + std::to_string(i) + "=" + std::to_string(c[i]);
		return out;
	}

	int client(const char *dst, uint16_t port, const char *msg, int timeout_ms = 2000)
	{
		return Topology::in_ns(topo.real("cli"), [&] { return echo_once(dst, port, msg, timeout_ms); });
	}

	Topology topo;
	std::unique_ptr<XdpDataplane> xdp;
	uint32_t hc = 0, hb = 0;
	int orig_ns = -1;
	int server = -1;
	int stop[2] = {-1, -1};
	uint64_t generation = 0;
};

TEST_F(VethTest, PrivateEndpointConnectsThroughXdpAndRejectionCutsIt)
{
	EXPECT_EQ(client("10.1.1.100", 3306, "hello"), 0) << "approved private endpoint; " << counts();
	EXPECT_GT(xdp->reason_counts()[LG_REASON_NONE], 0u);
	EXPECT_GT(xdp->flow_entries(), 0u);

	publish("Rejected");
	EXPECT_EQ(client("10.1.1.100", 3306, "again", 1000), 3) << "rejected: the SYN is dropped";
	EXPECT_GT(xdp->reason_counts()[LG_REASON_PEC_REJECTED], 0u);

	publish("Approved");
	EXPECT_EQ(client("10.1.1.100", 3306, "back"), 0);
}

TEST_F(VethTest, DeniedByNsgAndWrongPort)
{
	EXPECT_EQ(client("10.1.1.100", 22, "ssh", 1000), 3);
	EXPECT_GT(xdp->reason_counts()[LG_REASON_NSG_DENY], 0u);
	EXPECT_EQ(client("10.1.1.100", 3307, "x", 1000), 3);
	EXPECT_GT(xdp->reason_counts()[LG_REASON_PE_PORT], 0u);
}

} // namespace
