#include "random_policy.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>

#include "validate.hpp"

namespace lg::testing {
namespace {

struct Rng {
	std::mt19937_64 r;
	explicit Rng(uint64_t seed) : r(seed * 0x9e3779b97f4a7c15ull + 1) {}
	uint64_t below(uint64_t n) { return n ? r() % n : 0; }
	bool pct(int p) { return int(below(100)) < p; }
	template <typename V>
	auto &pick(V &v) { return v[below(std::size(v))]; }
};

std::string s(int v) { return std::to_string(v); }

std::string hex(unsigned v)
{
	char b[8];
	snprintf(b, sizeof b, "%x", v);
	return b;
}

// addr + delta in the 128-bit space; false on wrap.
bool add(Addr &a, int delta)
{
	Addr r = a;
	int carry = delta;
	for (int i = 15; i >= 0 && carry; i--) {
		int v = int(r.b[size_t(i)]) + carry;
		r.b[size_t(i)] = uint8_t(v & 0xff);
		carry = v >> 8; // arithmetic shift: -1 on borrow
	}
	if (carry)
		return false;
	a = r;
	return true;
}

Addr last_of(const Prefix &p)
{
	Addr a = p.addr;
	for (int i = 0; i < 16; i++) {
		int bits = p.len - 8 * i;
		if (bits >= 8)
			continue;
		a.b[size_t(i)] |= bits <= 0 ? 0xff : uint8_t(0xff >> bits);
	}
	return a;
}

Addr random_in(Rng &g, const Prefix &p)
{
	Addr a = p.addr;
	for (int i = 0; i < 16; i++) {
		int bits = p.len - 8 * i;
		if (bits >= 8)
			continue;
		uint8_t host = bits <= 0 ? 0xff : uint8_t(0xff >> bits);
		a.b[size_t(i)] |= uint8_t(g.below(256)) & host;
	}
	return a;
}

Prefix P(const std::string &t) { return *Prefix::parse(t); }

struct Builder {
	Rng g;
	State st;
	std::vector<std::string> nsg_names, tag_names;
	std::set<std::pair<std::string, Addr>> taken; // (vnet, ip)
	std::vector<Addr> ips;                          // interesting addresses
	std::vector<uint16_t> ports{3306, 22, 80, 443, 1433, 53, 0, 65535};

	explicit Builder(uint64_t seed) : g(seed) {}

	std::string v4_public_prefix()
	{
		static const int first[] = {20, 40, 52, 104, 13};
		int len = 12 + int(g.below(17));
		return s(first[g.below(5)]) + "." + s(int(g.below(256))) + "." + s(int(g.below(256))) + ".0/" + s(len);
	}
	std::string v6_public_prefix()
	{
		return "2603:" + hex(unsigned(g.below(0x40))) + ":" + hex(unsigned(g.below(0x10000))) + "::/" +
		       s(32 + int(g.below(33)));
	}

	void tags()
	{
		auto tag = [&](const std::string &name, int n4, int n6) {
			ServiceTag t{name, name, "", "", {}};
			for (int i = 0; i < n4; i++)
				t.addressPrefixes.push_back(v4_public_prefix());
			for (int i = 0; i < n6; i++)
				t.addressPrefixes.push_back(v6_public_prefix());
			st.serviceTags.values.push_back(t);
			tag_names.push_back(name);
		};
		tag("AzureCloud", 4 + int(g.below(12)), 1 + int(g.below(4)));
		tag("Sql", 2 + int(g.below(6)), int(g.below(3)));
		tag("Sql.WestUS", 1 + int(g.below(3)), int(g.below(2)));
		if (g.pct(60))
			tag("Storage", 1 + int(g.below(8)), int(g.below(3)));
		if (g.pct(30)) // a tag that holds the load balancer address too
			st.serviceTags.values.back().addressPrefixes.push_back("168.63.129.0/24");
		st.serviceTags.changeNumber = int64_t(g.below(1000));
		// Sql.WestUS inside Sql, as in the real file.
		auto &sql = st.serviceTags.values[1].addressPrefixes;
		st.serviceTags.values[2].addressPrefixes.push_back(sql.front());
	}

	void vnets()
	{
		int nv = 2 + int(g.below(3));
		int nn = 2 + int(g.below(4));
		for (int k = 0; k < nn; k++)
			nsg_names.push_back("nsg" + s(k));
		for (int i = 0; i < nv; i++) {
			VirtualNetwork v;
			v.name = "vnet" + s(i);
			v.vni = uint32_t(1000 + 7 * i);
			v.addressPrefixes = {"10." + s(i) + ".0.0/16"};
			bool v6 = g.pct(60);
			if (v6)
				v.addressPrefixes.push_back("fd00:" + s(i) + "::/48");
			int ns = 1 + int(g.below(4));
			for (int k = 0; k < ns; k++) {
				Subnet sn;
				sn.name = "sn" + s(k);
				bool six = v6 && g.pct(30);
				sn.addressPrefix = six ? "fd00:" + s(i) + ":0:" + s(k) + "::/64"
						       : "10." + s(i) + "." + s(k * 16) + ".0/" + s(20 + int(g.below(9)));
				if (!g.pct(25))
					sn.networkSecurityGroup = g.pick(nsg_names);
				if (g.pct(35))
					sn.serviceEndpoints.push_back("Microsoft.Sql");
				if (g.pct(10))
					sn.serviceEndpoints.push_back("Microsoft.Storage");
				sn.privateEndpointNetworkPolicies = g.pct(40) ? "Enabled" : "Disabled";
				v.subnets.push_back(sn);
			}
			// Rarely an IPv6 subnet that spans ::ffff:0:0/96 in the raw
			// 128-bit space (the compiler must keep IPv4 out of it).
			// /80 to /95 end where the IPv4 block ends.
			if (i == 0 && g.pct(10)) {
				static const char *const low[] = {"::/64", "::/80", "::ff00:0:0/88", "::fffe:0:0/95"};
				const char *p = low[g.below(4)];
				v.addressPrefixes.push_back(p);
				v.subnets.push_back({"low6", p, g.pick(nsg_names), {}, "Disabled"});
				if (g.pct(50))
					v.subnets.back().serviceEndpoints.push_back("Microsoft.Sql");
			}
			st.virtualNetworks.push_back(v);
		}
		for (int i = 0; i < nv; i++)
			for (int j = i + 1; j < nv; j++)
				if (g.pct(40)) {
					st.virtualNetworks[size_t(i)].peerings.push_back("vnet" + s(j));
					if (g.pct(80)) // else one-sided ("Initiated")
						st.virtualNetworks[size_t(j)].peerings.push_back("vnet" + s(i));
				}
		int ng = int(g.below(3));
		for (int k = 0; k < ng; k++) {
			LocalNetworkGateway gw;
			gw.name = "gw" + s(k);
			gw.addressPrefixes = {"172." + s(16 + k) + ".0.0/16"};
			if (g.pct(50))
				gw.addressPrefixes.push_back("fd10:" + s(k) + "::/48");
			for (int i = 0; i < nv; i++)
				if (g.pct(50) || (i == nv - 1 && gw.virtualNetworks.empty()))
					gw.virtualNetworks.push_back("vnet" + s(i));
			st.localNetworkGateways.push_back(gw);
		}
		for (auto &n : nsg_names) {
			NetworkSecurityGroup nsg;
			nsg.name = n;
			nsg.flushConnection = g.pct(30);
			st.networkSecurityGroups.push_back(nsg);
		}
	}

	// A free address in a subnet.
	std::optional<Addr> free_ip(const VirtualNetwork &v, const Subnet &sn)
	{
		Prefix p = P(sn.addressPrefix);
		for (int tries = 0; tries < 20; tries++) {
			Addr a = random_in(g, p);
			// (::fffe:0:0/95 also spans IPv4 addresses, which are in no IPv6 subnet.)
			if (azure_reserved(p, a) || !p.contains(a))
				continue;
			if (taken.insert({v.name, a}).second) {
				ips.push_back(a);
				return a;
			}
		}
		return std::nullopt;
	}

	void nics_and_pes()
	{
		int n = 0;
		for (auto &v : st.virtualNetworks)
			for (auto &sn : v.subnets) {
				int k = int(g.below(4));
				for (int i = 0; i < k; i++) {
					auto a = free_ip(v, sn);
					if (!a)
						continue;
					NetworkInterface nic;
					nic.name = "nic" + s(n++);
					nic.vnet = v.name;
					nic.subnet = sn.name;
					nic.privateIPAddress = a->str();
					if (g.pct(60))
						nic.networkSecurityGroup = g.pick(nsg_names);
					for (int j = g.pct(20) ? 1 + int(g.below(2)) : 0; j > 0; j--)
						if (auto b = free_ip(v, sn))
							nic.secondaryIPAddresses.push_back(b->str());
					st.networkInterfaces.push_back(nic);
				}
			}
		int npe = 1 + int(g.below(5));
		static const char *status[] = {"Approved", "Approved", "Pending", "Rejected", "Disconnected"};
		for (int i = 0; i < npe; i++) {
			auto &v = g.pick(st.virtualNetworks);
			auto &sn = g.pick(v.subnets);
			auto a = free_ip(v, sn);
			if (!a)
				continue;
			PrivateEndpoint pe;
			pe.name = "pe" + s(i);
			pe.vnet = v.name;
			pe.subnet = sn.name;
			pe.privateIPAddress = a->str();
			pe.server = g.pick(st.servers).name;
			pe.manualRequest = g.pct(30);
			pe.connectionState.status = g.pick(status);
			if (g.pct(15)) { // the PEC was deleted
				pe.connectionPresent = false;
				pe.connectionState.status = "Disconnected";
			}
			st.privateEndpoints.push_back(pe);
		}
	}

	void servers()
	{
		int n = 1 + int(g.below(3));
		std::set<Addr> pubs;
		for (int k = 0; k < n; k++) {
			MySqlServer m;
			m.name = "db" + s(k);
			Addr pub;
			int r = int(g.below(100));
			if (r < 40) // inside a Sql tag prefix
				pub = random_in(g, P(g.pick(st.serviceTags.values[1].addressPrefixes)));
			else if (r < 80)
				pub = *Addr::parse("20.200." + s(k) + ".5");
			else
				pub = *Addr::parse("2603:10:" + s(k) + "::5");
			if (!pubs.insert(pub).second)
				pub = *Addr::parse("20.201." + s(k) + ".9");
			pubs.insert(pub);
			m.publicIp = pub.str();
			ips.push_back(pub);
			int nb = int(g.below(5));
			for (int b = 0; b < nb; b++) {
				Backend be;
				be.address = g.pct(70) ? "192.168." + s(k) + "." + s(10 + b) : "fd99:" + s(k) + "::" + s(b + 1);
				be.port = g.pct(70) ? 3306 : 3307 + int(g.below(100));
				static const int weights[] = {0, 1, 1, 2, 3};
				be.weight = weights[g.below(5)];
				m.backends.push_back(be);
			}
			m.publicNetworkAccess = g.pct(75) ? "Enabled" : "Disabled";
			st.servers.push_back(m);
		}
	}

	void server_rules()
	{
		for (auto &m : st.servers) {
			int nf = int(g.below(5));
			for (int i = 0; i < nf; i++) {
				FirewallRule f;
				f.name = "fw" + s(i);
				int r = int(g.below(100));
				uint32_t lo = 0, hi = 0;
				if (r < 25) {
					// 0.0.0.0 - 0.0.0.0: allow Azure services
				} else if (r < 30) {
					hi = 0xffffffffu;
				} else {
					std::vector<Addr> v4;
					for (auto &a : ips)
						if (a.is_v4())
							v4.push_back(a);
					uint32_t c = v4.empty() ? 0x0a000001u : g.pick(v4).v4();
					lo = c - uint32_t(g.below(r < 60 ? 4 : 70000));
					hi = c + uint32_t(g.below(r < 60 ? 4 : 70000));
					if (hi < lo)
						std::swap(lo, hi);
					if (lo == 0 && hi == 0)
						hi = 1;
				}
				f.startIpAddress = Addr::from_v4(lo).str();
				f.endIpAddress = Addr::from_v4(hi).str();
				m.firewallRules.push_back(f);
			}
			int nr = 0;
			for (auto &v : st.virtualNetworks)
				for (auto &sn : v.subnets)
					if (sn.has_sql_endpoint() && g.pct(50))
						m.virtualNetworkRules.push_back({"vr" + s(nr++), v.name, sn.name});
		}
	}

	std::string cidr_near(const Addr &a)
	{
		bool v4 = a.is_v4();
		int len = v4 ? 16 + int(g.below(17)) : 48 + int(g.below(81));
		std::string text = a.str() + "/" + s(len);
		return g.pct(30) ? text : P(text).str(); // host bits are accepted and masked
	}

	std::string one_literal()
	{
		int r = int(g.below(100));
		if (r < 35 && !ips.empty())
			return g.pick(ips).str();
		if (r < 80 && !ips.empty())
			return cidr_near(g.pick(ips));
		static const char *wide[] = {"::/0", "::/64", "0.0.0.0/0", "fd00::/8", "2603::/16", "10.0.0.0/8",
					     "172.16.0.0/12", "168.63.129.16", "::/80", "::/96"};
		return g.pick(wide);
	}

	void address(std::string &one, std::vector<std::string> &many)
	{
		int r = int(g.below(100));
		if (r < 3) {
			// neither form: "*"
		} else if (r < 15) {
			one = "*";
		} else if (r < 40) {
			std::vector<std::string> t{"VirtualNetwork", "Internet", "AzureLoadBalancer"};
			t.insert(t.end(), tag_names.begin(), tag_names.end());
			one = g.pick(t);
			if (g.pct(10) && one != "VirtualNetwork" && one != "Internet" && one != "AzureLoadBalancer")
				std::transform(one.begin(), one.end(), one.begin(), [](char c) { return char(std::tolower(c)); });
		} else if (r < 80) {
			one = one_literal();
		} else {
			int n = 1 + int(g.below(4));
			for (int i = 0; i < n; i++)
				many.push_back(one_literal());
		}
	}

	std::string one_port()
	{
		int r = int(g.below(100));
		if (r < 40)
			return s(g.pick(ports));
		if (r < 85) {
			int a = int(g.below(65536)), b = int(g.below(65536));
			if (g.pct(50))
				b = a + int(g.below(100));
			if (b > 65535)
				b = 65535;
			if (a > b)
				std::swap(a, b);
			return s(a) + "-" + s(b);
		}
		if (r < 90)
			return "0-65535";
		return "*";
	}

	void port(std::string &one, std::vector<std::string> &many, int any_pct)
	{
		int r = int(g.below(100));
		if (r < any_pct) {
			one = g.pct(80) ? "*" : "";
		} else if (r < 80) {
			one = one_port();
			if (one == "*")
				one = "0-65535";
		} else if (r < 95) {
			int n = 1 + int(g.below(4));
			for (int i = 0; i < n; i++)
				many.push_back(one_port());
		} else { // every port, but no single entry is "any"
			int cut = 1 + int(g.below(65534));
			many = {"0-" + s(cut - 1), s(cut) + "-65535"};
		}
	}

	void rules()
	{
		static const char *protos[] = {"Tcp", "Tcp", "Tcp", "Udp", "Udp", "*", "*", "*", "Icmp", "Esp", "Ah"};
		for (auto &n : st.networkSecurityGroups) {
			int nr = int(g.below(16));
			std::set<std::pair<std::string, int>> prios;
			for (int i = 0; i < nr; i++) {
				SecurityRule r;
				r.name = "r" + s(i);
				r.direction = g.pct(50) ? "Inbound" : "Outbound";
				do
					r.priority = 100 + 10 * int(g.below(60));
				while (!prios.insert({r.direction, r.priority}).second);
				r.access = g.pct(50) ? "Allow" : "Deny";
				r.protocol = g.pick(protos);
				address(r.sourceAddressPrefix, r.sourceAddressPrefixes);
				address(r.destinationAddressPrefix, r.destinationAddressPrefixes);
				port(r.sourcePortRange, r.sourcePortRanges, 70);
				port(r.destinationPortRange, r.destinationPortRanges, 30);
				if (g.pct(20))
					r.description = "rule " + s(i);
				n.securityRules.push_back(r);
			}
		}
	}
};

RandomPolicy finish(Builder &b, uint64_t seed, const char *what)
{
	fill_defaults(b.st);
	if (auto v = validate(b.st); !v)
		throw std::logic_error(std::string(what) + "(" + std::to_string(seed) + ") is invalid: " + v.error());
	RandomPolicy p;
	p.state = std::move(b.st);
	uint32_t n = uint32_t(p.state.virtualNetworks.size());
	for (uint32_t i = 0; i <= n; i++) {
		std::string vnet = i < n ? p.state.virtualNetworks[i].name : "";
		Mac mac{0x02, 0, 0, 0, 0, uint8_t(i + 1)};
		p.ifaces.push_back({i + 1, vnet, mac});
		p.host.interfaces.push_back({i + 1, mac, vnet});
	}
	for (uint32_t i = 0; i < n; i++) {
		auto &v = p.state.virtualNetworks[i];
		for (auto &pre : v.addressPrefixes)
			p.host.routes.push_back({P(pre), i + 1, {}});
		for (auto &gw : p.state.localNetworkGateways)
			if (!gw.virtualNetworks.empty() && gw.virtualNetworks.front() == v.name)
				for (auto &pre : gw.addressPrefixes)
					p.host.routes.push_back({P(pre), i + 1, {}});
	}
	p.host.routes.push_back({any_v4(), n + 1, {}});
	p.host.routes.push_back({any_v6(), n + 1, {}});
	return p;
}

} // namespace

RandomPolicy random_policy(uint64_t seed)
{
	Builder b(seed);
	b.tags();
	b.vnets();
	b.servers();
	b.nics_and_pes();
	b.server_rules();
	b.rules();
	return finish(b, seed, "random_policy");
}

RandomPolicy scale_policy(int rules, int tag_prefixes, uint64_t seed)
{
	Builder b(seed);
	State &st = b.st;
	VirtualNetwork v;
	v.name = "scale";
	v.vni = 4242;
	v.addressPrefixes = {"10.0.0.0/16", "fd00::/48"};
	v.subnets = {{"a", "10.0.0.0/24", "big", {}, "Enabled"},
		     {"b", "10.0.1.0/24", "big", {"Microsoft.Sql"}, "Disabled"},
		     {"c", "fd00:0:0:1::/64", "big", {}, "Disabled"}};
	st.virtualNetworks.push_back(v);
	ServiceTag big{"Big", "Big", "", "", {}};
	std::set<std::string> seen;
	// Mostly disjoint prefixes anywhere in the unicast space, as a real
	// large tag (e.g. AzureCloud) is.
	while (int(big.addressPrefixes.size()) < tag_prefixes) {
		std::string p;
		if (b.g.pct(85))
			p = Addr::from_v4(uint32_t(1 + b.g.below(222)) << 24 | uint32_t(b.g.below(1u << 24))).str() + "/" +
			    s(20 + int(b.g.below(13)));
		else
			p = "2" + hex(unsigned(b.g.below(0x1000))) + ":" + hex(unsigned(b.g.below(0x10000))) + ":" +
			    hex(unsigned(b.g.below(0x10000))) + "::/" + s(36 + int(b.g.below(29)));
		Prefix pre = P(p); // canonical text: tags hold masked prefixes
		if (seen.insert(pre.str()).second)
			big.addressPrefixes.push_back(pre.str());
	}
	st.serviceTags.values = {big, {"AzureCloud", "AzureCloud", "", "", {"20.0.0.0/8", "2603::/16"}}};
	b.tag_names = {"Big", "AzureCloud"};
	MySqlServer m;
	m.name = "db";
	m.publicIp = "20.1.2.3";
	m.backends = {{"192.168.0.10", 3306, 1}, {"192.168.0.11", 3306, 2}, {"fd99::1", 3306, 1}};
	m.firewallRules = {{"azure", "0.0.0.0", "0.0.0.0"}, {"r1", "10.0.0.0", "10.0.0.127"}};
	m.virtualNetworkRules = {{"vr", "scale", "b"}};
	st.servers.push_back(m);
	b.ips.push_back(*Addr::parse(m.publicIp));
	for (int i = 0; i < 6; i++) {
		const Subnet &sn = v.subnets[size_t(i % 3)];
		auto a = b.free_ip(v, sn);
		NetworkInterface nic{"nic" + s(i), "scale", sn.name, a->str(), i % 2 ? "big" : ""};
		st.networkInterfaces.push_back(nic);
	}
	PrivateEndpoint pe;
	pe.name = "pe";
	pe.vnet = "scale";
	pe.subnet = "a";
	pe.privateIPAddress = b.free_ip(v, v.subnets[0])->str();
	pe.server = "db";
	st.privateEndpoints.push_back(pe);
	for (int i = 0; i < 50; i++) // tag members as interesting addresses
		b.ips.push_back(random_in(b.g, P(b.g.pick(big.addressPrefixes))));

	NetworkSecurityGroup n;
	n.name = "big";
	static const char *protos[] = {"Tcp", "Tcp", "Udp", "*", "Icmp", "Esp", "Ah"};
	static const char *kWide[] = {"*", "VirtualNetwork", "Internet", "AzureCloud"};
	for (int i = 0; i < rules; i++) {
		SecurityRule r;
		r.name = "rule" + s(i);
		r.priority = 100 + i * (3996 / std::max(rules, 1));
		r.direction = i % 2 ? "Inbound" : "Outbound";
		r.access = b.g.pct(50) ? "Allow" : "Deny";
		r.protocol = b.g.pick(protos);
		// Few literals per rule: the NSG stays under 4,000 per side.
		auto addr = [&](std::string &one, std::vector<std::string> &many) {
			int k = int(b.g.below(100));
			if (k < 3 || i < 2)
				one = "Big";
			else if (k < 15)
				one = b.g.pick(kWide);
			else if (k < 70)
				one = b.one_literal();
			else
				for (int j = 0; j < 3; j++)
					many.push_back(b.one_literal());
		};
		addr(r.sourceAddressPrefix, r.sourceAddressPrefixes);
		addr(r.destinationAddressPrefix, r.destinationAddressPrefixes);
		b.port(r.sourcePortRange, r.sourcePortRanges, 80);
		b.port(r.destinationPortRange, r.destinationPortRanges, 20);
		n.securityRules.push_back(r);
	}
	st.networkSecurityGroups.push_back(n);
	return finish(b, seed, "scale_policy");
}

// ------------------------------------------------------------------ tuples

uint32_t route_ifindex(const HostConfig &h, const Addr &dst)
{
	const HostRoute *best = nullptr;
	for (auto &r : h.routes)
		if (r.prefix.contains(dst) && (!best || r.prefix.len > best->prefix.len))
			best = &r;
	return best ? best->ifindex : 0;
}

// Addresses a kernel does not route like any other.
static bool special(const Addr &a)
{
	if (a.is_v4()) {
		uint32_t top = a.v4() >> 24;
		return top == 0 || top == 127 || top >= 224;
	}
	static const Addr unspec{}, loop = *Addr::parse("::1");
	return a == unspec || a == loop || a.b[0] == 0xff || (a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80);
}

TupleGen::TupleGen(const RandomPolicy &p, uint64_t seed, bool special_addresses)
	: rng_(seed ^ 0x7475706c65ull), special_(special_addresses)
{
	const State &st = p.state;
	auto point = [](Pool &pool, const Addr &a) { pool.points[a.is_v4() ? 0 : 1].push_back(a); };
	auto span = [](Pool &pool, const Prefix &pre) { pool.spans[pre.is_v4() ? 0 : 1].push_back({pre.addr, last_of(pre)}); };
	auto text = [&](Pool &pool, const std::string &t) {
		if (auto pre = Prefix::parse(t))
			span(pool, *pre);
	};
	for (auto &v : st.virtualNetworks) {
		vnets_.push_back(v.name);
		local_.emplace_back();
		for (auto &t : v.addressPrefixes)
			text(all_, t);
		for (auto &sn : v.subnets) {
			text(all_, sn.addressPrefix);
			text(local_.back(), sn.addressPrefix);
		}
	}
	auto local = [&](const std::string &vnet) -> Pool & {
		return local_[size_t(std::find(vnets_.begin(), vnets_.end(), vnet) - vnets_.begin())];
	};
	for (auto &gw : st.localNetworkGateways)
		for (auto &t : gw.addressPrefixes)
			text(all_, t);
	for (auto &tg : st.serviceTags.values)
		for (auto &t : tg.addressPrefixes)
			text(all_, t);
	for (auto &n : st.networkInterfaces)
		for (const std::string *ip : n.addresses()) {
			Addr a = *Addr::parse(*ip);
			point(all_, a);
			point(local(n.vnet), a);
		}
	for (auto &pe : st.privateEndpoints) {
		Addr a = *Addr::parse(pe.privateIPAddress);
		point(all_, a);
		point(local(pe.vnet), a);
		pe_ips_.push_back({pe.vnet, a});
	}
	for (auto &m : st.servers) {
		Addr pub = *Addr::parse(m.publicIp);
		point(all_, pub);
		pubs_.push_back(pub);
		for (auto &b : m.backends)
			point(all_, *Addr::parse(b.address));
		for (auto &f : m.firewallRules)
			all_.spans[0].push_back({*Addr::parse(f.startIpAddress), *Addr::parse(f.endIpAddress)});
	}
	point(all_, *Addr::parse("168.63.129.16"));
	ports_ = {3306, 0, 65535, 22, 80, 443, 1433};
	for (auto &n : st.networkSecurityGroups)
		for (auto &r : n.securityRules) {
			for (auto *v : {&r.sourceAddressPrefix, &r.destinationAddressPrefix})
				text(all_, *v);
			for (auto *v : {&r.sourceAddressPrefixes, &r.destinationAddressPrefixes})
				for (auto &t : *v)
					text(all_, t);
			std::vector<std::string> ps = r.sourcePorts(), pd = r.destinationPorts();
			ps.insert(ps.end(), pd.begin(), pd.end());
			for (auto &t : ps) {
				if (t == "*")
					continue;
				auto dash = t.find('-');
				int lo = std::stoi(t.substr(0, dash)), hi = dash == std::string::npos ? lo : std::stoi(t.substr(dash + 1));
				for (int q : {lo - 1, lo, hi, hi + 1})
					if (q >= 0 && q <= 65535)
						ports_.push_back(uint16_t(q));
			}
		}
}

Addr TupleGen::addr(const Pool &pool, bool v4, bool edges)
{
	int f = v4 ? 0 : 1;
	for (int tries = 0; tries < 16; tries++) {
		int r = int(below(100));
		Addr a;
		if (r < 35 && !pool.points[f].empty()) {
			a = pool.points[f][below(pool.points[f].size())];
		} else if (r < (edges ? 60 : 100) && !pool.spans[f].empty()) {
			const Span &sp = pool.spans[f][below(pool.spans[f].size())];
			// A member: random bits after the first byte where lo and hi differ.
			a = sp.lo;
			int i = 0;
			while (i < 16 && sp.lo.b[size_t(i)] == sp.hi.b[size_t(i)])
				i++;
			for (int k = i + 1; k < 16; k++)
				a.b[size_t(k)] = uint8_t(rng_());
			if (a > sp.hi || a < sp.lo)
				a = sp.lo;
		} else if (r < 88 && !pool.spans[f].empty()) {
			const Span &sp = pool.spans[f][below(pool.spans[f].size())];
			a = below(2) ? sp.lo : sp.hi;
			if (below(3) == 0)
				add(a, below(2) ? 1 : -1);
		} else if (v4) {
			a = Addr::from_v4(uint32_t(rng_()));
		} else {
			for (auto &b : a.b)
				b = uint8_t(rng_());
			if (below(2))
				a.b[0] = 0xfd;
		}
		if (a.is_v4() == v4 && (special_ || !special(a)))
			return a;
	}
	return v4 ? Addr::from_v4(0x0a000001u) : *Addr::parse("fd00::1");
}

uint16_t TupleGen::port()
{
	int r = int(below(100));
	if (r < 60)
		return ports_[below(ports_.size())];
	return uint16_t(rng_());
}

Tuple TupleGen::next()
{
	Tuple t;
	size_t vi = below(vnets_.size() + 1);
	if (below(100) < 85 && vi == vnets_.size())
		vi = below(vnets_.size()); // mostly from a VNet, sometimes the backend side
	t.vnet = vi < vnets_.size() ? vnets_[vi] : "";
	bool v4 = below(100) < 70;
	// Sources: mostly the VNet's own NICs and subnets (its NSGs apply).
	t.src = vi < vnets_.size() && below(100) < 55 ? addr(local_[vi], v4, false) : addr(all_, v4, true);
	int d = int(below(100));
	bool endpoint = false;
	if (d < 15 && !pe_ips_.empty()) {
		auto &[vn, a] = pe_ips_[below(pe_ips_.size())];
		if (a.is_v4() == v4) {
			t.dst = a;
			endpoint = true;
			if (below(100) < 80 && vn != t.vnet) { // the endpoint's own VNet, mostly
				t.vnet = vn;
				vi = size_t(std::find(vnets_.begin(), vnets_.end(), vn) - vnets_.begin());
				if (below(2))
					t.src = addr(local_[vi], v4, false);
			}
		}
	} else if (d < 30 && !pubs_.empty()) {
		Addr a = pubs_[below(pubs_.size())];
		if (a.is_v4() == v4) {
			t.dst = a;
			endpoint = true;
		}
	}
	if (!endpoint)
		t.dst = d < 60 && !local_.empty() ? addr(local_[below(local_.size())], v4, false) : addr(all_, v4, true);
	int p = int(below(100));
	static const uint8_t others[] = {47, 132, 2, 89};
	if (endpoint && p < 50)
		p = 0; // TCP, mostly to 3306
	t.proto = p < 45 ? kProtoTcp
		  : p < 65 ? kProtoUdp
		  : p < 75 ? (below(5) ? (v4 ? kProtoIcmp : kProtoIcmp6) : (v4 ? kProtoIcmp6 : kProtoIcmp))
		  : p < 82 ? kProtoEsp
		  : p < 88 ? kProtoAh
			   : others[below(4)];
	if (t.proto == kProtoTcp || t.proto == kProtoUdp) {
		t.sport = below(2) ? port() : uint16_t(32768 + below(28000));
		t.dport = below(100) < (endpoint ? 75 : 30) ? LG_MYSQL_PORT : port();
	}
	return t;
}

} // namespace lg::testing
