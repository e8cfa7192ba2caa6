#include "bench_rules.hpp"

#include <cstdio>
#include <set>
#include <sstream>

#include "validate.hpp"

namespace lg::bench {

std::string ip4(uint32_t a)
{
	return std::to_string(a >> 24) + "." + std::to_string(a >> 16 & 255) + "." + std::to_string(a >> 8 & 255) +
	       "." + std::to_string(a & 255);
}

static uint32_t mask(int len) { return len == 0 ? 0 : ~0u << (32 - len); }

static bool parse_ip(const std::string &s, uint32_t *a)
{
	unsigned b[4];
	if (std::sscanf(s.c_str(), "%u.%u.%u.%u", &b[0], &b[1], &b[2], &b[3]) != 4)
		return false;
	*a = b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
	return true;
}

static bool matches_box(const CbRule &r, const TrafficBox &b)
{
	uint32_t m = mask(r.slen);
	uint32_t lo = r.src & m, hi = lo | ~m;
	if (hi < b.src_lo || lo > b.src_hi)
		return false;
	bool dst = false;
	for (uint32_t d : b.dsts)
		dst = dst || (d & mask(r.dlen)) == (r.dst & mask(r.dlen));
	if (!dst)
		return false;
	if (r.proto != -1 && r.proto != 6)
		return false;
	if (b.dport < r.dplo || b.dport > r.dphi)
		return false;
	return !(r.sphi < b.sport_lo || r.splo > b.sport_hi);
}

Result<RuleSet> load_classbench(const std::string &path, int n, const TrafficBox &box)
{
	FILE *p = popen(("zcat -f '" + path + "'").c_str(), "r");
	if (!p)
		return err("cannot read " + path);
	RuleSet rs;
	rs.source = path;
	char buf[512];
	int line = 0;
	while (int(rs.rules.size()) < n && std::fgets(buf, sizeof buf, p)) {
		line++;
		char s[64], d[64];
		unsigned splo, sphi, dplo, dphi, pr, pm;
		if (std::sscanf(buf, "@%63s %63s %u : %u %u : %u %x/%x", s, d, &splo, &sphi, &dplo, &dphi, &pr, &pm) != 8)
			continue;
		CbRule r;
		r.line = line;
		auto pre = [](const std::string &t, uint32_t *a, int *len) {
			auto sl = t.find('/');
			if (sl == std::string::npos || !parse_ip(t.substr(0, sl), a))
				return false;
			*len = std::stoi(t.substr(sl + 1));
			*a &= mask(*len);
			return *len >= 0 && *len <= 32;
		};
		if (!pre(s, &r.src, &r.slen) || !pre(d, &r.dst, &r.dlen))
			continue;
		r.splo = uint16_t(splo);
		r.sphi = uint16_t(sphi);
		r.dplo = uint16_t(dplo);
		r.dphi = uint16_t(dphi);
		r.proto = pm == 0 ? -1 : int(pr);
		if (r.proto != -1 && r.proto != 6 && r.proto != 17 && r.proto != 1) {
			rs.skipped_proto++;
			continue;
		}
		if (r.proto == 1 && (r.splo != 0 || r.sphi != 65535 || r.dplo != 0 || r.dphi != 65535)) {
			rs.skipped_proto++;
			continue;
		}
		if (matches_box(r, box)) {
			rs.skipped_match++;
			continue;
		}
		uint32_t h = uint32_t(rs.rules.size()) * 2654435761u;
		r.allow = (h >> 13) & 1;
		rs.rules.push_back(r);
	}
	pclose(p);
	if (rs.rules.empty())
		return err("no usable ClassBench rule in " + path);
	// Fewer lines than asked: repeat the set with shifted sources (same shape).
	size_t have = rs.rules.size();
	for (size_t i = 0; int(rs.rules.size()) < n; i++) {
		CbRule r = rs.rules[i % have];
		r.src = (r.src + uint32_t(1 + i / have) * 0x01000000u) & mask(r.slen);
		if (!matches_box(r, box))
			rs.rules.push_back(r);
	}
	return rs;
}

static std::string pfx(uint32_t a, int len) { return len == 0 ? "*" : ip4(a) + "/" + std::to_string(len); }
static std::string prange(uint16_t lo, uint16_t hi)
{
	if (lo == 0 && hi == 65535)
		return "*";
	return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

std::vector<SecurityRule> to_nsg_rules(const std::vector<CbRule> &rules, const std::string &direction,
				       const std::string &prefix)
{
	std::vector<SecurityRule> out;
	for (size_t i = 0; i < rules.size(); i++) {
		const CbRule &c = rules[i];
		SecurityRule r;
		r.name = prefix + std::to_string(i);
		r.priority = 100 + int(i) * 3;
		r.direction = direction;
		r.access = c.allow ? "Allow" : "Deny";
		r.protocol = c.proto == 6 ? "Tcp" : c.proto == 17 ? "Udp" : c.proto == 1 ? "Icmp" : "*";
		r.sourceAddressPrefix = pfx(c.src, c.slen);
		r.destinationAddressPrefix = pfx(c.dst, c.dlen);
		r.sourcePortRange = prange(c.splo, c.sphi);
		r.destinationPortRange = prange(c.dplo, c.dphi);
		out.push_back(r);
	}
	return out;
}

static std::string nft_match(const CbRule &c)
{
	std::string s;
	if (c.slen)
		s += "ip saddr " + ip4(c.src) + "/" + std::to_string(c.slen) + " ";
	if (c.dlen)
		s += "ip daddr " + ip4(c.dst) + "/" + std::to_string(c.dlen) + " ";
	bool ports = !(c.splo == 0 && c.sphi == 65535 && c.dplo == 0 && c.dphi == 65535);
	if (c.proto >= 0)
		s += "meta l4proto " + std::to_string(c.proto) + " ";
	else if (ports)
		s += "meta l4proto { 6, 17 } ";
	auto pr = [](uint16_t lo, uint16_t hi) {
		return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
	};
	if (!(c.splo == 0 && c.sphi == 65535))
		s += "th sport " + pr(c.splo, c.sphi) + " ";
	if (!(c.dplo == 0 && c.dphi == 65535))
		s += "th dport " + pr(c.dplo, c.dphi) + " ";
	return s;
}

std::string nft_linear(const std::vector<CbRule> &rules, const std::string &table)
{
	std::ostringstream o;
	o << "table inet " << table << " {\n chain lgfwd {\n  type filter hook forward priority 0; policy accept;\n";
	for (auto &c : rules)
		o << "  " << nft_match(c) << (c.allow ? "accept" : "drop") << "\n";
	o << " }\n}\n";
	return o.str();
}

std::string nft_set(const std::vector<CbRule> &rules, const std::string &table, int *kept)
{
	struct Box {
		uint32_t lo[5], hi[5];
	};
	std::vector<Box> boxes;
	std::ostringstream el;
	for (auto &c : rules) {
		if (c.allow)
			continue;
		Box b;
		b.lo[0] = c.src & mask(c.slen);
		b.hi[0] = b.lo[0] | ~mask(c.slen);
		b.lo[1] = c.dst & mask(c.dlen);
		b.hi[1] = b.lo[1] | ~mask(c.dlen);
		b.lo[2] = c.proto < 0 ? 0 : uint32_t(c.proto);
		b.hi[2] = c.proto < 0 ? 255 : uint32_t(c.proto);
		b.lo[3] = c.splo;
		b.hi[3] = c.sphi;
		b.lo[4] = c.dplo;
		b.hi[4] = c.dphi;
		bool overlap = false;
		for (auto &k : boxes) {
			bool all = true;
			for (int f = 0; f < 5 && all; f++)
				all = !(b.hi[f] < k.lo[f] || b.lo[f] > k.hi[f]);
			if (all) {
				overlap = true;
				break;
			}
		}
		if (overlap)
			continue;
		boxes.push_back(b);
		auto rng = [](uint32_t lo, uint32_t hi, bool addr) {
			if (addr)
				return ip4(lo) + "-" + ip4(hi);
			return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
		};
		el << (boxes.size() > 1 ? ",\n   " : "   ") << rng(b.lo[0], b.hi[0], true) << " . "
		   << rng(b.lo[1], b.hi[1], true) << " . " << rng(b.lo[2], b.hi[2], false) << " . "
		   << rng(b.lo[3], b.hi[3], false) << " . " << rng(b.lo[4], b.hi[4], false);
	}
	*kept = int(boxes.size());
	std::ostringstream o;
	o << "table inet " << table << " {\n set deny {\n  type ipv4_addr . ipv4_addr . inet_proto . inet_service . "
	     "inet_service\n  flags interval\n";
	if (!boxes.empty())
		o << "  elements = {\n" << el.str() << "\n  }\n";
	o << " }\n chain lgfwd {\n  type filter hook forward priority 0; policy accept;\n"
	  << "  ip saddr . ip daddr . meta l4proto . th sport . th dport @deny drop\n }\n}\n";
	return o.str();
}

std::vector<std::string> xdp_filter_cmds(const std::vector<CbRule> &rules, const TrafficBox &box)
{
	std::set<std::string> out;
	for (auto &c : rules) {
		if (c.allow)
			continue;
		if (c.slen == 32 && (c.src < box.src_lo || c.src > box.src_hi))
			out.insert("ip " + ip4(c.src) + " -m src");
		bool dst_is_traffic = false;
		for (uint32_t d : box.dsts)
			dst_is_traffic = dst_is_traffic || d == c.dst;
		if (c.dlen == 32 && !dst_is_traffic)
			out.insert("ip " + ip4(c.dst) + " -m dst");
		if (c.dplo == c.dphi && c.dplo != box.dport && (c.proto == 6 || c.proto == 17 || c.proto == -1))
			out.insert("port " + std::to_string(c.dplo) + " -m dst");
	}
	return {out.begin(), out.end()};
}

testing::RandomPolicy classbench_policy(const std::vector<CbRule> &rules, int tag_prefixes, uint64_t seed,
					int extra_nsgs, const std::vector<CbRule> &others)
{
	testing::RandomPolicy p = testing::scale_policy(2, tag_prefixes, seed);
	State &st = p.state;
	for (auto &n : st.networkSecurityGroups)
		if (n.name == "big")
			n.securityRules = to_nsg_rules(rules, "Outbound", "cb");
	auto &v = st.virtualNetworks.at(0);
	for (int k = 0; k < extra_nsgs; k++) {
		NetworkSecurityGroup n;
		n.name = "n" + std::to_string(k);
		std::vector<CbRule> slice;
		for (size_t i = 0; i < 5 && !others.empty(); i++)
			slice.push_back(others[(size_t(k) * 5 + i) % others.size()]);
		n.securityRules = to_nsg_rules(slice, k % 2 ? "Inbound" : "Outbound", "r");
		st.networkSecurityGroups.push_back(n);
		Subnet sn;
		sn.name = "x" + std::to_string(k);
		sn.addressPrefix = "10.0." + std::to_string(2 + k % 250) + "." + std::to_string(k / 250 * 64) + "/26";
		sn.networkSecurityGroup = n.name;
		v.subnets.push_back(sn);
	}
	fill_defaults(st);
	if (auto ok = validate(st); !ok)
		throw std::runtime_error("classbench policy is invalid: " + ok.error());
	return p;
}

} // namespace lg::bench
