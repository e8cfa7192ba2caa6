// HostEvents (control/agent/host_events.*) fed with the kernel's own
// rtnetlink notifications: a namespace with one veth, changed with ip(8);
// the notifications of each command are queued before the command exits,
// so each step reads exactly its own.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "host_events.hpp"
#include "netns.hpp"

using lg::agent::HostEvents;
using lg::testing::Topology;

namespace {

class HostEventsTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		ASSERT_EQ(geteuid(), 0u) << "needs root; CI runs as root";
		topo.add_ns("he");
		topo.add_ns("peer");
		topo.add_veth("he", "v0", "peer", "p0");
		fd = ns_socket();
		ASSERT_GE(fd, 0);
		sockaddr_nl nl{};
		nl.nl_family = AF_NETLINK;
		ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&nl), sizeof nl), 0);
		for (unsigned g : HostEvents::kGroups) // the agent's own list
			ASSERT_EQ(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g), 0) << g;
		// IPv6 would add its own notices (DAD, link-local routes) at times
		// of its choosing; these steps are about IPv4.
		ASSERT_TRUE(topo.run("he", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"));
		(void)read_all();
	}

	// A NETLINK_ROUTE socket made inside the namespace: it stays bound to it.
	int ns_socket()
	{
		int orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		int ns = open(("/run/netns/" + topo.real("he")).c_str(), O_RDONLY | O_CLOEXEC);
		int s = -1;
		if (orig >= 0 && ns >= 0 && setns(ns, CLONE_NEWNET) == 0) {
			s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
			if (setns(orig, CLONE_NEWNET) != 0) {
				ADD_FAILURE() << "cannot return to the test's namespace";
				std::abort();
			}
		}
		if (ns >= 0)
			close(ns);
		if (orig >= 0)
			close(orig);
		return s;
	}

	void TearDown() override
	{
		if (fd >= 0)
			close(fd);
	}

	// The datagrams queued now, one by one.
	std::vector<std::string> read_all()
	{
		std::vector<std::string> out;
		alignas(nlmsghdr) char buf[16384];
		for (;;) {
			ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (r < 0 && errno == ENOBUFS)
				continue;
			if (r <= 0)
				break;
			out.emplace_back(buf, size_t(r));
		}
		return out;
	}

	// Runs cmd in the namespace and feeds what it announced.
	HostEvents::Seen step(const std::string &cmd)
	{
		std::string out;
		EXPECT_TRUE(topo.run("he", cmd, &out)) << cmd << ": " << out;
		HostEvents::Seen s;
		for (const std::string &d : read_all()) {
			alignas(nlmsghdr) char buf[16384];
			std::memcpy(buf, d.data(), d.size());
			s |= ev.feed(buf, d.size());
		}
		EXPECT_GT(s.messages, 0u) << cmd << ": the kernel announced nothing";
		return s;
	}

	Topology topo;
	int fd = -1;
	HostEvents ev;
};

TEST_F(HostEventsTest, ChangesOfWhatARouteLookupAnswersAreChanges)
{
	auto s = step("ip addr add 10.9.0.1/24 dev v0");
	EXPECT_TRUE(s.addresses);
	EXPECT_TRUE(s.fib);

	s = step("ip route add 10.20.0.0/16 via 10.9.0.2 dev v0");
	EXPECT_FALSE(s.addresses);
	EXPECT_TRUE(s.fib) << "a route";
	EXPECT_TRUE(step("ip route del 10.20.0.0/16").fib) << "a route removed";
	EXPECT_TRUE(step("ip rule add to 10.30.0.0/16 table 100").fib) << "a policy rule";
	EXPECT_TRUE(step("ip link set v0 mtu 1400").fib) << "a link";
	EXPECT_TRUE(step("sysctl -qw net.ipv4.conf.v0.forwarding=1").fib) << "forwarding (netconf)";
	// Only the nexthop notices, not the routes' (as routing daemons set it).
	ASSERT_TRUE(topo.run("he", "sysctl -qw net.ipv4.nexthop_compat_mode=0"));
	s = step("ip nexthop add id 7 via 10.9.0.2 dev v0");
	EXPECT_TRUE(s.fib) << "a nexthop object";
	(void)step("ip route add 10.40.0.0/16 nhid 7");
	EXPECT_TRUE(step("ip nexthop replace id 7 via 10.9.0.3 dev v0").fib)
		<< "a nexthop object's gateway: routes that use it are not announced again";
	s = step("ip addr del 10.9.0.1/24 dev v0");
	EXPECT_TRUE(s.addresses);
	EXPECT_TRUE(s.fib);
}

TEST_F(HostEventsTest, ANeighbourChangesWithItsAddressNotWithItsState)
{
	(void)step("ip addr add 10.9.0.1/24 dev v0");
	EXPECT_TRUE(step("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent").fib)
		<< "a neighbour seen for the first time";
	EXPECT_EQ(ev.neighbours(), 1u);
	auto s = step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud reachable");
	EXPECT_FALSE(s.fib) << "the same address in another state: no route lookup answers otherwise";
	EXPECT_FALSE(step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud stale").fib);
	EXPECT_TRUE(step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:03 dev v0 nud stale").fib)
		<< "another link-layer address";
	EXPECT_FALSE(step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:03 dev v0 nud permanent").fib);
	EXPECT_TRUE(step("ip neigh change 10.9.0.2 dev v0 nud failed").fib) << "no address any more";
	EXPECT_EQ(ev.neighbours(), 0u);
	EXPECT_TRUE(step("ip neigh replace 10.9.0.2 lladdr 02:00:00:00:00:03 dev v0 nud permanent").fib)
		<< "back, with the address it had before it failed";
	EXPECT_TRUE(step("ip neigh del 10.9.0.2 dev v0").fib) << "removed";
	EXPECT_EQ(ev.neighbours(), 0u);
}

// The agent reads the neighbour table at start (Plane::create): a
// neighbour that was there before keeps its address through state changes.
TEST_F(HostEventsTest, NeighboursReadAtStartAreKnown)
{
	(void)step("ip addr add 10.9.0.1/24 dev v0");
	ASSERT_TRUE(topo.run("he", "ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent && "
				   "ip neigh add 10.9.0.3 lladdr 02:00:00:00:00:03 dev v0 nud reachable && "
				   "ip neigh add 10.9.0.4 dev v0 nud incomplete"));
	(void)read_all(); // announced before "the agent started"
	int d = ns_socket();
	ASSERT_GE(d, 0);
	bool whole = ev.remember_neighbours(d);
	int e = errno;
	close(d);
	ASSERT_TRUE(whole) << std::strerror(e);
	EXPECT_EQ(ev.neighbours(), 2u) << "the two with a link-layer address; not the incomplete one";
	EXPECT_FALSE(step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud stale").fib)
		<< "a neighbour from before the start, in another state with the same address";
	EXPECT_FALSE(step("ip neigh change 10.9.0.3 lladdr 02:00:00:00:00:03 dev v0 nud permanent").fib);
	EXPECT_TRUE(step("ip neigh change 10.9.0.3 lladdr 02:00:00:00:00:09 dev v0 nud permanent").fib)
		<< "another address than the table had at the start";
	EXPECT_TRUE(step("ip neigh replace 10.9.0.4 lladdr 02:00:00:00:00:04 dev v0 nud permanent").fib)
		<< "the incomplete one resolved";
	EXPECT_EQ(ev.neighbours(), 3u);
}

TEST_F(HostEventsTest, BridgeForwardingEntriesAreNoChange)
{
	(void)step("ip link add br0 type bridge && ip link set v0 master br0 && ip link set br0 up");
	auto s = step("bridge fdb add 02:00:00:00:00:09 dev v0 master static");
	EXPECT_FALSE(s.fib) << "an AF_BRIDGE forwarding entry: no route lookup reads it";
}

TEST_F(HostEventsTest, TornOrLostNotificationsAreAChangeOfEverything)
{
	(void)step("ip addr add 10.9.0.1/24 dev v0");
	(void)step("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent");
	ASSERT_TRUE(topo.run("he", "ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud reachable"));
	auto d = read_all();
	ASSERT_FALSE(d.empty());
	alignas(nlmsghdr) char buf[16384];
	std::memcpy(buf, d[0].data(), d[0].size());
	auto s = ev.feed(buf, d[0].size() - 1);
	EXPECT_TRUE(s.fib) << "a message cut short";
	EXPECT_TRUE(s.addresses);
	EXPECT_EQ(ev.neighbours(), 0u) << "what was cut off may have changed any neighbour";
	std::memcpy(buf, d[0].data(), d[0].size());
	EXPECT_TRUE(ev.feed(buf, d[0].size()).fib) << "after a torn read, a neighbour's state change is a change";

	s = ev.lost();
	EXPECT_TRUE(s.fib);
	EXPECT_TRUE(s.addresses);
	EXPECT_EQ(ev.neighbours(), 0u) << "what was lost may have changed any neighbour";
	std::memcpy(buf, d[0].data(), d[0].size());
	EXPECT_TRUE(ev.feed(buf, d[0].size()).fib) << "after a loss, a neighbour's state change is a change";
}

} // namespace
