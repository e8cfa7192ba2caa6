// HostEvents (control/agent/host_events.*) fed with the kernel's own
// rtnetlink notifications: a namespace with one veth, changed with ip(8);
// the notifications of each command are queued before the command exits,
// so each step reads exactly its own.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/neighbour.h>
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


// IPv6 neighbours are kept by family and address: a09:2:: begins with the
// bytes of 10.9.0.2, and the two are two neighbours.
TEST_F(HostEventsTest, IPv6NeighboursAreKeptApartFromIPv4Ones)
{
	// IPv6 on v0 alone, down, with no link-local address and no DAD: nothing
	// the kernel would announce at a time of its own choosing (up, its MLD
	// reports make a neighbour, ff02::16, a moment later). A neighbour
	// table is read and written on a link that is down.
	ASSERT_TRUE(topo.run("he", "ip link set v0 down && sysctl -qw net.ipv6.conf.v0.addr_gen_mode=1 "
				   "net.ipv6.conf.v0.accept_dad=0 net.ipv6.conf.v0.disable_ipv6=0"));
	(void)read_all();
	(void)step("ip addr add 10.9.0.1/24 dev v0 && ip -6 addr add fd00::1/64 dev v0 nodad");
	EXPECT_TRUE(step("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent").fib);
	EXPECT_TRUE(step("ip -6 neigh add a09:2:: lladdr 02:00:00:00:00:06 dev v0 nud permanent").fib)
		<< "an IPv6 neighbour whose address begins as an IPv4 one's";
	EXPECT_EQ(ev.neighbours(), 2u);
	EXPECT_FALSE(step("ip -6 neigh change a09:2:: lladdr 02:00:00:00:00:06 dev v0 nud reachable").fib);
	EXPECT_TRUE(step("ip -6 neigh change a09:2:: lladdr 02:00:00:00:00:02 dev v0 nud permanent").fib)
		<< "the IPv4 neighbour's link-layer address is not this one's";
	EXPECT_FALSE(step("ip neigh change 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud reachable").fib);
	EXPECT_TRUE(step("ip -6 neigh del a09:2:: dev v0").fib);
	EXPECT_EQ(ev.neighbours(), 1u) << "the IPv4 one stays";
	EXPECT_TRUE(step("ip -6 neigh add fd00::2 lladdr 02:00:00:00:00:07 dev v0 nud permanent").fib);

	// The dump at start holds both families.
	int d = ns_socket();
	ASSERT_GE(d, 0);
	HostEvents fresh;
	bool whole = fresh.remember_neighbours(d);
	int e = errno;
	close(d);
	ASSERT_TRUE(whole) << std::strerror(e);
	std::string table;
	(void)topo.run("he", "ip neigh show nud all", &table);
	EXPECT_EQ(fresh.neighbours(), 2u) << "10.9.0.2 and fd00::2; the table:\n" << table;
}

// A neighbour notice in the kernel's format, built here where the kernel
// cannot be made to send one (65,537 neighbours, a dump interrupted).
std::vector<char> neigh_msg(uint16_t type, uint8_t family, int ifindex, const std::vector<uint8_t> &dst,
			    const std::vector<uint8_t> &ll, uint16_t state, uint32_t seq = 0, uint16_t flags = 0)
{
	size_t at = NLMSG_LENGTH(sizeof(ndmsg));
	size_t len = at + RTA_SPACE(dst.size()) + (ll.empty() ? 0 : RTA_SPACE(ll.size()));
	std::vector<char> m(NLMSG_ALIGN(len), 0);
	auto *h = reinterpret_cast<nlmsghdr *>(m.data());
	h->nlmsg_len = uint32_t(len);
	h->nlmsg_type = type;
	h->nlmsg_flags = flags;
	h->nlmsg_seq = seq;
	ndmsg nd{};
	nd.ndm_family = family;
	nd.ndm_ifindex = ifindex;
	nd.ndm_state = state;
	std::memcpy(m.data() + NLMSG_LENGTH(0), &nd, sizeof nd);
	auto put = [&](uint16_t t, const std::vector<uint8_t> &v) {
		rtattr a{uint16_t(RTA_LENGTH(v.size())), t};
		std::memcpy(m.data() + at, &a, sizeof a);
		std::memcpy(m.data() + at + RTA_LENGTH(0), v.data(), v.size());
		at += RTA_SPACE(v.size());
	};
	put(NDA_DST, dst);
	if (!ll.empty())
		put(NDA_LLADDR, ll);
	return m;
}

std::vector<uint8_t> v4(uint32_t i)
{
	return {10, uint8_t(i >> 16), uint8_t(i >> 8), uint8_t(i)};
}

bool fed_fib(HostEvents &ev, const std::vector<char> &m)
{
	alignas(nlmsghdr) char buf[256];
	std::memcpy(buf, m.data(), m.size());
	return ev.feed(buf, m.size()).fib;
}

TEST(HostEventsInput, PastTheCapANeighboursEveryNoticeIsAChange)
{
	HostEvents ev;
	const std::vector<uint8_t> ll{2, 0, 0, 0, 0, 1};
	for (uint32_t i = 0; i < HostEvents::kMaxNeighbours; i++)
		ASSERT_TRUE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(i), ll, NUD_REACHABLE))) << i;
	ASSERT_EQ(ev.neighbours(), HostEvents::kMaxNeighbours);
	EXPECT_FALSE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(7), ll, NUD_STALE)))
		<< "a remembered neighbour in another state";
	const auto extra = v4(HostEvents::kMaxNeighbours);
	EXPECT_TRUE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, extra, ll, NUD_REACHABLE)));
	EXPECT_EQ(ev.neighbours(), HostEvents::kMaxNeighbours) << "not remembered";
	EXPECT_TRUE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, extra, ll, NUD_STALE)))
		<< "one past the cap: its state change may be a change of address";
	EXPECT_TRUE(fed_fib(ev, neigh_msg(RTM_DELNEIGH, AF_INET, 2, v4(7), ll, NUD_STALE)));
	EXPECT_EQ(ev.neighbours(), HostEvents::kMaxNeighbours - 1);
	EXPECT_TRUE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, extra, ll, NUD_REACHABLE)));
	EXPECT_EQ(ev.neighbours(), HostEvents::kMaxNeighbours) << "a freed place is taken";
	EXPECT_FALSE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, extra, ll, NUD_STALE)));
}

// remember_neighbours() on a datagram socket pair whose other end plays the
// kernel: the replies are queued before the call, the request is left unread.
class NeighbourDump : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0); }
	void TearDown() override
	{
		for (int f : sv)
			if (f >= 0)
				close(f);
	}
	void reply(const std::vector<char> &d) { ASSERT_EQ(send(sv[1], d.data(), d.size(), 0), ssize_t(d.size())); }
	static std::vector<char> done(int rc, uint16_t type = NLMSG_DONE)
	{
		std::vector<char> m(NLMSG_SPACE(sizeof(int)), 0);
		auto *h = reinterpret_cast<nlmsghdr *>(m.data());
		h->nlmsg_len = NLMSG_LENGTH(sizeof(int));
		h->nlmsg_type = type;
		h->nlmsg_seq = kSeq;
		std::memcpy(m.data() + NLMSG_LENGTH(0), &rc, sizeof rc);
		return m;
	}
	static std::vector<char> entry(uint32_t i, uint16_t flags = NLM_F_MULTI)
	{
		return neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(i), {2, 0, 0, 0, 0, 1}, NUD_REACHABLE, kSeq, flags);
	}
	static constexpr uint32_t kSeq = 0x6e656967; // remember_neighbours()'s request
	int sv[2] = {-1, -1};
	HostEvents ev;
};

TEST_F(NeighbourDump, AWholeDumpIsRemembered)
{
	auto a = entry(1), b = entry(2);
	a.insert(a.end(), b.begin(), b.end()); // two in one datagram
	reply(a);
	reply(entry(3));
	reply(done(0));
	ASSERT_TRUE(ev.remember_neighbours(sv[0])) << std::strerror(errno);
	EXPECT_EQ(ev.neighbours(), 3u);
	EXPECT_FALSE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(2), {2, 0, 0, 0, 0, 1}, NUD_STALE)));
}

TEST_F(NeighbourDump, AnInterruptedDumpRemembersNothing)
{
	reply(entry(1));
	reply(entry(2, NLM_F_MULTI | NLM_F_DUMP_INTR)); // the table changed while it was read
	reply(done(0));
	EXPECT_FALSE(ev.remember_neighbours(sv[0]));
	EXPECT_EQ(errno, EINTR);
	EXPECT_EQ(ev.neighbours(), 0u) << "what was read may mix two states of the table";
	EXPECT_TRUE(fed_fib(ev, neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(1), {2, 0, 0, 0, 0, 1}, NUD_STALE)));
}

TEST_F(NeighbourDump, AnErrorOrAnUnfinishedDumpRemembersNothing)
{
	reply(entry(1));
	reply(done(-ENOBUFS, NLMSG_ERROR));
	EXPECT_FALSE(ev.remember_neighbours(sv[0]));
	EXPECT_EQ(errno, ENOBUFS);
	EXPECT_EQ(ev.neighbours(), 0u);

	reply(entry(1));
	reply(done(-EBUSY));
	EXPECT_FALSE(ev.remember_neighbours(sv[0]));
	EXPECT_EQ(errno, EBUSY) << "a DONE that carries an error";
	EXPECT_EQ(ev.neighbours(), 0u);

	// Replies of another request are not this dump's; then no DONE: the
	// read gives up after a second.
	auto other = neigh_msg(RTM_NEWNEIGH, AF_INET, 2, v4(9), {2, 0, 0, 0, 0, 1}, NUD_REACHABLE, kSeq + 1, NLM_F_MULTI);
	reply(entry(1));
	reply(other);
	EXPECT_FALSE(ev.remember_neighbours(sv[0]));
	EXPECT_EQ(errno, ETIMEDOUT);
	EXPECT_EQ(ev.neighbours(), 0u);
}

TEST_F(NeighbourDump, ADatagramLongerThanTheBufferRemembersNothing)
{
	std::vector<char> big;
	for (uint32_t i = 0; big.size() <= 65536; i++) {
		auto e = entry(i);
		big.insert(big.end(), e.begin(), e.end());
	}
	int sz = int(big.size()) * 2;
	ASSERT_EQ(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz), 0);
	reply(big);
	reply(done(0));
	EXPECT_FALSE(ev.remember_neighbours(sv[0]));
	EXPECT_EQ(errno, EMSGSIZE);
	EXPECT_EQ(ev.neighbours(), 0u) << "the datagram's end was cut off";
}

} // namespace
