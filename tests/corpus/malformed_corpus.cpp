#include "malformed_corpus.hpp"

#include <random>

#include "policy_helpers.hpp"
#include "seed_fixture.hpp"

namespace lg::corpus {
namespace {

using namespace seed_fixture;

// Addresses of policy(): a client, private endpoints, the Internet.
const char *kC4 = "10.1.1.10", *kPe4 = "10.1.1.100", *kNet4 = "8.8.8.8";
const char *kC6 = "fd00:1:0:1::10", *kPe6 = "fd00:1:0:1::100", *kNet6 = "2001:db8::1";

// Builds the frames; fresh source ports and fragment ids keep cases apart.
struct Gen {
	uint16_t port = 20000;
	uint32_t frag = 100;
	uint16_t sp() { return port++; }
	uint32_t fid() { return frag++; }
	PacketBuilder c() const { return PacketBuilder().eth(kClientMac, kClientIfMac); }
	PacketBuilder b() const { return PacketBuilder().eth(kBackendMac, kBackendIfMac); }
	std::vector<uint8_t> pay(size_t n, uint8_t v = 0x5a) const { return std::vector<uint8_t>(n, v); }
	std::vector<uint8_t> syn4(const char *dst, uint16_t dport = 3306) { return c().ipv4(kC4, dst).tcp(sp(), dport, kTcpSyn).payload(pay(12)).build(); }
	std::vector<uint8_t> syn6(const char *dst, uint16_t dport = 3306) { return c().ipv6(kC6, dst).tcp(sp(), dport, kTcpSyn).payload(pay(12)).build(); }
};

Step step(std::vector<uint8_t> f, std::string what, std::optional<lg_verdict> v = {}, std::optional<lg_reason> r = {},
	  uint32_t ifindex = kClientIf)
{
	Step s;
	s.frame = std::move(f);
	s.ifindex = ifindex;
	s.verdict = v;
	s.reason = r;
	s.never_forward = v == LG_VERDICT_DROP;
	s.what = std::move(what);
	return s;
}

Step bad(std::vector<uint8_t> f, lg_reason r, std::string what = "") { return step(std::move(f), std::move(what), LG_VERDICT_DROP, r); }
Step fwd(std::vector<uint8_t> f, std::string what = "", uint32_t ifindex = kClientIf)
{
	return step(std::move(f), std::move(what), LG_VERDICT_FORWARD, LG_REASON_NONE, ifindex);
}

Case one(std::string name, Step s) { return {std::move(name), {std::move(s)}}; }

// Recompute the IPv4 header checksum after a header edit (not needed for the
// decision, but keeps the frame otherwise well-formed).
void fix_ipv4_csum(std::vector<uint8_t> &f, size_t l3)
{
	size_t ihl = size_t(f[l3] & 0xf) * 4;
	if (ihl < 20 || l3 + ihl > f.size())
		return;
	f[l3 + 10] = f[l3 + 11] = 0;
	wr16(f, l3 + 10, inet_checksum(std::span(f).subspan(l3, ihl)));
}

size_t l3_of(const std::vector<uint8_t> &f)
{
	Parsed p;
	parse_frame(f, p);
	return p.l3;
}

std::vector<Case> valid(Gen &g)
{
	std::vector<Case> v;
	auto add = [&](const char *name, std::vector<uint8_t> f, lg_verdict verdict = LG_VERDICT_FORWARD,
		       uint32_t ifindex = kClientIf) {
		v.push_back(one(name, step(std::move(f), "valid", verdict, LG_REASON_NONE, ifindex)));
	};
	add("v4-tcp-syn-pe", g.syn4(kPe4));
	add("v4-tcp-syn-pe-vlan", g.c().vlan(kEthVlan, 5).ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(8)).build());
	add("v4-tcp-syn-pe-2vlan", g.c().vlan(kEthQinQ, 7).vlan(kEthVlan, 8).ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build());
	add("v4-tcp-syn-options", g.c().ipv4(kC4, kPe4).ipv4_options({0x94, 4, 0, 0, 1, 1, 1, 0}).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(4)).build());
	add("v4-tcp-syn-internet", g.syn4(kNet4, 443));
	add("v4-udp-internet", g.c().ipv4(kC4, kNet4).udp(g.sp(), 53).payload("query").build());
	add("v4-udp-internet-2vlan-options", g.c().vlan(kEthQinQ, 1).vlan(kEthVlan, 2).ipv4(kC4, kNet4).ipv4_options({7, 7, 4, 0, 0, 0, 0}).udp(g.sp(), 53).payload("q").build());
	add("v4-icmp-echo", g.c().ipv4(kC4, kNet4).icmp(8, 0, g.sp(), 1).payload(g.pay(16)).build());
	{
		auto inner = g.b().ipv4(kNet4, kC4).udp(53, g.sp()).payload("answer").build();
		add("v4-icmp-error", g.c().ipv4(kC4, kNet4).icmp_error(3, 3, inner).build());
	}
	add("v4-first-fragment-udp", g.c().ipv4(kC4, kNet4).ipv4_fragment(uint16_t(g.fid()), 0, true).udp(g.sp(), 53).payload(g.pay(32)).build());
	add("v4-esp", g.c().ipv4(kC4, kNet4).raw_l4(kProtoEsp, g.pay(16, 1)).build());
	add("v4-public-endpoint", g.b().ipv4("198.51.100.7", "20.10.1.5").tcp(g.sp(), 3306, kTcpSyn).build(),
	    LG_VERDICT_FORWARD, kBackendIf);
	add("v6-tcp-syn-pe", g.syn6(kPe6));
	add("v6-tcp-syn-pe-ext", g.c().ipv6(kC6, kPe6).ipv6_ext(0, {1, 2, 0, 0}).ipv6_ext(43, {0, 0, 0, 0, 0, 0}).ipv6_ext(60).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(8)).build());
	add("v6-udp-internet-vlan", g.c().vlan(kEthVlan, 9).ipv6(kC6, kNet6).udp(g.sp(), 53).payload("query").build());
	add("v6-icmp-echo", g.c().ipv6(kC6, kNet6).icmp(128, 0, g.sp(), 1).payload(g.pay(8)).build());
	{
		auto inner = g.b().ipv6(kNet6, kC6).udp(53, g.sp()).payload("x").build();
		add("v6-icmp-error", g.c().ipv6(kC6, kNet6).icmp_error(1, 4, inner, 56).build());
	}
	add("v6-first-fragment-tcp", g.c().ipv6(kC6, kPe6).ipv6_fragment(g.fid(), 0, true).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(32)).build());
	add("v6-hbh-ah", g.c().ipv6(kC6, kNet6).ipv6_ext(0).raw_l4(kProtoAh, g.pay(16, 2)).build());
	add("arp-for-pe", g.c().arp_request(kClientMac, kC4, kPe4).build(), LG_VERDICT_TX);
	return v;
}

// Every prefix of every valid frame, 0 bytes to all of them.
void truncations(Gen &g, std::vector<Case> &out)
{
	for (auto &c : valid(g)) {
		const auto &full = c.steps[0].frame;
		Parsed p;
		parse_frame(full, p);
		bool arp = p.family == 0;
		// ARP needs its 28 bytes; IP the whole datagram (the rest is padding).
		size_t need = arp ? p.l3 + 28 : p.l3_end;
		Case t{"truncated/" + c.name, {}};
		for (size_t cut = 0; cut <= full.size(); cut++) {
			std::vector<uint8_t> f(full.begin(), full.begin() + long(cut));
			std::string what = "cut at " + std::to_string(cut) + " of " + std::to_string(full.size());
			if (cut >= need)
				t.steps.push_back(step(std::move(f), what + " (padding only)", c.steps[0].verdict, LG_REASON_NONE,
						       c.steps[0].ifindex));
			else if (cut < 14 || !arp)
				t.steps.push_back(bad(std::move(f), LG_REASON_MALFORMED, what));
			else // a short ARP is not answered: the host's
				t.steps.push_back(step(std::move(f), what, LG_VERDICT_PASS, LG_REASON_NONE));
			t.steps.back().ifindex = c.steps[0].ifindex;
		}
		out.push_back(std::move(t));
	}
}

void ipv4_headers(Gen &g, std::vector<Case> &out)
{
	for (int ihl = 0; ihl < 5; ihl++) {
		auto f = g.syn4(kPe4);
		size_t l3 = l3_of(f);
		f[l3] = uint8_t(0x40 | ihl);
		out.push_back(one("ipv4/ihl-" + std::to_string(ihl), bad(f, LG_REASON_MALFORMED)));
	}
	{
		auto f = g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build(); // 54 bytes, padded to 60
		f[l3_of(f)] = 0x4f; // 60-byte header: beyond the frame
		out.push_back(one("ipv4/ihl-beyond-frame", bad(f, LG_REASON_MALFORMED)));
		auto h = g.syn4(kPe4);
		size_t l3 = l3_of(h);
		h[l3] = 0x46;
		wr16(h, l3 + 2, 20); // total length below the header length
		out.push_back(one("ipv4/ihl-beyond-total-length", bad(h, LG_REASON_MALFORMED)));
		auto k = g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build();
		l3 = l3_of(k);
		k[l3] = 0x47; // 28-byte header eats the TCP header
		fix_ipv4_csum(k, l3);
		out.push_back(one("ipv4/ihl-leaves-no-tcp-header", bad(k, LG_REASON_MALFORMED)));
	}
	auto totlen = [&](const char *name, uint16_t tot, std::optional<lg_reason> r) {
		auto f = g.syn4(kPe4); // 20 + 20 + 12 bytes of datagram
		size_t l3 = l3_of(f);
		wr16(f, l3 + 2, tot);
		fix_ipv4_csum(f, l3);
		out.push_back(one(std::string("ipv4/total-length-") + name,
				  r ? bad(f, *r) : fwd(f, "the rest is padding")));
	};
	totlen("0", 0, LG_REASON_MALFORMED);
	totlen("19", 19, LG_REASON_MALFORMED);
	totlen("20-no-l4", 20, LG_REASON_MALFORMED);
	totlen("39-short-tcp", 39, LG_REASON_MALFORMED);
	totlen("40-no-payload", 40, std::nullopt);
	totlen("53-one-beyond", 53, LG_REASON_MALFORMED);
	totlen("65535", 65535, LG_REASON_MALFORMED);
	{
		auto f = g.c().ipv4(kC4, kNet4).udp(g.sp(), 53).payload("q").build();
		size_t l3 = l3_of(f);
		wr16(f, l3 + 2, 27); // 7 bytes of UDP
		fix_ipv4_csum(f, l3);
		out.push_back(one("ipv4/udp-header-cut-by-total-length", bad(f, LG_REASON_MALFORMED)));
	}
	for (uint8_t ver : {0, 5, 6, 15}) {
		auto f = g.syn4(kPe4);
		size_t l3 = l3_of(f);
		f[l3] = uint8_t(ver << 4 | 5);
		out.push_back(one("ipv4/version-" + std::to_string(ver), bad(f, LG_REASON_MALFORMED)));
	}
	out.push_back(one("ipv4/protocol-0", bad(g.c().ipv4(kC4, kNet4).raw_l4(0, g.pay(8)).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv4/protocol-0-empty", bad(g.c().ipv4(kC4, kNet4).raw_l4(0, {}).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv4/protocol-255", fwd(g.c().ipv4(kC4, kNet4).raw_l4(255, g.pay(8)).build(), "no flow, routed")));
	for (uint8_t ttl : {0, 1})
		out.push_back(one("ipv4/ttl-" + std::to_string(ttl),
				  bad(g.c().ipv4(kC4, kNet4, ttl).udp(g.sp(), 53).build(), LG_REASON_TTL_EXCEEDED)));
	{
		auto f = g.syn4(kPe4);
		size_t l3 = l3_of(f);
		f[l3 + 10] ^= 0xff; // checksums are not verified (docs/decisions.md)
		out.push_back(one("ipv4/bad-header-checksum-forwarded", fwd(f)));
	}
	// IPv4 options (docs/decisions.md): a source route is refused, an option
	// that runs past the header is malformed, the rest is forwarded.
	auto opt = [&](const char *name, std::vector<uint8_t> o, std::optional<lg_reason> r, const char *dst = kPe4) {
		auto f = dst == kPe4 ? g.c().ipv4(kC4, kPe4).ipv4_options(std::move(o)).tcp(g.sp(), 3306, kTcpSyn).build()
				     : g.c().ipv4(kC4, dst).ipv4_options(std::move(o)).udp(g.sp(), 53).payload("q").build();
		out.push_back(one(std::string("ipv4/options-") + name, r ? bad(f, *r) : fwd(f)));
	};
	opt("lsrr", {0x83, 7, 4, 10, 9, 9, 9}, LG_REASON_IP_SOURCE_ROUTE);
	opt("ssrr-after-nop", {1, 0x89, 7, 4, 10, 9, 9, 9}, LG_REASON_IP_SOURCE_ROUTE);
	opt("lsrr-routed-udp", {0x83, 11, 4, 10, 9, 9, 9, 10, 9, 9, 8}, LG_REASON_IP_SOURCE_ROUTE, kNet4);
	opt("lsrr-after-record-route", {7, 7, 4, 0, 0, 0, 0, 0x83, 3, 4}, LG_REASON_IP_SOURCE_ROUTE, kNet4);
	opt("lsrr-after-end-of-list", {0, 0x83, 7, 4, 10, 9, 9, 9}, std::nullopt);
	opt("40-bytes-of-nop", std::vector<uint8_t>(40, 1), std::nullopt, kNet4);
	opt("record-route-40-bytes", [] { std::vector<uint8_t> o(40, 0); o[0] = 7; o[1] = 39; o[2] = 4; return o; }(), std::nullopt, kNet4);
	opt("timestamp-past-the-header", {0x44, 12, 5, 0}, LG_REASON_MALFORMED);
	opt("length-0", {0x94, 0, 0, 0}, LG_REASON_MALFORMED, kNet4);
	opt("length-1", {7, 1, 0, 0}, LG_REASON_MALFORMED);
	opt("no-room-for-the-length", {1, 1, 1, 7}, LG_REASON_MALFORMED, kNet4);
	{
		uint32_t id = g.fid();
		uint16_t sp = g.sp();
		auto frag = [&](uint16_t off, bool more) { return g.c().ipv4(kC4, kNet4).ipv4_fragment(uint16_t(id), off, more); };
		out.push_back({"ipv4/options-lsrr-in-a-later-fragment",
			       {fwd(frag(0, true).udp(sp, 53).payload(g.pay(32)).build(), "the first"),
				bad(frag(40, false).ipv4_options({0x83, 7, 4, 10, 9, 9, 9}).raw_l4(kProtoUdp, g.pay(16)).build(),
				    LG_REASON_IP_SOURCE_ROUTE, "a source route is copied into every fragment")}});
	}
	// L4 headers shorter than their minimum.
	out.push_back(one("ipv4/tcp-4-bytes", bad(g.c().ipv4(kC4, kPe4).raw_l4(kProtoTcp, {1, 2, 3, 4}).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv4/tcp-19-bytes", bad(g.c().ipv4(kC4, kPe4).raw_l4(kProtoTcp, g.pay(19)).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv4/udp-7-bytes", bad(g.c().ipv4(kC4, kNet4).raw_l4(kProtoUdp, g.pay(7)).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv4/icmp-4-bytes", bad(g.c().ipv4(kC4, kNet4).raw_l4(kProtoIcmp, {8, 0, 0, 0}).build(), LG_REASON_MALFORMED)));
	// IPv4-mapped addresses in IPv6 headers (the tables hold IPv4 that way:
	// one would match IPv4 endpoints, ranges and prefixes).
	out.push_back(one("ipv6/mapped-source",
			  bad(g.c().ipv6("::ffff:10.1.1.10", kNet6).udp(g.sp(), 53).payload("q").build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv6/mapped-destination-private-endpoint",
			  bad(g.c().ipv6(kC6, "::ffff:10.1.1.100").tcp(g.sp(), 3306, kTcpSyn).build(), LG_REASON_MALFORMED)));
	out.push_back(one("ipv6/mapped-source-to-public-endpoint",
			  step(g.b().ipv6("::ffff:198.51.100.7", "2001:db8::5").tcp(g.sp(), 3306, kTcpSyn).build(), "",
			       LG_VERDICT_DROP, LG_REASON_MALFORMED, kBackendIf)));
	out.push_back(one("ipv6/icmp6-7-bytes", bad(g.c().ipv6(kC6, kNet6).raw_l4(kProtoIcmp6, {128, 0, 0, 0, 0, 0, 0}).build(), LG_REASON_MALFORMED)));
}

void tcp_headers(Gen &g, std::vector<Case> &out)
{
	for (int doff = 0; doff < 5; doff++) {
		auto f = g.syn4(kPe4);
		Parsed p;
		parse_frame(f, p);
		f[p.l4 + 12] = uint8_t(doff << 4);
		out.push_back(one("tcp/data-offset-" + std::to_string(doff), bad(f, LG_REASON_MALFORMED)));
		auto h = g.syn6(kPe6);
		parse_frame(h, p);
		h[p.l4 + 12] = uint8_t(doff << 4);
		out.push_back(one("tcp6/data-offset-" + std::to_string(doff), bad(h, LG_REASON_MALFORMED)));
	}
	{
		auto f = g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(8)).build();
		Parsed p;
		parse_frame(f, p);
		f[p.l4 + 12] = 0xf0; // 60 bytes of TCP header, 28 there
		out.push_back(one("tcp/data-offset-beyond-datagram", bad(f, LG_REASON_MALFORMED)));
		auto o = g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).payload(std::vector<uint8_t>{2, 4, 5, 0xb4}).build();
		parse_frame(o, p);
		o[p.l4 + 12] = 0x60; // the 4 payload bytes are an MSS option
		out.push_back(one("tcp/data-offset-6-with-option", fwd(o)));
	}
	// Without a lone SYN and without a flow: ct-invalid (SPEC §3 step 3).
	const std::pair<const char *, uint8_t> flags[] = {
		{"ack", kTcpAck}, {"psh-ack", kTcpPsh | kTcpAck}, {"fin", kTcpFin}, {"fin-ack", kTcpFin | kTcpAck},
		{"rst", kTcpRst}, {"rst-ack", kTcpRst | kTcpAck}, {"syn-ack", kTcpSyn | kTcpAck},
		{"syn-fin", kTcpSyn | kTcpFin}, {"syn-rst", kTcpSyn | kTcpRst}, {"none", 0}, {"all", 0xff}, {"urg", 0x20}};
	for (auto [name, fl] : flags) {
		out.push_back(one(std::string("tcp/no-syn-") + name,
				  bad(g.c().ipv4(kC4, kNet4).tcp(g.sp(), 443, fl).build(), LG_REASON_CT_INVALID)));
		out.push_back(one(std::string("tcp6/no-syn-") + name,
				  bad(g.c().ipv6(kC6, kNet6).tcp(g.sp(), 443, fl).build(), LG_REASON_CT_INVALID)));
		out.push_back(one(std::string("tcp/no-syn-to-pe-") + name,
				  bad(g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, fl).build(), LG_REASON_CT_INVALID)));
	}
	// SYN with ECN bits (ECE, CWR) is still a lone SYN.
	out.push_back(one("tcp/syn-ece-cwr", fwd(g.c().ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn | 0xc0).build())));
}

void ipv6_headers(Gen &g, std::vector<Case> &out)
{
	auto plen = [&](const char *name, uint16_t v, std::optional<lg_reason> r) {
		auto f = g.syn6(kPe6); // 20 + 12 bytes of payload
		wr16(f, l3_of(f) + 4, v);
		out.push_back(one(std::string("ipv6/payload-length-") + name, r ? bad(f, *r) : fwd(f, "the rest is padding")));
	};
	plen("0-jumbo", 0, LG_REASON_MALFORMED);
	plen("1", 1, LG_REASON_MALFORMED);
	plen("19-short-tcp", 19, LG_REASON_MALFORMED);
	plen("20-no-payload", 20, std::nullopt);
	plen("33-one-beyond", 33, LG_REASON_MALFORMED);
	plen("65535", 65535, LG_REASON_MALFORMED);
	for (uint8_t ver : {0, 4, 7}) {
		auto f = g.syn6(kPe6);
		size_t l3 = l3_of(f);
		f[l3] = uint8_t(ver << 4);
		out.push_back(one("ipv6/version-" + std::to_string(ver), bad(f, LG_REASON_MALFORMED)));
	}
	for (uint8_t hl : {0, 1})
		out.push_back(one("ipv6/hop-limit-" + std::to_string(hl),
				  bad(g.c().ipv6(kC6, kNet6, hl).udp(g.sp(), 53).build(), LG_REASON_TTL_EXCEEDED)));

	// Extension chains: at most 8 headers (SPEC §3 step 1).
	auto chain = [&](int n, uint8_t type) {
		PacketBuilder b = g.c().ipv6(kC6, kPe6);
		for (int i = 0; i < n; i++)
			b.ipv6_ext(type);
		return b.tcp(g.sp(), 3306, kTcpSyn).build();
	};
	out.push_back(one("ipv6/chain-8-destopts", fwd(chain(8, 60))));
	out.push_back(one("ipv6/chain-9-destopts", bad(chain(9, 60), LG_REASON_IPV6_EXT_CHAIN)));
	out.push_back(one("ipv6/chain-20-destopts", bad(chain(20, 60), LG_REASON_IPV6_EXT_CHAIN)));
	out.push_back(one("ipv6/chain-9-routing", bad(chain(9, 43), LG_REASON_IPV6_EXT_CHAIN)));
	// A Routing header is walked when it is spent (segments left 0); with
	// segments left the destination is only the next hop: refused.
	for (uint8_t type : {0, 2, 4})
		for (uint8_t left : {0, 1, 255}) {
			std::vector<uint8_t> body{type, left, 0, 0, 0, 0};
			body.resize(type == 2 || type == 4 ? 22 : 6); // an address's room for the types that carry one
			auto f = g.c().ipv6(kC6, kPe6).ipv6_ext(43, body).tcp(g.sp(), 3306, kTcpSyn).build();
			out.push_back(one("ipv6/routing-type-" + std::to_string(type) + "-left-" + std::to_string(left),
					  left ? bad(f, LG_REASON_IPV6_EXT_CHAIN) : fwd(f)));
		}
	{
		PacketBuilder b = g.c().ipv6(kC6, kPe6).ipv6_ext(0);
		for (uint8_t t : {43, 60, 135, 139, 140, 60})
			b.ipv6_ext(t);
		b.ipv6_ext(60, std::vector<uint8_t>(1022, 1)); // 1 KiB header, the 8th
		out.push_back(one("ipv6/chain-8-mixed-long", fwd(b.tcp(g.sp(), 3306, kTcpSyn).build())));
	}
	{
		PacketBuilder b = g.c().ipv6(kC6, kPe6).ipv6_ext(0);
		for (int i = 0; i < 8; i++)
			b.ipv6_ext(i % 2 ? 135 : 140);
		out.push_back(one("ipv6/chain-9-hbh-mobility-shim6", bad(b.tcp(g.sp(), 3306, kTcpSyn).build(), LG_REASON_IPV6_EXT_CHAIN)));
	}
	out.push_back(one("ipv6/hbh-second", bad(g.c().ipv6(kC6, kPe6).ipv6_ext(60).ipv6_ext(0).tcp(g.sp(), 3306, kTcpSyn).build(),
						 LG_REASON_IPV6_EXT_CHAIN)));
	out.push_back(one("ipv6/hbh-twice", bad(g.c().ipv6(kC6, kPe6).ipv6_ext(0).ipv6_ext(0).tcp(g.sp(), 3306, kTcpSyn).build(),
						LG_REASON_IPV6_EXT_CHAIN)));
	{
		PacketBuilder b = g.c().ipv6(kC6, kPe6);
		for (int i = 0; i < 7; i++)
			b.ipv6_ext(60);
		out.push_back(one("ipv6/hbh-last-of-8", bad(b.ipv6_ext(0).tcp(g.sp(), 3306, kTcpSyn).build(), LG_REASON_IPV6_EXT_CHAIN)));
	}
	out.push_back(one("ipv6/two-fragment-headers",
			  bad(g.c().ipv6(kC6, kPe6).ipv6_fragment(g.fid(), 0, true).ipv6_fragment(g.fid(), 0, true).tcp(g.sp(), 3306, kTcpSyn).payload(g.pay(16)).build(),
			      LG_REASON_IPV6_EXT_CHAIN)));
	out.push_back(one("ipv6/two-atomic-fragment-headers",
			  bad(g.c().ipv6(kC6, kPe6).ipv6_fragment(g.fid(), 0, false).ipv6_fragment(g.fid(), 0, false).tcp(g.sp(), 3306, kTcpSyn).build(),
			      LG_REASON_IPV6_EXT_CHAIN)));
	{
		auto f = g.c().ipv6(kC6, kPe6).ipv6_ext(60).tcp(g.sp(), 3306, kTcpSyn).build();
		f[l3_of(f) + 41] = 200; // (200 + 1) * 8 bytes claimed
		out.push_back(one("ipv6/ext-length-beyond-packet", bad(f, LG_REASON_MALFORMED)));
		auto h = g.c().ipv6(kC6, kPe6).ipv6_ext(60).tcp(g.sp(), 3306, kTcpSyn).build();
		h[l3_of(h) + 41] = 3; // 32 bytes: eats the TCP header and more
		out.push_back(one("ipv6/ext-length-eats-l4", bad(h, LG_REASON_MALFORMED)));
		auto e = g.c().ipv6(kC6, kPe6).ipv6_ext(60).raw_l4(kProtoTcp, {}).build();
		out.push_back(one("ipv6/ext-then-nothing", bad(e, LG_REASON_MALFORMED)));
		auto s = g.c().ipv6(kC6, kPe6).raw_l4(60, {6, 0, 0, 0}).build(); // 4 bytes of an 8-byte header
		out.push_back(one("ipv6/ext-header-cut", bad(s, LG_REASON_MALFORMED)));
	}
	out.push_back(one("ipv6/no-next-header-59", fwd(g.c().ipv6(kC6, kNet6).raw_l4(59, g.pay(8)).build(), "no flow, routed")));
	out.push_back(one("ipv6/esp-after-destopts", fwd(g.c().ipv6(kC6, kNet6).ipv6_ext(60).raw_l4(kProtoEsp, g.pay(16)).build())));
	out.push_back(one("ipv6/atomic-fragment-is-whole",
			  fwd(g.c().ipv6(kC6, kPe6).ipv6_fragment(g.fid(), 0, false).tcp(g.sp(), 3306, kTcpSyn).build())));
}

void vlans(Gen &g, std::vector<Case> &out)
{
	const uint16_t kinds[][4] = {{kEthVlan, kEthVlan, kEthVlan, 0}, {kEthQinQ, kEthVlan, kEthVlan, 0},
				     {kEthQinQ, kEthQinQ, kEthQinQ, 0}, {kEthQinQ, kEthVlan, kEthVlan, kEthVlan},
				     {kEthVlan, kEthVlan, kEthVlan, kEthVlan}};
	int i = 0;
	for (auto &k : kinds) {
		PacketBuilder b = g.c();
		int n = 0;
		for (uint16_t t : k)
			if (t) {
				b.vlan(t, uint16_t(10 + n));
				n++;
			}
		std::string name = "vlan/" + std::to_string(n) + "-tags-" + std::to_string(i++);
		out.push_back(one(name + "-ipv4", bad(b.ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build(), LG_REASON_VLAN_DEPTH)));
		out.push_back(one(name + "-ipv6", bad(b.ipv6(kC6, kPe6).tcp(g.sp(), 3306, kTcpSyn).build(), LG_REASON_VLAN_DEPTH)));
	}
	{
		PacketBuilder b = g.c().vlan(kEthVlan, 1).vlan(kEthVlan, 2).vlan(kEthVlan, 3);
		out.push_back(one("vlan/3-tags-arp", bad(b.arp_request(kClientMac, kC4, kPe4).build(), LG_REASON_VLAN_DEPTH)));
		// Only the third tag's TPID is there.
		auto f = g.c().vlan(kEthVlan, 1).vlan(kEthVlan, 2).ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build();
		f.resize(22);
		f[20] = 0x81;
		f[21] = 0x00;
		out.push_back(one("vlan/3rd-tag-truncated", bad(f, LG_REASON_VLAN_DEPTH)));
	}
	{
		auto f = g.c().vlan(kEthVlan, 1).vlan(kEthVlan, 2).ipv4(kC4, kPe4).tcp(g.sp(), 3306, kTcpSyn).build();
		f[20] = 0x88; // unknown ethertype after two tags: not IP, the host's
		f[21] = 0xb5;
		out.push_back(one("vlan/2-tags-unknown-ethertype", step(f, "", LG_VERDICT_PASS, LG_REASON_NONE)));
	}
}

void fragments(Gen &g, std::vector<Case> &out)
{
	auto pay = g.pay(32);
	auto v4 = [&](uint32_t id, uint16_t off, bool more, const char *dst = kNet4) {
		return g.c().ipv4(kC4, dst).ipv4_fragment(uint16_t(id), off, more);
	};
	auto v6 = [&](uint32_t id, uint16_t off, bool more, const char *dst = kPe6) {
		return g.c().ipv6(kC6, dst).ipv6_fragment(id, off, more);
	};
	{
		uint32_t id = g.fid();
		uint16_t sp = g.sp();
		out.push_back({"frag4/out-of-order",
			       {bad(v4(id, 40, false).raw_l4(kProtoUdp, g.pay(24)).build(), LG_REASON_FRAGMENT_NO_FIRST, "later before the first"),
				fwd(v4(id, 0, true).udp(sp, 53).payload(pay).build(), "the first"),
				fwd(v4(id, 40, false).raw_l4(kProtoUdp, g.pay(24)).build(), "the later again")}});
	}
	{
		uint32_t id = g.fid();
		out.push_back({"frag4/overlap",
			       {fwd(v4(id, 0, true).udp(g.sp(), 53).payload(pay).build(), "first: 40 bytes of UDP"),
				bad(v4(id, 8, true).raw_l4(kProtoUdp, g.pay(24)).build(), LG_REASON_FRAGMENT_OVERLAP, "over the payload"),
				bad(v4(id, 32, true).raw_l4(kProtoUdp, g.pay(24)).build(), LG_REASON_FRAGMENT_OVERLAP, "last 8 bytes"),
				fwd(v4(id, 40, true).raw_l4(kProtoUdp, g.pay(16)).build(), "right after"),
				fwd(v4(id, 56, false).raw_l4(kProtoUdp, g.pay(16)).build(), "the last")}});
	}
	{
		uint32_t id = g.fid();
		out.push_back({"frag4/overlap-tcp-to-pe",
			       {fwd(v4(id, 0, true, kPe4).tcp(g.sp(), 3306, kTcpSyn).payload(pay).build(), "first, DNAT"),
				bad(v4(id, 16, true, kPe4).raw_l4(kProtoTcp, g.pay(24)).build(), LG_REASON_FRAGMENT_OVERLAP, "rewrites the ports"),
				fwd(v4(id, 56, false, kPe4).raw_l4(kProtoTcp, g.pay(8)).build(), "later, DNAT of L3 only")}});
	}
	{
		uint32_t id = g.fid();
		out.push_back({"frag4/tiny-first-tcp",
			       {bad(v4(id, 0, true, kPe4).raw_l4(kProtoTcp, g.pay(8)).build(), LG_REASON_MALFORMED, "8 bytes of TCP"),
				bad(v4(id, 8, false, kPe4).raw_l4(kProtoTcp, g.pay(32)).build(), LG_REASON_FRAGMENT_NO_FIRST, "its rest")}});
		id = g.fid();
		out.push_back({"frag4/tiny-first-tcp-16",
			       {bad(v4(id, 0, true, kPe4).raw_l4(kProtoTcp, g.pay(16)).build(), LG_REASON_MALFORMED, "16 bytes of TCP"),
				bad(v4(id, 16, false, kPe4).raw_l4(kProtoTcp, g.pay(32)).build(), LG_REASON_FRAGMENT_NO_FIRST, "its rest")}});
		id = g.fid();
		uint16_t sp = g.sp();
		out.push_back({"frag4/tiny-first-udp-header-only",
			       {fwd(v4(id, 0, true).udp(sp, 53).build(), "exactly the UDP header"),
				fwd(v4(id, 8, false).raw_l4(kProtoUdp, g.pay(32)).build(), "its rest")}});
		id = g.fid();
		out.push_back({"frag4/tiny-first-icmp",
			       {bad(v4(id, 0, true).raw_l4(kProtoIcmp, {8, 0, 0, 0}).build(), LG_REASON_MALFORMED, "4 bytes of ICMP"),
				bad(v4(id, 8, false).raw_l4(kProtoIcmp, g.pay(16)).build(), LG_REASON_FRAGMENT_NO_FIRST, "its rest")}});
	}
	{
		uint32_t id = g.fid();
		out.push_back({"frag4/denied-first-then-later",
			       {bad(v4(id, 0, true, kPe4).tcp(g.sp(), 80, kTcpSyn).payload(pay).build(), LG_REASON_PE_PORT, "first"),
				bad(v4(id, 56, false, kPe4).raw_l4(kProtoTcp, pay).build(), LG_REASON_PE_PORT, "later takes its reason")}});
	}
	{
		uint32_t id = g.fid();
		out.push_back({"frag4/repeated-first",
			       {fwd(v4(id, 0, true).udp(g.sp(), 53).payload(pay).build(), "first"),
				fwd(v4(id, 0, true).udp(g.sp(), 53).payload(g.pay(8)).build(), "first again, shorter"),
				fwd(v4(id, 16, false).raw_l4(kProtoUdp, pay).build(), "after the shorter first: no overlap")}});
	}
	out.push_back(one("frag4/beyond-65535", bad(v4(g.fid(), 65528, false).raw_l4(kProtoUdp, g.pay(16)).build(), LG_REASON_MALFORMED)));
	out.push_back(one("frag4/first-beyond-65535", [&] {
		auto f = v4(g.fid(), 0, true).udp(g.sp(), 53).payload(pay).build();
		size_t l3 = l3_of(f);
		wr16(f, l3 + 6, 0x2000 | 8189); // offset 65512 + 40 bytes
		return bad(f, LG_REASON_MALFORMED);
	}()));
	{
		// IPv4's fragment key holds the protocol (RFC 791): the same id of
		// another protocol is another datagram.
		uint32_t id = g.fid();
		out.push_back({"frag4/same-id-other-protocol",
			       {fwd(v4(id, 0, true).udp(g.sp(), 53).payload(pay).build(), "first, UDP"),
				bad(v4(id, 40, false).raw_l4(kProtoTcp, g.pay(16)).build(), LG_REASON_FRAGMENT_NO_FIRST, "TCP, same id"),
				fwd(v4(id, 40, false).raw_l4(kProtoUdp, g.pay(16)).build(), "UDP, same id")}});
	}
	out.push_back(one("frag4/later-without-first-other-id", bad(v4(g.fid(), 1480, true).raw_l4(kProtoTcp, pay).build(), LG_REASON_FRAGMENT_NO_FIRST)));
	{
		uint32_t id = g.fid();
		uint16_t sp = g.sp();
		out.push_back({"frag6/out-of-order",
			       {bad(v6(id, 56, false).raw_l4(kProtoTcp, g.pay(24)).build(), LG_REASON_FRAGMENT_NO_FIRST, "later before the first"),
				fwd(v6(id, 0, true).tcp(sp, 3306, kTcpSyn).payload(pay).build(), "the first, DNAT"),
				fwd(v6(id, 56, false).raw_l4(kProtoTcp, g.pay(24)).build(), "the later again")}});
		id = g.fid();
		out.push_back({"frag6/overlap",
			       {fwd(v6(id, 0, true).tcp(g.sp(), 3306, kTcpSyn).payload(pay).build(), "first: 52 bytes of TCP"),
				bad(v6(id, 0 + 8, true).raw_l4(kProtoTcp, g.pay(16)).build(), LG_REASON_FRAGMENT_OVERLAP, "over the header"),
				bad(v6(id, 48, true).raw_l4(kProtoTcp, g.pay(16)).build(), LG_REASON_FRAGMENT_OVERLAP, "last 4 bytes"),
				fwd(v6(id, 56, false).raw_l4(kProtoTcp, g.pay(16)).build(), "after")}});
		id = g.fid();
		out.push_back({"frag6/tiny-first-tcp",
			       {bad(v6(id, 0, true).raw_l4(kProtoTcp, g.pay(8)).build(), LG_REASON_MALFORMED, "8 bytes of TCP"),
				bad(v6(id, 8, false).raw_l4(kProtoTcp, g.pay(24)).build(), LG_REASON_FRAGMENT_NO_FIRST, "its rest")}});
		id = g.fid();
		out.push_back({"frag6/first-with-ext-after-fragment-header",
			       {fwd(g.c().ipv6(kC6, kPe6).ipv6_ext(0).ipv6_fragment(id, 0, true).ipv6_ext(60).tcp(g.sp(), 3306, kTcpSyn).payload(pay).build(), "HBH, Fragment, DestOpts, TCP"),
				bad(g.c().ipv6(kC6, kPe6).ipv6_ext(0).ipv6_fragment(id, 8, false).raw_l4(60, pay).build(), LG_REASON_FRAGMENT_OVERLAP, "inside the first")}});
		// IPv6's has none (RFC 8200): a later fragment takes the first's
		// verdict whatever next header its Fragment header names.
		id = g.fid();
		out.push_back({"frag6/later-with-another-next-header",
			       {fwd(v6(id, 0, true).tcp(g.sp(), 3306, kTcpSyn).payload(pay).build(), "first, TCP, DNAT"),
				fwd(v6(id, 56, false).raw_l4(kProtoUdp, g.pay(16)).build(), "UDP named: DNAT of L3 only")}});
		out.push_back(one("frag6/beyond-65535", bad(v6(g.fid(), 65528, false).raw_l4(kProtoTcp, g.pay(16)).build(), LG_REASON_MALFORMED)));
		out.push_back(one("frag6/later-no-first", bad(v6(g.fid(), 1232, false).raw_l4(kProtoUdp, pay).build(), LG_REASON_FRAGMENT_NO_FIRST)));
	}
}

void icmp_quotes(Gen &g, std::vector<Case> &out)
{
	// ICMP errors whose quote cannot be matched are decided as new packets.
	auto inner4 = g.b().ipv4(kNet4, kC4).tcp(443, g.sp(), kTcpSyn | kTcpAck).build();
	auto e = [&](std::vector<uint8_t> inner, size_t quote) {
		return g.c().ipv4(kC4, kNet4).icmp_error(3, 3, inner, quote).build();
	};
	out.push_back(one("icmp4/quote-27-bytes", fwd(e(inner4, 27), "decided as new")));
	out.push_back(one("icmp4/quote-ip-only", fwd(e(inner4, 20), "decided as new")));
	{
		auto f = e(inner4, 28);
		Parsed p;
		parse_frame(f, p);
		f[p.l4 + 8] = 0x44; // quoted IHL 4
		out.push_back(one("icmp4/quote-bad-ihl", fwd(f, "decided as new")));
		auto h = e(inner4, 28);
		h[p.l4 + 8] = 0x4f; // quoted IHL 15: beyond the quote
		out.push_back(one("icmp4/quote-ihl-beyond", fwd(h, "decided as new")));
		auto v = e(inner4, 28);
		v[p.l4 + 8] = 0x65; // IPv6 inside ICMPv4
		out.push_back(one("icmp4/quote-wrong-version", fwd(v, "decided as new")));
	}
	{
		auto frag = g.b().ipv4(kNet4, kC4).ipv4_fragment(7, 64, false).raw_l4(kProtoTcp, g.pay(16)).build();
		out.push_back(one("icmp4/quote-of-later-fragment", fwd(e(frag, 36), "decided as new")));
	}
	auto inner6 = g.b().ipv6(kNet6, kC6).udp(53, g.sp()).build();
	out.push_back(one("icmp6/quote-47-bytes", fwd(g.c().ipv6(kC6, kNet6).icmp_error(1, 4, inner6, 47).build(), "decided as new")));
	out.push_back(one("icmp6/quote-with-ext", fwd(g.c().ipv6(kC6, kNet6).icmp_error(1, 4, g.b().ipv6(kNet6, kC6).ipv6_ext(60).udp(53, 1).build(), 64).build(),
					       "quotes with extension headers are not matched")));
	// ICMP errors without their 8-byte header.
	out.push_back(one("icmp4/error-4-bytes", bad(g.c().ipv4(kC4, kNet4).raw_l4(kProtoIcmp, {3, 3, 0, 0}).build(), LG_REASON_MALFORMED)));
}

void misc(Gen &g, std::vector<Case> &out)
{
	out.push_back(one("eth/empty", bad({}, LG_REASON_MALFORMED)));
	out.push_back(one("eth/13-bytes", bad(std::vector<uint8_t>(13, 0xff), LG_REASON_MALFORMED)));
	{
		auto f = g.syn4(kPe4);
		f[12] = 0x12;
		f[13] = 0x34;
		out.push_back(one("eth/unknown-ethertype", step(f, "", LG_VERDICT_PASS, LG_REASON_NONE)));
		auto v6in4 = g.syn6(kPe6);
		v6in4[12] = 0x08;
		v6in4[13] = 0x00; // IPv6 bytes behind the IPv4 ethertype
		out.push_back(one("eth/ipv6-as-ipv4", bad(v6in4, LG_REASON_MALFORMED)));
		auto v4in6 = g.syn4(kPe4);
		v4in6[12] = 0x86;
		v4in6[13] = 0xdd;
		out.push_back(one("eth/ipv4-as-ipv6", bad(v4in6, LG_REASON_MALFORMED)));
	}
	{
		auto a = g.c().arp_request(kClientMac, kC4, kPe4).build();
		a.resize(41);
		out.push_back(one("arp/41-bytes", step(a, "not answered", LG_VERDICT_PASS, LG_REASON_NONE)));
		auto r = g.c().arp_request(kClientMac, kC4, kPe4).build();
		r[14 + 7] = 2; // a reply, not a request
		out.push_back(one("arp/reply-not-answered", step(r, "", LG_VERDICT_PASS, LG_REASON_NONE)));
	}
}

// Addresses a kernel does not route like any other (tests/random_policy.cpp).
bool special(const Addr &a)
{
	if (a.is_v4()) {
		uint32_t top = a.v4() >> 24;
		return top == 0 || top == 127 || top >= 224;
	}
	static const Addr unspec{}, loop = *Addr::parse("::1");
	return a == unspec || a == loop || a.b[0] == 0xff || (a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80);
}

} // namespace

// The seed host with the IPv6 backends' route and an IPv6 default route;
// its neighbours are only the addresses policy() uses and the gateways.
HostConfig host()
{
	HostConfig h = seed_fixture::seed_host();
	// before the default route, which stays last
	h.routes.insert(h.routes.end() - 1, HostRoute{*Prefix::parse("fd00:9::/48"), kBackendIf, {}});
	h.routes.push_back({*Prefix::parse("::/0"), kBackendIf, A("fd00:9::1")});
	h.neighbors = {{kClientIf, A(kC4), kClientMac},           {kClientIf, A(kC6), kClientMac},
		       {kBackendIf, A("192.168.20.11"), kBackendMac}, {kBackendIf, A("fd00:9::11"), kBackendMac},
		       {kBackendIf, A("192.168.0.1"), kGwMac},        {kBackendIf, A("fd00:9::1"), kGwMac}};
	return h;
}

State policy()
{
	State s;
	VirtualNetwork v;
	v.name = "client-vnet";
	v.vni = 100;
	v.addressPrefixes = {"10.1.0.0/16", "fd00:1::/48"};
	v.subnets = {{"clients", "10.1.1.0/24", "clients-nsg", {}, "Disabled"},
		     {"v6", "fd00:1:0:1::/64", "clients-nsg", {}, "Disabled"}};
	s.virtualNetworks.push_back(v);
	NetworkSecurityGroup n;
	n.name = "clients-nsg";
	n.defaultSecurityRules = default_security_rules();
	n.securityRules = {testing::make_rule("allow-out", 100, "Outbound", "Allow", "*", "*", "*"),
			   testing::make_rule("deny-telnet-in", 300, "Inbound", "Deny", "Tcp", "*", "*", "23")};
	s.networkSecurityGroups.push_back(n);
	s.serviceTags.values = {{"AzureCloud", "AzureCloud", "", "", {"20.0.0.0/8"}}};
	MySqlServer m;
	m.name = "db";
	m.fullyQualifiedDomainName = "db.mysql.database.azure.com";
	m.publicIp = "20.10.1.5";
	m.backends = {{"192.168.20.11", 3306, 1}, {"fd00:9::11", 3306, 1}};
	m.firewallRules = {{"office", "198.51.100.0", "198.51.100.255"}};
	s.servers = {m};
	PrivateEndpoint pe;
	pe.name = "pe4";
	pe.vnet = "client-vnet";
	pe.subnet = "clients";
	pe.privateIPAddress = kPe4;
	pe.server = "db";
	pe.connectionName = default_connection_name("pe4", "db");
	s.privateEndpoints.push_back(pe);
	pe.name = "pe6";
	pe.subnet = "v6";
	pe.privateIPAddress = kPe6;
	pe.connectionName = default_connection_name("pe6", "db");
	s.privateEndpoints.push_back(pe);
	return s;
}

std::vector<Case> valid_frames()
{
	Gen g;
	return valid(g);
}

// Addresses no router forwards (abi/lg_route.h): allowed by the policy
// (nothing denies the client's UDP to the Internet, and a source outside
// every subnet meets no Outbound NSG), covered by the default routes, and
// dropped no-route all the same.
void unroutable(Gen &g, std::vector<Case> &out)
{
	auto udp4 = [&](const char *src, const char *dst) { return g.c().ipv4(src, dst).udp(g.sp(), 53).payload("q").build(); };
	auto udp6 = [&](const char *src, const char *dst) { return g.c().ipv6(src, dst).udp(g.sp(), 53).payload("q").build(); };
	const std::pair<const char *, std::vector<uint8_t>> cases[] = {
		{"unroutable/v4-to-loopback", udp4(kC4, "127.0.0.1")},
		{"unroutable/v4-to-this-network", udp4(kC4, "0.0.0.7")},
		{"unroutable/v4-from-loopback", udp4("127.0.0.1", kNet4)},
		{"unroutable/v4-from-unspecified", udp4("0.0.0.0", kNet4)},
		{"unroutable/v4-from-multicast", udp4("224.0.0.5", kNet4)},
		{"unroutable/v4-from-broadcast", udp4("255.255.255.255", kNet4)},
		{"unroutable/v6-to-loopback", udp6(kC6, "::1")},
		{"unroutable/v6-to-unspecified", udp6(kC6, "::")},
		{"unroutable/v6-from-loopback", udp6("::1", kNet6)},
		{"unroutable/v6-from-unspecified", udp6("::", kNet6)},
		{"unroutable/v6-from-link-local", udp6("fe80::1", kNet6)},
		{"unroutable/v6-from-multicast", udp6("ff02::1", kNet6)},
		{"unroutable/v6-to-link-local", udp6(kC6, "fe80::1")},
	};
	for (const auto &[name, f] : cases)
		out.push_back(one(name, bad(f, LG_REASON_NO_ROUTE)));
	// The edges stay routable.
	out.push_back(one("unroutable/v4-from-1.0.0.0-routed", fwd(udp4("1.0.0.0", kNet4))));
	out.push_back(one("unroutable/v6-from-::2-routed", fwd(udp6("::2", kNet6))));
}

std::vector<Case> malformed_cases()
{
	Gen g;
	g.port = 30000;
	std::vector<Case> out;
	truncations(g, out);
	ipv4_headers(g, out);
	tcp_headers(g, out);
	ipv6_headers(g, out);
	vlans(g, out);
	fragments(g, out);
	icmp_quotes(g, out);
	misc(g, out);
	unroutable(g, out);
	return out;
}

std::vector<Case> byte_flip_cases(uint64_t seed, int n)
{
	Gen g;
	g.port = 40000;
	std::vector<Case> base;
	for (int i = 0; i < 4; i++) { // fresh tuples per round: some new flows, some old
		auto v = valid(g);
		base.insert(base.end(), v.begin(), v.end());
	}
	std::mt19937_64 rng(seed);
	std::vector<Case> out;
	for (int i = 0; i < n; i++) {
		const Case &b = base[rng() % base.size()];
		std::vector<uint8_t> f;
		std::string what;
		for (int tries = 0; tries < 16; tries++) {
			std::vector<uint8_t> t = b.steps[0].frame;
			std::string w;
			int flips = 1 + int(rng() % 4);
			for (int k = 0; k < flips; k++) {
				// Mostly header bytes: that is where the parser decides.
				size_t lim = std::min<size_t>(t.size(), rng() % 4 ? 96 : t.size());
				size_t off = rng() % lim;
				uint8_t val = rng() % 3 ? uint8_t(rng()) : uint8_t(t[off] ^ (1u << (rng() % 8)));
				w += "[" + std::to_string(off) + "]=" + std::to_string(val) + " ";
				t[off] = val;
			}
			// Loopback and the like: the kernel routes them apart (docs/xdp.md).
			Parsed p;
			if (parse_frame(t, p) == LG_REASON_NONE && p.family != 0 && (special(p.src) || special(p.dst)))
				continue;
			f = std::move(t);
			what = std::move(w);
			break;
		}
		if (f.empty()) {
			f = b.steps[0].frame;
			what = "unchanged";
		}
		Step s;
		s.frame = std::move(f);
		s.ifindex = b.steps[0].ifindex;
		s.what = what;
		out.push_back({"flip/" + std::to_string(i) + "/" + b.name, {std::move(s)}});
	}
	return out;
}

} // namespace lg::corpus
