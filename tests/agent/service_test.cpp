// The agent's JSON-RPC service in-process: every method, every error class,
// and no change of state or generation on any error.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "arm_json.hpp"
#include "service.hpp"
#include "temp_dir.hpp"

using json = nlohmann::json;
using lg::State;
using lg::agent::Service;

namespace {

class ServiceTest : public ::testing::Test {
protected:
	Service svc{State{}, 1};

	json call(const std::string &method, const json &params = json::object())
	{
		return svc.handle(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}});
	}
	json ok(const std::string &method, const json &params = json::object())
	{
		json r = call(method, params);
		EXPECT_TRUE(r.contains("result")) << method << " " << params.dump() << " -> " << r.dump();
		return r.value("result", json(nullptr));
	}
	// The error's code; the state and generation must be untouched.
	json error(const std::string &method, const json &params, int code, const std::string &needle = "")
	{
		State before = svc.state();
		uint64_t g = svc.generation();
		json r = call(method, params);
		EXPECT_TRUE(r.contains("error")) << method << " " << params.dump() << " -> " << r.dump();
		json e = r.value("error", json::object());
		EXPECT_EQ(e.value("code", 0), code) << r.dump();
		if (!needle.empty()) {
			EXPECT_NE(e.value("message", std::string()).find(needle), std::string::npos) << r.dump();
		}
		EXPECT_EQ(svc.state(), before) << method;
		EXPECT_EQ(svc.generation(), g) << method;
		return e;
	}

	// A client VNet with an NSG'd subnet and a Microsoft.Sql subnet, a server.
	void base()
	{
		ok("network.nsg.create", {{"name", "web"}});
		ok("network.vnet.create", {{"name", "v1"}, {"addressPrefixes", {"10.1.0.0/16"}}, {"vni", 101}});
		ok("network.vnet.subnet.create", {{"vnetName", "v1"},
						  {"name", "clients"},
						  {"addressPrefixes", {"10.1.1.0/24"}},
						  {"networkSecurityGroup", "web"}});
		ok("network.vnet.subnet.create", {{"vnetName", "v1"},
						  {"name", "sqlep"},
						  {"addressPrefixes", "10.1.2.0/24"},
						  {"serviceEndpoints", {"Microsoft.Sql"}}});
		ok("mysql.server.create",
		   {{"name", "db1"}, {"publicIp", "20.10.1.5"}, {"backend", {"192.168.10.11:3306", "192.168.10.12:3306:2"}}});
	}
};

TEST_F(ServiceTest, VnetCreateShowListDelete)
{
	json r = call("network.vnet.create", {{"name", "v0"}});
	EXPECT_EQ(r["generation"], 2);
	EXPECT_EQ(r["id"], 1);
	json v = r["result"]["newVNet"];
	EXPECT_EQ(v["name"], "v0");
	EXPECT_EQ(v["addressSpace"]["addressPrefixes"], json({"10.0.0.0/16"})); // az's default
	EXPECT_EQ(v["type"], "Microsoft.Network/virtualNetworks");
	json w = ok("network.vnet.create",
		    {{"name", "v1"}, {"addressPrefixes", {"10.1.0.0/16"}}, {"vni", 77}, {"subnetName", "s"},
		     {"subnetPrefixes", {"10.1.0.0/24"}}})["newVNet"];
	EXPECT_EQ(w["vni"], 77);
	EXPECT_EQ(w["subnets"][0]["addressPrefix"], "10.1.0.0/24");
	EXPECT_EQ(ok("network.vnet.show", {{"name", "v1"}})["vni"], 77);
	EXPECT_EQ(ok("network.vnet.list").size(), 2u);
	error("network.vnet.create", {{"name", "v1"}, {"addressPrefixes", {"10.9.0.0/16"}}}, lg::agent::kRejected,
	      "virtualNetworks/v1: already exists");
	error("network.vnet.create", {{"name", "v2"}, {"addressPrefixes", {"10.1.0.0/33"}}}, lg::agent::kRejected,
	      "virtualNetworks/v2: addressSpace.addressPrefixes");
	// As az: a subnet's prefixes without its name are refused, not dropped.
	error("network.vnet.create", {{"name", "v2"}, {"subnetPrefixes", {"10.0.1.0/24"}}}, lg::agent::kInvalidParams,
	      "subnetPrefixes: given without subnetName");
	error("network.vnet.create", {{"name", "v2"}, {"subnetName", nullptr}, {"subnetPrefixes", {"10.0.1.0/24"}}},
	      lg::agent::kInvalidParams, "subnetPrefixes: given without subnetName");
	error("network.vnet.show", {{"name", "v2"}}, lg::agent::kNotFound);
	EXPECT_TRUE(ok("network.vnet.delete", {{"name", "v0"}}).is_null());
	error("network.vnet.show", {{"name", "v0"}}, lg::agent::kNotFound, "virtualNetworks/v0: not found");
	error("network.vnet.delete", {{"name", "v0"}}, lg::agent::kNotFound);
	EXPECT_EQ(svc.generation(), 4u);
}

TEST_F(ServiceTest, SubnetCreateUpdateShowListDelete)
{
	base();
	json s = ok("network.vnet.subnet.show", {{"vnetName", "v1"}, {"name", "clients"}});
	EXPECT_EQ(s["networkSecurityGroup"]["id"], lg::nsg_id("web"));
	EXPECT_EQ(s["privateEndpointNetworkPolicies"], "Disabled");
	s = ok("network.vnet.subnet.update", {{"vnetName", "v1"},
					      {"name", "clients"},
					      {"networkSecurityGroup", ""},
					      {"privateEndpointNetworkPolicies", "enabled"}});
	EXPECT_TRUE(s["networkSecurityGroup"].is_null());
	EXPECT_EQ(s["privateEndpointNetworkPolicies"], "Enabled");
	s = ok("network.vnet.subnet.update", {{"vnetName", "v1"}, {"name", "sqlep"}, {"serviceEndpoints", {""}}});
	EXPECT_TRUE(s["serviceEndpoints"].empty());
	EXPECT_EQ(ok("network.vnet.subnet.list", {{"vnetName", "v1"}}).size(), 2u);
	error("network.vnet.subnet.create", {{"vnetName", "nope"}, {"name", "x"}, {"addressPrefixes", {"10.1.3.0/24"}}},
	      lg::agent::kNotFound, "virtualNetworks/nope: not found");
	error("network.vnet.subnet.create", {{"vnetName", "v1"}, {"name", "x"}, {"addressPrefixes", {"10.2.3.0/24"}}},
	      lg::agent::kRejected, "virtualNetworks/v1/subnets/x: addressPrefix 10.2.3.0/24 is outside");
	error("network.vnet.subnet.create",
	      {{"vnetName", "v1"}, {"name", "x"}, {"addressPrefixes", {"10.1.3.0/24"}}, {"networkSecurityGroup", "nsg9"}},
	      lg::agent::kRejected, "networkSecurityGroup 'nsg9' does not exist");
	error("network.vnet.subnet.create", {{"vnetName", "v1"}, {"name", "x"}}, lg::agent::kInvalidParams,
	      "addressPrefixes: is required");
	error("network.vnet.subnet.update", {{"vnetName", "v1"}, {"name", "x"}}, lg::agent::kNotFound,
	      "virtualNetworks/v1/subnets/x: not found");
	ok("network.vnet.subnet.delete", {{"vnetName", "v1"}, {"name", "sqlep"}});
	error("network.vnet.subnet.show", {{"vnetName", "v1"}, {"name", "sqlep"}}, lg::agent::kNotFound);
}

TEST_F(ServiceTest, NicCreateShowListDelete)
{
	base();
	json n = ok("network.nic.create", {{"name", "vm1-nic"},
					  {"vnetName", "v1"},
					  {"subnet", "clients"},
					  {"privateIpAddress", "10.1.1.4"},
					  {"networkSecurityGroup", "web"}})["NewNIC"];
	EXPECT_EQ(n["ipConfigurations"][0]["privateIPAddress"], "10.1.1.4");
	EXPECT_EQ(n["ipConfigurations"][0]["subnet"]["id"], lg::subnet_id("v1", "clients"));
	// A subnet id instead of --vnet-name.
	ok("network.nic.create",
	   {{"name", "vm2-nic"}, {"subnet", lg::subnet_id("v1", "clients")}, {"privateIpAddress", "10.1.1.5"}});
	EXPECT_EQ(ok("network.nic.list").size(), 2u);
	EXPECT_EQ(ok("network.nic.show", {{"name", "vm2-nic"}})["networkSecurityGroup"], nullptr);
	error("network.nic.create",
	      {{"name", "vm3-nic"}, {"vnetName", "v1"}, {"subnet", "clients"}, {"privateIpAddress", "10.1.9.4"}},
	      lg::agent::kRejected, "networkInterfaces/vm3-nic: privateIPAddress 10.1.9.4 is outside subnet clients");
	error("network.nic.create",
	      {{"name", "vm3-nic"}, {"vnetName", "v1"}, {"subnet", "clients"}, {"privateIpAddress", "10.1.1.4"}},
	      lg::agent::kRejected, "already used by network interface vm1-nic");
	// A subnet id names its VNet; a --vnet-name that says another is refused.
	error("network.nic.create",
	      {{"name", "vm3-nic"}, {"vnetName", "v2"}, {"subnet", lg::subnet_id("v1", "clients")},
	       {"privateIpAddress", "10.1.1.6"}},
	      lg::agent::kInvalidParams, "'v2' is not the VNet of subnet");
	EXPECT_EQ(ok("network.nic.list").size(), 2u);
	// The NSG in use by a NIC and a subnet cannot go.
	error("network.nsg.delete", {{"name", "web"}}, lg::agent::kRejected, "networkSecurityGroups/web cannot be deleted");
	ok("network.nic.delete", {{"name", "vm1-nic"}});
	error("network.nic.show", {{"name", "vm1-nic"}}, lg::agent::kNotFound, "networkInterfaces/vm1-nic: not found");
}

TEST_F(ServiceTest, NsgAndRules)
{
	json n = ok("network.nsg.create", {{"name", "web"}, {"flushConnection", "true"}})["NewNSG"];
	EXPECT_EQ(n["flushConnection"], true);
	EXPECT_EQ(n["defaultSecurityRules"].size(), 6u);
	EXPECT_EQ(ok("network.nsg.update", {{"name", "web"}, {"flushConnection", false}})["flushConnection"], false);
	// az's defaults: Inbound Allow * from * to *:80.
	json r = ok("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "http"}, {"priority", 100}});
	EXPECT_EQ(r["direction"], "Inbound");
	EXPECT_EQ(r["access"], "Allow");
	EXPECT_EQ(r["protocol"], "*");
	EXPECT_EQ(r["sourceAddressPrefix"], "*");
	EXPECT_EQ(r["destinationPortRange"], "80");
	EXPECT_EQ(r["destinationPortRanges"], json::array());
	r = ok("network.nsg.rule.create", {{"nsgName", "web"},
					   {"name", "mysql-out"},
					   {"priority", 200},
					   {"direction", "outbound"},
					   {"access", "Deny"},
					   {"protocol", "tcp"},
					   {"sourceAddressPrefixes", {"10.1.1.0/24", "10.1.2.0/24"}},
					   {"destinationAddressPrefixes", {"VirtualNetwork"}},
					   {"destinationPortRanges", {"3306", "33060-33062"}},
					   {"description", "no mysql"}});
	EXPECT_EQ(r["direction"], "Outbound");
	EXPECT_EQ(r["protocol"], "Tcp");
	EXPECT_TRUE(r["sourceAddressPrefix"].is_null());
	EXPECT_EQ(r["sourceAddressPrefixes"].size(), 2u);
	EXPECT_EQ(r["destinationAddressPrefix"], "VirtualNetwork");
	EXPECT_EQ(r["destinationPortRanges"], json({"3306", "33060-33062"}));
	EXPECT_EQ(r["description"], "no mysql");
	r = ok("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "http"}, {"priority", 150}, {"access", "Deny"}});
	EXPECT_EQ(r["priority"], 150);
	EXPECT_EQ(r["access"], "Deny");
	EXPECT_EQ(r["destinationPortRange"], "80"); // untouched fields stay
	EXPECT_EQ(ok("network.nsg.rule.show", {{"nsgName", "web"}, {"name", "DenyAllInBound"}})["priority"], 65500);
	EXPECT_EQ(ok("network.nsg.rule.list", {{"nsgName", "web"}}).size(), 2u);
	EXPECT_EQ(ok("network.nsg.rule.list", {{"nsgName", "web"}, {"includeDefault", true}}).size(), 8u);
	EXPECT_EQ(ok("network.nsg.show", {{"name", "web"}})["securityRules"].size(), 2u);
	EXPECT_EQ(ok("network.nsg.list").size(), 1u);

	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", 150}}, lg::agent::kRejected,
	      "networkSecurityGroups/web/securityRules/x: priority 150 is already used by Inbound rule http");
	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", 99}}, lg::agent::kRejected,
	      "priority 99 is outside");
	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", 300}, {"protocol", "Gre"}},
	      lg::agent::kRejected, "protocol 'Gre'");
	error("network.nsg.rule.create",
	      {{"nsgName", "web"}, {"name", "x"}, {"priority", 300}, {"sourceAddressPrefixes", {"Sql.WestUS"}}},
	      lg::agent::kRejected, "Sql.WestUS");
	error("network.nsg.rule.create",
	      {{"nsgName", "web"}, {"name", "x"}, {"priority", 300}, {"description", std::string(141, 'd')}},
	      lg::agent::kRejected, "description is 141 characters");
	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}}, lg::agent::kInvalidParams,
	      "priority: is required");
	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", "300"}},
	      lg::agent::kInvalidParams, "priority: must be an integer");
	error("network.nsg.rule.create", {{"nsgName", "nope"}, {"name", "x"}, {"priority", 300}}, lg::agent::kNotFound,
	      "networkSecurityGroups/nope: not found");
	error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "http"}, {"priority", 300}},
	      lg::agent::kRejected, "networkSecurityGroups/web/securityRules/http: already exists");
	error("network.nsg.create", {{"name", "bad name"}}, lg::agent::kRejected, "may only contain");
	error("network.nsg.update", {{"name", "web"}, {"flushConnection", "maybe"}}, lg::agent::kInvalidParams,
	      "flushConnection");
	// An empty prefix or range list, or an empty entry, would read as '*'.
	for (const char *k : {"sourceAddressPrefixes", "sourcePortRanges", "destinationAddressPrefixes",
			      "destinationPortRanges"}) {
		error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", 300}, {k, json::array()}},
		      lg::agent::kInvalidParams, std::string(k) + ": must name at least one");
		error("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "x"}, {"priority", 300}, {k, {""}}},
		      lg::agent::kInvalidParams, k);
		error("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "mysql-out"}, {k, json::array()}},
		      lg::agent::kInvalidParams, k);
		error("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "mysql-out"}, {k, {"10.1.1.9", ""}}},
		      lg::agent::kInvalidParams, k);
	}
	ok("network.nsg.rule.delete", {{"nsgName", "web"}, {"name", "http"}});
	error("network.nsg.rule.show", {{"nsgName", "web"}, {"name", "http"}}, lg::agent::kNotFound,
	      "networkSecurityGroups/web/securityRules/http: not found");
	ok("network.nsg.delete", {{"name", "web"}});
	EXPECT_TRUE(ok("network.nsg.list").empty());
}

// The six default rules are always there and cannot be changed (SPEC §2):
// show finds them by name, so update and delete refuse them rather than
// call them missing. A custom rule may have a default rule's name (its own
// collection, as in Azure); then it is the one these find.
TEST_F(ServiceTest, DefaultRulesAreNotChanged)
{
	ok("network.nsg.create", {{"name", "web"}});
	for (const char *name : {"DenyAllInBound", "allowvnetoutbound"}) {
		error("network.nsg.rule.update", {{"nsgName", "web"}, {"name", name}, {"priority", 200}},
		      lg::agent::kRejected,
		      "networkSecurityGroups/web/defaultSecurityRules/" +
			      std::string(lg::iequals(name, "DenyAllInBound") ? "DenyAllInBound" : "AllowVnetOutBound") +
			      ": a default rule cannot be changed or deleted");
		error("network.nsg.rule.delete", {{"nsgName", "web"}, {"name", name}}, lg::agent::kRejected,
		      "a default rule cannot be changed or deleted");
	}
	EXPECT_EQ(ok("network.nsg.rule.show", {{"nsgName", "web"}, {"name", "DenyAllInBound"}})["priority"], 65500);
	// A name that is neither is still missing.
	error("network.nsg.rule.delete", {{"nsgName", "web"}, {"name", "DenyAll"}}, lg::agent::kNotFound,
	      "networkSecurityGroups/web/securityRules/DenyAll: not found");
	// A custom rule of that name is the one update, show and delete find.
	ok("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "DenyAllInbound"}, {"priority", 4096}, {"access", "Deny"}});
	EXPECT_EQ(ok("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "denyallinbound"}, {"priority", 4000}})["priority"],
		  4000);
	EXPECT_EQ(ok("network.nsg.rule.show", {{"nsgName", "web"}, {"name", "DenyAllInBound"}})["priority"], 4000);
	ok("network.nsg.rule.delete", {{"nsgName", "web"}, {"name", "DenyAllInbound"}});
	EXPECT_TRUE(ok("network.nsg.rule.list", {{"nsgName", "web"}}).empty());
	EXPECT_EQ(ok("network.nsg.rule.list", {{"nsgName", "web"}, {"includeDefault", true}}).size(), 6u);
}

TEST_F(ServiceTest, ServiceTagsLoadInlineAndFromFile)
{
	ok("network.nsg.create", {{"name", "web"}});
	error("network.nsg.rule.create",
	      {{"nsgName", "web"}, {"name", "sql"}, {"priority", 100}, {"destinationAddressPrefixes", {"Sql.WestUS"}}},
	      lg::agent::kRejected, "Sql.WestUS");
	json t = ok("network.service-tag.load", {{"file", std::string(LG_FIXTURES_DIR) + "/ServiceTags_Public.json"}});
	EXPECT_GT(t["count"].get<int>(), 0);
	EXPECT_EQ(t["cloud"], "Public");
	ok("network.nsg.rule.create",
	   {{"nsgName", "web"}, {"name", "sql"}, {"priority", 100}, {"destinationAddressPrefixes", {"Sql.WestUS"}}});
	// A rule uses the tag: a tag file without it is refused.
	error("network.service-tag.load", {{"serviceTags", {{"changeNumber", 1}, {"values", json::array()}}}},
	      lg::agent::kRejected, "Sql.WestUS");
	error("network.service-tag.load", {{"file", "relative.json"}}, lg::agent::kInvalidParams, "absolute");
	// Both forms at once: neither is guessed.
	error("network.service-tag.load",
	      {{"file", std::string(LG_FIXTURES_DIR) + "/ServiceTags_Public.json"},
	       {"serviceTags", {{"changeNumber", 1}, {"values", json::array()}}}},
	      lg::agent::kInvalidParams, "exclusive");
	error("network.service-tag.load", {{"file", "/nonexistent/tags.json"}}, lg::agent::kRejected,
	      "/nonexistent/tags.json");
	error("network.service-tag.load", json::object(), lg::agent::kInvalidParams, "serviceTags");
	// Only a regular file is read: a FIFO would block the agent's one
	// control thread, a device would never end.
	lgtest::TempDir tmp("lg_service_files");
	ASSERT_TRUE(tmp.made());
	const std::string &dir = tmp.path();
	std::string fifo = dir + "/fifo";
	ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
	for (const std::string &f : {fifo, std::string("/dev/zero"), dir})
		error("network.service-tag.load", {{"file", f}}, lg::agent::kRejected, f + ": not a regular file");
	// A number beyond a double, and nesting past the limit, are errors naming the file.
	std::string big = dir + "/big.json", deep = dir + "/deep.json";
	std::ofstream(big) << R"({"changeNumber":1e999,"values":[]})";
	std::ofstream(deep) << std::string(200000, '[') << std::string(200000, ']');
	error("network.service-tag.load", {{"file", big}}, lg::agent::kRejected, big + ": ");
	error("apply", {{"file", deep}}, lg::agent::kRejected, deep + ": JSON nested deeper than 64 levels");
	std::string nul = dir + "/nul.json";
	std::ofstream(nul) << "{}" << '\0' << R"({"virtualNetworks":5})";
	error("apply", {{"file", nul}}, lg::agent::kRejected, nul + ": a NUL byte");
	error("network.service-tag.load", {{"serviceTags", {{"values", 3}}}}, lg::agent::kRejected,
	      "serviceTags: values must be an array");
}

TEST_F(ServiceTest, ServersFirewallAndVnetRules)
{
	base();
	json m = ok("mysql.server.show", {{"name", "db1"}});
	EXPECT_EQ(m["fullyQualifiedDomainName"], "db1.mysql.database.azure.com");
	EXPECT_EQ(m["publicNetworkAccess"], "Enabled");
	EXPECT_EQ(m["backends"][1], json({{"address", "192.168.10.12"}, {"port", 3306}, {"weight", 2}}));
	m = ok("mysql.server.update",
	       {{"name", "db1"}, {"publicNetworkAccess", "Disabled"}, {"backend", {"[2001:db8::5]:3307:3", "192.168.10.13"}}});
	EXPECT_EQ(m["publicNetworkAccess"], "Disabled");
	EXPECT_EQ(m["backends"][0], json({{"address", "2001:db8::5"}, {"port", 3307}, {"weight", 3}}));
	EXPECT_EQ(m["backends"][1]["port"], 3306);
	// A bare IPv6 address with two colons is an address, not address:port.
	m = ok("mysql.server.update", {{"name", "db1"}, {"backend", {"fd00::7"}}});
	EXPECT_EQ(m["backends"][0], json({{"address", "fd00::7"}, {"port", 3306}, {"weight", 1}}));
	error("mysql.server.create", {{"name", "db2"}, {"publicIp", "20.10.1.5"}}, lg::agent::kRejected,
	      "mysqlServers/db2: publicIp 20.10.1.5 is already used by server db1");
	error("mysql.server.create", {{"name", "db2"}, {"publicIp", "20.10.1.6"}, {"backend", {"10.0.0.1:x"}}},
	      lg::agent::kInvalidParams, "backend");
	// A colon names a port: with nothing after it, the text is refused (as
	// in a state file), not taken for 3306.
	for (const char *b : {"10.0.0.1:", "[fd00::5]:", "10.0.0.1:3307:"})
		error("mysql.server.create", {{"name", "db2"}, {"publicIp", "20.10.1.6"}, {"backend", {b}}},
		      lg::agent::kInvalidParams, "is not a number");
	error("mysql.server.update", {{"name", "db1"}, {"backend", {"[fd00::5]:"}}}, lg::agent::kInvalidParams,
	      "port '' is not a number");
	error("mysql.server.create", {{"name", "db2"}}, lg::agent::kInvalidParams, "publicIp: is required");
	EXPECT_EQ(ok("mysql.server.list").size(), 1u);

	json f = ok("mysql.server.firewall-rule.create",
		    {{"serverName", "db1"}, {"name", "office"}, {"startIpAddress", "203.0.113.0"}, {"endIpAddress", "203.0.113.255"}});
	EXPECT_EQ(f["type"], "Microsoft.DBforMySQL/servers/firewallRules");
	f = ok("mysql.server.firewall-rule.update", {{"serverName", "db1"}, {"name", "office"}, {"endIpAddress", "203.0.113.127"}});
	EXPECT_EQ(f["startIpAddress"], "203.0.113.0");
	EXPECT_EQ(f["endIpAddress"], "203.0.113.127");
	error("mysql.server.firewall-rule.create",
	      {{"serverName", "db1"}, {"name", "bad"}, {"startIpAddress", "10.0.0.9"}, {"endIpAddress", "10.0.0.1"}},
	      lg::agent::kRejected, "mysqlServers/db1/firewallRules/bad: startIpAddress 10.0.0.9 is after endIpAddress");
	error("mysql.server.firewall-rule.create",
	      {{"serverName", "db1"}, {"name", "v6"}, {"startIpAddress", "::1"}, {"endIpAddress", "::2"}},
	      lg::agent::kRejected, "IPv4");
	error("mysql.server.firewall-rule.create",
	      {{"serverName", "nope"}, {"name", "x"}, {"startIpAddress", "1.1.1.1"}, {"endIpAddress", "1.1.1.1"}},
	      lg::agent::kNotFound, "mysqlServers/nope: not found");
	EXPECT_EQ(ok("mysql.server.firewall-rule.show", {{"serverName", "db1"}, {"name", "office"}})["name"], "office");
	EXPECT_EQ(ok("mysql.server.firewall-rule.list", {{"serverName", "db1"}}).size(), 1u);
	ok("mysql.server.firewall-rule.delete", {{"serverName", "db1"}, {"name", "office"}});
	error("mysql.server.firewall-rule.show", {{"serverName", "db1"}, {"name", "office"}}, lg::agent::kNotFound,
	      "mysqlServers/db1/firewallRules/office: not found");

	json v = ok("mysql.server.vnet-rule.create",
		    {{"serverName", "db1"}, {"name", "sqlep"}, {"vnetName", "v1"}, {"subnet", "sqlep"}});
	EXPECT_EQ(v["virtualNetworkSubnetId"], lg::subnet_id("v1", "sqlep"));
	error("mysql.server.vnet-rule.create",
	      {{"serverName", "db1"}, {"name", "clients"}, {"vnetName", "v1"}, {"subnet", "clients"}},
	      lg::agent::kRejected, "has no Microsoft.Sql service endpoint");
	EXPECT_EQ(ok("mysql.server.vnet-rule.show", {{"serverName", "db1"}, {"name", "sqlep"}})["state"], "Ready");
	EXPECT_EQ(ok("mysql.server.vnet-rule.list", {{"serverName", "db1"}}).size(), 1u);
	// The subnet is in use by the rule.
	error("network.vnet.subnet.delete", {{"vnetName", "v1"}, {"name", "sqlep"}}, lg::agent::kRejected,
	      "virtualNetworks/v1/subnets/sqlep cannot be deleted");
	ok("mysql.server.vnet-rule.delete", {{"serverName", "db1"}, {"name", "sqlep"}});
	error("mysql.server.vnet-rule.delete", {{"serverName", "db1"}, {"name", "sqlep"}}, lg::agent::kNotFound);
	ok("mysql.server.delete", {{"name", "db1"}});
	error("mysql.server.show", {{"name", "db1"}}, lg::agent::kNotFound, "mysqlServers/db1: not found");
}

// Names are case-insensitive, as in ARM: another spelling finds the object,
// a reference takes the object's spelling, and a create under another
// spelling of an existing name is a conflict.
TEST_F(ServiceTest, NamesAreCaseInsensitive)
{
	base();
	EXPECT_EQ(ok("network.nsg.show", {{"name", "WEB"}})["name"], "web");
	error("network.nsg.create", {{"name", "Web"}}, lg::agent::kRejected, "already exists");
	ok("network.nsg.rule.create", {{"nsgName", "Web"}, {"name", "http"}, {"priority", 100}});
	EXPECT_EQ(ok("network.nsg.rule.show", {{"nsgName", "web"}, {"name", "HTTP"}})["name"], "http");
	json sn = ok("network.vnet.subnet.create", {{"vnetName", "V1"},
						    {"name", "apps"},
						    {"addressPrefixes", {"10.1.3.0/24"}},
						    {"networkSecurityGroup", "WEB"}});
	EXPECT_EQ(sn["networkSecurityGroup"]["id"], lg::nsg_id("web")) << sn.dump();
	EXPECT_EQ(svc.state().vnet("v1")->subnet("apps")->networkSecurityGroup, "web");
	json pe = ok("network.private-endpoint.create", {{"name", "pe1"},
							 {"vnetName", "v1"},
							 {"subnet", "Clients"},
							 {"privateIpAddress", "10.1.1.100"},
							 {"privateConnectionResourceId", lg::server_id("DB1")},
							 {"groupId", "mysqlServer"},
							 {"manualRequest", true}});
	EXPECT_EQ(svc.state().private_endpoint("pe1")->server, "db1");
	std::string conn = pe["manualPrivateLinkServiceConnections"][0]["name"];
	EXPECT_EQ(ok("mysql.server.private-endpoint-connection.list", {{"serverName", "DB1"}}).size(), 1u);
	json a = ok("mysql.server.private-endpoint-connection.approve", {{"serverName", "Db1"}, {"name", "PE1"}});
	EXPECT_EQ(a["privateLinkServiceConnectionState"]["status"], "Approved");
	EXPECT_EQ(a["name"], conn);
}

TEST_F(ServiceTest, PrivateEndpointConnectionLifecycle)
{
	base();
	json pe = ok("network.private-endpoint.create", {{"name", "pe1"},
							 {"vnetName", "v1"},
							 {"subnet", "clients"},
							 {"privateIpAddress", "10.1.1.100"},
							 {"privateConnectionResourceId", lg::server_id("db1")},
							 {"groupId", "mysqlServer"},
							 {"manualRequest", true},
							 {"requestMessage", "ticket 4711"}});
	EXPECT_TRUE(pe["privateLinkServiceConnections"].empty());
	json c = pe["manualPrivateLinkServiceConnections"][0];
	EXPECT_EQ(c["privateLinkServiceConnectionState"]["status"], "Pending");
	EXPECT_EQ(c["privateLinkServiceConnectionState"]["description"], "ticket 4711");
	EXPECT_EQ(pe["customDnsConfigs"][0]["fqdn"], "db1.mysql.database.azure.com");
	std::string conn = c["name"];

	json list = ok("mysql.server.private-endpoint-connection.list", {{"serverName", "db1"}});
	ASSERT_EQ(list.size(), 1u);
	EXPECT_EQ(list[0]["name"], conn);
	EXPECT_EQ(list[0]["privateLinkServiceConnectionState"]["status"], "Pending");

	json a = ok("mysql.server.private-endpoint-connection.approve",
		    {{"serverName", "db1"}, {"name", conn}, {"description", "approved by dba"}});
	EXPECT_EQ(a["privateLinkServiceConnectionState"],
		  json({{"status", "Approved"}, {"description", "approved by dba"}, {"actionsRequired", "None"}}));
	EXPECT_EQ(a["id"], lg::pec_id("db1", conn));
	EXPECT_EQ(ok("mysql.server.show", {{"name", "db1"}})["privateEndpointConnections"][0]
		    ["privateLinkServiceConnectionState"]["status"],
		  "Approved");
	// A connection may not be named after another endpoint of the server:
	// approving "pe1" would approve it instead of pe1's.
	error("network.private-endpoint.create", {{"name", "rogue"},
						  {"vnetName", "v1"},
						  {"subnet", "clients"},
						  {"privateIpAddress", "10.1.1.120"},
						  {"privateConnectionResourceId", "db1"},
						  {"groupId", "mysqlServer"},
						  {"manualRequest", true},
						  {"connectionName", "pe1"}},
	      lg::agent::kRejected, "connectionName 'pe1' is the name of private endpoint pe1");
	// The endpoint's name is accepted for the connection's.
	json rj = ok("mysql.server.private-endpoint-connection.reject", {{"serverName", "db1"}, {"name", "pe1"}});
	EXPECT_EQ(rj["privateLinkServiceConnectionState"]["status"], "Rejected");
	EXPECT_EQ(ok("mysql.server.private-endpoint-connection.show", {{"serverName", "db1"}, {"name", conn}})["name"], conn);
	error("mysql.server.private-endpoint-connection.approve", {{"serverName", "db1"}, {"name", "nope"}},
	      lg::agent::kNotFound, "mysqlServers/db1/privateEndpointConnections/nope: not found");
	error("mysql.server.private-endpoint-connection.approve", {{"serverName", "db9"}, {"name", conn}},
	      lg::agent::kNotFound, "mysqlServers/db9: not found");
	// The server has an endpoint: it cannot be deleted.
	error("mysql.server.delete", {{"name", "db1"}}, lg::agent::kRejected, "mysqlServers/db1 cannot be deleted");

	ok("mysql.server.private-endpoint-connection.delete", {{"serverName", "db1"}, {"name", conn}});
	error("mysql.server.private-endpoint-connection.show", {{"serverName", "db1"}, {"name", conn}},
	      lg::agent::kNotFound);
	EXPECT_TRUE(ok("mysql.server.private-endpoint-connection.list", {{"serverName", "db1"}}).empty());
	EXPECT_EQ(ok("network.private-endpoint.show", {{"name", "pe1"}})["manualPrivateLinkServiceConnections"][0]
		    ["privateLinkServiceConnectionState"]["status"],
		  "Disconnected");

	// Automatic requests are approved at once.
	json auto_pe = ok("network.private-endpoint.create", {{"name", "pe2"},
							      {"vnetName", "v1"},
							      {"subnet", "clients"},
							      {"privateIpAddress", "10.1.1.101"},
							      {"privateConnectionResourceId", "db1"},
							      {"groupId", "mysqlServer"}});
	EXPECT_EQ(auto_pe["privateLinkServiceConnections"][0]["privateLinkServiceConnectionState"]["status"], "Approved");
	error("network.private-endpoint.create", {{"name", "pe3"},
						  {"vnetName", "v1"},
						  {"subnet", "clients"},
						  {"privateIpAddress", "10.1.1.101"},
						  {"privateConnectionResourceId", "db1"},
						  {"groupId", "mysqlServer"}},
	      lg::agent::kRejected, "privateEndpoints/pe3: privateIPAddress 10.1.1.101 is already used by private endpoint pe2");
	error("network.private-endpoint.create", {{"name", "pe3"},
						  {"vnetName", "v1"},
						  {"subnet", "clients"},
						  {"privateIpAddress", "10.1.1.102"},
						  {"privateConnectionResourceId", "db1"},
						  {"groupId", "sqlServer"}},
	      lg::agent::kRejected, "groupIds");
	EXPECT_EQ(ok("network.private-endpoint.list").size(), 2u);
	ok("network.private-endpoint.delete", {{"name", "pe1"}});
	error("network.private-endpoint.show", {{"name", "pe1"}}, lg::agent::kNotFound, "privateEndpoints/pe1: not found");
}

TEST_F(ServiceTest, ApplyExportIsAtomic)
{
	json seed = lg::read_json_file(std::string(LG_FIXTURES_DIR) + "/seed_state.json").value();
	json out = ok("apply", {{"state", seed}});
	EXPECT_EQ(out, ok("export"));
	auto st = lg::state_from_json(seed);
	ASSERT_TRUE(st);
	// The whole seed, not a part of it: apply's reply and export agree with
	// each other whatever apply kept, so the seed is the reference.
	EXPECT_EQ(svc.state(), *st);
	EXPECT_EQ(lg::state_to_json(*st), out);
	// state and file at once: neither is guessed, nothing changes.
	json empty_state = json::object();
	error("apply", {{"state", empty_state}, {"file", std::string(LG_FIXTURES_DIR) + "/seed_state.json"}},
	      lg::agent::kInvalidParams, "exclusive");
	EXPECT_EQ(svc.state(), *st);
	// A state that does not validate changes nothing, not even partly.
	json bad = seed;
	bad["networkSecurityGroups"][0]["securityRules"][0]["priority"] = 1;
	error("apply", {{"state", bad}}, lg::agent::kRejected, "priority 1 is outside");
	error("apply", {{"state", {{"virtualNetworks", 5}}}}, lg::agent::kRejected, "virtualNetworks must be an array");
	error("apply", {{"state", {{"bogus", json::array()}}}}, lg::agent::kRejected, "unknown key 'bogus'");
	error("apply", {{"state", "x"}}, lg::agent::kInvalidParams, "state: must be a JSON object");
	// Empty state: everything goes at once.
	ok("apply", {{"file", std::string(LG_FIXTURES_DIR) + "/seed_state.json"}});
	ok("apply", {{"state", json::object()}});
	EXPECT_EQ(svc.state(), State{});
}

TEST_F(ServiceTest, ExplainStatsFlows)
{
	base();
	ok("network.private-endpoint.create", {{"name", "pe1"},
					       {"vnetName", "v1"},
					       {"subnet", "clients"},
					       {"privateIpAddress", "10.1.1.100"},
					       {"privateConnectionResourceId", "db1"},
					       {"groupId", "mysqlServer"},
					       {"manualRequest", true}});
	json e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"sport", 40000}, {"dport", 3306}});
	EXPECT_EQ(e["verdict"], "drop");
	EXPECT_EQ(e["reason"], "pec-pending");
	EXPECT_EQ(e["stage"], "private-endpoint");
	EXPECT_EQ(e["vnet"], "v1");
	EXPECT_EQ(e["generation"], svc.generation());
	ok("mysql.server.private-endpoint-connection.approve", {{"serverName", "db1"}, {"name", "pe1"}});
	e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "tcp"}, {"sport", 40000}, {"dport", 3306},
			   {"vnetName", "v1"}});
	EXPECT_EQ(e["verdict"], "forward");
	EXPECT_TRUE(e["reason"].is_null());
	EXPECT_EQ(e["privateEndpoint"], "pe1");
	EXPECT_EQ(e["server"], "db1");
	EXPECT_TRUE(e["backend"].get<std::string>().rfind("192.168.10.1", 0) == 0) << e.dump();
	// A source no router forwards (abi/lg_route.h): the policy allows it
	// (outside every subnet, no Outbound NSG), the route refuses it.
	for (const char *src : {"127.0.0.1", "0.0.0.0", "224.0.0.5"}) {
		e = ok("explain", {{"src", src}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"sport", 40000}, {"dport", 3306}});
		EXPECT_EQ(e["verdict"], "drop") << src << ": " << e.dump();
		EXPECT_EQ(e["reason"], "no-route") << src << ": " << e.dump();
		EXPECT_EQ(e["stage"], "forward") << src << ": " << e.dump();
		EXPECT_EQ(e["privateEndpoint"], "pe1") << src << ": " << e.dump();
	}
	// An NSG rule decides: the deciding stage and rule are named.
	ok("network.nsg.rule.create", {{"nsgName", "web"},
				       {"name", "no-mysql"},
				       {"priority", 100},
				       {"direction", "Outbound"},
				       {"access", "Deny"},
				       {"protocol", "Tcp"},
				       {"destinationPortRanges", {"3306"}}});
	e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"dport", 3306}});
	EXPECT_EQ(e["reason"], "nsg-deny");
	EXPECT_EQ(e["nsg"], "web");
	EXPECT_EQ(e["rule"], "no-mysql");
	// Esp and Ah are rule protocols, so explain takes them; ports are Tcp's and Udp's only.
	ok("network.nsg.rule.create", {{"nsgName", "web"},
				       {"name", "no-esp"},
				       {"priority", 110},
				       {"direction", "Outbound"},
				       {"access", "Deny"},
				       {"protocol", "Esp"}});
	e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Esp"}});
	EXPECT_EQ(e["reason"], "nsg-deny") << e.dump();
	EXPECT_EQ(e["rule"], "no-esp") << e.dump();
	e = ok("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "ah"}});
	EXPECT_NE(e["rule"], "no-esp") << e.dump();
	EXPECT_NE(e["reason"], "nsg-deny") << e.dump();
	error("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Icmp"}, {"dport", 80}},
	      lg::agent::kInvalidParams, "dport");
	error("explain", {{"src", "10.1.1.10"}, {"dst", "10.1.1.100"}, {"protocol", "Esp"}, {"sport", 1}},
	      lg::agent::kInvalidParams, "sport");
	error("explain", {{"src", "10.1.1.300"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}}, lg::agent::kInvalidParams,
	      "src");
	error("explain", {{"src", "10.1.1.3"}, {"dst", "10.1.1.100"}, {"protocol", "Gre"}}, lg::agent::kInvalidParams,
	      "protocol");
	error("explain", {{"src", "10.1.1.3"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"dport", 70000}},
	      lg::agent::kInvalidParams, "dport");
	error("explain", {{"src", "10.1.1.3"}, {"dst", "::1"}, {"protocol", "Tcp"}}, lg::agent::kInvalidParams, "family");
	// IPv4-mapped text: the dataplanes drop such packets as malformed, so no
	// IPv4 verdict is given for them.
	error("explain", {{"src", "::ffff:10.1.1.3"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}},
	      lg::agent::kInvalidParams, "src");
	error("explain", {{"src", "10.1.1.3"}, {"dst", "::ffff:10.1.1.100"}, {"protocol", "Tcp"}},
	      lg::agent::kInvalidParams, "dst");
	error("explain", {{"src", "10.1.1.3"}, {"dst", "10.1.1.100"}, {"protocol", "Tcp"}, {"vnetName", "v9"}},
	      lg::agent::kNotFound, "virtualNetworks/v9");

	json s = ok("stats");
	EXPECT_EQ(s["drops"].size(), size_t(LG_REASON__COUNT - 1));
	EXPECT_EQ(s["drops"]["nsg-deny"], 0);
	EXPECT_EQ(s["nsgRules"]["web/no-mysql"], 0);
	EXPECT_EQ(s["nsgRules"]["web/DenyAllInBound"], 0);
	EXPECT_EQ(s["privateEndpoints"]["pe1"], 0);
	EXPECT_EQ(s["servers"]["db1"], 0);
	EXPECT_EQ(s["generation"], svc.generation());
	EXPECT_EQ(ok("flows"), json::array());
	EXPECT_EQ(ok("status")["generation"], svc.generation());
}

TEST_F(ServiceTest, ProtocolErrors)
{
	base();
	State before = svc.state();
	uint64_t g = svc.generation();
	auto code = [](const std::string &line, Service &s) { return json::parse(s.handle_line(line))["error"]["code"]; };
	EXPECT_EQ(code("{\"jsonrpc\":", svc), lg::agent::kParseError);
	EXPECT_EQ(code("", svc), lg::agent::kParseError);
	// The parse error quotes the bad bytes; the reply must still be UTF-8.
	EXPECT_EQ(code("\xff\xfe", svc), lg::agent::kParseError);
	EXPECT_EQ(code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"st\xc3\"}", svc), lg::agent::kParseError);
	EXPECT_EQ(code("\"status\"", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code("[]", svc), lg::agent::kInvalidRequest);
	// A key twice: nlohmann would keep the second "name" silently.
	std::string twice = R"({"jsonrpc":"2.0","id":1,"method":"network.nsg.create","params":{"name":"a","name":"b"}})";
	EXPECT_EQ(code(twice, svc), lg::agent::kParseError);
	EXPECT_EQ(json::parse(svc.handle_line(twice))["error"]["message"], "parse error: duplicate key \"name\" in an object");
	std::string deep = R"({"jsonrpc":"2.0","id":1,"method":"status","params":{"a":)" + std::string(70, '[') +
			   std::string(70, ']') + "}}";
	EXPECT_EQ(code(deep, svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code("null", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"1.0","id":1,"method":"status"})", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1})", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":[1],"method":"status"})", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1,"method":"status","extra":1})", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1,"method":"network.vnet.frob"})", svc), lg::agent::kMethodNotFound);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1,"method":"network.vnet.show","params":["v1"]})", svc),
		  lg::agent::kInvalidParams);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1,"method":"network.vnet.show","params":{}})", svc),
		  lg::agent::kInvalidParams);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1,"method":"network.vnet.show","params":{"name":5}})", svc),
		  lg::agent::kInvalidParams);
	// A number beyond a double is a parse error, not an internal one.
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1e999,"method":"status"})", svc), lg::agent::kParseError);
	// Ids are echoed as sent: past 64 bits one would come back rounded.
	json big = json::parse(svc.handle_line(R"({"jsonrpc":"2.0","id":18446744073709551616,"method":"status"})"));
	EXPECT_EQ(big["error"]["code"], lg::agent::kInvalidRequest);
	EXPECT_TRUE(big["id"].is_null());
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":-9223372036854775809,"method":"status"})", svc), lg::agent::kInvalidRequest);
	EXPECT_EQ(code(R"({"jsonrpc":"2.0","id":1e300,"method":"status"})", svc), lg::agent::kInvalidRequest);
	for (const char *id : {"18446744073709551615", "-9223372036854775808", "1.5"}) {
		std::string r = svc.handle_line(std::string(R"({"jsonrpc":"2.0","id":)") + id + R"(,"method":"status"})");
		EXPECT_NE(r.find(std::string("\"id\":") + id + ","), std::string::npos) << r;
	}
	// Bytes after a NUL are not silently dropped: the request is not run.
	std::string nul = R"({"jsonrpc":"2.0","id":1,"method":"network.vnet.delete","params":{"name":"v1"}})";
	nul += std::string(1, '\0') + "garbage";
	EXPECT_EQ(code(nul, svc), lg::agent::kParseError);
	json e = json::parse(svc.handle_line(R"({"jsonrpc":"2.0","id":"x","method":"network.vnet.show","params":{"name":"v1","nmae":"v1"}})"));
	EXPECT_EQ(e["id"], "x");
	EXPECT_EQ(e["error"]["data"]["param"], "nmae");
	// A notification is executed and answered with nothing.
	EXPECT_EQ(svc.handle_line(R"({"jsonrpc":"2.0","method":"network.vnet.show","params":{"name":"v1"}})"), "");
	EXPECT_EQ(svc.state(), before);
	EXPECT_EQ(svc.generation(), g);
}

TEST(ServiceCommit, HookFailureKeepsThePreviousGeneration)
{
	bool fail = false;
	uint64_t next = 10;
	std::vector<State> committed;
	Service svc(State{}, 10, [&](const State &s) -> lg::Result<uint64_t> {
		if (fail)
			return lg::err("state.json: cannot write: No space left on device");
		committed.push_back(s);
		return ++next;
	});
	json r = svc.handle({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "network.nsg.create"}, {"params", {{"name", "a"}}}});
	EXPECT_EQ(r["generation"], 11);
	ASSERT_EQ(committed.size(), 1u);
	EXPECT_EQ(committed[0], svc.state());
	fail = true;
	State before = svc.state();
	r = svc.handle({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "network.nsg.create"}, {"params", {{"name", "b"}}}});
	EXPECT_EQ(r["error"]["code"], lg::agent::kCommitFailed);
	EXPECT_NE(r["error"]["message"].get<std::string>().find("No space left"), std::string::npos);
	EXPECT_EQ(svc.state(), before);
	EXPECT_EQ(svc.generation(), 11u);
	// A refused change never reaches the hook.
	fail = false;
	r = svc.handle({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "network.nsg.create"}, {"params", {{"name", "a"}}}});
	EXPECT_EQ(r["error"]["code"], lg::agent::kRejected);
	EXPECT_EQ(committed.size(), 1u);
}

// An apply of the state in force, an update to the values a rule has: the
// dataplanes get no new generation (their flows would be re-checked for
// nothing), and the reply carries the generation in force.
TEST(ServiceCommit, AChangeThatChangesNothingMakesNoGeneration)
{
	uint64_t next = 10;
	unsigned commits = 0;
	bool fail = false;
	Service svc(State{}, 10, [&](const State &) -> lg::Result<uint64_t> {
		commits++;
		if (fail)
			return lg::err("state.json: cannot write: No space left on device");
		return ++next;
	});
	int id = 0;
	auto call = [&](const std::string &m, const json &p) {
		json r = svc.handle({{"jsonrpc", "2.0"}, {"id", ++id}, {"method", m}, {"params", p}});
		EXPECT_TRUE(r.contains("result")) << m << " " << r.dump();
		return r;
	};
	call("network.nsg.create", {{"name", "web"}});
	call("network.nsg.rule.create", {{"nsgName", "web"}, {"name", "sql"}, {"priority", 100}, {"access", "Allow"}});
	ASSERT_EQ(commits, 2u);
	State before = svc.state();
	EXPECT_EQ(call("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "SQL"}, {"priority", 100}})["generation"], 12);
	EXPECT_EQ(call("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "sql"}, {"access", "Allow"}})["generation"],
		  12);
	json exported = call("export", json::object())["result"];
	EXPECT_EQ(call("apply", {{"state", exported}})["generation"], 12);
	EXPECT_EQ(commits, 2u);
	EXPECT_EQ(svc.state(), before);
	// A real change still commits.
	EXPECT_EQ(call("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "sql"}, {"priority", 101}})["generation"], 13);
	EXPECT_EQ(commits, 3u);
	// After a failed commit a dataplane may hold the refused change (its
	// restore may have failed too): the same state is committed again.
	fail = true;
	json r = svc.handle({{"jsonrpc", "2.0"}, {"id", ++id}, {"method", "network.nsg.rule.update"},
			     {"params", {{"nsgName", "web"}, {"name", "sql"}, {"priority", 102}}}});
	EXPECT_EQ(r["error"]["code"], lg::agent::kCommitFailed) << r.dump();
	EXPECT_EQ(commits, 4u);
	fail = false;
	EXPECT_EQ(call("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "sql"}, {"priority", 101}})["generation"], 14);
	EXPECT_EQ(commits, 5u);
	EXPECT_EQ(call("network.nsg.rule.update", {{"nsgName", "web"}, {"name", "sql"}, {"priority", 101}})["generation"], 14);
	EXPECT_EQ(commits, 5u);
}

} // namespace
