#include "validate.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "net.hpp"

extern "C" {
#include "lg_limits.h"
}

namespace lg {

namespace {

constexpr size_t kIpConfigsMax = 256;        // Azure's limit of ipConfigurations per NIC
constexpr size_t kNameMax = 80;             // Azure's limit for NSG, rule, NIC, ... names
constexpr size_t kConnectionNameMax = 128;  // "<endpoint>.<uuid>" must fit
constexpr size_t kServerRuleNameMax = 128;  // firewall and VNet rule names
constexpr int kPortMax = 65535;

// Letters, digits, '_', '.' and '-' (ASCII: the C locale).
bool name_chars_ok(std::string_view n)
{
	return std::all_of(n.begin(), n.end(), [](char c) {
		return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
	});
}

bool one_of(const std::string &v, std::initializer_list<const char *> words)
{
	return std::any_of(words.begin(), words.end(), [&](const char *w) { return v == w; });
}

std::string at(const std::string &coll, const std::string &name, size_t i)
{
	return name.empty() ? coll + "[" + std::to_string(i) + "]" : coll + "/" + name;
}

size_t utf8_length(const std::string &s)
{
	// Continuation bytes are 10xxxxxx.
	auto lead = [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; };
	return size_t(std::count_if(s.begin(), s.end(), lead));
}

// Strictly decimal, no sign, no spaces, 0-65535.
std::optional<int> parse_port(std::string_view s)
{
	if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
		return std::nullopt;
	int v = 0;
	for (char c : s)
		v = v * 10 + (c - '0');
	if (v > kPortMax)
		return std::nullopt;
	return v;
}

// "*", "N" or "N-M"; the problem text, or nullopt when fine.
std::optional<std::string> port_problem(const std::string &t)
{
	if (t == "*")
		return std::nullopt;
	auto dash = t.find('-');
	if (dash == std::string::npos) {
		if (parse_port(t))
			return std::nullopt;
		return "'" + t + "' is not *, a port or a port range N-M (0-65535)";
	}
	auto lo = parse_port(std::string_view(t).substr(0, dash));
	auto hi = parse_port(std::string_view(t).substr(dash + 1));
	if (!lo || !hi)
		return "'" + t + "' is not *, a port or a port range N-M (0-65535)";
	if (*lo > *hi)
		return "'" + t + "' starts after it ends";
	return std::nullopt;
}

// A CIDR written with its length and without host bits.
std::optional<std::string> cidr_problem(const std::string &t, std::optional<Prefix> &out)
{
	bool host_bits = false;
	auto p = t.find('/') == std::string::npos ? std::nullopt : Prefix::parse(t, &host_bits);
	if (!p)
		return "'" + t + "' is not a CIDR (address/length)";
	if (host_bits)
		return "'" + t + "' has host bits set (did you mean " + p->str() + "?)";
	out = p;
	return std::nullopt;
}

// Special-use addresses: loopback, link-local, multicast, broadcast, "this
// network". Nothing at one is a server, backend or NIC a packet of a client
// can reach: the program hands multicast and broadcast to the host, finds no
// route to loopback or "this network", and link-local does not leave its
// link. `space`: Azure also refuses VNet address spaces that overlap the
// range ("this network" and the IPv6 unspecified and loopback addresses are
// refused as addresses only, so a low IPv6 space such as ::/64 stays valid).
struct SpecialRange {
	Prefix prefix;
	const char *what;
	bool space;
};
const std::vector<SpecialRange> &special_ranges()
{
	static const std::vector<SpecialRange> r = [] {
		struct Row {
			const char *cidr, *what;
			bool space;
		};
		std::vector<SpecialRange> v;
		for (Row row : {Row{"0.0.0.0/8", "\"this network\"", false}, Row{"127.0.0.0/8", "loopback", true},
				Row{"169.254.0.0/16", "link-local", true}, Row{"224.0.0.0/4", "multicast", true},
				Row{"255.255.255.255/32", "broadcast", true}, Row{"::/128", "unspecified", false},
				Row{"::1/128", "loopback", false}, Row{"fe80::/10", "link-local", true},
				Row{"ff00::/8", "multicast", true}})
			v.push_back({*Prefix::parse(row.cidr), row.what, row.space});
		return v;
	}();
	return r;
}

// "loopback (127.0.0.0/8)" when `p` overlaps a special range (of those
// refused in address spaces, for a `space`).
std::optional<std::string> special_use(const Prefix &p, bool space = false)
{
	for (const auto &r : special_ranges())
		if ((r.space || !space) && r.prefix.overlaps(p))
			return std::string(r.what) + " (" + r.prefix.str() + ")";
	return std::nullopt;
}

class Checker {
public:
	explicit Checker(const State &s) : s_(s) {}

	std::vector<std::string> run()
	{
		vnets();
		gateways();
		nsgs();
		nics();
		private_endpoints();
		servers();
		service_tags();
		return std::move(errs_);
	}

private:
	const State &s_;
	std::vector<std::string> errs_;
	// Parsed address spaces of the VNets that have valid ones, by name.
	std::map<std::string, std::vector<Prefix>> space_;

	void add(const std::string &path, const std::string &msg) { errs_.push_back(path + ": " + msg); }

	void name(const std::string &p, const std::string &n, size_t max = kNameMax, const std::string &field = "name")
	{
		if (n.empty())
			return add(p, field + " is required");
		if (n.size() > max)
			return add(p, field + " is " + std::to_string(n.size()) + " characters, longer than " +
					      std::to_string(max));
		if (!name_chars_ok(n))
			return add(p, field + " '" + n + "' may only contain letters, digits, '_', '.' and '-'");
		// Azure's rule for network resource names: '..' or '-x' would make
		// ids and FQDNs that read as something else.
		auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
		if (!alnum(n.front()) || !(alnum(n.back()) || n.back() == '_'))
			add(p, field + " '" + n + "' must begin with a letter or digit and end with a letter, digit or '_'");
	}

	template <class V>
	void unique_names(const std::string &coll, const V &items)
	{
		// Case-insensitive, as ARM names are.
		std::set<std::string> seen;
		for (size_t i = 0; i < items.size(); i++) {
			std::string k = lowercase(items[i].name);
			if (!k.empty() && !seen.insert(k).second)
				add(at(coll, items[i].name, i), "name is not unique");
		}
	}

	const Subnet *subnet_ref(const std::string &p, const char *field, const std::string &vnet, const std::string &subnet)
	{
		if (vnet.empty() || subnet.empty()) {
			add(p, std::string(field) + " is required");
			return nullptr;
		}
		const VirtualNetwork *v = s_.vnet(vnet);
		if (!v) {
			add(p, std::string(field) + ": VNet '" + vnet + "' does not exist");
			return nullptr;
		}
		const Subnet *sn = v->subnet(subnet);
		if (!sn)
			add(p, std::string(field) + ": subnet '" + vnet + "/" + subnet + "' does not exist");
		return sn;
	}

	void nsg_ref(const std::string &p, const std::string &nsg)
	{
		if (!nsg.empty() && !s_.nsg(nsg))
			add(p, "networkSecurityGroup '" + nsg + "' does not exist");
	}

	// A private IP: valid and inside its subnet. Returns the address when valid.
	std::optional<Addr> private_ip(const std::string &p, const std::string &ip, const Subnet *sn)
	{
		if (ip.empty()) {
			add(p, "privateIPAddress is required");
			return std::nullopt;
		}
		auto a = Addr::parse(ip);
		if (!a) {
			add(p, "privateIPAddress '" + ip + "' is not an IP address");
			return std::nullopt;
		}
		if (auto what = special_use(Prefix::host(*a)))
			add(p, "privateIPAddress " + ip + " is a special-use address: " + *what);
		if (sn) {
			auto pre = Prefix::parse(sn->addressPrefix);
			if (pre && !pre->contains(*a))
				add(p, "privateIPAddress " + ip + " is outside subnet " + sn->name + " (" + sn->addressPrefix + ")");
			else if (pre && azure_reserved(*pre, *a))
				add(p, "privateIPAddress " + ip + " is reserved by Azure in subnet " + sn->name + " (" +
					       sn->addressPrefix + "): the first four addresses and the last are");
		}
		return a;
	}

	// ---- VNets and subnets ----

	void vnets()
	{
		unique_names("virtualNetworks", s_.virtualNetworks);
		std::map<uint32_t, std::string> vnis;
		for (size_t i = 0; i < s_.virtualNetworks.size(); i++) {
			const VirtualNetwork &v = s_.virtualNetworks[i];
			std::string p = at("virtualNetworks", v.name, i);
			name(p, v.name);
			std::vector<Prefix> space;
			if (v.addressPrefixes.empty())
				add(p, "addressSpace.addressPrefixes must not be empty");
			for (const auto &t : v.addressPrefixes) {
				std::optional<Prefix> pre;
				if (auto e = cidr_problem(t, pre)) {
					add(p, "addressSpace.addressPrefixes " + *e);
					continue;
				}
				for (const auto &o : space)
					if (o.overlaps(*pre))
						add(p, "addressSpace.addressPrefixes " + t + " overlaps " + o.str());
				// Azure refuses these, and its platform address.
				static const Prefix kAzurePlatform = *Prefix::parse("168.63.129.16/32");
				if (auto what = special_use(*pre, true))
					add(p, "addressSpace.addressPrefixes " + t + " overlaps a reserved range: " + *what);
				else if (pre->overlaps(kAzurePlatform))
					add(p, "addressSpace.addressPrefixes " + t +
						       " holds 168.63.129.16, Azure's platform address (AzureLoadBalancer)");
				space.push_back(*pre);
			}
			space_[v.name] = space;
			if (v.vni && (*v.vni < 1 || *v.vni > LG_VNI_MAX)) {
				add(p, "vni " + std::to_string(*v.vni) + " is outside 1-" + std::to_string(LG_VNI_MAX));
			} else {
				uint32_t vni = effective_vni(v);
				auto [it, fresh] = vnis.emplace(vni, v.name);
				if (!fresh)
					add(p, "vni " + std::to_string(vni) + " is already used by VNet " + it->second +
						       (v.vni ? "" : " (derived from the name; set vni explicitly)"));
			}
			subnets(p, v, space);
		}
		// Peerings need every VNet's space, so they come second.
		for (size_t i = 0; i < s_.virtualNetworks.size(); i++) {
			const VirtualNetwork &v = s_.virtualNetworks[i];
			std::string p = at("virtualNetworks", v.name, i);
			std::set<std::string> seen;
			for (const auto &peer : v.peerings) {
				if (!seen.insert(peer).second) {
					add(p, "virtualNetworkPeerings: VNet '" + peer + "' is peered twice");
					continue;
				}
				if (peer == v.name) {
					add(p, "virtualNetworkPeerings: a VNet cannot peer with itself");
					continue;
				}
				if (!s_.vnet(peer)) {
					add(p, "virtualNetworkPeerings: VNet '" + peer + "' does not exist");
					continue;
				}
				// Azure refuses to peer overlapping address spaces.
				for (const auto &a : space_[v.name])
					for (const auto &b : space_[peer])
						if (a.overlaps(b))
							add(p, "virtualNetworkPeerings: address space " + a.str() +
								       " overlaps peered VNet " + peer + " (" + b.str() + ")");
			}
		}
	}

	void subnets(const std::string &vp, const VirtualNetwork &v, const std::vector<Prefix> &space)
	{
		unique_names(vp + "/subnets", v.subnets);
		std::vector<std::pair<Prefix, std::string>> taken;
		for (size_t i = 0; i < v.subnets.size(); i++) {
			const Subnet &sn = v.subnets[i];
			std::string p = at(vp + "/subnets", sn.name, i);
			name(p, sn.name);
			std::optional<Prefix> pre;
			if (sn.addressPrefix.empty()) {
				add(p, "addressPrefix is required");
			} else if (auto e = cidr_problem(sn.addressPrefix, pre)) {
				add(p, "addressPrefix " + *e);
			} else {
				bool inside = std::any_of(space.begin(), space.end(), [&](const Prefix &s) { return s.contains(*pre); });
				if (!inside && !space.empty())
					add(p, "addressPrefix " + sn.addressPrefix + " is outside the VNet address space");
				for (const auto &[o, oname] : taken)
					if (o.overlaps(*pre))
						add(p, "addressPrefix " + sn.addressPrefix + " overlaps subnet " + oname + " (" +
							       o.str() + ")");
				taken.emplace_back(*pre, sn.name);
			}
			nsg_ref(p, sn.networkSecurityGroup);
			std::set<std::string> eps;
			for (const auto &e : sn.serviceEndpoints) {
				if (!eps.insert(e).second)
					add(p, "serviceEndpoints: '" + e + "' is listed twice");
				if (e == "Microsoft.Sql")
					continue;
				if (iequals(e, "Microsoft.Sql"))
					add(p, "serviceEndpoints: '" + e + "' must be written Microsoft.Sql");
				else if (e.size() <= 10 || e.compare(0, 10, "Microsoft.") != 0)
					add(p, "serviceEndpoints: '" + e + "' is not a service endpoint (Microsoft.<Service>)");
			}
			if (!one_of(sn.privateEndpointNetworkPolicies, {"Enabled", "Disabled"}))
				add(p, "privateEndpointNetworkPolicies '" + sn.privateEndpointNetworkPolicies +
					       "' must be Enabled or Disabled");
		}
	}

	// ---- local network gateways ----

	void gateways()
	{
		unique_names("localNetworkGateways", s_.localNetworkGateways);
		for (size_t i = 0; i < s_.localNetworkGateways.size(); i++) {
			const LocalNetworkGateway &g = s_.localNetworkGateways[i];
			std::string p = at("localNetworkGateways", g.name, i);
			name(p, g.name);
			std::vector<Prefix> pres;
			for (const auto &t : g.addressPrefixes) {
				std::optional<Prefix> pre;
				if (auto e = cidr_problem(t, pre))
					add(p, "localNetworkAddressSpace.addressPrefixes " + *e);
				else
					pres.push_back(*pre);
			}
			std::set<std::string> seen;
			for (const auto &vn : g.virtualNetworks) {
				if (!seen.insert(vn).second) {
					add(p, "virtualNetworks: VNet '" + vn + "' is listed twice");
					continue;
				}
				if (!s_.vnet(vn)) {
					add(p, "virtualNetworks: VNet '" + vn + "' does not exist");
					continue;
				}
				// On-premises ranges become part of VirtualNetwork: they must not shadow the VNet.
				for (const auto &a : pres)
					for (const auto &b : space_[vn])
						if (a.overlaps(b))
							add(p, "localNetworkAddressSpace.addressPrefixes " + a.str() +
								       " overlaps VNet " + vn + " (" + b.str() + ")");
			}
		}
	}

	// ---- NSGs and rules ----

	bool known_tag(const std::string &t) const
	{
		return one_of(t, {"VirtualNetwork", "Internet", "AzureLoadBalancer"}) || s_.serviceTags.find(t);
	}

	void address(const std::string &p, const char *field, const std::string &v)
	{
		if (v.empty() || v == "*")
			return;
		if (v.find('/') != std::string::npos) {
			if (!Prefix::parse(v))
				add(p, std::string(field) + " '" + v + "' is not a valid CIDR");
			return;
		}
		if (Addr::parse(v) || known_tag(v))
			return;
		for (const char *b : {"VirtualNetwork", "Internet", "AzureLoadBalancer"})
			if (iequals(v, b))
				return add(p, std::string(field) + " '" + v + "' must be written " + b);
		add(p, std::string(field) + " '" + v + "' is not *, an IP, a CIDR or a known service tag");
	}

	void address_list(const std::string &p, const char *field, const char *singular, const std::vector<std::string> &vs)
	{
		for (const auto &v : vs)
			if (!Prefix::parse(v))
				add(p, std::string(field) + ": '" + v + "' is not an IP or CIDR (a service tag or * goes in " +
					       singular + ")");
	}

	void ports(const std::string &p, const char *field, const std::string &one, const char *plural,
		   const std::vector<std::string> &many)
	{
		if (!one.empty())
			if (auto e = port_problem(one))
				add(p, std::string(field) + " " + *e);
		for (const auto &v : many)
			if (auto e = port_problem(v))
				add(p, std::string(plural) + ": " + *e);
	}

	void not_both(const std::string &p, const char *one, const std::string &a, const char *many,
		      const std::vector<std::string> &b)
	{
		if (!a.empty() && !b.empty())
			add(p, std::string(one) + " and " + many + " are both set; use one");
	}

	void rule(const std::string &p, const SecurityRule &r)
	{
		name(p, r.name, LG_RULE_NAME_MAX);
		if (r.priority < LG_PRIORITY_MIN || r.priority > LG_PRIORITY_MAX)
			add(p, "priority " + std::to_string(r.priority) + " is outside " + std::to_string(LG_PRIORITY_MIN) +
				       "-" + std::to_string(LG_PRIORITY_MAX));
		if (!one_of(r.direction, {"Inbound", "Outbound"}))
			add(p, "direction '" + r.direction + "' must be Inbound or Outbound");
		if (!one_of(r.access, {"Allow", "Deny"}))
			add(p, "access '" + r.access + "' must be Allow or Deny");
		if (!one_of(r.protocol, {"Tcp", "Udp", "Icmp", "Esp", "Ah", "*"}))
			add(p, "protocol '" + r.protocol + "' must be one of Tcp, Udp, Icmp, Esp, Ah, *");
		address(p, "sourceAddressPrefix", r.sourceAddressPrefix);
		address_list(p, "sourceAddressPrefixes", "sourceAddressPrefix", r.sourceAddressPrefixes);
		not_both(p, "sourceAddressPrefix", r.sourceAddressPrefix, "sourceAddressPrefixes", r.sourceAddressPrefixes);
		address(p, "destinationAddressPrefix", r.destinationAddressPrefix);
		address_list(p, "destinationAddressPrefixes", "destinationAddressPrefix", r.destinationAddressPrefixes);
		not_both(p, "destinationAddressPrefix", r.destinationAddressPrefix, "destinationAddressPrefixes",
			 r.destinationAddressPrefixes);
		ports(p, "sourcePortRange", r.sourcePortRange, "sourcePortRanges", r.sourcePortRanges);
		not_both(p, "sourcePortRange", r.sourcePortRange, "sourcePortRanges", r.sourcePortRanges);
		ports(p, "destinationPortRange", r.destinationPortRange, "destinationPortRanges", r.destinationPortRanges);
		not_both(p, "destinationPortRange", r.destinationPortRange, "destinationPortRanges",
			 r.destinationPortRanges);
		if (utf8_length(r.description) > LG_RULE_DESCRIPTION_MAX)
			add(p, "description is " + std::to_string(utf8_length(r.description)) + " characters, longer than " +
				       std::to_string(LG_RULE_DESCRIPTION_MAX));
	}

	static size_t literal_prefixes(const std::vector<std::string> &vs)
	{
		return size_t(std::count_if(vs.begin(), vs.end(), [](const std::string &v) { return Prefix::parse(v).has_value(); }));
	}

	void nsgs()
	{
		unique_names("networkSecurityGroups", s_.networkSecurityGroups);
		for (size_t i = 0; i < s_.networkSecurityGroups.size(); i++) {
			const NetworkSecurityGroup &n = s_.networkSecurityGroups[i];
			std::string p = at("networkSecurityGroups", n.name, i);
			name(p, n.name);
			if (n.defaultSecurityRules != default_security_rules())
				add(p, "defaultSecurityRules must be the six default rules (they cannot be changed or deleted)");
			if (n.securityRules.size() > LG_MAX_RULES_PER_NSG)
				add(p, "securityRules has " + std::to_string(n.securityRules.size()) +
					       " rules, more than the limit of " + std::to_string(LG_MAX_RULES_PER_NSG));
			unique_names(p + "/securityRules", n.securityRules);
			std::map<std::pair<std::string, int>, std::string> prios;
			size_t src = 0, dst = 0;
			for (size_t k = 0; k < n.securityRules.size(); k++) {
				const SecurityRule &r = n.securityRules[k];
				std::string rp = at(p + "/securityRules", r.name, k);
				rule(rp, r);
				auto [it, fresh] = prios.emplace(std::pair{r.direction, r.priority}, r.name);
				if (!fresh)
					add(rp, "priority " + std::to_string(r.priority) + " is already used by " + r.direction +
							" rule " + it->second);
				src += literal_prefixes(r.sources());
				dst += literal_prefixes(r.destinations());
			}
			if (src > LG_MAX_PREFIXES_PER_SIDE)
				add(p, std::to_string(src) + " source prefixes, more than the limit of " +
					       std::to_string(LG_MAX_PREFIXES_PER_SIDE) + " per NSG");
			if (dst > LG_MAX_PREFIXES_PER_SIDE)
				add(p, std::to_string(dst) + " destination prefixes, more than the limit of " +
					       std::to_string(LG_MAX_PREFIXES_PER_SIDE) + " per NSG");
		}
	}

	// ---- NICs and private endpoints ----

	// Addresses taken per VNet, by the object that took them first.
	std::map<std::pair<std::string, Addr>, std::string> ips_;

	void take_ip(const std::string &p, const std::string &vnet, const Addr &a, const std::string &ip,
		     const std::string &owner)
	{
		auto [it, fresh] = ips_.emplace(std::pair{vnet, a}, owner);
		if (!fresh)
			add(p, "privateIPAddress " + ip + " is already used by " + it->second + " in VNet " + vnet);
	}

	void nics()
	{
		unique_names("networkInterfaces", s_.networkInterfaces);
		for (size_t i = 0; i < s_.networkInterfaces.size(); i++) {
			const NetworkInterface &n = s_.networkInterfaces[i];
			std::string p = at("networkInterfaces", n.name, i);
			name(p, n.name);
			const Subnet *sn = subnet_ref(p, "subnet", n.vnet, n.subnet);
			auto a = private_ip(p, n.privateIPAddress, sn);
			if (a && sn)
				take_ip(p, n.vnet, *a, n.privateIPAddress, "network interface " + n.name);
			if (n.secondaryIPAddresses.size() + 1 > kIpConfigsMax)
				add(p, std::to_string(n.secondaryIPAddresses.size() + 1) +
					       " ipConfigurations, more than Azure's limit of " + std::to_string(kIpConfigsMax));
			for (size_t k = 0; k < n.secondaryIPAddresses.size(); k++) {
				const std::string &ip = n.secondaryIPAddresses[k];
				// Named by its address (the input's order is not kept).
				std::string cp = p + ", secondary address " + (ip.empty() ? std::to_string(k + 1) : ip);
				auto b = private_ip(cp, ip, sn);
				if (b && sn)
					take_ip(cp, n.vnet, *b, ip, "network interface " + n.name);
			}
			nsg_ref(p, n.networkSecurityGroup);
		}
	}

	void private_endpoints()
	{
		unique_names("privateEndpoints", s_.privateEndpoints);
		if (s_.privateEndpoints.size() > LG_MAX_PRIVATE_ENDPOINTS)
			add("privateEndpoints", "has " + std::to_string(s_.privateEndpoints.size()) +
							" private endpoints, more than the limit of " +
							std::to_string(LG_MAX_PRIVATE_ENDPOINTS));
		std::map<std::pair<std::string, std::string>, std::string> conns;
		// (server, endpoint) of every connection that is addressed.
		std::set<std::pair<std::string, std::string>> connected;
		// Names in lower case: a connection is looked up case-insensitively.
		auto lower = lowercase;
		for (const auto &pe : s_.privateEndpoints)
			if (pe.connectionPresent)
				connected.emplace(lower(pe.server), lower(pe.name));
		for (size_t i = 0; i < s_.privateEndpoints.size(); i++) {
			const PrivateEndpoint &pe = s_.privateEndpoints[i];
			std::string p = at("privateEndpoints", pe.name, i);
			name(p, pe.name);
			const Subnet *sn = subnet_ref(p, "subnet", pe.vnet, pe.subnet);
			auto a = private_ip(p, pe.privateIPAddress, sn);
			if (a && sn)
				take_ip(p, pe.vnet, *a, pe.privateIPAddress, "private endpoint " + pe.name);
			if (pe.server.empty())
				add(p, "privateLinkServiceId (the target server) is required");
			else if (!s_.server(pe.server))
				add(p, "privateLinkServiceId: server '" + pe.server + "' does not exist");
			if (pe.groupIds != std::vector<std::string>{"mysqlServer"})
				add(p, "groupIds must be [\"mysqlServer\"]");
			if (pe.connectionName.empty()) {
				add(p, "connectionName is required");
			} else {
				name(p, pe.connectionName, kConnectionNameMax, "connectionName");
				auto [it, fresh] = conns.emplace(std::pair{lower(pe.server), lower(pe.connectionName)}, pe.name);
				if (!fresh)
					add(p, "connectionName '" + pe.connectionName + "' is already used by private endpoint " +
						       it->second + " on server " + pe.server);
				// A connection is addressed by its name or its endpoint's
				// name (docs/agent.md): one that takes another endpoint's
				// name would be approved in that endpoint's stead.
				// (Deleted connections are not addressed.)
				if (pe.connectionPresent && !iequals(pe.connectionName, pe.name) &&
				    connected.count({lower(pe.server), lower(pe.connectionName)}))
					add(p, "connectionName '" + pe.connectionName + "' is the name of private endpoint " +
						       pe.connectionName + " on server " + pe.server +
						       "; a connection may not take another endpoint's name");
			}
			const std::string &st = pe.connectionState.status;
			if (!one_of(st, {"Pending", "Approved", "Rejected", "Disconnected"}))
				add(p, "privateLinkServiceConnectionState.status '" + st +
					       "' must be Pending, Approved, Rejected or Disconnected");
			else if (!pe.connectionPresent && st != "Disconnected")
				add(p, "privateLinkServiceConnectionState.status must be Disconnected once its connection is deleted");
		}
	}

	// ---- servers ----

	void servers()
	{
		unique_names("mysqlServers", s_.servers);
		if (s_.servers.size() > LG_MAX_SERVERS)
			add("mysqlServers", "has " + std::to_string(s_.servers.size()) + " servers, more than the limit of " +
						    std::to_string(LG_MAX_SERVERS));
		std::map<Addr, std::string> public_ips;
		for (size_t i = 0; i < s_.servers.size(); i++) {
			const MySqlServer &m = s_.servers[i];
			std::string p = at("mysqlServers", m.name, i);
			name(p, m.name);
			if (m.fullyQualifiedDomainName.empty())
				add(p, "fullyQualifiedDomainName is required");
			if (m.publicIp.empty()) {
				add(p, "publicIp is required");
			} else if (auto a = Addr::parse(m.publicIp); !a) {
				add(p, "publicIp '" + m.publicIp + "' is not an IP address");
			} else if (auto [it, fresh] = public_ips.emplace(*a, m.name); !fresh) {
				add(p, "publicIp " + m.publicIp + " is already used by server " + it->second);
			} else if (auto what = special_use(Prefix::host(*a))) {
				add(p, "publicIp " + m.publicIp + " is a special-use address: " + *what);
			} else {
				// A public IP is matched before the destination's NSGs: one
				// inside a VNet would take that address's traffic (and its
				// ARP) past them.
				for (const auto &[key, owner] : ips_)
					if (key.second == *a)
						add(p, "publicIp " + m.publicIp + " is already used by " + owner + " in VNet " +
							       key.first);
				for (const VirtualNetwork &v : s_.virtualNetworks)
					for (const std::string &pre : v.addressPrefixes)
						if (auto px = Prefix::parse(pre); px && px->contains(*a))
							add(p, "publicIp " + m.publicIp + " is inside the address space " + pre +
								       " of VNet " + v.name);
				// A connected gateway's on-premises prefixes are part of
				// VirtualNetwork too.
				for (const LocalNetworkGateway &g : s_.localNetworkGateways) {
					if (g.virtualNetworks.empty())
						continue;
					for (const std::string &pre : g.addressPrefixes)
						if (auto px = Prefix::parse(pre); px && px->contains(*a))
							add(p, "publicIp " + m.publicIp + " is inside the on-premises prefix " + pre +
								       " of local network gateway " + g.name);
				}
			}
			if (!one_of(m.publicNetworkAccess, {"Enabled", "Disabled"}))
				add(p, "publicNetworkAccess '" + m.publicNetworkAccess + "' must be Enabled or Disabled");
			backends(p, m);
			firewall_rules(p, m);
			vnet_rules(p, m);
		}
	}

	void backends(const std::string &p, const MySqlServer &m)
	{
		if (m.backends.size() > LG_MAX_BACKENDS_PER_SERVER)
			add(p, "has " + std::to_string(m.backends.size()) + " backends, more than the limit of " +
				       std::to_string(LG_MAX_BACKENDS_PER_SERVER));
		std::set<std::pair<Addr, int>> seen;
		for (size_t k = 0; k < m.backends.size(); k++) {
			const Backend &b = m.backends[k];
			std::string f = "backends[" + std::to_string(k) + "]";
			auto a = Addr::parse(b.address);
			if (!a)
				add(p, f + ".address '" + b.address + "' is not an IP address");
			else if (auto what = special_use(Prefix::host(*a)))
				add(p, f + ".address " + b.address + " is a special-use address: " + *what);
			if (b.port < 1 || b.port > kPortMax)
				add(p, f + ".port " + std::to_string(b.port) + " is outside 1-65535");
			if (b.weight < 0 || b.weight > 65535)
				add(p, f + ".weight " + std::to_string(b.weight) + " is outside 0-65535");
			if (a && !seen.insert({*a, b.port}).second)
				add(p, f + ": " + b.address + " port " + std::to_string(b.port) + " is listed twice");
		}
	}

	void firewall_rules(const std::string &sp, const MySqlServer &m)
	{
		unique_names(sp + "/firewallRules", m.firewallRules);
		for (size_t k = 0; k < m.firewallRules.size(); k++) {
			const FirewallRule &r = m.firewallRules[k];
			std::string p = at(sp + "/firewallRules", r.name, k);
			name(p, r.name, kServerRuleNameMax);
			auto v4 = [&](const char *field, const std::string &t) -> std::optional<Addr> {
				auto a = Addr::parse(t);
				if (!a || !a->is_v4() || t.find(':') != std::string::npos) {
					add(p, std::string(field) + " '" + t + "' is not an IPv4 address (firewall rules are IPv4 only)");
					return std::nullopt;
				}
				return a;
			};
			auto lo = v4("startIpAddress", r.startIpAddress);
			auto hi = v4("endIpAddress", r.endIpAddress);
			if (lo && hi && lo->v4() > hi->v4())
				add(p, "startIpAddress " + r.startIpAddress + " is after endIpAddress " + r.endIpAddress);
		}
	}

	void vnet_rules(const std::string &sp, const MySqlServer &m)
	{
		unique_names(sp + "/virtualNetworkRules", m.virtualNetworkRules);
		for (size_t k = 0; k < m.virtualNetworkRules.size(); k++) {
			const VirtualNetworkRule &r = m.virtualNetworkRules[k];
			std::string p = at(sp + "/virtualNetworkRules", r.name, k);
			name(p, r.name, kServerRuleNameMax);
			const Subnet *sn = subnet_ref(p, "virtualNetworkSubnetId", r.vnet, r.subnet);
			if (sn && !sn->has_sql_endpoint())
				add(p, "virtualNetworkSubnetId: subnet " + r.vnet + "/" + r.subnet +
					       " has no Microsoft.Sql service endpoint");
		}
	}

	// ---- service tags ----

	void service_tags()
	{
		const auto &tags = s_.serviceTags.values;
		for (size_t i = 0; i < tags.size(); i++) {
			const ServiceTag &t = tags[i];
			std::string p = at("serviceTags", t.name, i);
			if (t.name.empty())
				add(p, "name is required");
			for (size_t k = 0; k < i; k++)
				if (!t.name.empty() && iequals(tags[k].name, t.name)) {
					add(p, "name is not unique (tag names are case-insensitive)");
					break;
				}
			for (const auto &a : t.addressPrefixes)
				if (a.find('/') == std::string::npos || !Prefix::parse(a))
					add(p, "addressPrefixes: '" + a + "' is not a valid CIDR");
		}
	}
};

} // namespace

std::vector<std::string> validate_all(const State &s) { return Checker(s).run(); }

Status validate(const State &s)
{
	auto errs = validate_all(s);
	if (errs.empty())
		return Ok{};
	return err(errs.front());
}

void fill_defaults(State &s)
{
	canonical_references(s);
	for (auto &n : s.networkSecurityGroups)
		if (n.defaultSecurityRules.empty())
			n.defaultSecurityRules = default_security_rules();
	for (auto &pe : s.privateEndpoints)
		if (pe.connectionName.empty())
			pe.connectionName = default_connection_name(pe.name, pe.server);
	for (auto &m : s.servers)
		if (m.fullyQualifiedDomainName.empty())
			m.fullyQualifiedDomainName = m.name + ".mysql.database.azure.com";
}

bool valid_dataplane_name(std::string_view n) { return !n.empty() && n.size() <= 64 && name_chars_ok(n); }

} // namespace lg
