// Reference evaluator. Read it top to bottom against SPEC §3–§5: the
// functions appear in the order of the decision.
#include "evaluator.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "maglev.hpp"
#include "validate.hpp"

extern "C" {
#include "lg_csum.h"
#include "lg_route.h"
#include "lg_hash.h"
}

namespace lg {

const char *reason_name(lg_reason r)
{
	switch (r) {
#define LG_CASE_(sym, num, name) \
	case LG_REASON_##sym: return name;
		LG_REASON_LIST(LG_CASE_)
#undef LG_CASE_
	default: return "unknown";
	}
}

const char *stage_name(lg_stage s)
{
	switch (s) {
#define LG_CASE_(sym, num, name) \
	case LG_STAGE_##sym: return name;
		LG_STAGE_LIST(LG_CASE_)
#undef LG_CASE_
	default: return "unknown";
	}
}

const char *verdict_name(lg_verdict v)
{
	switch (v) {
	case LG_VERDICT_DROP: return "drop";
	case LG_VERDICT_PASS: return "pass";
	case LG_VERDICT_FORWARD: return "forward";
	case LG_VERDICT_TX: return "tx";
	}
	return "unknown";
}

namespace {

// ---------------------------------------------------------------- generation

struct PortRange {
	uint16_t lo = 0, hi = 65535;
};

// One side of a rule's addresses. Tags other than VirtualNetwork and Internet
// are resolved to prefixes when the generation is built.
struct AddrSet {
	bool any = false;
	bool virtual_network = false;
	bool internet = false;
	std::vector<Prefix> prefixes;
};

struct RuleC {
	std::string name;
	int priority = 0;
	bool allow = false;
	bool is_default = false;
	std::string protocol;
	AddrSet src, dst;
	std::vector<PortRange> sports, dports;
};

struct NsgC {
	std::string name;
	bool flush = false;
	std::vector<RuleC> inbound, outbound; // by priority
};

struct ServerC;

struct SubnetC {
	std::string vnet, name;
	Prefix prefix;
	int nsg = -1; // index into Gen::nsgs
	bool sql_endpoint = false;
	bool pe_policies = false;
};

struct NicC {
	std::string name;
	Addr ip;
	int nsg = -1;
	int subnet = -1; // index into VnetC::subnets
};

struct PeC {
	std::string name;
	Addr ip;
	int subnet = -1;
	int server = -1;
	std::string status;
};

struct BackendC {
	Addr addr;
	uint16_t port = 0;
};

struct ServerC {
	std::string name;
	Addr public_ip;
	bool public_enabled = true;
	std::vector<std::pair<uint32_t, uint32_t>> ranges; // IPv4, host order, inclusive
	bool allow_azure = false;                          // the 0.0.0.0 rule
	std::vector<std::pair<std::string, std::string>> vnet_rules;
	std::vector<BackendC> backends;        // every backend, weight 0 included
	std::vector<int32_t> maglev4, maglev6; // slot -> index into backends
};

struct VnetC {
	std::string name;
	uint32_t vni = 0;
	std::vector<Prefix> vnet_tag; // the VirtualNetwork tag seen from this VNet
	std::vector<SubnetC> subnets;
	std::vector<NicC> nics;
	std::vector<PeC> pes;
};

struct Gen {
	uint64_t number = 0;
	std::vector<NsgC> nsgs;
	std::vector<VnetC> vnets;
	std::vector<ServerC> servers;
	std::vector<Prefix> azure_cloud;

	const VnetC *vnet_by_vni(uint32_t vni) const
	{
		for (auto &v : vnets)
			if (v.vni == vni)
				return &v;
		return nullptr;
	}
	const VnetC *vnet_by_name(const std::string &n) const
	{
		for (auto &v : vnets)
			if (iequals(v.name, n))
				return &v;
		return nullptr;
	}
};

std::vector<PortRange> parse_ports(const std::vector<std::string> &specs)
{
	std::vector<PortRange> out;
	for (auto [lo, hi] : port_ranges(specs))
		out.push_back({lo, hi});
	return out;
}

bool ports_any(const std::vector<PortRange> &v)
{
	for (auto &r : v)
		if (r.lo == 0 && r.hi == 65535)
			return true;
	return false;
}

std::vector<Prefix> parse_prefixes(const std::vector<std::string> &v)
{
	std::vector<Prefix> out;
	for (auto &s : v)
		if (auto p = Prefix::parse(s))
			out.push_back(*p);
	return out;
}

AddrSet addr_set(const std::vector<std::string> &specs, const ServiceTags &tags)
{
	AddrSet a;
	for (auto &s : specs) {
		if (s == "*") {
			a.any = true;
		} else if (auto p = Prefix::parse(s)) {
			a.prefixes.push_back(*p);
		} else if (s == "VirtualNetwork") {
			a.virtual_network = true;
		} else if (s == "Internet") {
			a.internet = true;
		} else if (s == "AzureLoadBalancer") {
			a.prefixes.push_back(*Prefix::parse("168.63.129.16/32"));
		} else if (auto *t = tags.find(s)) {
			auto v = parse_prefixes(t->addressPrefixes);
			a.prefixes.insert(a.prefixes.end(), v.begin(), v.end());
		}
	}
	return a;
}

RuleC compile_rule(const SecurityRule &r, bool is_default, const ServiceTags &tags)
{
	RuleC c;
	c.name = r.name;
	c.priority = r.priority;
	c.allow = r.access == "Allow";
	c.is_default = is_default;
	c.protocol = r.protocol;
	c.src = addr_set(r.sources(), tags);
	c.dst = addr_set(r.destinations(), tags);
	c.sports = parse_ports(r.sourcePorts());
	c.dports = parse_ports(r.destinationPorts());
	return c;
}

std::unique_ptr<Gen> build_generation(const State &s, uint64_t number)
{
	auto g = std::make_unique<Gen>();
	g->number = number;
	if (auto *t = s.serviceTags.find("AzureCloud"))
		g->azure_cloud = parse_prefixes(t->addressPrefixes);

	for (auto &n : s.networkSecurityGroups) {
		NsgC c{n.name, n.flushConnection, {}, {}};
		auto add = [&](const SecurityRule &r, bool dflt) {
			(r.direction == "Inbound" ? c.inbound : c.outbound).push_back(compile_rule(r, dflt, s.serviceTags));
		};
		for (auto &r : n.securityRules)
			add(r, false);
		for (auto &r : default_security_rules())
			add(r, true);
		for (auto *v : {&c.inbound, &c.outbound})
			std::stable_sort(v->begin(), v->end(), [](auto &a, auto &b) { return a.priority < b.priority; });
		g->nsgs.push_back(std::move(c));
	}
	auto nsg_index = [&](const std::string &name) {
		for (size_t i = 0; i < g->nsgs.size(); i++)
			if (g->nsgs[i].name == name)
				return int(i);
		return -1;
	};

	for (auto &sv : s.servers) {
		ServerC c;
		c.name = sv.name;
		c.public_ip = Addr::parse(sv.publicIp).value_or(Addr{});
		c.public_enabled = sv.publicNetworkAccess != "Disabled";
		for (auto &f : sv.firewallRules) {
			uint32_t a = Addr::parse(f.startIpAddress)->v4(), b = Addr::parse(f.endIpAddress)->v4();
			if (a == 0 && b == 0)
				c.allow_azure = true;
			else
				c.ranges.push_back({a, b});
		}
		for (auto &r : sv.virtualNetworkRules)
			c.vnet_rules.push_back({r.vnet, r.subnet});
		std::vector<MaglevBackend> m4, m6;
		std::vector<int32_t> idx4, idx6;
		for (auto &b : sv.backends) {
			BackendC bc{*Addr::parse(b.address), uint16_t(b.port)};
			MaglevBackend mb{bc.addr, bc.port, uint32_t(b.weight)};
			(bc.addr.is_v4() ? m4 : m6).push_back(mb);
			(bc.addr.is_v4() ? idx4 : idx6).push_back(int32_t(c.backends.size()));
			c.backends.push_back(bc);
		}
		auto table = [](const std::vector<MaglevBackend> &m, const std::vector<int32_t> &idx) {
			auto t = maglev_table(m);
			for (auto &e : t)
				e = e == kMaglevNone ? kMaglevNone : idx[size_t(e)];
			return t;
		};
		c.maglev4 = table(m4, idx4);
		c.maglev6 = table(m6, idx6);
		g->servers.push_back(std::move(c));
	}
	auto server_index = [&](const std::string &name) {
		for (size_t i = 0; i < g->servers.size(); i++)
			if (g->servers[i].name == name)
				return int(i);
		return -1;
	};

	for (auto &v : s.virtualNetworks) {
		VnetC c;
		c.name = v.name;
		c.vni = effective_vni(v);
		// VirtualNetwork tag: own space, connected peers' spaces (both sides
		// list the peering), on-premises ranges of gateways connected to
		// this VNet or a peer.
		std::vector<std::string> scope{v.name};
		for (auto &p : connected_peers(s, v))
			scope.push_back(p);
		for (auto &name : scope) {
			if (auto *pv = s.vnet(name)) {
				auto px = parse_prefixes(pv->addressPrefixes);
				c.vnet_tag.insert(c.vnet_tag.end(), px.begin(), px.end());
			}
			for (auto &gw : s.localNetworkGateways)
				if (std::find(gw.virtualNetworks.begin(), gw.virtualNetworks.end(), name) != gw.virtualNetworks.end()) {
					auto px = parse_prefixes(gw.addressPrefixes);
					c.vnet_tag.insert(c.vnet_tag.end(), px.begin(), px.end());
				}
		}
		for (auto &sn : v.subnets)
			c.subnets.push_back({v.name, sn.name, *Prefix::parse(sn.addressPrefix), nsg_index(sn.networkSecurityGroup),
					     sn.has_sql_endpoint(), sn.privateEndpointNetworkPolicies == "Enabled"});
		auto subnet_index = [&](const std::string &name) {
			for (size_t i = 0; i < c.subnets.size(); i++)
				if (c.subnets[i].name == name)
					return int(i);
			return -1;
		};
		for (auto &n : s.networkInterfaces)
			if (n.vnet == v.name)
				for (const std::string *ip : n.addresses())
					c.nics.push_back({n.name, *Addr::parse(*ip), nsg_index(n.networkSecurityGroup),
							  subnet_index(n.subnet)});
		for (auto &p : s.privateEndpoints)
			if (p.vnet == v.name) {
				std::string status = p.connectionPresent ? p.connectionState.status : "Disconnected";
				c.pes.push_back({p.name, *Addr::parse(p.privateIPAddress), subnet_index(p.subnet),
						 server_index(p.server), status});
			}
		g->vnets.push_back(std::move(c));
	}
	return g;
}

bool in_any(const std::vector<Prefix> &v, const Addr &a)
{
	return std::any_of(v.begin(), v.end(), [&](auto &p) { return p.contains(a); });
}

bool addr_match(const AddrSet &s, const Addr &a, const VnetC *ctx)
{
	static const std::vector<Prefix> none;
	const auto &vn = ctx ? ctx->vnet_tag : none;
	return s.any || in_any(s.prefixes, a) || (s.virtual_network && in_any(vn, a)) ||
	       (s.internet && !in_any(vn, a));
}

bool proto_match(const std::string &p, uint8_t proto)
{
	if (p == "*")
		return true;
	if (p == "Tcp")
		return proto == kProtoTcp;
	if (p == "Udp")
		return proto == kProtoUdp;
	if (p == "Icmp")
		return proto == kProtoIcmp || proto == kProtoIcmp6;
	if (p == "Esp")
		return proto == kProtoEsp;
	if (p == "Ah")
		return proto == kProtoAh;
	return false;
}

bool port_in(const std::vector<PortRange> &v, uint16_t port)
{
	return std::any_of(v.begin(), v.end(), [&](auto &r) { return port >= r.lo && port <= r.hi; });
}

// The packet as policy sees it: one direction of a new flow.
struct Pkt {
	uint32_t vni = 0;
	int family = 4;
	Addr src, dst;
	uint8_t proto = 0;
	bool has_ports = false;
	uint16_t sport = 0, dport = 0;
	uint32_t egress_vni = 0; // explain's: the egress interface's VNet, when given
};

bool rule_match(const RuleC &r, const Pkt &p, const VnetC *ctx)
{
	if (!proto_match(r.protocol, p.proto))
		return false;
	if (!addr_match(r.src, p.src, ctx) || !addr_match(r.dst, p.dst, ctx))
		return false;
	// Icmp, Esp and Ah rules ignore ports. A packet without ports matches a
	// port-bounded rule only if both port sides are "*".
	if (r.protocol == "Icmp" || r.protocol == "Esp" || r.protocol == "Ah")
		return true;
	if (!p.has_ports)
		return ports_any(r.sports) && ports_any(r.dports);
	return port_in(r.sports, p.sport) && port_in(r.dports, p.dport);
}

} // namespace

// ------------------------------------------------------------------ the state

struct FlowKey {
	uint32_t vni = 0;
	uint8_t proto = 0;
	Addr src, dst;
	uint16_t sport = 0, dport = 0;
	uint8_t echo = LG_ECHO_NONE; // ICMP echo's direction (lg_flow.h)
	auto operator<=>(const FlowKey &) const = default;
	FlowKey reversed() const { return {vni, proto, dst, src, dport, sport, lg_echo_reverse(echo)}; }
};

struct Flow {
	FlowKey orig, reply;
	uint64_t generation = 0;
	uint64_t expires = 0;
	lg_ct_state state = LG_CT_NEW;
	bool fin_orig = false, fin_reply = false;
	bool replied = false; // TCP, NEW: the reply direction has sent (SYN-ACK)
	lg_dest_kind kind = LG_DEST_ROUTED;
	int object = -1; // PE index in the ingress VNet, or server index (by name below)
	std::string pe, server;
	BackendC backend;
	bool has_ports = false;
};

struct FragKey {
	uint32_t vni = 0;
	int family = 0;
	uint8_t proto = 0;
	uint32_t id = 0;
	Addr src, dst;
	auto operator<=>(const FragKey &) const = default;
};

// IPv6: no protocol in the key (RFC 8200: source, destination, identification).
// Headers after the Fragment header are in the first fragment only, so its
// final protocol is not what its followers carry.
FragKey frag_key(uint32_t vni, const Parsed &p)
{
	return {vni, p.family, p.family == 6 ? uint8_t(0) : p.proto, p.frag_id, p.src, p.dst};
}

struct FragEntry {
	uint64_t expires = 0;
	lg_verdict verdict = LG_VERDICT_DROP;
	lg_reason reason = LG_REASON_NONE;
	uint32_t covered = 0;
	Addr new_src, new_dst;
};

// What policy decided for a new flow (or a recheck).
struct PolicyResult {
	bool allowed = false;
	lg_reason reason = LG_REASON_NONE;
	lg_stage stage = LG_STAGE_NONE;
	std::vector<TraceStep> trace;
	std::string nsg, rule;
	lg_dest_kind kind = LG_DEST_ROUTED;
	std::string pe, server;
	int server_index = -1;
	std::optional<BackendC> backend;
};

struct Evaluator::Impl {
	HostConfig host;
	EvaluatorConfig cfg;
	State state;
	std::unique_ptr<Gen> gen;
	std::map<FlowKey, std::shared_ptr<Flow>> flows; // both keys of every flow (one if they are equal)
	size_t nflows = 0;
	std::map<FragKey, FragEntry> frags;
	Counters counters;

	uint32_t iface_vni(uint32_t ifindex) const
	{
		for (auto &i : host.interfaces)
			if (i.ifindex == ifindex)
				if (auto *v = gen->vnet_by_name(i.vnet))
					return v->vni;
		return 0;
	}
	const HostInterface *iface(uint32_t ifindex) const
	{
		for (auto &i : host.interfaces)
			if (i.ifindex == ifindex)
				return &i;
		return nullptr;
	}
	const HostRoute *route(const Addr &dst) const
	{
		const HostRoute *best = nullptr;
		for (auto &r : host.routes)
			if (r.prefix.contains(dst) && (!best || r.prefix.len > best->prefix.len))
				best = &r;
		return best;
	}

	// ---- SPEC §3 steps 4 and 5: policy for the first packet of a flow.

	// One NSG: the matching rule with the lowest priority number decides.
	bool run_nsg(int nsg_index, bool inbound, lg_stage stage, const Pkt &p, const VnetC *ctx, PolicyResult &r,
		     bool only_if_flush) const
	{
		if (nsg_index < 0)
			return true; // a level without an NSG allows
		const NsgC &n = gen->nsgs[size_t(nsg_index)];
		if (only_if_flush && !n.flush)
			return true;
		for (auto &rule : inbound ? n.inbound : n.outbound) {
			if (!rule_match(rule, p, ctx))
				continue;
			r.trace.push_back({stage, n.name, rule.name, rule.allow});
			r.nsg = n.name;
			r.rule = rule.name;
			if (!rule.allow) {
				r.reason = rule.is_default ? LG_REASON_NSG_DEFAULT_DENY : LG_REASON_NSG_DENY;
				r.stage = stage;
			}
			return rule.allow;
		}
		return true; // unreachable: the default rules match everything
	}

	static const SubnetC *subnet_of(const VnetC *v, const Addr &a)
	{
		if (v)
			for (auto &s : v->subnets)
				if (s.prefix.contains(a))
					return &s;
		return nullptr;
	}
	static const NicC *nic_of(const VnetC *v, const Addr &a)
	{
		if (v)
			for (auto &n : v->nics)
				if (n.ip == a)
					return &n;
		return nullptr;
	}

	PolicyResult drop(PolicyResult r, lg_reason reason, lg_stage stage) const
	{
		r.allowed = false;
		r.reason = reason;
		r.stage = stage;
		return r;
	}

	std::optional<BackendC> pick_backend(const ServerC &s, const Pkt &p) const
	{
		auto &table = p.family == 4 ? s.maglev4 : s.maglev6;
		if (table.empty())
			return std::nullopt;
		uint16_t sp = htons(p.sport), dp = htons(p.dport);
		uint32_t h = lg_flow_hash(p.src.b.data(), p.dst.b.data(), sp, dp, p.proto);
		int32_t i = table[maglev_slot(h, uint32_t(table.size()))];
		if (i == kMaglevNone)
			return std::nullopt;
		return s.backends[size_t(i)];
	}

	// recheck: a flow of an older generation (SPEC §4): NSGs only where
	// flushConnection is set, the endpoint stage always.
	PolicyResult decide(const Pkt &p, bool recheck) const
	{
		PolicyResult r;
		const VnetC *vn = gen->vnet_by_vni(p.vni);

		// Step 4: source side, NIC then subnet, Outbound.
		if (const SubnetC *ss = subnet_of(vn, p.src)) {
			const NicC *nic = nic_of(vn, p.src);
			if (nic && !run_nsg(nic->nsg, false, LG_STAGE_NIC_OUTBOUND, p, vn, r, recheck))
				return r;
			if (!run_nsg(ss->nsg, false, LG_STAGE_SUBNET_OUTBOUND, p, vn, r, recheck))
				return r;
		}

		// Step 5: what the destination is.
		if (vn)
			for (auto &pe : vn->pes) {
				if (pe.ip != p.dst)
					continue;
				r.kind = LG_DEST_PRIVATE_ENDPOINT;
				r.pe = pe.name;
				const ServerC &sv = gen->servers[size_t(pe.server)];
				r.server = sv.name;
				r.server_index = pe.server;
				if (pe.status != "Approved") {
					r.trace.push_back({LG_STAGE_PRIVATE_ENDPOINT, pe.name, pe.status, false});
					return drop(r, pe.status == "Pending"    ? LG_REASON_PEC_PENDING
						       : pe.status == "Rejected" ? LG_REASON_PEC_REJECTED
										 : LG_REASON_PEC_DISCONNECTED,
						    LG_STAGE_PRIVATE_ENDPOINT);
				}
				if (p.proto != kProtoTcp || !p.has_ports || p.dport != LG_MYSQL_PORT) {
					r.trace.push_back({LG_STAGE_PRIVATE_ENDPOINT, pe.name, "port", false});
					return drop(r, LG_REASON_PE_PORT, LG_STAGE_PRIVATE_ENDPOINT);
				}
				r.trace.push_back({LG_STAGE_PRIVATE_ENDPOINT, pe.name, "Approved", true});
				const SubnetC &ps = vn->subnets[size_t(pe.subnet)];
				if (ps.pe_policies && !run_nsg(ps.nsg, true, LG_STAGE_PE_SUBNET_INBOUND, p, vn, r, recheck))
					return r;
				return backend_stage(r, sv, p);
			}

		for (size_t i = 0; i < gen->servers.size(); i++) {
			const ServerC &sv = gen->servers[i];
			if (sv.public_ip != p.dst)
				continue;
			r.kind = LG_DEST_PUBLIC_ENDPOINT;
			r.server = sv.name;
			r.server_index = int(i);
			if (!sv.public_enabled) {
				r.trace.push_back({LG_STAGE_PUBLIC_ENDPOINT, sv.name, "publicNetworkAccess", false});
				return drop(r, LG_REASON_PUBLIC_ACCESS_DISABLED, LG_STAGE_PUBLIC_ENDPOINT);
			}
			if (p.proto != kProtoTcp || !p.has_ports || p.dport != LG_MYSQL_PORT) {
				r.trace.push_back({LG_STAGE_PUBLIC_ENDPOINT, sv.name, "port", false});
				return drop(r, LG_REASON_PUBLIC_PORT, LG_STAGE_PUBLIC_ENDPOINT);
			}
			const SubnetC *ss = subnet_of(vn, p.src);
			if (ss && ss->sql_endpoint) {
				// Service-endpoint traffic: VNet rules only, IP rules do not apply.
				for (auto &[v, s] : sv.vnet_rules)
					if (v == ss->vnet && s == ss->name) {
						r.trace.push_back({LG_STAGE_PUBLIC_ENDPOINT, sv.name, "vnet-rule", true});
						return backend_stage(r, sv, p);
					}
				r.trace.push_back({LG_STAGE_PUBLIC_ENDPOINT, sv.name, "vnet-rule", false});
				return drop(r, LG_REASON_VNET_RULE_NO_MATCH, LG_STAGE_PUBLIC_ENDPOINT);
			}
			bool ok = false;
			if (p.src.is_v4()) {
				uint32_t a = p.src.v4();
				for (auto &[lo, hi] : sv.ranges)
					ok = ok || (a >= lo && a <= hi);
			}
			ok = ok || (sv.allow_azure && in_any(gen->azure_cloud, p.src));
			r.trace.push_back({LG_STAGE_PUBLIC_ENDPOINT, sv.name, "firewall", ok});
			if (!ok)
				return drop(r, LG_REASON_FIREWALL_NO_MATCH, LG_STAGE_PUBLIC_ENDPOINT);
			return backend_stage(r, sv, p);
		}

		// Anything else: the destination's subnet, then its NIC, Inbound. The
		// destination VNet is that of the egress interface when it has one
		// (peered VNets, traffic from the backend side), else the packet's.
		const VnetC *dv = vn;
		if (p.egress_vni) {
			if (auto *v = gen->vnet_by_vni(p.egress_vni))
				dv = v;
		} else if (auto *rt = route(p.dst)) {
			if (auto *v = gen->vnet_by_vni(iface_vni(rt->ifindex)))
				dv = v;
		}
		if (const SubnetC *ds = subnet_of(dv, p.dst)) {
			if (!run_nsg(ds->nsg, true, LG_STAGE_SUBNET_INBOUND, p, dv, r, recheck))
				return r;
			if (const NicC *nic = nic_of(dv, p.dst))
				if (!run_nsg(nic->nsg, true, LG_STAGE_NIC_INBOUND, p, dv, r, recheck))
					return r;
		}
		r.allowed = true;
		r.stage = r.trace.empty() ? LG_STAGE_FORWARD : r.trace.back().stage;
		return r;
	}

	PolicyResult backend_stage(PolicyResult r, const ServerC &sv, const Pkt &p) const
	{
		r.backend = pick_backend(sv, p);
		if (!r.backend)
			return drop(r, LG_REASON_NO_BACKEND, LG_STAGE_BACKEND);
		r.allowed = true;
		r.stage = r.trace.back().stage;
		return r;
	}

	// ---- SPEC §4: a flow of an older generation is checked again.
	bool recheck(Flow &f, PolicyResult &out) const
	{
		Pkt p{f.orig.vni, f.orig.src.is_v4() ? 4 : 6, f.orig.src, f.orig.dst, f.orig.proto, f.has_ports,
		      f.orig.sport, f.orig.dport};
		PolicyResult r = decide(p, true);
		if (!r.allowed && !(r.reason == LG_REASON_NO_BACKEND && r.kind == f.kind)) {
			out = r;
			return false;
		}
		// The destination must still be what the flow was translated for, and
		// the flow's backend still one of the server's (weight 0 drains: kept).
		bool same = r.kind == f.kind && r.pe == f.pe && r.server == f.server;
		if (same && f.kind != LG_DEST_ROUTED) {
			auto &bs = gen->servers[size_t(r.server_index)].backends;
			same = std::any_of(bs.begin(), bs.end(), [&](auto &b) { return b.addr == f.backend.addr && b.port == f.backend.port; });
		}
		if (!same) {
			out = r;
			out.allowed = false;
			out.reason = LG_REASON_NO_BACKEND;
			out.stage = LG_STAGE_BACKEND;
			return false;
		}
		f.generation = gen->number;
		return true;
	}

	// ---- rewriting, with incremental checksum updates (SPEC §3 step 6, §5)

	static size_t l4_csum_off(const Parsed &p)
	{
		if (p.proto == kProtoTcp)
			return p.l4 + 16;
		if (p.proto == kProtoUdp)
			return p.l4 + 6;
		return p.l4 + 2; // ICMP, ICMPv6
	}

	// Replace the source or destination address (and port) of the IP header
	// at p.l3. l4 says whether the L4 header is there to update.
	static void rewrite_addr(std::vector<uint8_t> &f, const Parsed &p, bool dst, const Addr &na, std::optional<uint16_t> nport,
				 bool l4)
	{
		bool v4 = p.family == 4;
		size_t aoff = v4 ? p.l3 + (dst ? 16 : 12) : p.l3 + (dst ? 24 : 8);
		Addr old;
		if (v4)
			old = Addr::from_v4(rd32(f, aoff));
		else
			std::memcpy(old.b.data(), &f[aoff], 16);
		if (v4) {
			uint32_t acc = lg_csum_begin(rd16(f, p.l3 + 10));
			acc = lg_csum_add_addr(acc, old.b.data(), na.b.data(), 1);
			wr16(f, p.l3 + 10, lg_csum_end(acc));
			std::memcpy(&f[aoff], na.b.data() + 12, 4);
		} else {
			std::memcpy(&f[aoff], na.b.data(), 16);
		}
		if (!l4)
			return;
		size_t poff = p.l4 + (dst ? 2 : 0);
		bool ports = p.proto == kProtoTcp || p.proto == kProtoUdp;
		bool pseudo = ports || p.proto == kProtoIcmp6;
		if (!pseudo)
			return;
		size_t co = l4_csum_off(p);
		uint16_t c = rd16(f, co);
		if (p.proto == kProtoUdp && c == 0)
			return; // no UDP checksum to keep
		uint32_t acc = lg_csum_begin(c);
		acc = lg_csum_add_addr(acc, old.b.data(), na.b.data(), v4);
		if (ports && nport) {
			acc = lg_csum_add(acc, rd16(f, poff), *nport);
			wr16(f, poff, *nport);
		}
		c = lg_csum_end(acc);
		if (p.proto == kProtoUdp && c == 0)
			c = 0xffff;
		wr16(f, co, c);
	}

	// ICMP error of a translated flow: translate the quoted packet and the
	// outer header. `forward`: the error travels in the flow's original
	// direction (towards the backend).
	static void rewrite_icmp_error(std::vector<uint8_t> &f, const Parsed &p, const Parsed &in, const Flow &fl, bool forward)
	{
		bool v4 = p.family == 4;
		const Addr &pub = fl.orig.dst;
		uint16_t pub_port = fl.orig.dport;
		const Addr &be = fl.backend.addr;
		uint16_t be_port = fl.backend.port;
		// The quoted packet went the other way: in the original direction
		// the quote's source is the endpoint; in reply direction its destination is the backend.
		bool inner_dst = !forward;
		const Addr &inner_old = forward ? pub : be;
		const Addr &inner_new = forward ? be : pub;
		uint16_t inner_new_port = forward ? be_port : pub_port;
		size_t icmp_csum = p.l4 + 2;
		uint32_t acc = lg_csum_begin(rd16(f, icmp_csum));
		auto set16 = [&](size_t off, uint16_t v) {
			acc = lg_csum_add(acc, rd16(f, off), v);
			wr16(f, off, v);
		};
		// Quoted IP address (and its header checksum, IPv4).
		size_t aoff = v4 ? in.l3 + (inner_dst ? 16 : 12) : in.l3 + (inner_dst ? 24 : 8);
		if ((v4 ? Addr::from_v4(rd32(f, aoff)) : [&] { Addr a; std::memcpy(a.b.data(), &f[aoff], 16); return a; }()) ==
		    inner_old) {
			if (v4) {
				uint32_t ic = lg_csum_begin(rd16(f, in.l3 + 10));
				ic = lg_csum_add_addr(ic, inner_old.b.data(), inner_new.b.data(), 1);
				uint16_t nic = lg_csum_end(ic);
				for (int w = 6; w < 8; w++)
					set16(aoff + size_t(2 * (w - 6)), lg_addr_word(inner_new.b.data(), w));
				set16(in.l3 + 10, nic);
			} else {
				for (int w = 0; w < 8; w++)
					set16(aoff + size_t(2 * w), lg_addr_word(inner_new.b.data(), w));
			}
			// Quoted L4: port, and its checksum when quoted.
			size_t poff = in.l4 + (inner_dst ? 2 : 0);
			uint16_t oldp = rd16(f, poff);
			size_t co = in.proto == kProtoTcp ? in.l4 + 16 : in.l4 + 6;
			if (co + 2 <= in.l3_end) {
				uint16_t c = rd16(f, co);
				if (!(in.proto == kProtoUdp && c == 0)) {
					uint32_t lc = lg_csum_begin(c);
					lc = lg_csum_add_addr(lc, inner_old.b.data(), inner_new.b.data(), v4);
					lc = lg_csum_add(lc, oldp, inner_new_port);
					c = lg_csum_end(lc);
					if (in.proto == kProtoUdp && c == 0)
						c = 0xffff;
					set16(co, c);
				}
			}
			set16(poff, inner_new_port);
		}
		// Outer header: towards the backend the destination is the endpoint;
		// from the backend the source may be the backend itself.
		bool outer_dst = forward;
		const Addr &outer_old = forward ? pub : be;
		const Addr &outer_new = forward ? be : pub;
		const Addr &outer_cur = outer_dst ? p.dst : p.src;
		if (outer_cur == outer_old) {
			if (!v4) // ICMPv6's checksum covers the pseudo-header
				acc = lg_csum_add_addr(acc, outer_old.b.data(), outer_new.b.data(), 0);
			wr16(f, icmp_csum, lg_csum_end(acc));
			rewrite_addr(f, p, outer_dst, outer_new, std::nullopt, false);
		} else {
			wr16(f, icmp_csum, lg_csum_end(acc));
		}
	}

	// ---- SPEC §3 step 6: TTL, next hop, MACs.
	Decision forward(std::vector<uint8_t> f, const Parsed &p, const Addr &dst, Decision d) const
	{
		uint8_t ttl = p.ttl;
		if (ttl <= 1)
			return dropped(std::move(d), LG_REASON_TTL_EXCEEDED, LG_STAGE_FORWARD);
		const HostRoute *rt = lg_unroutable(p.src.b.data(), dst.b.data(), p.family == 4) ? nullptr : route(dst);
		if (!rt)
			return dropped(std::move(d), LG_REASON_NO_ROUTE, LG_STAGE_FORWARD);
		Addr nh = rt->gateway.value_or(dst);
		d.egress_ifindex = rt->ifindex;
		const HostNeighbor *ne = nullptr;
		for (auto &n : host.neighbors)
			if (n.ifindex == rt->ifindex && n.ip == nh)
				ne = &n;
		const HostInterface *out = iface(rt->ifindex);
		if (!ne || !out) {
			// Unresolved neighbour: the host stack resolves and forwards
			// (and decrements the TTL itself).
			d.verdict = LG_VERDICT_PASS;
			d.frame = std::move(f);
			return d;
		}
		if (p.family == 4) {
			uint16_t old = rd16(f, p.l3 + 8);
			f[p.l3 + 8] = uint8_t(ttl - 1);
			uint32_t acc = lg_csum_add(lg_csum_begin(rd16(f, p.l3 + 10)), old, rd16(f, p.l3 + 8));
			wr16(f, p.l3 + 10, lg_csum_end(acc));
		} else {
			f[p.l3 + 7] = uint8_t(ttl - 1);
		}
		std::memcpy(&f[0], ne->mac.data(), 6);
		std::memcpy(&f[6], out->mac.data(), 6);
		d.verdict = LG_VERDICT_FORWARD;
		d.frame = std::move(f);
		return d;
	}

	static Decision dropped(Decision d, lg_reason r, lg_stage s)
	{
		d.verdict = LG_VERDICT_DROP;
		d.reason = r;
		d.stage = s;
		d.frame.clear();
		return d;
	}

	// ---- SPEC §3 step 7: ARP and neighbour solicitations for served IPs.
	bool serves(uint32_t ifindex, const Addr &a) const
	{
		for (auto &s : gen->servers)
			if (s.public_ip == a)
				return true;
		if (auto *v = gen->vnet_by_vni(iface_vni(ifindex)))
			for (auto &pe : v->pes)
				if (pe.ip == a)
					return true;
		return false;
	}

	Decision address_resolution(std::span<const uint8_t> in, const Parsed &p, uint32_t ifindex, Decision d) const
	{
		d.stage = LG_STAGE_ADDRESS_RESOLUTION;
		d.verdict = LG_VERDICT_PASS;
		d.frame.assign(in.begin(), in.end());
		const HostInterface *ifc = iface(ifindex);
		auto &f = d.frame;
		if (!ifc)
			return d;
		if (p.family == 0) {
			size_t a = p.l3;
			if (p.ethertype != kEthArp || a + 28 > f.size() || rd16(f, a) != 1 || rd16(f, a + 2) != kEthIPv4 ||
			    f[a + 4] != 6 || f[a + 5] != 4 || rd16(f, a + 6) != 1)
				return d;
			Addr tpa = Addr::from_v4(rd32(f, a + 24));
			if (!serves(ifindex, tpa))
				return d;
			uint8_t sha[6], spa[4];
			std::memcpy(sha, &f[a + 8], 6);
			std::memcpy(spa, &f[a + 14], 4);
			wr16(f, a + 6, 2);
			std::memcpy(&f[a + 8], ifc->mac.data(), 6);
			std::memcpy(&f[a + 14], tpa.b.data() + 12, 4);
			std::memcpy(&f[a + 18], sha, 6);
			std::memcpy(&f[a + 24], spa, 4);
			std::memcpy(&f[0], sha, 6);
			std::memcpy(&f[6], ifc->mac.data(), 6);
			d.verdict = LG_VERDICT_TX;
			return d;
		}
		// IPv6 neighbour solicitation (RFC 4861 §7.1.1 checks) with exactly
		// the source link-layer option, or a unicast one without options:
		// answered in place with an advertisement. Without the option it
		// goes to the frame's source and, as §7.2.4 allows for a unicast
		// solicitation, carries no target address (and so no Override).
		size_t l4 = p.l4;
		if (p.icmp_type != 135 || p.icmp_code != 0 || p.ttl != 255)
			return d;
		bool sll_opt = p.l3_end == l4 + 32 && f[l4 + 24] == 1 && f[l4 + 25] == 1;
		if (!sll_opt && !(p.l3_end == l4 + 24 && p.dst.b[0] != 0xff))
			return d;
		size_t blen = sll_opt ? 32 : 24;
		Addr target;
		std::memcpy(target.b.data(), &f[l4 + 8], 16);
		if (!serves(ifindex, target) || p.src == Addr{})
			return d;
		uint8_t sll[6];
		std::memcpy(sll, sll_opt ? &f[l4 + 26] : &f[6], 6);
		std::memcpy(&f[p.l3 + 24], p.src.b.data(), 16); // to the solicitor
		std::memcpy(&f[p.l3 + 8], target.b.data(), 16);
		f[l4] = 136;
		f[l4 + 4] = sll_opt ? 0x60 : 0x40; // Solicited; Override with the target's address
		f[l4 + 5] = f[l4 + 6] = f[l4 + 7] = 0;
		if (sll_opt) {
			f[l4 + 24] = 2; // target link-layer address
			std::memcpy(&f[l4 + 26], ifc->mac.data(), 6);
		}
		wr16(f, l4 + 2, 0);
		Addr dst = p.src;
		uint32_t ps = pseudo_sum(target, dst, kProtoIcmp6, uint32_t(blen), false);
		wr16(f, l4 + 2, inet_checksum(std::span(f).subspan(l4, blen), ps));
		std::memcpy(&f[0], sll, 6);
		std::memcpy(&f[6], ifc->mac.data(), 6);
		d.verdict = LG_VERDICT_TX;
		return d;
	}

	// ---- flows

	// An expired flow is absent but stays (the dataplanes cannot delete it
	// safely on a packet's path; decisions.md): reclaim() removes it, or a
	// new flow that takes one of its keys does (take_over).
	std::shared_ptr<Flow> lookup(const FlowKey &k, uint64_t now) const
	{
		auto it = flows.find(k);
		if (it == flows.end() || now >= it->second->expires)
			return nullptr;
		return it->second;
	}
	// A new flow takes key k: an expired flow holding it goes, both keys.
	// Returns false if a live flow holds it.
	bool take_over(const FlowKey &k, uint64_t now)
	{
		auto it = flows.find(k);
		if (it == flows.end())
			return true;
		if (now < it->second->expires)
			return false;
		erase(std::shared_ptr<Flow>(it->second));
		return true;
	}
	void erase(const std::shared_ptr<Flow> &f)
	{
		flows.erase(f->orig);
		flows.erase(f->reply);
		nflows--;
	}

	uint64_t timeout(const Flow &f) const
	{
		if (f.orig.proto == kProtoTcp)
			return f.state == LG_CT_ESTABLISHED ? cfg.tcp_established_ns : cfg.tcp_transient_ns;
		if (f.orig.proto == kProtoUdp)
			return cfg.udp_ns;
		return cfg.icmp_ns;
	}

	void update_state(Flow &f, bool reply, uint8_t tcp_flags, uint64_t now) const
	{
		if (f.state == LG_CT_CLOSED)
			return; // the close timer runs from the FIN/RST that closed it
		if (f.state == LG_CT_NEW) {
			// TCP is established by the originator's ACK after the reply's
			// SYN-ACK: a half-open flow keeps the opening timeout.
			if (f.orig.proto != kProtoTcp) {
				if (reply)
					f.state = LG_CT_ESTABLISHED;
			} else if (reply) {
				f.replied = true;
			} else if (f.replied && (tcp_flags & (kTcpSyn | kTcpAck)) == kTcpAck) {
				f.state = LG_CT_ESTABLISHED;
			}
		}
		if (f.orig.proto == kProtoTcp) {
			if (tcp_flags & kTcpFin)
				(reply ? f.fin_reply : f.fin_orig) = true;
			if ((tcp_flags & kTcpRst) || (f.fin_orig && f.fin_reply))
				f.state = LG_CT_CLOSED;
			else if (f.fin_orig || f.fin_reply)
				f.state = LG_CT_CLOSING;
		}
		f.expires = now + (f.state == LG_CT_CLOSED ? cfg.tcp_close_ns : timeout(f));
	}

	// Flow key of a packet: ports, or the echo identifier and direction for ICMP echo.
	static FlowKey key_of(uint32_t vni, const Parsed &p)
	{
		FlowKey k{vni, p.proto, p.src, p.dst, 0, 0};
		if (p.has_ports()) {
			k.sport = p.sport;
			k.dport = p.dport;
		} else if (p.has_l4 && p.is_icmp()) {
			if (icmp_is_echo_request(p.family, p.icmp_type)) {
				k.sport = p.icmp_id;
				k.echo = LG_ECHO_REQUEST;
			} else if (icmp_is_echo_reply(p.family, p.icmp_type)) {
				k.dport = p.icmp_id;
				k.echo = LG_ECHO_REPLY;
			}
		}
		return k;
	}

	void count(const Decision &d)
	{
		counters.reasons[d.verdict == LG_VERDICT_DROP ? d.reason : LG_REASON_NONE]++;
		if (!d.private_endpoint.empty())
			counters.private_endpoints[d.private_endpoint]++;
		if (!d.server.empty())
			counters.servers[d.server]++;
	}

	void count_rules(const PolicyResult &r)
	{
		for (auto &t : r.trace)
			if (!t.rule.empty() && (t.stage == LG_STAGE_NIC_OUTBOUND || t.stage == LG_STAGE_SUBNET_OUTBOUND ||
						t.stage == LG_STAGE_PE_SUBNET_INBOUND || t.stage == LG_STAGE_SUBNET_INBOUND ||
						t.stage == LG_STAGE_NIC_INBOUND))
				counters.rule_hits[t.object + "/" + t.rule]++;
	}

	static void apply_policy(Decision &d, const PolicyResult &r)
	{
		d.reason = r.allowed ? LG_REASON_NONE : r.reason;
		d.stage = r.stage;
		d.trace = r.trace;
		d.nsg = r.nsg;
		d.rule = r.rule;
		d.private_endpoint = r.pe;
		d.server = r.server;
		if (r.backend)
			d.backend = host_port(r.backend->addr, r.backend->port);
	}

	Decision process(std::span<const uint8_t> in, uint32_t ifindex, uint64_t now);
	Decision process_ip(std::span<const uint8_t> in, const Parsed &p, uint32_t vni, uint64_t now, Decision d);
	Decision later_fragment(std::span<const uint8_t> in, const Parsed &p, uint32_t vni, uint64_t now, Decision d);
	Decision flow_packet(std::span<const uint8_t> in, const Parsed &p, const std::shared_ptr<Flow> &fl, bool reply,
			     uint64_t now, Decision d);
};

Decision Evaluator::Impl::process(std::span<const uint8_t> in, uint32_t ifindex, uint64_t now)
{
	Decision d;
	d.generation = gen->number;
	Parsed p;
	lg_reason r = parse_frame(in, p);
	if (r != LG_REASON_NONE)
		return dropped(std::move(d), r, LG_STAGE_PARSE);

	// Non-IP (ARP and the rest) and IPv6 neighbour discovery addressed to
	// the host (multicast, link-local, its own addresses) go to the host,
	// except solicitations for addresses linkgate serves, answered here. A
	// solicitation to a served address (unicast reachability probing) is
	// answered too; any other neighbour discovery is a new packet.
	bool local = std::find(host.local_addresses.begin(), host.local_addresses.end(), p.dst) != host.local_addresses.end();
	if (p.family == 0)
		return address_resolution(in, p, ifindex, std::move(d));
	if (p.family == 6 && p.proto == kProtoIcmp6 && p.has_l4 && p.icmp_type >= 133 && p.icmp_type <= 137) {
		if (p.dst.b[0] == 0xff || p.dst.is_link_local() || local)
			return address_resolution(in, p, ifindex, std::move(d));
		if (p.icmp_type == 135 && serves(ifindex, p.dst)) {
			Decision a = address_resolution(in, p, ifindex, d);
			if (a.verdict == LG_VERDICT_TX)
				return a;
		}
	}
	// The host's own addresses, multicast and broadcast are the host's business.
	if (p.dst.is_multicast_or_broadcast() || local) {
		d.verdict = LG_VERDICT_PASS;
		d.frame.assign(in.begin(), in.end());
		return d;
	}

	uint32_t vni = iface_vni(ifindex);
	if (p.fragment && !p.first_fragment)
		return later_fragment(in, p, vni, now, std::move(d));

	FragKey fk = frag_key(vni, p);
	if (p.first_fragment && frags.size() >= cfg.frag_capacity && !frags.count(fk))
		return dropped(std::move(d), LG_REASON_FRAG_TABLE_FULL, LG_STAGE_FRAGMENT);

	d = process_ip(in, p, vni, now, std::move(d));

	// SPEC §3 step 2: a first fragment's verdict and translation are
	// remembered for the fragments that follow.
	if (p.first_fragment) {
		FragEntry e{now + cfg.fragment_ns, d.verdict, d.reason, p.frag_payload, p.src, p.dst};
		if (d.verdict != LG_VERDICT_DROP) {
			Parsed o;
			parse_frame(d.frame, o);
			e.new_src = o.src;
			e.new_dst = o.dst;
		}
		frags[fk] = e;
	}
	return d;
}

Decision Evaluator::Impl::later_fragment(std::span<const uint8_t> in, const Parsed &p, uint32_t vni, uint64_t now, Decision d)
{
	FragKey fk = frag_key(vni, p);
	// An expired memory is absent, left for reclaim() or the next first
	// fragment, as the dataplanes leave it (lg_later_frag).
	auto it = frags.find(fk);
	if (it == frags.end() || now >= it->second.expires)
		return dropped(std::move(d), LG_REASON_FRAGMENT_NO_FIRST, LG_STAGE_FRAGMENT);
	const FragEntry &e = it->second;
	if (p.frag_offset < e.covered)
		return dropped(std::move(d), LG_REASON_FRAGMENT_OVERLAP, LG_STAGE_FRAGMENT);
	if (e.verdict == LG_VERDICT_DROP)
		return dropped(std::move(d), e.reason, LG_STAGE_FRAGMENT);
	// Same translation as the first fragment, L3 only: no ports here.
	std::vector<uint8_t> f(in.begin(), in.end());
	if (e.new_src != p.src)
		rewrite_addr(f, p, false, e.new_src, std::nullopt, false);
	if (e.new_dst != p.dst)
		rewrite_addr(f, p, true, e.new_dst, std::nullopt, false);
	d.stage = LG_STAGE_FRAGMENT;
	return forward(std::move(f), p, e.new_dst, std::move(d));
}

Decision Evaluator::Impl::flow_packet(std::span<const uint8_t> in, const Parsed &p, const std::shared_ptr<Flow> &fl,
				      bool reply, uint64_t now, Decision d)
{
	d.stage = LG_STAGE_CONNTRACK;
	d.private_endpoint = fl->pe;
	d.server = fl->server;
	if (fl->generation != gen->number) {
		PolicyResult r;
		if (!recheck(*fl, r)) {
			count_rules(r);
			erase(fl);
			apply_policy(d, r);
			return dropped(std::move(d), r.reason, r.stage);
		}
	}
	std::vector<uint8_t> f(in.begin(), in.end());
	bool error = p.has_l4 && p.is_icmp() && icmp_is_error(p.family, p.icmp_type);
	Addr dst = p.dst;
	if (fl->kind != LG_DEST_ROUTED) {
		d.backend = host_port(fl->backend.addr, fl->backend.port);
		if (error) {
			Parsed inner;
			parse_inner(in, p.l4 + 8, p.l3_end, p.family, inner);
			rewrite_icmp_error(f, p, inner, *fl, !reply);
			Parsed o;
			parse_frame(f, o);
			dst = o.dst;
		} else if (!reply) {
			rewrite_addr(f, p, true, fl->backend.addr, fl->backend.port, true);
			dst = fl->backend.addr;
		} else {
			rewrite_addr(f, p, false, fl->orig.dst, fl->orig.dport, true);
		}
	}
	Decision out = forward(std::move(f), p, dst, std::move(d));
	if (out.verdict != LG_VERDICT_DROP && !error)
		update_state(*fl, reply, p.tcp_flags, now);
	return out;
}

Decision Evaluator::Impl::process_ip(std::span<const uint8_t> in, const Parsed &p, uint32_t vni, uint64_t now, Decision d)
{
	// SPEC §3 step 3: ICMP errors about a known flow follow that flow. An
	// error is about a packet its destination sent (conntrack's check): one
	// that quotes a flow to anyone else is a new packet (docs/decisions.md).
	if (p.has_l4 && p.is_icmp() && icmp_is_error(p.family, p.icmp_type)) {
		Parsed inner;
		if (parse_inner(in, p.l4 + 8, p.l3_end, p.family, inner) && inner.src == p.dst) {
			FlowKey ik = key_of(vni, inner).reversed();
			if (auto fl = lookup(ik, now))
				return flow_packet(in, p, fl, fl->reply == ik, now, std::move(d));
		}
	}

	FlowKey k = key_of(vni, p);
	bool tcp = p.proto == kProtoTcp;
	bool syn = tcp && (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn;
	auto fl = lookup(k, now);
	if (fl && syn && fl->orig == k && fl->state == LG_CT_CLOSED) {
		erase(fl); // a new connection reusing the tuple of a closed one
		fl = nullptr;
	}
	if (fl)
		return flow_packet(in, p, fl, fl->reply == k && fl->orig != k, now, std::move(d));

	if (tcp && !syn)
		return dropped(std::move(d), LG_REASON_CT_INVALID, LG_STAGE_CONNTRACK);
	bool starts_flow = syn || p.proto == kProtoUdp ||
			   (p.is_icmp() && p.has_l4 && icmp_is_echo_request(p.family, p.icmp_type));

	Pkt pk{vni, p.family, p.src, p.dst, p.proto, p.has_ports(), p.sport, p.dport};
	PolicyResult r = decide(pk, false);
	count_rules(r);
	apply_policy(d, r);
	if (!r.allowed)
		return dropped(std::move(d), r.reason, r.stage);
	// The table holds 2 x flow_capacity keys, as the dataplanes' maps do: a
	// flow takes two, a flow to itself one (decisions.md). The original key
	// is checked first, the reply key once it is known (below).
	// An expired flow under the key is taken over (a live one cannot be
	// there: the lookup above would have found it).
	if (starts_flow)
		take_over(k, now);
	if (starts_flow && flows.size() + 1 > 2 * cfg.flow_capacity)
		return dropped(std::move(d), LG_REASON_CT_FULL, LG_STAGE_CONNTRACK);

	std::vector<uint8_t> f(in.begin(), in.end());
	Addr dst = p.dst;
	if (r.backend) {
		rewrite_addr(f, p, true, r.backend->addr, r.backend->port, true);
		dst = r.backend->addr;
	}
	Decision out = forward(std::move(f), p, dst, std::move(d));
	if (out.verdict == LG_VERDICT_DROP || !starts_flow)
		return out;

	auto nf = std::make_shared<Flow>();
	nf->orig = k;
	nf->generation = gen->number;
	nf->kind = r.kind;
	nf->pe = r.pe;
	nf->server = r.server;
	nf->has_ports = p.has_ports();
	// Replies arrive on the interface this packet leaves by.
	uint32_t rvni = iface_vni(out.egress_ifindex);
	if (r.backend) {
		nf->backend = *r.backend;
		nf->reply = {rvni, p.proto, r.backend->addr, p.src, r.backend->port, p.sport};
	} else {
		nf->reply = k.reversed();
		nf->reply.vni = rvni;
	}
	// One key, one flow: a reply key that a live flow holds (two translated
	// flows sharing the client's address and port and the backend) would
	// take that flow's replies. The later flow is refused (decisions.md).
	if (nf->reply != nf->orig && !take_over(nf->reply, now)) {
		out.backend.clear();
		out.egress_ifindex = 0;
		return dropped(std::move(out), LG_REASON_CT_CLASH, LG_STAGE_CONNTRACK);
	}
	if (nf->reply != nf->orig && flows.size() + 2 > 2 * cfg.flow_capacity) {
		out.backend.clear();
		out.egress_ifindex = 0;
		return dropped(std::move(out), LG_REASON_CT_FULL, LG_STAGE_CONNTRACK);
	}
	update_state(*nf, false, p.tcp_flags, now);
	flows[nf->orig] = nf;
	flows[nf->reply] = nf;
	nflows++;
	out.flow_created = true;
	return out;
}

// ------------------------------------------------------------------- public

Evaluator::Evaluator(HostConfig host, EvaluatorConfig cfg) : impl_(std::make_unique<Impl>())
{
	impl_->host = std::move(host);
	impl_->cfg = cfg;
	impl_->gen = build_generation(impl_->state, 1);
}

Evaluator::~Evaluator() = default;

Status Evaluator::commit(const State &in)
{
	if (auto st = validate(in); !st)
		return st;
	// Names are compared exactly below: references as their objects spell them.
	State s = in;
	canonical_references(s);
	impl_->gen = build_generation(s, impl_->gen->number + 1);
	impl_->state = std::move(s);
	return Ok{};
}

uint64_t Evaluator::generation() const { return impl_->gen->number; }

Decision Evaluator::process(std::span<const uint8_t> frame, uint32_t ifindex, uint64_t now_ns)
{
	Decision d = impl_->process(frame, ifindex, now_ns);
	impl_->count(d);
	return d;
}

Decision Evaluator::explain(const Tuple &t) const
{
	Decision d;
	d.generation = impl_->gen->number;
	const VnetC *v = impl_->gen->vnet_by_name(t.vnet);
	Pkt p{v ? v->vni : 0, t.src.is_v4() ? 4 : 6, t.src, t.dst, t.proto, t.proto == kProtoTcp || t.proto == kProtoUdp,
	      t.sport, t.dport};
	if (!t.egress_vnet.empty())
		if (const VnetC *e = impl_->gen->vnet_by_name(t.egress_vnet))
			p.egress_vni = e->vni;
	PolicyResult r = impl_->decide(p, false);
	Impl::apply_policy(d, r);
	if (!r.allowed)
		return Impl::dropped(std::move(d), r.reason, r.stage);
	Addr dst = r.backend ? r.backend->addr : t.dst;
	if (lg_unroutable(t.src.b.data(), dst.b.data(), t.src.is_v4()))
		return Impl::dropped(std::move(d), LG_REASON_NO_ROUTE, LG_STAGE_FORWARD);
	if (impl_->host.routes.empty()) { // policy only: no host to route on
		d.verdict = LG_VERDICT_FORWARD;
		return d;
	}
	if (const HostRoute *rt = impl_->route(dst)) {
		d.verdict = LG_VERDICT_FORWARD;
		d.egress_ifindex = rt->ifindex;
		return d;
	}
	return Impl::dropped(std::move(d), LG_REASON_NO_ROUTE, LG_STAGE_FORWARD);
}

size_t Evaluator::reclaim(uint64_t now)
{
	size_t n = 0;
	for (auto it = impl_->flows.begin(); it != impl_->flows.end();) {
		auto f = it->second;
		++it;
		if (now >= f->expires) {
			// Advance past the flow's other key before erasing both.
			while (it != impl_->flows.end() && it->second == f)
				++it;
			impl_->erase(f);
			n++;
		}
	}
	std::erase_if(impl_->frags, [&](auto &kv) { return now >= kv.second.expires; });
	return n;
}

size_t Evaluator::flow_count() const { return impl_->nflows; }
size_t Evaluator::flow_keys() const { return impl_->flows.size(); }
size_t Evaluator::fragment_count() const { return impl_->frags.size(); }
const Counters &Evaluator::counters() const { return impl_->counters; }

std::vector<FlowView> Evaluator::flows() const
{
	auto fmt = [](const FlowKey &k) {
		return std::to_string(k.vni) + " " + std::to_string(k.proto) + " " + host_port(k.src, k.sport) + " > " +
		       host_port(k.dst, k.dport);
	};
	std::vector<FlowView> out;
	for (auto &[k, f] : impl_->flows) {
		if (k != f->orig)
			continue;
		FlowView v{fmt(f->orig), fmt(f->reply), f->state, f->kind, f->pe.empty() ? f->server : f->pe, "", f->generation,
			   f->expires};
		if (f->kind != LG_DEST_ROUTED)
			v.backend = host_port(f->backend.addr, f->backend.port);
		out.push_back(v);
	}
	return out;
}

} // namespace lg
