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
#include "validate.hpp"
#include "veth_env.hpp"
#include "xdp_loader.hpp"

using namespace lg;
using lg::testing::Topology;

namespace {

using lgtest::echo_server;
using lgtest::policy;

class VethTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		ASSERT_EQ(geteuid(), 0u) << "needs root; CI runs as root";
		ASSERT_EQ(lgtest::three_ns_topology(topo), "");

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
		close(ready[1]); // a server that dies before it is ready ends the read
		char c;
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		close(ready[0]);
	}

	void TearDown() override
	{
		if (server > 0) {
			EXPECT_EQ(write(stop[1], "s", 1), 1);
			EXPECT_EQ(Topology::wait_child(server), 0) << "echo server";
		}
		for (int &fd : stop)
			if (fd >= 0) {
				close(fd);
				fd = -1;
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

	int client(const char *dst, uint16_t port, int timeout_ms = 2000)
	{
		return Topology::in_ns(topo.real("cli"), [&] { return lgtest::echo_once(dst, port, timeout_ms); });
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
	EXPECT_EQ(client("10.1.1.100", 3306), 0) << "approved private endpoint; " << counts();
	EXPECT_GT(xdp->reason_counts()[LG_REASON_NONE], 0u);
	EXPECT_GT(xdp->flow_entries(), 0u);
	lgtest::Persistent open(topo.real("cli"));
	ASSERT_TRUE(open.round_trip()) << counts();

	publish("Rejected");
	// SPEC §4: the open connection is cut at its next packet.
	uint64_t rejected = xdp->reason_counts()[LG_REASON_PEC_REJECTED];
	EXPECT_FALSE(open.round_trip()) << "an open connection outlived the rejection";
	EXPECT_GT(xdp->reason_counts()[LG_REASON_PEC_REJECTED], rejected);
	EXPECT_EQ(open.finish(), 0);
	EXPECT_EQ(client("10.1.1.100", 3306, 1000), 3) << "rejected: the SYN is dropped";
	EXPECT_GT(xdp->reason_counts()[LG_REASON_PEC_REJECTED], 0u);

	publish("Approved");
	EXPECT_EQ(client("10.1.1.100", 3306), 0);
}

TEST_F(VethTest, DeniedByNsgAndWrongPort)
{
	EXPECT_EQ(client("10.1.1.100", 22, 1000), 3);
	EXPECT_GT(xdp->reason_counts()[LG_REASON_NSG_DENY], 0u);
	EXPECT_EQ(client("10.1.1.100", 3307, 1000), 3);
	EXPECT_GT(xdp->reason_counts()[LG_REASON_PE_PORT], 0u);
}

} // namespace
