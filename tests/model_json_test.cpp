// ARM JSON reading and writing: az-shaped fixtures, the `properties`
// envelope, references, enum canonicalisation, type errors, defaults, service
// tags, round trips and the atomic state file.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "arm_json.hpp"
#include "net.hpp"
#include "temp_dir.hpp"
#include "validate.hpp"

using nlohmann::json;
using namespace lg;

namespace {

std::string fixture(const std::string &rel) { return std::string(LG_FIXTURES_DIR) + "/" + rel; }

json load(const std::string &rel)
{
	auto j = read_json_file(fixture(rel));
	if (!j)
		ADD_FAILURE() << j.error();
	return j ? *j : json();
}

const std::string kIdPrefix = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/linkgate/providers/";

// A scratch directory removed with everything in it.
struct TempDir {
	lgtest::TempDir dir{"lg_json_test"};
	std::string path = dir.path();
	std::vector<std::string> files() const
	{
		std::vector<std::string> out;
		if (DIR *d = opendir(path.c_str())) {
			while (dirent *e = readdir(d))
				if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
					out.push_back(e->d_name);
			closedir(d);
		}
		return out;
	}
	void write(const std::string &name, const std::string &text) const { std::ofstream(path + "/" + name) << text; }
};

const SecurityRule *rule(const NetworkSecurityGroup &n, const std::string &name)
{
	for (const auto &r : n.securityRules)
		if (r.name == name)
			return &r;
	return nullptr;
}

// Every kind of object and option, valid, built in code.
State full_state()
{
	State s;
	VirtualNetwork a;
	a.name = "client-vnet";
	a.addressPrefixes = {"10.1.0.0/16", "fd00:1::/48"};
	a.vni = 4242;
	Subnet clients;
	clients.name = "clients";
	clients.addressPrefix = "10.1.1.0/24";
	clients.networkSecurityGroup = "web";
	clients.privateEndpointNetworkPolicies = "Enabled";
	Subnet sqlep;
	sqlep.name = "sqlep";
	sqlep.addressPrefix = "10.1.2.0/24";
	sqlep.serviceEndpoints = {"Microsoft.Sql", "Microsoft.Storage"};
	a.subnets = {clients, sqlep};
	a.peerings = {"hub-vnet"};
	VirtualNetwork hub;
	hub.name = "hub-vnet";
	hub.addressPrefixes = {"10.0.0.0/16"};
	Subnet shared;
	shared.name = "shared";
	shared.addressPrefix = "10.0.1.0/24";
	hub.subnets = {shared};
	hub.peerings = {"client-vnet"};
	s.virtualNetworks = {a, hub};

	s.localNetworkGateways.push_back(LocalNetworkGateway{"onprem", {"172.16.0.0/16", "172.17.0.0/16"}, {"client-vnet"}});

	NetworkSecurityGroup web;
	web.name = "web";
	web.flushConnection = true;
	SecurityRule ssh;
	ssh.name = "ssh";
	ssh.priority = 1000;
	ssh.direction = "Inbound";
	ssh.access = "Allow";
	ssh.protocol = "Tcp";
	ssh.sourceAddressPrefixes = {"203.0.113.0/24", "2001:db8::/32"};
	ssh.destinationAddressPrefix = "VirtualNetwork";
	ssh.sourcePortRange = "*";
	ssh.destinationPortRanges = {"22", "2222-2223"};
	ssh.description = "SSH from the admin networks";
	SecurityRule deny;
	deny.name = "deny-sql";
	deny.priority = 4096;
	deny.direction = "Outbound";
	deny.access = "Deny";
	deny.protocol = "*";
	deny.destinationAddressPrefix = "Sql";
	web.securityRules = {ssh, deny};
	web.defaultSecurityRules = default_security_rules();
	s.networkSecurityGroups = {web};

	s.networkInterfaces.push_back(NetworkInterface{"vm1-nic", "client-vnet", "clients", "10.1.1.4", "web"});

	PrivateEndpoint east;
	east.name = "pe-east";
	east.vnet = "client-vnet";
	east.subnet = "clients";
	east.privateIPAddress = "10.1.1.100";
	east.server = "eastus-db";
	east.connectionName = "pe-east.conn";
	east.connectionState = ConnectionState{"Approved", "Auto-Approved", "None"};
	PrivateEndpoint manual = east;
	manual.name = "pe-manual";
	manual.privateIPAddress = "10.1.1.101";
	manual.manualRequest = true;
	manual.requestMessage = "please";
	manual.connectionName = "pe-manual.conn";
	manual.connectionState = ConnectionState{"Pending", "please", "None"};
	PrivateEndpoint gone = east;
	gone.name = "pe-gone";
	gone.privateIPAddress = "10.1.1.102";
	gone.connectionName = "pe-gone.conn";
	gone.connectionPresent = false;
	gone.connectionState = ConnectionState{"Disconnected", "Connection deleted", "None"};
	s.privateEndpoints = {east, manual, gone};

	MySqlServer db;
	db.name = "eastus-db";
	db.fullyQualifiedDomainName = "eastus-db.mysql.database.azure.com";
	db.publicIp = "40.121.158.30";
	db.backends = {Backend{"192.168.20.11", 3306, 1}, Backend{"fd00:20::11", 3307, 0}};
	db.publicNetworkAccess = "Disabled";
	db.firewallRules = {FirewallRule{"AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"}};
	db.virtualNetworkRules = {VirtualNetworkRule{"sqlep-rule", "client-vnet", "sqlep"}};
	s.servers = {db};

	s.serviceTags.changeNumber = 77;
	s.serviceTags.values = {ServiceTag{"Sql", "Sql", "", "AzureSQL", {"40.121.158.0/24"}},
				ServiceTag{"AzureCloud", "AzureCloud", "", "", {"40.64.0.0/10"}}};
	return s;
}

} // namespace

// ---- ids and references ----

TEST(ArmIds, SyntheticIdsHaveProviderPaths)
{
	EXPECT_EQ(nsg_id("web"), kIdPrefix + "Microsoft.Network/networkSecurityGroups/web");
	EXPECT_EQ(subnet_id("v", "s"), kIdPrefix + "Microsoft.Network/virtualNetworks/v/subnets/s");
	EXPECT_EQ(pec_id("db", "c"), kIdPrefix + "Microsoft.DBforMySQL/servers/db/privateEndpointConnections/c");
	EXPECT_EQ(private_endpoint_id("pe"), kIdPrefix + "Microsoft.Network/privateEndpoints/pe");
	EXPECT_EQ(nic_id("n"), kIdPrefix + "Microsoft.Network/networkInterfaces/n");
}

TEST(ArmIds, SubnetReferenceForms)
{
	auto full = parse_subnet_ref("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v1/subnets/s1");
	ASSERT_TRUE(full) << full.error();
	EXPECT_EQ(full->first, "v1");
	EXPECT_EQ(full->second, "s1");
	auto pair = parse_subnet_ref("v2/s2");
	ASSERT_TRUE(pair);
	EXPECT_EQ(pair->first, "v2");
	EXPECT_EQ(pair->second, "s2");
	auto bare = parse_subnet_ref("s3");
	ASSERT_FALSE(bare);
	EXPECT_NE(bare.error().find("'s3' is not a subnet id"), std::string::npos) << bare.error();
	// Names like the keywords: read by position, and what subnet_id writes reads back.
	for (auto [v, sn] : {std::pair{"virtualNetworks", "subnets"}, std::pair{"subnets", "virtualNetworks"},
			     std::pair{"VirtualNetworks", "x"}}) {
		auto back = parse_subnet_ref(subnet_id(v, sn));
		ASSERT_TRUE(back) << back.error();
		EXPECT_EQ(back->first, v);
		EXPECT_EQ(back->second, sn);
	}
	// Keywords out of place are no subnet id (they used to name VNet "subnets").
	EXPECT_FALSE(parse_subnet_ref("subnets/x/virtualNetworks/virtualNetworks"));
	EXPECT_FALSE(parse_subnet_ref("/virtualNetworks/v/subnets/s/extra"));
	EXPECT_EQ(ref_name("/a/b/servers/db1"), "db1");
	EXPECT_EQ(ref_name("db1"), "db1");
}

// A reference is read by its type: the id of a NIC, a flexible server or a
// server's firewall rule is no server id, and its last segment is not taken.
TEST(ArmIds, ReferencesOfAnotherTypeAreErrors)
{
	const std::string rg = "/subscriptions/0/resourceGroups/rg/providers/";
	auto endpoint = [&](const std::string &target) {
		return private_endpoint_from_json(
			json{{"name", "pe1"},
			     {"subnet", {{"id", "v1/clients"}}},
			     {"privateIPAddress", "10.1.1.50"},
			     {"privateLinkServiceConnections", {{{"privateLinkServiceId", target}, {"groupIds", {"mysqlServer"}}}}}});
	};
	for (const std::string &ok : {std::string("db1"), rg + "Microsoft.DBforMySQL/servers/db1", rg + "Microsoft.DBforMySQL/Servers/db1"}) {
		auto p = endpoint(ok);
		ASSERT_TRUE(p) << ok << ": " << p.error();
		EXPECT_EQ(p->server, "db1");
	}
	for (const std::string &bad : {rg + "Microsoft.Network/networkInterfaces/db1",
				      rg + "Microsoft.DBforMySQL/flexibleServers/db1",
				      rg + "Microsoft.DBforMySQL/servers/db1/firewallRules/office", std::string("a/db1")}) {
		auto p = endpoint(bad);
		ASSERT_FALSE(p) << bad;
		EXPECT_NE(p.error().find("'" + bad + "' is not a servers id"), std::string::npos) << p.error();
	}
	auto n = nic_from_json(json{{"name", "n1"},
				    {"networkSecurityGroup", {{"id", rg + "Microsoft.DBforMySQL/servers/web"}}},
				    {"privateIPAddress", "10.1.1.5"},
				    {"subnet", {{"id", "v1/clients"}}}});
	ASSERT_FALSE(n);
	EXPECT_NE(n.error().find("is not a networkSecurityGroups id"), std::string::npos) << n.error();
	auto v = vnet_from_json(json{{"name", "v1"},
				     {"addressSpace", {{"addressPrefixes", {"10.1.0.0/16"}}}},
				     {"virtualNetworkPeerings", {rg + "Microsoft.Network/networkSecurityGroups/v2"}}});
	ASSERT_FALSE(v);
	EXPECT_NE(v.error().find("is not a virtualNetworks id"), std::string::npos) << v.error();
}

// IPv4-mapped IPv6 text is no address: it would be held as IPv4, and the
// dataplanes drop packets that carry such addresses as malformed.
TEST(ArmIds, MappedAddressTextIsNoAddress)
{
	EXPECT_FALSE(Addr::parse("::ffff:10.1.1.10"));
	EXPECT_FALSE(Addr::parse("::FFFF:a01:10a"));
	EXPECT_FALSE(Prefix::parse("::ffff:10.1.1.0/120"));
	ASSERT_TRUE(Addr::parse_any("::ffff:10.1.1.10"));
	EXPECT_EQ(*Addr::parse_any("::ffff:10.1.1.10"), *Addr::parse("10.1.1.10"));
	EXPECT_TRUE(Addr::parse("::1.2.3.4")); // IPv4-compatible (deprecated) is plain IPv6 here
	EXPECT_TRUE(Addr::parse("2001:db8::ffff:1.2.3.4"));
}

// An object with a key twice is an error, not its last value; equal keys in
// different objects are fine.
TEST(StateFile, DuplicateKeysAreAnError)
{
	auto d = parse_json_text(R"({"virtualNetworks":[{"name":"a","vni":1,"name":"b"}]})", "f.json");
	ASSERT_FALSE(d);
	EXPECT_EQ(d.error(), "f.json: duplicate key \"name\" in an object");
	auto ok = parse_json_text(R"({"a":{"a":1},"b":[{"a":1},{"a":2}],"c":{"a":{"a":[]}}})", "f.json");
	ASSERT_TRUE(ok) << ok.error();
	EXPECT_EQ((*ok)["b"][1]["a"], 2);
	EXPECT_FALSE(parse_json_text(R"({"a":1,"b":{},"a":2})", "f.json"));
	auto nested = parse_json_text(R"({"a":{"x":1,"y":2},"b":[{"c":{"d":1,"d":{}}}]})", "f.json");
	ASSERT_FALSE(nested);
	EXPECT_EQ(nested.error(), "f.json: duplicate key \"d\" in an object");
}

// Backends print as --backend takes them: IPv6 in brackets.
TEST(ArmIds, HostPortBracketsIpv6)
{
	EXPECT_EQ(host_port(*Addr::parse("192.168.20.11"), 3306), "192.168.20.11:3306");
	EXPECT_EQ(host_port(*Addr::parse("fd00::5"), 3307), "[fd00::5]:3307");
}

// ---- NSGs and rules ----

TEST(NsgJson, ReadsAzShow)
{
	auto n = nsg_from_json(load("az/nsg_show.json"));
	ASSERT_TRUE(n) << n.error();
	EXPECT_EQ(n->name, "web");
	EXPECT_FALSE(n->flushConnection);
	ASSERT_EQ(n->securityRules.size(), 3u);
	const SecurityRule *ssh = rule(*n, "ssh");
	ASSERT_NE(ssh, nullptr);
	EXPECT_EQ(ssh->priority, 1000);
	EXPECT_EQ(ssh->direction, "Inbound");
	EXPECT_EQ(ssh->protocol, "Tcp");
	EXPECT_EQ(ssh->sourceAddressPrefix, "203.0.113.0/24");
	EXPECT_TRUE(ssh->sourceAddressPrefixes.empty());
	EXPECT_EQ(ssh->destinationPortRange, "22");
	EXPECT_EQ(ssh->description, "SSH from the admin network");
	const SecurityRule *sql = rule(*n, "mysql-to-sql");
	ASSERT_NE(sql, nullptr);
	EXPECT_EQ(sql->destinationAddressPrefix, "");
	EXPECT_EQ(sql->destinationAddressPrefixes, (std::vector<std::string>{"40.121.158.0/24", "104.42.238.64/26"}));
	EXPECT_EQ(sql->destinationPortRanges, (std::vector<std::string>{"3306", "33060-33062"}));
	EXPECT_EQ(sql->description, "");
	EXPECT_EQ(n->defaultSecurityRules, default_security_rules());
}

TEST(NsgJson, PropertiesEnvelopeReadsLikeAzShape)
{
	auto flat = nsg_from_json(load("az/nsg_show.json"));
	auto arm = nsg_from_json(load("az/nsg_arm.json"));
	ASSERT_TRUE(flat) << flat.error();
	ASSERT_TRUE(arm) << arm.error();
	EXPECT_EQ(*arm, *flat);
}

TEST(NsgJson, DefaultRulesAreNeverTakenFromInput)
{
	json j = load("az/nsg_show.json");
	j["defaultSecurityRules"].erase(j["defaultSecurityRules"].begin());
	j["defaultSecurityRules"][0]["access"] = "Deny";
	j["defaultSecurityRules"][0]["priority"] = 100;
	auto n = nsg_from_json(j);
	ASSERT_TRUE(n) << n.error();
	ASSERT_EQ(n->defaultSecurityRules.size(), 6u);
	EXPECT_EQ(n->defaultSecurityRules, default_security_rules());
	EXPECT_EQ(n->defaultSecurityRules[0].name, "AllowVnetInBound");
	EXPECT_EQ(n->defaultSecurityRules[5].name, "DenyAllOutBound");
	EXPECT_EQ(n->defaultSecurityRules[5].priority, 65500);
}

TEST(NsgJson, WritesAzShape)
{
	auto n = nsg_from_json(load("az/nsg_show.json"));
	ASSERT_TRUE(n);
	json j = nsg_to_json(*n);
	EXPECT_EQ(j["id"], kIdPrefix + "Microsoft.Network/networkSecurityGroups/web");
	EXPECT_EQ(j["type"], "Microsoft.Network/networkSecurityGroups");
	EXPECT_EQ(j["resourceGroup"], "linkgate");
	EXPECT_EQ(j["provisioningState"], "Succeeded");
	EXPECT_EQ(j["flushConnection"], false);
	ASSERT_EQ(j["defaultSecurityRules"].size(), 6u);
	EXPECT_EQ(j["defaultSecurityRules"][2]["id"],
		  kIdPrefix + "Microsoft.Network/networkSecurityGroups/web/defaultSecurityRules/DenyAllInBound");
	EXPECT_EQ(j["defaultSecurityRules"][2]["type"], "Microsoft.Network/networkSecurityGroups/defaultSecurityRules");
	const json &ssh = j["securityRules"][0];
	EXPECT_EQ(ssh["id"], kIdPrefix + "Microsoft.Network/networkSecurityGroups/web/securityRules/ssh");
	EXPECT_EQ(ssh["sourceAddressPrefix"], "203.0.113.0/24");
	EXPECT_EQ(ssh["sourceAddressPrefixes"], json::array());
	EXPECT_EQ(ssh["priority"], 1000);
	const json &sql = j["securityRules"][1];
	EXPECT_TRUE(sql["destinationAddressPrefix"].is_null());
	EXPECT_EQ(sql["destinationPortRanges"], json({"3306", "33060-33062"}));
	EXPECT_TRUE(sql["description"].is_null());
}

TEST(NsgJson, ListsUsersWhenGivenState)
{
	State s = full_state();
	json j = nsg_to_json(s.networkSecurityGroups[0], &s);
	ASSERT_EQ(j["subnets"].size(), 1u);
	EXPECT_EQ(j["subnets"][0]["id"], subnet_id("client-vnet", "clients"));
	ASSERT_EQ(j["networkInterfaces"].size(), 1u);
	EXPECT_EQ(j["networkInterfaces"][0]["id"], nic_id("vm1-nic"));
}

TEST(NsgJson, EnumWordsAreCanonicalised)
{
	json j = {{"name", "r1"},
		  {"priority", 200},
		  {"direction", "outbound"},
		  {"access", "DENY"},
		  {"protocol", "tcp"},
		  {"sourceAddressPrefix", "virtualnetwork"},
		  {"destinationAddressPrefix", "INTERNET"}};
	auto r = security_rule_from_json(j, "web");
	ASSERT_TRUE(r) << r.error();
	EXPECT_EQ(r->direction, "Outbound");
	EXPECT_EQ(r->access, "Deny");
	EXPECT_EQ(r->protocol, "Tcp");
	EXPECT_EQ(r->sourceAddressPrefix, "VirtualNetwork");
	EXPECT_EQ(r->destinationAddressPrefix, "Internet");
}

TEST(NsgJson, UnknownEnumWordsAreKeptAsWritten)
{
	json j = {{"name", "r1"}, {"priority", 200}, {"direction", "Sideways"}, {"protocol", "gre"},
		  {"destinationAddressPrefix", "Sql.westus"}};
	auto r = security_rule_from_json(j, "web");
	ASSERT_TRUE(r) << r.error();
	EXPECT_EQ(r->direction, "Sideways");
	EXPECT_EQ(r->protocol, "gre");
	EXPECT_EQ(r->destinationAddressPrefix, "Sql.westus");
}

TEST(NsgJson, PriorityAsStringIsATypeError)
{
	json j = {{"name", "web"}, {"securityRules", {{{"name", "ssh"}, {"priority", "100"}}}}};
	auto n = nsg_from_json(j);
	ASSERT_FALSE(n);
	EXPECT_EQ(n.error(), "networkSecurityGroups/web/securityRules/ssh: priority must be an integer");
}

TEST(NsgJson, OtherTypeErrorsNameObjectAndField)
{
	auto a = nsg_from_json(json{{"name", "web"}, {"flushConnection", "yes"}});
	ASSERT_FALSE(a);
	EXPECT_EQ(a.error(), "networkSecurityGroups/web: flushConnection must be true or false");
	auto b = nsg_from_json(json{{"name", "web"}, {"securityRules", {{{"name", "r"}, {"sourceAddressPrefixes", "10.0.0.0/8"}}}}});
	ASSERT_FALSE(b);
	EXPECT_EQ(b.error(), "networkSecurityGroups/web/securityRules/r: sourceAddressPrefixes must be an array of strings");
	auto c = nsg_from_json(json{{"name", "web"}, {"securityRules", {42}}});
	ASSERT_FALSE(c);
	EXPECT_EQ(c.error(), "networkSecurityGroups/web/securityRules[0]: must be a JSON object");
	auto d = security_rule_from_json(json{{"name", "r"}, {"priority", 1.5}}, "web");
	ASSERT_FALSE(d);
	EXPECT_EQ(d.error(), "networkSecurityGroups/web/securityRules/r: priority must be an integer");
}

TEST(NsgJson, NumericPortsAreTakenAsText)
{
	json j = {{"name", "r"}, {"priority", 300}, {"destinationPortRange", 3306}, {"sourcePortRanges", {1024, "2000-2100"}}};
	auto r = security_rule_from_json(j, "web");
	ASSERT_TRUE(r) << r.error();
	EXPECT_EQ(r->destinationPortRange, "3306");
	EXPECT_EQ(r->sourcePortRanges, (std::vector<std::string>{"1024", "2000-2100"}));
}

TEST(NsgJson, ApplicationSecurityGroupsAreRejected)
{
	json j = {{"name", "r"}, {"priority", 300}, {"sourceApplicationSecurityGroups", {{{"id", "asg1"}}}}};
	auto r = security_rule_from_json(j, "web");
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error(), "networkSecurityGroups/web/securityRules/r: sourceApplicationSecurityGroups are not supported");
	j["sourceApplicationSecurityGroups"] = json::array();
	EXPECT_TRUE(security_rule_from_json(j, "web"));
}

TEST(NsgJson, RuleRoundTrip)
{
	State s = full_state();
	for (const auto &r : s.networkSecurityGroups[0].securityRules) {
		auto back = security_rule_from_json(security_rule_to_json(r, "web"), "web");
		ASSERT_TRUE(back) << back.error();
		EXPECT_EQ(*back, r);
	}
}

// ---- VNets, subnets, NICs, gateways ----

TEST(VnetJson, ReadsAzShow)
{
	auto v = vnet_from_json(load("az/vnet_show.json"));
	ASSERT_TRUE(v) << v.error();
	EXPECT_EQ(v->name, "client-vnet");
	EXPECT_EQ(v->addressPrefixes, std::vector<std::string>{"10.1.0.0/16"});
	EXPECT_FALSE(v->vni.has_value());
	ASSERT_EQ(v->subnets.size(), 2u);
	EXPECT_EQ(v->subnets[0].networkSecurityGroup, "clients-nsg");
	EXPECT_EQ(v->subnets[0].privateEndpointNetworkPolicies, "Disabled");
	EXPECT_TRUE(v->subnets[1].has_sql_endpoint());
	EXPECT_EQ(v->subnets[1].networkSecurityGroup, "");
	// The newer API's split policy value: NSGs apply.
	EXPECT_EQ(v->subnets[1].privateEndpointNetworkPolicies, "Enabled");
	EXPECT_EQ(v->peerings, std::vector<std::string>{"hub-vnet"});
}

TEST(VnetJson, WritesAzShape)
{
	State s = full_state();
	json j = vnet_to_json(s.virtualNetworks[0]);
	EXPECT_EQ(j["id"], vnet_id("client-vnet"));
	EXPECT_EQ(j["addressSpace"]["addressPrefixes"], json({"10.1.0.0/16", "fd00:1::/48"}));
	EXPECT_EQ(j["vni"], 4242);
	EXPECT_EQ(j["subnets"][0]["id"], subnet_id("client-vnet", "clients"));
	EXPECT_EQ(j["subnets"][0]["type"], "Microsoft.Network/virtualNetworks/subnets");
	EXPECT_EQ(j["subnets"][0]["networkSecurityGroup"]["id"], nsg_id("web"));
	EXPECT_TRUE(j["subnets"][1]["networkSecurityGroup"].is_null());
	EXPECT_EQ(j["subnets"][1]["serviceEndpoints"][0]["service"], "Microsoft.Sql");
	EXPECT_EQ(j["virtualNetworkPeerings"][0]["remoteVirtualNetwork"]["id"], vnet_id("hub-vnet"));
	EXPECT_FALSE(vnet_to_json(s.virtualNetworks[1]).contains("vni"));
}

// A peering without access to this VNet: Azure leaves the peer out of the
// VirtualNetwork tag, which linkgate does not model; refused, never read
// as a full peering that AllowVnetInBound would admit.
TEST(VnetJson, APeeringWithoutAccessIsRefused)
{
	auto peer = [](json access) {
		json p{{"name", "to-hub"}, {"remoteVirtualNetwork", {{"id", vnet_id("hub-vnet")}}}};
		if (!access.is_null())
			p["allowVirtualNetworkAccess"] = access;
		return vnet_from_json(json{{"name", "v1"},
					   {"addressSpace", {{"addressPrefixes", {"10.1.0.0/16"}}}},
					   {"virtualNetworkPeerings", {p}}});
	};
	auto no = peer(false);
	ASSERT_FALSE(no);
	EXPECT_NE(no.error().find("allowVirtualNetworkAccess false is not supported"), std::string::npos) << no.error();
	auto typed = peer("no");
	ASSERT_FALSE(typed);
	EXPECT_NE(typed.error().find("allowVirtualNetworkAccess"), std::string::npos) << typed.error();
	for (json ok : {json(true), json(nullptr)}) {
		auto v = peer(ok);
		ASSERT_TRUE(v) << v.error();
		EXPECT_EQ(v->peerings, std::vector<std::string>{"hub-vnet"});
	}
}

TEST(VnetJson, VniTypeAndRangeErrors)
{
	auto a = vnet_from_json(json{{"name", "v"}, {"vni", "7"}});
	ASSERT_FALSE(a);
	EXPECT_EQ(a.error(), "virtualNetworks/v: vni must be an integer");
	auto b = vnet_from_json(json{{"name", "v"}, {"vni", -1}});
	ASSERT_FALSE(b);
	EXPECT_EQ(b.error(), "virtualNetworks/v: vni -1 is outside 1-16777215");
	auto c = vnet_from_json(json{{"name", "v"}, {"addressSpace", {{"addressPrefixes", {"10.0.0.0/8", 5}}}}});
	ASSERT_FALSE(c);
	EXPECT_EQ(c.error(), "virtualNetworks/v: addressSpace.addressPrefixes must be an array of strings");
}

TEST(VnetJson, SubnetEnumsAndReferencesAreCanonicalised)
{
	json j = {{"name", "s"},
		  {"addressPrefix", "10.0.0.0/24"},
		  {"networkSecurityGroup", "web"},
		  {"serviceEndpoints", {"microsoft.sql", {{"service", "Microsoft.Storage"}}}},
		  {"privateEndpointNetworkPolicies", "enabled"}};
	auto s = subnet_from_json(j, "v");
	ASSERT_TRUE(s) << s.error();
	EXPECT_EQ(s->networkSecurityGroup, "web");
	EXPECT_EQ(s->serviceEndpoints, (std::vector<std::string>{"Microsoft.Sql", "Microsoft.Storage"}));
	EXPECT_EQ(s->privateEndpointNetworkPolicies, "Enabled");
	j["networkSecurityGroup"] = {{"id", nsg_id("other")}};
	EXPECT_EQ(subnet_from_json(j, "v")->networkSecurityGroup, "other");
	j["networkSecurityGroup"] = 5;
	auto bad = subnet_from_json(j, "v");
	ASSERT_FALSE(bad);
	EXPECT_NE(bad.error().find("virtualNetworks/v/subnets/s: networkSecurityGroup must be"), std::string::npos)
		<< bad.error();
}

TEST(NicJson, ReadsPrimaryConfigurationOfAzShow)
{
	auto n = nic_from_json(load("az/nic_show.json"));
	ASSERT_TRUE(n) << n.error();
	EXPECT_EQ(n->name, "client-vm1-nic");
	EXPECT_EQ(n->privateIPAddress, "10.1.1.4");
	EXPECT_EQ(n->vnet, "client-vnet");
	EXPECT_EQ(n->subnet, "clients");
	EXPECT_EQ(n->networkSecurityGroup, "vm-nsg");
}

TEST(NicJson, WritesAzShapeAndNamesNestedFieldErrors)
{
	NetworkInterface n{"nic1", "v", "s", "10.0.0.4", ""};
	json j = nic_to_json(n);
	EXPECT_EQ(j["ipConfigurations"][0]["privateIPAddress"], "10.0.0.4");
	EXPECT_EQ(j["ipConfigurations"][0]["subnet"]["id"], subnet_id("v", "s"));
	EXPECT_TRUE(j["networkSecurityGroup"].is_null());
	EXPECT_EQ(*nic_from_json(j), n);
	j["ipConfigurations"][0]["privateIPAddress"] = 10;
	auto bad = nic_from_json(j);
	ASSERT_FALSE(bad);
	EXPECT_EQ(bad.error(), "networkInterfaces/nic1: ipConfigurations[0].privateIPAddress must be a string");
	json lone = {{"name", "nic2"}, {"privateIPAddress", "10.0.0.5"}, {"subnet", {{"id", "s"}}}};
	auto bare = nic_from_json(lone);
	ASSERT_FALSE(bare);
	EXPECT_NE(bare.error().find("networkInterfaces/nic2: subnet: 's' is not a subnet id"), std::string::npos)
		<< bare.error();
}

// Every ipConfiguration is read: the primary (wherever it is in the list)
// gives the address and subnet, the others add addresses in that subnet.
TEST(NicJson, SecondaryIpConfigurations)
{
	auto cfg = [](const char *ip, bool primary, const char *subnet) {
		json c = {{"name", ip}, {"properties", {{"privateIPAddress", ip}, {"primary", primary}}}};
		if (subnet)
			c["properties"]["subnet"] = {{"id", subnet_id("v", subnet)}};
		return c;
	};
	json j = {{"name", "nic1"},
		  {"properties",
		   {{"ipConfigurations",
		     json::array({cfg("10.0.0.5", false, "s"), cfg("10.0.0.4", true, "s"), cfg("10.0.0.6", false, nullptr)})}}}};
	auto n = nic_from_json(j);
	ASSERT_TRUE(n) << n.error();
	EXPECT_EQ(n->privateIPAddress, "10.0.0.4");
	EXPECT_EQ(n->subnet, "s");
	EXPECT_EQ(n->secondaryIPAddresses, (std::vector<std::string>{"10.0.0.5", "10.0.0.6"}));
	json out = nic_to_json(*n);
	ASSERT_EQ(out["ipConfigurations"].size(), 3u);
	EXPECT_EQ(out["ipConfigurations"][0]["primary"], true);
	EXPECT_EQ(out["ipConfigurations"][2]["privateIPAddress"], "10.0.0.6");
	EXPECT_EQ(out["ipConfigurations"][2]["primary"], false);
	EXPECT_EQ(out["ipConfigurations"][2]["subnet"]["id"], subnet_id("v", "s"));
	EXPECT_EQ(*nic_from_json(out), *n);

	j["properties"]["ipConfigurations"][2] = cfg("10.0.1.6", false, "t");
	auto bad = nic_from_json(j);
	ASSERT_FALSE(bad);
	EXPECT_EQ(bad.error(), "networkInterfaces/nic1: ipConfigurations[2].subnet is v/t, not the primary's v/s: a "
			       "NIC's ipConfigurations share one subnet");
}

TEST(GatewayJson, RoundTripAndIdReferences)
{
	json j = {{"name", "onprem"},
		  {"properties", {{"localNetworkAddressSpace", {{"addressPrefixes", {"172.16.0.0/16"}}}}}},
		  {"virtualNetworks", {{{"id", vnet_id("client-vnet")}}, "hub-vnet"}}};
	auto g = local_network_gateway_from_json(j);
	ASSERT_TRUE(g) << g.error();
	EXPECT_EQ(g->addressPrefixes, std::vector<std::string>{"172.16.0.0/16"});
	EXPECT_EQ(g->virtualNetworks, (std::vector<std::string>{"client-vnet", "hub-vnet"}));
	json out = local_network_gateway_to_json(*g);
	EXPECT_EQ(out["id"], local_network_gateway_id("onprem"));
	EXPECT_EQ(out["virtualNetworks"][1]["id"], vnet_id("hub-vnet"));
	EXPECT_EQ(*local_network_gateway_from_json(out), *g);
}

// ---- private endpoints and connections ----

TEST(PrivateEndpointJson, ReadsAzShow)
{
	auto pe = private_endpoint_from_json(load("az/pe_show.json"));
	ASSERT_TRUE(pe) << pe.error();
	EXPECT_EQ(pe->name, "pe-east");
	EXPECT_EQ(pe->vnet, "client-vnet");
	EXPECT_EQ(pe->subnet, "clients");
	EXPECT_EQ(pe->privateIPAddress, "10.1.1.100"); // from customDnsConfigs
	EXPECT_EQ(pe->server, "eastus-db");
	EXPECT_EQ(pe->groupIds, std::vector<std::string>{"mysqlServer"});
	EXPECT_FALSE(pe->manualRequest);
	EXPECT_EQ(pe->connectionName, "pe-east-conn");
	EXPECT_EQ(pe->connectionState, (ConnectionState{"Approved", "Auto-approved", "None"}));
	EXPECT_TRUE(pe->connectionPresent);
}

TEST(PrivateEndpointJson, ManualRequestDefaultsToPending)
{
	auto pe = private_endpoint_from_json(load("az/pe_manual_show.json"));
	ASSERT_TRUE(pe) << pe.error();
	EXPECT_TRUE(pe->manualRequest);
	EXPECT_EQ(pe->privateIPAddress, "10.1.1.101"); // from ipConfigurations
	EXPECT_EQ(pe->server, "westus-db");
	EXPECT_EQ(pe->requestMessage, "Access for the reporting team, ticket 4711");
	EXPECT_EQ(pe->connectionState.status, "Pending");
	EXPECT_EQ(pe->connectionState.description, pe->requestMessage);
	EXPECT_EQ(pe->connectionState.actionsRequired, "None");
}

TEST(PrivateEndpointJson, AutomaticRequestDefaultsToApprovedWithDerivedName)
{
	json j = {{"name", "pe1"},
		  {"subnet", "v/s"},
		  {"privateIPAddress", "10.0.0.9"},
		  {"privateLinkServiceConnections", {{{"privateLinkServiceId", "db1"}, {"groupIds", {"MYSQLSERVER"}}}}}};
	auto pe = private_endpoint_from_json(j);
	ASSERT_TRUE(pe) << pe.error();
	EXPECT_EQ(pe->connectionName, default_connection_name("pe1", "db1"));
	EXPECT_EQ(pe->connectionName.rfind("pe1.", 0), 0u);
	EXPECT_EQ(pe->connectionState.status, "Approved");
	EXPECT_EQ(pe->connectionState.description, "Auto-Approved");
	EXPECT_EQ(pe->groupIds, std::vector<std::string>{"mysqlServer"});
	EXPECT_EQ(pe->vnet, "v");
	EXPECT_EQ(pe->privateIPAddress, "10.0.0.9");
}

TEST(PrivateEndpointJson, TopLevelAddressWinsAndStatusIsCanonicalised)
{
	json j = load("az/pe_show.json");
	j["privateIPAddress"] = "10.1.1.150";
	j["privateLinkServiceConnections"][0]["privateLinkServiceConnectionState"]["status"] = "rejected";
	auto pe = private_endpoint_from_json(j);
	ASSERT_TRUE(pe) << pe.error();
	EXPECT_EQ(pe->privateIPAddress, "10.1.1.150");
	EXPECT_EQ(pe->connectionState.status, "Rejected");
	j["manualPrivateLinkServiceConnections"] = j["privateLinkServiceConnections"];
	auto two = private_endpoint_from_json(j);
	ASSERT_FALSE(two);
	EXPECT_EQ(two.error(), "privateEndpoints/pe-east: privateLinkServiceConnections: a private endpoint has exactly one connection");
}

TEST(PrivateEndpointJson, WritesAzShape)
{
	State s = full_state();
	json auto_pe = private_endpoint_to_json(s.privateEndpoints[0], &s);
	EXPECT_EQ(auto_pe["id"], private_endpoint_id("pe-east"));
	EXPECT_EQ(auto_pe["subnet"]["id"], subnet_id("client-vnet", "clients"));
	ASSERT_EQ(auto_pe["privateLinkServiceConnections"].size(), 1u);
	EXPECT_EQ(auto_pe["manualPrivateLinkServiceConnections"], json::array());
	const json &c = auto_pe["privateLinkServiceConnections"][0];
	EXPECT_EQ(c["name"], "pe-east.conn");
	EXPECT_EQ(c["privateLinkServiceId"], server_id("eastus-db"));
	EXPECT_EQ(c["privateLinkServiceConnectionState"]["status"], "Approved");
	EXPECT_EQ(auto_pe["customDnsConfigs"][0]["fqdn"], "eastus-db.mysql.database.azure.com");
	EXPECT_EQ(auto_pe["customDnsConfigs"][0]["ipAddresses"], json({"10.1.1.100"}));
	EXPECT_EQ(auto_pe["ipConfigurations"][0]["privateIPAddress"], "10.1.1.100");
	json manual = private_endpoint_to_json(s.privateEndpoints[1], &s);
	EXPECT_EQ(manual["privateLinkServiceConnections"], json::array());
	EXPECT_EQ(manual["manualPrivateLinkServiceConnections"][0]["requestMessage"], "please");
	for (const auto &pe : s.privateEndpoints) {
		auto back = private_endpoint_from_json(private_endpoint_to_json(pe, &s));
		ASSERT_TRUE(back) << back.error();
		PrivateEndpoint want = pe;
		want.connectionPresent = true; // only the server's list can say it is gone
		EXPECT_EQ(*back, want);
	}
}

TEST(PecJson, ReadsAzShow)
{
	auto c = pec_from_json(load("az/pec_show.json"));
	ASSERT_TRUE(c) << c.error();
	EXPECT_EQ(c->name, "pe-east.5d3c9b1e-7a24-4f0d-b6e8-0c2f9a71d463");
	EXPECT_EQ(c->server, "eastus-db");
	EXPECT_EQ(c->privateEndpoint, "pe-east");
	EXPECT_EQ(c->state, (ConnectionState{"Rejected", "Rejected: use the westus replica", "None"}));
}

TEST(PecJson, WritesAzShape)
{
	State s = full_state();
	json j = pec_to_json(s.privateEndpoints[1]);
	EXPECT_EQ(j["id"], pec_id("eastus-db", "pe-manual.conn"));
	EXPECT_EQ(j["name"], "pe-manual.conn");
	EXPECT_EQ(j["type"], "Microsoft.DBforMySQL/servers/privateEndpointConnections");
	EXPECT_EQ(j["provisioningState"], "Ready");
	EXPECT_EQ(j["privateEndpoint"]["id"], private_endpoint_id("pe-manual"));
	EXPECT_EQ(j["privateLinkServiceConnectionState"], json({{"status", "Pending"}, {"description", "please"},
								{"actionsRequired", "None"}}));
	auto back = pec_from_json(j);
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(back->server, "eastus-db");
	EXPECT_EQ(back->state, s.privateEndpoints[1].connectionState);
}

TEST(PecJson, StatusIsRequired)
{
	json j = load("az/pec_show.json");
	j["privateLinkServiceConnectionState"].erase("status");
	auto c = pec_from_json(j);
	ASSERT_FALSE(c);
	EXPECT_EQ(c.error(), "mysqlServers/eastus-db/privateEndpointConnections/pe-east.5d3c9b1e-7a24-4f0d-b6e8-0c2f9a71d463: "
			     "privateLinkServiceConnectionState.status is required");
}

TEST(PecJson, ApplyPecUpdatesItsEndpointOnly)
{
	State s = full_state();
	PrivateEndpointConnection c{"renamed", "eastus-db", "pe-manual", {"Approved", "ok by DBA", "None"}};
	ASSERT_TRUE(apply_pec(s, c));
	EXPECT_EQ(s.privateEndpoints[1].connectionName, "renamed");
	EXPECT_EQ(s.privateEndpoints[1].connectionState.status, "Approved");
	EXPECT_EQ(s.privateEndpoints[0], full_state().privateEndpoints[0]);
	c.server = "westus-db";
	auto wrong = apply_pec(s, c);
	ASSERT_FALSE(wrong);
	EXPECT_NE(wrong.error().find("targets server 'eastus-db'"), std::string::npos) << wrong.error();
	c.privateEndpoint = "nope";
	EXPECT_FALSE(apply_pec(s, c));
}

// ---- servers ----

TEST(ServerJson, ReadsAzShowWithLinkgateFields)
{
	json j = load("az/mysql_server_show.json");
	auto m = server_from_json(j);
	ASSERT_TRUE(m) << m.error();
	EXPECT_EQ(m->name, "eastus-db");
	EXPECT_EQ(m->fullyQualifiedDomainName, "eastus-db.mysql.database.azure.com");
	EXPECT_EQ(m->publicIp, "40.121.158.30");
	EXPECT_EQ(m->publicNetworkAccess, "Disabled");
	ASSERT_EQ(m->backends.size(), 2u);
	EXPECT_EQ(m->backends[1], (Backend{"192.168.20.12", 3306, 2}));
	ASSERT_EQ(m->firewallRules.size(), 2u);
	EXPECT_EQ(m->firewallRules[0], (FirewallRule{"AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"}));
	ASSERT_EQ(m->virtualNetworkRules.size(), 1u);
	EXPECT_EQ(m->virtualNetworkRules[0], (VirtualNetworkRule{"sqlep-subnet", "client-vnet", "sqlep"}));
	// Its connections come in the `properties` envelope, named only by id.
	auto conns = server_connections_from_json(j);
	ASSERT_TRUE(conns) << conns.error();
	ASSERT_EQ(conns->size(), 1u);
	EXPECT_EQ((*conns)[0].name, "pe-east.5d3c9b1e-7a24-4f0d-b6e8-0c2f9a71d463");
	EXPECT_EQ((*conns)[0].privateEndpoint, "pe-east");
	EXPECT_EQ((*conns)[0].server, "eastus-db");
	EXPECT_EQ((*conns)[0].state.status, "Approved");
}

TEST(ServerJson, DefaultsAndCanonicalWords)
{
	json j = {{"name", "db1"},
		  {"publicIp", "20.1.2.3"},
		  {"publicNetworkAccess", "disabled"},
		  {"backends", {{{"address", "10.0.0.1"}}, "10.0.0.2:3307", "[fd00::3]:3308", "fd00::4"}}};
	auto m = server_from_json(j);
	ASSERT_TRUE(m) << m.error();
	EXPECT_EQ(m->fullyQualifiedDomainName, "db1.mysql.database.azure.com");
	EXPECT_EQ(m->publicNetworkAccess, "Disabled");
	ASSERT_EQ(m->backends.size(), 4u);
	EXPECT_EQ(m->backends[0], (Backend{"10.0.0.1", 3306, 1}));
	EXPECT_EQ(m->backends[1], (Backend{"10.0.0.2", 3307, 1}));
	EXPECT_EQ(m->backends[2], (Backend{"fd00::3", 3308, 1}));
	EXPECT_EQ(m->backends[3], (Backend{"fd00::4", 3306, 1}));
	EXPECT_EQ(server_from_json(json{{"name", "db2"}})->publicNetworkAccess, "Enabled");
}

TEST(ServerJson, TypeErrorsNameTheField)
{
	auto a = server_from_json(json{{"name", "db"}, {"backends", {{{"address", "10.0.0.1"}, {"port", "3306"}}}}});
	ASSERT_FALSE(a);
	EXPECT_EQ(a.error(), "mysqlServers/db: backends[0].port must be an integer");
	auto b = server_from_json(json{{"name", "db"}, {"firewallRules", {{{"name", "office"}, {"startIpAddress", 1}}}}});
	ASSERT_FALSE(b);
	EXPECT_EQ(b.error(), "mysqlServers/db/firewallRules/office: startIpAddress must be a string");
	auto c = server_from_json(json{{"name", "db"}, {"backends", {"10.0.0.1:http"}}});
	ASSERT_FALSE(c);
	EXPECT_NE(c.error().find("mysqlServers/db: backends[0] '10.0.0.1:http'"), std::string::npos) << c.error();
	// A colon and no port is not the default port.
	for (const char *t : {"10.0.0.1:", "[fd00::5]:"}) {
		auto d = server_from_json(json{{"name", "db"}, {"backends", {t}}});
		ASSERT_FALSE(d) << t;
		EXPECT_NE(d.error().find("mysqlServers/db: backends[0] '" + std::string(t) + "'"), std::string::npos)
			<< d.error();
	}
}

TEST(ServerJson, WritesAzShapeAndDerivesConnections)
{
	State s = full_state();
	json j = server_to_json(s.servers[0], s);
	EXPECT_EQ(j["id"], server_id("eastus-db"));
	EXPECT_EQ(j["type"], "Microsoft.DBforMySQL/servers");
	EXPECT_EQ(j["publicIp"], "40.121.158.30");
	EXPECT_EQ(j["backends"][1], json({{"address", "fd00:20::11"}, {"port", 3307}, {"weight", 0}}));
	const json &fw = j["firewallRules"][0];
	EXPECT_EQ(fw["id"], server_id("eastus-db") + "/firewallRules/AllowAllWindowsAzureIps");
	EXPECT_EQ(fw["type"], "Microsoft.DBforMySQL/servers/firewallRules");
	EXPECT_EQ(fw["startIpAddress"], "0.0.0.0");
	const json &vr = j["virtualNetworkRules"][0];
	EXPECT_EQ(vr["virtualNetworkSubnetId"], subnet_id("client-vnet", "sqlep"));
	EXPECT_EQ(vr["ignoreMissingVnetServiceEndpoint"], false);
	EXPECT_EQ(vr["state"], "Ready");
	EXPECT_EQ(vr["type"], "Microsoft.DBforMySQL/servers/virtualNetworkRules");
	// pe-gone's connection was deleted: only the other two are listed.
	ASSERT_EQ(j["privateEndpointConnections"].size(), 2u);
	EXPECT_EQ(j["privateEndpointConnections"][0]["name"], "pe-east.conn");
	EXPECT_EQ(j["privateEndpointConnections"][1]["name"], "pe-manual.conn");
}

// ---- service tags ----

TEST(ServiceTagsJson, LoadsServiceTagsPublicFile)
{
	auto t = load_service_tags_file(fixture("ServiceTags_Public.json"));
	ASSERT_TRUE(t) << t.error();
	EXPECT_EQ(t->changeNumber, 312);
	EXPECT_EQ(t->cloud, "Public");
	ASSERT_EQ(t->values.size(), 5u);
	const ServiceTag *w = t->find("sql.westus");
	ASSERT_NE(w, nullptr);
	EXPECT_EQ(w->name, "Sql.WestUS");
	EXPECT_EQ(w->region, "westus");
	EXPECT_EQ(w->systemService, "AzureSQL");
	EXPECT_EQ(w->addressPrefixes,
		  (std::vector<std::string>{"13.86.216.0/25", "104.42.238.64/26", "2603:1030:a07:400::/123"}));
	ASSERT_NE(t->find("AzureCloud"), nullptr);
	EXPECT_EQ(t->find("AzureCloud")->id, "AzureCloud");
	auto back = service_tags_from_json(service_tags_to_json(*t));
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(*back, *t);
}

TEST(ServiceTagsJson, ErrorsNameTheTag)
{
	json j = {{"changeNumber", 1}, {"values", {{{"name", "Sql"}, {"properties", {{"addressPrefixes", "10.0.0.0/8"}}}}}}};
	auto t = service_tags_from_json(j);
	ASSERT_FALSE(t);
	EXPECT_EQ(t.error(), "serviceTags/Sql: addressPrefixes must be an array of strings");
	auto n = service_tags_from_json(json{{"changeNumber", "312"}});
	ASSERT_FALSE(n);
	EXPECT_EQ(n.error(), "serviceTags: changeNumber must be an integer");
}

// ---- whole states ----

TEST(StateJson, SeedLoadsAndValidates)
{
	auto s = load_state_file(fixture("seed_state.json"));
	ASSERT_TRUE(s) << s.error();
	EXPECT_TRUE(validate(*s)) << validate(*s).error();
	ASSERT_EQ(s->virtualNetworks.size(), 1u);
	EXPECT_EQ(s->virtualNetworks[0].subnet("clients")->networkSecurityGroup, "clients-nsg");
	EXPECT_TRUE(s->virtualNetworks[0].subnet("sqlep")->has_sql_endpoint());
	ASSERT_EQ(s->servers.size(), 2u);
	EXPECT_EQ(s->server("westus-db")->backends[0].address, "192.168.10.11");
	EXPECT_EQ(s->server("eastus-db")->backends[1].address, "192.168.20.12");
	const PrivateEndpoint *pe = s->private_endpoint("pe-east");
	ASSERT_NE(pe, nullptr);
	EXPECT_EQ(pe->privateIPAddress, "10.1.1.100");
	EXPECT_EQ(pe->server, "eastus-db");
	EXPECT_EQ(pe->connectionName, default_connection_name("pe-east", "eastus-db"));
	EXPECT_EQ(pe->connectionState.status, "Approved");
	EXPECT_EQ(s->localNetworkGateways[0].virtualNetworks, std::vector<std::string>{"client-vnet"});
	EXPECT_EQ(s->networkInterfaces[1].vnet, "client-vnet");
	// Public IPs sit in their regions' Sql tags.
	auto in_tag = [&](const std::string &ip, const std::string &tag) {
		auto a = Addr::parse(ip);
		for (const auto &p : s->serviceTags.find(tag)->addressPrefixes)
			if (Prefix::parse(p)->contains(*a))
				return true;
		return false;
	};
	EXPECT_TRUE(in_tag(s->server("westus-db")->publicIp, "Sql.WestUS"));
	EXPECT_TRUE(in_tag(s->server("eastus-db")->publicIp, "Sql.EastUS"));
	EXPECT_FALSE(in_tag(s->server("eastus-db")->publicIp, "Sql.WestUS"));
	for (const auto &n : s->networkSecurityGroups)
		EXPECT_EQ(n.defaultSecurityRules.size(), 6u);
}

// References name objects case-insensitively, as ARM does, and read as the
// object's own spelling: the compiler and evaluator compare exactly.
TEST(StateJson, ReferencesAreCaseInsensitive)
{
	json j = *read_json_file(fixture("seed_state.json"));
	bool subnet = false;
	for (auto &sn : j["virtualNetworks"][0]["subnets"])
		if (sn["name"] == "clients") {
			ASSERT_TRUE(sn.contains("networkSecurityGroup")) << sn.dump();
			sn["networkSecurityGroup"] = {{"id", nsg_id("CLIENTS-NSG")}};
			subnet = true;
		}
	ASSERT_TRUE(subnet);
	j["networkInterfaces"][0]["ipConfigurations"][0]["subnet"]["id"] = subnet_id("Client-VNet", "Clients");
	j["privateEndpoints"][0]["privateLinkServiceConnections"][0]["privateLinkServiceId"] = server_id("EastUS-DB");
	auto s = state_from_json(j);
	ASSERT_TRUE(s) << s.error();
	EXPECT_TRUE(validate(*s)) << validate(*s).error();
	EXPECT_EQ(s->virtualNetworks[0].subnet("clients")->networkSecurityGroup, "clients-nsg");
	EXPECT_EQ(s->networkInterfaces[0].vnet, "client-vnet");
	EXPECT_EQ(s->networkInterfaces[0].subnet, "clients");
	EXPECT_EQ(s->private_endpoint("pe-east")->server, "eastus-db");
	EXPECT_EQ(*s, *load_state_file(fixture("seed_state.json")));
	// Lookups by name too.
	ASSERT_NE(s->nsg("clients-nsg"), nullptr);
	EXPECT_EQ(s->nsg("Clients-NSG"), s->nsg("clients-nsg"));
	EXPECT_NE(s->server("EASTUS-DB"), nullptr);
}

TEST(StateJson, SeedRoundTrips)
{
	auto s = load_state_file(fixture("seed_state.json"));
	ASSERT_TRUE(s) << s.error();
	auto back = state_from_json(state_to_json(*s));
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(*back, *s);
}

TEST(StateJson, FullStateIsValidAndRoundTrips)
{
	State s = full_state();
	ASSERT_TRUE(validate(s)) << validate(s).error();
	json j = state_to_json(s);
	auto back = state_from_json(j);
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(*back, s);
	// Text too: what save writes is what load reads.
	auto again = state_from_json(json::parse(j.dump()));
	ASSERT_TRUE(again) << again.error();
	EXPECT_EQ(*again, s);
}

TEST(StateJson, AzFixturesTogetherRoundTrip)
{
	json j = {{"virtualNetworks", {load("az/vnet_show.json")}},
		  {"networkSecurityGroups", {load("az/nsg_show.json"), load("az/nsg_arm.json")}},
		  {"networkInterfaces", {load("az/nic_show.json")}},
		  {"privateEndpoints", {load("az/pe_show.json"), load("az/pe_manual_show.json")}},
		  {"mysqlServers", {load("az/mysql_server_show.json")}}};
	auto s = state_from_json(j);
	ASSERT_TRUE(s) << s.error();
	// The server's entry names the connection and carries its state.
	const PrivateEndpoint *pe = s->private_endpoint("pe-east");
	EXPECT_EQ(pe->connectionName, "pe-east.5d3c9b1e-7a24-4f0d-b6e8-0c2f9a71d463");
	EXPECT_TRUE(pe->connectionPresent);
	auto back = state_from_json(state_to_json(*s));
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(*back, *s);
}

TEST(StateJson, ServerConnectionListWinsOverEndpoint)
{
	json pe = load("az/pe_show.json"); // says Approved
	json server = load("az/mysql_server_show.json");
	server["privateEndpointConnections"][0]["properties"]["privateLinkServiceConnectionState"] =
		json{{"status", "rejected"}, {"description", "not this one"}, {"actionsRequired", "None"}};
	auto s = state_from_json(json{{"privateEndpoints", {pe}}, {"mysqlServers", {server}}});
	ASSERT_TRUE(s) << s.error();
	EXPECT_EQ(s->privateEndpoints[0].connectionState, (ConnectionState{"Rejected", "not this one", "None"}));
}

TEST(StateJson, EndpointMissingFromServerListHasNoConnection)
{
	json pe = load("az/pe_show.json");
	json server = load("az/mysql_server_show.json");
	server["privateEndpointConnections"] = json::array();
	auto s = state_from_json(json{{"privateEndpoints", {pe}}, {"mysqlServers", {server}}});
	ASSERT_TRUE(s) << s.error();
	EXPECT_FALSE(s->privateEndpoints[0].connectionPresent);
	// Without the list the endpoint's own copy stands.
	server.erase("privateEndpointConnections");
	auto t = state_from_json(json{{"privateEndpoints", {pe}}, {"mysqlServers", {server}}});
	ASSERT_TRUE(t) << t.error();
	EXPECT_TRUE(t->privateEndpoints[0].connectionPresent);
}

TEST(StateJson, DeletedConnectionSurvivesALookalikeName)
{
	// The deleted connection of pe-gone is named like the listed endpoint pe-east.
	State s = full_state();
	s.privateEndpoints[2].connectionName = "pe-east";
	ASSERT_TRUE(validate(s)) << validate(s).error();
	auto back = state_from_json(state_to_json(s));
	ASSERT_TRUE(back) << back.error();
	EXPECT_FALSE(back->private_endpoint("pe-gone")->connectionPresent);
	EXPECT_EQ(*back, s);
}

TEST(StateJson, ConnectionToUnknownEndpointIsAnError)
{
	json server = load("az/mysql_server_show.json");
	auto s = state_from_json(json{{"mysqlServers", {server}}});
	ASSERT_FALSE(s);
	EXPECT_NE(s.error().find("privateEndpoint 'pe-east' does not exist"), std::string::npos) << s.error();
}

TEST(StateJson, ShapeErrors)
{
	auto a = state_from_json(json{{"networkSecurityGroup", json::array()}});
	ASSERT_FALSE(a);
	EXPECT_EQ(a.error(), "state: unknown key 'networkSecurityGroup'");
	auto b = state_from_json(json{{"virtualNetworks", json::object()}});
	ASSERT_FALSE(b);
	EXPECT_EQ(b.error(), "state: virtualNetworks must be an array");
	auto c = state_from_json(json::array());
	ASSERT_FALSE(c);
	auto d = state_from_json(json{{"virtualNetworks", {{{"name", "v"}, {"subnets", {{{"name", "s"}, {"addressPrefix", 10}}}}}}}});
	ASSERT_FALSE(d);
	EXPECT_EQ(d.error(), "virtualNetworks/v/subnets/s: addressPrefix must be a string");
	auto e = state_from_json(json::object());
	ASSERT_TRUE(e);
	EXPECT_EQ(*e, State{});
}

// ---- files ----

TEST(StateFile, SaveThenLoadIsAtomicAndEqual)
{
	TempDir d;
	std::string path = d.path + "/state.json";
	State s = full_state();
	ASSERT_TRUE(save_state_file(path, s));
	auto back = load_state_file(path);
	ASSERT_TRUE(back) << back.error();
	EXPECT_EQ(*back, s);
	// Overwrite with another state: the file is replaced whole, no temp left behind.
	auto seed = load_state_file(fixture("seed_state.json"));
	ASSERT_TRUE(seed);
	ASSERT_TRUE(save_state_file(path, *seed));
	EXPECT_EQ(d.files(), std::vector<std::string>{"state.json"});
	auto again = load_state_file(path);
	ASSERT_TRUE(again) << again.error();
	EXPECT_EQ(*again, *seed);
}

TEST(StateFile, SaveIntoMissingDirectoryFails)
{
	TempDir d;
	auto st = save_state_file(d.path + "/no/such/state.json", State{});
	ASSERT_FALSE(st);
	EXPECT_NE(st.error().find(d.path + "/no/such/state.json"), std::string::npos) << st.error();
}

TEST(StateFile, MissingFileIsAClearError)
{
	auto s = load_state_file("/nonexistent/linkgate/state.json");
	ASSERT_FALSE(s);
	EXPECT_NE(s.error().find("/nonexistent/linkgate/state.json"), std::string::npos) << s.error();
	EXPECT_NE(s.error().find("No such file"), std::string::npos) << s.error();
}

TEST(StateFile, BadJsonErrorHasLineAndColumn)
{
	TempDir d;
	d.write("bad.json", "{\n  \"virtualNetworks\": [\n    { \"name\": \"v\", }\n  ]\n}\n");
	auto s = load_state_file(d.path + "/bad.json");
	ASSERT_FALSE(s);
	EXPECT_EQ(s.error().rfind(d.path + "/bad.json: ", 0), 0u) << s.error();
	EXPECT_NE(s.error().find("line 3"), std::string::npos) << s.error();
	EXPECT_NE(s.error().find("column"), std::string::npos) << s.error();
}

TEST(StateFile, ContentErrorsArePrefixedWithThePath)
{
	TempDir d;
	d.write("s.json", R"({"networkSecurityGroups": [{"name": "web", "securityRules": [{"name": "ssh", "priority": "high"}]}]})");
	auto s = load_state_file(d.path + "/s.json");
	ASSERT_FALSE(s);
	EXPECT_EQ(s.error(), d.path + "/s.json: networkSecurityGroups/web/securityRules/ssh: priority must be an integer");
	auto t = load_service_tags_file(d.path + "/missing.json");
	ASSERT_FALSE(t);
	EXPECT_NE(t.error().find("missing.json"), std::string::npos);
}
