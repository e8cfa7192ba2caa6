// Engine::decide_burst against the reference evaluator on bursts of many
// frames (the three-way suites decide one frame at a time): the flow
// pre-lookup of a burst answers the program's lookups, and the frames that
// may start a flow are classified together, so a burst that creates,
// uses, closes, reopens and expires flows inside itself must still decide
// every frame exactly as the evaluator does frame by frame: verdict,
// reason, egress, bytes, and in the end every counter and the flow count.
#include <gtest/gtest.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

#include <random>

#include "compiler.hpp"
#include "dpdk_scenario.hpp"
#include "engine.hpp"
#include "hex.hpp"

namespace lg {
namespace {

using namespace dpdktest;
using lg::testing::hex;

const Mac kMac0{0x02, 0, 0, 0, 0, 0x10}, kMac1{0x02, 0, 0, 0, 0, 0x11};

struct Pkt {
	uint16_t port;
	std::vector<uint8_t> bytes;
	std::string what;
};

// Conversations over the scenario, interleaved by a seeded shuffle that
// keeps each conversation's own order: private endpoint (DNAT) and public
// endpoint flows with their replies, FIN/RST closes, a SYN reopening a
// closed tuple, duplicate SYNs, NSG denies, UDP, ACKs without a flow.
std::vector<Pkt> conversations(std::mt19937 &rng, int n)
{
	auto c = [&](const std::string &src, const char *dst) { return PacketBuilder().eth(kClientMac, kMac0).ipv4(src, dst); };
	auto b = [&](const char *src, const std::string &dst) { return PacketBuilder().eth(kGwMac, kMac1).ipv4(src, dst); };
	std::vector<std::vector<Pkt>> convs;
	for (int i = 0; i < n; i++) {
		std::string cl = "10.1.1." + std::to_string(10 + i % 200);
		uint16_t sp = uint16_t(20000 + i);
		std::vector<Pkt> v;
		switch (i % 8) {
		case 0: // private endpoint, DNAT to 192.168.20.11, closed by FIN both ways
		case 1:
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpSyn, 1).build(), "PE SYN"});
			if (i % 16 == 1)
				v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpSyn, 1).build(), "PE SYN again"});
			v.push_back({1, b("192.168.20.11", cl).tcp(3306, sp, kTcpSyn | kTcpAck, 9, 2).build(), "PE SYN-ACK"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpAck, 2, 10).build(), "PE ACK"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpAck | kTcpPsh, 2, 10).payload("query").build(), "PE data"});
			v.push_back({1, b("192.168.20.11", cl).tcp(3306, sp, kTcpAck | kTcpPsh, 10, 7).payload("rows").build(), "PE reply"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpFin | kTcpAck, 7, 14).build(), "PE FIN"});
			v.push_back({1, b("192.168.20.11", cl).tcp(3306, sp, kTcpFin | kTcpAck, 14, 8).build(), "PE FIN back"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpAck, 8, 15).build(), "PE last ACK"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpSyn, 100).build(), "PE SYN reopening the closed tuple"});
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpAck, 101, 1).build(), "PE ACK on the reopened flow"});
			break;
		case 2: // public endpoint, reset by the client
			v.push_back({0, c(cl, "20.10.1.5").tcp(sp, 3306, kTcpSyn, 1).build(), "public SYN"});
			v.push_back({1, b("192.168.10.11", cl).tcp(3306, sp, kTcpSyn | kTcpAck, 9, 2).build(), "public SYN-ACK"});
			v.push_back({0, c(cl, "20.10.1.5").tcp(sp, 3306, kTcpAck, 2, 10).build(), "public ACK"});
			v.push_back({0, c(cl, "20.10.1.5").tcp(sp, 3306, kTcpRst, 2).build(), "public RST"});
			v.push_back({0, c(cl, "20.10.1.5").tcp(sp, 3306, kTcpAck, 2, 10).build(), "public ACK after RST"});
			break;
		case 3: // NSG deny (rule web), then the ACK that has no flow
			v.push_back({0, c(cl, "8.8.8.8").tcp(sp, 8080, kTcpSyn).build(), "SYN denied by web"});
			v.push_back({0, c(cl, "8.8.8.8").tcp(sp, 8080, kTcpAck).build(), "ACK without a flow"});
			break;
		case 4: // UDP both ways, after a broadcast (a frame that may start a flow but never asks the NSG)
			v.push_back({0, c(cl, "255.255.255.255").udp(sp, 67).payload("b").build(), "UDP broadcast"});
			v.push_back({0, c(cl, "8.8.8.8").udp(sp, 53).payload("q").build(), "UDP query"});
			v.push_back({1, b("8.8.8.8", cl).udp(53, sp).payload("a").build(), "UDP answer"});
			v.push_back({0, c(cl, "8.8.8.8").udp(sp, 53).payload("q2").build(), "UDP query 2"});
			break;
		case 5: // a public endpoint without firewall rules, inbound default deny
			v.push_back({0, c(cl, "20.10.2.5").tcp(sp, 3306, kTcpSyn).build(), "SYN to eastus-db's public IP"});
			v.push_back({1, b("8.8.4.4", cl).tcp(sp, 22, kTcpSyn).build(), "inbound SYN"});
			break;
		case 6: // many packets of one flow, some back to back
			v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpSyn, 1).build(), "PE SYN (long flow)"});
			v.push_back({1, b("192.168.20.11", cl).tcp(3306, sp, kTcpSyn | kTcpAck, 9, 2).build(), "PE SYN-ACK (long flow)"});
			for (int k = 0; k < 6; k++)
				v.push_back({0, c(cl, "10.1.1.100").tcp(sp, 3306, kTcpAck, 2 + k, 10).build(), "PE ACK (long flow)"});
			break;
		default: // VLAN-less UDP to the public endpoint, and a truncated frame
		{
			auto t = c(cl, "20.10.1.5").tcp(sp, 3306, kTcpSyn).build();
			t.resize(40);
			v.push_back({0, t, "truncated SYN"});
			v.push_back({0, c(cl, "20.10.1.5").udp(sp, 3306).payload("u").build(), "UDP to the public endpoint"});
			// IPv6 flows in IPv4 flows' bursts: batches of mixed classifier kinds.
			auto c6 = PacketBuilder().eth(kClientMac, kMac0).ipv6("fd00:1:0:1::" + std::to_string(10 + i % 200),
									 i % 16 == 7 ? "fd00:2::5" : "fd00:3::5");
			v.push_back({0, c6.tcp(sp, 3306, kTcpSyn).build(), "IPv6 SYN"});
			break;
		}
		}
		convs.push_back(std::move(v));
	}
	// Interleave: runs of up to 64 frames arriving on one port, each the
	// next frame of a random conversation whose next frame is on that port.
	std::vector<Pkt> out;
	std::vector<size_t> next(convs.size(), 0);
	std::vector<size_t> live(convs.size());
	for (size_t i = 0; i < live.size(); i++)
		live[i] = i;
	while (!live.empty()) {
		uint16_t port = uint16_t(rng() % 2);
		for (size_t run = 1 + rng() % 64; run > 0; run--) {
			std::vector<size_t> on;
			for (size_t k = 0; k < live.size(); k++)
				if (convs[live[k]][next[live[k]]].port == port)
					on.push_back(k);
			if (on.empty())
				break;
			size_t k = on[rng() % on.size()];
			auto &cv = convs[live[k]];
			out.push_back(cv[next[live[k]]++]);
			if (next[live[k]] == cv.size()) {
				live[k] = live.back();
				live.pop_back();
			}
		}
	}
	return out;
}

TEST(DpdkBurst, BurstsMatchTheEvaluatorFrameByFrame)
{
	rte_mempool *pool = rte_pktmbuf_pool_create("lgt_burst", 511, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
	ASSERT_NE(pool, nullptr) << rte_strerror(rte_errno);
	// Plus an IPv6 subnet under the same NSG and an IPv6 default route: its
	// SYNs are classified in the same bursts as IPv4 ones (rte_acl batches
	// of mixed contexts).
	HostConfig host = scenario_host(kMac0, kMac1);
	host.routes.push_back({*Prefix::parse("::/0"), 2, A("fd00::1")});
	host.neighbors.push_back({2, A("fd00::1"), kGwMac});
	Evaluator ev(host);
	State st = scenario_state();
	st.virtualNetworks[0].addressPrefixes.push_back("fd00:1::/48");
	st.virtualNetworks[0].subnets.push_back({"clients6", "fd00:1:0:1::/64", "clients-nsg", {}, "Disabled"});
	// An IPv6-only deny: what an IPv4 context would answer differently.
	st.networkSecurityGroups[0].securityRules.push_back(
		testing::make_rule("deny-v6", 120, "Outbound", "Deny", "Tcp", "*", "fd00:2::/64", "3306"));
	ASSERT_TRUE(ev.commit(st).ok());

	dp::EngineConfig cfg;
	cfg.host = host; // neighbours resolve the next hops, as in the evaluator
	cfg.timeouts.flow_capacity = 4096;
	auto e = dp::Engine::create(cfg);
	ASSERT_TRUE(e) << e.error();
	dp::Engine &eng = **e;
	std::vector<InterfaceBinding> bind = {{1, "client-vnet", kMac0}, {2, "", kMac1}};
	auto t = compile(st, bind, ev.generation());
	ASSERT_TRUE(t) << t.error();
	ASSERT_TRUE(eng.publish(*t).ok());
	eng.online(0);

	std::mt19937 rng(7);
	std::vector<Pkt> frames = conversations(rng, 400);
	// Time moves a little per burst and, twice, past every flow timeout
	// (established TCP included): flows expire in the middle of bursts.
	uint64_t now = 1000000000000ull;
	const uint64_t expire = cfg.timeouts.tcp_established_ns + cfg.timeouts.udp_ns + 1000000000ull;
	size_t i = 0, bursts = 0, big = 0;
	std::map<std::string, int> outcomes;
	size_t nsg6[2] = {}; // IPv6 SYNs denied by a rule, forwarded
	while (i < frames.size()) {
		// A burst: frames of one port, 1..80 of them (more than 64 are
		// split by decide_burst).
		size_t want = 1 + rng() % 80, j = i;
		while (j < frames.size() && j - i < want && frames[j].port == frames[i].port)
			j++;
		if ((i < frames.size() / 3) != (j < frames.size() / 3) || (i < 2 * frames.size() / 3) != (j < 2 * frames.size() / 3))
			now += expire;
		now += 1000 + rng() % 100000;
		std::vector<rte_mbuf *> pkts;
		for (size_t k = i; k < j; k++) {
			rte_mbuf *m = rte_pktmbuf_alloc(pool);
			ASSERT_NE(m, nullptr);
			char *d = rte_pktmbuf_append(m, uint16_t(frames[k].bytes.size()));
			ASSERT_NE(d, nullptr);
			std::memcpy(d, frames[k].bytes.data(), frames[k].bytes.size());
			pkts.push_back(m);
		}
		std::vector<dp::Verdict> v(pkts.size());
		uint32_t ifindex = frames[i].port + 1u;
		eng.decide_burst(ifindex, pkts.data(), uint16_t(pkts.size()), v.data(), now);
		eng.quiescent(0);
		for (size_t k = i; k < j; k++) {
			const Pkt &f = frames[k];
			Decision d = ev.process(f.bytes, ifindex, now);
			outcomes[std::string(verdict_name(d.verdict)) + "/" + reason_name(d.reason)]++;
			if (f.what == "IPv6 SYN" && (d.reason == LG_REASON_NSG_DENY || d.verdict == LG_VERDICT_FORWARD))
				nsg6[d.verdict == LG_VERDICT_FORWARD]++;
			const dp::Verdict &g = v[k - i];
			std::string at = f.what + " (frame " + std::to_string(k) + ", burst " + std::to_string(bursts) +
					 " of " + std::to_string(j - i) + ")";
			EXPECT_EQ(g.verdict, d.verdict) << at;
			EXPECT_EQ(g.reason, d.reason) << at << ": " << reason_name(g.reason) << " vs " << reason_name(d.reason);
			if (d.verdict == LG_VERDICT_FORWARD) {
				EXPECT_EQ(g.egress, d.egress_ifindex) << at;
			}
			if (d.verdict == LG_VERDICT_FORWARD || d.verdict == LG_VERDICT_TX) {
				rte_mbuf *m = pkts[k - i];
				std::vector<uint8_t> got(rte_pktmbuf_mtod(m, uint8_t *),
							 rte_pktmbuf_mtod(m, uint8_t *) + rte_pktmbuf_data_len(m));
				EXPECT_EQ(got, d.frame) << at << "\ngot:\n" << hex(got) << "\nevaluator:\n" << hex(d.frame);
			}
		}
		for (rte_mbuf *m : pkts)
			rte_pktmbuf_free(m);
		if (j - i > 1)
			big++;
		bursts++;
		i = j;
		if (::testing::Test::HasFailure())
			break;
	}
	EXPECT_GT(big, bursts / 2) << "most bursts hold several frames";
	for (const char *k : {"forward/none", "drop/nsg-deny", "drop/ct-invalid", "drop/firewall-no-match",
			      "drop/nsg-default-deny", "drop/malformed"})
		EXPECT_GT(outcomes[k], 0) << k;
	EXPECT_GT(nsg6[0], 0u) << "IPv6 SYNs denied by deny-v6";
	EXPECT_GT(nsg6[1], 0u) << "IPv6 SYNs allowed";

	dp::EngineCounters c = eng.counters();
	const Counters &ec = ev.counters();
	for (size_t r = 0; r < LG_REASON__COUNT; r++)
		EXPECT_EQ(c.reasons[r], ec.reasons[r]) << reason_name(lg_reason(r));
	for (auto &[name, n] : ec.rule_hits)
		EXPECT_EQ(c.rules[name], n) << "rule hits of " << name;
	for (auto &[name, n] : ec.private_endpoints)
		EXPECT_EQ(c.private_endpoints[name], n) << "packets of private endpoint " << name;
	for (auto &[name, n] : ec.servers)
		EXPECT_EQ(c.servers[name], n) << "packets of server " << name;
	EXPECT_EQ(c.flows, ev.flow_count());

	// The burst machinery was used, not bypassed: lookups answered by the
	// pre-lookup, hints forgotten after inserts and deletes inside a burst,
	// classifications answered from a batch of several tuples.
	dp::Engine::BurstStats bs = eng.burst_stats();
	EXPECT_GT(bs.hint_hits, frames.size() / 2);
	EXPECT_GT(bs.hints_forgotten, 0u);
	EXPECT_GT(bs.acl_batched, 0u);
	EXPECT_GT(bs.acl_tuples, bs.acl_calls) << "some rte_acl call classified several tuples";
	auto [cycles, lookups] = eng.classify_stats();
	EXPECT_GT(lookups, 0u);
	EXPECT_GT(cycles, 0u);
	eng.offline(0);
}

// A frame a PMD hands over in segments (scatter, net_pcap's jumbo reads)
// is joined in its first mbuf and decided as one, up to exactly that
// mbuf's data room (2,048 bytes with linkgate-dpdk's pool); a longer one
// is dropped `malformed` and counted, and the burst's other frames are
// decided as usual (docs/decisions.md, "Frames in segments").
TEST(DpdkBurst, ChainedFramesAreJoinedOrDroppedMalformed)
{
	rte_mempool *pool = rte_pktmbuf_pool_create("lgt_chain", 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
	ASSERT_NE(pool, nullptr) << rte_strerror(rte_errno);
	HostConfig host = scenario_host(kMac0, kMac1);
	Evaluator ev(host);
	State st = scenario_state();
	ASSERT_TRUE(ev.commit(st).ok());
	dp::EngineConfig cfg;
	cfg.host = host;
	cfg.timeouts.flow_capacity = 1024;
	auto e = dp::Engine::create(cfg);
	ASSERT_TRUE(e) << e.error();
	dp::Engine &eng = **e;
	std::vector<InterfaceBinding> bind = {{1, "client-vnet", kMac0}, {2, "", kMac1}};
	auto t = compile(st, bind, ev.generation());
	ASSERT_TRUE(t) << t.error();
	ASSERT_TRUE(eng.publish(*t).ok());
	eng.online(0);

	// Frame bytes in segments of the given sizes.
	auto chain = [&](const std::vector<uint8_t> &f, std::vector<size_t> sizes) -> rte_mbuf * {
		rte_mbuf *head = nullptr;
		size_t at = 0;
		for (size_t n : sizes) {
			rte_mbuf *m = rte_pktmbuf_alloc(pool);
			char *d = m ? rte_pktmbuf_append(m, uint16_t(n)) : nullptr;
			if (!d) {
				ADD_FAILURE() << "no mbuf for a segment of " << n;
				rte_pktmbuf_free(m);
				rte_pktmbuf_free(head);
				return nullptr;
			}
			std::memcpy(d, f.data() + at, n);
			at += n;
			if (!head)
				head = m;
			else if (rte_pktmbuf_chain(head, m) != 0)
				ADD_FAILURE() << "rte_pktmbuf_chain";
		}
		EXPECT_EQ(at, f.size());
		return head;
	};
	auto c = [&](const char *dst) { return PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", dst); };
	// To the private endpoint: DNAT. The second is over one mbuf's room.
	std::vector<uint8_t> small = c("10.1.1.100").tcp(40001, 3306, kTcpSyn, 1).payload(std::string(40, 'a')).build();
	std::vector<uint8_t> big = c("10.1.1.100").tcp(40002, 3306, kTcpSyn, 1).payload(std::string(2946, 'b')).build();
	std::vector<uint8_t> plain = c("10.1.1.100").tcp(40003, 3306, kTcpSyn, 1).build();
	// Exactly one data room: the first segment's tailroom takes the second.
	std::vector<uint8_t> full = c("10.1.1.100").tcp(40004, 3306, kTcpSyn, 1).payload(std::string(1994, 'c')).build();
	ASSERT_EQ(big.size(), 3000u);
	ASSERT_EQ(full.size(), 2048u);
	rte_mbuf *pkts[4] = {chain(small, {34, 40, small.size() - 74}), chain(big, {2000, 1000}),
			     chain(plain, {plain.size()}), chain(full, {1500, 548})};
	for (rte_mbuf *m : pkts)
		ASSERT_NE(m, nullptr);
	EXPECT_EQ(pkts[0]->nb_segs, 3);
	EXPECT_EQ(pkts[1]->nb_segs, 2);
	EXPECT_EQ(pkts[3]->nb_segs, 2);

	uint64_t now = dp::Engine::clock_ns();
	dp::EngineCounters before = eng.counters();
	dp::Verdict v[4];
	eng.decide_burst(1, pkts, 4, v, now);
	eng.quiescent(0);
	dp::EngineCounters after = eng.counters();

	for (int k : {0, 2, 3}) {
		const std::vector<uint8_t> &f = k == 0 ? small : k == 2 ? plain : full;
		Decision d = ev.process(f, 1, now);
		ASSERT_EQ(d.verdict, LG_VERDICT_FORWARD) << "frame " << k << ": " << reason_name(d.reason);
		EXPECT_EQ(v[k].verdict, LG_VERDICT_FORWARD) << "frame " << k << ": " << reason_name(v[k].reason);
		EXPECT_EQ(v[k].egress, d.egress_ifindex) << "frame " << k;
		EXPECT_EQ(pkts[k]->nb_segs, 1) << "frame " << k << " joined";
		std::vector<uint8_t> got(rte_pktmbuf_mtod(pkts[k], uint8_t *),
					 rte_pktmbuf_mtod(pkts[k], uint8_t *) + rte_pktmbuf_data_len(pkts[k]));
		EXPECT_EQ(got, d.frame) << "frame " << k << "\ngot:\n" << hex(got) << "\nevaluator:\n" << hex(d.frame);
	}
	EXPECT_EQ(v[1].verdict, LG_VERDICT_DROP);
	EXPECT_EQ(v[1].reason, LG_REASON_MALFORMED) << reason_name(v[1].reason);
	EXPECT_EQ(pkts[1]->nb_segs, 2) << "left as it came: it could not be joined";
	EXPECT_EQ(after.reasons[LG_REASON_MALFORMED] - before.reasons[LG_REASON_MALFORMED], 1u);
	EXPECT_EQ(after.reasons[LG_REASON_NONE] - before.reasons[LG_REASON_NONE], 3u);
	EXPECT_EQ(after.flows, 3u) << "no flow for the dropped frame";
	for (rte_mbuf *m : pkts)
		rte_pktmbuf_free(m);
	eng.offline(0);
	rte_mempool_free(pool);
}

} // namespace
} // namespace lg
