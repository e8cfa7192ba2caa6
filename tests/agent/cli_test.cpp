// The real linkgatectl against a real linkgated: every command, its ARM JSON
// output (as az prints it), table output, exit codes and error lines.
#include "agent_fixture.hpp"

#include "arm_json.hpp"

#include <atomic>
#include <mutex>
#include <thread>

using namespace lgtest;
using namespace std::string_literals;

namespace {

// A stand-in for linkgated that answers every connection with one canned
// line, for the replies a real agent never sends. The thread polls with a
// short timeout and gives up on a silent client, so the destructor's join is
// bounded (also when an assertion ends the test early).
class FakeAgent {
public:
	explicit FakeAgent(std::string path) : path_(std::move(path))
	{
		sockaddr_un sa{};
		sa.sun_family = AF_UNIX;
		std::strncpy(sa.sun_path, path_.c_str(), sizeof(sa.sun_path) - 1);
		fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd_ >= 0 && (bind(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0 || listen(fd_, 4) != 0)) {
			close(fd_);
			fd_ = -1;
		}
		if (fd_ >= 0)
			thread_ = std::thread([this] { serve(); });
	}
	~FakeAgent()
	{
		stop_ = true;
		if (thread_.joinable())
			thread_.join();
		if (fd_ >= 0)
			close(fd_);
		unlink(path_.c_str());
	}
	FakeAgent(const FakeAgent &) = delete;
	FakeAgent &operator=(const FakeAgent &) = delete;

	bool listening() const { return fd_ >= 0; }
	const std::string &path() const { return path_; }
	void answer(std::string line)
	{
		std::lock_guard<std::mutex> g(m_);
		reply_ = std::move(line);
	}

private:
	void serve()
	{
		while (!stop_) {
			pollfd p{fd_, POLLIN, 0};
			if (poll(&p, 1, 20) <= 0)
				continue;
			int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			read_line(c, 5000); // the request; closing unread could reset the reply
			std::string r;
			{
				std::lock_guard<std::mutex> g(m_);
				r = reply_;
			}
			send_all(c, r + "\n");
			close(c);
		}
	}

	std::string path_;
	int fd_ = -1;
	std::thread thread_;
	std::atomic<bool> stop_{false};
	std::mutex m_;
	std::string reply_;
};

struct CtlRun {
	int code = -1;
	std::string out, err;
	json j() const { return out.empty() ? json(nullptr) : json::parse(out); }
};

class CliTest : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_TRUE(d.start()) << d.log(); }

	// linkgatectl ARGS with LINKGATE_SOCKET pointing at the test's agent.
	CtlRun ctl(std::vector<std::string> args, bool with_env = true, std::string out = "")
	{
		CtlRun r;
		if (out.empty())
			out = d.dir() + "/ctl.out";
		std::string err = d.dir() + "/ctl.err";
		pid_t pid = fork();
		if (pid == 0) {
			int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
			int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(o, 1);
			dup2(e, 2);
			if (with_env)
				setenv("LINKGATE_SOCKET", d.socket_path().c_str(), 1);
			else
				unsetenv("LINKGATE_SOCKET");
			args.insert(args.begin(), LINKGATECTL);
			std::vector<char *> argv;
			for (auto &a : args)
				argv.push_back(a.data());
			argv.push_back(nullptr);
			execv(LINKGATECTL, argv.data());
			_exit(127);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		r.out = out == "/dev/full" ? "" : slurp(out);
		r.err = slurp(err);
		return r;
	}
	json ok(const std::vector<std::string> &args)
	{
		CtlRun r = ctl(args);
		EXPECT_EQ(r.code, 0) << r.err;
		EXPECT_EQ(r.err, "");
		return r.j();
	}
	// A failure: its exit code, one stderr line containing `needle`, nothing on stdout.
	void fails(const std::vector<std::string> &args, int code, const std::string &needle)
	{
		uint64_t g = d.generation();
		CtlRun r = ctl(args);
		EXPECT_EQ(r.code, code) << r.err;
		EXPECT_EQ(r.out, "");
		EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
		if (code != 2) { // usage errors are CLI11's (several lines of help)
			EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
		}
		EXPECT_EQ(d.generation(), g);
	}

	void base()
	{
		ok({"network", "nsg", "create", "--name", "web"});
		ok({"network", "vnet", "create", "--name", "v1", "--address-prefixes", "10.1.0.0/16", "--vni", "101"});
		ok({"network", "vnet", "subnet", "create", "--vnet-name", "v1", "--name", "clients", "--address-prefixes",
		    "10.1.1.0/24", "--network-security-group", "web"});
		ok({"network", "vnet", "subnet", "create", "--vnet-name", "v1", "--name", "sqlep", "--address-prefixes",
		    "10.1.2.0/24", "--service-endpoints", "Microsoft.Sql"});
		ok({"mysql", "server", "create", "--name", "db1", "--public-ip", "20.10.1.5", "--backend",
		    "192.168.10.11:3306", "192.168.10.12:3306:2"});
	}

	Daemon d;
};

TEST_F(CliTest, Vnet)
{
	json v = ok({"network", "vnet", "create", "-n", "v0"});
	EXPECT_EQ(v["newVNet"]["name"], "v0");
	EXPECT_EQ(v["newVNet"]["addressSpace"]["addressPrefixes"], json({"10.0.0.0/16"}));
	EXPECT_EQ(v["newVNet"]["id"], lg::vnet_id("v0"));
	v = ok({"network", "vnet", "create", "--name", "v1", "--address-prefixes", "10.1.0.0/16", "10.2.0.0/16", "--vni",
		"42", "--subnet-name", "s1", "--subnet-prefixes", "10.1.1.0/24"});
	EXPECT_EQ(v["newVNet"]["addressSpace"]["addressPrefixes"].size(), 2u);
	EXPECT_EQ(v["newVNet"]["vni"], 42);
	EXPECT_EQ(v["newVNet"]["subnets"][0]["name"], "s1");
	EXPECT_EQ(ok({"network", "vnet", "show", "--name", "v1"})["vni"], 42);
	EXPECT_EQ(ok({"network", "vnet", "list"}).size(), 2u);
	CtlRun t = ctl({"network", "vnet", "list", "-o", "table"});
	EXPECT_EQ(t.code, 0);
	EXPECT_EQ(t.out.rfind("Name  Prefixes", 0), 0u) << t.out;
	EXPECT_NE(t.out.find("v1    10.1.0.0/16, 10.2.0.0/16  42"), std::string::npos) << t.out;
	// az's global arguments are accepted (a command pasted from az runs)
	// and change nothing.
	EXPECT_EQ(ok({"network", "vnet", "show", "-g", "rg", "--name", "v1", "--subscription", "sub"})["vni"], 42);
	EXPECT_EQ(ctl({"network", "vnet", "delete", "--resource-group", "rg", "--name", "v0", "--yes"}).out,
		  ""); // az prints nothing
	fails({"network", "vnet", "show", "--name", "v0"}, 3, "ERROR: virtualNetworks/v0: not found");
	fails({"network", "vnet", "create", "--name", "v1"}, 1, "virtualNetworks/v1: already exists");
	fails({"network", "vnet", "create", "--name", "v9", "--address-prefixes", "10.1.0.0/8"}, 1,
	      "virtualNetworks/v9: addressSpace.addressPrefixes");
}

TEST_F(CliTest, Subnet)
{
	base();
	json s = ok({"network", "vnet", "subnet", "show", "--vnet-name", "v1", "--name", "clients"});
	EXPECT_EQ(s["addressPrefix"], "10.1.1.0/24");
	EXPECT_EQ(s["networkSecurityGroup"]["id"], lg::nsg_id("web"));
	s = ok({"network", "vnet", "subnet", "update", "--vnet-name", "v1", "--name", "clients",
		"--private-endpoint-network-policies", "Enabled", "--network-security-group", ""});
	EXPECT_EQ(s["privateEndpointNetworkPolicies"], "Enabled");
	EXPECT_TRUE(s["networkSecurityGroup"].is_null());
	// az's other spellings of the policy are taken too.
	s = ok({"network", "vnet", "subnet", "update", "--vnet-name", "v1", "--name", "clients",
		"--private-endpoint-network-policies", "networksecuritygroupenabled"});
	EXPECT_NE(s["privateEndpointNetworkPolicies"], "Disabled") << s.dump();
	s = ok({"network", "vnet", "subnet", "show", "--vnet-name", "v1", "--name", "sqlep"});
	EXPECT_EQ(s["serviceEndpoints"][0]["service"], "Microsoft.Sql");
	EXPECT_EQ(ok({"network", "vnet", "subnet", "list", "--vnet-name", "v1"}).size(), 2u);
	CtlRun t = ctl({"network", "vnet", "subnet", "list", "--vnet-name", "v1", "-o", "table"});
	EXPECT_NE(t.out.find("sqlep    10.1.2.0/24"), std::string::npos) << t.out;
	EXPECT_NE(t.out.find("Microsoft.Sql"), std::string::npos) << t.out;
	fails({"network", "vnet", "subnet", "create", "--vnet-name", "v1", "--name", "x", "--address-prefixes",
	       "10.1.1.128/25"},
	      1, "virtualNetworks/v1/subnets/x: addressPrefix 10.1.1.128/25 overlaps subnet clients");
	fails({"network", "vnet", "subnet", "create", "--vnet-name", "v1", "--name", "x"}, 2, "--address-prefixes");
	fails({"network", "vnet", "subnet", "show", "--vnet-name", "v2", "--name", "x"}, 3, "virtualNetworks/v2: not found");
	ok({"network", "vnet", "subnet", "delete", "--vnet-name", "v1", "--name", "clients"});
	fails({"network", "vnet", "subnet", "show", "--vnet-name", "v1", "--name", "clients"}, 3,
	      "virtualNetworks/v1/subnets/clients: not found");
}

TEST_F(CliTest, Nic)
{
	base();
	json n = ok({"network", "nic", "create", "--name", "vm1-nic", "--vnet-name", "v1", "--subnet", "clients",
		     "--private-ip-address", "10.1.1.4", "--network-security-group", "web"});
	EXPECT_EQ(n["NewNIC"]["ipConfigurations"][0]["privateIPAddress"], "10.1.1.4");
	EXPECT_EQ(n["NewNIC"]["networkSecurityGroup"]["id"], lg::nsg_id("web"));
	EXPECT_EQ(ok({"network", "nic", "show", "--name", "vm1-nic"})["name"], "vm1-nic");
	EXPECT_EQ(ok({"network", "nic", "list"}).size(), 1u);
	CtlRun t = ctl({"network", "nic", "list", "-o", "table"});
	EXPECT_NE(t.out.find("vm1-nic  10.1.1.4          v1/clients  web"), std::string::npos) << t.out;
	fails({"network", "nic", "create", "--name", "vm2-nic", "--vnet-name", "v1", "--subnet", "clients",
	       "--private-ip-address", "10.1.1.4"},
	      1, "networkInterfaces/vm2-nic: privateIPAddress 10.1.1.4 is already used by network interface vm1-nic");
	ok({"network", "nic", "delete", "--name", "vm1-nic"});
	fails({"network", "nic", "delete", "--name", "vm1-nic"}, 3, "networkInterfaces/vm1-nic: not found");
}

TEST_F(CliTest, NsgAndRules)
{
	json n = ok({"network", "nsg", "create", "--name", "web", "--flush-connection", "true"});
	EXPECT_EQ(n["NewNSG"]["flushConnection"], true);
	EXPECT_EQ(n["NewNSG"]["defaultSecurityRules"].size(), 6u);
	EXPECT_EQ(ok({"network", "nsg", "update", "--name", "web", "--flush-connection", "false"})["flushConnection"], false);
	json r = ok({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "ssh", "--priority", "1000",
		     "--source-address-prefixes", "203.0.113.0/24", "--destination-port-ranges", "22", "--protocol", "Tcp",
		     "--description", "SSH from the admin network"});
	// The shape of tests/fixtures/az/nsg_show.json's rule "ssh".
	json want = json::parse(slurp(std::string(LG_FIXTURES_DIR) + "/az/nsg_show.json"))["securityRules"][0];
	for (const char *k : {"access", "description", "destinationAddressPrefix", "destinationAddressPrefixes",
			      "destinationPortRange", "destinationPortRanges", "direction", "name", "priority", "protocol",
			      "sourceAddressPrefix", "sourceAddressPrefixes", "sourcePortRange", "sourcePortRanges", "type",
			      "provisioningState"})
		EXPECT_EQ(r[k], want[k]) << k;
	// An empty value would widen the rule to '*': refused.
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "p80", "--priority", "1700",
	       "--destination-port-ranges", ""},
	      2, "destinationPortRanges: must name at least one");
	r = ok({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "mysql-to-sql", "--priority", "1010",
		"--direction", "Outbound", "--protocol", "Tcp", "--source-address-prefixes", "VirtualNetwork",
		"--destination-address-prefixes", "40.121.158.0/24", "104.42.238.64/26", "--destination-port-ranges", "3306",
		"33060-33062"});
	want = json::parse(slurp(std::string(LG_FIXTURES_DIR) + "/az/nsg_show.json"))["securityRules"][1];
	for (const char *k : {"destinationAddressPrefix", "destinationAddressPrefixes", "destinationPortRange",
			      "destinationPortRanges", "direction", "sourceAddressPrefix", "sourceAddressPrefixes"})
		EXPECT_EQ(r[k], want[k]) << k;
	// az's enum arguments: any case, stored in the canonical spelling; any
	// other value is a usage error that changes nothing.
	r = ok({"network", "nsg", "rule", "update", "--nsg-name", "web", "--name", "ssh", "--access", "deny"});
	EXPECT_EQ(r["access"], "Deny");
	for (auto bad : std::vector<std::vector<std::string>>{{"--direction", "Sideways"},
							       {"--access", "Maybe"},
							       {"--protocol", "Sctp"}}) {
		std::vector<std::string> args{"network", "nsg", "rule", "update", "--nsg-name", "web", "--name", "ssh"};
		args.insert(args.end(), bad.begin(), bad.end());
		fails(args, 2, bad[1]);
	}
	fails({"mysql", "server", "create", "--name", "s9", "--public-ip", "20.10.9.9", "--public-network-access", "Off"}, 2,
	      "Off");
	fails({"network", "vnet", "subnet", "update", "--vnet-name", "v", "--name", "s",
	       "--private-endpoint-network-policies", "On"},
	      2, "On");
	EXPECT_EQ(ok({"network", "nsg", "rule", "show", "--nsg-name", "web", "--name", "ssh"})["access"], "Deny");
	EXPECT_EQ(r["destinationPortRange"], "22");
	EXPECT_EQ(ok({"network", "nsg", "rule", "show", "--nsg-name", "web", "--name", "ssh"})["priority"], 1000);
	EXPECT_EQ(ok({"network", "nsg", "rule", "list", "--nsg-name", "web"}).size(), 2u);
	EXPECT_EQ(ok({"network", "nsg", "rule", "list", "--nsg-name", "web", "--include-default"}).size(), 8u);
	CtlRun t = ctl({"network", "nsg", "rule", "list", "--nsg-name", "web", "-o", "table"});
	EXPECT_EQ(t.out.rfind("Name          Priority  Direction  Access  Protocol  SourceAddressPrefixes", 0), 0u) << t.out;
	EXPECT_NE(t.out.find("40.121.158.0/24, 104.42.238.64/26  3306, 33060-33062"), std::string::npos) << t.out;
	EXPECT_EQ(ok({"network", "nsg", "show", "--name", "web"})["securityRules"].size(), 2u);
	EXPECT_EQ(ok({"network", "nsg", "list"}).size(), 1u);
	t = ctl({"network", "nsg", "show", "-n", "web", "-o", "table"});
	EXPECT_NE(t.out.find("web   False            2"), std::string::npos) << t.out;

	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "5000"}, 1,
	      "ERROR: networkSecurityGroups/web/securityRules/x: priority 5000 is outside 100-4096");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "1000"}, 1,
	      "priority 1000 is already used by Inbound rule ssh");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "300",
	       "--source-address-prefixes", "Nope.Tag"},
	      1, "sourceAddressPrefix 'Nope.Tag'");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x"}, 2, "--priority");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "high"}, 2,
	      "--priority");
	// Past int64: a usage error, not INT64_MAX sent on.
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority",
	       "99999999999999999999"},
	      2, "out of range: 99999999999999999999");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority",
	       "-99999999999999999999"},
	      2, "out of range");
	// Decimal, as az reads it: a leading 0 is not octal, 0x is not hex.
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "0x10"}, 2,
	      "not a decimal integer: 0x10");
	fails({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "x", "--priority", "1e3"}, 2,
	      "not a decimal integer: 1e3");
	EXPECT_EQ(ok({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "octal", "--priority",
		      "0200"})["priority"],
		  200);
	EXPECT_EQ(ok({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "plus", "--priority",
		      "+0300"})["priority"],
		  300);
	fails({"network", "nsg", "rule", "show", "--nsg-name", "web", "--name", "nope"}, 3,
	      "networkSecurityGroups/web/securityRules/nope: not found");
	ok({"network", "nsg", "rule", "delete", "--nsg-name", "web", "--name", "ssh"});
	ok({"network", "nsg", "delete", "--name", "web"});
	fails({"network", "nsg", "show", "--name", "web"}, 3, "networkSecurityGroups/web: not found");
}

TEST_F(CliTest, ServiceTagLoad)
{
	ok({"network", "nsg", "create", "--name", "web"});
	json t = ok({"network", "service-tag", "load", "--file", std::string(LG_FIXTURES_DIR) + "/ServiceTags_Public.json"});
	EXPECT_EQ(t["changeNumber"], 312);
	EXPECT_GT(t["count"].get<int>(), 0);
	ok({"network", "nsg", "rule", "create", "--nsg-name", "web", "--name", "sql", "--priority", "100",
	    "--direction", "Outbound", "--destination-address-prefixes", "Sql.WestUS", "--destination-port-ranges", "3306"});
	// Over the message cap: the CLI sends the path and the agent reads the file.
	json big{{"changeNumber", 400}, {"cloud", "Public"}, {"values", json::array()}};
	json prefixes = json::array();
	for (int i = 0; i < 65536; i++)
		prefixes.push_back("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24");
	big["values"].push_back({{"name", "Sql.WestUS"}, {"id", "Sql.WestUS"}, {"properties", {{"addressPrefixes", prefixes}}}});
	std::ofstream(d.dir() + "/big.json") << big.dump();
	ASSERT_GT(std::filesystem::file_size(d.dir() + "/big.json"), size_t(1) << 20);
	t = ok({"network", "service-tag", "load", "--file", d.dir() + "/big.json"});
	EXPECT_EQ(t["changeNumber"], 400);
	EXPECT_EQ(ok({"export"})["serviceTags"]["values"][0]["properties"]["addressPrefixes"].size(), 65536u);
	fails({"network", "service-tag", "load", "--file", "/nonexistent.json"}, 2, "/nonexistent.json");
	std::ofstream(d.dir() + "/bad.json") << "{\"values\": [ {\"name\": \"x\", ";
	fails({"network", "service-tag", "load", "--file", d.dir() + "/bad.json"}, 1, d.dir() + "/bad.json");
}

TEST_F(CliTest, ServerFirewallAndVnetRules)
{
	base();
	json m = ok({"mysql", "server", "show", "--name", "db1"});
	EXPECT_EQ(m["fullyQualifiedDomainName"], "db1.mysql.database.azure.com");
	EXPECT_EQ(m["backends"][1]["weight"], 2);
	EXPECT_EQ(m["type"], "Microsoft.DBforMySQL/servers");
	m = ok({"mysql", "server", "update", "--name", "db1", "--public-network-access", "Disabled"});
	EXPECT_EQ(m["publicNetworkAccess"], "Disabled");
	EXPECT_EQ(m["backends"].size(), 2u);
	EXPECT_EQ(ok({"mysql", "server", "list"}).size(), 1u);
	CtlRun t = ctl({"mysql", "server", "list", "-o", "table"});
	EXPECT_NE(t.out.find("db1   20.10.1.5  Disabled             192.168.10.11:3306, 192.168.10.12:3306:2"),
		  std::string::npos)
		<< t.out;
	fails({"mysql", "server", "create", "--name", "db2", "--public-ip", "20.10.1.5"}, 1,
	      "mysqlServers/db2: publicIp 20.10.1.5 is already used by server db1");
	fails({"mysql", "server", "create", "--name", "db2"}, 2, "--public-ip");

	json f = ok({"mysql", "server", "firewall-rule", "create", "--server-name", "db1", "--name", "office",
		     "--start-ip-address", "203.0.113.0", "--end-ip-address", "203.0.113.255"});
	json want = json::parse(slurp(std::string(LG_FIXTURES_DIR) + "/az/mysql_server_show.json"))["firewallRules"][1];
	for (const char *k : {"name", "startIpAddress", "endIpAddress", "type"})
		EXPECT_EQ(f[k], want[k]) << k;
	f = ok({"mysql", "server", "firewall-rule", "update", "--server-name", "db1", "--name", "office",
		"--end-ip-address", "203.0.113.127"});
	EXPECT_EQ(f["endIpAddress"], "203.0.113.127");
	EXPECT_EQ(ok({"mysql", "server", "firewall-rule", "show", "--server-name", "db1", "--name", "office"})["startIpAddress"],
		  "203.0.113.0");
	EXPECT_EQ(ok({"mysql", "server", "firewall-rule", "list", "--server-name", "db1"}).size(), 1u);
	t = ctl({"mysql", "server", "firewall-rule", "list", "-s", "db1", "-o", "table"});
	EXPECT_NE(t.out.find("office  203.0.113.0     203.0.113.127"), std::string::npos) << t.out;
	fails({"mysql", "server", "firewall-rule", "create", "--server-name", "db1", "--name", "bad", "--start-ip-address",
	       "10.0.0.9", "--end-ip-address", "10.0.0.1"},
	      1, "mysqlServers/db1/firewallRules/bad: startIpAddress 10.0.0.9 is after endIpAddress 10.0.0.1");
	ok({"mysql", "server", "firewall-rule", "delete", "--server-name", "db1", "--name", "office"});
	fails({"mysql", "server", "firewall-rule", "show", "--server-name", "db1", "--name", "office"}, 3,
	      "mysqlServers/db1/firewallRules/office: not found");

	json v = ok({"mysql", "server", "vnet-rule", "create", "--server-name", "db1", "--name", "sqlep", "--vnet-name", "v1",
		     "--subnet", "sqlep"});
	EXPECT_EQ(v["virtualNetworkSubnetId"], lg::subnet_id("v1", "sqlep"));
	EXPECT_EQ(v["type"], "Microsoft.DBforMySQL/servers/virtualNetworkRules");
	EXPECT_EQ(ok({"mysql", "server", "vnet-rule", "show", "--server-name", "db1", "--name", "sqlep"})["name"], "sqlep");
	EXPECT_EQ(ok({"mysql", "server", "vnet-rule", "list", "--server-name", "db1"}).size(), 1u);
	fails({"mysql", "server", "vnet-rule", "create", "--server-name", "db1", "--name", "c", "--vnet-name", "v1",
	       "--subnet", "clients"},
	      1, "mysqlServers/db1/virtualNetworkRules/c: virtualNetworkSubnetId: subnet v1/clients has no Microsoft.Sql");
	ok({"mysql", "server", "vnet-rule", "delete", "--server-name", "db1", "--name", "sqlep"});
	fails({"mysql", "server", "vnet-rule", "delete", "--server-name", "db1", "--name", "sqlep"}, 3,
	      "mysqlServers/db1/virtualNetworkRules/sqlep: not found");
	ok({"mysql", "server", "delete", "--name", "db1"});
	fails({"mysql", "server", "show", "--name", "db1"}, 3, "mysqlServers/db1: not found");
}

TEST_F(CliTest, PrivateEndpointConnectionFlow)
{
	base();
	json pe = ok({"network", "private-endpoint", "create", "--name", "pe1", "--vnet-name", "v1", "--subnet", "clients",
		      "--private-ip-address", "10.1.1.100", "--private-connection-resource-id", "db1", "--group-id",
		      "mysqlServer", "--manual-request", "--request-message", "ticket 4711"});
	EXPECT_EQ(pe["manualPrivateLinkServiceConnections"][0]["privateLinkServiceConnectionState"]["status"], "Pending");
	EXPECT_EQ(pe["manualPrivateLinkServiceConnections"][0]["groupIds"], json({"mysqlServer"}));
	EXPECT_EQ(pe["type"], "Microsoft.Network/privateEndpoints");
	json list = ok({"mysql", "server", "private-endpoint-connection", "list", "--server-name", "db1"});
	ASSERT_EQ(list.size(), 1u);
	EXPECT_EQ(list[0]["privateLinkServiceConnectionState"]["status"], "Pending");
	EXPECT_EQ(list[0]["privateEndpoint"]["id"], lg::private_endpoint_id("pe1"));
	std::string conn = list[0]["name"];
	EXPECT_EQ(conn.rfind("pe1.", 0), 0u);

	json e = ok({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--sport", "40000",
		     "--dport", "3306"});
	EXPECT_EQ(e["verdict"], "drop");
	EXPECT_EQ(e["reason"], "pec-pending");

	json a = ok({"mysql", "server", "private-endpoint-connection", "approve", "--server-name", "db1", "--name", conn,
		     "--description", "Approved by the DBA"});
	// As az prints a connection (tests/fixtures/az/pec_show.json).
	json want = json::parse(slurp(std::string(LG_FIXTURES_DIR) + "/az/pec_show.json"));
	for (auto &[k, v] : want.items())
		EXPECT_TRUE(a.contains(k)) << k;
	EXPECT_EQ(a["privateLinkServiceConnectionState"],
		  json({{"actionsRequired", "None"}, {"description", "Approved by the DBA"}, {"status", "Approved"}}));
	list = ok({"mysql", "server", "private-endpoint-connection", "list", "--server-name", "db1"});
	EXPECT_EQ(list[0]["privateLinkServiceConnectionState"]["status"], "Approved");
	EXPECT_EQ(list[0]["privateLinkServiceConnectionState"]["description"], "Approved by the DBA");
	CtlRun t = ctl({"mysql", "server", "private-endpoint-connection", "list", "--server-name", "db1", "-o", "table"});
	EXPECT_NE(t.out.find("pe1              Approved  Approved by the DBA"), std::string::npos) << t.out;

	e = ok({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--sport", "40000", "--dport",
		"3306"});
	EXPECT_EQ(e["verdict"], "forward");
	EXPECT_EQ(e["privateEndpoint"], "pe1");
	EXPECT_EQ(e["server"], "db1");
	EXPECT_FALSE(e["backend"].is_null());
	t = ctl({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--dport", "3306", "-o", "table"});
	EXPECT_NE(t.out.find("verdict"), std::string::npos) << t.out;

	json r = ok({"mysql", "server", "private-endpoint-connection", "reject", "--server-name", "db1", "--name", conn,
		     "--description", "use the replica"});
	EXPECT_EQ(r["privateLinkServiceConnectionState"]["status"], "Rejected");
	EXPECT_EQ(ok({"mysql", "server", "private-endpoint-connection", "show", "--server-name", "db1", "--name", conn})
		      ["privateLinkServiceConnectionState"]["description"],
		  "use the replica");
	fails({"mysql", "server", "private-endpoint-connection", "approve", "--server-name", "db1", "--name", "nope"}, 3,
	      "mysqlServers/db1/privateEndpointConnections/nope: not found");
	ok({"mysql", "server", "private-endpoint-connection", "delete", "--server-name", "db1", "--name", conn});
	EXPECT_TRUE(ok({"mysql", "server", "private-endpoint-connection", "list", "--server-name", "db1"}).empty());
	pe = ok({"network", "private-endpoint", "show", "--name", "pe1"});
	EXPECT_EQ(pe["manualPrivateLinkServiceConnections"][0]["privateLinkServiceConnectionState"]["status"],
		  "Disconnected");
	e = ok({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--dport", "3306"});
	EXPECT_EQ(e["reason"], "pec-disconnected");

	ok({"network", "private-endpoint", "create", "--name", "pe2", "--vnet-name", "v1", "--subnet", "clients",
	    "--private-ip-address", "10.1.1.101", "--private-connection-resource-id", lg::server_id("db1"), "--group-id",
	    "mysqlServer"});
	EXPECT_EQ(ok({"network", "private-endpoint", "list"}).size(), 2u);
	t = ctl({"network", "private-endpoint", "list", "-o", "table"});
	EXPECT_NE(t.out.find("Disconnected"), std::string::npos) << t.out;
	EXPECT_NE(t.out.find("pe2   10.1.1.101        v1/clients  db1"), std::string::npos) << t.out;
	fails({"network", "private-endpoint", "create", "--name", "pe3", "--vnet-name", "v1", "--subnet", "clients",
	       "--private-ip-address", "10.1.9.1", "--private-connection-resource-id", "db1", "--group-id", "mysqlServer"},
	      1, "privateEndpoints/pe3: privateIPAddress 10.1.9.1 is outside subnet clients");
	ok({"network", "private-endpoint", "delete", "--name", "pe1"});
	fails({"network", "private-endpoint", "show", "--name", "pe1"}, 3, "privateEndpoints/pe1: not found");
}

// `status`: the live generation and each dataplane's; and a result that
// cannot be written (a full disk under `export > backup.json`) is exit 1.
TEST_F(CliTest, StatusAndAnUnwritableResult)
{
	base();
	json st = ok({"status"});
	EXPECT_EQ(st["generation"], d.generation());
	EXPECT_TRUE(st["dataplanes"].is_array()) << st.dump();
	CtlRun full = ctl({"export"}, true, "/dev/full");
	EXPECT_EQ(full.code, 1) << full.err;
	EXPECT_NE(full.err.find("cannot write the result: No space left on device"), std::string::npos) << full.err;
}

TEST_F(CliTest, ApplyExportExplainStatsFlows)
{
	std::string seed = std::string(LG_FIXTURES_DIR) + "/seed_state.json";
	json applied = ok({"apply", "-f", seed});
	json exported = ok({"export"});
	EXPECT_EQ(applied, exported);
	auto st = lg::state_from_json(lg::read_json_file(seed).value());
	ASSERT_TRUE(st);
	EXPECT_EQ(exported, lg::state_to_json(*st)); // the whole seed went through the socket
	// export | apply round-trips without a change of content.
	std::ofstream(d.dir() + "/export.json") << exported.dump(2);
	EXPECT_EQ(ok({"apply", "--file", d.dir() + "/export.json"}), exported);
	CtlRun t = ctl({"export", "-o", "table"});
	EXPECT_NE(t.out.find("virtualNetworks"), std::string::npos) << t.out;

	json bad = exported;
	bad["networkSecurityGroups"][0]["securityRules"][0]["priority"] = 70000;
	std::ofstream(d.dir() + "/bad.json") << bad.dump();
	fails({"apply", "-f", d.dir() + "/bad.json"}, 1, "priority 70000");
	// Files the client cannot read as JSON: an error line, not an abort.
	std::ofstream(d.dir() + "/huge-number.json") << R"({"virtualNetworks":[{"name":"a","vni":1e999}]})";
	fails({"apply", "-f", d.dir() + "/huge-number.json"}, 1, "number overflow");
	std::ofstream(d.dir() + "/deep.json") << std::string(200000, '[') + std::string(200000, ']');
	fails({"apply", "-f", d.dir() + "/deep.json"}, 1, "nested deeper than 64 levels");
	fails({"network", "service-tag", "load", "--file", "/dev/zero"}, 1, "not a regular file");
	EXPECT_EQ(ok({"export"}), exported);

	json e = ok({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--dport", "3306",
		     "--vnet-name", "client-vnet"});
	// The seed's approved private endpoint (docs/demo.md scenario 2).
	EXPECT_EQ(e["verdict"], "forward") << e;
	EXPECT_EQ(e["reason"], nullptr) << e;
	EXPECT_EQ(e["stage"], "private-endpoint") << e;
	EXPECT_EQ(e["privateEndpoint"], "pe-east") << e;
	EXPECT_EQ(e["server"], "eastus-db") << e;
	// One of eastus-db's two backends (Maglev picks by the 5-tuple).
	EXPECT_TRUE(e["backend"] == "192.168.20.11:3306" || e["backend"] == "192.168.20.12:3306") << e;
	EXPECT_EQ(e["rule"], "allow-mysql-private-endpoint") << e;
	EXPECT_EQ(e["vnet"], "client-vnet");
	e = ok({"explain", "--src", "10.1.1.10", "--dst", "10.1.1.100", "--protocol", "Tcp", "--dport", "22",
		"--vnet-name", "client-vnet"});
	EXPECT_EQ(e["verdict"], "drop") << e;
	EXPECT_EQ(e["reason"], "pe-port") << e;
	fails({"explain", "--src", "10.1.1.x", "--dst", "10.1.1.100", "--protocol", "Tcp"}, 2, "src");
	fails({"explain", "--src", "10.1.1.1", "--dst", "10.1.1.100"}, 2, "--protocol");

	json s = ok({"stats"});
	EXPECT_TRUE(s["drops"].contains("nsg-deny"));
	EXPECT_TRUE(s["nsgRules"].contains("clients-nsg/allow-mysql-private-endpoint"));
	EXPECT_TRUE(s.contains("privateEndpoints"));
	EXPECT_TRUE(s.contains("servers"));
	t = ctl({"stats", "-o", "table"});
	EXPECT_NE(t.out.find("drops.nsg-deny"), std::string::npos) << t.out;
	EXPECT_EQ(ok({"flows"}), json::array());
	t = ctl({"flows", "-o", "table"});
	EXPECT_EQ(t.out.rfind("Original", 0), 0u) << t.out;
}

// Anything but a JSON-RPC 2.0 response to our request is an agent the CLI
// cannot use: one error line and exit 1, never an abort.
TEST_F(CliTest, MalformedRepliesAreOneErrorLine)
{
	FakeAgent fake(d.dir() + "/fake.sock");
	ASSERT_TRUE(fake.listening());
	auto with = [&](const std::string &reply, std::vector<std::string> args) {
		fake.answer(reply);
		args.insert(args.begin(), {"--socket", fake.path()});
		return ctl(args);
	};
	const std::vector<std::string> bad{
		"[]",
		"5",
		"null",
		"{}",
		"\"x\"",
		"garbage",
		R"({"jsonrpc":"2.0","id":1,"error":5})",
		R"({"jsonrpc":"2.0","id":1,"error":{"code":"x"}})",
		R"({"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":5}})",
		R"({"jsonrpc":"2.0","id":1,"error":{"code":-32002.5,"message":"x"}})",
		R"({"jsonrpc":"2.0","id":1,"error":{"message":"x"}})",
		R"({"jsonrpc":"2.0","id":999,"result":[]})",
		R"({"jsonrpc":"2.0","id":"1","result":[]})",
		R"({"jsonrpc":"2.0","id":null,"result":[]})",
		R"({"jsonrpc":"2.0","result":[]})",
		R"({"jsonrpc":"1.0","id":1,"result":[]})",
		R"({"id":1,"result":[]})",
		R"({"jsonrpc":"2.0","id":1})",
		R"({"jsonrpc":"2.0","id":1,"result":[],"error":{"code":-32001,"message":"x"}})",
		std::string(100000, '[') + std::string(100000, ']'), // deep enough to overflow a recursive copy
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"a\0b\"}"s, // valid JSON up to the NUL
	};
	for (const std::string &reply : bad) {
		std::string shown = reply.substr(0, 80);
		CtlRun r = with(reply, {"network", "vnet", "list"});
		EXPECT_EQ(r.code, 1) << shown << "\n" << r.err;
		EXPECT_EQ(r.out, "") << shown;
		EXPECT_EQ(r.err.rfind("ERROR: ", 0), 0u) << shown << "\n" << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << shown << "\n" << r.err;
	}
	CtlRun r = with(R"({"jsonrpc":"2.0","id":999,"result":[]})", {"network", "vnet", "list"});
	EXPECT_NE(r.err.find("malformed reply from linkgated at " + fake.path() + ": not the reply to request 1"),
		  std::string::npos)
		<< r.err;

	// Well-formed replies still work: extra members, an error before the
	// agent read our id (id null), a not-found error, a delete's null.
	r = with(R"({"jsonrpc":"2.0","id":1,"generation":3,"result":[]})", {"network", "vnet", "list"});
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_EQ(r.out, "[]\n");
	r = with(R"({"jsonrpc":"2.0","id":null,"error":{"code":-32012,"message":"too many connections"}})",
		 {"network", "vnet", "list"});
	EXPECT_EQ(r.code, 1);
	EXPECT_EQ(r.err, "ERROR: too many connections\n");
	r = with(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"virtualNetworks/x: not found","data":{}}})",
		 {"network", "vnet", "show", "-n", "x"});
	EXPECT_EQ(r.code, 3);
	EXPECT_EQ(r.err, "ERROR: virtualNetworks/x: not found\n");
	r = with(R"({"jsonrpc":"2.0","id":1,"result":null})", {"network", "vnet", "delete", "-n", "x"});
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_EQ(r.out, "");

	// Tables of results with unexpected types: cells print what is there.
	r = with(R"({"jsonrpc":"2.0","id":1,"result":[{"backends":[{"address":5}],"firewallRules":3}]})",
		 {"-o", "table", "mysql", "server", "list"});
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_EQ(r.err, "");
	EXPECT_NE(r.out.find("\n                                     5         3              0          0\n"),
		  std::string::npos)
		<< r.out;
	const std::vector<std::pair<std::string, std::vector<std::string>>> odd{
		{R"([5,"x",null,{"name":{"id":5},"backends":[7,{"port":"p","weight":[1]}],"virtualNetworkRules":{}}])",
		 {"mysql", "server", "list"}},
		{R"([{"subnets":7,"securityRules":"x","networkInterfaces":[{"id":[]}]},{"subnets":[5,{"id":"nope"}]}])",
		 {"network", "nsg", "list"}},
		{R"({"newVNet":[1]})", {"network", "vnet", "create", "-n", "x"}},
		{R"([{"subnets":{"a":1},"addressSpace":5}])", {"network", "vnet", "list"}},
		{R"([{"serviceEndpoints":[5,{"service":{}}]}])", {"network", "vnet", "subnet", "list", "--vnet-name", "v"}},
		{R"([{"ipConfigurations":{"0":1}},{"ipConfigurations":[{"subnet":{"id":5}}]}])", {"network", "nic", "list"}},
		{R"([{"privateLinkServiceConnections":[5]},{"manualPrivateLinkServiceConnections":"x"}])",
		 {"network", "private-endpoint", "list"}},
		{R"([1,2])", {"export"}},
		{R"({"serviceTags":5,"virtualNetworks":{"a":1}})", {"export"}},
		{R"(7)", {"stats"}},
		{R"({"a":[1,{"b":[[]]}],"c":{}})", {"stats"}},
	};
	for (const auto &[result, args] : odd) {
		std::vector<std::string> a{"-o", "table"};
		a.insert(a.end(), args.begin(), args.end());
		r = with(R"({"jsonrpc":"2.0","id":1,"result":)" + result + "}", a);
		EXPECT_EQ(r.code, 0) << result << "\n" << r.err;
		EXPECT_EQ(r.err, "") << result;
	}
}

// One object is one row: a value's control characters are escaped, so that
// it can neither forge a row nor send escape sequences to the terminal.
TEST_F(CliTest, TableCellsEscapeControlCharacters)
{
	base();
	ok({"network", "private-endpoint", "create", "--name", "pe1", "--vnet-name", "v1", "--subnet", "clients",
	    "--private-ip-address", "10.1.1.100", "--private-connection-resource-id", "db1", "--group-id", "mysqlServer",
	    "--manual-request"});
	std::string conn = ok({"mysql", "server", "private-endpoint-connection", "list", "-s", "db1"})[0]["name"];
	auto table_with = [&](const std::string &description) {
		json a = d.rpc("mysql.server.private-endpoint-connection.approve",
			       {{"serverName", "db1"}, {"name", conn}, {"description", description}});
		EXPECT_TRUE(a.contains("result")) << a;
		CtlRun t = ctl({"mysql", "server", "private-endpoint-connection", "list", "-s", "db1", "-o", "table"});
		EXPECT_EQ(t.code, 0) << t.err;
		EXPECT_EQ(std::count(t.out.begin(), t.out.end(), '\n'), 3) << t.out; // header, dashes, one row
		return t.out;
	};
	ok({"mysql", "server", "private-endpoint-connection", "approve", "-s", "db1", "-n", conn, "--description",
	    "ok\nInjected  Row  Approved  fake"});
	CtlRun t = ctl({"mysql", "server", "private-endpoint-connection", "list", "-s", "db1", "-o", "table"});
	EXPECT_EQ(std::count(t.out.begin(), t.out.end(), '\n'), 3) << t.out;
	EXPECT_NE(t.out.find("Approved  ok\\nInjected  Row  Approved  fake\n"), std::string::npos) << t.out;

	std::string out = table_with("\x1b[2J\x1b[31mred\r\t\x7f");
	EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
	EXPECT_NE(out.find("\\x1b[2J\\x1b[31mred\\r\\t\\x7f\n"), std::string::npos) << out;
	out = table_with("cut\0here"s); // printf would stop at the NUL
	EXPECT_NE(out.find("cut\\x00here\n"), std::string::npos) << out;
	out = table_with("\xc2\x9b" "31mC1 \xc3\xa9"); // U+009B is CSI; é stays
	EXPECT_NE(out.find("\\u009b31mC1 \xc3\xa9\n"), std::string::npos) << out;

	// -o json: valid JSON either way, DEL and C1 as escapes.
	table_with("\x7f \xc2\x9b" "31m \xc2\x80\xc2\xa0 \xc3\xa9");
	CtlRun j = ctl({"mysql", "server", "private-endpoint-connection", "list", "-s", "db1"});
	EXPECT_EQ(j.code, 0) << j.err;
	EXPECT_EQ(j.out.find('\x7f'), std::string::npos) << j.out;
	EXPECT_EQ(j.out.find("\xc2\x9b"), std::string::npos) << j.out;
	EXPECT_NE(j.out.find("\\u007f \\u009b31m \\u0080\xc2\xa0 \xc3\xa9"), std::string::npos) << j.out;
	json back = json::parse(j.out);
	EXPECT_EQ(back[0]["privateLinkServiceConnectionState"]["description"], "\x7f \xc2\x9b" "31m \xc2\x80\xc2\xa0 \xc3\xa9")
		<< j.out;
}

TEST_F(CliTest, TableBracketsIpv6Backends)
{
	ok({"mysql", "server", "create", "--name", "db6", "--public-ip", "20.10.1.6", "--backend", "[fd00::5]:3307:3",
	    "192.168.10.11:3306", "[fd00::6]:3306"});
	CtlRun t = ctl({"mysql", "server", "show", "-n", "db6", "-o", "table"});
	EXPECT_NE(t.out.find("  [fd00::5]:3307:3, 192.168.10.11:3306, [fd00::6]:3306  "), std::string::npos) << t.out;
}

// Subnet names repeat across VNets: the NSG table names the VNet too.
TEST_F(CliTest, NsgTableSubnetsNameTheirVnet)
{
	ok({"network", "nsg", "create", "--name", "web"});
	for (const char *v : {"v1", "v2"}) {
		std::string n = v + 1;
		ok({"network", "vnet", "create", "--name", v, "--address-prefixes", "10." + n + ".0.0/16"});
		ok({"network", "vnet", "subnet", "create", "--vnet-name", v, "--name", "s6", "--address-prefixes",
		    "10." + n + ".6.0/24", "--nsg", "web"});
	}
	CtlRun t = ctl({"network", "nsg", "list", "-o", "table"});
	EXPECT_NE(t.out.find("web   False            0         v1/s6, v2/s6"), std::string::npos) << t.out;
}

// Every error is one line, whatever the agent's message or the typed
// arguments hold: control characters are escaped.
TEST_F(CliTest, ErrorMessagesAreOneLine)
{
	fails({"network", "nsg", "create", "-n", "a\nb"}, 1, "ERROR: networkSecurityGroups/a\\nb: name 'a\\nb'");
	fails({"network", "nsg", "create", "-n", "\x1b[2Jx\r"}, 1, "networkSecurityGroups/\\x1b[2Jx\\r:");
	// The CLI's own errors: a file it cannot read as JSON, named in the message.
	std::string file = d.dir() + "/bad\n\x1b.json";
	std::ofstream(file) << "{";
	fails({"apply", "-f", file}, 1, d.dir() + "/bad\\n\\x1b.json");
	// CLI11's usage errors quote the value (its message is followed by a
	// line of advice).
	CtlRun r = ctl({"network", "nsg", "create", "-n", "x", "--flush-connection", "\x1b[2J\n"});
	EXPECT_EQ(r.code, 2);
	EXPECT_NE(r.err.find("\\x1b[2J\\n not in {true,false}\n"), std::string::npos) << r.err;
	EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
}

TEST_F(CliTest, UsageErrorsAndConnectionFailures)
{
	fails({}, 2, "");
	fails({"network"}, 2, "");
	fails({"network", "vnet", "frob"}, 2, "subcommand");
	fails({"network", "vnet", "show"}, 2, "--name");
	fails({"network", "vnet", "list", "-o", "yaml"}, 2, "yaml");
	fails({"network", "nsg", "create", "--name", "x", "--flush-connection", "maybe"}, 2, "maybe");
	EXPECT_EQ(ctl({"--help"}).code, 0);
	EXPECT_EQ(ctl({"network", "nsg", "rule", "create", "--help"}).code, 0);
	// A bool's help says its value may be left out, as az's flags.
	CtlRun h = ctl({"network", "nsg", "create", "--help"});
	EXPECT_EQ(h.code, 0);
	EXPECT_NE(h.out.find("--flush-connection [true|false]"), std::string::npos) << h.out;
	// --socket overrides, and a missing agent is one clear line.
	CtlRun r = ctl({"--socket", d.dir() + "/none.sock", "network", "vnet", "list"});
	EXPECT_EQ(r.code, 1);
	EXPECT_NE(r.err.find("cannot connect to linkgated at " + d.dir() + "/none.sock: No such file or directory (is "
			     "linkgated running? --socket or LINKGATE_SOCKET name another socket)"),
		  std::string::npos)
		<< r.err;
	r = ctl({"network", "vnet", "list", "--socket", d.socket_path()}, false);
	EXPECT_EQ(r.code, 0) << r.err;
	EXPECT_EQ(r.j(), json::array());
}

} // namespace
