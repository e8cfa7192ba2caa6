// The reference evaluator against SPEC §3–§5: the seed scenarios, every drop
// reason, flows across generations, fragments, ICMP errors, address
// resolution and forwarding. Frames are built as bytes and decided as bytes.
#include <gtest/gtest.h>

#include <cstring>

#include "evaluator.hpp"
#include "packet.hpp"
#include "policy_helpers.hpp"
#include "seed_fixture.hpp"

namespace lg {
namespace {

using namespace seed_fixture;

// The seed host plus two more client neighbours.
HostConfig host()
{
	HostConfig h = seed_host();
	h.neighbors.push_back({kClientIf, A("10.1.5.7"), kClientMac});
	h.neighbors.push_back({kClientIf, A("fd00:1:0:1::20"), kClientMac});
	return h;
}

State seed() { return seed_state(); }

class EvalTest : public ::testing::Test {
protected:
	EvalTest() : ev(host()) {}
	void SetUp() override { commit(seed()); }
	void commit(const State &s)
	{
		auto st = ev.commit(s);
		ASSERT_TRUE(st.ok()) << st.error();
		state = s;
	}
	PacketBuilder c2s() { return PacketBuilder().eth(kClientMac, kClientIfMac); }
	PacketBuilder b2c() { return PacketBuilder().eth(kBackendMac, kBackendIfMac); }
	std::vector<uint8_t> syn(const char *src, const char *dst, uint16_t sp = 40000, uint16_t dp = 3306)
	{
		return c2s().ipv4(src, dst).tcp(sp, dp, kTcpSyn).build();
	}
	Decision run(const std::vector<uint8_t> &f, uint32_t ifindex = kClientIf) { return ev.process(f, ifindex, now); }
	Decision expect_drop(const std::vector<uint8_t> &f, lg_reason r, uint32_t ifindex = kClientIf)
	{
		Decision d = run(f, ifindex);
		EXPECT_EQ(d.verdict, LG_VERDICT_DROP);
		EXPECT_STREQ(reason_name(d.reason), reason_name(r));
		EXPECT_TRUE(d.frame.empty());
		return d;
	}
	Decision expect_forward(const std::vector<uint8_t> &f, uint32_t ifindex = kClientIf)
	{
		Decision d = run(f, ifindex);
		EXPECT_EQ(d.verdict, LG_VERDICT_FORWARD) << reason_name(d.reason) << " at " << stage_name(d.stage);
		EXPECT_EQ(d.reason, LG_REASON_NONE);
		return d;
	}
	PrivateEndpoint &pe() { return *state.private_endpoint("pe-east"); }

	Evaluator ev;
	State state;
	uint64_t now = 1000 * kSec;
};

// Every checksum of an output frame is right (full recomputation).
void expect_checksums_ok(const std::vector<uint8_t> &f)
{
	Parsed p;
	ASSERT_EQ(parse_frame(f, p), LG_REASON_NONE);
	std::span<const uint8_t> s(f);
	if (p.family == 4) {
		EXPECT_EQ(inet_checksum(s.subspan(p.l3, size_t(f[p.l3] & 0xf) * 4)), 0) << "IPv4 header checksum";
	}
	if (!p.has_l4 || p.fragment)
		return;
	auto l4 = s.subspan(p.l4, p.l3_end - p.l4);
	uint32_t ps = p.proto == kProtoIcmp ? 0 : pseudo_sum(p.src, p.dst, p.proto, uint32_t(l4.size()), p.family == 4);
	EXPECT_EQ(inet_checksum(l4, ps), 0) << "L4 checksum, proto " << int(p.proto);
}

Parsed parsed(const std::vector<uint8_t> &f)
{
	Parsed p;
	EXPECT_EQ(parse_frame(f, p), LG_REASON_NONE);
	return p;
}

// ---------------------------------------------------------------- seed cases

TEST_F(EvalTest, ServerWithoutRulesOrEndpointsAdmitsNothing)
{
	State s = seed();
	s.privateEndpoints.clear();
	s.networkSecurityGroups[0].securityRules.clear();
	commit(s);
	for (const char *dst : {"20.10.1.5", "20.10.2.5"}) {
		expect_drop(syn("10.1.1.10", dst), LG_REASON_FIREWALL_NO_MATCH, kClientIf);
		expect_drop(b2c().ipv4("20.1.2.3", dst).tcp(1, 3306, kTcpSyn).build(), LG_REASON_FIREWALL_NO_MATCH, kBackendIf);
	}
	EXPECT_EQ(ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.1.5"), kProtoTcp, 40000, 3306}).reason,
		  LG_REASON_FIREWALL_NO_MATCH);
}

TEST_F(EvalTest, ManualPrivateEndpointPendingApprovedRejected)
{
	pe().manualRequest = true;
	pe().connectionState = {"Pending", "", "None"};
	commit(state);
	expect_drop(syn("10.1.1.10", "10.1.1.100"), LG_REASON_PEC_PENDING);

	pe().connectionState = {"Approved", "ok by dba", "None"};
	commit(state);
	Decision d = expect_forward(syn("10.1.1.10", "10.1.1.100"));
	EXPECT_TRUE(d.flow_created);
	EXPECT_EQ(d.backend, "192.168.20.11:3306");
	EXPECT_EQ(d.egress_ifindex, kBackendIf);
	Parsed o = parsed(d.frame);
	EXPECT_EQ(o.dst, A("192.168.20.11"));
	EXPECT_EQ(o.dport, 3306);
	EXPECT_EQ(o.ttl, 63);
	EXPECT_EQ(0, std::memcmp(d.frame.data(), kBackendMac.data(), 6));
	EXPECT_EQ(0, std::memcmp(d.frame.data() + 6, kBackendIfMac.data(), 6));
	expect_checksums_ok(d.frame);

	// The reply is translated back to the private endpoint's address.
	Decision r = expect_forward(b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build(),
				    kBackendIf);
	EXPECT_EQ(r.stage, LG_STAGE_CONNTRACK);
	Parsed ro = parsed(r.frame);
	EXPECT_EQ(ro.src, A("10.1.1.100"));
	EXPECT_EQ(ro.sport, 3306);
	EXPECT_EQ(r.egress_ifindex, kClientIf);
	expect_checksums_ok(r.frame);
	expect_forward(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build());

	// Rejected: the open flow dies at its next packet, new ones fail.
	pe().connectionState = {"Rejected", "not this one", "None"};
	commit(state);
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck | kTcpPsh).build(), LG_REASON_PEC_REJECTED);
	EXPECT_EQ(ev.flow_count(), 0u);
	expect_drop(syn("10.1.1.10", "10.1.1.100", 40001), LG_REASON_PEC_REJECTED);
}

TEST_F(EvalTest, PublicAccessDisabledKeepsPrivateEndpoint)
{
	MySqlServer &e = *state.server("eastus-db");
	e.firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}, {"anywhere", "20.0.0.0", "20.255.255.255"}};
	state.networkSecurityGroups.clear();
	state.virtualNetworks[0].subnets[0].networkSecurityGroup = "";
	commit(state);
	expect_forward(syn("10.1.1.10", "20.10.2.5"));
	e.publicNetworkAccess = "Disabled";
	commit(state);
	expect_drop(syn("10.1.1.10", "20.10.2.5", 40001), LG_REASON_PUBLIC_ACCESS_DISABLED);
	expect_drop(b2c().ipv4("20.1.2.3", "20.10.2.5").tcp(1, 3306, kTcpSyn).build(), LG_REASON_PUBLIC_ACCESS_DISABLED,
		    kBackendIf);
	// The flow opened before the switch is cut at its next packet too.
	expect_drop(c2s().ipv4("10.1.1.10", "20.10.2.5").tcp(40000, 3306, kTcpAck).build(), LG_REASON_PUBLIC_ACCESS_DISABLED);
	expect_forward(syn("10.1.1.10", "10.1.1.100", 40002));
}

TEST_F(EvalTest, ExfiltrationSqlWestUsAllowedEastUsDenied)
{
	for (auto *sv : {state.server("westus-db"), state.server("eastus-db")})
		sv->firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	commit(state);
	Decision w = expect_forward(syn("10.1.1.10", "20.10.1.5"));
	ASSERT_FALSE(w.trace.empty());
	EXPECT_EQ(w.trace[0].rule, "allow-sql-westus");
	Decision e = expect_drop(syn("10.1.1.10", "20.10.2.5"), LG_REASON_NSG_DENY);
	EXPECT_EQ(e.nsg, "clients-nsg");
	EXPECT_EQ(e.rule, "deny-sql");
	EXPECT_EQ(e.stage, LG_STAGE_SUBNET_OUTBOUND);
	// Another West US gateway address passes the NSG (and stops at routing-free public space).
	EXPECT_NE(ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.1.77"), kProtoTcp, 1, 3306}).reason, LG_REASON_NSG_DENY);
	// VNet names are case-insensitive (ARM): explain takes another spelling.
	EXPECT_EQ(ev.explain({"Client-VNet", A("10.1.1.10"), A("20.10.2.5"), kProtoTcp, 1, 3306}).rule, "deny-sql");
	// So are references, in a State built in code: the subnet keeps its NSG.
	State keep = state, loud = state;
	loud.virtualNetworks[0].subnet("clients")->networkSecurityGroup = "CLIENTS-NSG";
	commit(loud);
	EXPECT_EQ(ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.2.5"), kProtoTcp, 1, 3306}).rule, "deny-sql");
	commit(keep);
	// The private endpoint to the East US server keeps working.
	expect_forward(syn("10.1.1.10", "10.1.1.100", 40005));
	EXPECT_EQ(ev.counters().rule_hits.at("clients-nsg/deny-sql"), 1u);
}

// The VirtualNetwork tag takes in a peer's space only once both VNets list
// the peering (a one-sided one is Azure's "Initiated": not connected).
TEST_F(EvalTest, VirtualNetworkTagHoldsConnectedPeersOnly)
{
	VirtualNetwork peer;
	peer.name = "peer-vnet";
	peer.addressPrefixes = {"10.9.0.0/16"};
	state.virtualNetworks.push_back(peer);
	state.virtualNetworks[0].peerings.push_back("peer-vnet");
	commit(state);
	Tuple t{"client-vnet", A("10.1.1.10"), A("10.9.0.5"), kProtoTcp, 1, 80};
	auto first_rule = [&] {
		Decision d = ev.explain(t);
		return d.trace.empty() ? std::string() : d.trace[0].rule;
	};
	EXPECT_EQ(first_rule(), "AllowInternetOutBound");
	state.virtualNetworks.back().peerings.push_back("client-vnet");
	commit(state);
	EXPECT_EQ(first_rule(), "AllowVnetOutBound");
}

// explain told the egress interface's VNet (linkgated asks the host's
// routes for it) looks the destination's subnet and NIC up there, as the
// dataplanes do with their egress interface; without it, in the packet's.
TEST_F(EvalTest, ExplainLooksTheDestinationUpInTheEgressVnet)
{
	VirtualNetwork peer;
	peer.name = "peer-vnet";
	peer.addressPrefixes = {"10.9.0.0/16"};
	peer.subnets = {{"far", "10.9.1.0/24", "", {}, "Disabled"}};
	peer.peerings = {"client-vnet"};
	state.virtualNetworks.push_back(peer);
	state.virtualNetworks[0].peerings.push_back("peer-vnet");
	state.nsg("clients-nsg")->securityRules.push_back(
		lg::testing::make_rule("no-peer-web", 300, "Inbound", "Deny", "Tcp", "10.9.0.0/16", "*", "80"));
	commit(state);
	Evaluator routeless{HostConfig{}}; // as linkgated's: no routes of its own
	ASSERT_TRUE(routeless.commit(state).ok());
	Tuple t{"peer-vnet", A("10.9.1.10"), A("10.1.1.50"), kProtoTcp, 1000, 80};
	Decision d = routeless.explain(t);
	EXPECT_EQ(d.verdict, LG_VERDICT_FORWARD) << "10.1.1.50 is in no subnet of peer-vnet";
	t.egress_vnet = "client-vnet";
	d = routeless.explain(t);
	EXPECT_EQ(d.verdict, LG_VERDICT_DROP);
	EXPECT_EQ(d.reason, LG_REASON_NSG_DENY);
	EXPECT_EQ(d.stage, LG_STAGE_SUBNET_INBOUND);
	EXPECT_EQ(d.rule, "no-peer-web");
	// The host's routes give the same answer (the fixture's evaluator).
	t.egress_vnet.clear();
	EXPECT_EQ(ev.explain(t).rule, "no-peer-web");
}

TEST_F(EvalTest, AllowAzureServicesRuleAdmitsAzureCloudOnly)
{
	state.server("westus-db")->firewallRules = {{"AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"}};
	commit(state);
	expect_forward(b2c().ipv4("40.64.1.2", "20.10.1.5").tcp(1000, 3306, kTcpSyn).build(), kBackendIf);
	expect_drop(b2c().ipv4("203.0.113.9", "20.10.1.5").tcp(1000, 3306, kTcpSyn).build(), LG_REASON_FIREWALL_NO_MATCH,
		    kBackendIf);
	// 0.0.0.0 itself is no wildcard for its own address either.
	expect_drop(b2c().ipv4("0.0.0.0", "20.10.1.5").tcp(1000, 3306, kTcpSyn).build(), LG_REASON_FIREWALL_NO_MATCH, kBackendIf);
}

TEST_F(EvalTest, ServiceEndpointSubnetNeedsVnetRule)
{
	MySqlServer &w = *state.server("westus-db");
	w.firewallRules = {{"covers-sqlep", "10.1.2.0", "10.1.2.255"}};
	commit(state);
	expect_drop(c2s().ipv4("10.1.2.10", "20.10.1.5").tcp(5000, 3306, kTcpSyn).build(), LG_REASON_VNET_RULE_NO_MATCH);
	w.virtualNetworkRules = {{"sqlep-rule", "client-vnet", "sqlep"}};
	commit(state);
	expect_forward(c2s().ipv4("10.1.2.10", "20.10.1.5").tcp(5001, 3306, kTcpSyn).build());
	// The IP rule keeps admitting sources that are not service-endpoint traffic.
	w.firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	state.networkSecurityGroups[0].securityRules.clear();
	commit(state);
	expect_forward(syn("10.1.1.10", "20.10.1.5"));
}

TEST_F(EvalTest, DeletedConnectionLeavesEndpointDisconnected)
{
	pe().connectionPresent = false;
	pe().connectionState = {"Disconnected", "", "None"};
	commit(state);
	expect_drop(syn("10.1.1.10", "10.1.1.100"), LG_REASON_PEC_DISCONNECTED);
}

// ------------------------------------------------------------- drop reasons

TEST_F(EvalTest, ParseErrors)
{
	auto f = syn("10.1.1.10", "10.1.1.100");
	expect_drop(std::vector<uint8_t>(f.begin(), f.begin() + 13), LG_REASON_MALFORMED);
	auto bad_ihl = f;
	bad_ihl[14] = 0x44;
	expect_drop(bad_ihl, LG_REASON_MALFORMED);
	auto long_len = f;
	wr16(long_len, 16, 1500);
	expect_drop(long_len, LG_REASON_MALFORMED);
	auto proto0 = c2s().ipv4("10.1.1.10", "10.1.1.20").raw_l4(0, {1, 2, 3, 4}).build();
	expect_drop(proto0, LG_REASON_MALFORMED);
	auto short_tcp = c2s().ipv4("10.1.1.10", "10.1.1.20").raw_l4(kProtoTcp, {0, 1, 0, 2}).build();
	expect_drop(short_tcp, LG_REASON_MALFORMED);
	auto vlan3 = c2s().vlan(kEthQinQ, 1).vlan(kEthVlan, 2).vlan(kEthVlan, 3).ipv4("10.1.1.10", "10.1.1.20").tcp(1, 2, kTcpSyn).build();
	expect_drop(vlan3, LG_REASON_VLAN_DEPTH);
	auto vlan2 = c2s().vlan(kEthQinQ, 1).vlan(kEthVlan, 2).ipv4("10.1.1.10", "10.1.1.100").tcp(1, 3306, kTcpSyn).build();
	Decision d = expect_forward(vlan2);
	EXPECT_EQ(parsed(d.frame).vlans, 2);
	expect_checksums_ok(d.frame);
	// IPv4 options are fine.
	expect_forward(c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_options({1, 1, 1, 0}).tcp(2, 3306, kTcpSyn).build());
}

TEST_F(EvalTest, Ipv6ExtensionChains)
{
	auto v6 = [&] { return c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::20"); };
	expect_forward(v6().ipv6_ext(0).ipv6_ext(60).udp(1, 2).build()); // HBH first, then dest options
	expect_drop(v6().ipv6_ext(60).ipv6_ext(0).udp(1, 2).build(), LG_REASON_IPV6_EXT_CHAIN);
	expect_drop(v6().ipv6_fragment(1, 0, true).ipv6_fragment(2, 0, true).udp(1, 2).build(), LG_REASON_IPV6_EXT_CHAIN);
	PacketBuilder eight = v6();
	for (int i = 0; i < 8; i++)
		eight.ipv6_ext(60);
	EXPECT_NE(run(eight.udp(3, 4).build()).reason, LG_REASON_IPV6_EXT_CHAIN);
	PacketBuilder nine = v6();
	for (int i = 0; i < 9; i++)
		nine.ipv6_ext(60);
	expect_drop(nine.udp(5, 6).build(), LG_REASON_IPV6_EXT_CHAIN);
	// A header that claims more than the packet holds.
	auto f = v6().ipv6_ext(60).udp(1, 2).build();
	f[14 + 41] = 200;
	expect_drop(f, LG_REASON_MALFORMED);
}

TEST_F(EvalTest, TtlExceededAndNoRoute)
{
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100", 1).tcp(1, 3306, kTcpSyn).build(), LG_REASON_TTL_EXCEEDED);
	EXPECT_EQ(ev.flow_count(), 0u);
	expect_drop(c2s().ipv6("fd00:1:0:1::10", "fd00:2::1", 64).udp(1, 2).build(), LG_REASON_NO_ROUTE);
}

TEST_F(EvalTest, PrivateEndpointPortAndPublicPort)
{
	expect_drop(syn("10.1.1.10", "10.1.1.100", 1, 22), LG_REASON_PE_PORT);
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100").udp(1, 3306).build(), LG_REASON_PE_PORT);
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100").icmp(8, 0, 7, 1).build(), LG_REASON_PE_PORT);
	expect_drop(b2c().ipv4("40.64.0.1", "20.10.2.5").tcp(1, 22, kTcpSyn).build(), LG_REASON_PUBLIC_PORT, kBackendIf);
}

TEST_F(EvalTest, NoBackend)
{
	state.server("eastus-db")->backends.clear();
	commit(state);
	expect_drop(syn("10.1.1.10", "10.1.1.100"), LG_REASON_NO_BACKEND);
	state.server("eastus-db")->backends = {{"192.168.20.11", 3306, 0}}; // drained
	commit(state);
	expect_drop(syn("10.1.1.10", "10.1.1.100"), LG_REASON_NO_BACKEND);
}

TEST_F(EvalTest, NsgDefaultDenyAndInbound)
{
	NetworkSecurityGroup in;
	in.name = "web-nsg";
	in.defaultSecurityRules = default_security_rules();
	in.securityRules = {rule("ssh-from-clients", 100, "Inbound", "Allow", "Tcp", "10.1.1.0/24", "*", "22")};
	state.networkSecurityGroups.push_back(in);
	Subnet web{"web", "10.1.5.0/24", "web-nsg", {}, "Disabled"};
	state.virtualNetworks[0].subnets.push_back(web);
	commit(state);
	Decision ssh = expect_forward(syn("10.1.1.10", "10.1.5.7", 1, 22));
	EXPECT_EQ(ssh.rule, "ssh-from-clients");
	// AllowVnetInBound lets VNet traffic in; from outside the VNet it is DenyAllInBound.
	EXPECT_EQ(expect_forward(syn("10.1.1.10", "10.1.5.7", 2, 80)).rule, "AllowVnetInBound");
	Decision e = expect_drop(b2c().ipv4("203.0.113.5", "10.1.5.7").tcp(3, 80, kTcpSyn).build(), LG_REASON_NSG_DEFAULT_DENY,
				 kBackendIf);
	EXPECT_EQ(e.rule, "DenyAllInBound");
	EXPECT_EQ(e.stage, LG_STAGE_SUBNET_INBOUND);
}

// The default rule AllowAzureLoadBalancerInBound (65001): the
// AzureLoadBalancer tag's 168.63.129.16 comes in where no custom rule
// matches, at the subnet's NSG and the NIC's; other Internet sources meet
// DenyAllInBound.
TEST_F(EvalTest, AzureLoadBalancerInBoundDefaultRule)
{
	NetworkSecurityGroup sub, nic;
	sub.name = "web-nsg";
	sub.defaultSecurityRules = default_security_rules();
	sub.securityRules = {rule("ssh-from-clients", 100, "Inbound", "Allow", "Tcp", "10.1.1.0/24", "*", "22"),
			     rule("no-telnet", 110, "Inbound", "Deny", "Tcp", "*", "*", "23")};
	nic.name = "web-vm-nsg";
	nic.defaultSecurityRules = default_security_rules();
	nic.securityRules = {rule("no-smtp", 100, "Inbound", "Deny", "Tcp", "*", "*", "25")};
	state.networkSecurityGroups.push_back(sub);
	state.networkSecurityGroups.push_back(nic);
	state.virtualNetworks[0].subnets.push_back({"web", "10.1.5.0/24", "web-nsg", {}, "Disabled"});
	state.networkInterfaces.push_back({"web-vm-nic", "client-vnet", "web", "10.1.5.7", "web-vm-nsg"});
	commit(state);
	auto probe = [&](const char *src) { return b2c().ipv4(src, "10.1.5.7").tcp(5000, 80, kTcpSyn).build(); };
	Decision lb = expect_forward(probe("168.63.129.16"), kBackendIf);
	EXPECT_EQ(lb.stage, LG_STAGE_NIC_INBOUND);
	EXPECT_EQ(lb.nsg, "web-vm-nsg");
	EXPECT_EQ(lb.rule, "AllowAzureLoadBalancerInBound");
	ASSERT_EQ(lb.trace.size(), 2u);
	EXPECT_EQ(lb.trace[0].stage, LG_STAGE_SUBNET_INBOUND);
	EXPECT_EQ(lb.trace[0].object, "web-nsg");
	EXPECT_EQ(lb.trace[0].rule, "AllowAzureLoadBalancerInBound");
	EXPECT_TRUE(lb.trace[0].allowed);
	EXPECT_EQ(ev.counters().rule_hits.at("web-nsg/AllowAzureLoadBalancerInBound"), 1u);
	EXPECT_EQ(ev.counters().rule_hits.at("web-vm-nsg/AllowAzureLoadBalancerInBound"), 1u);
	for (const char *src : {"168.63.129.17", "203.0.113.5"}) {
		Decision d = expect_drop(probe(src), LG_REASON_NSG_DEFAULT_DENY, kBackendIf);
		EXPECT_EQ(d.rule, "DenyAllInBound") << src;
		EXPECT_EQ(d.stage, LG_STAGE_SUBNET_INBOUND) << src;
	}
	// A custom rule that matches still comes first (priority 110 < 65001).
	Decision t = expect_drop(b2c().ipv4("168.63.129.16", "10.1.5.7").tcp(5001, 23, kTcpSyn).build(), LG_REASON_NSG_DENY,
				 kBackendIf);
	EXPECT_EQ(t.rule, "no-telnet");
}

TEST_F(EvalTest, NicNsgBeforeSubnetOutbound)
{
	NetworkSecurityGroup nic;
	nic.name = "vm-nsg";
	nic.defaultSecurityRules = default_security_rules();
	nic.securityRules = {rule("no-mysql", 100, "Outbound", "Deny", "Tcp", "*", "*", "3306")};
	state.networkSecurityGroups.push_back(nic);
	state.networkInterfaces.push_back({"vm1-nic", "client-vnet", "clients", "10.1.1.10", "vm-nsg"});
	commit(state);
	Decision d = expect_drop(syn("10.1.1.10", "10.1.1.100"), LG_REASON_NSG_DENY);
	EXPECT_EQ(d.stage, LG_STAGE_NIC_OUTBOUND);
	EXPECT_EQ(d.nsg, "vm-nsg");
	expect_forward(syn("10.1.1.20", "10.1.1.100"));
}

TEST_F(EvalTest, PrivateEndpointNetworkPoliciesEnabled)
{
	NetworkSecurityGroup n;
	n.name = "pe-nsg";
	n.defaultSecurityRules = default_security_rules();
	n.securityRules = {rule("only-10", 100, "Inbound", "Allow", "Tcp", "10.1.1.10", "*", "3306"),
			   rule("deny-rest", 200, "Inbound", "Deny", "*", "*", "*")};
	state.networkSecurityGroups[0].securityRules.clear();
	state.networkSecurityGroups.push_back(n);
	Subnet &c = state.virtualNetworks[0].subnets[0];
	c.networkSecurityGroup = "pe-nsg";
	commit(state);
	// Disabled (default): the subnet NSG does not apply to the endpoint (only Outbound of the source).
	expect_forward(syn("10.1.1.20", "10.1.1.100"));
	c.privateEndpointNetworkPolicies = "Enabled";
	commit(state);
	expect_forward(syn("10.1.1.10", "10.1.1.100", 41000));
	Decision d = expect_drop(syn("10.1.1.20", "10.1.1.100", 41001), LG_REASON_NSG_DENY);
	EXPECT_EQ(d.stage, LG_STAGE_PE_SUBNET_INBOUND);
	EXPECT_EQ(d.rule, "deny-rest");
}

// ---------------------------------------------------------- connection tracking

TEST_F(EvalTest, TcpWithoutSynAndNoFlowIsInvalid)
{
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(1, 3306, kTcpAck).build(), LG_REASON_CT_INVALID);
	expect_drop(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(1, 3306, kTcpSyn | kTcpAck).build(), LG_REASON_CT_INVALID);
	expect_drop(b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 1, kTcpAck).build(), LG_REASON_CT_INVALID, kBackendIf);
}

TEST_F(EvalTest, FlowTableFull)
{
	Evaluator small(host(), [] {
		EvaluatorConfig c;
		c.flow_capacity = 2;
		return c;
	}());
	ASSERT_TRUE(small.commit(state).ok());
	auto s = [&](uint16_t sp) { return c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(sp, 3306, kTcpSyn).build(); };
	EXPECT_EQ(small.process(s(1), kClientIf, now).verdict, LG_VERDICT_FORWARD);
	EXPECT_EQ(small.process(s(2), kClientIf, now).verdict, LG_VERDICT_FORWARD);
	Decision d = small.process(s(3), kClientIf, now);
	EXPECT_EQ(d.reason, LG_REASON_CT_FULL);
	// Established flows keep working; a flow that expired makes room after reclaim.
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(1, 3306, kTcpAck).build();
	EXPECT_EQ(small.process(ack, kClientIf, now + kSec).verdict, LG_VERDICT_FORWARD);
	EXPECT_EQ(small.reclaim(now + 31 * kSec), 2u);
	EXPECT_EQ(small.process(s(3), kClientIf, now + 31 * kSec).verdict, LG_VERDICT_FORWARD);
}

// One client port to the private endpoint and to the public IP of the same
// one-backend server: both flows' replies would come from backend:3306 to
// client:40000. The later flow is refused while the first lives (ct-clash),
// so the first keeps its replies; once it has expired the port is free.
TEST_F(EvalTest, ReplyKeyOfALiveFlowIsNotTaken)
{
	state.server("eastus-db")->firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	state.networkSecurityGroups.clear();
	state.virtualNetworks[0].subnets[0].networkSecurityGroup = "";
	commit(state);
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();

	EXPECT_EQ(expect_forward(syn("10.1.1.10", "10.1.1.100")).backend, "192.168.20.11:3306");
	Decision c = expect_drop(syn("10.1.1.10", "20.10.2.5"), LG_REASON_CT_CLASH);
	EXPECT_EQ(c.stage, LG_STAGE_CONNTRACK);
	EXPECT_EQ(parsed(expect_forward(synack, kBackendIf).frame).src, A("10.1.1.100"));
	EXPECT_EQ(ev.flow_count(), 1u);

	// Alive through its client's packets alone: still refused.
	now += kSec / 2;
	expect_forward(ack);
	now += 240 * kSec - kSec / 4;
	expect_drop(syn("10.1.1.10", "20.10.2.5"), LG_REASON_CT_CLASH);

	now += kSec;
	EXPECT_TRUE(expect_forward(syn("10.1.1.10", "20.10.2.5")).flow_created);
	EXPECT_EQ(ev.flow_count(), 1u);
	EXPECT_EQ(parsed(expect_forward(synack, kBackendIf).frame).src, A("20.10.2.5"));
	expect_drop(ack, LG_REASON_CT_INVALID);
}

TEST_F(EvalTest, TimeoutsAndClose)
{
	auto from_client = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(sp, 3306, fl).build(); };
	auto from_backend = [&](uint16_t dp, uint8_t fl) {
		return b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, dp, fl).build();
	};
	// Opening: 30 s without an answer and the flow is gone.
	expect_forward(from_client(1, kTcpSyn));
	now += 29 * kSec;
	expect_forward(from_client(1, kTcpSyn));
	now += 31 * kSec;
	expect_drop(from_client(1, kTcpAck), LG_REASON_CT_INVALID);
	// Half-open: a SYN-ACK nobody acknowledges keeps the opening 30 s.
	expect_forward(from_client(5, kTcpSyn));
	expect_forward(from_backend(5, kTcpSyn | kTcpAck), kBackendIf);
	now += 29 * kSec;
	expect_forward(from_backend(5, kTcpSyn | kTcpAck), kBackendIf);
	now += 31 * kSec;
	expect_drop(from_client(5, kTcpAck), LG_REASON_CT_INVALID);
	// Established by the client's ACK after the SYN-ACK: 240 s idle.
	expect_forward(from_client(2, kTcpSyn));
	expect_forward(from_backend(2, kTcpSyn | kTcpAck), kBackendIf);
	expect_forward(from_client(2, kTcpAck));
	now += 239 * kSec;
	expect_forward(from_client(2, kTcpAck));
	now += 240 * kSec;
	expect_drop(from_client(2, kTcpAck), LG_REASON_CT_INVALID);
	// FIN both ways: 10 s later it is gone, however busy.
	expect_forward(from_client(3, kTcpSyn));
	expect_forward(from_backend(3, kTcpSyn | kTcpAck), kBackendIf);
	expect_forward(from_client(3, kTcpFin | kTcpAck));
	expect_forward(from_backend(3, kTcpFin | kTcpAck), kBackendIf);
	now += 9 * kSec;
	expect_forward(from_client(3, kTcpAck));
	now += 1 * kSec;
	expect_drop(from_client(3, kTcpAck), LG_REASON_CT_INVALID);
	// RST: the same 10 s; a new SYN on the closed tuple starts a new flow.
	expect_forward(from_client(4, kTcpSyn));
	expect_forward(from_backend(4, kTcpRst | kTcpAck), kBackendIf);
	Decision again = expect_forward(from_client(4, kTcpSyn));
	EXPECT_TRUE(again.flow_created);
	// UDP: 30 s.
	auto udp = c2s().ipv4("10.1.1.10", "10.1.1.20").udp(5353, 53).build();
	EXPECT_TRUE(expect_forward(udp).flow_created);
	now += 29 * kSec;
	EXPECT_FALSE(expect_forward(udp).flow_created);
	now += 30 * kSec;
	EXPECT_TRUE(expect_forward(udp).flow_created);
}

TEST_F(EvalTest, GenerationRecheckHonoursFlushConnection)
{
	NetworkSecurityGroup in;
	in.name = "web-nsg";
	in.defaultSecurityRules = default_security_rules();
	in.securityRules = {rule("http", 100, "Inbound", "Allow", "Tcp", "*", "*", "80")};
	state.networkSecurityGroups.push_back(in);
	state.virtualNetworks[0].subnets.push_back({"web", "10.1.5.0/24", "web-nsg", {}, "Disabled"});
	commit(state);
	auto pkt = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "10.1.5.7").tcp(sp, 80, fl).build(); };
	expect_forward(pkt(1, kTcpSyn));
	uint64_t g = ev.generation();

	// Deny port 80 without flushConnection: Azure keeps existing flows.
	state.nsg("web-nsg")->securityRules[0].access = "Deny";
	commit(state);
	EXPECT_EQ(ev.generation(), g + 1);
	Decision kept = expect_forward(pkt(1, kTcpAck));
	EXPECT_EQ(kept.stage, LG_STAGE_CONNTRACK);
	EXPECT_EQ(kept.generation, g + 1);
	expect_drop(pkt(2, kTcpSyn), LG_REASON_NSG_DENY);

	// With flushConnection the open flow is checked again and cut.
	state.nsg("web-nsg")->flushConnection = true;
	commit(state);
	Decision cut = expect_drop(pkt(1, kTcpAck), LG_REASON_NSG_DENY);
	EXPECT_EQ(cut.rule, "http");
	EXPECT_EQ(ev.flow_count(), 0u);
}

// SPEC §4: the public endpoint stage is checked again whenever a flow's next
// packet sees a newer generation, not only for publicNetworkAccess: a flow
// admitted by a firewall range ends when that range goes, one admitted by a
// VNet rule when that rule goes; a change that leaves its rule keeps it.
TEST_F(EvalTest, PublicEndpointFlowsEndWithTheRuleThatAdmittedThem)
{
	MySqlServer &w = *state.server("westus-db");
	w.firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}, {"office", "203.0.113.0", "203.0.113.255"}};
	w.virtualNetworkRules = {{"sqlep-rule", "client-vnet", "sqlep"}};
	commit(state);
	// The backend's answer to a forwarded frame (SYN-ACK or ACK).
	auto answer = [&](const Decision &d, uint8_t fl) {
		Parsed o = parsed(d.frame);
		return b2c().ipv4(o.dst.str(), o.src.str()).tcp(o.dport, o.sport, fl).build();
	};
	// allow-sql-westus lets 20.10.1.5:3306 out of the clients subnet; sqlep has no NSG.
	Decision fw = expect_forward(syn("10.1.1.10", "20.10.1.5"));
	Decision ep = expect_forward(syn("10.1.2.10", "20.10.1.5", 40001));
	ASSERT_FALSE(fw.trace.empty());
	EXPECT_EQ(fw.trace.back().rule, "firewall");
	ASSERT_FALSE(ep.trace.empty());
	EXPECT_EQ(ep.trace.back().rule, "vnet-rule");
	expect_forward(answer(fw, kTcpSyn | kTcpAck), kBackendIf);
	expect_forward(answer(ep, kTcpSyn | kTcpAck), kBackendIf);
	auto fw_ack = c2s().ipv4("10.1.1.10", "20.10.1.5").tcp(40000, 3306, kTcpAck).build();
	auto ep_ack = c2s().ipv4("10.1.2.10", "20.10.1.5").tcp(40001, 3306, kTcpAck).build();

	// Another range goes: both flows keep their rules.
	w.firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	commit(state);
	EXPECT_EQ(expect_forward(fw_ack).stage, LG_STAGE_CONNTRACK);
	EXPECT_EQ(expect_forward(ep_ack).stage, LG_STAGE_CONNTRACK);

	// The range that admitted the first flow goes (the server keeps a rule).
	w.firewallRules = {{"office", "203.0.113.0", "203.0.113.255"}};
	commit(state);
	Decision cut = expect_drop(fw_ack, LG_REASON_FIREWALL_NO_MATCH);
	EXPECT_EQ(cut.stage, LG_STAGE_PUBLIC_ENDPOINT);
	EXPECT_EQ(ev.flow_count(), 1u);
	expect_drop(answer(fw, kTcpAck), LG_REASON_CT_INVALID, kBackendIf);
	// Service-endpoint traffic: IP rules never applied to it.
	EXPECT_EQ(expect_forward(ep_ack).stage, LG_STAGE_CONNTRACK);

	// The VNet rule goes: the second flow ends too.
	w.virtualNetworkRules.clear();
	commit(state);
	cut = expect_drop(ep_ack, LG_REASON_VNET_RULE_NO_MATCH);
	EXPECT_EQ(cut.stage, LG_STAGE_PUBLIC_ENDPOINT);
	EXPECT_EQ(ev.flow_count(), 0u);
	expect_drop(answer(ep, kTcpAck), LG_REASON_CT_INVALID, kBackendIf);
}

// SPEC §4, flushConnection per NSG: the re-check runs the NSGs on the path
// that have flushConnection = true and only those. A NIC NSG without it
// that now denies does not cut a flow its subnet's flushing NSG still
// allows, and the other way round; the level with flush that denies cuts.
TEST_F(EvalTest, FlushConnectionIsPerNsgOnThePath)
{
	add_vm_nic_nsg(state);
	const SecurityRule no_web = rule("no-web", 150, "Outbound", "Deny", "Tcp", "*", "*", "443");
	auto out = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(sp, 443, fl).build(); };
	auto back = [&](uint16_t sp, uint8_t fl) { return b2c().ipv4("8.8.8.8", "10.1.1.10").tcp(443, sp, fl).build(); };
	auto open = [&](uint16_t sp) {
		EXPECT_TRUE(expect_forward(out(sp, kTcpSyn)).flow_created);
		expect_forward(back(sp, kTcpSyn | kTcpAck), kBackendIf);
	};

	// The NIC's NSG (no flush) denies now; the subnet's (flush) allows: kept.
	state.nsg("clients-nsg")->flushConnection = true;
	commit(state);
	open(1);
	state.nsg("vm-nsg")->securityRules = {no_web};
	commit(state);
	EXPECT_EQ(expect_forward(out(1, kTcpAck)).stage, LG_STAGE_CONNTRACK);
	EXPECT_EQ(expect_forward(back(1, kTcpAck), kBackendIf).stage, LG_STAGE_CONNTRACK);
	Decision fresh = expect_drop(out(2, kTcpSyn), LG_REASON_NSG_DENY);
	EXPECT_EQ(fresh.stage, LG_STAGE_NIC_OUTBOUND);
	// Flush moves to the NIC's NSG, which denies: cut, with its rule.
	state.nsg("vm-nsg")->flushConnection = true;
	state.nsg("clients-nsg")->flushConnection = false;
	commit(state);
	Decision cut = expect_drop(out(1, kTcpAck), LG_REASON_NSG_DENY);
	EXPECT_EQ(cut.stage, LG_STAGE_NIC_OUTBOUND);
	EXPECT_EQ(cut.nsg, "vm-nsg");
	EXPECT_EQ(cut.rule, "no-web");
	EXPECT_EQ(ev.flow_count(), 0u);

	// Reversed: the subnet's NSG (no flush) denies now; the NIC's (flush) allows: kept.
	state.nsg("vm-nsg")->securityRules.clear();
	commit(state);
	open(3);
	state.nsg("clients-nsg")->securityRules.push_back(no_web);
	commit(state);
	EXPECT_EQ(expect_forward(out(3, kTcpAck)).stage, LG_STAGE_CONNTRACK);
	fresh = expect_drop(out(4, kTcpSyn), LG_REASON_NSG_DENY);
	EXPECT_EQ(fresh.stage, LG_STAGE_SUBNET_OUTBOUND);
	// Flush on the subnet's NSG too: it denies, cut.
	state.nsg("clients-nsg")->flushConnection = true;
	commit(state);
	cut = expect_drop(out(3, kTcpAck), LG_REASON_NSG_DENY);
	EXPECT_EQ(cut.stage, LG_STAGE_SUBNET_OUTBOUND);
	EXPECT_EQ(cut.nsg, "clients-nsg");
	EXPECT_EQ(cut.rule, "no-web");
	EXPECT_EQ(ev.flow_count(), 0u);
}

// SPEC §4 "a flow ends 10 s after a FIN in both directions or an RST";
// a FIN one way is closing (docs/decisions.md: 30 s, the SPEC's TCP
// opening/closing timeout), neither closed at 10 s nor established (240 s).
TEST_F(EvalTest, FinOneWayKeepsTheFlowForTheClosingTimeout)
{
	auto from_client = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(sp, 3306, fl).build(); };
	auto from_backend = [&](uint16_t dp, uint8_t fl) {
		return b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, dp, fl).build();
	};
	auto state_of_the_flow = [&] {
		auto fl = ev.flows();
		return fl.size() == 1 ? fl[0].state : LG_CT_NEW;
	};
	for (bool client_fin : {true, false}) {
		SCOPED_TRACE(client_fin ? "FIN from the client" : "FIN from the backend");
		uint16_t sp = client_fin ? 1 : 2;
		expect_forward(from_client(sp, kTcpSyn));
		expect_forward(from_backend(sp, kTcpSyn | kTcpAck), kBackendIf);
		expect_forward(from_client(sp, kTcpAck));
		EXPECT_EQ(state_of_the_flow(), LG_CT_ESTABLISHED);
		if (client_fin)
			expect_forward(from_client(sp, kTcpFin | kTcpAck));
		else
			expect_forward(from_backend(sp, kTcpFin | kTcpAck), kBackendIf);
		EXPECT_EQ(state_of_the_flow(), LG_CT_CLOSING);
		// Past the 10 s of a closed flow: the other side still sends.
		now += 11 * kSec;
		if (client_fin)
			EXPECT_EQ(expect_forward(from_backend(sp, kTcpAck | kTcpPsh), kBackendIf).stage, LG_STAGE_CONNTRACK);
		else
			EXPECT_EQ(expect_forward(from_client(sp, kTcpAck | kTcpPsh)).stage, LG_STAGE_CONNTRACK);
		now += 29 * kSec;
		EXPECT_EQ(expect_forward(from_client(sp, kTcpAck)).stage, LG_STAGE_CONNTRACK);
		EXPECT_EQ(state_of_the_flow(), LG_CT_CLOSING);
		// 31 s idle: the closing timeout, not the established 240 s.
		now += 31 * kSec;
		expect_drop(from_client(sp, kTcpAck), LG_REASON_CT_INVALID);
		// The packet that found it expired left it; the sweep removes it.
		EXPECT_EQ(ev.flow_count(), 1u);
		EXPECT_EQ(ev.reclaim(now), 1u);
		EXPECT_EQ(ev.flow_count(), 0u);
	}
}

TEST_F(EvalTest, RejectedCommitChangesNothing)
{
	uint64_t g = ev.generation();
	State bad = state;
	bad.networkSecurityGroups[0].securityRules[0].priority = 5000;
	auto st = ev.commit(bad);
	ASSERT_FALSE(st.ok());
	EXPECT_NE(st.error().find("priority"), std::string::npos) << st.error();
	EXPECT_EQ(ev.generation(), g);
	// Still the old policy: West US passes the NSG (and stops at the firewall).
	EXPECT_EQ(ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.1.5"), kProtoTcp, 1, 3306}).reason,
		  LG_REASON_FIREWALL_NO_MATCH);
}

TEST_F(EvalTest, BackendChoiceIsStablePerFlow)
{
	state.server("westus-db")->firewallRules = {{"all", "0.0.0.1", "255.255.255.255"}};
	state.networkSecurityGroups[0].securityRules.clear();
	commit(state);
	std::map<std::string, int> seen;
	for (uint16_t sp = 1000; sp < 1400; sp++) {
		Decision d = expect_forward(syn("10.1.1.10", "20.10.1.5", sp));
		seen[d.backend]++;
		EXPECT_EQ(ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.1.5"), kProtoTcp, sp, 3306}).backend, d.backend);
	}
	ASSERT_EQ(seen.size(), 2u);
	for (auto &[b, n] : seen)
		EXPECT_GT(n, 120) << b;
	// A second host with the same state picks the same backends.
	Evaluator other(host());
	ASSERT_TRUE(other.commit(state).ok());
	for (uint16_t sp = 1000; sp < 1050; sp++)
		EXPECT_EQ(other.process(syn("10.1.1.10", "20.10.1.5", sp), kClientIf, now).backend,
			  ev.explain({"client-vnet", A("10.1.1.10"), A("20.10.1.5"), kProtoTcp, sp, 3306}).backend);
}

TEST_F(EvalTest, RemovedBackendEndsItsFlowsDrainedBackendKeepsThem)
{
	state.server("westus-db")->firewallRules = {{"all", "0.0.0.1", "255.255.255.255"}};
	state.networkSecurityGroups[0].securityRules.clear();
	commit(state);
	std::map<std::string, uint16_t> port_of;
	for (uint16_t sp = 1000; port_of.size() < 2; sp++)
		port_of.emplace(expect_forward(syn("10.1.1.10", "20.10.1.5", sp)).backend, sp);
	auto ack = [&](uint16_t sp) { return c2s().ipv4("10.1.1.10", "20.10.1.5").tcp(sp, 3306, kTcpAck).build(); };
	state.server("westus-db")->backends = {{"192.168.10.11", 3306, 1}, {"192.168.10.12", 3306, 0}};
	commit(state);
	expect_forward(ack(port_of["192.168.10.12:3306"]));
	state.server("westus-db")->backends = {{"192.168.10.11", 3306, 1}};
	commit(state);
	expect_drop(ack(port_of["192.168.10.12:3306"]), LG_REASON_NO_BACKEND);
	EXPECT_EQ(expect_forward(ack(port_of["192.168.10.11:3306"])).backend, "192.168.10.11:3306");
}

// ------------------------------------------------------------------ fragments

TEST_F(EvalTest, FragmentsFollowTheFirst)
{
	std::vector<uint8_t> body(32, 0xab);
	auto first = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(77, 0, true).tcp(40000, 3306, kTcpSyn).payload(body).build();
	auto later = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(77, 56, false).raw_l4(kProtoTcp, {}).payload(body).build();
	Decision f = expect_forward(first);
	Decision l = expect_forward(later);
	EXPECT_EQ(l.stage, LG_STAGE_FRAGMENT);
	Parsed lp = parsed(l.frame);
	EXPECT_EQ(lp.dst, A("192.168.20.11")); // NAT on L3 only
	expect_checksums_ok(l.frame);
	EXPECT_EQ(std::vector<uint8_t>(l.frame.end() - 32, l.frame.end()), body);

	// Overlapping the first fragment's bytes.
	auto overlap = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(77, 8, false).raw_l4(kProtoTcp, {}).payload(body).build();
	expect_drop(overlap, LG_REASON_FRAGMENT_OVERLAP);
	// Without a first fragment.
	auto orphan = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(78, 56, false).raw_l4(kProtoTcp, {}).payload(body).build();
	expect_drop(orphan, LG_REASON_FRAGMENT_NO_FIRST);
	// A denied first fragment takes its followers with it.
	auto dfirst = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(79, 0, true).tcp(40001, 22, kTcpSyn).payload(body).build();
	auto dlater = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(79, 56, false).raw_l4(kProtoTcp, {}).payload(body).build();
	expect_drop(dfirst, LG_REASON_PE_PORT);
	expect_drop(dlater, LG_REASON_PE_PORT);
	// The memory lasts a few seconds.
	now += 6 * kSec;
	expect_drop(later, LG_REASON_FRAGMENT_NO_FIRST);
	// A first fragment without the whole L4 header.
	auto tiny = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(80, 0, true).raw_l4(kProtoTcp, {0x9c, 0x40, 0x0c, 0xea, 0, 0, 0, 1}).build();
	expect_drop(tiny, LG_REASON_MALFORMED);
	(void)f;
}

// SPEC §3 step 2: the fragment memory is keyed by (VNet, src, dst, proto,
// id). A second tenant VNet with the same address space on another
// interface: its fragments with the same addresses and id are its own.
TEST_F(EvalTest, FragmentMemoryIsPerVnet)
{
	const Mac tenant_if_mac{0x02, 0, 0, 0, 3, 1};
	HostConfig h = host();
	h.interfaces.push_back({3, tenant_if_mac, "tenant-vnet"});
	Evaluator two(h);
	add_tenant_vnet(state, 4242);
	ASSERT_TRUE(two.commit(state).ok());
	std::vector<uint8_t> body(32, 0xab);
	auto first = [&](const Mac &to) {
		return PacketBuilder().eth(kClientMac, to).ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(77, 0, true).tcp(40000, 3306, kTcpSyn).payload(body).build();
	};
	auto later = [&](const Mac &to) {
		return PacketBuilder().eth(kClientMac, to).ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(77, 56, false).raw_l4(kProtoTcp, {}).payload(body).build();
	};
	// The client VNet's first fragment: to the private endpoint, DNAT.
	Decision d = two.process(first(kClientIfMac), kClientIf, now);
	ASSERT_EQ(d.verdict, LG_VERDICT_FORWARD) << reason_name(d.reason);
	// The tenant's later fragment of the same (src, dst, proto, id): no first of its own.
	d = two.process(later(tenant_if_mac), 3, now);
	EXPECT_EQ(d.verdict, LG_VERDICT_DROP);
	EXPECT_STREQ(reason_name(d.reason), reason_name(LG_REASON_FRAGMENT_NO_FIRST));
	// The tenant's own first fragment is denied there; it replaces only its own memory.
	d = two.process(first(tenant_if_mac), 3, now);
	EXPECT_STREQ(reason_name(d.reason), reason_name(LG_REASON_NSG_DENY));
	EXPECT_EQ(d.rule, "no-mysql");
	d = two.process(later(kClientIfMac), kClientIf, now);
	ASSERT_EQ(d.verdict, LG_VERDICT_FORWARD) << reason_name(d.reason);
	EXPECT_EQ(d.stage, LG_STAGE_FRAGMENT);
	EXPECT_EQ(parsed(d.frame).dst, A("192.168.20.11"));
	d = two.process(later(tenant_if_mac), 3, now);
	EXPECT_STREQ(reason_name(d.reason), reason_name(LG_REASON_NSG_DENY));
	EXPECT_EQ(two.fragment_count(), 2u);
}

TEST_F(EvalTest, Ipv6Fragments)
{
	auto v6 = [&] { return c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::20"); };
	std::vector<uint8_t> body(16, 1);
	expect_forward(v6().ipv6_fragment(9, 0, true).udp(7, 8).payload(body).build());
	expect_forward(v6().ipv6_fragment(9, 24, false).raw_l4(kProtoUdp, {}).payload(body).build());
	expect_drop(v6().ipv6_fragment(10, 24, false).raw_l4(kProtoUdp, {}).payload(body).build(), LG_REASON_FRAGMENT_NO_FIRST);
}

TEST_F(EvalTest, FragmentTableFull)
{
	EvaluatorConfig c;
	c.frag_capacity = 1;
	Evaluator small(host(), c);
	ASSERT_TRUE(small.commit(state).ok());
	auto first = [&](uint16_t id) {
		return c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(id, 0, true).tcp(id, 3306, kTcpSyn).payload(std::vector<uint8_t>(8)).build();
	};
	EXPECT_EQ(small.process(first(1), kClientIf, now).verdict, LG_VERDICT_FORWARD);
	Decision d = small.process(first(2), kClientIf, now);
	EXPECT_EQ(d.reason, LG_REASON_FRAG_TABLE_FULL);
	EXPECT_EQ(small.flow_count(), 1u) << "a refused first fragment opens no flow";
}

// ---------------------------------------------------------------- ICMP errors

TEST_F(EvalTest, IcmpErrorsOfTranslatedFlows)
{
	auto syn_f = syn("10.1.1.10", "10.1.1.100");
	Decision out = expect_forward(syn_f);
	// A router on the backend side reports the translated packet.
	auto err = b2c().ipv4("192.168.0.1", "10.1.1.10").icmp_error(3, 1, out.frame).build();
	Decision d = expect_forward(err, kBackendIf);
	EXPECT_EQ(d.stage, LG_STAGE_CONNTRACK);
	Parsed o = parsed(d.frame);
	Parsed in;
	ASSERT_TRUE(parse_inner(d.frame, o.l4 + 8, o.l3_end, 4, in));
	EXPECT_EQ(in.dst, A("10.1.1.100")) << "the quote shows what the client sent";
	EXPECT_EQ(in.dport, 3306);
	EXPECT_EQ(o.src, A("192.168.0.1"));
	expect_checksums_ok(d.frame);
	EXPECT_EQ(inet_checksum(std::span<const uint8_t>(d.frame).subspan(in.l3, 20)), 0) << "quoted IPv4 header";

	// The backend itself reports: the outer source becomes the endpoint.
	auto err2 = b2c().ipv4("192.168.20.11", "10.1.1.10").icmp_error(3, 3, out.frame).build();
	Parsed o2 = parsed(expect_forward(err2, kBackendIf).frame);
	EXPECT_EQ(o2.src, A("10.1.1.100"));

	// From the client side about a reply: translated towards the backend.
	Decision rep = expect_forward(b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build(), kBackendIf);
	auto err3 = c2s().ipv4("10.1.1.10", "10.1.1.100").icmp_error(3, 4, rep.frame).build();
	Decision d3 = expect_forward(err3);
	Parsed o3 = parsed(d3.frame);
	EXPECT_EQ(o3.dst, A("192.168.20.11"));
	Parsed in3;
	ASSERT_TRUE(parse_inner(d3.frame, o3.l4 + 8, o3.l3_end, 4, in3));
	EXPECT_EQ(in3.src, A("192.168.20.11"));
	expect_checksums_ok(d3.frame);

	// An error about no known flow is decided like a new packet (here: PE port).
	auto stray = c2s().ipv4("10.1.1.10", "10.1.1.100").icmp_error(3, 1, syn("10.1.1.100", "10.1.1.10", 3306, 9)).build();
	expect_drop(stray, LG_REASON_PE_PORT);
}

// -------------------------------------------------- address resolution, host

TEST_F(EvalTest, ArpForServedAddresses)
{
	auto req = PacketBuilder().arp_request(kClientMac, "10.1.1.10", "10.1.1.100").build();
	Decision d = run(req);
	ASSERT_EQ(d.verdict, LG_VERDICT_TX);
	EXPECT_EQ(0, std::memcmp(d.frame.data(), kClientMac.data(), 6));
	EXPECT_EQ(rd16(d.frame, 20), 2); // reply
	EXPECT_EQ(0, std::memcmp(&d.frame[22], kClientIfMac.data(), 6));
	EXPECT_EQ(rd32(d.frame, 28), A("10.1.1.100").v4());
	EXPECT_EQ(0, std::memcmp(&d.frame[32], kClientMac.data(), 6));
	EXPECT_EQ(run(PacketBuilder().arp_request(kClientMac, "10.1.1.10", "20.10.2.5").build()).verdict, LG_VERDICT_TX);
	// Not ours: the host answers (or not).
	EXPECT_EQ(run(PacketBuilder().arp_request(kClientMac, "10.1.1.10", "10.1.1.20").build()).verdict, LG_VERDICT_PASS);
	// The endpoint belongs to the client VNet, not to the backend side.
	EXPECT_EQ(run(PacketBuilder().arp_request(kBackendMac, "192.168.0.1", "10.1.1.100").build(), kBackendIf).verdict,
		  LG_VERDICT_PASS);
}

TEST_F(EvalTest, NeighbourSolicitationForServedIpv6Address)
{
	state.servers.push_back({"v6-db", "v6-db.mysql.database.azure.com", "fd00:99::5", {{"192.168.10.11", 3306, 1}}, "Enabled", {}, {}});
	commit(state);
	std::vector<uint8_t> ns = {135, 0, 0, 0, 0, 0, 0, 0};
	auto t = A("fd00:99::5");
	ns.insert(ns.end(), t.b.begin(), t.b.end());
	ns.insert(ns.end(), {1, 1});
	ns.insert(ns.end(), kClientMac.begin(), kClientMac.end());
	auto f = c2s().ipv6("fd00:1:0:1::10", "ff02::1:ff00:5", 255).raw_l4(kProtoIcmp6, ns).build();
	Decision d = run(f);
	ASSERT_EQ(d.verdict, LG_VERDICT_TX);
	Parsed p = parsed(d.frame);
	EXPECT_EQ(p.icmp_type, 136);
	EXPECT_EQ(p.src, t);
	EXPECT_EQ(p.dst, A("fd00:1:0:1::10"));
	expect_checksums_ok(d.frame);
	// Other neighbour discovery goes to the host.
	ns[0] = 133;
	EXPECT_EQ(run(c2s().ipv6("fd00:1:0:1::10", "ff02::2", 255).raw_l4(kProtoIcmp6, ns).build()).verdict, LG_VERDICT_PASS);
}

TEST_F(EvalTest, UnresolvedNeighbourGoesToHostTranslated)
{
	auto f = c2s().ipv4("10.1.1.10", "10.1.1.30").udp(1, 2).build(); // no neighbour entry for .30
	Decision d = run(f);
	EXPECT_EQ(d.verdict, LG_VERDICT_PASS);
	EXPECT_EQ(d.egress_ifindex, kClientIf);
	EXPECT_EQ(parsed(d.frame).ttl, 64) << "the host decrements when it forwards";
	EXPECT_EQ(run(c2s().ipv4("10.1.1.10", "10.1.0.1").udp(1, 2).build()).verdict, LG_VERDICT_PASS) << "host's own address";
	std::vector<uint8_t> lldp(60, 0);
	lldp[12] = 0x88;
	lldp[13] = 0xcc;
	EXPECT_EQ(run(lldp).verdict, LG_VERDICT_PASS) << "non-IP";
}

TEST_F(EvalTest, IcmpEchoOpensAFlowOtherIcmpDoesNot)
{
	state.networkSecurityGroups[0].securityRules = {rule("no-icmp-in", 100, "Inbound", "Deny", "Icmp", "*", "*")};
	commit(state);
	Decision req = expect_forward(c2s().ipv4("10.1.1.10", "10.1.5.7").icmp(8, 0, 99, 1).build());
	EXPECT_TRUE(req.flow_created);
	// The reply follows the flow despite the Inbound deny.
	Decision rep = expect_forward(c2s().ipv4("10.1.5.7", "10.1.1.10").icmp(0, 0, 99, 1).build());
	EXPECT_EQ(rep.stage, LG_STAGE_CONNTRACK);
	// An unsolicited reply is a new packet, and the Inbound rule drops it.
	expect_drop(c2s().ipv4("10.1.5.7", "10.1.1.10").icmp(0, 0, 100, 1).build(), LG_REASON_NSG_DENY);
}

// Identifier 0 puts 0 in both ports of the echo flow's keys: only the
// echo direction keeps other ICMP from the far side out of the flow.
TEST_F(EvalTest, IcmpEchoIdentifierZeroOpensOnlyItsReplies)
{
	state.networkSecurityGroups[0].securityRules = {rule("no-icmp-in", 100, "Inbound", "Deny", "Icmp", "*", "*")};
	commit(state);
	EXPECT_TRUE(expect_forward(c2s().ipv4("10.1.1.10", "10.1.5.7").icmp(8, 0, 0, 1).build()).flow_created);
	EXPECT_EQ(expect_forward(c2s().ipv4("10.1.5.7", "10.1.1.10").icmp(0, 0, 0, 1).build()).stage, LG_STAGE_CONNTRACK);
	// The far side's own echo request, a timestamp request and an error
	// quoting no flow are new packets: the Inbound rule drops them.
	for (uint8_t type : {8, 13}) {
		Decision d = expect_drop(c2s().ipv4("10.1.5.7", "10.1.1.10").icmp(type, 0, 0, 2).build(), LG_REASON_NSG_DENY);
		EXPECT_EQ(d.rule, "no-icmp-in") << int(type);
	}
	auto stray = c2s().ipv4("10.1.1.10", "10.1.5.7").udp(5353, 53).build();
	expect_drop(c2s().ipv4("10.1.5.7", "10.1.1.10").icmp_error(3, 3, stray).build(), LG_REASON_NSG_DENY);
	EXPECT_EQ(ev.flow_count(), 1u);
}

// SPEC §4: ICMP 30 s. An echo flow lets replies through while it is used
// and ends 30 s after its last packet; a later reply is decided as new.
TEST_F(EvalTest, IcmpEchoFlowIdlesOutAfter30Seconds)
{
	state.networkSecurityGroups[0].securityRules = {rule("no-icmp-in", 100, "Inbound", "Deny", "Icmp", "*", "*")};
	commit(state);
	auto reply = c2s().ipv4("10.1.5.7", "10.1.1.10").icmp(0, 0, 99, 2).build();
	EXPECT_TRUE(expect_forward(c2s().ipv4("10.1.1.10", "10.1.5.7").icmp(8, 0, 99, 1).build()).flow_created);
	now += 29 * kSec;
	EXPECT_EQ(expect_forward(reply).stage, LG_STAGE_CONNTRACK);
	now += 29 * kSec; // from the reply, not from the request
	EXPECT_EQ(expect_forward(reply).stage, LG_STAGE_CONNTRACK);
	now += 31 * kSec;
	Decision d = expect_drop(reply, LG_REASON_NSG_DENY);
	EXPECT_EQ(d.rule, "no-icmp-in");
	EXPECT_EQ(ev.flow_count(), 1u) << "the reply that found it expired left it";
	EXPECT_EQ(ev.reclaim(now), 1u);
	EXPECT_EQ(ev.flow_count(), 0u);
}

TEST_F(EvalTest, Ipv6RulesAndForwarding)
{
	state.networkSecurityGroups[0].securityRules = {rule("v6-deny", 100, "Outbound", "Deny", "Udp", "*", "fd00:1:0:1::20/128", "53")};
	state.virtualNetworks[0].subnets[2].networkSecurityGroup = "clients-nsg";
	commit(state);
	expect_drop(c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::20").udp(1, 53).build(), LG_REASON_NSG_DENY);
	Decision d = expect_forward(c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::20").udp(1, 54).build());
	EXPECT_EQ(parsed(d.frame).ttl, 63);
	expect_checksums_ok(d.frame);
}

TEST_F(EvalTest, CountersPerReasonRuleEndpointAndServer)
{
	expect_forward(syn("10.1.1.10", "10.1.1.100"));
	expect_drop(syn("10.1.1.10", "20.10.2.5"), LG_REASON_NSG_DENY);
	expect_drop(syn("10.1.1.10", "20.10.2.5", 2), LG_REASON_NSG_DENY);
	const Counters &c = ev.counters();
	EXPECT_EQ(c.reasons[LG_REASON_NSG_DENY], 2u);
	EXPECT_EQ(c.reasons[LG_REASON_NONE], 1u);
	EXPECT_EQ(c.rule_hits.at("clients-nsg/deny-sql"), 2u);
	EXPECT_EQ(c.private_endpoints.at("pe-east"), 1u);
	EXPECT_EQ(c.servers.at("eastus-db"), 1u);
}

} // namespace
} // namespace lg
