// The XDP program against the reference evaluator over random policies
// (tests/random_policy.hpp) and whole conversations: first packets of every
// kind, replies from the far side, follow-ups, FIN/RST, ICMP errors quoting
// packets of the flow from either side, fragments in and out of order, and
// between batches a random policy change committed to both, after which the
// open conversations go on. Every frame goes through Pair::check (verdict,
// reason, output bytes, egress, counter deltas).
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "packet.hpp"
#include "random_policy.hpp"
#ifdef LG_WITH_DPDK
#include "lg_host.h"
#endif
#include "validate.hpp"
#include "xdp_harness.hpp"

namespace lg {
namespace {

using xdptest::Pair;
constexpr uint64_t kSec = 1000000000ull;

struct Rng {
	std::mt19937_64 r;
	explicit Rng(uint64_t seed) : r(seed * 0x2545f4914f6cdd1dull + 7) {}
	uint64_t below(uint64_t n) { return n ? r() % n : 0; }
	bool pct(int p) { return int(below(100)) < p; }
	template <typename V>
	auto &pick(V &v) { return v[below(std::size(v))]; }
};

bool loopback(const Addr &a) { return a.is_v4() ? (a.v4() >> 24) == 127 : a == *Addr::parse("::1"); }

// One conversation: its first packet's tuple and framing, and what became
// of it (as the evaluator says; Pair::check holds XDP to the same).
struct Conv {
	Tuple t;
	uint32_t in_if = 0;
	int vlans = 0;
	bool v4opts = false, v6ext = false;
	uint16_t icmp_id = 0;
	bool open = false;   // a flow was made
	bool closed = false; // FIN both ways or RST sent
	uint32_t out_if = 0;
	std::vector<uint8_t> out;  // the first packet as it left
	std::vector<uint8_t> back; // the last reply as it reached the client
	uint16_t seq = 1;
	bool v4() const { return t.src.is_v4(); }
};

class Run {
public:
	Run(Pair &p, const testing::RandomPolicy &rp, uint64_t seed) : pair_(p), state_(rp.state), g_(seed)
	{
		for (auto &i : pair_.host().interfaces)
			vnet_if_[i.vnet] = i.ifindex;
	}

	std::map<std::string, int> tally;
	int frames = 0, commits = 0;
	double commit_s = 0;

	Decision check(const std::vector<uint8_t> &f, uint32_t ifx, const std::string &what)
	{
		Decision d = pair_.check(f, ifx, phase_ + what);
		frames++;
		tally[phase_ + verdict_name(d.verdict) + "/" + reason_name(d.reason)]++;
		return d;
	}

	PacketBuilder near(const Conv &c) const
	{
		PacketBuilder b;
		b.eth({0x02, 0xee, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 1});
		for (int i = 0; i < c.vlans; i++)
			b.vlan(i ? kEthVlan : kEthQinQ, uint16_t(100 + i));
		if (c.v4()) {
			b.ipv4(c.t.src.str(), c.t.dst.str());
			if (c.v4opts)
				b.ipv4_options({0x94, 4, 0, 0});
		} else {
			b.ipv6(c.t.src.str(), c.t.dst.str());
			if (c.v6ext)
				b.ipv6_ext(0).ipv6_ext(60, {1, 0, 0, 0});
		}
		return b;
	}
	// The far side answers to where the first packet went (translated).
	PacketBuilder far(const Conv &c, Parsed &o, const std::string *src = nullptr) const
	{
		parse_frame(c.out, o);
		PacketBuilder b;
		b.eth({0x02, 0xdd, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 2});
		if (c.vlans == 2)
			b.vlan(kEthVlan, 7); // tagged on the far side too
		std::string s = src ? *src : o.dst.str();
		if (o.family == 4)
			b.ipv4(s, o.src.str());
		else
			b.ipv6(s, o.src.str());
		return b;
	}
	void l4(PacketBuilder &b, const Conv &c, bool reply, uint8_t flags, size_t pay, const Parsed *o = nullptr)
	{
		uint8_t proto = c.t.proto;
		std::vector<uint8_t> data(pay, uint8_t(0x30 + c.seq));
		if (proto == kProtoTcp) {
			if (reply)
				b.tcp(o->dport, o->sport, flags, 9000 + c.seq, 100 + c.seq);
			else
				b.tcp(c.t.sport, c.t.dport, flags, 100 + c.seq, 9000 + c.seq);
			b.payload(data);
		} else if (proto == kProtoUdp) {
			if (reply)
				b.udp(o->dport, o->sport);
			else
				b.udp(c.t.sport, c.t.dport);
			b.payload(data);
		} else if (proto == kProtoIcmp || proto == kProtoIcmp6) {
			uint8_t type = c.v4() ? (reply ? 0 : 8) : (reply ? 129 : 128);
			b.icmp(type, 0, c.icmp_id, c.seq).payload(data);
		} else {
			data.resize(std::max<size_t>(pay, 8));
			b.raw_l4(proto, data);
		}
	}
	std::vector<uint8_t> fwd(Conv &c, uint8_t flags, size_t pay = 0)
	{
		PacketBuilder b = near(c);
		l4(b, c, false, flags, pay);
		c.seq++;
		return b.build();
	}
	std::vector<uint8_t> rev(Conv &c, uint8_t flags, size_t pay = 0)
	{
		Parsed o;
		PacketBuilder b = far(c, o);
		l4(b, c, true, flags, pay, &o);
		c.seq++;
		return b.build();
	}
	// First and later fragment of a packet of c (either direction); the later
	// one starts right after the first's bytes.
	std::pair<std::vector<uint8_t>, std::vector<uint8_t>> frags(Conv &c, bool reply, uint8_t flags)
	{
		uint32_t id = frag_id_++;
		Parsed o;
		PacketBuilder f = reply ? far(c, o) : near(c), l = reply ? far(c, o) : near(c);
		size_t l4len = c.t.proto == kProtoTcp ? 20 : (c.t.proto == kProtoUdp || c.t.proto == kProtoIcmp || c.t.proto == kProtoIcmp6) ? 8 : 0;
		uint16_t off = uint16_t((l4len + 32 + 7) / 8 * 8);
		bool v4 = c.v4();
		if (v4) {
			f.ipv4_fragment(uint16_t(id), 0, true);
			l.ipv4_fragment(uint16_t(id), off, false);
		} else {
			f.ipv6_fragment(id, 0, true);
			l.ipv6_fragment(id, off, false);
		}
		l4(f, c, reply, flags, 32, &o);
		l.raw_l4(c.t.proto, std::vector<uint8_t>(24, 0xa5));
		return {f.build(), l.build()};
	}
	std::vector<uint8_t> err_far(Conv &c)
	{
		Parsed o;
		std::string router = c.v4() ? "192.0.2.1" : "2001:db8:ffff::1";
		bool from_router = g_.pct(30);
		PacketBuilder b = far(c, o, from_router ? &router : nullptr);
		size_t quote = g_.pct(50) ? (c.v4() ? 28 : 48) : 200;
		if (c.v4())
			b.icmp_error(g_.pct(50) ? 3 : 11, g_.pct(50) ? 3 : 0, c.out, quote);
		else
			b.icmp_error(g_.pct(50) ? 1 : 2, g_.pct(50) ? 4 : 0, c.out, quote);
		return b.build();
	}
	std::vector<uint8_t> err_near(Conv &c)
	{
		Parsed o;
		parse_frame(c.back, o);
		PacketBuilder b;
		b.eth({0x02, 0xee, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 1});
		if (o.family == 4)
			b.ipv4(o.dst.str(), o.src.str()).icmp_error(3, 3, c.back, 28);
		else
			b.ipv6(o.dst.str(), o.src.str()).icmp_error(1, 4, c.back, 200);
		return b.build();
	}
	// ICMP from the far side that is not the echo reply: its own echo
	// request with the conversation's identifier, or a timestamp request.
	std::vector<uint8_t> icmp_far(Conv &c, uint8_t type)
	{
		Parsed o;
		PacketBuilder b = far(c, o);
		b.icmp(type, 0, c.icmp_id, c.seq).payload(std::vector<uint8_t>(8, 0x5a));
		c.seq++;
		return b.build();
	}
	std::vector<uint8_t> ttl1(Conv &c, uint8_t flags)
	{
		auto v = fwd(c, flags, 4);
		Parsed p;
		parse_frame(v, p);
		if (p.family == 4) {
			v[p.l3 + 8] = 1;
			v[p.l3 + 10] = v[p.l3 + 11] = 0;
			wr16(v, p.l3 + 10, inet_checksum(std::span(v).subspan(p.l3, size_t(v[p.l3] & 0xf) * 4)));
		} else {
			v[p.l3 + 7] = 1;
		}
		return v;
	}

	bool tcp(const Conv &c) const { return c.t.proto == kProtoTcp; }
	uint8_t follow_flags(const Conv &c) const { return tcp(c) ? kTcpAck | kTcpPsh : 0; }

	// A new conversation: first packet, then as far as the flow goes.
	void start(testing::TupleGen &gen)
	{
		Conv c;
		do
			c.t = gen.next();
		while (loopback(c.t.dst));
		// Now and then the client address and port of an open
		// conversation, to another destination: two translated flows to
		// one backend would share a reply key (ct-clash).
		if (g_.pct(10) && !convs_.empty()) {
			const Conv &o = convs_[g_.below(convs_.size())];
			if (o.open && !o.closed && (tcp(o) || o.t.proto == kProtoUdp) && o.v4() == c.t.dst.is_v4()) {
				c.t.vnet = o.t.vnet;
				c.t.src = o.t.src;
				c.t.proto = o.t.proto;
				c.t.sport = o.t.sport;
				Parsed out; // straight to the backend it was translated to
				if (parse_frame(o.out, out) == LG_REASON_NONE && out.dst != o.t.dst && g_.pct(50)) {
					c.t.dst = out.dst;
					c.t.dport = out.dport;
				}
			}
		}
		c.in_if = vnet_if_[c.t.vnet];
		c.vlans = g_.pct(20) ? int(1 + g_.below(2)) : 0;
		c.v4opts = g_.pct(15);
		c.v6ext = g_.pct(15);
		c.icmp_id = g_.pct(25) ? 0 : uint16_t(g_.r()); // 0: both ports of the keys 0
		std::string n = "conv " + std::to_string(convs_.size());
		Decision d;
		if (g_.pct(8) && (tcp(c) || c.t.proto == kProtoUdp)) {
			auto [first, later] = frags(c, false, kTcpSyn);
			d = check(first, c.in_if, n + " fragmented first packet");
			check(later, c.in_if, n + " its later fragment");
			if (d.flow_created)
				c.seq = 2;
		} else {
			d = check(fwd(c, kTcpSyn, g_.pct(30) ? 16 : 0), c.in_if, n + " first packet");
		}
		if (d.flow_created && d.egress_ifindex) {
			c.open = true;
			c.out = d.frame;
			c.out_if = d.egress_ifindex;
		}
		if (g_.pct(20))
			check(fwd(c, kTcpSyn), c.in_if, n + " retransmitted");
		if (!c.open) {
			if (tcp(c) && g_.pct(50))
				check(fwd(c, kTcpAck, 8), c.in_if, n + " ACK without a flow");
			if (g_.pct(20)) {
				auto [first, later] = frags(c, false, kTcpSyn);
				check(first, c.in_if, n + " first fragment");
				check(later, c.in_if, n + " later fragment");
			}
			convs_.push_back(c);
			return;
		}
		Decision r = check(rev(c, kTcpSyn | kTcpAck), c.out_if, n + " reply");
		if (r.verdict != LG_VERDICT_DROP)
			c.back = r.frame;
		check(fwd(c, tcp(c) ? kTcpAck : 0, 24), c.in_if, n + " follow-up");
		talk(c, n);
		convs_.push_back(c);
	}

	// Follow-ups of an open conversation: data both ways, ICMP errors,
	// fragments, the end.
	void talk(Conv &c, const std::string &n)
	{
		Decision r = check(rev(c, follow_flags(c), 40), c.out_if, n + " reply data");
		if (r.verdict != LG_VERDICT_DROP)
			c.back = r.frame;
		if (g_.pct(50))
			check(fwd(c, follow_flags(c), 12), c.in_if, n + " more data");
		if (g_.pct(35))
			check(err_far(c), c.out_if, n + " ICMP error from the far side");
		if (g_.pct(25) && !c.back.empty())
			check(err_near(c), c.in_if, n + " ICMP error from the near side");
		if (g_.pct(25)) {
			bool reply = g_.pct(40);
			auto [first, later] = frags(c, reply, follow_flags(c));
			uint32_t ifx = reply ? c.out_if : c.in_if;
			if (g_.pct(30)) { // out of order: no first yet
				check(later, ifx, n + " later fragment before its first");
				check(first, ifx, n + " first fragment");
			} else {
				check(first, ifx, n + " first fragment");
			}
			check(later, ifx, n + " later fragment");
		}
		// From a host to itself, that echo's flow would take the
		// conversation's reply key: refused, ct-clash.
		if ((c.t.proto == kProtoIcmp || c.t.proto == kProtoIcmp6) && g_.pct(40)) {
			check(icmp_far(c, c.v4() ? 8 : 128), c.out_if, n + " echo request from the far side");
			if (c.v4())
				check(icmp_far(c, 13), c.out_if, n + " timestamp request from the far side");
		}
		if (g_.pct(5))
			check(ttl1(c, follow_flags(c)), c.in_if, n + " TTL 1");
		if (tcp(c) && !c.closed && g_.pct(25)) {
			if (g_.pct(70)) {
				check(fwd(c, kTcpFin | kTcpAck), c.in_if, n + " FIN");
				check(rev(c, kTcpFin | kTcpAck), c.out_if, n + " FIN back");
				check(fwd(c, kTcpAck), c.in_if, n + " last ACK");
			} else if (g_.pct(50)) {
				check(fwd(c, kTcpRst), c.in_if, n + " RST");
			} else {
				check(rev(c, kTcpRst | kTcpAck), c.out_if, n + " RST back");
			}
			c.closed = true;
			if (g_.pct(30)) { // the tuple reused: decided anew
				Decision d = check(fwd(c, kTcpSyn), c.in_if, n + " new SYN on the closed tuple");
				if (d.flow_created && d.egress_ifindex) {
					c.closed = false;
					c.out = d.frame;
					c.out_if = d.egress_ifindex;
				}
			}
		}
	}

	// After a policy change: every conversation goes on (cut ones are dropped
	// with the new reason, then ct-invalid).
	void resume()
	{
		for (size_t i = 0; i < convs_.size() && !::testing::Test::HasFailure(); i++) {
			Conv &c = convs_[i];
			std::string n = "conv " + std::to_string(i);
			if (!c.open) {
				if (g_.pct(25))
					check(fwd(c, kTcpSyn), c.in_if, n + " first packet again");
				continue;
			}
			check(fwd(c, follow_flags(c), 8), c.in_if, n + " after the change");
			if (g_.pct(60))
				talk(c, n);
		}
	}

	// A random change of the state (SPEC §4 re-checks): PEC states,
	// firewall and VNet rules, publicNetworkAccess, NSG rules with and
	// without flushConnection, backends removed, drained and added,
	// endpoints deleted or retargeted.
	bool mutate_once(State &s)
	{
		int k = int(g_.below(kinds_));
		switch (k) {
		case 0:
		case 1: {
			if (s.privateEndpoints.empty())
				return false;
			auto &pe = g_.pick(s.privateEndpoints);
			static const char *st[] = {"Approved", "Pending", "Rejected", "Disconnected"};
			pe.connectionState.status = g_.pick(st);
			pe.connectionPresent = !(pe.connectionState.status == std::string("Disconnected") && g_.pct(50));
			return true;
		}
		case 2: {
			if (s.servers.empty())
				return false;
			auto &m = g_.pick(s.servers);
			if (!m.firewallRules.empty() && g_.pct(40)) {
				m.firewallRules.erase(m.firewallRules.begin() + long(g_.below(m.firewallRules.size())));
				return true;
			}
			uint32_t c = sample_v4();
			uint32_t lo = g_.pct(20) ? 0 : c - uint32_t(g_.below(300)), hi = lo == 0 ? 0 : c + uint32_t(g_.below(300));
			if (hi < lo)
				std::swap(lo, hi);
			m.firewallRules.push_back({"mfw" + std::to_string(names_++), Addr::from_v4(lo).str(), Addr::from_v4(hi).str()});
			return true;
		}
		case 3: {
			if (s.servers.empty())
				return false;
			auto &m = g_.pick(s.servers);
			m.publicNetworkAccess = m.publicNetworkAccess == "Disabled" ? "Enabled" : "Disabled";
			return true;
		}
		case 4:
		case 5:
		case 6: {
			if (s.networkSecurityGroups.empty())
				return false;
			auto &nsg = g_.pick(s.networkSecurityGroups);
			if (g_.pct(50))
				nsg.flushConnection = g_.pct(50);
			auto &rules = nsg.securityRules;
			int what = int(g_.below(3));
			if (what == 0 && !rules.empty()) {
				rules.erase(rules.begin() + long(g_.below(rules.size())));
			} else if (what == 1 && !rules.empty()) {
				auto &r = g_.pick(rules);
				r.access = r.access == "Allow" ? "Deny" : "Allow";
			} else {
				rules.push_back(random_rule(nsg));
			}
			return true;
		}
		case 7: {
			if (s.servers.empty())
				return false;
			auto &m = g_.pick(s.servers);
			int what = int(g_.below(3));
			if (what == 0 && !m.backends.empty()) {
				m.backends.erase(m.backends.begin() + long(g_.below(m.backends.size())));
			} else if (what == 1 && !m.backends.empty()) {
				auto &b = g_.pick(m.backends);
				b.weight = b.weight ? 0 : 1;
			} else {
				size_t si = size_t(&m - &s.servers[0]);
				std::string a = g_.pct(70) ? "192.168." + std::to_string(si) + "." + std::to_string(100 + names_ % 150)
							 : "fd99:" + std::to_string(si) + "::" + std::to_string(100 + names_ % 150);
				names_++;
				m.backends.push_back({a, 3306, int(1 + g_.below(3))});
			}
			return true;
		}
		case 8: {
			if (s.servers.empty())
				return false;
			auto &m = g_.pick(s.servers);
			if (!m.virtualNetworkRules.empty() && g_.pct(50)) {
				m.virtualNetworkRules.erase(m.virtualNetworkRules.begin() + long(g_.below(m.virtualNetworkRules.size())));
				return true;
			}
			auto &v = g_.pick(s.virtualNetworks);
			auto &sn = g_.pick(v.subnets);
			if (!sn.has_sql_endpoint())
				sn.serviceEndpoints.push_back("Microsoft.Sql");
			m.virtualNetworkRules.push_back({"mvr" + std::to_string(names_++), v.name, sn.name});
			return true;
		}
		case 9: {
			if (s.privateEndpoints.empty())
				return false;
			size_t i = g_.below(s.privateEndpoints.size());
			if (g_.pct(50) || s.servers.size() < 2)
				s.privateEndpoints.erase(s.privateEndpoints.begin() + long(i));
			else
				s.privateEndpoints[i].server = g_.pick(s.servers).name;
			return true;
		}
		case 11: {
			// Public IPs swapped
			// between servers that share backends.
			if (s.servers.size() < 2)
				return false;
			auto &a = s.servers[0], &b = s.servers[1];
			std::swap(a.publicIp, b.publicIp);
			if (!a.backends.empty())
				b.backends.push_back(a.backends[0]);
			if (!b.backends.empty())
				a.backends.push_back(b.backends[0]);
			return true;
		}
		default: {
			auto &v = g_.pick(s.virtualNetworks);
			auto &sn = g_.pick(v.subnets);
			if (g_.pct(50))
				sn.privateEndpointNetworkPolicies = sn.privateEndpointNetworkPolicies == "Enabled" ? "Disabled" : "Enabled";
			else
				sn.networkSecurityGroup = g_.pct(30) || s.networkSecurityGroups.empty() ? "" : g_.pick(s.networkSecurityGroups).name;
			return true;
		}
		}
	}

	void change()
	{
		int n = int(1 + g_.below(3)), done = 0;
		for (int tries = 0; done < n && tries < 20; tries++) {
			State s = state_;
			if (!mutate_once(s) || !validate(s))
				continue;
			state_ = std::move(s);
			done++;
		}
		auto t0 = std::chrono::steady_clock::now();
		ASSERT_TRUE(pair_.commit(state_));
		commit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
		commits++;
	}

	void advance(uint64_t ns) { pair_.advance(ns); }
	void phase(std::string p) { phase_ = std::move(p); }
	size_t open_count() const
	{
		size_t n = 0;
		for (auto &c : convs_)
			n += c.open && !c.closed;
		return n;
	}
	void forget_some()
	{
		// Keep the follow-up work per change bounded.
		if (convs_.size() > 100)
			convs_.erase(convs_.begin(), convs_.begin() + long(convs_.size() - 100));
	}

private:
	uint32_t sample_v4()
	{
		std::vector<uint32_t> v;
		for (auto &n : state_.networkInterfaces)
			if (auto a = Addr::parse(n.privateIPAddress); a && a->is_v4())
				v.push_back(a->v4());
		for (auto &c : convs_)
			if (c.v4())
				v.push_back(c.t.src.v4());
		return v.empty() ? 0x0a000001u : g_.pick(v);
	}
	std::string sample_addr()
	{
		int r = int(g_.below(100));
		if (r < 15)
			return "*";
		if (r < 30) {
			static const char *tags[] = {"VirtualNetwork", "Internet", "AzureLoadBalancer", "AzureCloud", "Sql"};
			return tags[g_.below(5)];
		}
		if (r < 60 && !convs_.empty()) {
			auto &c = g_.pick(convs_);
			return (g_.pct(50) ? c.t.src : c.t.dst).str();
		}
		auto &v = g_.pick(state_.virtualNetworks);
		if (g_.pct(50))
			return g_.pick(v.subnets).addressPrefix;
		return g_.pick(v.addressPrefixes);
	}
	SecurityRule random_rule(const NetworkSecurityGroup &nsg)
	{
		SecurityRule r;
		r.name = "mut" + std::to_string(names_++);
		r.direction = g_.pct(50) ? "Inbound" : "Outbound";
		std::set<int> used;
		for (auto &x : nsg.securityRules)
			if (x.direction == r.direction)
				used.insert(x.priority);
		do
			r.priority = 100 + int(g_.below(3997));
		while (used.count(r.priority));
		r.access = g_.pct(50) ? "Allow" : "Deny";
		static const char *protos[] = {"Tcp", "Tcp", "Udp", "*", "*", "Icmp", "Esp", "Ah"};
		r.protocol = protos[g_.below(8)];
		r.sourceAddressPrefix = sample_addr();
		r.destinationAddressPrefix = sample_addr();
		r.sourcePortRange = "*";
		static const char *ports[] = {"*", "3306", "0-1023", "443", "3000-4000", "53", "1024-65535"};
		r.destinationPortRange = ports[g_.below(7)];
		return r;
	}

	Pair &pair_;
	State state_;
	Rng g_;
	std::map<std::string, uint32_t> vnet_if_;
	std::vector<Conv> convs_;
	std::string phase_;
	uint32_t frag_id_ = 5000;
	int names_ = 0;

public:
	int kinds_ = 11;
};

struct Totals {
	int frames = 0, policies = 0, commits = 0;
	uint64_t fast = 0, fast_dpdk = 0; // frames the established-flow fast path forwarded
	double setup_s = 0, commit_s = 0;
	std::map<std::string, int> tally;
};

// One random policy: batches of new conversations, each batch followed by a
#ifdef LG_WITH_DPDK
// One program on two hosts: after a policy's whole run, XDP's and
// linkgate-dpdk's flow tables agree flow by flow, each direction's packet
// and byte counts included, and so do their flow-log records (SPEC §6), key
// by key.
void same_flows_and_records(Pair &pair)
{
	auto key = [](const lg_flow_key &k) { return std::string(reinterpret_cast<const char *>(&k), sizeof k); };
	using Flows = std::map<std::string, std::array<uint64_t, 6>>;
	auto flows = [&](const std::vector<lg_flow_sample> &all) {
		Flows out;
		for (const lg_flow_sample &f : all)
			out[key(f.e.orig)] = {f.e.packets, f.e.bytes, f.reply_packets, f.reply_bytes, f.e.state, f.e.kind};
		return out;
	};
	using Records = std::map<std::string, std::array<uint64_t, 4>>;
	auto records = [&](const std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> &all) {
		Records out;
		for (auto &[k, v] : all)
			out[key(k)] = {v.kind, v.reason, v.counter, v.egress_ifindex};
		return out;
	};
	Flows fx = flows(pair.dp().flow_samples()), fd = flows(pair.dpdk().flow_samples());
	EXPECT_EQ(fx.size(), fd.size());
	EXPECT_TRUE(fx == fd) << "the flow tables (counts included) differ";
	Records rx = records(pair.dp().drain_flowlog()), rd = records(pair.dpdk().drain_flowlog());
	pair.dpdk().quiescent(0); // as after every frame: the drain's deletes are reclaimed
	EXPECT_EQ(rx.size(), rd.size());
	EXPECT_TRUE(rx == rd) << "the flow-log records differ";
}
#endif

// policy change and the conversations going on, sometimes after time passed.
void one_policy(uint64_t seed, int batches, int per_batch, Totals &tot, int kinds = 11)
{
	testing::RandomPolicy rp = testing::random_policy(seed);
	ASSERT_TRUE(xdptest::enter_netns());
	if (seed % 2 == 0) {
		// Resolved gateways (forward) instead of on-link routes without
		// neighbours (to the host, translated).
		std::set<std::pair<uint32_t, bool>> gws;
		for (auto &r : rp.host.routes) {
			uint8_t x = uint8_t(r.ifindex);
			Addr gw = r.prefix.is_v4() ? Addr::from_v4(0x64400000u | x) : *Addr::parse("fd99::1");
			if (!r.prefix.is_v4())
				gw.b[15] = x;
			r.gateway = gw;
			if (gws.insert({r.ifindex, r.prefix.is_v4()}).second)
				rp.host.neighbors.push_back({r.ifindex, gw, Mac{0x02, 0x99, 0, 0, 0, x}});
		}
	}
	auto t0 = std::chrono::steady_clock::now();
	std::map<uint32_t, uint32_t> m;
	HostConfig h = xdptest::realize(rp.host, &m);
	ASSERT_FALSE(::testing::Test::HasFailure());
	auto pair = Pair::make(h, {}, &rp.state);
	ASSERT_TRUE(pair);
	tot.setup_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	Run run(*pair, rp, seed);
#ifdef LG_WITH_DPDK
	uint64_t fast_dpdk0 = lg_host_fast_packets();
#endif
	run.kinds_ = kinds;
	testing::TupleGen gen(rp, seed);
	Rng g(seed ^ 0xabcdef);
	for (int b = 0; b < batches && !::testing::Test::HasFailure(); b++) {
		run.phase("");
		for (int i = 0; i < per_batch && !::testing::Test::HasFailure(); i++)
			run.start(gen);
		run.change();
		if (g.pct(20))
			run.advance(31 * kSec); // UDP, ICMP, opening TCP and fragments expire
		else if (g.pct(5))
			run.advance(241 * kSec); // everything expires
		else
			run.advance(kSec);
		run.phase("after-change ");
		run.resume();
		run.forget_some();
	}
	tot.frames += run.frames;
	tot.fast += pair->dp().fast_packets();
#ifdef LG_WITH_DPDK
	tot.fast_dpdk += lg_host_fast_packets() - fast_dpdk0;
	same_flows_and_records(*pair);
#endif
	tot.commits += run.commits;
	tot.commit_s += run.commit_s;
	tot.policies++;
	for (auto &[k, n] : run.tally)
		tot.tally[k] += n;
}

std::string summary(const std::map<std::string, int> &t)
{
	std::string s;
	for (auto &[k, n] : t)
		s += k + "=" + std::to_string(n) + "\n  ";
	return s;
}

TEST(XdpDifferential, ConversationsAcrossPolicyChanges)
{
	ASSERT_EQ(geteuid(), 0u) << "the XDP tests need root (CI runs as root)";
	auto t0 = std::chrono::steady_clock::now();
	Totals tot;
	constexpr uint64_t kPolicies = 52;
	// Kind 11 moves a public IP to another server that shares the flow's
	// backend: the flow must be cut (servers have stable ids across
	// generations, lg_server::uid).
	int kinds = 12;
	// LG_XDP_SEED_BASE=N runs seeds N+1..N+52 instead (soak runs).
	const char *base_env = std::getenv("LG_XDP_SEED_BASE");
	uint64_t base = base_env ? std::strtoull(base_env, nullptr, 10) : 0;
	for (uint64_t seed = base + 1; seed <= base + kPolicies && !::testing::Test::HasFailure(); seed++) {
		SCOPED_TRACE("random_policy(" + std::to_string(seed) + ")");
		one_policy(seed, 3, 115, tot, kinds);
	}
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	std::printf("differential: %d frames, %d random policies, %d policy changes, %.1f s (namespaces and loads %.1f s, "
		    "publishes %.1f s), %llu by the XDP fast path, %llu by the DPDK one\n  %s\n",
		    tot.frames, tot.policies, tot.commits, secs, tot.setup_s, tot.commit_s, (unsigned long long)tot.fast,
		    (unsigned long long)tot.fast_dpdk, summary(tot.tally).c_str());
	RecordProperty("frames", tot.frames);
	RecordProperty("policies", tot.policies);
	EXPECT_GE(tot.frames, 100000);
	EXPECT_GE(tot.policies, 50);
	// Frames of established flows take the fast path (lg_fast) and are held
	// to the evaluator like the rest.
	EXPECT_GE(tot.fast, 1000u);
#ifdef LG_WITH_DPDK
	EXPECT_GE(tot.fast_dpdk, 1000u);
#endif
	// The interesting outcomes all happen, on new packets and on flows cut
	// by a change.
	for (const char *r : {"forward/none", "pass/none", "drop/nsg-deny", "drop/nsg-default-deny", "drop/pec-pending",
			      "drop/pec-rejected", "drop/pec-disconnected", "drop/pe-port", "drop/public-access-disabled",
			      "drop/firewall-no-match", "drop/vnet-rule-no-match", "drop/no-backend", "drop/ct-invalid",
			      "drop/fragment-no-first", "drop/ttl-exceeded", "after-change drop/pec-rejected",
			      "after-change drop/no-backend", "after-change drop/nsg-deny", "after-change forward/none",
			      "after-change drop/public-access-disabled"})
		EXPECT_GT(tot.tally[r], 0) << r;
}

} // namespace
} // namespace lg
