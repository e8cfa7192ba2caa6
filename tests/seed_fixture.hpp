// The seed scenario shared by the evaluator, XDP and malformed-corpus tests:
// one host (the client VNet on template interface 1, backends and the
// Internet on 2) and one policy (a client VNet, West US and East US servers,
// a private endpoint). Each test takes these and adds what it needs on top,
// in its own file.
#pragma once

#include <cstdint>

#include "evaluator.hpp"
#include "model.hpp"
#include "packet.hpp"
#include "policy_helpers.hpp"

namespace lg::seed_fixture {

// Template ifindexes; dataplane tests map them to real ones (xdptest::realize).
inline constexpr uint32_t kClientIf = 1, kBackendIf = 2;
inline const Mac kClientIfMac{0x02, 0, 0, 0, 1, 1}, kBackendIfMac{0x02, 0, 0, 0, 2, 1};
inline const Mac kClientMac{0x02, 0xc1, 0, 0, 0, 0x0a}, kBackendMac{0x02, 0xb1, 0, 0, 0, 0x0b};
inline const Mac kGwMac{0x02, 0x99, 0, 0, 0, 1};
inline constexpr uint64_t kSec = 1000000000ull;

inline Addr A(const char *s) { return *Addr::parse(s); }

inline SecurityRule rule(const char *name, int prio, const char *dir, const char *access, const char *proto,
			 const char *src, const char *dst, const char *dport = "*")
{
	return testing::make_rule(name, prio, dir, access, proto, src, dst, dport);
}

// The host: two interfaces, routes to the client VNet (IPv4 and IPv6), to the
// backends and a default route (last) via the gateway 192.168.0.1; the seed's
// clients, IPv4 backends and the gateway as neighbours; 10.1.0.1 its own.
inline HostConfig seed_host()
{
	HostConfig h;
	h.interfaces = {{kClientIf, kClientIfMac, "client-vnet"}, {kBackendIf, kBackendIfMac, ""}};
	h.routes = {{*Prefix::parse("10.1.0.0/16"), kClientIf, {}},
		    {*Prefix::parse("fd00:1::/48"), kClientIf, {}},
		    {*Prefix::parse("192.168.0.0/16"), kBackendIf, {}},
		    {*Prefix::parse("0.0.0.0/0"), kBackendIf, A("192.168.0.1")}};
	h.neighbors = {{kClientIf, A("10.1.1.10"), kClientMac},     {kClientIf, A("10.1.2.10"), kClientMac},
		       {kClientIf, A("10.1.1.20"), kClientMac},     {kClientIf, A("fd00:1:0:1::10"), kClientMac},
		       {kBackendIf, A("192.168.10.11"), kBackendMac}, {kBackendIf, A("192.168.10.12"), kBackendMac},
		       {kBackendIf, A("192.168.20.11"), kBackendMac}, {kBackendIf, A("192.168.0.1"), kGwMac}};
	h.local_addresses = {A("10.1.0.1")};
	return h;
}

// The seed: a client VNet, West US and East US servers, a private endpoint.
inline State seed_state()
{
	State s;
	VirtualNetwork v;
	v.name = "client-vnet";
	v.addressPrefixes = {"10.1.0.0/16", "fd00:1::/48"};
	v.subnets = {{"clients", "10.1.1.0/24", "clients-nsg", {}, "Disabled"},
		     {"sqlep", "10.1.2.0/24", "", {"Microsoft.Sql"}, "Disabled"},
		     {"v6", "fd00:1:0:1::/64", "", {}, "Disabled"}};
	s.virtualNetworks.push_back(v);
	NetworkSecurityGroup n;
	n.name = "clients-nsg";
	n.defaultSecurityRules = default_security_rules();
	n.securityRules = {rule("allow-sql-westus", 100, "Outbound", "Allow", "Tcp", "*", "Sql.WestUS", "3306"),
			   rule("deny-sql", 200, "Outbound", "Deny", "*", "*", "Sql")};
	s.networkSecurityGroups.push_back(n);
	s.serviceTags.values = {
		{"AzureCloud", "AzureCloud", "", "", {"20.0.0.0/8", "40.64.0.0/10"}},
		{"Sql", "Sql", "", "AzureSQL", {"20.10.0.0/16"}},
		{"Sql.WestUS", "Sql.WestUS", "westus", "AzureSQL", {"20.10.1.0/24"}},
		{"Sql.EastUS", "Sql.EastUS", "eastus", "AzureSQL", {"20.10.2.0/24"}},
	};
	MySqlServer w;
	w.name = "westus-db";
	w.fullyQualifiedDomainName = "westus-db.mysql.database.azure.com";
	w.publicIp = "20.10.1.5";
	w.backends = {{"192.168.10.11", 3306, 1}, {"192.168.10.12", 3306, 1}};
	MySqlServer e;
	e.name = "eastus-db";
	e.fullyQualifiedDomainName = "eastus-db.mysql.database.azure.com";
	e.publicIp = "20.10.2.5";
	e.backends = {{"192.168.20.11", 3306, 1}};
	s.servers = {w, e};
	PrivateEndpoint pe = make_private_endpoint("pe-east", "client-vnet", "clients", "10.1.1.100", "eastus-db");
	s.privateEndpoints.push_back(pe);
	return s;
}

// Another tenant's VNet with the client VNet's address space (10.1.0.0/16,
// subnet apps 10.1.1.0/24) and an NSG that denies its outbound MySQL: the
// same addresses in two VNets (the fragment memory's tests).
inline void add_tenant_vnet(State &s, uint32_t vni)
{
	VirtualNetwork t;
	t.name = "tenant-vnet";
	t.addressPrefixes = {"10.1.0.0/16"};
	t.vni = vni;
	t.subnets = {{"apps", "10.1.1.0/24", "tenant-nsg", {}, "Disabled"}};
	s.virtualNetworks.push_back(t);
	NetworkSecurityGroup n;
	n.name = "tenant-nsg";
	n.defaultSecurityRules = default_security_rules();
	n.securityRules = {rule("no-mysql", 100, "Outbound", "Deny", "Tcp", "*", "*", "3306")};
	s.networkSecurityGroups.push_back(n);
}

// vm1's NIC (10.1.1.10 in clients) with an NSG of its own, vm-nsg, holding
// only the default rules: a second NSG on the client's path (the
// flushConnection-per-level tests).
inline void add_vm_nic_nsg(State &s)
{
	NetworkSecurityGroup nic;
	nic.name = "vm-nsg";
	nic.defaultSecurityRules = default_security_rules();
	s.networkSecurityGroups.push_back(nic);
	s.networkInterfaces.push_back({"vm1-nic", "client-vnet", "clients", "10.1.1.10", "vm-nsg"});
}

} // namespace lg::seed_fixture
