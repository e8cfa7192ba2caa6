// One test per validation rule of SPEC §2 (and the operator rules around
// them): each breaks a valid state in one place and checks the exact message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "arm_json.hpp"
#include "policy_helpers.hpp"
#include "validate.hpp"

extern "C" {
#include "lg_limits.h"
}

using namespace lg;

namespace {

using lg::testing::make_rule;

// A small valid state: two peered VNets, an on-premises range, an NSG, a NIC,
// a private endpoint and two servers.
State base()
{
	State s;
	VirtualNetwork client;
	client.name = "client-vnet";
	client.addressPrefixes = {"10.1.0.0/16"};
	client.vni = 101;
	Subnet clients;
	clients.name = "clients";
	clients.addressPrefix = "10.1.1.0/24";
	clients.networkSecurityGroup = "web";
	Subnet sqlep;
	sqlep.name = "sqlep";
	sqlep.addressPrefix = "10.1.2.0/24";
	sqlep.serviceEndpoints = {"Microsoft.Sql"};
	client.subnets = {clients, sqlep};
	client.peerings = {"hub-vnet"};
	VirtualNetwork hub;
	hub.name = "hub-vnet";
	hub.addressPrefixes = {"10.0.0.0/16"};
	hub.vni = 102;
	Subnet shared;
	shared.name = "shared";
	shared.addressPrefix = "10.0.1.0/24";
	hub.subnets = {shared};
	hub.peerings = {"client-vnet"};
	s.virtualNetworks = {client, hub};

	s.localNetworkGateways.push_back(LocalNetworkGateway{"onprem", {"172.16.0.0/16"}, {"client-vnet"}});

	NetworkSecurityGroup web;
	web.name = "web";
	web.securityRules = {make_rule("ssh", 1000, "Inbound", "Allow", "Tcp", "203.0.113.0/24", "*", "22"),
			     make_rule("mysql", 1000, "Outbound", "Allow", "Tcp", "*", "Sql.EastUS", "3306")};
	web.defaultSecurityRules = default_security_rules();
	s.networkSecurityGroups = {web};

	s.networkInterfaces.push_back(NetworkInterface{"vm1-nic", "client-vnet", "clients", "10.1.1.4", "web"});

	PrivateEndpoint pe = make_private_endpoint("pe-east", "client-vnet", "clients", "10.1.1.100", "eastus-db");
	s.privateEndpoints = {pe};

	MySqlServer west;
	west.name = "westus-db";
	west.fullyQualifiedDomainName = "westus-db.mysql.database.azure.com";
	west.publicIp = "104.42.238.70";
	west.backends = {Backend{"192.168.10.11", 3306, 1}, Backend{"192.168.10.12", 3306, 1}};
	west.firewallRules = {FirewallRule{"AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"},
			      FirewallRule{"office", "203.0.113.0", "203.0.113.255"}};
	west.virtualNetworkRules = {VirtualNetworkRule{"sqlep-subnet", "client-vnet", "sqlep"}};
	MySqlServer east;
	east.name = "eastus-db";
	east.fullyQualifiedDomainName = "eastus-db.mysql.database.azure.com";
	east.publicIp = "40.121.158.30";
	east.backends = {Backend{"192.168.20.11", 3306, 1}};
	s.servers = {west, east};

	s.serviceTags.changeNumber = 1;
	s.serviceTags.values = {ServiceTag{"AzureCloud", "AzureCloud", "", "", {"40.64.0.0/10", "104.40.0.0/13"}},
				ServiceTag{"Sql.WestUS", "Sql.WestUS", "westus", "AzureSQL", {"104.42.238.64/26"}},
				ServiceTag{"Sql.EastUS", "Sql.EastUS", "eastus", "AzureSQL", {"40.121.158.0/24"}}};
	return s;
}

SecurityRule &ssh(State &s) { return s.networkSecurityGroups[0].securityRules[0]; }
SecurityRule &mysql(State &s) { return s.networkSecurityGroups[0].securityRules[1]; }
Subnet &clients(State &s) { return s.virtualNetworks[0].subnets[0]; }
Subnet &sqlep(State &s) { return s.virtualNetworks[0].subnets[1]; }
MySqlServer &west(State &s) { return s.servers[0]; }
PrivateEndpoint &pe(State &s) { return s.privateEndpoints[0]; }

std::string joined(const std::vector<std::string> &v)
{
	std::string out;
	for (const auto &e : v)
		out += "\n  " + e;
	return out.empty() ? " (none)" : out;
}

// The state has exactly this error among its errors.
::testing::AssertionResult HasError(const State &s, const std::string &msg)
{
	auto errs = validate_all(s);
	for (const auto &e : errs)
		if (e == msg)
			return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "no error \"" << msg << "\"; got:" << joined(errs);
}

::testing::AssertionResult IsValid(const State &s)
{
	auto errs = validate_all(s);
	if (errs.empty())
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << "errors:" << joined(errs);
}

const std::string kSsh = "networkSecurityGroups/web/securityRules/ssh: ";

} // namespace

TEST(Validate, BaseStateIsValid) { EXPECT_TRUE(IsValid(base())); }

TEST(Validate, SeedStateIsValid)
{
	auto s = load_state_file(std::string(LG_FIXTURES_DIR) + "/seed_state.json");
	ASSERT_TRUE(s) << s.error();
	EXPECT_TRUE(IsValid(*s));
}

TEST(Validate, ValidateReturnsTheFirstError)
{
	State s = base();
	ssh(s).priority = 50;
	mysql(s).access = "Maybe";
	auto all = validate_all(s);
	ASSERT_EQ(all.size(), 2u) << joined(all);
	auto st = validate(s);
	ASSERT_FALSE(st);
	EXPECT_EQ(st.error(), all[0]);
	EXPECT_EQ(st.error(), kSsh + "priority 50 is outside 100-4096");
}

// ---- security rules ----

TEST(RuleName, EmptyIsAnError)
{
	State s = base();
	ssh(s).name = "";
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/securityRules[0]: name is required"));
}

TEST(RuleName, AtMost80Characters)
{
	State s = base();
	ssh(s).name = std::string(80, 'a');
	EXPECT_TRUE(IsValid(s));
	ssh(s).name = std::string(81, 'a');
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/securityRules/" + std::string(81, 'a') +
					": name is 81 characters, longer than 80"));
}

TEST(RuleName, OnlyWordCharactersDotsAndDashes)
{
	State s = base();
	ssh(s).name = "allow_ssh.v2-x";
	EXPECT_TRUE(IsValid(s));
	ssh(s).name = "allow ssh";
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/securityRules/allow ssh: name 'allow ssh' may only contain "
				"letters, digits, '_', '.' and '-'"));
}

TEST(RuleName, UniqueWithinNsg)
{
	State s = base();
	mysql(s).name = "ssh";
	EXPECT_TRUE(HasError(s, kSsh + "name is not unique"));
}

// Custom and default rules are separate collections, as in Azure: a custom
// rule may have a default rule's name (Bastion templates name theirs
// DenyAllInbound).
TEST(RuleName, ADefaultRulesNameIsAllowed)
{
	State s = base();
	ssh(s).name = "DenyAllInbound";
	EXPECT_TRUE(IsValid(s));
}

TEST(RulePriority, OutsideRange)
{
	State s = base();
	ssh(s).priority = 5000;
	EXPECT_TRUE(HasError(s, kSsh + "priority 5000 is outside 100-4096"));
	ssh(s).priority = 99;
	EXPECT_TRUE(HasError(s, kSsh + "priority 99 is outside 100-4096"));
	ssh(s).priority = LG_PRIORITY_MIN;
	mysql(s).priority = LG_PRIORITY_MAX;
	EXPECT_TRUE(IsValid(s));
}

TEST(RulePriority, UniquePerDirection)
{
	State s = base();
	// ssh (Inbound) and mysql (Outbound) already share 1000: that is fine.
	ASSERT_EQ(ssh(s).priority, mysql(s).priority);
	EXPECT_TRUE(IsValid(s));
	s.networkSecurityGroups[0].securityRules.push_back(
		make_rule("rdp", 1000, "Inbound", "Deny", "Tcp", "*", "*", "3389"));
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/securityRules/rdp: priority 1000 is already used by Inbound rule ssh"));
}

TEST(RuleEnums, Direction)
{
	State s = base();
	ssh(s).direction = "inbound"; // JSON input canonicalises; code must too
	EXPECT_TRUE(HasError(s, kSsh + "direction 'inbound' must be Inbound or Outbound"));
}

TEST(RuleEnums, Access)
{
	State s = base();
	ssh(s).access = "Permit";
	EXPECT_TRUE(HasError(s, kSsh + "access 'Permit' must be Allow or Deny"));
}

TEST(RuleEnums, Protocol)
{
	State s = base();
	for (const char *p : {"Tcp", "Udp", "Icmp", "Esp", "Ah", "*"}) {
		ssh(s).protocol = p;
		EXPECT_TRUE(IsValid(s)) << p;
	}
	ssh(s).protocol = "Gre";
	EXPECT_TRUE(HasError(s, kSsh + "protocol 'Gre' must be one of Tcp, Udp, Icmp, Esp, Ah, *"));
}

TEST(RuleAddress, StarIpCidrAndTagsAreAccepted)
{
	State s = base();
	for (const char *a : {"*", "10.0.0.1", "10.0.0.0/8", "2001:db8::1", "2001:db8::/32", "VirtualNetwork", "Internet",
			      "AzureLoadBalancer", "AzureCloud", "sql.westus"}) {
		ssh(s).sourceAddressPrefix = a;
		EXPECT_TRUE(IsValid(s)) << a;
	}
}

TEST(RuleAddress, UnknownServiceTag)
{
	State s = base();
	ssh(s).sourceAddressPrefix = "Storage.WestUS";
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefix 'Storage.WestUS' is not *, an IP, a CIDR or a known service tag"));
	ssh(s).sourceAddressPrefix = "Sql.WestUS,Sql.EastUS"; // one tag per field
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefix 'Sql.WestUS,Sql.EastUS' is not *, an IP, a CIDR or a known service tag"));
}

TEST(RuleAddress, TagsFromTheLoadedFileOnly)
{
	State s = base();
	mysql(s).destinationAddressPrefix = "Sql.EastUS";
	ASSERT_TRUE(IsValid(s));
	s.serviceTags.values.pop_back(); // drop Sql.EastUS
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/securityRules/mysql: destinationAddressPrefix 'Sql.EastUS' is not *, "
				"an IP, a CIDR or a known service tag"));
}

TEST(RuleAddress, BuiltInTagMustBeWrittenCanonically)
{
	State s = base();
	ssh(s).sourceAddressPrefix = "internet";
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefix 'internet' must be written Internet"));
}

TEST(RuleAddress, InvalidCidr)
{
	State s = base();
	ssh(s).destinationAddressPrefix = "10.0.0.0/33";
	EXPECT_TRUE(HasError(s, kSsh + "destinationAddressPrefix '10.0.0.0/33' is not a valid CIDR"));
}

TEST(RuleAddress, ListHoldsOnlyIpsAndCidrs)
{
	State s = base();
	ssh(s).sourceAddressPrefix = "";
	ssh(s).sourceAddressPrefixes = {"203.0.113.0/24", "198.51.100.7", "2001:db8::/48"};
	EXPECT_TRUE(IsValid(s));
	ssh(s).sourceAddressPrefixes = {"203.0.113.0/24", "Internet"};
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefixes: 'Internet' is not an IP or CIDR (a service tag or * goes in "
				       "sourceAddressPrefix)"));
	ssh(s).sourceAddressPrefixes = {"*"};
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefixes: '*' is not an IP or CIDR (a service tag or * goes in "
				       "sourceAddressPrefix)"));
	ssh(s).sourceAddressPrefixes = {};
	ssh(s).destinationAddressPrefix = "";
	ssh(s).destinationAddressPrefixes = {"Sql.EastUS"};
	EXPECT_TRUE(HasError(s, kSsh + "destinationAddressPrefixes: 'Sql.EastUS' is not an IP or CIDR (a service tag or * "
				       "goes in destinationAddressPrefix)"));
}

TEST(RuleAddress, NotBothSingularAndPlural)
{
	State s = base();
	ssh(s).sourceAddressPrefixes = {"198.51.100.0/24"};
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefix and sourceAddressPrefixes are both set; use one"));
	s = base();
	ssh(s).destinationAddressPrefixes = {"10.1.1.0/24"};
	EXPECT_TRUE(HasError(s, kSsh + "destinationAddressPrefix and destinationAddressPrefixes are both set; use one"));
}

TEST(RulePorts, FormsAndLists)
{
	State s = base();
	for (const char *p : {"*", "0", "22", "65535", "1024-65535", "80-80"}) {
		ssh(s).destinationPortRange = p;
		EXPECT_TRUE(IsValid(s)) << p;
	}
	ssh(s).destinationPortRange = "";
	ssh(s).destinationPortRanges = {"22", "80-81", "443"};
	EXPECT_TRUE(IsValid(s));
}

TEST(RulePorts, OutOfRangeOrMalformed)
{
	State s = base();
	ssh(s).destinationPortRange = "70000";
	EXPECT_TRUE(HasError(s, kSsh + "destinationPortRange '70000' is not *, a port or a port range N-M (0-65535)"));
	ssh(s).destinationPortRange = "ssh";
	EXPECT_TRUE(HasError(s, kSsh + "destinationPortRange 'ssh' is not *, a port or a port range N-M (0-65535)"));
	ssh(s).destinationPortRange = "-5";
	EXPECT_TRUE(HasError(s, kSsh + "destinationPortRange '-5' is not *, a port or a port range N-M (0-65535)"));
	ssh(s).destinationPortRange = "22";
	ssh(s).sourcePortRange = "";
	ssh(s).sourcePortRanges = {"1024-65535", "1-2-3"};
	EXPECT_TRUE(HasError(s, kSsh + "sourcePortRanges: '1-2-3' is not *, a port or a port range N-M (0-65535)"));
}

TEST(RulePorts, RangeStartAfterEnd)
{
	State s = base();
	ssh(s).destinationPortRange = "90-80";
	EXPECT_TRUE(HasError(s, kSsh + "destinationPortRange '90-80' starts after it ends"));
}

TEST(RulePorts, NotBothSingularAndPlural)
{
	State s = base();
	ssh(s).destinationPortRanges = {"23"};
	EXPECT_TRUE(HasError(s, kSsh + "destinationPortRange and destinationPortRanges are both set; use one"));
	s = base();
	ssh(s).sourcePortRanges = {"1024-65535"};
	EXPECT_TRUE(HasError(s, kSsh + "sourcePortRange and sourcePortRanges are both set; use one"));
}

TEST(RuleDescription, AtMost140Characters)
{
	State s = base();
	ssh(s).description = std::string(140, 'd');
	EXPECT_TRUE(IsValid(s));
	// Characters, not bytes: 140 two-byte characters are fine.
	std::string umlauts;
	for (int i = 0; i < 140; i++)
		umlauts += "\xc3\xa4";
	ssh(s).description = umlauts;
	EXPECT_TRUE(IsValid(s));
	ssh(s).description = std::string(141, 'd');
	EXPECT_TRUE(HasError(s, kSsh + "description is 141 characters, longer than 140"));
}

// ---- NSG limits ----

TEST(NsgLimits, AtMost1000Rules)
{
	State s = base();
	auto &rules = s.networkSecurityGroups[0].securityRules;
	rules.clear();
	for (int i = 0; i < LG_MAX_RULES_PER_NSG; i++)
		rules.push_back(make_rule("r" + std::to_string(i), 100 + i, "Inbound", "Allow", "Tcp", "*", "*", "22"));
	EXPECT_TRUE(IsValid(s));
	rules.push_back(make_rule("one-too-many", 3000, "Outbound", "Allow", "Tcp", "*", "*", "22"));
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web: securityRules has 1001 rules, more than the limit of 1000"));
}

TEST(NsgLimits, AtMost4000SourcePrefixes)
{
	State s = base();
	auto &rules = s.networkSecurityGroups[0].securityRules;
	std::vector<std::string> many;
	for (int i = 0; i < 2000; i++)
		many.push_back("10.200." + std::to_string(i / 250) + "." + std::to_string(i % 250));
	SecurityRule a = make_rule("a", 200, "Inbound", "Allow", "Tcp", "", "*", "22");
	a.sourceAddressPrefixes = many;
	SecurityRule b = a;
	b.name = "b";
	b.priority = 201;
	rules = {a, b}; // 4000: at the limit
	EXPECT_TRUE(IsValid(s));
	// Tags and * do not count, literal singular prefixes do.
	rules.push_back(make_rule("c", 202, "Inbound", "Allow", "Tcp", "Internet", "*", "22"));
	rules.push_back(make_rule("d", 203, "Inbound", "Allow", "Tcp", "*", "*", "22"));
	EXPECT_TRUE(IsValid(s));
	rules.push_back(make_rule("e", 204, "Inbound", "Allow", "Tcp", "192.0.2.1", "*", "22"));
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web: 4001 source prefixes, more than the limit of 4000 per NSG"));
}

TEST(NsgLimits, AtMost4000DestinationPrefixes)
{
	State s = base();
	auto &rules = s.networkSecurityGroups[0].securityRules;
	std::vector<std::string> many;
	for (int i = 0; i < 4001; i++)
		many.push_back("2001:db8::" + std::to_string(i) + "/128");
	SecurityRule a = make_rule("a", 200, "Outbound", "Allow", "Tcp", "*", "", "22");
	a.destinationAddressPrefixes = many;
	rules = {a};
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web: 4001 destination prefixes, more than the limit of 4000 per NSG"));
	auto errs = validate_all(s);
	EXPECT_EQ(std::count_if(errs.begin(), errs.end(), [](auto &e) { return e.find("source prefixes") != std::string::npos; }), 0);
}

// The dataplanes count per server and per private endpoint in arrays of
// these sizes; past them a state is refused, not counted short.
TEST(ObjectLimits, AtMost1024Servers)
{
	State s = base();
	auto server = [&](const std::string &name, const std::string &ip) {
		MySqlServer m = s.servers[1];
		m.name = name;
		m.fullyQualifiedDomainName = name + ".mysql.database.azure.com";
		m.publicIp = ip;
		return m;
	};
	for (size_t i = s.servers.size(); i < LG_MAX_SERVERS; i++)
		s.servers.push_back(
			server("db" + std::to_string(i), "20.1." + std::to_string(i >> 8) + "." + std::to_string(i & 255)));
	EXPECT_TRUE(IsValid(s));
	s.servers.push_back(server("one-too-many", "20.2.0.1"));
	EXPECT_TRUE(HasError(s, "mysqlServers: has 1025 servers, more than the limit of 1024"));
}

TEST(ObjectLimits, AtMost4096PrivateEndpoints)
{
	State s = base();
	clients(s).addressPrefix = "10.1.0.0/17"; // room for the endpoints (sqlep is 10.1.2.0/24: moved off)
	sqlep(s).addressPrefix = "10.1.128.0/24";
	while (s.privateEndpoints.size() < LG_MAX_PRIVATE_ENDPOINTS) {
		size_t i = s.privateEndpoints.size() + 512; // 10.1.2.0 on: clear of the NIC and pe-east
		s.privateEndpoints.push_back(make_private_endpoint("pe" + std::to_string(i), "client-vnet", "clients",
								   "10.1." + std::to_string(i >> 8) + "." +
									   std::to_string(i & 255),
								   "eastus-db"));
	}
	EXPECT_TRUE(IsValid(s));
	s.privateEndpoints.push_back(
		make_private_endpoint("one-too-many", "client-vnet", "clients", "10.1.100.1", "eastus-db"));
	EXPECT_TRUE(HasError(s, "privateEndpoints: has 4097 private endpoints, more than the limit of 4096"));
}

TEST(NsgLimits, DefaultRulesCannotChange)
{
	State s = base();
	s.networkSecurityGroups[0].defaultSecurityRules.pop_back();
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web: defaultSecurityRules must be the six default rules (they cannot be "
				"changed or deleted)"));
	s = base();
	s.networkSecurityGroups[0].defaultSecurityRules[0].access = "Deny";
	EXPECT_FALSE(IsValid(s));
}

// ---- MySQL firewall ----

TEST(FirewallRule, Ipv4Only)
{
	State s = base();
	west(s).firewallRules[1].startIpAddress = "2001:db8::1";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/firewallRules/office: startIpAddress '2001:db8::1' is not an IPv4 "
				"address (firewall rules are IPv4 only)"));
	s = base();
	west(s).firewallRules[1].endIpAddress = "203.0.113.256";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/firewallRules/office: endIpAddress '203.0.113.256' is not an IPv4 "
				"address (firewall rules are IPv4 only)"));
	s = base();
	west(s).firewallRules[1].endIpAddress = "::ffff:203.0.113.255";
	EXPECT_FALSE(IsValid(s));
}

TEST(FirewallRule, StartNotAfterEnd)
{
	State s = base();
	west(s).firewallRules[1] = FirewallRule{"office", "203.0.113.9", "203.0.113.1"};
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/firewallRules/office: startIpAddress 203.0.113.9 is after endIpAddress "
				"203.0.113.1"));
	west(s).firewallRules[1] = FirewallRule{"office", "203.0.113.9", "203.0.113.9"};
	EXPECT_TRUE(IsValid(s));
}

TEST(FirewallRule, NamesUniquePerServer)
{
	State s = base();
	west(s).firewallRules[1].name = "AllowAllWindowsAzureIps";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/firewallRules/AllowAllWindowsAzureIps: name is not unique"));
	// The same name on another server is fine.
	s = base();
	s.servers[1].firewallRules = {FirewallRule{"office", "198.51.100.0", "198.51.100.255"}};
	EXPECT_TRUE(IsValid(s));
}

// ---- private IPs ----

TEST(PrivateIp, EndpointInsideItsSubnet)
{
	State s = base();
	pe(s).privateIPAddress = "10.1.2.100";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress 10.1.2.100 is outside subnet clients (10.1.1.0/24)"));
	pe(s).privateIPAddress = "10.1.1.x";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress '10.1.1.x' is not an IP address"));
	pe(s).privateIPAddress = "";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress is required"));
}

TEST(PrivateIp, NicInsideItsSubnet)
{
	State s = base();
	s.networkInterfaces[0].privateIPAddress = "10.9.9.9";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: privateIPAddress 10.9.9.9 is outside subnet clients (10.1.1.0/24)"));
}

// A secondary address is checked as the primary is: inside the subnet, not
// taken by another object, and at most 256 ipConfigurations.
TEST(PrivateIp, NicSecondaryAddresses)
{
	State s = base();
	s.networkInterfaces[0].secondaryIPAddresses = {"10.1.1.5", "10.9.9.9", "10.1.1.4"};
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic, secondary address 10.9.9.9: privateIPAddress 10.9.9.9 is outside "
				"subnet clients (10.1.1.0/24)"));
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic, secondary address 10.1.1.4: privateIPAddress 10.1.1.4 is already used "
				"by network interface vm1-nic in VNet client-vnet"));
	for (const auto &e : validate_all(s))
		EXPECT_EQ(e.find("10.1.1.5"), std::string::npos) << e;
	s.networkInterfaces[0].secondaryIPAddresses = {"10.1.1.100"};
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress 10.1.1.100 is already used by network "
				"interface vm1-nic in VNet client-vnet"));
	s.networkInterfaces[0].secondaryIPAddresses = {""};
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic, secondary address 1: privateIPAddress is required"));
	s.networkInterfaces[0].secondaryIPAddresses.clear();
	for (int i = 0; i < 256; i++)
		s.networkInterfaces[0].secondaryIPAddresses.push_back("10.1.1." + std::to_string(5 + i % 200));
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: 257 ipConfigurations, more than Azure's limit of 256"));
}

// Azure keeps an IPv4 subnet's first four addresses and its last.
TEST(PrivateIp, AzureReservedAddressesAreRefused)
{
	for (const char *ip : {"10.1.1.0", "10.1.1.1", "10.1.1.2", "10.1.1.3", "10.1.1.255"}) {
		State s = base();
		pe(s).privateIPAddress = ip;
		EXPECT_TRUE(HasError(s, std::string("privateEndpoints/pe-east: privateIPAddress ") + ip +
						" is reserved by Azure in subnet clients (10.1.1.0/24): the first four "
						"addresses and the last are"))
			<< ip;
		s = base();
		s.networkInterfaces[0].privateIPAddress = ip;
		EXPECT_TRUE(HasError(s, std::string("networkInterfaces/vm1-nic: privateIPAddress ") + ip +
						" is reserved by Azure in subnet clients (10.1.1.0/24): the first four "
						"addresses and the last are"))
			<< ip;
	}
	// The first and last usable ones: .4 (base()'s NIC) and .254.
	State s = base();
	ASSERT_EQ(s.networkInterfaces[0].privateIPAddress, "10.1.1.4");
	pe(s).privateIPAddress = "10.1.1.254";
	EXPECT_TRUE(IsValid(s));
	// A /29 keeps three: .4 to .6.
	s = base();
	clients(s).addressPrefix = "10.1.1.0/29";
	pe(s).privateIPAddress = "10.1.1.6";
	EXPECT_TRUE(IsValid(s));
	pe(s).privateIPAddress = "10.1.1.7";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress 10.1.1.7 is reserved by Azure in subnet "
				"clients (10.1.1.0/29): the first four addresses and the last are"));
}

TEST(PrivateIp, OneEndpointPerVnetAndIp)
{
	State s = base();
	PrivateEndpoint twin = pe(s);
	twin.name = "pe-twin";
	twin.server = "westus-db";
	twin.connectionName = "pe-twin.c";
	s.privateEndpoints.push_back(twin);
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-twin: privateIPAddress 10.1.1.100 is already used by private endpoint "
				"pe-east in VNet client-vnet"));
	// The same address in another VNet is a different endpoint.
	s.privateEndpoints.back().vnet = "hub-vnet";
	s.privateEndpoints.back().subnet = "shared";
	s.privateEndpoints.back().privateIPAddress = "10.0.1.100";
	EXPECT_TRUE(IsValid(s));
}

TEST(PrivateIp, EndpointDoesNotClashWithNic)
{
	State s = base();
	pe(s).privateIPAddress = "10.1.1.4";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress 10.1.1.4 is already used by network interface "
				"vm1-nic in VNet client-vnet"));
}

TEST(PrivateIp, NicUniquePerVnet)
{
	State s = base();
	s.networkInterfaces.push_back(NetworkInterface{"vm2-nic", "client-vnet", "clients", "10.1.1.4", ""});
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm2-nic: privateIPAddress 10.1.1.4 is already used by network interface "
				"vm1-nic in VNet client-vnet"));
}

// ---- unique names ----

TEST(UniqueNames, PerCollection)
{
	State s = base();
	s.virtualNetworks[1].name = "client-vnet";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: name is not unique"));
	s = base();
	s.networkSecurityGroups.push_back(s.networkSecurityGroups[0]);
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web: name is not unique"));
	s = base();
	s.servers[1].name = "westus-db";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: name is not unique"));
	s = base();
	sqlep(s).name = "clients";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/clients: name is not unique"));
	s = base();
	s.localNetworkGateways.push_back(s.localNetworkGateways[0]);
	EXPECT_TRUE(HasError(s, "localNetworkGateways/onprem: name is not unique"));
}

// ARM names are case-insensitive: "Web" and "web" are one name.
TEST(UniqueNames, CaseInsensitive)
{
	State s = base();
	s.networkSecurityGroups.push_back(s.networkSecurityGroups[0]);
	s.networkSecurityGroups.back().name = "WEB";
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/WEB: name is not unique"));
	s = base();
	s.servers[1].name = "WestUS-DB";
	EXPECT_TRUE(HasError(s, "mysqlServers/WestUS-DB: name is not unique"));
}

TEST(UniqueNames, EndpointsAndNics)
{
	State s = base();
	s.networkInterfaces.push_back(NetworkInterface{"vm1-nic", "client-vnet", "clients", "10.1.1.5", ""});
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: name is not unique"));
	s = base();
	PrivateEndpoint twin = pe(s);
	twin.privateIPAddress = "10.1.1.101";
	twin.connectionName = "other";
	s.privateEndpoints.push_back(twin);
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: name is not unique"));
}

TEST(ObjectNames, SameCharacterRulesEverywhere)
{
	State s = base();
	s.networkSecurityGroups[0].name = "web/evil";
	clients(s).networkSecurityGroup = "web/evil";
	s.networkInterfaces[0].networkSecurityGroup = "web/evil";
	EXPECT_TRUE(HasError(s, "networkSecurityGroups/web/evil: name 'web/evil' may only contain letters, digits, '_', '.' and '-'"));
	s = base();
	s.servers[1].name = "";
	EXPECT_TRUE(HasError(s, "mysqlServers[1]: name is required"));
}

// Azure's rule: a name begins with a letter or digit and ends with one or
// '_'. ".." as a server would give the FQDN "...mysql.database.azure.com".
TEST(ObjectNames, BeginAndEndWithALetterOrDigit)
{
	for (const char *bad : {"..", ".web", "-web", "_web", "web.", "web-"}) {
		State s = base();
		s.servers[1].name = bad;
		EXPECT_TRUE(HasError(s, "mysqlServers/" + std::string(bad) + ": name '" + bad +
					   "' must begin with a letter or digit and end with a letter, digit or '_'"));
	}
	State s = base();
	s.servers[1].name = "db_";
	pe(s).server = "db_";
	EXPECT_TRUE(IsValid(s));
	s = base();
	pe(s).connectionName = "pe.x-";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: connectionName 'pe.x-' must begin with a letter or digit and "
				"end with a letter, digit or '_'"));
	pe(s).connectionName = "a/b";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: connectionName 'a/b' may only contain letters, digits, '_', "
				"'.' and '-'"));
}

// IPv4-mapped IPv6 text (::ffff:a.b.c.d) is no address anywhere: it would
// be held as IPv4 while the dataplanes drop such packets as malformed.
TEST(Addresses, MappedTextIsRefusedEverywhere)
{
	State s = base();
	west(s).publicIp = "::ffff:104.42.238.70";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: publicIp '::ffff:104.42.238.70' is not an IP address"));
	s = base();
	west(s).backends[0].address = "::ffff:192.168.10.11";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[0].address '::ffff:192.168.10.11' is not an IP address"));
	s = base();
	s.networkInterfaces[0].privateIPAddress = "::ffff:10.1.1.4";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: privateIPAddress '::ffff:10.1.1.4' is not an IP address"));
	s = base();
	pe(s).privateIPAddress = "::ffff:10.1.1.100";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateIPAddress '::ffff:10.1.1.100' is not an IP address"));
	s = base();
	s.networkSecurityGroups[0].securityRules[0].sourceAddressPrefix = "::ffff:203.0.113.5";
	EXPECT_TRUE(HasError(s, kSsh + "sourceAddressPrefix '::ffff:203.0.113.5' is not *, an IP, a CIDR or a known "
				      "service tag"));
}

// A connection is addressed by its name or by its endpoint's name: one
// named after another endpoint of the same server would be approved when
// that endpoint is meant.
TEST(PrivateEndpointConnections, NoConnectionTakesAnotherEndpointsName)
{
	State s = base();
	PrivateEndpoint rogue = pe(s);
	rogue.name = "rogue";
	rogue.privateIPAddress = "10.1.1.101";
	rogue.connectionName = "pe-east";
	s.privateEndpoints.push_back(rogue);
	EXPECT_TRUE(HasError(s, "privateEndpoints/rogue: connectionName 'pe-east' is the name of private endpoint "
				"pe-east on server " + pe(s).server + "; a connection may not take another endpoint's name"));
	// In any case: connections are looked up case-insensitively.
	s.privateEndpoints.back().connectionName = "PE-East";
	EXPECT_TRUE(HasError(s, "privateEndpoints/rogue: connectionName 'PE-East' is the name of private endpoint "
				"PE-East on server " + pe(s).server + "; a connection may not take another endpoint's name"));
	// Its own endpoint's name is fine, in any case.
	s.privateEndpoints.back().connectionName = "Rogue";
	EXPECT_TRUE(IsValid(s));
}

// ---- references ----

TEST(References, SubnetNsgExists)
{
	State s = base();
	clients(s).networkSecurityGroup = "missing-nsg";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/clients: networkSecurityGroup 'missing-nsg' does not exist"));
}

TEST(References, NicNsgAndSubnetExist)
{
	State s = base();
	s.networkInterfaces[0].networkSecurityGroup = "gone";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: networkSecurityGroup 'gone' does not exist"));
	s = base();
	s.networkInterfaces[0].subnet = "nowhere";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: subnet: subnet 'client-vnet/nowhere' does not exist"));
	s = base();
	s.networkInterfaces[0].vnet = "other-vnet";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: subnet: VNet 'other-vnet' does not exist"));
	s = base();
	s.networkInterfaces[0].vnet = "";
	EXPECT_TRUE(HasError(s, "networkInterfaces/vm1-nic: subnet is required"));
}

TEST(References, EndpointSubnetAndServerExist)
{
	State s = base();
	pe(s).subnet = "nowhere";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: subnet: subnet 'client-vnet/nowhere' does not exist"));
	s = base();
	pe(s).server = "northeu-db";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateLinkServiceId: server 'northeu-db' does not exist"));
	pe(s).server = "";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateLinkServiceId (the target server) is required"));
}

TEST(References, PeeredVnetExists)
{
	State s = base();
	s.virtualNetworks[0].peerings.push_back("spoke-vnet");
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: virtualNetworkPeerings: VNet 'spoke-vnet' does not exist"));
	s = base();
	s.virtualNetworks[0].peerings.push_back("client-vnet");
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: virtualNetworkPeerings: a VNet cannot peer with itself"));
	s = base();
	s.virtualNetworks[0].peerings.push_back("hub-vnet");
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: virtualNetworkPeerings: VNet 'hub-vnet' is peered twice"));
}

TEST(References, OneSidedPeeringIsAllowed)
{
	// Azure's "Initiated" state: each side is created by its own change.
	State s = base();
	s.virtualNetworks[1].peerings.clear();
	EXPECT_TRUE(IsValid(s));
}

TEST(References, PeeredAddressSpacesDoNotOverlap)
{
	State s = base();
	s.virtualNetworks[1].addressPrefixes = {"10.0.0.0/8"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: virtualNetworkPeerings: address space 10.1.0.0/16 overlaps "
				"peered VNet hub-vnet (10.0.0.0/8)"));
}

TEST(References, GatewayVnetExistsAndDoesNotOverlap)
{
	State s = base();
	s.localNetworkGateways[0].virtualNetworks = {"missing"};
	EXPECT_TRUE(HasError(s, "localNetworkGateways/onprem: virtualNetworks: VNet 'missing' does not exist"));
	s = base();
	s.localNetworkGateways[0].addressPrefixes = {"10.1.128.0/17"};
	EXPECT_TRUE(HasError(s, "localNetworkGateways/onprem: localNetworkAddressSpace.addressPrefixes 10.1.128.0/17 overlaps "
				"VNet client-vnet (10.1.0.0/16)"));
	s = base();
	s.localNetworkGateways[0].addressPrefixes = {"172.16.0.1/16"};
	EXPECT_TRUE(HasError(s, "localNetworkGateways/onprem: localNetworkAddressSpace.addressPrefixes '172.16.0.1/16' has host "
				"bits set (did you mean 172.16.0.0/16?)"));
}

TEST(References, VnetRuleSubnetExists)
{
	State s = base();
	west(s).virtualNetworkRules[0].subnet = "gone";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/virtualNetworkRules/sqlep-subnet: virtualNetworkSubnetId: subnet "
				"'client-vnet/gone' does not exist"));
}

TEST(References, VnetRuleSubnetHasSqlEndpoint)
{
	State s = base();
	west(s).virtualNetworkRules[0].subnet = "clients";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db/virtualNetworkRules/sqlep-subnet: virtualNetworkSubnetId: subnet "
				"client-vnet/clients has no Microsoft.Sql service endpoint"));
}

// ---- VNets and subnets ----

TEST(VnetSpace, PrefixesAreCanonicalCidrs)
{
	State s = base();
	s.virtualNetworks[0].addressPrefixes = {"10.1.0.5/16"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: addressSpace.addressPrefixes '10.1.0.5/16' has host bits set "
				"(did you mean 10.1.0.0/16?)"));
	s.virtualNetworks[0].addressPrefixes = {"10.1.0.0"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: addressSpace.addressPrefixes '10.1.0.0' is not a CIDR (address/length)"));
	s.virtualNetworks[0].addressPrefixes = {};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: addressSpace.addressPrefixes must not be empty"));
}

TEST(VnetSpace, PrefixesOfOneVnetDoNotOverlap)
{
	State s = base();
	s.virtualNetworks[0].addressPrefixes = {"10.1.0.0/16", "10.1.4.0/24"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: addressSpace.addressPrefixes 10.1.4.0/24 overlaps 10.1.0.0/16"));
}

// Azure refuses these address spaces; the dataplanes would forward
// nothing to an object in them.
TEST(VnetSpace, NoSpecialUseRanges)
{
	for (auto [pre, what] : {std::pair{"127.0.0.0/8", "loopback (127.0.0.0/8)"},
				 {"169.254.0.0/16", "link-local (169.254.0.0/16)"},
				 {"224.0.0.0/24", "multicast (224.0.0.0/4)"},
				 {"255.255.255.0/24", "broadcast (255.255.255.255/32)"},
				 {"fe80::/64", "link-local (fe80::/10)"},
				 {"ff05::/16", "multicast (ff00::/8)"}}) {
		State s = base();
		s.virtualNetworks[1].addressPrefixes.push_back(pre);
		EXPECT_TRUE(HasError(s, std::string("virtualNetworks/hub-vnet: addressSpace.addressPrefixes ") + pre +
						" overlaps a reserved range: " + what));
	}
	State s = base();
	s.virtualNetworks[1].addressPrefixes.push_back("168.63.0.0/16");
	EXPECT_TRUE(HasError(s, "virtualNetworks/hub-vnet: addressSpace.addressPrefixes 168.63.0.0/16 holds "
				"168.63.129.16, Azure's platform address (AzureLoadBalancer)"));
	// A low IPv6 space holds :: and ::1, refused as addresses only.
	s = base();
	s.virtualNetworks[1].addressPrefixes.push_back("::/64");
	s.virtualNetworks[1].subnets.push_back({"low6", "::/64", "", {}, "Disabled"});
	s.networkInterfaces.push_back(NetworkInterface{"low-nic", "hub-vnet", "low6", "::5", ""});
	EXPECT_TRUE(IsValid(s));
	s.networkInterfaces.back().privateIPAddress = "::1";
	EXPECT_TRUE(HasError(s, "networkInterfaces/low-nic: privateIPAddress ::1 is a special-use address: loopback (::1/128)"));
}

TEST(SubnetPrefix, CanonicalCidr)
{
	State s = base();
	clients(s).addressPrefix = "10.1.1.1/24";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/clients: addressPrefix '10.1.1.1/24' has host bits set "
				"(did you mean 10.1.1.0/24?)"));
	clients(s).addressPrefix = "";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/clients: addressPrefix is required"));
}

TEST(SubnetPrefix, InsideVnetAddressSpace)
{
	State s = base();
	sqlep(s).addressPrefix = "10.2.2.0/24";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/sqlep: addressPrefix 10.2.2.0/24 is outside the VNet address space"));
}

TEST(SubnetPrefix, SubnetsDoNotOverlap)
{
	State s = base();
	sqlep(s).addressPrefix = "10.1.1.128/25";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/sqlep: addressPrefix 10.1.1.128/25 overlaps subnet clients "
				"(10.1.1.0/24)"));
}

TEST(Vni, Range)
{
	State s = base();
	s.virtualNetworks[0].vni = 0;
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: vni 0 is outside 1-16777215"));
	s.virtualNetworks[0].vni = 0x1000000;
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet: vni 16777216 is outside 1-16777215"));
	s.virtualNetworks[0].vni = 0xffffff;
	EXPECT_TRUE(IsValid(s));
}

TEST(Vni, UniqueIncludingDerived)
{
	State s = base();
	s.virtualNetworks[1].vni = 101;
	EXPECT_TRUE(HasError(s, "virtualNetworks/hub-vnet: vni 101 is already used by VNet client-vnet"));
	// A derived VNI collides the same way.
	s = base();
	s.virtualNetworks[1].vni.reset();
	s.virtualNetworks[0].vni = effective_vni(s.virtualNetworks[1]);
	EXPECT_TRUE(HasError(s, "virtualNetworks/hub-vnet: vni " + std::to_string(effective_vni(s.virtualNetworks[1])) +
					" is already used by VNet client-vnet (derived from the name; set vni explicitly)"));
}

// ---- enums and lists of the other objects ----

TEST(Enums, PublicNetworkAccess)
{
	State s = base();
	west(s).publicNetworkAccess = "Disabled";
	EXPECT_TRUE(IsValid(s));
	west(s).publicNetworkAccess = "Off";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: publicNetworkAccess 'Off' must be Enabled or Disabled"));
}

TEST(Enums, PrivateEndpointNetworkPolicies)
{
	State s = base();
	clients(s).privateEndpointNetworkPolicies = "Enabled";
	EXPECT_TRUE(IsValid(s));
	clients(s).privateEndpointNetworkPolicies = "RouteTableEnabled";
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/clients: privateEndpointNetworkPolicies 'RouteTableEnabled' "
				"must be Enabled or Disabled"));
}

TEST(Enums, ConnectionStatus)
{
	State s = base();
	for (const char *st : {"Pending", "Approved", "Rejected", "Disconnected"}) {
		pe(s).connectionState.status = st;
		EXPECT_TRUE(IsValid(s)) << st;
	}
	pe(s).connectionState.status = "Accepted";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateLinkServiceConnectionState.status 'Accepted' must be "
				"Pending, Approved, Rejected or Disconnected"));
}

TEST(Enums, DeletedConnectionIsDisconnected)
{
	State s = base();
	pe(s).connectionPresent = false;
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: privateLinkServiceConnectionState.status must be Disconnected once "
				"its connection is deleted"));
	pe(s).connectionState.status = "Disconnected";
	EXPECT_TRUE(IsValid(s));
}

TEST(Enums, GroupIdsExactlyMysqlServer)
{
	State s = base();
	pe(s).groupIds = {"sqlServer"};
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: groupIds must be [\"mysqlServer\"]"));
	pe(s).groupIds = {"mysqlServer", "mysqlServer"};
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: groupIds must be [\"mysqlServer\"]"));
	pe(s).groupIds = {};
	EXPECT_FALSE(IsValid(s));
}

TEST(Connections, NamesRequiredAndUniquePerServer)
{
	State s = base();
	pe(s).connectionName = "";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east: connectionName is required"));
	s = base();
	PrivateEndpoint other = pe(s);
	other.name = "pe-east-2";
	other.privateIPAddress = "10.1.1.101";
	s.privateEndpoints.push_back(other);
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east-2: connectionName '" + pe(s).connectionName +
					"' is already used by private endpoint pe-east on server eastus-db"));
	// Unique regardless of case.
	s.privateEndpoints.back().connectionName = "C1";
	pe(s).connectionName = "c1";
	EXPECT_TRUE(HasError(s, "privateEndpoints/pe-east-2: connectionName 'C1' is already used by private endpoint "
				"pe-east on server eastus-db"));
}

TEST(ServiceEndpoints, KnownServicesOnly)
{
	State s = base();
	sqlep(s).serviceEndpoints = {"Microsoft.Sql", "Microsoft.Storage", "Microsoft.KeyVault"};
	EXPECT_TRUE(IsValid(s));
	sqlep(s).serviceEndpoints = {"Microsoft.Sql", "Sql"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/sqlep: serviceEndpoints: 'Sql' is not a service endpoint "
				"(Microsoft.<Service>)"));
	sqlep(s).serviceEndpoints = {"microsoft.sql"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/sqlep: serviceEndpoints: 'microsoft.sql' must be written "
				"Microsoft.Sql"));
	sqlep(s).serviceEndpoints = {"Microsoft.Sql", "Microsoft.Sql"};
	EXPECT_TRUE(HasError(s, "virtualNetworks/client-vnet/subnets/sqlep: serviceEndpoints: 'Microsoft.Sql' is listed twice"));
}

// ---- servers ----

TEST(Server, PublicIpValidAndUnique)
{
	State s = base();
	s.servers[1].publicIp = "104.42.238.70";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp 104.42.238.70 is already used by server westus-db"));
	s.servers[1].publicIp = "40.121.158.300";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp '40.121.158.300' is not an IP address"));
	s.servers[1].publicIp = "";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp is required"));
	s.servers[1].publicIp = "2603:1030:210:400::5";
	EXPECT_TRUE(IsValid(s));
	// A public IP is matched before the destination's NSGs: it may not be a
	// VNet's address (a NIC's would lose its NSGs to the server).
	s.servers[1].publicIp = "10.1.1.4";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp 10.1.1.4 is already used by network interface vm1-nic in VNet "
				"client-vnet"));
	s.servers[1].publicIp = "10.1.1.100";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp 10.1.1.100 is already used by private endpoint pe-east in "
				"VNet client-vnet"));
	s.servers[1].publicIp = "10.0.200.9";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp 10.0.200.9 is inside the address space 10.0.0.0/16 of VNet "
				"hub-vnet"));
	// A connected gateway's on-premises prefixes are part of VirtualNetwork
	// as well; an unconnected one's are not.
	s.servers[1].publicIp = "172.16.8.1";
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: publicIp 172.16.8.1 is inside the on-premises prefix 172.16.0.0/16 "
				"of local network gateway onprem"));
	s.localNetworkGateways[0].virtualNetworks.clear();
	EXPECT_TRUE(IsValid(s));
	// Addresses no dataplane forwards to.
	for (auto [ip, what] : {std::pair{"224.0.0.5", "multicast (224.0.0.0/4)"}, {"127.0.0.1", "loopback (127.0.0.0/8)"},
				{"255.255.255.255", "broadcast (255.255.255.255/32)"}, {"0.0.0.0", "\"this network\" (0.0.0.0/8)"},
				{"169.254.1.1", "link-local (169.254.0.0/16)"}, {"::1", "loopback (::1/128)"},
				{"fe80::1", "link-local (fe80::/10)"}, {"ff02::1", "multicast (ff00::/8)"}, {"::", "unspecified (::/128)"}}) {
		s.servers[1].publicIp = ip;
		EXPECT_TRUE(HasError(s, std::string("mysqlServers/eastus-db: publicIp ") + ip + " is a special-use address: " + what));
	}
}

// The dataplanes' re-check looks for a flow's backend among at most
// LG_MAX_BACKENDS_PER_SERVER; a longer list is refused, not half-checked.
TEST(Server, BackendsPerServerAreLimited)
{
	State s = base();
	s.servers[1].backends.clear();
	for (int i = 0; i < LG_MAX_BACKENDS_PER_SERVER; i++)
		s.servers[1].backends.push_back(
			Backend{"10.200." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250), 3306, 1});
	EXPECT_TRUE(IsValid(s));
	s.servers[1].backends.push_back(Backend{"10.201.0.1", 3306, 1});
	EXPECT_TRUE(HasError(s, "mysqlServers/eastus-db: has " + std::to_string(LG_MAX_BACKENDS_PER_SERVER + 1) +
					" backends, more than the limit of " + std::to_string(LG_MAX_BACKENDS_PER_SERVER)));
}

TEST(Server, BackendAddressPortAndWeight)
{
	State s = base();
	west(s).backends[0].address = "db1.internal";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[0].address 'db1.internal' is not an IP address"));
	s = base();
	west(s).backends[1].port = 0;
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[1].port 0 is outside 1-65535"));
	west(s).backends[1].port = 65536;
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[1].port 65536 is outside 1-65535"));
	s = base();
	west(s).backends[1].weight = -1;
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[1].weight -1 is outside 0-65535"));
	west(s).backends[1].weight = 65536;
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[1].weight 65536 is outside 0-65535"));
	west(s).backends[1].weight = 0; // drained
	EXPECT_TRUE(IsValid(s));
	west(s).backends[1] = west(s).backends[0];
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[1]: 192.168.10.11 port 3306 is listed twice"));
	s = base();
	west(s).backends[0].address = "127.0.0.1";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[0].address 127.0.0.1 is a special-use address: loopback "
				"(127.0.0.0/8)"));
	west(s).backends[0].address = "224.1.2.3";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: backends[0].address 224.1.2.3 is a special-use address: multicast "
				"(224.0.0.0/4)"));
}

TEST(Server, FqdnRequired)
{
	State s = base();
	west(s).fullyQualifiedDomainName = "";
	EXPECT_TRUE(HasError(s, "mysqlServers/westus-db: fullyQualifiedDomainName is required"));
}

// ---- service tags ----

TEST(ServiceTagsFile, PrefixesAreCidrs)
{
	State s = base();
	s.serviceTags.values[1].addressPrefixes.push_back("104.42.238.0/40");
	EXPECT_TRUE(HasError(s, "serviceTags/Sql.WestUS: addressPrefixes: '104.42.238.0/40' is not a valid CIDR"));
	s.serviceTags.values[1].addressPrefixes.back() = "104.42.238.1";
	EXPECT_TRUE(HasError(s, "serviceTags/Sql.WestUS: addressPrefixes: '104.42.238.1' is not a valid CIDR"));
}

TEST(ServiceTagsFile, NamesUniqueIgnoringCase)
{
	State s = base();
	s.serviceTags.values.push_back(ServiceTag{"sql.westus", "sql.westus", "", "", {}});
	EXPECT_TRUE(HasError(s, "serviceTags/sql.westus: name is not unique (tag names are case-insensitive)"));
}

// ---- try_change ----

TEST(TryChange, RejectedChangeLeavesStateUntouched)
{
	State s = base();
	const State before = s;
	Status st = try_change(s, [](State &n) {
		n.networkSecurityGroups[0].securityRules.push_back(
			make_rule("rdp", 1100, "Inbound", "Allow", "Tcp", "*", "*", "3389"));
		n.servers[0].publicNetworkAccess = "Disabled";
		n.networkSecurityGroups[0].securityRules[0].priority = 9999; // the bad part
	});
	ASSERT_FALSE(st);
	EXPECT_EQ(st.error(), kSsh + "priority 9999 is outside 100-4096");
	EXPECT_EQ(s, before);
}

TEST(TryChange, MutatorErrorIsReturnedAndNothingChanges)
{
	State s = base();
	const State before = s;
	Status st = try_change(s, [](State &n) -> Status {
		n.servers.clear();
		return err("mysqlServers/nope: does not exist");
	});
	ASSERT_FALSE(st);
	EXPECT_EQ(st.error(), "mysqlServers/nope: does not exist");
	EXPECT_EQ(s, before);
}

TEST(TryChange, AcceptedChangeIsAppliedWithDefaults)
{
	State s = base();
	Status st = try_change(s, [](State &n) {
		NetworkSecurityGroup db;
		db.name = "db-nsg"; // no default rules: try_change fills them
		n.networkSecurityGroups.push_back(db);
		n.virtualNetworks[0].subnets[1].networkSecurityGroup = "db-nsg";
		PrivateEndpoint p;
		p.name = "pe-west";
		p.vnet = "client-vnet";
		p.subnet = "clients";
		p.privateIPAddress = "10.1.1.101";
		p.server = "westus-db";
		n.privateEndpoints.push_back(p);
	});
	ASSERT_TRUE(st) << st.error();
	ASSERT_NE(s.nsg("db-nsg"), nullptr);
	EXPECT_EQ(s.nsg("db-nsg")->defaultSecurityRules, default_security_rules());
	EXPECT_EQ(s.virtualNetworks[0].subnets[1].networkSecurityGroup, "db-nsg");
	EXPECT_EQ(s.private_endpoint("pe-west")->connectionName, default_connection_name("pe-west", "westus-db"));
	EXPECT_TRUE(IsValid(s));
}
