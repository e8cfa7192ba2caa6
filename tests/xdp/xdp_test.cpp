// The XDP program against the reference evaluator, frame for frame: every
// step of SPEC §3 and every drop reason, conversations across generations,
// fragments, ICMP errors, and random policies (tests/random_policy.hpp).
// Each test runs in a network namespace of its own (xdp_harness.hpp).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <map>
#include <random>
#include <set>

#include "packet.hpp"
#include "policy_helpers.hpp"
#include "random_policy.hpp"
#include "seed_fixture.hpp"
#include "xdp_harness.hpp"
#include "lg_xdp.skel.h"

extern "C" {
#include "lg_xdp.h"
#ifdef LG_WITH_DPDK
#include "lg_host.h"
#endif
}

namespace lg {
namespace {

using xdptest::Pair;

using namespace seed_fixture; // kClientIf, kBackendIf are template numbers: realize() maps them

// The seed host plus the IPv6 backends' route and neighbour.
HostConfig host_template()
{
	HostConfig h = seed_host();
	// before the default route, which stays last
	h.routes.insert(h.routes.end() - 1, HostRoute{*Prefix::parse("fd00:9::/48"), kBackendIf, {}});
	h.neighbors.push_back({kBackendIf, A("fd00:9::11"), kBackendMac});
	h.neighbors.push_back({kClientIf, A("fd00:1:0:1::20"), kClientMac});
	h.local_addresses.push_back(A("fd00:1:0:1::1")); // the host's own, on the clients' side
	return h;
}

// The evaluator tests' seed plus an IPv6 server and endpoint.
State seed()
{
	State s = seed_state();
	s.virtualNetworks[0].vni = 100;
	s.networkSecurityGroups[0].securityRules.push_back(
		rule("deny-telnet-in", 300, "Inbound", "Deny", "Tcp", "*", "*", "23"));
	MySqlServer &w = s.servers[0], &e = s.servers[1];
	w.firewallRules = {{"office", "198.51.100.0", "198.51.100.255"}};
	w.virtualNetworkRules = {{"ep", "client-vnet", "sqlep"}};
	e.backends.push_back({"fd00:9::11", 3306, 1});
	const PrivateEndpoint pe = s.privateEndpoints[0]; // pe-east
	PrivateEndpoint p6 = pe;
	p6.name = "pe-east6";
	p6.subnet = "v6";
	p6.privateIPAddress = "fd00:1:0:1::100";
	p6.connectionName = default_connection_name("pe-east6", "eastus-db");
	s.privateEndpoints.push_back(p6);
	PrivateEndpoint pw = pe;
	pw.name = "pe-west6";
	pw.subnet = "v6";
	pw.privateIPAddress = "fd00:1:0:1::101";
	pw.server = "westus-db"; // IPv4 backends only: no-backend for IPv6
	pw.connectionName = default_connection_name("pe-west6", "westus-db");
	s.privateEndpoints.push_back(pw);
	return s;
}

class XdpTest : public ::testing::Test {
protected:
	void SetUp() override { start({}); }

	void start(const EvaluatorConfig &cfg, bool flow_log = true)
	{
		pair.reset(); // one DPDK engine per process
		ASSERT_EQ(geteuid(), 0u) << "the XDP tests need root (CI runs as root)";
		ASSERT_TRUE(xdptest::enter_netns());
		std::map<uint32_t, uint32_t> m;
		HostConfig h = xdptest::realize(host_template(), &m);
		ASSERT_FALSE(::testing::Test::HasFailure()) << "setting up the namespace failed";
		client_if = m[kClientIf];
		backend_if = m[kBackendIf];
		pair = Pair::make(h, cfg, nullptr, flow_log);
		ASSERT_TRUE(pair);
		state = seed();
		ASSERT_TRUE(pair->commit(state));
	}
	void commit() { ASSERT_TRUE(pair->commit(state)); }

	PacketBuilder c2s() { return PacketBuilder().eth(kClientMac, kClientIfMac); }
	PacketBuilder b2c() { return PacketBuilder().eth(kBackendMac, kBackendIfMac); }
	// One expired flow left in place (two copies) until the sweep, which
	// removes it in all three.
	void expect_one_expired_flow_swept()
	{
		EXPECT_EQ(pair->dp().flow_entries(), 2u);
		EXPECT_EQ(pair->dp().reclaim(), 1u);
		EXPECT_EQ(pair->ev().reclaim(pair->now()), 1u);
#ifdef LG_WITH_DPDK
		EXPECT_EQ(pair->dpdk().reclaim(pair->now()), 1u);
#endif
		EXPECT_EQ(pair->dp().flow_entries(), 0u);
	}
	std::vector<uint8_t> syn(const char *src, const char *dst, uint16_t sp = 40000, uint16_t dp = 3306)
	{
		return c2s().ipv4(src, dst).tcp(sp, dp, kTcpSyn).build();
	}
	Decision check(const std::vector<uint8_t> &f, uint32_t ifindex, const std::string &what)
	{
		return pair->check(f, ifindex, what);
	}
	// Checks against the evaluator and that the case is the one intended.
	Decision expect(const std::vector<uint8_t> &f, lg_verdict v, lg_reason r, const std::string &what,
			uint32_t ifindex = 0)
	{
		Decision d = check(f, ifindex ? ifindex : client_if, what);
		EXPECT_STREQ(verdict_name(d.verdict), verdict_name(v)) << what;
		EXPECT_STREQ(reason_name(d.reason), reason_name(r)) << what;
		return d;
	}
	PrivateEndpoint &pe(const char *n = "pe-east") { return *state.private_endpoint(n); }
	// The backend's SYN-ACK to a forwarded SYN (either family), from where it went.
	Decision syn_ack_to(const Decision &out)
	{
		Parsed o;
		parse_frame(out.frame, o);
		auto b = b2c();
		(o.family == 4 ? b.ipv4(o.dst.str(), o.src.str()) : b.ipv6(o.dst.str(), o.src.str()));
		return expect(b.tcp(o.dport, o.sport, kTcpSyn | kTcpAck).build(), LG_VERDICT_FORWARD, LG_REASON_NONE,
			      "SYN-ACK", backend_if);
	}
	// SYN, SYN-ACK and ACK of 10.1.1.10:40000 to the private endpoint's
	// MySQL port: the flow is established, each direction's next hop
	// resolved by the full path. Returns the client's ACK.
	std::vector<uint8_t> establish_pe_flow()
	{
		syn_ack_to(expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE,
				  "SYN to the private endpoint"));
		auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
		expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "the ACK establishes the flow (full path)");
		return ack;
	}

	std::unique_ptr<Pair> pair;
	State state;
	uint32_t client_if = 0, backend_if = 0;
};

// A keyed table filled to its capacity (64 NICs) takes commits that each
// replace one key: the keys a slot no longer has go before the new ones.
// Before 2026-11-30 the new key came first and the commit failed (E2BIG).
TEST_F(XdpTest, AFullTableTakesAReplacedKey)
{
	auto nic = [](int i) {
		NetworkInterface n;
		n.name = "nic" + std::to_string(i);
		n.vnet = "client-vnet";
		n.subnet = "clients";
		n.privateIPAddress = "10.1.1." + std::to_string(120 + i);
		n.networkSecurityGroup = "clients-nsg";
		return n;
	};
	ASSERT_LE(state.networkInterfaces.size(), 64u);
	int next = 0;
	while (state.networkInterfaces.size() < 64)
		state.networkInterfaces.push_back(nic(next++));
	commit();
	for (int k = 0; k < 6; k++) {
		state.networkInterfaces.erase(state.networkInterfaces.end() - 1 - k);
		state.networkInterfaces.push_back(nic(next++));
		ASSERT_TRUE(pair->commit(state)) << "replacing one of 64 NICs, commit " << k;
		ASSERT_LE(120 + next, 255);
		check(syn("10.1.1.10", ("10.1.1." + std::to_string(120 + next - 1)).c_str(), 41000 + uint16_t(k)), client_if,
		      "a SYN to the newest NIC");
	}
}

TEST_F(XdpTest, ParseErrors)
{
	auto f = syn("10.1.1.10", "10.1.1.100");
	auto bad_ihl = f;
	bad_ihl[14] = 0x44;
	expect(bad_ihl, LG_VERDICT_DROP, LG_REASON_MALFORMED, "IHL < 5");
	auto trunc = f;
	trunc[16] = 0x05; // total length beyond the frame
	expect(trunc, LG_VERDICT_DROP, LG_REASON_MALFORMED, "total length");
	auto short_tcp = c2s().ipv4("10.1.1.10", "10.1.1.100").raw_l4(kProtoTcp, {1, 2, 3, 4}).build();
	expect(short_tcp, LG_VERDICT_DROP, LG_REASON_MALFORMED, "TCP header missing");
	auto three = c2s().vlan(kEthQinQ, 1).vlan(kEthVlan, 2).vlan(kEthVlan, 3).ipv4("10.1.1.10", "10.1.1.100").tcp(1, 3306, kTcpSyn).build();
	expect(three, LG_VERDICT_DROP, LG_REASON_VLAN_DEPTH, "three VLAN tags");
	PacketBuilder nine = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100");
	for (int i = 0; i < 9; i++)
		nine.ipv6_ext(60);
	expect(nine.tcp(1, 3306, kTcpSyn).build(), LG_VERDICT_DROP, LG_REASON_IPV6_EXT_CHAIN, "nine extension headers");
	auto hbh = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").ipv6_ext(60).ipv6_ext(0).tcp(1, 3306, kTcpSyn).build();
	expect(hbh, LG_VERDICT_DROP, LG_REASON_IPV6_EXT_CHAIN, "Hop-by-Hop not first");
	auto proto0 = c2s().ipv4("10.1.1.10", "8.8.8.8").raw_l4(0, {0, 0, 0, 0}).build();
	expect(proto0, LG_VERDICT_DROP, LG_REASON_MALFORMED, "IPv4 protocol 0");
}

TEST_F(XdpTest, VlanOptionsAndExtensionHeadersForward)
{
	auto two = c2s().vlan(kEthQinQ, 7).vlan(kEthVlan, 8).ipv4("10.1.1.10", "10.1.1.100").tcp(40001, 3306, kTcpSyn).build();
	expect(two, LG_VERDICT_FORWARD, LG_REASON_NONE, "two VLAN tags, DNAT");
	auto opts = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_options({1, 1, 1, 0}).tcp(40002, 3306, kTcpSyn).build();
	expect(opts, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv4 options, DNAT");
	auto ext = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").ipv6_ext(0).ipv6_ext(60).tcp(40003, 3306, kTcpSyn).build();
	expect(ext, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 with extension headers, DNAT to an IPv6 backend");
}

TEST_F(XdpTest, AddressResolutionAndHostTraffic)
{
	expect(c2s().arp_request(kClientMac, "10.1.1.10", "10.1.1.100").build(), LG_VERDICT_TX, LG_REASON_NONE,
	       "ARP for a private endpoint");
	expect(c2s().arp_request(kClientMac, "10.1.1.10", "20.10.1.5").build(), LG_VERDICT_TX, LG_REASON_NONE,
	       "ARP for a public IP");
	expect(c2s().arp_request(kClientMac, "10.1.1.10", "10.1.1.99").build(), LG_VERDICT_PASS, LG_REASON_NONE,
	       "ARP for someone else");
	expect(b2c().arp_request(kBackendMac, "192.168.10.11", "10.1.1.100").build(), LG_VERDICT_PASS, LG_REASON_NONE,
	       "ARP for a private endpoint on another VNet's interface", backend_if);
	// Neighbour solicitation with the source link-layer option.
	// (type 136, an advertisement, has the same shape.)
	auto ns = [&](const char *target, const char *dst = "ff02::1:ff00:100", uint8_t type = 135) {
		Addr t = A(target);
		std::vector<uint8_t> body{0, 0, 0, 0};
		body.insert(body.end(), t.b.begin(), t.b.end());
		body.insert(body.end(), {1, 1});
		body.insert(body.end(), kClientMac.begin(), kClientMac.end());
		std::vector<uint8_t> l4{type, 0, 0, 0};
		l4.insert(l4.end(), body.begin(), body.end());
		auto f = c2s().ipv6("fd00:1:0:1::10", dst, 255).raw_l4(kProtoIcmp6, l4).build();
		// checksum over the pseudo-header and the message
		Parsed p;
		parse_frame(f, p);
		uint32_t ps = pseudo_sum(p.src, p.dst, kProtoIcmp6, 32, false);
		wr16(f, p.l4 + 2, inet_checksum(std::span(f).subspan(p.l4, 32), ps));
		return f;
	};
	expect(ns("fd00:1:0:1::100"), LG_VERDICT_TX, LG_REASON_NONE, "NS for an IPv6 private endpoint");
	expect(ns("fd00:1:0:1::77"), LG_VERDICT_PASS, LG_REASON_NONE, "NS for someone else");
	expect(ns("fd00:1:0:1::100", "fd00:1:0:1::100"), LG_VERDICT_TX, LG_REASON_NONE,
	       "NS sent to the endpoint itself (unicast reachability probing)");
	// A unicast solicitation without options (RFC 4861 allows it): the
	// advertisement goes to the frame's source, without the target's
	// address and so without Override (§7.2.4).
	auto bare_ns = [&](const char *target, const char *dst) {
		Addr t = A(target);
		std::vector<uint8_t> l4{135, 0, 0, 0, 0, 0, 0, 0};
		l4.insert(l4.end(), t.b.begin(), t.b.end());
		auto f = PacketBuilder().eth(Mac{0x02, 0x77, 0, 0, 0, 0x42}, kClientIfMac)
				 .ipv6("fd00:1:0:1::10", dst, 255).raw_l4(kProtoIcmp6, l4).build();
		Parsed p;
		parse_frame(f, p);
		uint32_t ps = pseudo_sum(p.src, p.dst, kProtoIcmp6, 24, false);
		wr16(f, p.l4 + 2, inet_checksum(std::span(f).subspan(p.l4, 24), ps));
		return f;
	};
	{
		auto na = expect(bare_ns("fd00:1:0:1::100", "fd00:1:0:1::100"), LG_VERDICT_TX, LG_REASON_NONE,
				 "unicast NS without options to the endpoint")
				  .frame;
		Parsed p;
		ASSERT_EQ(parse_frame(na, p), LG_REASON_NONE);
		EXPECT_EQ(std::vector<uint8_t>(na.begin(), na.begin() + 6), (std::vector<uint8_t>{0x02, 0x77, 0, 0, 0, 0x42}))
			<< "to the frame's source";
		EXPECT_EQ(std::vector<uint8_t>(na.begin() + 6, na.begin() + 12),
			  std::vector<uint8_t>(kClientIfMac.begin(), kClientIfMac.end()));
		EXPECT_EQ(p.src, A("fd00:1:0:1::100"));
		EXPECT_EQ(p.dst, A("fd00:1:0:1::10"));
		ASSERT_EQ(p.l3_end, p.l4 + 24);
		EXPECT_EQ(na[p.l4], 136);
		EXPECT_EQ(na[p.l4 + 4], 0x40) << "Solicited, not Override";
		EXPECT_EQ(std::vector<uint8_t>(na.begin() + long(p.l4) + 8, na.begin() + long(p.l4) + 24),
			  std::vector<uint8_t>(p.src.b.begin(), p.src.b.end()));
		EXPECT_EQ(inet_checksum(std::span(na).subspan(p.l4, 24), pseudo_sum(p.src, p.dst, kProtoIcmp6, 24, false)), 0)
			<< "ICMPv6 checksum";
	}
	expect(bare_ns("fd00:1:0:1::100", "ff02::1:ff00:100"), LG_VERDICT_PASS, LG_REASON_NONE,
	       "a multicast NS without the source's address (for the host)");
	expect(ns("fd00:1:0:1::10", "fe80::1", 136), LG_VERDICT_PASS, LG_REASON_NONE, "NA to a link-local address");
	expect(ns("fd00:1:0:1::1", "fd00:1:0:1::1"), LG_VERDICT_PASS, LG_REASON_NONE,
	       "NS to one of the host's own addresses (its reachability probe)");
	// Neighbour discovery addressed to no one here is a new packet, which
	// the NSG decides: the host's stack would have forwarded it unfiltered.
	state.nsg("clients-nsg")->securityRules.push_back(rule("no-icmp-out", 145, "Outbound", "Deny", "Icmp", "*", "*"));
	state.virtualNetworks[0].subnet("v6")->networkSecurityGroup = "clients-nsg";
	commit();
	expect(ns("fd00:1:0:1::10", "fd00:9::5", 136), LG_VERDICT_DROP, LG_REASON_NSG_DENY,
	       "NA to an address beyond the host");
	expect(ns("fd00:9::5", "fd00:9::5"), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "NS to an address not served here");
	expect(ns("fd00:1:0:1::100", "fd00:1:0:1::100"), LG_VERDICT_TX, LG_REASON_NONE, "the endpoint's probe, still answered");
	expect(ns("fd00:1:0:1::100"), LG_VERDICT_TX, LG_REASON_NONE, "and its multicast solicitation");
	expect(syn("10.1.1.10", "10.1.0.1"), LG_VERDICT_PASS, LG_REASON_NONE, "the host's own address");
	expect(c2s().ipv4("10.1.1.10", "224.0.0.5").udp(1, 2).build(), LG_VERDICT_PASS, LG_REASON_NONE, "multicast");
	expect(c2s().ipv4("10.1.1.10", "255.255.255.255").udp(68, 67).build(), LG_VERDICT_PASS, LG_REASON_NONE, "broadcast");
	expect(c2s().ipv6("fd00:1:0:1::10", "ff02::1").udp(1, 2).build(), LG_VERDICT_PASS, LG_REASON_NONE, "IPv6 multicast");
}

TEST_F(XdpTest, PrivateEndpointConversation)
{
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN to the endpoint, DNAT");
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK translated back", backend_if);
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).payload("select 1").build();
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK with data");
	EXPECT_EQ(pair->dp().flow_entries(), 2 * pair->ev().flow_count());
	// FIN both ways, then a new SYN on the closed tuple is decided anew.
	expect(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpFin | kTcpAck).build(), LG_VERDICT_FORWARD,
	       LG_REASON_NONE, "FIN");
	expect(b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpFin | kTcpAck).build(), LG_VERDICT_FORWARD,
	       LG_REASON_NONE, "FIN back", backend_if);
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "new SYN on a closed tuple");
	pair->advance(31 * kSec);
	expect(ack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "ACK after the flow expired");
}

// An expired flow is absent but stays until the sweep or a new flow that
// takes one of its keys (docs/decisions.md "Expired flows stay until the
// sweep or a new flow"): on another CPU a packet of the same tuple may just
// have made the flow anew under those keys, which a delete by key removed.
TEST_F(XdpTest, AnExpiredFlowStaysUntilTheSweepOrANewFlow)
{
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto late = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpAck).build();
	auto entries = [&](size_t n, const std::string &what) {
		EXPECT_EQ(pair->dp().flow_entries(), n) << what;
#ifdef LG_WITH_DPDK
		EXPECT_EQ(pair->dpdk().flow_entries(), n) << what << " (linkgate-dpdk)";
#endif
		EXPECT_EQ(2 * pair->ev().flow_count(), n) << what << " (evaluator)";
	};
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN to the endpoint");
	pair->advance(31 * kSec); // the opening timeout
	expect(ack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the client's ACK finds it expired");
	entries(2, "an ACK leaves the expired flow in place");
	expect(late, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the backend's late ACK finds it expired");
	entries(2, "so does a late reply");
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "a new SYN takes its keys over");
	entries(2, "the new flow took both keys");
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_GT(fl[0].expires_ns, pair->now()) << "the new flow's expiry";
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "replies are the new flow's", backend_if);
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "the ACK establishes it");
	pair->advance(241 * kSec);
	expect(ack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "expired again");
	entries(2, "until the sweep");
	expect_one_expired_flow_swept();
	entries(0, "the sweep removed it");
}

// A claim (a new flow's reservation while its maker, on another CPU,
// decides: LG_FLOW_F_CLAIM, dated by the maker's clock) is no flow to any
// other packet, also one whose clock reads earlier than the maker's; a
// flow-starting packet that meets it is forwarded and makes no flow (the
// maker writes it); the sweep leaves it for LG_FLOW_CLAIM_NS. XDP alone:
// one frame at a time cannot interleave with a maker.
TEST_F(XdpTest, AClaimUnderWayIsNoFlow)
{
	auto *flows = pair->dp().skeleton()->maps.lg_flows;
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN: the flow to claim");
	// Its original copy becomes a claim as lg_flow_reserve writes it
	// (no translation yet); its reply copy is not written yet.
	lg_flow_entry e{};
	lg_flow_key k{}, rk{}, next{};
	const void *prev = nullptr;
	while (bpf_map__get_next_key(flows, prev, &next, sizeof next) == 0) {
		lg_flow_entry v{};
		ASSERT_EQ(bpf_map__lookup_elem(flows, &next, sizeof next, &v, sizeof v, 0), 0);
		if (v.flags & LG_FLOW_F_REPLY) {
			rk = next;
		} else {
			k = next;
			e = v;
		}
		prev = &next;
		if (k.family && rk.family)
			break;
	}
	ASSERT_TRUE(k.family && rk.family) << "the flow's two copies";
	ASSERT_EQ(bpf_map__delete_elem(flows, &rk, sizeof rk, 0), 0);
	e.flags = LG_FLOW_F_CLAIM;
	e.state = LG_CT_NEW;
	std::memset(e.nat_addr, 0, sizeof e.nat_addr);
	e.nat_port = 0;
	e.expires_ns = pair->now() + kSec / 10; // its maker read the clock later
	ASSERT_EQ(bpf_map__update_elem(flows, &k, sizeof k, &e, sizeof e, BPF_EXIST), 0);
	auto reasons = [&] { return pair->dp().reason_counts(); };

	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	auto before = reasons();
	auto x = pair->dp().run(ack, client_if);
	ASSERT_TRUE(x) << x.error();
	EXPECT_EQ(x->action, XDP_DROP);
	EXPECT_EQ(reasons()[LG_REASON_CT_INVALID], before[LG_REASON_CT_INVALID] + 1) << "an ACK finds no flow";

	// Dated before this packet's clock (its maker read the clock first):
	// expired by its date, yet a claim.
	e.expires_ns = pair->now() - kSec / 10;
	ASSERT_EQ(bpf_map__update_elem(flows, &k, sizeof k, &e, sizeof e, BPF_EXIST), 0);
	before = reasons();
	x = pair->dp().run(syn("10.1.1.10", "10.1.1.100"), client_if);
	ASSERT_TRUE(x) << x.error();
	EXPECT_EQ(x->action, XDP_REDIRECT) << "a SYN of the claimed flow is forwarded";
	EXPECT_EQ(reasons()[LG_REASON_NONE], before[LG_REASON_NONE] + 1);
	lg_flow_entry now{};
	ASSERT_EQ(bpf_map__lookup_elem(flows, &k, sizeof k, &now, sizeof now, 0), 0);
	EXPECT_EQ(now.flags, LG_FLOW_F_CLAIM) << "the claim stands: its maker writes the flow";
	EXPECT_EQ(pair->dp().flow_entries(), 1u) << "and nobody else wrote a reply copy";

	pair->advance(kSec / 5); // within LG_FLOW_CLAIM_NS of the claim's date
	EXPECT_EQ(pair->dp().reclaim(), 0u) << "the sweep leaves a claim under way";
	EXPECT_EQ(pair->dp().flow_entries(), 1u);
	pair->advance(LG_FLOW_CLAIM_NS);
	EXPECT_EQ(pair->dp().reclaim(), 1u) << "a stale claim goes";
	EXPECT_EQ(pair->dp().flow_entries(), 0u);
}

// A TCP flow is established by the client's ACK after the SYN-ACK; a
// SYN-ACK nobody acknowledges keeps the opening 30 s (docs/decisions.md).
TEST_F(XdpTest, HalfOpenFlowKeepsTheOpeningTimeout)
{
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK", backend_if);
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_EQ(fl[0].state, LG_CT_NEW);
	pair->advance(29 * kSec);
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK again", backend_if);
	pair->advance(31 * kSec);
	expect(ack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "half-open: gone 30 s after its last packet");
	// The handshake's ACK establishes it: 240 s idle.
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK", backend_if);
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK");
	fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_EQ(fl[0].state, LG_CT_ESTABLISHED);
	pair->advance(239 * kSec);
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK 239 s later");
}

TEST_F(XdpTest, PrivateEndpointChecks)
{
	expect(syn("10.1.1.10", "10.1.1.100", 40000, 80), LG_VERDICT_DROP, LG_REASON_PE_PORT, "port 80");
	expect(c2s().ipv4("10.1.1.10", "10.1.1.100").udp(5000, 3306).build(), LG_VERDICT_DROP, LG_REASON_PE_PORT, "UDP");
	auto v6 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::101").tcp(40000, 3306, kTcpSyn).build();
	expect(v6, LG_VERDICT_DROP, LG_REASON_NO_BACKEND, "IPv6 endpoint of an IPv4-only server");
	pe().connectionState.status = "Pending";
	commit();
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_DROP, LG_REASON_PEC_PENDING, "pending");
	pe().connectionState.status = "Rejected";
	commit();
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_DROP, LG_REASON_PEC_REJECTED, "rejected");
	pe().connectionState.status = "Disconnected";
	pe().connectionPresent = false;
	commit();
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_DROP, LG_REASON_PEC_DISCONNECTED, "deleted connection");
}

TEST_F(XdpTest, RejectingTheConnectionCutsOpenFlows)
{
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK", backend_if);
	// A new generation that keeps the endpoint: the flow survives the re-check.
	state.networkSecurityGroups[0].securityRules.push_back(rule("noise", 400, "Inbound", "Deny", "Udp", "*", "*", "9"));
	commit();
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK after an unrelated change");
	pe().connectionState.status = "Rejected";
	commit();
	expect(ack, LG_VERDICT_DROP, LG_REASON_PEC_REJECTED, "ACK after the PEC was rejected");
	expect(synack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the flow is gone", backend_if);
	EXPECT_EQ(pair->dp().flow_entries(), 0u);
}

TEST_F(XdpTest, DestinationChangesCutFlows)
{
	auto open = [&](const char *src, uint16_t sp) {
		Decision d = check(syn(src, "10.1.1.100", sp), client_if, "SYN");
		EXPECT_NE(d.verdict, LG_VERDICT_DROP); // forward, or pass for an unresolved backend
		return c2s().ipv4(src, "10.1.1.100").tcp(sp, 3306, kTcpAck).build();
	};
	auto a1 = open("10.1.1.10", 41000);
	// Drained backend (weight 0): existing flows stay.
	state.server("eastus-db")->backends[0].weight = 0;
	commit();
	expect(a1, LG_VERDICT_FORWARD, LG_REASON_NONE, "flow to a drained backend");
	expect(syn("10.1.1.10", "10.1.1.100", 41001), LG_VERDICT_DROP, LG_REASON_NO_BACKEND, "no new flow to it");
	// Removed backend: the flow goes.
	state.server("eastus-db")->backends[0] = {"192.168.20.12", 3306, 1};
	commit();
	expect(a1, LG_VERDICT_DROP, LG_REASON_NO_BACKEND, "backend removed");
	auto a2 = open("10.1.1.20", 41002);
	// Endpoint deleted: the address is routed now, not translated.
	state.privateEndpoints.erase(state.privateEndpoints.begin());
	commit();
	expect(a2, LG_VERDICT_DROP, LG_REASON_NO_BACKEND, "endpoint deleted");
	// Public endpoint flows are cut when public access is turned off.
	auto pub = b2c().ipv4("198.51.100.7", "20.10.1.5").tcp(50000, 3306, kTcpSyn).build();
	expect(pub, LG_VERDICT_FORWARD, LG_REASON_NONE, "public SYN", backend_if);
	state.server("westus-db")->publicNetworkAccess = "Disabled";
	commit();
	auto pack = b2c().ipv4("198.51.100.7", "20.10.1.5").tcp(50000, 3306, kTcpAck).build();
	expect(pack, LG_VERDICT_DROP, LG_REASON_PUBLIC_ACCESS_DISABLED, "public access off", backend_if);
}

// A flow to itself (src = dst, sport = dport) has one key for both
// directions: every packet is of the original direction, so it never becomes
// established and expires after the opening timeout (found by the
// differential test: XDP's reply copy overwrote the original).
TEST_F(XdpTest, SelfAddressedFlow)
{
	auto s = c2s().ipv4("10.1.1.10", "10.1.1.10").tcp(3306, 3306, kTcpSyn).build();
	auto a = c2s().ipv4("10.1.1.10", "10.1.1.10").tcp(3306, 3306, kTcpAck).build();
	expect(s, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN to itself");
	expect(a, LG_VERDICT_FORWARD, LG_REASON_NONE, "its ACK, same key");
	pair->advance(31 * kSec);
	expect(a, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "opening timeout: never established");
}

// Two flows whose reply keys would be one (EvalTest.ReplyKeyOfALiveFlowIsNotTaken):
// the later is refused while either copy of the first lives.
TEST_F(XdpTest, ReplyKeyOfALiveFlowIsNotTaken)
{
	state.server("eastus-db")->firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	state.networkSecurityGroups.clear();
	for (auto &sn : state.virtualNetworks[0].subnets)
		sn.networkSecurityGroup = "";
	commit();
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "to the private endpoint");
	expect(syn("10.1.1.10", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_CT_CLASH, "same port, same backend, public IP");
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "the first flow keeps its replies", backend_if);
	EXPECT_EQ(pair->dp().flow_entries(), 2u);
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "the client's ACK establishes the flow (full path)");
	// Within the next hop's cached second the fast path refreshes the
	// client's copy only: the reply copy expires first.
	pair->advance(kSec / 2);
	uint64_t fast = pair->dp().fast_packets();
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "the client's ACK");
	ASSERT_EQ(pair->dp().fast_packets(), fast + 1) << "the ACK took the full path, which writes both copies";
	pair->advance(240 * kSec - kSec / 4);
	expect(syn("10.1.1.10", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_CT_CLASH, "its other copy lives");
	pair->advance(kSec);
	expect(syn("10.1.1.10", "20.10.2.5"), LG_VERDICT_FORWARD, LG_REASON_NONE, "the first expired: the port is free");
	EXPECT_EQ(pair->dp().flow_entries(), 2u);
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "replies are the new flow's", backend_if);
	expect(ack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the first is gone");
}

// The established-flow fast path's cached next hop (bpf/lg_ct.bpf.h,
// docs/xdp.md "The next hop's lifetime"): trusted for a second while nobody
// watches the host's FIB, for an hour while someone does, and never past a
// change. linkgate-dpdk's routes are fixed for its life: always watched,
// never changed. (Built into dpdk_fixtures, each frame runs through both
// dataplanes; without DPDK only XDP's column is checked.)
TEST_F(XdpTest, CachedNextHopLifetime)
{
	auto ack = establish_pe_flow(); // t = 0
	// One ACK dt later; which dataplanes take the fast path for it.
	auto frame = [&](uint64_t dt, bool xdp_fast, [[maybe_unused]] bool dpdk_fast, const std::string &what) {
		pair->advance(dt);
		uint64_t x0 = pair->dp().fast_packets();
#ifdef LG_WITH_DPDK
		uint64_t d0 = lg_host_fast_packets();
#endif
		expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, what);
		EXPECT_EQ(pair->dp().fast_packets() - x0, xdp_fast ? 1u : 0u) << what << ": XDP";
#ifdef LG_WITH_DPDK
		EXPECT_EQ(lg_host_fast_packets() - d0, dpdk_fast ? 1u : 0u) << what << ": linkgate-dpdk";
#endif
	};
	const uint64_t ms = kSec / 1000;
	frame(0, true, true, "within the second");
	frame(2 * kSec, false, true, "2 s later: XDP resolves again, nobody watches its host");
	frame(150 * kSec, false, true, "150 s later");
	frame(0, true, true, "right after: XDP resolved it at 152 s");

	// Watched: an hour from each resolution (XDP's at 152 s, linkgate-dpdk's
	// at 0 s), frames 220 s apart to stay within the established timeout.
	pair->dp().fib_watched_for(3 * 3600 * kSec);
	frame(150 * kSec, true, true, "watched, 150 s later");
	for (int k = 1; k <= 16; k++) {
		uint64_t t = 302 + 220 * uint64_t(k);
		frame(220 * kSec, k != 16, k != 15,
		      "watched, t = " + std::to_string(t) + " s" +
			      (k == 15 ? " (linkgate-dpdk's hour)" : k == 16 ? " (XDP's hour)" : ""));
	}

	// A change of the host's FIB: nothing resolved before it is trusted.
	pair->dp().fib_changed();
	frame(10 * ms, false, true, "after a FIB change: XDP resolves again");
	frame(10 * ms, true, true, "resolved after the change");

	// A change dated a second ahead (an agent's start), then a notice read
	// within that second: the later notice does not pull the stamp back.
	pair->dp().fib_changed(kSec);
	pair->dp().fib_changed();
	frame(10 * ms, false, true, "within the start's second");
	frame(10 * ms, false, true, "still within it, after a notice");
	frame(kSec, false, true, "past it: resolved within it, so again");
	frame(10 * ms, true, true, "resolved after the start's second");

	// The watch lapses (the agent stopped reading events): a second again.
	pair->dp().fib_watched_for(kSec);
	frame(2 * kSec, false, true, "2 s later, the watch lapsed");
	pair->dp().fib_unwatched();
	frame(kSec / 2, true, true, "unwatched, within the second");
	frame(kSec, false, true, "unwatched, 1.5 s after resolving");
}

// A direction's full path forgets the other direction's next hop once it is
// no longer trusted: ages are 32-bit ticks (52 days), and a direction silent
// that long while the other keeps the flow alive would read young again.
TEST_F(XdpTest, AnUntrustedNextHopOfTheOtherDirectionIsForgotten)
{
	auto ack = establish_pe_flow();
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_NE(fl[0].nh[0].ifindex, 0u) << "the client's direction, resolved by the ACK";
	ASSERT_NE(fl[0].nh[1].ifindex, 0u) << "the backend's direction, resolved by the SYN-ACK";
	pair->advance(kSec / 2);
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "half a second later: both still trusted");
	EXPECT_NE(pair->dp().flows()[0].nh[1].ifindex, 0u);
	pair->advance(2 * kSec); // nobody watches XDP's host here: a second
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "2 s later: the client's direction resolves again");
	fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_NE(fl[0].nh[0].ifindex, 0u);
	EXPECT_EQ(fl[0].nh[1].ifindex, 0u) << "the backend's next hop, 2.5 s old, is forgotten";
}

// A flow keeps the reply key it was made with when a later generation binds
// its egress interface to another VNI: its expiry removes that copy, not the
// key the new VNI would name (which leaked the old copy: one entry too many).
TEST_F(XdpTest, ReplyKeyKeepsItsVniAcrossGenerations)
{
	state.networkSecurityGroups[0].securityRules.push_back(
		rule("allow-ssh-in", 200, "Inbound", "Allow", "Tcp", "*", "*", "22"));
	commit();
	auto in = b2c().ipv4("192.168.10.11", "10.1.1.10").tcp(5000, 22, kTcpSyn).build();
	expect(in, LG_VERDICT_FORWARD, LG_REASON_NONE, "into the VNet: egress on the client side", backend_if);
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_EQ(fl[0].reply_vni, 100u);
	state.virtualNetworks[0].vni = 101;
	commit();
	auto synack = c2s().ipv4("10.1.1.10", "192.168.10.11").tcp(22, 5000, kTcpSyn | kTcpAck).build();
	expect(synack, LG_VERDICT_DROP, LG_REASON_CT_INVALID, "a reply under the new VNI is not the flow's");
	// The key a rebuilt reply key would now name cannot be another flow's
	// here: the flow that has it as its own is the reverse of the first.
	expect(syn("10.1.1.10", "192.168.10.11", 22, 5000), LG_VERDICT_DROP, LG_REASON_CT_CLASH,
	       "the reverse flow under the new VNI");
	EXPECT_EQ(pair->dp().flow_entries(), 2u);
	pair->advance((LG_TIMEOUT_TCP_TRANSIENT + 1) * kSec);
	expect(in, LG_VERDICT_FORWARD, LG_REASON_NONE, "the flow expired: made again", backend_if);
	fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 1u);
	EXPECT_EQ(fl[0].reply_vni, 101u);
	EXPECT_EQ(pair->ev().flow_count(), 1u);
	EXPECT_EQ(pair->dp().flow_entries(), 2u) << "the old flow's reply copy was left behind";
#ifdef LG_WITH_DPDK
	EXPECT_EQ(pair->dpdk().flow_entries(), 2u) << "linkgate-dpdk: the old flow's reply copy was left behind";
#endif
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "its reply under the new VNI");
}

TEST_F(XdpTest, Ipv6IcmpErrorOfATranslatedFlow)
{
	auto s6 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").tcp(40000, 3306, kTcpSyn).build();
	expect(s6, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 SYN");
	auto quoted = c2s().ipv6("fd00:1:0:1::10", "fd00:9::11").tcp(40000, 3306, kTcpSyn).build();
	auto err = b2c().ipv6("fd00:9::11", "fd00:1:0:1::10").icmp_error(1, 4, quoted, 48).build();
	expect(err, LG_VERDICT_FORWARD, LG_REASON_NONE, "ICMPv6 port unreachable from the backend", backend_if);
	auto tb = b2c().ipv6("fd00:9::1", "fd00:1:0:1::10").icmp_error(2, 0, quoted, 68).build();
	expect(tb, LG_VERDICT_FORWARD, LG_REASON_NONE, "packet too big from a router", backend_if);
}

// A translated ICMP error whose quote holds the whole TCP header: every
// checksum, the quoted one included, is right after the rewrite, in IPv4
// and ICMPv6, both ways (the differential tests check that all three agree,
// not that they are right).
TEST_F(XdpTest, ATranslatedErrorKeepsEveryChecksumRight)
{
	auto all_right = [](const Decision &d, int fam, const std::string &what) {
		Parsed o;
		ASSERT_EQ(parse_frame(d.frame, o), LG_REASON_NONE) << what;
		std::span<const uint8_t> f(d.frame);
		if (fam == 4) {
			EXPECT_EQ(inet_checksum(f.subspan(o.l3, 20)), 0) << what << ": IPv4 header";
		}
		auto l4 = f.subspan(o.l4, o.l3_end - o.l4);
		uint32_t ps = fam == 4 ? 0 : pseudo_sum(o.src, o.dst, o.proto, uint32_t(l4.size()), false);
		EXPECT_EQ(inet_checksum(l4, ps), 0) << what << ": ICMP checksum";
		Parsed in;
		ASSERT_TRUE(parse_inner(d.frame, o.l4 + 8, o.l3_end, fam, in)) << what;
		auto q = f.subspan(in.l4, o.l3_end - in.l4);
		ASSERT_EQ(q.size(), 20u) << what << ": the quote ends with the TCP header";
		EXPECT_EQ(inet_checksum(q, pseudo_sum(in.src, in.dst, kProtoTcp, 20, fam == 4)), 0) << what << ": quoted TCP checksum";
		if (fam == 4) {
			EXPECT_EQ(inet_checksum(f.subspan(in.l3, 20)), 0) << what << ": quoted IPv4 header";
		}
	};

	Decision out = expect(c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpSyn).build(), LG_VERDICT_FORWARD,
			      LG_REASON_NONE, "SYN");
	auto e1 = b2c().ipv4("192.168.0.1", "10.1.1.10").icmp_error(3, 1, out.frame, 40).build();
	all_right(expect(e1, LG_VERDICT_FORWARD, LG_REASON_NONE, "a router's error", backend_if), 4, "IPv4 to the client");
	Decision rep = syn_ack_to(out);
	auto e2 = c2s().ipv4("10.1.1.10", "10.1.1.100").icmp_error(3, 3, rep.frame, 40).build();
	all_right(expect(e2, LG_VERDICT_FORWARD, LG_REASON_NONE, "the client's error"), 4, "IPv4 to the backend");

	Decision out6 = expect(c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").tcp(40000, 3306, kTcpSyn).build(),
			       LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 SYN");
	auto e3 = b2c().ipv6("fd00:9::1", "fd00:1:0:1::10").icmp_error(1, 3, out6.frame, 60).build();
	all_right(expect(e3, LG_VERDICT_FORWARD, LG_REASON_NONE, "a router's ICMPv6 error", backend_if), 6,
		  "ICMPv6 to the client");
	Decision rep6 = syn_ack_to(out6);
	auto e4 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").icmp_error(1, 4, rep6.frame, 60).build();
	all_right(expect(e4, LG_VERDICT_FORWARD, LG_REASON_NONE, "the client's ICMPv6 error"), 6, "ICMPv6 to the backend");
}

TEST_F(XdpTest, ReclaimAndFlowListing)
{
	expect(syn("10.1.1.10", "10.1.1.100"), LG_VERDICT_FORWARD, LG_REASON_NONE, "PE flow");
	expect(c2s().ipv4("10.1.1.10", "8.8.8.8").udp(5353, 53).build(), LG_VERDICT_FORWARD, LG_REASON_NONE, "UDP flow");
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), 2u);
	for (auto &e : fl) {
		EXPECT_EQ(e.generation, pair->ev().generation());
		EXPECT_EQ(e.state, LG_CT_NEW);
		EXPECT_EQ(e.egress_ifindex, backend_if); // the backend and the Internet are both there
	}
	EXPECT_EQ(pair->dp().reclaim(), 0u);
	pair->advance(31 * kSec);
	EXPECT_EQ(pair->dp().reclaim(), pair->ev().reclaim(pair->now()));
	EXPECT_EQ(pair->dp().flow_entries(), 0u);
	EXPECT_EQ(pair->ev().flow_count(), 0u);
}

TEST_F(XdpTest, FlushConnection)
{
	// Routed flow from the client subnet to the Internet, then a rule that denies it.
	auto f = c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(40000, 443, kTcpSyn).build();
	auto ack = c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(40000, 443, kTcpAck).build();
	expect(f, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN to the Internet via the gateway");
	// A second flow, to be cut by its reply.
	auto f2 = c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(40001, 443, kTcpSyn).build();
	auto back2 = b2c().ipv4("8.8.8.8", "10.1.1.10").tcp(443, 40001, kTcpSyn | kTcpAck).build();
	Decision d2 = expect(f2, LG_VERDICT_FORWARD, LG_REASON_NONE, "second SYN");
	state.networkSecurityGroups[0].securityRules.push_back(rule("deny-web", 150, "Outbound", "Deny", "Tcp", "*", "*", "443"));
	commit();
	expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "kept: flushConnection false");
	state.networkSecurityGroups[0].flushConnection = true;
	commit();
	// The BEGIN records drained, as linkgated drains them each interval.
	(void)pair->dp().drain_flowlog();
#ifdef LG_WITH_DPDK
	(void)pair->dpdk().drain_flowlog();
#endif
	expect(ack, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "cut: flushConnection true");
	expect(back2, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "cut by its reply", d2.egress_ifindex);
	// Each cut is a D record of the flow, named by its original key and
	// ingress whichever direction was cut (linkgated writes its D tuple).
	uint32_t deny_web = LG_NONE;
	for (size_t i = 0; i < pair->tables().rule_names.size(); i++)
		if (pair->tables().rule_names[i].ends_with("/deny-web"))
			deny_web = uint32_t(i);
	ASSERT_NE(deny_web, LG_NONE);
	auto check_cut = [&](const char *plane, std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> recs) {
		SCOPED_TRACE(plane);
		ASSERT_EQ(recs.size(), 2u);
		std::sort(recs.begin(), recs.end(), [](auto &a, auto &b) { return a.first.sport < b.first.sport; });
		for (unsigned i = 0; i < 2; i++) {
			EXPECT_EQ(recs[i].second.kind, LG_FLOWLOG_DENY);
			EXPECT_EQ(recs[i].second.reason, LG_REASON_NSG_DENY);
			EXPECT_EQ(recs[i].second.counter, deny_web);
			EXPECT_EQ(recs[i].second.ifindex, client_if);
			EXPECT_EQ(recs[i].second.egress_ifindex, d2.egress_ifindex);
			EXPECT_EQ(recs[i].first.sport, htons(uint16_t(40000 + i)));
			EXPECT_EQ(recs[i].first.dport, htons(443));
		}
	};
	check_cut("xdp", pair->dp().drain_flowlog());
#ifdef LG_WITH_DPDK
	check_cut("dpdk", pair->dpdk().drain_flowlog());
#endif
	expect(f, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "a new SYN is denied too");
}

// EvalTest.PublicEndpointFlowsEndWithTheRuleThatAdmittedThem: established
// public endpoint flows (the fast path's) are checked again at a new
// generation and end when the firewall range or the VNet rule that
// admitted them goes.
TEST_F(XdpTest, PublicEndpointFlowsEndWithTheRuleThatAdmittedThem)
{
	MySqlServer &w = *state.server("westus-db");
	w.firewallRules.push_back({"elsewhere", "203.0.113.0", "203.0.113.255"});
	commit();
	auto answer = [&](const Decision &d, uint8_t fl) {
		Parsed o;
		parse_frame(d.frame, o);
		return b2c().ipv4(o.dst.str(), o.src.str()).tcp(o.dport, o.sport, fl).build();
	};
	auto fw_ack = b2c().ipv4("198.51.100.7", "20.10.1.5").tcp(50000, 3306, kTcpAck).build();
	auto ep_ack = c2s().ipv4("10.1.2.10", "20.10.1.5").tcp(40001, 3306, kTcpAck).build();
	Decision fw = expect(b2c().ipv4("198.51.100.7", "20.10.1.5").tcp(50000, 3306, kTcpSyn).build(), LG_VERDICT_FORWARD,
			     LG_REASON_NONE, "SYN admitted by the office range", backend_if);
	Decision ep = expect(syn("10.1.2.10", "20.10.1.5", 40001), LG_VERDICT_FORWARD, LG_REASON_NONE,
			     "SYN admitted by the VNet rule");
	expect(answer(fw, kTcpSyn | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK to the office", backend_if);
	expect(answer(ep, kTcpSyn | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK to sqlep", backend_if);
	expect(fw_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "office ACK", backend_if);
	expect(ep_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "sqlep ACK");
	uint64_t fast = pair->dp().fast_packets();
	expect(fw_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "office ACK, established", backend_if);
	EXPECT_EQ(pair->dp().fast_packets(), fast + 1) << "an established flow's ACK takes the fast path";

	w.firewallRules = {{"office", "198.51.100.0", "198.51.100.255"}};
	commit();
	expect(fw_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "another range went: kept", backend_if);
	expect(ep_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "another range went: kept");

	w.firewallRules = {{"elsewhere", "203.0.113.0", "203.0.113.255"}};
	commit();
	expect(fw_ack, LG_VERDICT_DROP, LG_REASON_FIREWALL_NO_MATCH, "the office range went: cut", backend_if);
	expect(answer(fw, kTcpAck), LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the office flow is gone", backend_if);
	expect(ep_ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "IP ranges do not apply to service-endpoint traffic");
	EXPECT_EQ(pair->dp().flow_entries(), 2u);

	w.virtualNetworkRules.clear();
	commit();
	expect(ep_ack, LG_VERDICT_DROP, LG_REASON_VNET_RULE_NO_MATCH, "the VNet rule went: cut");
	expect(answer(ep, kTcpAck), LG_VERDICT_DROP, LG_REASON_CT_INVALID, "the sqlep flow is gone", backend_if);
	EXPECT_EQ(pair->dp().flow_entries(), 0u);
}

// EvalTest.FlushConnectionIsPerNsgOnThePath: only the NSGs on the path
// with flushConnection are run again, the NIC's and the subnet's each by
// its own flag.
TEST_F(XdpTest, FlushConnectionIsPerNsgOnThePath)
{
	add_vm_nic_nsg(state);
	const SecurityRule no_web = rule("no-web", 150, "Outbound", "Deny", "Tcp", "*", "*", "443");
	auto out = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(sp, 443, fl).build(); };
	auto back = [&](uint16_t sp, uint8_t fl) {
		return PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("8.8.8.8", "10.1.1.10").tcp(443, sp, fl).build();
	};
	auto open = [&](uint16_t sp) {
		expect(out(sp, kTcpSyn), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN " + std::to_string(sp));
		expect(back(sp, kTcpSyn | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK " + std::to_string(sp), backend_if);
		expect(out(sp, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK " + std::to_string(sp));
	};

	state.nsg("clients-nsg")->flushConnection = true;
	commit();
	open(1);
	state.nsg("vm-nsg")->securityRules = {no_web};
	commit();
	expect(out(1, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "NIC NSG denies without flush: kept");
	expect(back(1, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "its reply", backend_if);
	expect(out(2, kTcpSyn), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "a new flow meets the NIC's rule");
	state.nsg("vm-nsg")->flushConnection = true;
	state.nsg("clients-nsg")->flushConnection = false;
	commit();
	Decision cut = expect(out(1, kTcpAck), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "NIC NSG with flush denies: cut");
	EXPECT_EQ(cut.stage, LG_STAGE_NIC_OUTBOUND);
	EXPECT_EQ(pair->dp().flow_entries(), 0u);

	state.nsg("vm-nsg")->securityRules.clear();
	commit();
	open(3);
	state.nsg("clients-nsg")->securityRules.push_back(no_web);
	commit();
	expect(out(3, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "subnet NSG denies without flush: kept");
	expect(out(4, kTcpSyn), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "a new flow meets the subnet's rule");
	state.nsg("clients-nsg")->flushConnection = true;
	commit();
	cut = expect(back(3, kTcpAck), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "subnet NSG with flush denies: cut (reply direction)",
		     backend_if);
	EXPECT_EQ(cut.stage, LG_STAGE_SUBNET_OUTBOUND);
	EXPECT_EQ(pair->dp().flow_entries(), 0u);
}

// EvalTest.FinOneWayKeepsTheFlowForTheClosingTimeout: a FIN one way is
// closing (30 s), not closed (10 s) nor established (240 s).
TEST_F(XdpTest, FinOneWayKeepsTheFlowForTheClosingTimeout)
{
	auto from_client = [&](uint16_t sp, uint8_t fl) { return c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(sp, 3306, fl).build(); };
	auto from_backend = [&](uint16_t dp, uint8_t fl) {
		return b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, dp, fl).build();
	};
	for (bool client_fin : {true, false}) {
		SCOPED_TRACE(client_fin ? "FIN from the client" : "FIN from the backend");
		uint16_t sp = client_fin ? 41000 : 41001;
		expect(from_client(sp, kTcpSyn), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
		expect(from_backend(sp, kTcpSyn | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK", backend_if);
		expect(from_client(sp, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "ACK");
		if (client_fin)
			expect(from_client(sp, kTcpFin | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "FIN");
		else
			expect(from_backend(sp, kTcpFin | kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "FIN", backend_if);
		auto fl = pair->dp().flows();
		ASSERT_EQ(fl.size(), 1u);
		EXPECT_EQ(fl[0].state, LG_CT_CLOSING);
		pair->advance(11 * kSec);
		if (client_fin)
			expect(from_backend(sp, kTcpAck | kTcpPsh), LG_VERDICT_FORWARD, LG_REASON_NONE, "11 s after one FIN",
			       backend_if);
		else
			expect(from_client(sp, kTcpAck | kTcpPsh), LG_VERDICT_FORWARD, LG_REASON_NONE, "11 s after one FIN");
		pair->advance(29 * kSec);
		expect(from_client(sp, kTcpAck), LG_VERDICT_FORWARD, LG_REASON_NONE, "29 s idle");
		pair->advance(31 * kSec);
		expect(from_client(sp, kTcpAck), LG_VERDICT_DROP, LG_REASON_CT_INVALID, "31 s idle: the closing timeout");
		expect_one_expired_flow_swept(); // the packet that found it expired left it
	}
}

// SPEC §4: ICMP 30 s. Echo replies pass while the flow is used and not
// after 30 s idle (then DenyAllInBound decides them as new packets).
TEST_F(XdpTest, IcmpEchoFlowIdlesOutAfter30Seconds)
{
	auto ping = c2s().ipv4("10.1.1.10", "8.8.8.8").icmp(8, 0, 78, 1).build();
	auto pong = PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("8.8.8.8", "10.1.1.10").icmp(0, 0, 78, 1).build();
	expect(ping, LG_VERDICT_FORWARD, LG_REASON_NONE, "echo request");
	pair->advance(29 * kSec);
	expect(pong, LG_VERDICT_FORWARD, LG_REASON_NONE, "echo reply after 29 s", backend_if);
	pair->advance(29 * kSec);
	expect(pong, LG_VERDICT_FORWARD, LG_REASON_NONE, "another 29 s after the last reply", backend_if);
	pair->advance(31 * kSec);
	Decision d = expect(pong, LG_VERDICT_DROP, LG_REASON_NSG_DEFAULT_DENY, "echo reply after 31 s idle", backend_if);
	EXPECT_EQ(d.rule, "DenyAllInBound");
	expect_one_expired_flow_swept(); // the reply that found it expired left it
}

TEST_F(XdpTest, PublicEndpoint)
{
	// Sources outside the VNet arrive on the backend side.
	auto from = [&](const char *src, const char *dst, uint16_t dp = 3306) {
		return b2c().ipv4(src, dst).tcp(50000, dp, kTcpSyn).build();
	};
	expect(from("198.51.100.7", "20.10.1.5"), LG_VERDICT_FORWARD, LG_REASON_NONE, "firewall range", backend_if);
	expect(from("203.0.113.7", "20.10.1.5"), LG_VERDICT_DROP, LG_REASON_FIREWALL_NO_MATCH, "outside", backend_if);
	expect(from("198.51.100.7", "20.10.1.5", 80), LG_VERDICT_DROP, LG_REASON_PUBLIC_PORT, "port 80", backend_if);
	expect(from("198.51.100.7", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_FIREWALL_NO_MATCH, "no rules", backend_if);
	// Service-endpoint subnet: VNet rules only.
	expect(syn("10.1.2.10", "20.10.1.5"), LG_VERDICT_FORWARD, LG_REASON_NONE, "VNet rule");
	expect(syn("10.1.2.10", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_VNET_RULE_NO_MATCH, "no VNet rule");
	// Allow Azure services.
	state.server("eastus-db")->firewallRules = {{"azure", "0.0.0.0", "0.0.0.0"}};
	commit();
	expect(from("40.64.1.1", "20.10.2.5"), LG_VERDICT_FORWARD, LG_REASON_NONE, "AzureCloud", backend_if);
	expect(from("41.0.0.1", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_FIREWALL_NO_MATCH, "not AzureCloud", backend_if);
	state.server("westus-db")->publicNetworkAccess = "Disabled";
	commit();
	expect(from("198.51.100.7", "20.10.1.5"), LG_VERDICT_DROP, LG_REASON_PUBLIC_ACCESS_DISABLED, "disabled", backend_if);
}

// SPEC §6 flow logs: each copy of a flow counts its own direction's frames
// and bytes (full path and fast path alike), and what the agent's logger
// must hear of as it happens, a flow made or an NSG's deny, waits in
// lg_flowlog, one record a key, until drained. Both dataplanes.
TEST_F(XdpTest, FlowsCountEachDirectionAndFlowLogRecordsWait)
{
	auto s = syn("10.1.1.10", "10.1.1.100");
	auto synack = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto ack = c2s().ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).payload("select 1").build();
	auto back = b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpAck).payload("row").build();
	expect(s, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
	expect(synack, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN-ACK", backend_if);
	for (int i = 0; i < 3; i++) {
		expect(ack, LG_VERDICT_FORWARD, LG_REASON_NONE, "data");
		expect(back, LG_VERDICT_FORWARD, LG_REASON_NONE, "data back", backend_if);
	}
	auto deny = syn("10.1.1.10", "20.10.2.5");
	expect(deny, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql");
	expect(deny, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql again: the record waits, not a second one");
	expect(c2s().ipv4("10.1.1.10", "20.10.2.5").icmp(8, 0, 7, 1).build(), LG_VERDICT_DROP, LG_REASON_NSG_DENY,
	       "ICMP: no record, the v2 tuple names TCP and UDP only");

	uint32_t deny_sql = LG_NONE;
	for (size_t i = 0; i < pair->tables().rule_names.size(); i++)
		if (pair->tables().rule_names[i].ends_with("/deny-sql"))
			deny_sql = uint32_t(i);
	ASSERT_NE(deny_sql, LG_NONE);
	auto check = [&](const char *plane, const std::vector<lg_flow_sample> &fl,
			 std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> recs, uint64_t written) {
		SCOPED_TRACE(plane);
		ASSERT_EQ(fl.size(), 1u);
		EXPECT_EQ(fl[0].e.packets, 4u);
		EXPECT_EQ(fl[0].e.bytes, s.size() + 3 * ack.size());
		EXPECT_EQ(fl[0].reply_packets, 4u);
		EXPECT_EQ(fl[0].reply_bytes, synack.size() + 3 * back.size());
		ASSERT_EQ(recs.size(), 2u);
		std::sort(recs.begin(), recs.end(), [](auto &a, auto &b) { return a.second.kind < b.second.kind; });
		EXPECT_EQ(recs[0].second.kind, LG_FLOWLOG_BEGIN);
		EXPECT_EQ(std::memcmp(&recs[0].first, &fl[0].e.orig, sizeof(lg_flow_key)), 0);
		EXPECT_EQ(recs[0].second.generation, pair->tables().generation);
		EXPECT_EQ(recs[0].second.ifindex, client_if);
		// The route of the address the client sent to (the endpoint's, on
		// the client's link): what picks the destination's VNet.
		EXPECT_EQ(recs[0].second.egress_ifindex, client_if);
		EXPECT_EQ(recs[1].second.kind, LG_FLOWLOG_DENY);
		EXPECT_EQ(recs[1].second.reason, LG_REASON_NSG_DENY);
		EXPECT_EQ(recs[1].second.counter, deny_sql);
		EXPECT_EQ(recs[1].second.generation, pair->tables().generation);
		EXPECT_EQ(recs[1].first.dport, htons(3306));
		EXPECT_EQ(written, 2u);
	};
	check("xdp", pair->dp().flow_samples(), pair->dp().drain_flowlog(), pair->dp().log_counter(LG_LOG_WRITTEN));
	EXPECT_TRUE(pair->dp().drain_flowlog().empty()) << "drained: gone";
#ifdef LG_WITH_DPDK
	check("dpdk", pair->dpdk().flow_samples(), pair->dpdk().drain_flowlog(),
	      pair->dpdk().log_counter(LG_LOG_WRITTEN));
	EXPECT_TRUE(pair->dpdk().drain_flowlog().empty()) << "drained: gone";
#endif
	expect(deny, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql after the drain");
	EXPECT_EQ(pair->dp().drain_flowlog().size(), 1u) << "a new record after the drain";
}

// Flow-log records are made only for an agent that drains them (linkgated
// --flow-log): without one, a new flow and a deny write nothing and count
// nothing, and decide as they do with records on. Both dataplanes.
TEST_F(XdpTest, FlowLogRecordsAreMadeOnlyWhenAsked)
{
	start({}, false);
	auto s = syn("10.1.1.10", "10.1.1.100");
	auto deny = syn("10.1.1.10", "20.10.2.5");
	expect(s, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN, records off");
	expect(deny, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql, records off");
	EXPECT_FALSE(pair->dp().flow_log());
	EXPECT_TRUE(pair->dp().drain_flowlog().empty());
	EXPECT_EQ(pair->dp().log_counter(LG_LOG_WRITTEN) + pair->dp().log_counter(LG_LOG_LOST), 0u);
	EXPECT_EQ(pair->dp().flow_samples().size(), 1u) << "the flow is made all the same";
#ifdef LG_WITH_DPDK
	EXPECT_FALSE(pair->dpdk().flow_log());
	EXPECT_TRUE(pair->dpdk().drain_flowlog().empty());
	EXPECT_EQ(pair->dpdk().log_counter(LG_LOG_WRITTEN) + pair->dpdk().log_counter(LG_LOG_LOST), 0u);
	// Turned on while running (a linkgated --flow-log registers): the
	// next deny is recorded by the DPDK program; XDP's is fixed at load.
	pair->dpdk().set_flow_log(true);
	expect(syn("10.1.1.10", "20.10.2.5", 40001), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql, DPDK records on");
	auto recs = pair->dpdk().drain_flowlog();
	ASSERT_EQ(recs.size(), 1u);
	EXPECT_EQ(recs[0].second.kind, LG_FLOWLOG_DENY);
	EXPECT_EQ(recs[0].first.sport, htons(40001));
	EXPECT_TRUE(pair->dp().drain_flowlog().empty());
	pair->dpdk().set_flow_log(false);
	expect(syn("10.1.1.10", "20.10.2.5", 40002), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql, DPDK records off");
	EXPECT_TRUE(pair->dpdk().drain_flowlog().empty());
	EXPECT_EQ(pair->dpdk().log_counter(LG_LOG_WRITTEN), 1u);
#endif
}

TEST_F(XdpTest, NsgAndConntrackReasons)
{
	expect(syn("10.1.1.10", "20.10.1.5"), LG_VERDICT_DROP, LG_REASON_FIREWALL_NO_MATCH,
	       "allow-sql-westus, then the server's firewall");
	expect(syn("10.1.1.10", "20.10.2.5"), LG_VERDICT_DROP, LG_REASON_NSG_DENY, "deny-sql");
	expect(b2c().ipv4("192.168.10.11", "10.1.1.10").tcp(5000, 22, kTcpSyn).build(), LG_VERDICT_DROP,
	       LG_REASON_NSG_DEFAULT_DENY, "DenyAllInBound", backend_if);
	expect(c2s().ipv4("10.1.1.20", "10.1.1.10").tcp(5000, 23, kTcpSyn).build(), LG_VERDICT_DROP, LG_REASON_NSG_DENY,
	       "deny-telnet-in");
	expect(c2s().ipv4("10.1.1.10", "8.8.8.8").tcp(40000, 443, kTcpAck).build(), LG_VERDICT_DROP,
	       LG_REASON_CT_INVALID, "ACK without a flow");
	expect(c2s().ipv4("10.1.1.10", "8.8.8.8", 1).tcp(40000, 443, kTcpSyn).build(), LG_VERDICT_DROP,
	       LG_REASON_TTL_EXCEEDED, "TTL 1");
	expect(c2s().ipv6("fd00:1:0:1::10", "2001:db8::1").tcp(40000, 443, kTcpSyn).build(), LG_VERDICT_DROP,
	       LG_REASON_NO_ROUTE, "no IPv6 default route");
	expect(c2s().ipv4("10.1.1.10", "192.168.30.1").udp(5000, 53).build(), LG_VERDICT_PASS, LG_REASON_NONE,
	       "neighbour not resolved: to the host");
	expect(c2s().ipv4("10.1.1.10", "8.8.8.8").raw_l4(kProtoEsp, {0, 0, 0, 1, 0, 0, 0, 1}).build(), LG_VERDICT_FORWARD,
	       LG_REASON_NONE, "ESP: no flow, decided each time");
}

// A NIC's secondary ipConfigurations are the NIC's addresses: its NSG
// decides for them as for the primary (before 2026-11-30 they were dropped
// when read, and traffic to them met the subnet's NSG only).
TEST_F(XdpTest, ANicsNsgAppliesToItsSecondaryAddresses)
{
	add_vm_nic_nsg(state);
	state.nsg("vm-nsg")->securityRules.push_back(rule("deny-ssh-in", 200, "Inbound", "Deny", "Tcp", "*", "*", "22"));
	state.networkInterfaces.back().secondaryIPAddresses = {"10.1.1.11", "10.1.1.12"};
	commit();
	for (const char *dst : {"10.1.1.10", "10.1.1.11", "10.1.1.12"})
		expect(c2s().ipv4("10.1.1.20", dst).tcp(5000, 22, kTcpSyn).build(), LG_VERDICT_DROP, LG_REASON_NSG_DENY,
		       std::string("the NIC's deny-ssh-in, to ") + dst);
	Decision d = check(c2s().ipv4("10.1.1.20", "10.1.1.13").tcp(5000, 22, kTcpSyn).build(), client_if,
			   "not the NIC's address");
	EXPECT_NE(d.reason, LG_REASON_NSG_DENY);
}

TEST_F(XdpTest, UdpIcmpAndIpv6Flows)
{
	auto q = c2s().ipv4("10.1.1.10", "8.8.8.8").udp(5353, 53).payload("query").build();
	expect(q, LG_VERDICT_FORWARD, LG_REASON_NONE, "UDP out");
	auto a = PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("8.8.8.8", "10.1.1.10").udp(53, 5353).payload("answer").build();
	expect(a, LG_VERDICT_FORWARD, LG_REASON_NONE, "UDP answer by the flow", backend_if);
	auto ping = c2s().ipv4("10.1.1.10", "8.8.8.8").icmp(8, 0, 77, 1).build();
	expect(ping, LG_VERDICT_FORWARD, LG_REASON_NONE, "echo request");
	auto pong = PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("8.8.8.8", "10.1.1.10").icmp(0, 0, 77, 1).build();
	expect(pong, LG_VERDICT_FORWARD, LG_REASON_NONE, "echo reply", backend_if);
	auto s6 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").tcp(40000, 3306, kTcpSyn).build();
	expect(s6, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 SYN to an endpoint");
	auto r6 = b2c().ipv6("fd00:9::11", "fd00:1:0:1::10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	expect(r6, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 SYN-ACK back", backend_if);
}

// A re-check that forwards no packet (an ICMP error, a drop) writes back the
// generation only: the flow keeps the later expiry of its two copies, which
// the fast path refreshes one at a time. The evaluator has one expiry.
TEST_F(XdpTest, ARecheckKeepsTheLaterExpiryOfTheTwoCopies)
{
	pair->dp().fib_watched_for(3 * 3600 * kSec); // the client's frames take the fast path
	auto q = c2s().ipv4("10.1.1.10", "8.8.8.8").udp(5353, 53).payload("query").build();
	expect(q, LG_VERDICT_FORWARD, LG_REASON_NONE, "UDP out");
	auto a = PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("8.8.8.8", "10.1.1.10").udp(53, 5353).payload("answer").build();
	expect(a, LG_VERDICT_FORWARD, LG_REASON_NONE, "the answer establishes the flow (both copies: 30 s)", backend_if);
	uint64_t fast = pair->dp().fast_packets();
	for (int t = 0; t < 20; t++) {
		pair->advance(kSec);
		expect(q, LG_VERDICT_FORWARD, LG_REASON_NONE, "the client's datagram at " + std::to_string(t + 1) + " s");
	}
	EXPECT_GT(pair->dp().fast_packets(), fast) << "the client's copy refreshed by the fast path alone";
	// A new generation that would refuse the flow as new; no flush, so the
	// flow itself stays.
	state.nsg("clients-nsg")->securityRules.push_back(rule("no-dns", 140, "Outbound", "Deny", "Udp", "*", "*", "53"));
	commit();
	pair->advance(kSec / 2);
	auto err = PacketBuilder().eth(kGwMac, kBackendIfMac).ipv4("192.0.2.1", "10.1.1.10").icmp_error(3, 4, q, 48).build();
	expect(err, LG_VERDICT_FORWARD, LG_REASON_NONE, "an ICMP error about the flow, found by its reply copy", backend_if);
	pair->advance(14 * kSec); // 35 s: past the reply copy's 30, before the client's 50
	expect(q, LG_VERDICT_FORWARD, LG_REASON_NONE, "the flow lives until its client copy's expiry");
}

TEST_F(XdpTest, IcmpErrors)
{
	auto s = syn("10.1.1.10", "10.1.1.100");
	expect(s, LG_VERDICT_FORWARD, LG_REASON_NONE, "SYN");
	// The backend's host reports the translated SYN unreachable.
	auto translated = pair->ev().explain({"client-vnet", A("10.1.1.10"), A("10.1.1.100"), kProtoTcp, 40000, 3306});
	auto quoted = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "192.168.20.11").tcp(40000, 3306, kTcpSyn).build();
	auto err = b2c().ipv4("192.168.20.11", "10.1.1.10").icmp_error(3, 3, quoted).build();
	expect(err, LG_VERDICT_FORWARD, LG_REASON_NONE, "ICMP error about the flow, from the backend", backend_if);
	auto err2 = b2c().ipv4("192.168.0.1", "10.1.1.10").icmp_error(3, 4, quoted, 48).build();
	expect(err2, LG_VERDICT_FORWARD, LG_REASON_NONE, "ICMP error from a router on the way", backend_if);
	auto reply = b2c().ipv4("10.1.1.10", "192.168.20.11").tcp(40000, 3306, kTcpSyn).build();
	auto other = c2s().ipv4("10.1.1.10", "192.168.20.11").icmp_error(3, 1, b2c().ipv4("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build()).build();
	expect(other, LG_VERDICT_FORWARD, LG_REASON_NONE, "ICMP error towards the backend");
	auto unknown = b2c().ipv4("192.168.0.1", "10.1.1.10").icmp_error(3, 1, syn("10.1.1.10", "9.9.9.9", 1, 2)).build();
	check(unknown, backend_if, "ICMP error of no flow: decided as new");
	(void)translated;
	(void)reply;

	// An error is about a packet its destination sent. The client quoting
	// the endpoint's packet of its own flow to the backend (to anyone but
	// the endpoint) sends no error about that flow but a new packet, which
	// its NSG decides; the same error to the endpoint is the flow's.
	state.nsg("clients-nsg")->securityRules.push_back(rule("no-icmp-out", 145, "Outbound", "Deny", "Icmp", "*", "*"));
	commit();
	auto from_pe = b2c().ipv4("10.1.1.100", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck).build();
	auto forged = c2s().ipv4("10.1.1.10", "192.168.20.11").icmp_error(3, 3, from_pe).build();
	expect(forged, LG_VERDICT_DROP, LG_REASON_NSG_DENY, "an error quoting the flow, to another destination: new");
	auto genuine = c2s().ipv4("10.1.1.10", "10.1.1.100").icmp_error(3, 3, from_pe).build();
	Decision g = expect(genuine, LG_VERDICT_FORWARD, LG_REASON_NONE, "the same error to the endpoint: the flow's");
	Parsed o;
	ASSERT_EQ(parse_frame(g.frame, o), LG_REASON_NONE);
	EXPECT_EQ(o.dst.str(), "192.168.20.11") << "translated like the flow";
}

TEST_F(XdpTest, Fragments)
{
	std::vector<uint8_t> pay(64, 0xab);
	auto first = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 0, true).tcp(40000, 3306, kTcpSyn).payload(pay).build();
	expect(first, LG_VERDICT_FORWARD, LG_REASON_NONE, "first fragment, DNAT");
	auto later = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 88, false).raw_l4(kProtoTcp, pay).build();
	expect(later, LG_VERDICT_FORWARD, LG_REASON_NONE, "later fragment takes the translation");
	auto overlap = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 8, true).raw_l4(kProtoTcp, pay).build();
	expect(overlap, LG_VERDICT_DROP, LG_REASON_FRAGMENT_OVERLAP, "overlap");
	auto orphan = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(8, 88, false).raw_l4(kProtoTcp, pay).build();
	expect(orphan, LG_VERDICT_DROP, LG_REASON_FRAGMENT_NO_FIRST, "no first fragment");
	auto denied = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(9, 0, true).tcp(40000, 80, kTcpSyn).payload(pay).build();
	expect(denied, LG_VERDICT_DROP, LG_REASON_PE_PORT, "denied first fragment");
	auto denied2 = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(9, 88, false).raw_l4(kProtoTcp, pay).build();
	expect(denied2, LG_VERDICT_DROP, LG_REASON_PE_PORT, "its later fragment");
	auto f6 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").ipv6_fragment(11, 0, true).tcp(40001, 3306, kTcpSyn).payload(pay).build();
	expect(f6, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 first fragment");
	auto l6 = c2s().ipv6("fd00:1:0:1::10", "fd00:1:0:1::100").ipv6_fragment(11, 88, false).raw_l4(kProtoTcp, pay).build();
	expect(l6, LG_VERDICT_FORWARD, LG_REASON_NONE, "IPv6 later fragment");
	pair->advance(6 * kSec);
	expect(later, LG_VERDICT_DROP, LG_REASON_FRAGMENT_NO_FIRST, "memory expired");
	// The later fragment did not delete the expired memory (on another CPU
	// that could be a new datagram's, just written): the sweep removes it.
	EXPECT_EQ(pair->ev().fragment_count(), 3u);
	EXPECT_EQ(pair->dp().fragment_entries(), 3u);
#ifdef LG_WITH_DPDK
	EXPECT_EQ(pair->dpdk().fragment_entries(), 3u);
	pair->dpdk().reclaim(pair->now());
	EXPECT_EQ(pair->dpdk().fragment_entries(), 0u);
#endif
	pair->dp().reclaim();
	pair->ev().reclaim(pair->now());
	EXPECT_EQ(pair->dp().fragment_entries(), 0u);
	EXPECT_EQ(pair->ev().fragment_count(), 0u);
	expect(later, LG_VERDICT_DROP, LG_REASON_FRAGMENT_NO_FIRST, "memory swept");
}

// A first fragment holds its memory's slot while it is decided (a
// placeholder, LG_FRAG_PENDING, dated by its maker's clock): to a later
// fragment on another CPU that is no memory yet, whatever its date, and the
// sweeps keep it for LG_FLOW_CLAIM_NS, so they never remove it under its
// maker. Planted: one frame at a time cannot interleave with a maker.
TEST_F(XdpTest, AFirstFragmentsPlaceholderIsNoMemoryAndOutlivesTheSweep)
{
	auto *frags = pair->dp().skeleton()->maps.lg_frags;
	std::vector<uint8_t> pay(64, 0xab);
	auto first = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 0, true).tcp(40000, 3306, kTcpSyn).payload(pay).build();
	expect(first, LG_VERDICT_FORWARD, LG_REASON_NONE, "first fragment: its memory's key");
	lg_frag_key k{};
	ASSERT_EQ(bpf_map__get_next_key(frags, nullptr, &k, sizeof k), 0);
	auto plant = [&](uint64_t date) {
		lg_frag_entry e{};
		e.verdict = LG_FRAG_PENDING;
		e.expires_ns = date;
		ASSERT_EQ(bpf_map__update_elem(frags, &k, sizeof k, &e, sizeof e, BPF_EXIST), 0);
#ifdef LG_WITH_DPDK
		lg_umap *m = pair->dpdk().resolve("lg_frags");
		ASSERT_NE(m, nullptr);
		ASSERT_EQ(m->ops->update(m, &k, &e, BPF_EXIST), 0);
#endif
	};

	plant(pair->now() + 10 * kSec); // its maker's clock reads far later
	auto later = c2s().ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 88, false).raw_l4(kProtoTcp, pay).build();
	auto before = pair->dp().reason_counts();
	auto x = pair->dp().run(later, client_if);
	ASSERT_TRUE(x) << x.error();
	EXPECT_EQ(x->action, XDP_DROP);
	EXPECT_EQ(pair->dp().reason_counts()[LG_REASON_FRAGMENT_NO_FIRST], before[LG_REASON_FRAGMENT_NO_FIRST] + 1)
		<< "a placeholder is no memory";

	plant(pair->now()); // dated now: expired by its date, yet a placeholder
	pair->dp().reclaim();
	EXPECT_EQ(pair->dp().fragment_entries(), 1u) << "the sweep keeps a placeholder younger than a second";
#ifdef LG_WITH_DPDK
	pair->dpdk().reclaim(pair->now());
	EXPECT_EQ(pair->dpdk().fragment_entries(), 1u) << "so does linkgate-dpdk's";
#endif
	pair->advance(2 * kSec);
	pair->dp().reclaim();
	EXPECT_EQ(pair->dp().fragment_entries(), 0u) << "and removes an older one (its maker is gone)";
#ifdef LG_WITH_DPDK
	pair->dpdk().reclaim(pair->now());
	EXPECT_EQ(pair->dpdk().fragment_entries(), 0u);
#endif
}

// EvalTest.FragmentMemoryIsPerVnet: a second tenant VNet with the same
// address space on a third interface; a first fragment in one VNet lets no
// later fragment of the same (src, dst, proto, id) through in the other.
TEST(XdpFragments, MemoryIsPerVnet)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	const Mac tenant_if_mac{0x02, 0, 0, 0, 3, 1};
	HostConfig tmpl = host_template();
	tmpl.interfaces.push_back({3, tenant_if_mac, "tenant-vnet"});
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(tmpl, &m);
	ASSERT_FALSE(::testing::Test::HasFailure());
	uint32_t cif = m[kClientIf], tif = m[3];
	State s = seed();
	add_tenant_vnet(s, 200);
	auto pair = Pair::make(h, {}, &s);
	ASSERT_TRUE(pair);
	std::vector<uint8_t> pay(64, 0xab);
	auto first = [&](const Mac &to) {
		return PacketBuilder().eth(kClientMac, to).ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 0, true).tcp(40000, 3306, kTcpSyn).payload(pay).build();
	};
	auto later = [&](const Mac &to) {
		return PacketBuilder().eth(kClientMac, to).ipv4("10.1.1.10", "10.1.1.100").ipv4_fragment(7, 88, false).raw_l4(kProtoTcp, pay).build();
	};
	auto expect = [&](const std::vector<uint8_t> &f, uint32_t ifx, lg_reason r, const std::string &what) {
		Decision d = pair->check(f, ifx, what);
		EXPECT_STREQ(verdict_name(d.verdict), verdict_name(r == LG_REASON_NONE ? LG_VERDICT_FORWARD : LG_VERDICT_DROP)) << what;
		EXPECT_STREQ(reason_name(d.reason), reason_name(r)) << what;
	};
	expect(first(kClientIfMac), cif, LG_REASON_NONE, "client VNet: first fragment to the endpoint");
	expect(later(tenant_if_mac), tif, LG_REASON_FRAGMENT_NO_FIRST, "tenant VNet: same addresses and id, no first");
	expect(first(tenant_if_mac), tif, LG_REASON_NSG_DENY, "tenant VNet: its own first fragment, denied");
	expect(later(kClientIfMac), cif, LG_REASON_NONE, "client VNet: its memory is untouched");
	expect(later(tenant_if_mac), tif, LG_REASON_NSG_DENY, "tenant VNet: its own memory");
}

// A pair on the template host with these table capacities; m: ifindexes.
std::unique_ptr<Pair> sized_pair(std::map<uint32_t, uint32_t> &m, uint32_t flows, uint32_t frags)
{
	if (geteuid() != 0 || !xdptest::enter_netns())
		return nullptr;
	HostConfig h = xdptest::realize(host_template(), &m);
	EvaluatorConfig cfg;
	cfg.flow_capacity = flows;
	cfg.frag_capacity = frags;
	return Pair::make(h, cfg);
}

TEST(XdpTables, FlowAndFragmentTablesFull)
{
	std::map<uint32_t, uint32_t> m;
	auto pair = sized_pair(m, 1, 1);
	ASSERT_TRUE(pair);
	ASSERT_TRUE(pair->commit(seed()));
	auto c = [](const char *dst, uint16_t sp) {
		return PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", dst).tcp(sp, 3306, kTcpSyn).build();
	};
	uint32_t cif = m[kClientIf];
	pair->check(c("10.1.1.100", 1000), cif, "first flow");
	Decision d = pair->check(c("10.1.1.100", 1001), cif, "second flow: table full");
	EXPECT_STREQ(reason_name(d.reason), "ct-full");
	d = pair->check(c("20.10.2.5", 1002), cif, "denied beats full");
	EXPECT_STREQ(reason_name(d.reason), "nsg-deny");
	std::vector<uint8_t> pay(16, 1);
	auto frag = [&](uint16_t id) {
		return PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "8.8.8.8").ipv4_fragment(id, 0, true).udp(5, 6).payload(pay).build();
	};
	pair->check(frag(1), cif, "first datagram remembered");
	d = pair->check(frag(2), cif, "second datagram: fragment table full");
	EXPECT_STREQ(reason_name(d.reason), "frag-table-full");
}

// A flow to itself (same address and port both ways, out by the interface
// it came in on) has one key, and the table holds 2 x capacity keys: with
// room for one flow, two such flows fit, and a third does not; nor does an
// ordinary flow beside one of them (its reply key finds no room).
TEST(XdpTables, AFlowToItselfTakesOneKey)
{
	std::map<uint32_t, uint32_t> m;
	auto pair = sized_pair(m, 1, 1);
	ASSERT_TRUE(pair);
	ASSERT_TRUE(pair->commit(seed()));
	uint32_t cif = m[kClientIf];
	auto self = [](uint16_t port) {
		return PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.10").udp(port, port).payload("x").build();
	};
	Decision d = pair->check(self(7001), cif, "first flow to itself");
	ASSERT_TRUE(d.flow_created) << reason_name(d.reason);
	ASSERT_EQ(d.egress_ifindex, cif) << "not a flow to itself: it must leave by its ingress";
	ASSERT_EQ(pair->dp().flow_entries(), 1u) << "a flow to itself has one key";
	d = pair->check(self(7002), cif, "second flow to itself: its one key fits");
	EXPECT_TRUE(d.flow_created) << reason_name(d.reason);
	d = pair->check(self(7003), cif, "third: no room");
	EXPECT_STREQ(reason_name(d.reason), "ct-full");
	pair->advance(200 * kSec); // past the UDP timeout
	EXPECT_EQ(pair->dp().reclaim(), 2u);
	EXPECT_EQ(pair->ev().reclaim(pair->now()), 2u);
#ifdef LG_WITH_DPDK
	EXPECT_EQ(pair->dpdk().reclaim(pair->now()), 2u);
#endif
	d = pair->check(self(7004), cif, "one flow to itself after reclaim");
	EXPECT_TRUE(d.flow_created) << reason_name(d.reason);
	d = pair->check(PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(1000, 3306, kTcpSyn).build(),
			cif, "an ordinary flow beside it: its original key fits, its reply key does not");
	EXPECT_STREQ(reason_name(d.reason), "ct-full");
}

// The fast path refreshes only the copy of a flow it found: a flow lives
// until the later expiry of its two copies. Reclaim and flows() read the
// table in batches; 9,000 flows (18,000 copies) take several.
TEST(XdpTables, ReclaimKeepsAFlowWhileEitherCopyLives)
{
	std::map<uint32_t, uint32_t> m;
	auto pair = sized_pair(m, 10000, 1);
	ASSERT_TRUE(pair);
	auto *flows = pair->dp().skeleton()->maps.lg_flows;
	constexpr uint32_t kFlows = 9000;
	const uint64_t past = 1, future = ~0ull >> 2, later = future + 5;
	for (uint32_t i = 0; i < kFlows; i++) {
		lg_flow_entry o{}, r{};
		o.orig.vni = 7;
		o.orig.family = LG_AF_INET;
		o.orig.proto = 6;
		o.orig.src[10] = o.orig.src[11] = o.orig.dst[10] = o.orig.dst[11] = 0xff;
		std::memcpy(o.orig.src + 12, &i, 4);
		o.orig.dst[15] = 1;
		o.orig.sport = 1;
		o.orig.dport = 2;
		o.state = LG_CT_ESTABLISHED;
		o.reply_vni = 7;
		r = o;
		r.flags = LG_FLOW_F_REPLY;
		lg_flow_key rk;
		lg_flow_reply_key(&o, &rk); // where the program puts the reply copy
		// i % 3: 0 both copies expired, 1 only the original, 2 neither.
		o.expires_ns = i % 3 == 2 ? future : past;
		r.expires_ns = i % 3 == 0 ? past : later;
		ASSERT_EQ(bpf_map__update_elem(flows, &o.orig, sizeof o.orig, &o, sizeof o, BPF_NOEXIST), 0);
		ASSERT_EQ(bpf_map__update_elem(flows, &rk, sizeof rk, &r, sizeof r, BPF_NOEXIST), 0);
	}
	EXPECT_EQ(pair->dp().flows().size(), size_t(kFlows));
	EXPECT_FALSE(pair->dp().last_sweep()) << "no sweep yet";
	EXPECT_EQ(pair->dp().reclaim(), size_t(kFlows / 3));
	EXPECT_EQ(pair->dp().flow_entries(), size_t(2 * (kFlows - kFlows / 3)));
	// The sweep's own count of what it left (stats takes it instead of a
	// walk): a key added since is not in it until the next sweep.
	auto sw = pair->dp().last_sweep();
	ASSERT_TRUE(sw);
	EXPECT_EQ(sw->keys, size_t(2 * (kFlows - kFlows / 3)));
	{
		lg_flow_entry x{};
		x.orig.vni = 8;
		x.expires_ns = future;
		ASSERT_EQ(bpf_map__update_elem(flows, &x.orig, sizeof x.orig, &x, sizeof x, BPF_NOEXIST), 0);
		EXPECT_EQ(pair->dp().last_sweep()->keys, sw->keys);
		EXPECT_EQ(pair->dp().reclaim(), 0u);
		EXPECT_EQ(pair->dp().last_sweep()->keys, sw->keys + 1);
		EXPECT_GE(pair->dp().last_sweep()->at_ns, sw->at_ns);
		// stats takes the count until the next sweep could have ended
		// (interval + two sweeps' length + a second), then walks.
		auto last = *pair->dp().last_sweep();
		EXPECT_LE(last.started_ns, last.at_ns);
		uint64_t due = last.started_ns + kSec + 2 * (last.at_ns - last.started_ns) + kSec;
		EXPECT_EQ(pair->dp().recent_sweep_keys(due, kSec), std::optional<size_t>(sw->keys + 1));
		EXPECT_EQ(pair->dp().recent_sweep_keys(due + 1, kSec), std::nullopt) << "too old";
		EXPECT_EQ(pair->dp().recent_sweep_keys(due + 1, 3600 * kSec), std::optional<size_t>(sw->keys + 1))
			<< "sweeps an hour apart";
		EXPECT_EQ(pair->dp().recent_sweep_keys(last.started_ns - 1, kSec), std::optional<size_t>(sw->keys + 1))
			<< "a sweep newer than the caller's clock";
		ASSERT_EQ(bpf_map__delete_elem(flows, &x.orig, sizeof x.orig, 0), 0);
	}
	auto fl = pair->dp().flows();
	ASSERT_EQ(fl.size(), size_t(kFlows - kFlows / 3));
	for (auto &e : fl) {
		uint32_t i;
		std::memcpy(&i, e.orig.src + 12, 4);
		EXPECT_NE(i % 3, 0u);
		EXPECT_EQ(e.expires_ns, later) << "flow " << i << ": the later of the two copies";
	}
	// A listing cut short still gives each flow the later expiry (its reply
	// copy is looked up by key, not met in the walk).
	auto few = pair->dp().flows(5);
	ASSERT_EQ(few.size(), 5u);
	for (auto &e : few)
		EXPECT_EQ(e.expires_ns, later);
}

// The answer to a forwarded frame, from where it went.
std::vector<uint8_t> reply_to(const std::vector<uint8_t> &out)
{
	Parsed p;
	parse_frame(out, p);
	PacketBuilder b;
	b.eth({0x02, 0xdd, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 2});
	if (p.family == 4)
		b.ipv4(p.dst.str(), p.src.str());
	else
		b.ipv6(p.dst.str(), p.src.str());
	if (p.proto == kProtoTcp)
		b.tcp(p.dport, p.sport, kTcpSyn | kTcpAck);
	else if (p.proto == kProtoUdp)
		b.udp(p.dport, p.sport);
	else
		b.icmp(p.family == 4 ? 0 : 129, 0, p.icmp_id, 1);
	return b.build();
}

// An ICMP destination unreachable from where `out` went, quoting it.
std::vector<uint8_t> icmp_error_about(const std::vector<uint8_t> &out, size_t quote)
{
	Parsed p;
	parse_frame(out, p);
	PacketBuilder b;
	b.eth({0x02, 0xdd, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 2});
	if (p.family == 4)
		b.ipv4(p.dst.str(), p.src.str()).icmp_error(3, 3, out, quote);
	else
		b.ipv6(p.dst.str(), p.src.str()).icmp_error(1, 4, out, quote);
	return b.build();
}

// First fragment (L4 header + 32 bytes) and a later one of the tuple.
std::pair<std::vector<uint8_t>, std::vector<uint8_t>> fragments(const Tuple &t, uint32_t id)
{
	std::vector<uint8_t> pay(32, 0x5a), rest(24, 0xa5);
	auto base = [&] {
		PacketBuilder b;
		b.eth({0x02, 0xee, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 1});
		if (t.src.is_v4())
			b.ipv4(t.src.str(), t.dst.str());
		else
			b.ipv6(t.src.str(), t.dst.str());
		return b;
	};
	PacketBuilder f = base(), l = base();
	if (t.src.is_v4()) {
		f.ipv4_fragment(uint16_t(id), 0, true);
		l.ipv4_fragment(uint16_t(id), 56, false);
	} else {
		f.ipv6_fragment(id, 0, true);
		l.ipv6_fragment(id, 56, false);
	}
	if (t.proto == kProtoTcp)
		f.tcp(t.sport, t.dport, kTcpSyn);
	else
		f.udp(t.sport, t.dport);
	f.payload(pay);
	l.raw_l4(t.proto, rest);
	return {f.build(), l.build()};
}

bool loopback(const Addr &a)
{
	return a.is_v4() ? (a.v4() >> 24) == 127 : a == A("::1");
}

// Random policies and tuples (tests/random_policy.hpp): new flows, then the
// same frame again (the flow path), each decided by both.
std::vector<uint8_t> tuple_frame(const Tuple &t, uint8_t tcp_flags, uint16_t icmp_seq, int i)
{
	PacketBuilder b;
	b.eth({0x02, 0xee, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 1});
	if (t.src.is_v4())
		b.ipv4(t.src.str(), t.dst.str());
	else
		b.ipv6(t.src.str(), t.dst.str());
	if (t.proto == kProtoTcp)
		b.tcp(t.sport, t.dport, tcp_flags);
	else if (t.proto == kProtoUdp)
		b.udp(t.sport, t.dport);
	else if (t.proto == kProtoIcmp || t.proto == kProtoIcmp6)
		b.icmp(t.src.is_v4() ? 8 : 128, 0, uint16_t(i), icmp_seq);
	else
		b.raw_l4(t.proto, {0, 0, 0, 1, 0, 0, 0, 2});
	return b.build();
}

// One random policy through both dataplanes: n new-flow tuples, each sent
// twice (the second takes the flow path) and answered when a flow was made;
// then a changed generation (every NSG flushes, the first NSG's rules
// reordered, some connections rejected) and the tuples again as follow-ups.
void differential(testing::RandomPolicy rp, uint64_t seed, int n, bool gateways, std::map<std::string, int> &verdicts)
{
	ASSERT_TRUE(xdptest::enter_netns());
	if (gateways) {
		// Through resolved gateways (forward) instead of on-link routes
		// without neighbours (to the host).
		std::set<std::pair<uint32_t, bool>> gws;
		for (auto &r : rp.host.routes) {
			uint8_t x = uint8_t(r.ifindex);
			Addr gw = r.prefix.is_v4() ? Addr::from_v4(0x64400000u | x) : A("fd99::1");
			if (!r.prefix.is_v4())
				gw.b[15] = x;
			r.gateway = gw;
			if (gws.insert({r.ifindex, r.prefix.is_v4()}).second)
				rp.host.neighbors.push_back({r.ifindex, gw, Mac{0x02, 0x99, 0, 0, 0, x}});
		}
	}
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(rp.host, &m);
	ASSERT_FALSE(::testing::Test::HasFailure());
	auto pair = Pair::make(h);
	ASSERT_TRUE(pair);
	ASSERT_TRUE(pair->commit(rp.state));
	std::map<std::string, uint32_t> vnet_if;
	for (auto &i : h.interfaces)
		vnet_if[i.vnet] = i.ifindex;
	auto count = [&](const Decision &d) { verdicts[std::string(verdict_name(d.verdict)) + "/" + reason_name(d.reason)]++; };
	testing::TupleGen gen(rp, seed);
	for (int i = 0; i < n && !::testing::Test::HasFailure(); i++) {
		Tuple t = gen.next();
		if (loopback(t.dst))
			continue; // the kernel never routes these (docs/xdp.md)
		auto f = tuple_frame(t, kTcpSyn, 1, i);
		uint32_t ifx = vnet_if[t.vnet];
		Decision d = pair->check(f, ifx, "tuple " + std::to_string(i));
		count(d);
		pair->check(f, ifx, "tuple " + std::to_string(i) + " again");
		if (d.flow_created && d.egress_ifindex) {
			pair->check(reply_to(d.frame), d.egress_ifindex, "reply to tuple " + std::to_string(i));
			pair->check(icmp_error_about(d.frame, i % 2 ? 28 : 68), d.egress_ifindex,
				    "ICMP error about tuple " + std::to_string(i));
		}
		if (i % 3 == 0 && (t.proto == kProtoTcp || t.proto == kProtoUdp)) {
			auto [first, later] = fragments(t, uint32_t(1000 + i));
			count(pair->check(first, ifx, "first fragment of tuple " + std::to_string(i)));
			count(pair->check(later, ifx, "later fragment of tuple " + std::to_string(i)));
		}
		if (i % 5 == 0) {
			auto v = tuple_frame(t, kTcpSyn, 3, i);
			Parsed p;
			parse_frame(v, p);
			if (p.family == 4) {
				v[p.l3 + 8] = 1;
				v[p.l3 + 10] = v[p.l3 + 11] = 0;
				wr16(v, p.l3 + 10, inet_checksum(std::span(v).subspan(p.l3, 20)));
			} else {
				v[p.l3 + 7] = 1;
			}
			count(pair->check(v, ifx, "TTL 1, tuple " + std::to_string(i)));
		}
	}
	State s2 = rp.state;
	for (auto &nsg : s2.networkSecurityGroups)
		nsg.flushConnection = true;
	if (!s2.networkSecurityGroups.empty()) {
		auto &rules = s2.networkSecurityGroups[0].securityRules;
		for (const char *dir : {"Inbound", "Outbound"}) {
			std::vector<SecurityRule *> rs;
			for (auto &r : rules)
				if (r.direction == dir)
					rs.push_back(&r);
			std::vector<int> prios;
			for (auto *r : rs)
				prios.push_back(r->priority);
			for (size_t i = 0; i < rs.size(); i++)
				rs[i]->priority = prios[rs.size() - 1 - i];
		}
	}
	for (auto &p : s2.privateEndpoints)
		if (p.connectionPresent && p.connectionState.status == "Approved" && p.name.size() % 2)
			p.connectionState.status = "Rejected";
	ASSERT_TRUE(pair->commit(s2));
	testing::TupleGen gen2(rp, seed);
	for (int i = 0; i < n && !::testing::Test::HasFailure(); i++) {
		Tuple t = gen2.next();
		if (loopback(t.dst))
			continue;
		count(pair->check(tuple_frame(t, kTcpAck, 2, i), vnet_if[t.vnet], "after the change, tuple " + std::to_string(i)));
	}
}

std::string summary(const std::map<std::string, int> &verdicts)
{
	std::string s;
	for (auto &[k, n] : verdicts)
		s += k + "=" + std::to_string(n) + " ";
	return s;
}

TEST(XdpDifferential, RandomPolicies)
{
	ASSERT_EQ(geteuid(), 0u);
	std::map<std::string, int> verdicts;
	for (uint64_t seed = 1; seed <= 8 && !::testing::Test::HasFailure(); seed++) {
		SCOPED_TRACE("seed " + std::to_string(seed));
		differential(testing::random_policy(seed), seed, 150, seed % 2 == 0, verdicts);
	}
	RecordProperty("verdicts", summary(verdicts));
	std::printf("verdicts: %s\n", summary(verdicts).c_str());
	EXPECT_GT(verdicts["forward/none"], 50) << summary(verdicts);
}

// Large NSGs: several bitmap words per rule set, deep interval searches.
TEST(XdpDifferential, ScalePolicy)
{
	ASSERT_EQ(geteuid(), 0u);
	std::map<std::string, int> verdicts;
	differential(testing::scale_policy(900, 3000, 7), 7, 300, true, verdicts);
	std::printf("verdicts: %s\n", summary(verdicts).c_str());
	EXPECT_GT(verdicts["forward/none"], 10) << summary(verdicts);
}

} // namespace
} // namespace lg

namespace lg {
namespace {

// Removes a test's pin directory however the test ends (an early ASSERT
// included): pins outlive the process.
struct PinDirGuard {
	std::string dir;
	~PinDirGuard()
	{
		std::error_code ec;
		std::filesystem::remove_all(dir, ec);
	}
};

// SPEC §6: maps and the XDP link pinned under a directory outlive the
// process; the next load adopts the tables, the flows and the link.
TEST(XdpPinning, NextLoadAdoptsPinnedMapsFlowsAndLink)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	ASSERT_TRUE(xdptest::ensure_bpffs());
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(host_template(), &m);
	uint32_t cif = m[kClientIf];
	std::string dir = "/sys/fs/bpf/linkgate-test-" + std::to_string(getpid());
	PinDirGuard guard{dir};
	XdpConfig cfg;
	cfg.pin_dir = dir;
	Evaluator ev(h);
	ASSERT_TRUE(ev.commit(seed()).ok());
	auto synf = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpSyn).build();
	auto ackf = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck).build();
	{
		auto dp = XdpDataplane::load(cfg);
		ASSERT_TRUE(dp) << dp.error();
		EXPECT_FALSE((*dp)->adopted());
		auto t = compile(seed(), xdptest::bindings(h), ev.generation());
		ASSERT_TRUE(t) << t.error();
		ASSERT_TRUE((*dp)->publish(*t).ok());
		auto st = (*dp)->attach(cif);
		ASSERT_TRUE(st.ok()) << st.error();
		auto r = (*dp)->run(synf, cif);
		ASSERT_TRUE(r);
		EXPECT_EQ(r->action, XDP_REDIRECT);
		EXPECT_EQ((*dp)->flow_entries(), 2u);
	} // the process "exits": pins keep everything
	EXPECT_EQ(access((dir + "/lg_flows").c_str(), F_OK), 0);
	EXPECT_EQ(access((dir + "/link_" + std::to_string(cif)).c_str(), F_OK), 0);
	{
		auto dp = XdpDataplane::load(cfg);
		ASSERT_TRUE(dp) << dp.error();
		EXPECT_TRUE((*dp)->adopted());
		EXPECT_EQ((*dp)->generation(), ev.generation());
		EXPECT_EQ((*dp)->flow_entries(), 2u);
		auto r = (*dp)->run(ackf, cif);
		ASSERT_TRUE(r);
		EXPECT_EQ(r->action, XDP_REDIRECT) << "the adopted flow carries the ACK";
		auto st = (*dp)->attach(cif);
		EXPECT_TRUE(st.ok()) << st.error();
		// A new generation goes to the other slot and is used at once.
		State s = seed();
		s.private_endpoint("pe-east")->connectionState.status = "Rejected";
		ASSERT_TRUE(ev.commit(s).ok());
		auto t = compile(s, xdptest::bindings(h), ev.generation());
		ASSERT_TRUE(t);
		ASSERT_TRUE((*dp)->publish(*t).ok());
		r = (*dp)->run(ackf, cif);
		ASSERT_TRUE(r);
		EXPECT_EQ(r->action, XDP_DROP);
		EXPECT_TRUE((*dp)->detach(cif).ok());
		EXPECT_TRUE((*dp)->unpin().ok());
	}
	EXPECT_NE(access(dir.c_str(), F_OK), 0) << "unpin removes the directory";
}

// SPEC §4: a packet is decided by one generation. Two generations number
// the servers differently (a mixed read of the endpoint table of one and the
// server table of the other would pick the wrong server's backend) and are
// published alternately while another thread decides SYNs.
TEST(XdpGenerations, PacketsNeverMixTwoGenerations)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(host_template(), &m);
	uint32_t cif = m[kClientIf];
	auto dp = XdpDataplane::load();
	ASSERT_TRUE(dp) << dp.error();
	State a = seed(), b = seed();
	std::swap(b.servers[0], b.servers[1]);
	auto ta = compile(a, xdptest::bindings(h), 2), tb = compile(b, xdptest::bindings(h), 3);
	ASSERT_TRUE(ta && tb);
	ASSERT_TRUE((*dp)->publish(*ta).ok());
	std::atomic<bool> stop{false};
	std::atomic<int> wrong{0}, runs{0};
	// Runs share the program but not the test-run context: one thread decides.
	std::thread t([&] {
		for (uint16_t sp = 1; !stop && sp < 60000; sp++) {
			auto f = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(sp, 3306, kTcpSyn).build();
			auto r = (*dp)->run(f, cif);
			runs++;
			Parsed p;
			if (!r || r->action != XDP_REDIRECT || parse_frame(r->frame, p) != LG_REASON_NONE ||
			    p.dst != A("192.168.20.11"))
				wrong++;
		}
	});
	for (int i = 0; i < 40; i++) {
		auto st = (*dp)->publish(i % 2 ? *ta : *tb);
		EXPECT_TRUE(st.ok()) << st.error();
	}
	stop = true;
	t.join();
	std::printf("%d packets during 40 publishes\n", runs.load());
	EXPECT_GT(runs.load(), 100);
	EXPECT_EQ(wrong.load(), 0) << "of " << runs.load();
}

TEST(XdpPinning, RefusesPinnedMapsOfAnotherLayout)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::ensure_bpffs());
	std::string dir = "/sys/fs/bpf/linkgate-test-layout-" + std::to_string(getpid());
	PinDirGuard guard{dir};
	XdpConfig cfg;
	cfg.pin_dir = dir;
	{
		auto dp = XdpDataplane::load(cfg);
		ASSERT_TRUE(dp) << dp.error();
		lg_active a{0, LG_XDP_LAYOUT_VERSION + 1, 0};
		uint32_t z = 0;
		ASSERT_EQ(bpf_map__update_elem((*dp)->skeleton()->maps.lg_active, &z, sizeof z, &a, sizeof a, 0), 0);
	}
	auto dp = XdpDataplane::load(cfg);
	ASSERT_FALSE(dp);
	EXPECT_NE(dp.error().find("layout version"), std::string::npos) << dp.error();
	XdpConfig other = cfg;
	other.flow_capacity = 7; // a pinned map of another size: refused, not resized
	auto dp2 = XdpDataplane::load(other);
	ASSERT_FALSE(dp2);
	EXPECT_NE(dp2.error().find(dir), std::string::npos) << dp2.error();
}

} // namespace
} // namespace lg

#include <bpf/bpf.h> // inner maps by id (the tests below)

namespace lg {
namespace {

// Inner map id of every generation table in one slot (0: empty entry).
std::vector<uint32_t> inner_ids(XdpDataplane &dp, uint32_t slot)
{
	auto *m = &dp.skeleton()->maps;
	std::vector<uint32_t> ids;
	for (bpf_map *o : {m->lg_ivl, m->lg_bitmap, m->lg_nsg_dir, m->lg_rule, m->lg_subnet, m->lg_nic, m->lg_pe,
			   m->lg_pubip, m->lg_server, m->lg_fwrange, m->lg_vnetrule, m->lg_backend, m->lg_maglev,
			   m->lg_iface, m->lg_gcfg}) {
		uint32_t id = 0;
		bpf_map__lookup_elem(o, &slot, sizeof slot, &id, sizeof id, 0);
		ids.push_back(id);
	}
	return ids;
}

size_t inner_keys(uint32_t id)
{
	int fd = bpf_map_get_fd_by_id(id);
	if (fd < 0)
		return size_t(-1);
	std::vector<uint8_t> k(64), next(64);
	size_t n = 0;
	const void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
		n++;
		k = next;
		prev = k.data();
	}
	close(fd);
	return n;
}

// A small change is written element by element into the inactive slot's
// existing inner maps (no outer-map update, no grace period on the way);
// stale keys of hash tables are deleted.
TEST(XdpGenerations, SmallChangeReusesInnerMaps)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(host_template(), &m);
	uint32_t cif = m[kClientIf];
	auto dp = XdpDataplane::load();
	ASSERT_TRUE(dp) << dp.error();
	State a = seed(), r = seed(), gone = seed();
	r.private_endpoint("pe-east")->connectionState.status = "Rejected";
	std::erase_if(gone.privateEndpoints, [](auto &p) { return p.name == "pe-east"; });
	auto ta = compile(a, xdptest::bindings(h), 2), tr = compile(r, xdptest::bindings(h), 3),
	     tg = compile(gone, xdptest::bindings(h), 6);
	ASSERT_TRUE(ta && tr && tg);
	ASSERT_LT(tg->pes.size(), ta->pes.size());
	ASSERT_TRUE((*dp)->publish(*ta).ok()); // slot 0 (new maps)
	ASSERT_TRUE((*dp)->publish(*tr).ok()); // slot 1 (new maps)
	auto ids0 = inner_ids(**dp, 0), ids1 = inner_ids(**dp, 1);
	for (auto id : ids0)
		EXPECT_NE(id, 0u);
	uint16_t sp = 1000;
	auto syn = [&] {
		auto f = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(sp++, 3306, kTcpSyn).build();
		auto x = (*dp)->run(f, cif);
		return x ? x->action : -1;
	};
	EXPECT_EQ(syn(), XDP_DROP) << "rejected";
	for (int i = 0; i < 4; i++) {
		bool approved = i % 2 == 0;
		CompiledTables t = approved ? *ta : *tr;
		t.generation = 4 + i;
		ASSERT_TRUE((*dp)->publish(t).ok());
		EXPECT_EQ((*dp)->generation(), t.generation);
		EXPECT_EQ(syn(), approved ? XDP_REDIRECT : XDP_DROP) << i;
		EXPECT_EQ(inner_ids(**dp, 0), ids0) << i;
		EXPECT_EQ(inner_ids(**dp, 1), ids1) << i;
	}
	// The endpoint deleted: its key leaves the reused lg_pe map.
	ASSERT_TRUE((*dp)->publish(*tg).ok());
	lg_active act{};
	uint32_t z = 0;
	ASSERT_EQ(bpf_map__lookup_elem((*dp)->skeleton()->maps.lg_active, &z, sizeof z, &act, sizeof act, 0), 0);
	uint32_t slot = act.slot;
	EXPECT_EQ(inner_ids(**dp, slot), slot ? ids1 : ids0);
	EXPECT_EQ(inner_keys(inner_ids(**dp, slot)[6]), tg->pes.size());
	EXPECT_NE(syn(), XDP_REDIRECT);
	EXPECT_TRUE((*dp)->settle().ok());
}

// What an inner map holds, as key bytes -> value bytes (arrays: the first
// `n` indices).
std::map<std::string, std::string> inner_contents(uint32_t id, uint32_t array_n)
{
	std::map<std::string, std::string> out;
	int fd = bpf_map_get_fd_by_id(id);
	if (fd < 0)
		return out;
	bpf_map_info info{};
	uint32_t len = sizeof info;
	bpf_obj_get_info_by_fd(fd, &info, &len);
	std::string k(info.key_size, '\0'), next(info.key_size, '\0'), v(info.value_size, '\0');
	if (info.type == BPF_MAP_TYPE_ARRAY) {
		for (uint32_t i = 0; i < array_n; i++)
			if (bpf_map_lookup_elem(fd, &i, v.data()) == 0)
				out[std::string(reinterpret_cast<const char *>(&i), 4)] = v;
	} else {
		const void *prev = nullptr;
		while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
			k = next;
			prev = k.data();
			if (bpf_map_lookup_elem(fd, k.data(), v.data()) == 0)
				out[k] = v;
		}
	}
	close(fd);
	return out;
}

// The generation tables of t as the loader writes them, in inner_ids order.
std::vector<std::map<std::string, std::string>> expected_contents(const CompiledTables &t)
{
	std::vector<std::map<std::string, std::string>> out;
	auto array = [&](const auto &vec) {
		std::map<std::string, std::string> m;
		using T = typename std::decay_t<decltype(vec)>::value_type;
		for (uint32_t i = 0; i < vec.size(); i++)
			m[std::string(reinterpret_cast<const char *>(&i), 4)] =
				std::string(reinterpret_cast<const char *>(&vec[i]), sizeof(T));
		out.push_back(std::move(m));
	};
	auto keyed = [&](const auto &vec) {
		std::map<std::string, std::string> m;
		for (auto &[k, v] : vec)
			m[std::string(reinterpret_cast<const char *>(&k), sizeof k)] =
				std::string(reinterpret_cast<const char *>(&v), sizeof v);
		out.push_back(std::move(m));
	};
	std::vector<std::pair<lg_vnetrule_key, uint32_t>> vr;
	for (auto &k : t.vnetrules)
		vr.push_back({k, 1u});
	lg_gcfg g = t.gcfg;
	g.generation = t.generation;
	array(t.ivl);
	array(t.bitmaps);
	array(t.nsg_dirs);
	array(t.rules);
	keyed(t.subnets);
	keyed(t.nics);
	keyed(t.pes);
	keyed(t.pubips);
	array(t.servers);
	array(t.fwranges);
	keyed(vr);
	array(t.backends);
	array(t.maglev);
	keyed(t.ifaces);
	array(std::vector<lg_gcfg>{g});
	return out;
}

// The loader writes only what differs from what a slot's maps hold (arrays
// compared in place, the Maglev array skipped when its version is the same,
// keys added, changed and deleted): after every publish of a sequence as
// linkgated makes them (three slots, one compile cache, the previous
// output's Maglev array moved over), the live slot holds exactly the
// generation's tables. Policies of different sizes alternate with PEC
// changes and backend changes, so tables grow, shrink and stay.
TEST(XdpGenerations, EveryPublishLeavesTheLiveSlotEqualToItsTables)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	XdpConfig xc;
	xc.gen_slots = LG_GEN_SLOTS;
	auto dp = XdpDataplane::load(xc);
	ASSERT_TRUE(dp) << dp.error();
	CompileCache cache;
	CompiledTables live;
	std::mt19937_64 rng(7);
	std::vector<testing::RandomPolicy> policies;
	for (uint64_t seed : {11, 12, 13})
		policies.push_back(testing::random_policy(seed));
	uint64_t gen = 1, skipped_versions = 0, last_version = 0;
	for (int step = 0; step < 30; step++) {
		SCOPED_TRACE(step);
		auto &rp = policies[step / 6 % policies.size()];
		State &s = rp.state;
		uint64_t r = rng();
		if (r % 3 == 0) {
			for (auto &pe : s.privateEndpoints)
				if (pe.connectionPresent)
					pe.connectionState.status = r / 3 % 2 ? "Approved" : "Rejected";
		} else if (r % 3 == 1 && !s.servers.empty() && !s.servers[0].backends.empty()) {
			s.servers[0].backends[0].weight = int(r / 3 % 3); // another Maglev array
		}
		auto t = compile(s, rp.ifaces, gen++, &cache, &live);
		ASSERT_TRUE(t) << t.error();
		skipped_versions += t->maglev_version == last_version;
		last_version = t->maglev_version;
		ASSERT_TRUE((*dp)->publish(*t).ok());
		live = std::move(*t);
		lg_active act{};
		uint32_t z = 0;
		ASSERT_EQ(bpf_map__lookup_elem((*dp)->skeleton()->maps.lg_active, &z, sizeof z, &act, sizeof act, 0), 0);
		auto ids = inner_ids(**dp, act.slot);
		auto want = expected_contents(live);
		ASSERT_EQ(ids.size(), want.size());
		for (size_t i = 0; i < ids.size(); i++) {
			SCOPED_TRACE(i);
			uint32_t n = uint32_t(want[i].size());
			EXPECT_EQ(inner_contents(ids[i], n), want[i]);
		}
	}
	EXPECT_GT(skipped_versions, 3u) << "the same Maglev array was published again";
	EXPECT_TRUE((*dp)->settle().ok());
}

// A table that outgrows its inner map gets a bigger one (slow path, one
// outer update); later publishes reuse that one.
TEST(XdpGenerations, TableGrowthReplacesInnerMap)
{
	ASSERT_EQ(geteuid(), 0u);
	ASSERT_TRUE(xdptest::enter_netns());
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(host_template(), &m);
	uint32_t cif = m[kClientIf];
	auto dp = XdpDataplane::load();
	ASSERT_TRUE(dp) << dp.error();
	State a = seed(), big = seed();
	for (int i = 0; i < 200; i++)
		big.networkSecurityGroups[0].securityRules.push_back(
			rule(("bulk-" + std::to_string(i)).c_str(), 1000 + i, "Inbound", "Deny", "Udp", "*", "*",
			     std::to_string(10000 + i).c_str()));
	auto ta = compile(a, xdptest::bindings(h), 2), tb = compile(big, xdptest::bindings(h), 3);
	ASSERT_TRUE(ta && tb) << (tb ? "" : tb.error());
	ASSERT_LE(ta->rules.size(), 64u);
	ASSERT_GT(tb->rules.size(), 128u);
	ASSERT_TRUE((*dp)->publish(*ta).ok()); // slot 0
	ASSERT_TRUE((*dp)->publish(*ta).ok()); // slot 1
	auto before = inner_ids(**dp, 0);
	ASSERT_TRUE((*dp)->publish(*tb).ok()); // slot 0: lg_rule grows
	auto grown = inner_ids(**dp, 0);
	EXPECT_NE(grown[3], before[3]) << "lg_rule replaced";
	EXPECT_EQ(grown[6], before[6]) << "lg_pe kept";
	uint16_t sp = 2000;
	auto syn = [&] {
		auto f = PacketBuilder().eth(kClientMac, kClientIfMac).ipv4("10.1.1.10", "10.1.1.100").tcp(sp++, 3306, kTcpSyn).build();
		auto x = (*dp)->run(f, cif);
		return x ? x->action : -1;
	};
	EXPECT_EQ(syn(), XDP_REDIRECT);
	int rfd = bpf_map_get_fd_by_id(grown[3]);
	ASSERT_GE(rfd, 0);
	for (uint32_t i = 0; i < tb->rules.size(); i++) {
		lg_rule v{};
		ASSERT_EQ(bpf_map_lookup_elem(rfd, &i, &v), 0) << i;
		EXPECT_EQ(v.counter, tb->rules[i].counter) << i;
	}
	close(rfd);
	ASSERT_TRUE((*dp)->publish(*ta).ok()); // slot 1
	ASSERT_TRUE((*dp)->publish(*tb).ok()); // slot 0 again: fits now
	EXPECT_EQ(inner_ids(**dp, 0), grown);
	EXPECT_EQ(syn(), XDP_REDIRECT);
	EXPECT_TRUE((*dp)->settle().ok());
}

} // namespace
} // namespace lg

#ifndef LG_WITH_DPDK
namespace lg {
namespace {

bool local_has(int fd, const Addr &a)
{
	lg_local_key k{};
	std::memcpy(k.addr, a.b.data(), 16);
	uint8_t v;
	return bpf_map_lookup_elem(fd, &k, &v) == 0;
}

size_t local_count(int fd)
{
	size_t n = 0;
	lg_local_key k{}, next{};
	const void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		n++;
		k = next;
		prev = &k;
	}
	return n;
}

// The host's addresses are replaced without a gap: an address in the old and
// the new set is never missing from lg_local (a restarted agent writes the
// set on the live map, and linkgated writes it again on every address
// change). A reader looks the common address up all along.
TEST(XdpLocal, ReplacingTheHostAddressesKeepsTheCommonOnes)
{
	auto dp = XdpDataplane::load({});
	ASSERT_TRUE(dp) << dp.error();
	int fd = bpf_map__fd((*dp)->skeleton()->maps.lg_local);
	Addr a = *Addr::parse("10.0.0.1"), b = *Addr::parse("10.0.0.2"), c = *Addr::parse("fd00::3");
	ASSERT_TRUE((*dp)->set_local_addresses({a, b}).ok());
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> reads{0}, missing{0};
	std::thread reader([&] {
		while (!stop.load(std::memory_order_relaxed)) {
			if (!local_has(fd, b))
				missing++;
			reads++;
		}
	});
	bool ok = true;
	for (int i = 0; i < 2000 && ok; i++)
		ok = (*dp)->set_local_addresses({b, c}).ok() && (*dp)->set_local_addresses({a, b}).ok();
	stop = true;
	reader.join();
	ASSERT_TRUE(ok);
	EXPECT_GT(reads.load(), 0u);
	EXPECT_EQ(missing.load(), 0u) << "of " << reads.load() << " lookups";
	ASSERT_TRUE((*dp)->set_local_addresses({b, c, c}).ok());
	EXPECT_FALSE(local_has(fd, a));
	EXPECT_TRUE(local_has(fd, b));
	EXPECT_TRUE(local_has(fd, c));
	ASSERT_TRUE((*dp)->set_local_addresses({}).ok());
	EXPECT_FALSE(local_has(fd, b));
	EXPECT_FALSE(local_has(fd, c));
	EXPECT_EQ(local_count(fd), 0u);
}

// A set that fits lg_local (1,024) is written whatever it replaces: two
// sets of 600 with nothing in common (before 2026-12-02 the new addresses
// were added before the old ones left, and 1,200 did not fit). One that
// does not fit is refused: none of its new addresses come, and the gone
// ones still leave (one left behind would take its packets past policy).
TEST(XdpLocal, ANewSetThatFitsIsWrittenWhateverItReplaces)
{
	auto dp = XdpDataplane::load({});
	ASSERT_TRUE(dp) << dp.error();
	int fd = bpf_map__fd((*dp)->skeleton()->maps.lg_local);
	auto set = [](uint8_t net, unsigned n) {
		std::vector<Addr> v;
		for (unsigned i = 0; i < n; i++)
			v.push_back(Addr::from_v4(uint32_t(10) << 24 | uint32_t(net) << 16 | i));
		return v;
	};
	auto count = [&] { return local_count(fd); };
	auto has = [&](const Addr &a) { return local_has(fd, a); };
	auto a = set(1, 600), b = set(2, 600);
	ASSERT_TRUE((*dp)->set_local_addresses(a).ok());
	auto st = (*dp)->set_local_addresses(b);
	ASSERT_TRUE(st.ok()) << st.error();
	EXPECT_EQ(count(), 600u);
	EXPECT_TRUE(has(b.front()) && has(b.back()));
	EXPECT_FALSE(has(a.front()));

	auto big = set(3, 1024);
	big.push_back(b.front()); // 1,025: one stays
	bool too_many = false;
	st = (*dp)->set_local_addresses(big, &too_many);
	ASSERT_FALSE(st.ok());
	EXPECT_TRUE(too_many) << st.error();
	EXPECT_EQ(count(), 1u) << "the gone ones left, no new one came";
	EXPECT_TRUE(has(b.front()));
	EXPECT_FALSE(has(big.front()));
	big.erase(big.begin());
	big.push_back(big.back()); // 1,024 once a repeat is counted once
	ASSERT_TRUE((*dp)->set_local_addresses(big, &too_many).ok());
	EXPECT_FALSE(too_many);
	EXPECT_EQ(count(), 1024u);
	EXPECT_TRUE(has(b.front()));
}

} // namespace
} // namespace lg
#endif
