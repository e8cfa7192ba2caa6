// The policy compiler. Semantics are those of evaluator.cpp's decide(); this
// file only changes their representation (see docs/classifier.md).
#include "compiler.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>

#include "maglev.hpp"

extern "C" {
#include "lg_hash.h"
}
#include "net.hpp"

namespace lg {
namespace {

// Stable id of a server or endpoint across generations (flows remember it;
// indices move when objects come and go).
uint32_t name_uid(const std::string &name)
{
	std::vector<uint32_t> w((name.size() + 3) / 4, 0);
	for (size_t i = 0; i < name.size(); i++)
		w[i / 4] |= uint32_t(uint8_t(name[i])) << (8 * (i % 4));
	return lg_jhash2(w.data(), uint32_t(w.size()), 0x75696431u + uint32_t(name.size()));
}

__extension__ typedef unsigned __int128 u128;

constexpr u128 kMax = ~u128(0);
constexpr u128 kV4Lo = u128(0xffff) << 32; // ::ffff:0.0.0.0
constexpr u128 kV4Hi = kV4Lo | 0xffffffffu;

struct Range {
	u128 lo, hi; // inclusive
};
using Ranges = std::vector<Range>;

u128 to_u128(const Addr &a)
{
	u128 v = 0;
	for (int i = 0; i < 16; i++)
		v = v << 8 | a.b[size_t(i)];
	return v;
}

void put_u128(u128 v, uint8_t out[16])
{
	for (int i = 15; i >= 0; i--) {
		out[i] = uint8_t(v);
		v >>= 8;
	}
}

u128 prefix_hi(const Prefix &p) { return to_u128(p.addr) | (p.len >= 128 ? u128(0) : kMax >> p.len); }

// An IPv6 prefix that holds the whole of ::ffff:0:0/96, the IPv4 block.
bool spans_v4_block(const Prefix &p) { return !p.is_v4() && to_u128(p.addr) <= kV4Lo && prefix_hi(p) >= kV4Hi; }

// A prefix as ranges. Families never mix (Prefix::contains): an IPv6 prefix
// that spans ::ffff:0:0/96 excludes it.
void add_prefix(Ranges &out, const Prefix &p)
{
	u128 lo = to_u128(p.addr);
	u128 hi = prefix_hi(p);
	if (spans_v4_block(p)) {
		if (lo < kV4Lo)
			out.push_back({lo, kV4Lo - 1});
		if (hi > kV4Hi)
			out.push_back({kV4Hi + 1, hi});
		return;
	}
	out.push_back({lo, hi});
}

// Sorted, disjoint, non-adjacent.
void normalize(Ranges &v)
{
	std::sort(v.begin(), v.end(), [](const Range &a, const Range &b) { return a.lo < b.lo; });
	size_t n = 0;
	for (auto &r : v) {
		if (n && (v[n - 1].hi == kMax || r.lo <= v[n - 1].hi + 1)) {
			v[n - 1].hi = std::max(v[n - 1].hi, r.hi);
			continue;
		}
		v[n++] = r;
	}
	v.resize(n);
}

Ranges complement(const Ranges &v, u128 max)
{
	Ranges out;
	u128 next = 0;
	bool done = false;
	for (auto &r : v) {
		if (r.lo > next)
			out.push_back({next, r.lo - 1});
		if (r.hi >= max) {
			done = true;
			break;
		}
		next = r.hi + 1;
	}
	if (!done)
		out.push_back({next, max});
	return out;
}

Ranges prefixes_of(const std::vector<std::string> &v)
{
	Ranges out;
	for (auto &s : v)
		if (auto p = Prefix::parse(s))
			add_prefix(out, *p);
	normalize(out);
	return out;
}

Ranges ports_of(const std::vector<std::string> &specs)
{
	Ranges out;
	for (auto [lo, hi] : lg::port_ranges(specs))
		out.push_back({lo, hi});
	normalize(out);
	return out;
}

// As the evaluator's ports_any: one entry of the list is "*" or 0-65535 (a
// list whose entries only together cover every port does not count).
bool ports_any(const std::vector<std::string> &specs)
{
	for (auto &s : specs) {
		Ranges r = ports_of({s});
		if (r.size() == 1 && r[0].lo == 0 && r[0].hi >= 65535)
			return true;
	}
	return false;
}

std::string joined(const std::vector<std::string> &v)
{
	std::string k;
	for (auto &s : v) {
		k += s;
		k += '\n';
	}
	return k;
}

bool is_portless_protocol(const std::string &p) { return p == "Icmp" || p == "Esp" || p == "Ah"; }

// Rules that name the same set on a field share one group: the sweep below
// toggles a group's rule bits at each of its range edges, so a 10,000-prefix
// tag used by many rules costs its edges once.
struct Group {
	const Ranges *ranges;
	lg_bitmap bits{};
};

struct Compiler {
	const State &s;
	CompiledTables t;
	std::unordered_map<std::string, uint32_t> bitmap_index; // bitmap bytes -> lg_bitmap index
	std::map<std::string, Ranges> set_cache;                 // address/port set by spec (+ VNet context)
	std::vector<Ranges> vnet_tag;                            // VirtualNetwork per VNet index
	std::vector<Ranges> internet;                            // its complement
	std::map<std::string, uint32_t> counters;                // "nsg/rule" -> counter id
	std::map<std::pair<size_t, int>, uint32_t> rule_base;    // (nsg, inbound) -> lg_rule index
	std::map<std::tuple<size_t, size_t, int>, uint32_t> dirs; // (nsg, vnet, inbound) -> lg_nsg_dir
	std::string error;
	CompileCache *cache = nullptr;
	std::map<std::string, std::shared_ptr<const CompileCache::Maglev>> maglev_used; // this compile's lists
	std::vector<CompileCache::Placement> maglev_layout;                             // this compile's layout
	bool maglev_same = false;      // the layout of the cache's last compile: the same array
	bool maglev_from_prev = false; // ... and it is taken from `prev` (compile())
	CompiledTables *prev = nullptr;

	Compiler(const State &st, CompileCache *c, CompiledTables *p) : s(st), cache(c), prev(c ? p : nullptr) {}

	uint32_t bitmap(const lg_bitmap &b)
	{
		std::string key(reinterpret_cast<const char *>(&b), sizeof b);
		auto [it, fresh] = bitmap_index.emplace(std::move(key), uint32_t(t.bitmaps.size()));
		if (fresh)
			t.bitmaps.push_back(b);
		return it->second;
	}

	// One AddrSet as the evaluator's addr_set() reads it, in VNet context v.
	const Ranges &addr_set(const std::vector<std::string> &specs, size_t v)
	{
		std::string key = "a\n" + joined(specs);
		bool ctx = std::find(specs.begin(), specs.end(), "VirtualNetwork") != specs.end() ||
			   std::find(specs.begin(), specs.end(), "Internet") != specs.end();
		if (ctx)
			key += "@" + std::to_string(v);
		auto it = set_cache.find(key);
		if (it != set_cache.end())
			return it->second;
		Ranges r;
		for (auto &sp : specs) {
			if (sp == "*") {
				r.push_back({0, kMax});
			} else if (auto p = Prefix::parse(sp)) {
				add_prefix(r, *p);
			} else if (sp == "VirtualNetwork") {
				r.insert(r.end(), vnet_tag[v].begin(), vnet_tag[v].end());
			} else if (sp == "Internet") {
				r.insert(r.end(), internet[v].begin(), internet[v].end());
			} else if (sp == "AzureLoadBalancer") {
				add_prefix(r, *Prefix::parse("168.63.129.16/32"));
			} else if (auto *tg = s.serviceTags.find(sp)) {
				const Ranges &tr = tag(tg->name, tg->addressPrefixes);
				r.insert(r.end(), tr.begin(), tr.end());
			}
		}
		normalize(r);
		return set_cache.emplace(std::move(key), std::move(r)).first->second;
	}

	const Ranges &tag(const std::string &name, const std::vector<std::string> &prefixes)
	{
		std::string key = "t\n" + name;
		auto it = set_cache.find(key);
		if (it != set_cache.end())
			return it->second;
		return set_cache.emplace(std::move(key), prefixes_of(prefixes)).first->second;
	}

	const Ranges &port_set(const std::vector<std::string> &specs)
	{
		std::string key = "p\n" + joined(specs);
		auto it = set_cache.find(key);
		if (it != set_cache.end())
			return it->second;
		return set_cache.emplace(std::move(key), ports_of(specs)).first->second;
	}

	// Elementary intervals of one field. The sweep keeps the current
	// bitmap; at a group's range start or end its bits flip (its ranges are
	// disjoint and non-adjacent, so it flips at most once per position).
	lg_span field(const std::vector<Group> &groups, bool port)
	{
		std::vector<std::pair<u128, uint32_t>> ev;
		for (uint32_t g = 0; g < groups.size(); g++)
			for (auto &r : *groups[g].ranges) {
				ev.push_back({r.lo, g});
				if (r.hi != kMax && !(port && r.hi >= 65535))
					ev.push_back({r.hi + 1, g});
			}
		std::sort(ev.begin(), ev.end(), [](auto &a, auto &b) { return a.first < b.first; });
		lg_span span{uint32_t(t.ivl.size()), 0};
		lg_bitmap cur{};
		lg_bitmap last{};
		size_t i = 0;
		bool first = true;
		while (first || i < ev.size()) {
			u128 pos = first ? 0 : ev[i].first;
			while (i < ev.size() && ev[i].first == pos) {
				const lg_bitmap &b = groups[ev[i].second].bits;
				for (int w = 0; w < LG_NSG_WORDS; w++)
					cur.w[w] ^= b.w[w];
				i++;
			}
			if (first || std::memcmp(&cur, &last, sizeof cur) != 0) {
				lg_ivl iv{};
				put_u128(pos, iv.lo);
				iv.bitmap = bitmap(cur);
				t.ivl.push_back(iv);
				span.n++;
				last = cur;
			}
			first = false;
		}
		if (span.n > (1u << LG_BSEARCH_STEPS) && error.empty())
			error = "a rule field has " + std::to_string(span.n) + " intervals, more than " +
				std::to_string(1u << LG_BSEARCH_STEPS) + " (LG_BSEARCH_STEPS)";
		return span;
	}

	// The evaluator's rule order: custom and default rules of one direction,
	// stable-sorted by priority.
	// (rule, is_default) pairs.
	std::vector<std::pair<const SecurityRule *, bool>> ordered(const NetworkSecurityGroup &n, bool inbound) const
	{
		std::vector<std::pair<const SecurityRule *, bool>> v;
		const char *dir = inbound ? "Inbound" : "Outbound";
		for (auto &r : n.securityRules)
			if (r.direction == dir)
				v.push_back({&r, false});
		for (auto &r : defaults)
			if (r.direction == dir)
				v.push_back({&r, true});
		std::stable_sort(v.begin(), v.end(), [](auto &a, auto &b) { return a.first->priority < b.first->priority; });
		return v;
	}

	const std::vector<SecurityRule> defaults = default_security_rules();

	uint32_t counter(const std::string &nsg, const std::string &rule)
	{
		std::string name = nsg + "/" + rule;
		auto [it, fresh] = counters.emplace(name, uint32_t(t.rule_names.size()));
		if (fresh)
			t.rule_names.push_back(name);
		return it->second;
	}

	uint32_t rules_of(size_t nsg, bool inbound)
	{
		auto it = rule_base.find({nsg, inbound});
		if (it != rule_base.end())
			return it->second;
		const NetworkSecurityGroup &n = s.networkSecurityGroups[nsg];
		uint32_t base = uint32_t(t.rules.size());
		for (auto [r, dflt] : ordered(n, inbound)) {
			lg_rule lr{};
			lr.counter = counter(n.name, r->name);
			lr.allow = r->access == "Allow";
			lr.is_default = dflt;
			t.rules.push_back(lr);
		}
		rule_base[{nsg, inbound}] = base;
		return base;
	}

	// One NSG as applied in VNet v, one direction.
	uint32_t nsg_dir(const std::string &nsg_name, size_t v, bool inbound)
	{
		if (nsg_name.empty())
			return LG_NONE;
		size_t nsg = 0;
		while (nsg < s.networkSecurityGroups.size() && s.networkSecurityGroups[nsg].name != nsg_name)
			nsg++;
		if (nsg == s.networkSecurityGroups.size())
			return LG_NONE;
		auto key = std::tuple{nsg, v, int(inbound)};
		if (auto it = dirs.find(key); it != dirs.end())
			return it->second;
		const NetworkSecurityGroup &n = s.networkSecurityGroups[nsg];
		auto rules = ordered(n, inbound);
		if (rules.size() > LG_NSG_MAX_RULES) {
			error = "networkSecurityGroups/" + n.name + ": more than " + std::to_string(LG_NSG_MAX_RULES) + " rules";
			return LG_NONE;
		}
		lg_nsg_dir d{};
		d.rule_base = rules_of(nsg, inbound);
		d.nrules = uint32_t(rules.size());
		d.nwords = (d.nrules + 63) / 64;
		d.flags = n.flushConnection ? LG_NSG_F_FLUSH : 0;
		d.nsg = uint32_t(nsg);

		std::map<std::string, size_t> by_key[LG_F__COUNT];
		std::vector<Group> groups[LG_F__COUNT];
		lg_bitmap proto[LG_PC__COUNT]{}, portless{};
		static const std::vector<std::string> any{"*"};
		for (uint32_t i = 0; i < rules.size(); i++) {
			const SecurityRule &r = *rules[i].first;
			uint64_t bit = 1ull << (i % 64);
			size_t word = i / 64;
			bool no_ports = is_portless_protocol(r.protocol);
			std::vector<std::string> specs[LG_F__COUNT] = {r.sources(), r.destinations(),
								       no_ports ? any : r.sourcePorts(),
								       no_ports ? any : r.destinationPorts()};
			for (int f = 0; f < LG_F__COUNT; f++) {
				std::string key = joined(specs[f]);
				auto [it, fresh] = by_key[f].emplace(key, groups[f].size());
				if (fresh) {
					const Ranges &rg = f < LG_F_SPORT ? addr_set(specs[f], v) : port_set(specs[f]);
					groups[f].push_back(Group{&rg, {}});
				}
				groups[f][it->second].bits.w[word] |= bit;
			}
			bool pc[LG_PC__COUNT] = {};
			const std::string &p = r.protocol;
			pc[LG_PC_TCP] = p == "*" || p == "Tcp";
			pc[LG_PC_UDP] = p == "*" || p == "Udp";
			pc[LG_PC_ICMP] = p == "*" || p == "Icmp";
			pc[LG_PC_ESP] = p == "*" || p == "Esp";
			pc[LG_PC_AH] = p == "*" || p == "Ah";
			pc[LG_PC_OTHER] = p == "*";
			for (int c = 0; c < LG_PC__COUNT; c++)
				if (pc[c])
					proto[c].w[word] |= bit;
			// A packet without ports: Icmp/Esp/Ah rules ignore ports, the
			// others match only when both port fields are any.
			if (no_ports || (ports_any(specs[LG_F_SPORT]) && ports_any(specs[LG_F_DPORT])))
				portless.w[word] |= bit;
		}
		for (int f = 0; f < LG_F__COUNT; f++)
			d.field[f] = field(groups[f], f >= LG_F_SPORT);
		for (int c = 0; c < LG_PC__COUNT; c++)
			d.proto_bitmap[c] = bitmap(proto[c]);
		d.portless_bitmap = bitmap(portless);
		uint32_t idx = uint32_t(t.nsg_dirs.size());
		t.nsg_dirs.push_back(d);
		dirs[key] = idx;
		return idx;
	}

	void vnet_tags()
	{
		for (auto &v : s.virtualNetworks) {
			// Own space, connected peers' spaces, on-premises ranges of
			// gateways connected to this VNet or a peer (as the evaluator).
			std::vector<std::string> scope{v.name};
			for (auto &p : connected_peers(s, v))
				scope.push_back(p);
			Ranges r;
			for (auto &name : scope) {
				if (auto *pv = s.vnet(name))
					for (auto &p : pv->addressPrefixes)
						if (auto px = Prefix::parse(p))
							add_prefix(r, *px);
				for (auto &gw : s.localNetworkGateways)
					if (std::find(gw.virtualNetworks.begin(), gw.virtualNetworks.end(), name) !=
					    gw.virtualNetworks.end())
						for (auto &p : gw.addressPrefixes)
							if (auto px = Prefix::parse(p))
								add_prefix(r, *px);
			}
			normalize(r);
			internet.push_back(complement(r, kMax));
			vnet_tag.push_back(std::move(r));
		}
	}

	void servers()
	{
		uint32_t maglev_total = 0;
		std::vector<CompileCache::Placement> &maglev_fill = maglev_layout;
		for (auto &sv : s.servers) {
			lg_server ls{};
			ls.flags = sv.publicNetworkAccess != "Disabled" ? LG_SERVER_F_PUBLIC : 0;
			Ranges fw;
			for (auto &f : sv.firewallRules) {
				uint32_t a = Addr::parse(f.startIpAddress)->v4(), b = Addr::parse(f.endIpAddress)->v4();
				if (a == 0 && b == 0)
					ls.flags |= LG_SERVER_F_ALLOW_AZURE;
				else
					fw.push_back({a, b});
			}
			normalize(fw);
			ls.ranges = {uint32_t(t.fwranges.size()), uint32_t(fw.size())};
			for (auto &r : fw)
				t.fwranges.push_back({uint32_t(r.lo), uint32_t(r.hi)});

			uint32_t base = uint32_t(t.backends.size());
			std::vector<MaglevBackend> m[2];
			std::vector<uint32_t> idx[2]; // position in sv.backends
			std::string key;              // the list, for the cache
			key.reserve(sv.backends.size() * 24);
			for (auto &b : sv.backends) {
				Addr a = *Addr::parse(b.address);
				lg_backend lb{};
				std::memcpy(lb.addr, a.b.data(), 16);
				lb.port_be = htons(uint16_t(b.port));
				int f = a.is_v4() ? 0 : 1;
				m[f].push_back({a, uint16_t(b.port), uint32_t(b.weight)});
				idx[f].push_back(uint32_t(t.backends.size()) - base);
				t.backends.push_back(lb);
				uint32_t pw[2] = {uint32_t(b.port), uint32_t(b.weight)};
				key.append(reinterpret_cast<const char *>(a.b.data()), 16);
				key.append(reinterpret_cast<const char *>(pw), sizeof pw);
			}
			ls.backends = {base, uint32_t(t.backends.size()) - base};
			std::shared_ptr<const CompileCache::Maglev> mt;
			if (cache)
				if (auto it = cache->maglev.find(key); it != cache->maglev.end()) {
					mt = it->second;
					cache->maglev_reused++;
				}
			if (!mt) {
				auto fresh = std::make_shared<CompileCache::Maglev>();
				for (int f = 0; f < 2; f++) {
					auto table = maglev_table(m[f]);
					if (std::all_of(table.begin(), table.end(), [](int32_t e) { return e == kMaglevNone; }))
						continue;
					fresh->local[f].reserve(table.size());
					for (int32_t e : table)
						fresh->local[f].push_back(e == kMaglevNone ? LG_NONE : idx[f][size_t(e)]);
				}
				mt = std::move(fresh);
				if (cache)
					cache->maglev_built++;
			}
			if (cache)
				maglev_used.emplace(std::move(key), mt);
			for (int f = 0; f < 2; f++) {
				ls.maglev[f] = LG_NONE;
				if (mt->local[f].empty())
					continue;
				ls.maglev[f] = maglev_total; // filled after the loop, in one allocation
				maglev_total += uint32_t(mt->local[f].size());
				maglev_fill.push_back({mt, f, base});
			}
			lg_pubip_key k{};
			std::memcpy(k.addr, Addr::parse(sv.publicIp)->b.data(), 16);
			t.pubips.push_back({k, uint32_t(t.servers.size())});
			ls.uid = name_uid(sv.name);
			t.servers.push_back(ls);
			t.server_names.push_back(sv.name);
		}
		if (cache && cache->maglev_version && maglev_fill == cache->maglev_layout) {
			// The array of the last compile: compile() takes the caller's
			// copy of it when offered, or it is filled again below.
			maglev_same = true;
			if (prev && prev->maglev_version == cache->maglev_version && prev->maglev.size() == maglev_total) {
				maglev_from_prev = true;
				return;
			}
		}
		t.maglev.resize(maglev_total);
		uint32_t *out = t.maglev.data();
		for (const CompileCache::Placement &fl : maglev_fill) {
			const std::vector<uint32_t> &local = fl.tables->local[fl.family];
			const uint32_t *in = local.data();
			const uint32_t base = fl.base;
			for (size_t i = 0; i < local.size(); i++)
				out[i] = in[i] == LG_NONE ? LG_NONE : base + in[i];
			out += local.size();
		}
	}

	uint32_t server_index(const std::string &name) const
	{
		for (size_t i = 0; i < s.servers.size(); i++)
			if (s.servers[i].name == name)
				return uint32_t(i);
		return LG_NONE;
	}

	void run(const std::vector<InterfaceBinding> &ifaces, uint64_t generation)
	{
		t.generation = generation;
		t.gcfg.generation = generation;
		for (auto &n : s.networkSecurityGroups)
			t.nsg_names.push_back(n.name);
		// Counter ids for every rule of every NSG, attached or not.
		for (size_t n = 0; n < s.networkSecurityGroups.size(); n++)
			for (int in = 1; in >= 0; in--)
				for (auto [r, dflt] : ordered(s.networkSecurityGroups[n], in))
					counter(s.networkSecurityGroups[n].name, r->name);
		if (t.rule_names.size() > LG_MAX_RULE_COUNTERS) {
			// Past it the dataplanes' counters would silently miss hits.
			error = std::to_string(t.rule_names.size()) + " NSG rules in all (custom and default), more than the " +
				std::to_string(LG_MAX_RULE_COUNTERS) + " the dataplanes count";
			return;
		}

		vnet_tags();
		servers();

		// AzureCloud for the 0.0.0.0 firewall rule: bitmap 1 inside, 0
		// outside. The tag's ranges and their complement partition the space.
		Ranges ac;
		if (auto *tg = s.serviceTags.find("AzureCloud"))
			ac = tag(tg->name, tg->addressPrefixes);
		t.gcfg.azure_cloud.off = uint32_t(t.ivl.size());
		for (int inside = 0; inside < 2; inside++)
			for (auto &r : inside ? ac : complement(ac, kMax)) {
				lg_ivl iv{};
				put_u128(r.lo, iv.lo);
				iv.bitmap = uint32_t(inside);
				t.ivl.push_back(iv);
			}
		std::sort(t.ivl.begin() + t.gcfg.azure_cloud.off, t.ivl.end(),
			  [](const lg_ivl &a, const lg_ivl &b) { return std::memcmp(a.lo, b.lo, 16) < 0; });
		t.gcfg.azure_cloud.n = uint32_t(t.ivl.size()) - t.gcfg.azure_cloud.off;
		if (t.gcfg.azure_cloud.n > (1u << LG_BSEARCH_STEPS) && error.empty())
			error = "the AzureCloud service tag has " + std::to_string(t.gcfg.azure_cloud.n) +
				" intervals, more than " + std::to_string(1u << LG_BSEARCH_STEPS) + " (LG_BSEARCH_STEPS)";

		uint32_t subnet_id = 0;
		std::map<std::pair<std::string, std::string>, uint32_t> subnet_ids;
		for (size_t vi = 0; vi < s.virtualNetworks.size(); vi++) {
			const VirtualNetwork &v = s.virtualNetworks[vi];
			uint32_t vni = effective_vni(v);
			bool v6_covers_v4 = false, has_v4_any = false;
			for (auto &sn : v.subnets) {
				Prefix p = *Prefix::parse(sn.addressPrefix);
				lg_subnet_key k{};
				k.prefixlen = uint32_t(32 + p.len);
				k.vni_be = htonl(vni);
				std::memcpy(k.addr, p.addr.b.data(), 16);
				lg_subnet val{};
				val.id = subnet_id;
				val.nsg_out = nsg_dir(sn.networkSecurityGroup, vi, false);
				val.nsg_in = nsg_dir(sn.networkSecurityGroup, vi, true);
				val.flags = (sn.has_sql_endpoint() ? LG_SUBNET_F_SQL_ENDPOINT : 0) |
					    (sn.privateEndpointNetworkPolicies == "Enabled" ? LG_SUBNET_F_PE_POLICIES : 0);
				t.subnets.push_back({k, val});
				t.subnet_names.push_back(v.name + "/" + sn.name);
				subnet_ids[{v.name, sn.name}] = subnet_id++;
				// (::/80 to ::/95 end where the block does: one range, yet they span it.)
				v6_covers_v4 |= spans_v4_block(p);
				has_v4_any |= p.is_v4() && p.len == 96;
			}
			// The LPM trie does not know families: an IPv6 subnet that spans
			// ::ffff:0:0/96 gets a hole there (no NSG, no flags, id LG_NONE).
			if (v6_covers_v4 && !has_v4_any) {
				lg_subnet_key k{};
				k.prefixlen = 32 + 96;
				k.vni_be = htonl(vni);
				std::memcpy(k.addr, any_v4().addr.b.data(), 16);
				t.subnets.push_back({k, lg_subnet{LG_NONE, LG_NONE, LG_NONE, 0}});
			}
		}
		for (auto &n : s.networkInterfaces) {
			size_t vi = 0;
			while (vi < s.virtualNetworks.size() && s.virtualNetworks[vi].name != n.vnet)
				vi++;
			if (vi == s.virtualNetworks.size())
				continue;
			lg_nic v{nsg_dir(n.networkSecurityGroup, vi, false), nsg_dir(n.networkSecurityGroup, vi, true)};
			for (const std::string *ip : n.addresses()) {
				lg_addr_key k{};
				k.vni = effective_vni(s.virtualNetworks[vi]);
				std::memcpy(k.addr, Addr::parse(*ip)->b.data(), 16);
				t.nics.push_back({k, v});
			}
		}
		for (size_t i = 0; i < s.privateEndpoints.size(); i++) {
			const PrivateEndpoint &p = s.privateEndpoints[i];
			size_t vi = 0;
			while (vi < s.virtualNetworks.size() && s.virtualNetworks[vi].name != p.vnet)
				vi++;
			t.pe_names.push_back(p.name);
			if (vi == s.virtualNetworks.size())
				continue;
			const VirtualNetwork &v = s.virtualNetworks[vi];
			lg_addr_key k{};
			k.vni = effective_vni(v);
			std::memcpy(k.addr, Addr::parse(p.privateIPAddress)->b.data(), 16);
			lg_pe pe{};
			pe.id = uint32_t(i);
			pe.server = server_index(p.server);
			pe.subnet_in = LG_NONE;
			if (const Subnet *sn = v.subnet(p.subnet); sn && sn->privateEndpointNetworkPolicies == "Enabled")
				pe.subnet_in = nsg_dir(sn->networkSecurityGroup, vi, true);
			std::string st = p.connectionPresent ? p.connectionState.status : "Disconnected";
			pe.status = st == "Approved" ? LG_PEC_APPROVED
				    : st == "Pending" ? LG_PEC_PENDING
				    : st == "Rejected" ? LG_PEC_REJECTED
						       : LG_PEC_DISCONNECTED;
			pe.uid = name_uid(p.name + "/" + p.server);
			t.pes.push_back({k, pe});
		}
		for (size_t i = 0; i < s.servers.size(); i++)
			for (auto &r : s.servers[i].virtualNetworkRules)
				if (auto it = subnet_ids.find({r.vnet, r.subnet}); it != subnet_ids.end())
					t.vnetrules.push_back({uint32_t(i), it->second});
		for (auto &b : ifaces) {
			lg_iface f{};
			if (auto *v = s.vnet(b.vnet))
				f.vni = effective_vni(*v);
			std::memcpy(f.mac, b.mac.data(), 6);
			t.ifaces.push_back({b.ifindex, f});
		}
		t.gcfg.n_nsg_dirs = uint32_t(t.nsg_dirs.size());
	}
};

} // namespace

Result<CompiledTables> compile(const State &s, const std::vector<InterfaceBinding> &ifaces, uint64_t generation,
			       CompileCache *cache, CompiledTables *prev)
{
	// The compiler compares names exactly: a State that did not come
	// through the readers or fill_defaults is made so here.
	if (!references_canonical(s)) {
		State c = s;
		canonical_references(c);
		return compile(c, ifaces, generation, cache, prev);
	}
	Compiler c(s, cache, prev);
	c.run(ifaces, generation);
	if (!c.error.empty())
		return err(c.error);
	if (cache) {
		static std::atomic<uint64_t> versions{0}; // unique in the process, across caches
		cache->maglev = std::move(c.maglev_used); // the lists of the state just compiled
		if (!c.maglev_same)
			cache->maglev_version = ++versions;
		cache->maglev_layout = std::move(c.maglev_layout);
		c.t.maglev_version = cache->maglev_version;
		if (c.maglev_from_prev) {
			c.t.maglev = std::move(prev->maglev);
			prev->maglev.clear();
			cache->maglev_moved++;
		}
	}
	return std::move(c.t);
}

} // namespace lg
