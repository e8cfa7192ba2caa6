#include "workload.hpp"

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "maglev.hpp"
#include "validate.hpp"

extern "C" {
#include "lg_hash.h"
}

namespace lg::bench::dpdk {
namespace {

constexpr const char *kNsg = "classbench-nsg";
constexpr const char *kVnetPrefix = "10.64.0.0/15";
constexpr uint16_t kSportBase = 1024;

uint64_t mix(uint64_t x) // splitmix64: deterministic, platform-independent
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint32_t mask_of(int len) { return len <= 0 ? 0 : len >= 32 ? 0xffffffffu : ~((1u << (32 - len)) - 1); }

std::string v4(uint32_t a) { return Addr::from_v4(a).str(); }

uint32_t v4_of(const std::string &s)
{
	auto a = Addr::parse(s);
	return a && a->is_v4() ? a->v4() : 0;
}

std::string prefix_text(uint32_t a, int len)
{
	if (len == 0)
		return "*";
	return len == 32 ? v4(a) : v4(a) + "/" + std::to_string(len);
}

std::string port_text(uint16_t lo, uint16_t hi)
{
	if (lo == 0 && hi == 0xffff)
		return "*";
	return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

// The NSG protocol word for a ClassBench protocol; the rule is rewritten to
// what the NSG rule means so that rte_acl gets exactly the same rule: a
// protocol NSGs cannot name becomes "any", ICMP rules ignore ports.
std::string lower_protocol(CbRule &r)
{
	if (r.proto_mask == 0)
		return "*";
	switch (r.proto) {
	case 6: return "Tcp";
	case 17: return "Udp";
	case 50: return "Esp";
	case 51: return "Ah";
	case 1:
		r.sport_lo = r.dport_lo = 0;
		r.sport_hi = r.dport_hi = 0xffff;
		return "Icmp";
	default:
		r.proto = r.proto_mask = 0;
		return "*";
	}
}

bool in_prefix(uint32_t a, uint32_t p, int len) { return (a & mask_of(len)) == (p & mask_of(len)); }

} // namespace

Result<std::vector<CbRule>> read_classbench(const std::string &path, size_t max_rules)
{
	bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
	std::string cmd = "gzip -dc '" + path + "'";
	std::unique_ptr<FILE, int (*)(FILE *)> f(gz ? popen(cmd.c_str(), "r") : fopen(path.c_str(), "r"),
						 gz ? pclose : fclose);
	if (!f)
		return err("cannot read ClassBench rules " + path);
	std::vector<CbRule> out;
	char line[512];
	size_t lineno = 0;
	while (out.size() < max_rules && fgets(line, sizeof line, f.get())) {
		lineno++;
		unsigned s[4], d[4], sl, sh, dl, dh, pr, pm;
		int slen, dlen;
		if (sscanf(line, "@%u.%u.%u.%u/%d %u.%u.%u.%u/%d %u : %u %u : %u %x/%x", &s[0], &s[1], &s[2], &s[3],
			   &slen, &d[0], &d[1], &d[2], &d[3], &dlen, &sl, &sh, &dl, &dh, &pr, &pm) != 16 ||
		    slen < 0 || slen > 32 || dlen < 0 || dlen > 32 || sl > sh || dl > dh || sh > 0xffff || dh > 0xffff)
			return err(path + ":" + std::to_string(lineno) + ": not a ClassBench IPv4 filter");
		CbRule r;
		r.src = (s[0] << 24 | s[1] << 16 | s[2] << 8 | s[3]) & mask_of(slen);
		r.dst = (d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3]) & mask_of(dlen);
		r.src_len = slen;
		r.dst_len = dlen;
		r.sport_lo = uint16_t(sl);
		r.sport_hi = uint16_t(sh);
		r.dport_lo = uint16_t(dl);
		r.dport_hi = uint16_t(dh);
		r.proto = uint8_t(pr & pm);
		r.proto_mask = pm == 0xff ? 0xff : 0; // NSGs match one protocol or any
		out.push_back(r);
	}
	if (gz && pclose(f.release()) != 0 && out.size() < max_rules)
		return err("cannot decompress " + path);
	if (out.empty())
		return err("no ClassBench filter in " + path);
	return out;
}

std::vector<Flow> make_flows(const Scenario &sc, size_t count, uint64_t seed)
{
	// Up to 50,000 client hosts, then more source ports per host.
	size_t hosts = std::min<size_t>(count, 50000);
	uint32_t base = v4_of(sc.client_subnet.substr(0, sc.client_subnet.find('/')));
	uint32_t pe = v4_of(sc.private_endpoint_ip), pub = v4_of(sc.public_ip);
	uint16_t sport0 = uint16_t(kSportBase + mix(seed) % 4096);
	std::vector<Flow> flows;
	flows.reserve(count);
	for (size_t i = 0; i < count; i++) {
		Flow f;
		f.src = base + 1 + uint32_t(i % hosts);
		f.sport = uint16_t(sport0 + i / hosts);
		f.dst = (mix(seed ^ (i * 0x100000001b3ull)) & 1) ? pe : pub;
		f.dport = 3306;
		flows.push_back(f);
	}
	return flows;
}

std::vector<uint8_t> flow_frame(const Scenario &sc, const Flow &f)
{
	std::vector<uint8_t> fr = PacketBuilder()
					  .eth(sc.client_mac, sc.port0_mac)
					  .ipv4(v4(f.src), v4(f.dst))
					  .tcp(f.sport, f.dport, kTcpSyn, 1)
					  .build();
	if (fr.size() < 60)
		fr.resize(60, 0); // Ethernet padding: 64 bytes on the wire with the FCS
	return fr;
}

std::vector<uint8_t> data_frame(const Scenario &sc, const Flow &f)
{
	std::vector<uint8_t> fr = PacketBuilder()
					  .eth(sc.client_mac, sc.port0_mac)
					  .ipv4(v4(f.src), v4(f.dst))
					  .tcp(f.sport, f.dport, kTcpAck | kTcpPsh, 2, 1001)
					  .payload(std::vector<uint8_t>{'S', 'E', 'L', 'E', 'C', 'T'})
					  .build();
	if (fr.size() < 60)
		fr.resize(60, 0);
	return fr;
}

std::string backend_of(const Scenario &sc, const Flow &f)
{
	// The reference evaluator's pick_backend(): Maglev over the IPv4
	// backends (weight 1 each), slot of the original tuple's flow hash.
	static std::vector<int32_t> table;
	static std::vector<std::string> names;
	if (names != sc.backends) {
		std::vector<MaglevBackend> mb;
		for (auto &b : sc.backends)
			mb.push_back({*Addr::parse(b), 3306, 1});
		table = maglev_table(mb);
		names = sc.backends;
	}
	Addr s = Addr::from_v4(f.src), d = Addr::from_v4(f.dst);
	uint16_t sp = uint16_t(f.sport << 8 | f.sport >> 8), dp = uint16_t(f.dport << 8 | f.dport >> 8);
	uint32_t h = lg_flow_hash(s.b.data(), d.b.data(), sp, dp, 6);
	int32_t i = table[maglev_slot(h, uint32_t(table.size()))];
	return i < 0 ? std::string() : sc.backends[size_t(i)];
}

std::vector<uint8_t> reply_frame(const Scenario &sc, const Flow &f)
{
	std::vector<uint8_t> fr = PacketBuilder()
					  .eth(sc.next_hop_mac, Mac{0x02, 0, 0, 0, 0x02, 0})
					  .ipv4(backend_of(sc, f), v4(f.src))
					  .tcp(3306, f.sport, kTcpSyn | kTcpAck, 1000, 2)
					  .build();
	if (fr.size() < 60)
		fr.resize(60, 0);
	return fr;
}

Result<Workload> build_workload(const WorkloadOptions &o)
{
	if (o.rules < 3 || o.rules > 1000)
		return err("--rules must be 3..1000 (an NSG holds at most 1,000 rules)");
	Workload w;
	auto cb = read_classbench(o.classbench, o.rules - 2);
	if (!cb)
		return err(cb.error());
	// A smaller set (acl1_1000 has 957 filters) is repeated with shifted
	// sources, keeping its shape, until there are enough.
	size_t have = cb->size();
	for (size_t i = 0; cb->size() < o.rules - 2; i++) {
		CbRule r = (*cb)[i % have];
		r.src = (r.src + uint32_t(1 + i / have) * 0x01000000u) & mask_of(r.src_len);
		cb->push_back(r);
		w.topped_up++;
	}
	const Scenario &sc = o.sc;
	State &st = w.state;

	VirtualNetwork v;
	v.name = sc.vnet;
	v.vni = 101;
	v.addressPrefixes = {kVnetPrefix};
	v.subnets = {{"clients", sc.client_subnet, kNsg, {}, "Disabled"}, {"endpoints", sc.endpoint_subnet, "", {}, "Disabled"}};
	st.virtualNetworks.push_back(v);

	PrivateEndpoint pe;
	pe.name = "pe-db1";
	pe.vnet = sc.vnet;
	pe.subnet = "endpoints";
	pe.privateIPAddress = sc.private_endpoint_ip;
	pe.server = "db1";
	st.privateEndpoints.push_back(pe); // automatic request: Approved

	MySqlServer m;
	m.name = "db1";
	m.publicIp = sc.public_ip;
	for (auto &b : sc.backends)
		m.backends.push_back({b, 3306, 1});
	uint32_t cbase = v4_of(sc.client_subnet.substr(0, sc.client_subnet.find('/')));
	int clen = std::stoi(sc.client_subnet.substr(sc.client_subnet.find('/') + 1));
	m.firewallRules = {{"clients", v4(cbase), v4(cbase | ~mask_of(clen))}};
	st.servers.push_back(m);

	// The rules: ClassBench filters in order, the two rules that admit the
	// traffic at allow_depth. A filter that overlaps the traffic is made
	// Allow, so that no Deny decides it before the deep rules do.
	uint32_t pe_ip = v4_of(sc.private_endpoint_ip), pub_ip = v4_of(sc.public_ip);
	size_t at = size_t(o.allow_depth * double(o.rules - 2));
	if (at > o.rules - 2)
		at = o.rules - 2;
	NetworkSecurityGroup n;
	n.name = kNsg;
	auto add_rule = [&](CbRule r, std::string name, std::string access) {
		SecurityRule sr;
		sr.name = std::move(name);
		sr.priority = int(100 + 3 * w.rules.size());
		sr.direction = "Outbound";
		sr.access = std::move(access);
		sr.protocol = lower_protocol(r);
		sr.sourceAddressPrefix = prefix_text(r.src, r.src_len);
		sr.destinationAddressPrefix = prefix_text(r.dst, r.dst_len);
		sr.sourcePortRange = port_text(r.sport_lo, r.sport_hi);
		sr.destinationPortRange = port_text(r.dport_lo, r.dport_hi);
		n.securityRules.push_back(sr);
		w.rule_names.push_back(sr.name);
		w.rules.push_back(r);
	};
	auto admit = [&](uint32_t dst, const char *name) {
		CbRule r;
		r.src = cbase;
		r.src_len = clen;
		r.dst = dst;
		r.dst_len = 32;
		r.dport_lo = r.dport_hi = 3306;
		r.proto = 6;
		r.proto_mask = 0xff;
		add_rule(r, name, "Allow");
	};
	for (size_t i = 0; i < cb->size(); i++) {
		if (i == at) {
			w.allow_index = w.rules.size();
			admit(pe_ip, "allow-clients-pe-mysql");
			admit(pub_ip, "allow-clients-public-mysql");
		}
		CbRule r = (*cb)[i];
		CbRule lowered = r;
		lower_protocol(lowered);
		bool overlaps = (in_prefix(cbase, lowered.src, std::min(lowered.src_len, clen))) &&
				(in_prefix(pe_ip, lowered.dst, lowered.dst_len) || in_prefix(pub_ip, lowered.dst, lowered.dst_len)) &&
				lowered.dport_lo <= 3306 && lowered.dport_hi >= 3306 && lowered.sport_hi >= kSportBase &&
				(lowered.proto_mask == 0 || lowered.proto == 6);
		bool deny = !overlaps && int(mix(o.seed * 1000003 + i) % 1000) < o.deny_permille;
		if (overlaps)
			w.forced_allow++;
		char name[32];
		std::snprintf(name, sizeof name, "cb-%04zu", i);
		add_rule(r, name, deny ? "Deny" : "Allow");
	}
	if (at >= cb->size()) {
		w.allow_index = w.rules.size();
		admit(pe_ip, "allow-clients-pe-mysql");
		admit(pub_ip, "allow-clients-public-mysql");
	}
	st.networkSecurityGroups.push_back(n);
	fill_defaults(st);
	if (auto v = validate(st); !v)
		return err("generated state is invalid: " + v.error());

	HostConfig &h = w.host;
	h.interfaces = {{1, sc.port0_mac, sc.vnet}, {2, Mac{0x02, 0, 0, 0, 0x02, 0}, ""}};
	h.routes.push_back({*Prefix::parse(kVnetPrefix), 1, {}});
	h.routes.push_back({*Prefix::parse(sc.backend_route), 2, {}});
	for (auto &b : sc.backends)
		h.neighbors.push_back({2, *Addr::parse(b), sc.next_hop_mac});
	return w;
}

Status write_pcap(const std::string &path, const Scenario &sc, const std::vector<Flow> &flows, size_t frames)
{
	return write_pcap(path, sc, flows, frames, FrameKind::Syn);
}

Status write_pcap(const std::string &path, const Scenario &sc, const std::vector<Flow> &flows, size_t frames,
		  FrameKind kind)
{
	if (flows.empty())
		return err("no flows for " + path);
	if (frames == 0)
		frames = flows.size();
	std::ofstream f(path, std::ios::binary | std::ios::trunc);
	if (!f)
		return err("cannot write " + path);
	auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char *>(&v), 4); };
	auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char *>(&v), 2); };
	u32(0xa1b2c3d4); // microsecond pcap, host byte order (readers swap as needed)
	u16(2);
	u16(4);
	u32(0);
	u32(0);
	u32(65535);
	u32(1); // LINKTYPE_ETHERNET
	std::vector<std::vector<uint8_t>> built; // frames of the flows, built once
	built.reserve(std::min(frames, flows.size()));
	std::vector<char> buf;
	buf.reserve(1 << 20);
	auto flush = [&] {
		f.write(buf.data(), std::streamsize(buf.size()));
		buf.clear();
	};
	for (uint32_t i = 0; i < frames; i++) {
		size_t k = i % flows.size();
		if (k == built.size())
			built.push_back(kind == FrameKind::Syn    ? flow_frame(sc, flows[k])
					: kind == FrameKind::Data ? data_frame(sc, flows[k])
								  : reply_frame(sc, flows[k]));
		const auto &fr = built[k];
		uint32_t rec[4] = {i / 1000000, i % 1000000, uint32_t(fr.size()), uint32_t(fr.size())};
		buf.insert(buf.end(), reinterpret_cast<const char *>(rec), reinterpret_cast<const char *>(rec) + 16);
		buf.insert(buf.end(), fr.begin(), fr.end());
		if (buf.size() >= (1 << 20) - 256)
			flush();
	}
	flush();
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Status write_acl_rules(const std::string &path, const std::vector<CbRule> &rules, bool mapped)
{
	std::ofstream f(path, std::ios::trunc);
	if (!f)
		return err("cannot write " + path);
	char line[160];
	for (auto r : rules) {
		lower_protocol(r);
		const char *pre = mapped ? "::ffff:" : "";
		int add = mapped ? 96 : 0;
		std::snprintf(line, sizeof line, "@%s%s/%d\t%s%s/%d\t%u : %u\t%u : %u\t0x%02X/0x%02X\n", pre,
			      v4(r.src).c_str(), r.src_len + add, pre, v4(r.dst).c_str(), r.dst_len + add, r.sport_lo,
			      r.sport_hi, r.dport_lo, r.dport_hi, r.proto, r.proto_mask);
		f << line;
	}
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Status write_acl_trace(const std::string &path, const std::vector<Flow> &flows, bool mapped)
{
	std::ofstream f(path, std::ios::trunc);
	if (!f)
		return err("cannot write " + path);
	for (auto &fl : flows)
		if (mapped)
			f << "::ffff:" << v4(fl.src) << "\t::ffff:" << v4(fl.dst) << '\t' << fl.sport << '\t' << fl.dport
			  << "\t6\n";
		else
			f << fl.src << '\t' << fl.dst << '\t' << fl.sport << '\t' << fl.dport << "\t6\n";
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Result<std::vector<std::pair<std::string, size_t>>> check_flows(const Workload &w, const std::vector<Flow> &flows,
								 size_t sample)
{
	Evaluator ev(w.host);
	if (auto c = ev.commit(w.state); !c)
		return err("the reference evaluator rejects the state: " + c.error());
	Scenario sc;
	sc.port0_mac = w.host.interfaces[0].mac;
	std::map<std::string, size_t> by_rule;
	size_t n = std::min(sample, flows.size());
	size_t step = n ? flows.size() / n : 1;
	uint64_t now = 1000000000;
	for (size_t k = 0; k < n; k++) {
		const Flow &f = flows[k * step];
		auto fr = flow_frame(sc, f);
		Decision d = ev.process(fr, 1, now);
		if (d.verdict != LG_VERDICT_FORWARD || d.egress_ifindex != 2 || d.backend.empty()) {
			std::ostringstream m;
			m << "flow " << v4(f.src) << ":" << f.sport << " > " << v4(f.dst) << ":" << f.dport << " is "
			  << verdict_name(d.verdict) << " (" << reason_name(d.reason) << ", stage " << stage_name(d.stage)
			  << ", rule " << d.rule << "), not forwarded with DNAT";
			return err(m.str());
		}
		std::string rule = "(default rules)";
		for (auto &t : d.trace)
			if (t.object == kNsg && !t.rule.empty())
				rule = t.rule;
		by_rule[rule]++;
	}
	return std::vector<std::pair<std::string, size_t>>(by_rule.begin(), by_rule.end());
}

Result<size_t> check_established(const Workload &w, const std::vector<Flow> &flows, size_t sample)
{
	Scenario sc;
	sc.port0_mac = w.host.interfaces[0].mac;
	size_t n = std::min(sample, flows.size());
	size_t step = n ? flows.size() / n : 1;
	// The clients are neighbours on port 0 (linkgate-dpdk: --route
	// CLIENTS=PORT,CLIENT_MAC), where the SYN-ACKs go.
	HostConfig host = w.host;
	for (size_t k = 0; k < n; k++)
		host.neighbors.push_back({1, Addr::from_v4(flows[k * step].src), sc.client_mac});
	Evaluator ev(host);
	if (auto c = ev.commit(w.state); !c)
		return err("the reference evaluator rejects the state: " + c.error());
	uint64_t now = 1000000000;
	for (size_t k = 0; k < n; k++) {
		const Flow &f = flows[k * step];
		auto say = [&](const std::string &what, const Decision &d) {
			std::ostringstream m;
			m << "established workload: flow " << v4(f.src) << ":" << f.sport << " > " << v4(f.dst) << ":" << f.dport
			  << ": " << what << " is " << verdict_name(d.verdict) << " (" << reason_name(d.reason) << ", egress "
			  << d.egress_ifindex << ", backend " << d.backend << ")";
			return m.str();
		};
		Decision syn = ev.process(flow_frame(sc, f), 1, now);
		if (syn.verdict != LG_VERDICT_FORWARD || syn.egress_ifindex != 2 ||
		    syn.backend != backend_of(sc, f) + ":3306")
			return err(say("the SYN (expected: forwarded to " + backend_of(sc, f) + ":3306)", syn));
		Decision rep = ev.process(reply_frame(sc, f), 2, now + 1000);
		if (rep.verdict != LG_VERDICT_FORWARD || rep.egress_ifindex != 1)
			return err(say("the backend's SYN-ACK", rep));
		Decision dat = ev.process(data_frame(sc, f), 1, now + 2000);
		if (dat.verdict != LG_VERDICT_FORWARD || dat.egress_ifindex != 2 || dat.frame.size() < 34 ||
		    v4(uint32_t(dat.frame[30]) << 24 | uint32_t(dat.frame[31]) << 16 | uint32_t(dat.frame[32]) << 8 |
		       dat.frame[33]) != backend_of(sc, f))
			return err(say("the data frame after the handshake", dat));
	}
	return n;
}

} // namespace lg::bench::dpdk
