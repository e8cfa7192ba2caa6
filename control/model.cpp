#include "model.hpp"

#include <algorithm>
#include <unordered_map>
#include <charconv>
#include <cctype>
#include <cstdio>

extern "C" {
#include "lg_hash.h"
#include "lg_limits.h"
}

namespace lg {

static std::vector<std::string> one_or_many(const std::string &one, const std::vector<std::string> &many)
{
	if (!many.empty())
		return many;
	return {one.empty() ? std::string("*") : one};
}

std::vector<std::string> SecurityRule::sources() const { return one_or_many(sourceAddressPrefix, sourceAddressPrefixes); }
std::vector<std::string> SecurityRule::destinations() const { return one_or_many(destinationAddressPrefix, destinationAddressPrefixes); }
std::vector<std::string> SecurityRule::sourcePorts() const { return one_or_many(sourcePortRange, sourcePortRanges); }
std::vector<std::string> SecurityRule::destinationPorts() const { return one_or_many(destinationPortRange, destinationPortRanges); }

static SecurityRule default_rule(const char *name, int prio, const char *dir, const char *access,
				 const char *src, const char *dst, const char *desc)
{
	SecurityRule r;
	r.name = name;
	r.priority = prio;
	r.direction = dir;
	r.access = access;
	r.protocol = "*";
	r.sourceAddressPrefix = src;
	r.destinationAddressPrefix = dst;
	r.sourcePortRange = "*";
	r.destinationPortRange = "*";
	r.description = desc;
	return r;
}

std::vector<SecurityRule> default_security_rules()
{
	return {
		default_rule("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork",
			     "Allow inbound traffic from all VMs in VNET"),
		default_rule("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*",
			     "Allow inbound traffic from azure load balancer"),
		default_rule("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*", "Deny all inbound traffic"),
		default_rule("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork",
			     "Allow outbound traffic from all VMs to all VMs in VNET"),
		default_rule("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet",
			     "Allow outbound traffic from all VMs to Internet"),
		default_rule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*", "Deny all outbound traffic"),
	};
}

std::vector<std::pair<uint16_t, uint16_t>> port_ranges(const std::vector<std::string> &specs)
{
	std::vector<std::pair<uint16_t, uint16_t>> out;
	for (auto &s : specs) {
		if (s == "*") {
			out.push_back({0, 65535});
			continue;
		}
		auto dash = s.find('-');
		unsigned lo = 0, hi = 0;
		std::from_chars(s.data(), s.data() + (dash == std::string::npos ? s.size() : dash), lo);
		hi = lo;
		if (dash != std::string::npos)
			std::from_chars(s.data() + dash + 1, s.data() + s.size(), hi);
		out.push_back({uint16_t(lo), uint16_t(hi)});
	}
	return out;
}

bool Subnet::has_sql_endpoint() const
{
	return std::find(serviceEndpoints.begin(), serviceEndpoints.end(), "Microsoft.Sql") != serviceEndpoints.end();
}

// ARM names are case-insensitive (and case-preserving): "Web" names the NSG
// "web".
template <typename V>
static auto *find_named(V &v, const std::string &n)
{
	auto it = std::find_if(v.begin(), v.end(), [&](auto &o) { return iequals(o.name, n); });
	return it == v.end() ? nullptr : &*it;
}

const Subnet *VirtualNetwork::subnet(const std::string &n) const { return find_named(subnets, n); }
Subnet *VirtualNetwork::subnet(const std::string &n) { return find_named(subnets, n); }

std::string lowercase(std::string v)
{
	std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return char(std::tolower(c)); });
	return v;
}

bool iequals(std::string_view a, std::string_view b)
{
	return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
		       return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
	       });
}

const ServiceTag *ServiceTags::find(const std::string &name) const
{
	for (auto &t : values)
		if (iequals(t.name, name))
			return &t;
	return nullptr;
}

const VirtualNetwork *State::vnet(const std::string &n) const { return find_named(virtualNetworks, n); }
VirtualNetwork *State::vnet(const std::string &n) { return find_named(virtualNetworks, n); }
const NetworkSecurityGroup *State::nsg(const std::string &n) const { return find_named(networkSecurityGroups, n); }
NetworkSecurityGroup *State::nsg(const std::string &n) { return find_named(networkSecurityGroups, n); }
const NetworkInterface *State::nic(const std::string &n) const { return find_named(networkInterfaces, n); }
const PrivateEndpoint *State::private_endpoint(const std::string &n) const { return find_named(privateEndpoints, n); }
PrivateEndpoint *State::private_endpoint(const std::string &n) { return find_named(privateEndpoints, n); }
const MySqlServer *State::server(const std::string &n) const { return find_named(servers, n); }
MySqlServer *State::server(const std::string &n) { return find_named(servers, n); }

// Calls f(reference, the name of the object it finds) for every reference
// that finds one. Names are looked up in hash maps of their lower-case
// spellings: a state of thousands of NICs and NSGs is walked in linear time.
template <class F>
static void each_reference(State &s, F f)
{
	auto lower = lowercase;
	// Later duplicates do not replace earlier ones, as find_named finds the first.
	auto index = [&](auto &coll) {
		std::unordered_map<std::string, const std::string *> m;
		for (auto &o : coll)
			m.emplace(lower(o.name), &o.name);
		return m;
	};
	auto nsgs = index(s.networkSecurityGroups), servers = index(s.servers);
	std::unordered_map<std::string, VirtualNetwork *> vnets;
	for (auto &v : s.virtualNetworks)
		vnets.emplace(lower(v.name), &v);
	auto canon = [&](std::string &ref, const auto &m) {
		if (ref.empty())
			return;
		if (auto it = m.find(lower(ref)); it != m.end())
			f(ref, *it->second);
	};
	auto vnet_of = [&](std::string &ref) -> VirtualNetwork * {
		auto it = ref.empty() ? vnets.end() : vnets.find(lower(ref));
		if (it == vnets.end())
			return nullptr;
		f(ref, it->second->name);
		return it->second;
	};
	for (auto &v : s.virtualNetworks) {
		for (auto &sn : v.subnets)
			canon(sn.networkSecurityGroup, nsgs);
		for (auto &p : v.peerings)
			vnet_of(p);
	}
	for (auto &g : s.localNetworkGateways)
		for (auto &v : g.virtualNetworks)
			vnet_of(v);
	auto subnet = [&](std::string &vnet, std::string &sn) {
		if (VirtualNetwork *v = vnet_of(vnet))
			if (Subnet *x = v->subnet(sn)) // a VNet has few subnets
				f(sn, x->name);
	};
	for (auto &n : s.networkInterfaces) {
		canon(n.networkSecurityGroup, nsgs);
		subnet(n.vnet, n.subnet);
	}
	for (auto &pe : s.privateEndpoints) {
		subnet(pe.vnet, pe.subnet);
		canon(pe.server, servers);
	}
	for (auto &m : s.servers)
		for (auto &r : m.virtualNetworkRules)
			subnet(r.vnet, r.subnet);
}

void canonical_references(State &s)
{
	each_reference(s, [](std::string &ref, const std::string &name) { ref = name; });
}

bool references_canonical(const State &s)
{
	bool same = true;
	// Reads only: the callback writes nothing.
	each_reference(const_cast<State &>(s), [&](std::string &ref, const std::string &name) { same = same && ref == name; });
	return same;
}

static uint32_t hash_string(const std::string &s, uint32_t seed)
{
	std::vector<uint32_t> w((s.size() + 3) / 4, 0);
	for (size_t i = 0; i < s.size(); i++)
		w[i / 4] |= uint32_t(uint8_t(s[i])) << (8 * (i % 4));
	return lg_jhash2(w.data(), uint32_t(w.size()), seed + uint32_t(s.size()));
}

std::vector<std::string> connected_peers(const State &s, const VirtualNetwork &v)
{
	std::vector<std::string> out;
	for (const auto &p : v.peerings)
		if (const VirtualNetwork *pv = s.vnet(p))
			if (std::find(pv->peerings.begin(), pv->peerings.end(), v.name) != pv->peerings.end())
				out.push_back(p);
	return out;
}

uint32_t effective_vni(const VirtualNetwork &v)
{
	if (v.vni)
		return *v.vni;
	// 0 means "no VNet" on an interface, so derived VNIs start at 1.
	return 1 + hash_string(v.name, 0x766e6574u) % LG_VNI_MAX;
}

std::string default_connection_name(const std::string &endpoint, const std::string &server)
{
	// Of the names in lower case: they are case-insensitive, and an
	// endpoint read with its server spelled otherwise names the same PEC.
	std::string key = lowercase(endpoint + "/" + server);
	uint32_t h[4];
	for (uint32_t i = 0; i < 4; i++)
		h[i] = hash_string(key, 0x70656300u + i);
	char buf[64];
	std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%04x%08x", h[0], h[1] >> 16, (h[1] & 0x0fff) | 0x4000,
		      (h[2] >> 16 & 0x3fff) | 0x8000, h[2] & 0xffff, h[3]);
	return endpoint + "." + buf;
}

PrivateEndpoint make_private_endpoint(const std::string &name, const std::string &vnet, const std::string &subnet,
				      const std::string &ip, const std::string &server)
{
	PrivateEndpoint pe;
	pe.name = name;
	pe.vnet = vnet;
	pe.subnet = subnet;
	pe.privateIPAddress = ip;
	pe.server = server;
	pe.connectionName = default_connection_name(name, server);
	return pe;
}

} // namespace lg
