// linkgate-eval: the reference evaluator from the command line.
//
//   linkgate-eval                      walk through the seed scenarios on the
//                                      built-in state, narrated, with a summary
//   linkgate-eval --state FILE --explain VNET SRC DST PROTO SPORT DPORT
//                                      what the state does with one new flow
#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdio>
#include <functional>
#include <iostream>

#include "arm_json.hpp"
#include "evaluator.hpp"
#include "packet.hpp"
#include "validate.hpp"

using namespace lg;

namespace {

// The built-in state: a client VNet, two servers (West US, East US), a
// private endpoint to the East US one, and the exfiltration NSG of the seed.
const char *kSeedState = R"json({
  "virtualNetworks": [{
    "name": "client-vnet",
    "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
    "subnets": [
      {"name": "clients", "addressPrefix": "10.1.1.0/24",
       "networkSecurityGroup": {"id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/linkgate/providers/Microsoft.Network/networkSecurityGroups/clients-nsg"}},
      {"name": "sqlep", "addressPrefix": "10.1.2.0/24",
       "serviceEndpoints": [{"service": "Microsoft.Sql", "locations": ["westus"]}]}
    ]
  }],
  "networkSecurityGroups": [{
    "name": "clients-nsg",
    "securityRules": [
      {"name": "allow-sql-westus", "priority": 100, "direction": "Outbound", "access": "Allow",
       "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
       "destinationAddressPrefix": "Sql.WestUS", "destinationPortRange": "3306"},
      {"name": "deny-sql", "priority": 200, "direction": "Outbound", "access": "Deny",
       "protocol": "*", "sourceAddressPrefix": "*", "sourcePortRange": "*",
       "destinationAddressPrefix": "Sql", "destinationPortRange": "*"}
    ]
  }],
  "mysqlServers": [
    {"name": "westus-db", "publicIp": "20.10.1.5",
     "backends": [{"address": "192.168.10.11", "port": 3306}, {"address": "192.168.10.12", "port": 3306}]},
    {"name": "eastus-db", "publicIp": "20.10.2.5",
     "backends": [{"address": "192.168.20.11", "port": 3306}]}
  ],
  "serviceTags": {"changeNumber": 1, "cloud": "Public", "values": [
    {"name": "AzureCloud", "id": "AzureCloud", "properties": {"addressPrefixes": ["20.0.0.0/8", "40.64.0.0/10"]}},
    {"name": "Sql", "id": "Sql", "properties": {"systemService": "AzureSQL", "addressPrefixes": ["20.10.0.0/16"]}},
    {"name": "Sql.WestUS", "id": "Sql.WestUS", "properties": {"region": "westus", "systemService": "AzureSQL", "addressPrefixes": ["20.10.1.0/24"]}},
    {"name": "Sql.EastUS", "id": "Sql.EastUS", "properties": {"region": "eastus", "systemService": "AzureSQL", "addressPrefixes": ["20.10.2.0/24"]}}
  ]}
})json";

constexpr uint32_t kClientIf = 1, kBackendIf = 2;
const Mac kClientIfMac{0x02, 0, 0, 0, 1, 1}, kBackendIfMac{0x02, 0, 0, 0, 2, 1};
const Mac kHostMac{0x02, 0xc1, 0, 0, 0, 1}, kBackendMac{0x02, 0xb1, 0, 0, 0, 1};

HostConfig demo_host()
{
	HostConfig h;
	h.interfaces = {{kClientIf, kClientIfMac, "client-vnet"}, {kBackendIf, kBackendIfMac, ""}};
	h.routes = {{*Prefix::parse("10.1.0.0/16"), kClientIf, {}},
		    {*Prefix::parse("192.168.0.0/16"), kBackendIf, {}},
		    {*Prefix::parse("0.0.0.0/0"), kBackendIf, Addr::parse("192.168.0.1")}};
	for (const char *ip : {"10.1.1.10", "10.1.2.10"})
		h.neighbors.push_back({kClientIf, *Addr::parse(ip), kHostMac});
	for (const char *ip : {"192.168.10.11", "192.168.10.12", "192.168.20.11", "192.168.0.1"})
		h.neighbors.push_back({kBackendIf, *Addr::parse(ip), kBackendMac});
	return h;
}

struct Row {
	int step;
	std::string what, packet, expected;
	Decision d;
};

class Demo {
public:
	Demo() : ev_(demo_host()) {}

	bool change(const std::string &what, const std::function<void(State &)> &f)
	{
		State next = state_;
		f(next);
		fill_defaults(next);
		auto st = ev_.commit(next);
		step_++;
		std::printf("\nStep %d: %s\n", step_, what.c_str());
		if (!st) {
			std::printf("  rejected: %s\n", st.error().c_str());
			return false;
		}
		state_ = next;
		std::printf("  committed generation %llu\n", (unsigned long long)ev_.generation());
		return true;
	}

	// One TCP packet arriving on the client side (or, from_outside, on the
	// backend/Internet side of the host).
	void tcp(const std::string &src, uint16_t sport, const std::string &dst, uint16_t dport, uint8_t flags,
		 const std::string &expected, bool from_outside = false)
	{
		auto f = PacketBuilder()
				 .eth(from_outside ? kBackendMac : kHostMac, from_outside ? kBackendIfMac : kClientIfMac)
				 .ipv4(src, dst)
				 .tcp(sport, dport, flags)
				 .build();
		Decision d = ev_.process(f, from_outside ? kBackendIf : kClientIf, now_);
		now_ += 1000000;
		std::string flag = flags == kTcpSyn ? "SYN" : flags == (kTcpSyn | kTcpAck) ? "SYN-ACK" : "ACK";
		std::string pkt = src + ":" + std::to_string(sport) + " > " + dst + ":" + std::to_string(dport) + " " + flag;
		std::string out = verdict_name(d.verdict);
		if (d.verdict == LG_VERDICT_DROP)
			out += std::string(" ") + reason_name(d.reason);
		std::printf("  try   %-44s -> %s  [%s", pkt.c_str(), out.c_str(), stage_name(d.stage));
		if (!d.trace.empty() && d.trace.back().stage == d.stage)
			std::printf(" %s/%s", d.trace.back().object.c_str(), d.trace.back().rule.c_str());
		std::printf("]");
		if (d.verdict == LG_VERDICT_FORWARD) {
			Parsed o;
			parse_frame(d.frame, o);
			std::printf("  out %s:%u > %s:%u", o.src.str().c_str(), o.sport, o.dst.str().c_str(), o.dport);
		}
		std::printf("\n");
		rows_.push_back({step_, pkt, out, expected, d});
	}

	int summary() const
	{
		std::printf("\nSummary\n%-5s %-44s %-30s %-30s %s\n", "step", "packet", "expected", "got", "");
		int bad = 0;
		for (auto &r : rows_) {
			std::string got = verdict_name(r.d.verdict);
			if (r.d.verdict == LG_VERDICT_DROP)
				got += std::string(" ") + reason_name(r.d.reason);
			bool ok = got == r.expected;
			bad += !ok;
			std::printf("%-5d %-44s %-30s %-30s %s\n", r.step, r.what.c_str(), r.expected.c_str(), got.c_str(),
				    ok ? "ok" : "MISMATCH");
		}
		std::printf("\n%zu packets, %d as expected, %d not\n", rows_.size(), int(rows_.size()) - bad, bad);
		std::printf("\nDrops by reason:\n");
		for (int i = 1; i < LG_REASON__COUNT; i++)
			if (ev_.counters().reasons[size_t(i)])
				std::printf("  %-24s %llu\n", reason_name(lg_reason(i)),
					    (unsigned long long)ev_.counters().reasons[size_t(i)]);
		return bad ? 1 : 0;
	}

	State state_;

private:
	Evaluator ev_;
	std::vector<Row> rows_;
	int step_ = 0;
	uint64_t now_ = 1000000000ull;
};

int walkthrough()
{
	auto j = nlohmann::json::parse(kSeedState);
	auto seed = state_from_json(j);
	if (!seed) {
		std::fprintf(stderr, "built-in state: %s\n", seed.error().c_str());
		return 2;
	}
	std::printf("linkgate reference evaluator: the seed scenarios on the built-in state\n");
	std::printf("client VNet 10.1.0.0/16 (subnets clients 10.1.1.0/24, sqlep 10.1.2.0/24 with Microsoft.Sql),\n"
		    "servers westus-db 20.10.1.5 and eastus-db 20.10.2.5 (backends on 192.168.0.0/16)\n");
	Demo d;
	d.change("load the state: servers with no firewall rules and no private endpoints",
		 [&](State &s) { s = *seed; });
	d.tcp("10.1.1.10", 40001, "20.10.1.5", 3306, kTcpSyn, "drop firewall-no-match");
	d.tcp("40.64.1.2", 40002, "20.10.2.5", 3306, kTcpSyn, "drop firewall-no-match", true);

	d.change("create private endpoint pe-east 10.1.1.100 -> eastus-db as a manual request (Pending)", [](State &s) {
		PrivateEndpoint pe = make_private_endpoint("pe-east", "client-vnet", "clients", "10.1.1.100", "eastus-db");
		pe.manualRequest = true;
		pe.connectionState = {"Pending", "", "None"};
		s.privateEndpoints.push_back(pe);
	});
	d.tcp("10.1.1.10", 40003, "10.1.1.100", 3306, kTcpSyn, "drop pec-pending");

	d.change("approve the connection (\"approved by dba\")", [](State &s) {
		s.private_endpoint("pe-east")->connectionState = {"Approved", "approved by dba", "None"};
	});
	d.tcp("10.1.1.10", 40004, "10.1.1.100", 3306, kTcpSyn, "forward");
	d.tcp("192.168.20.11", 3306, "10.1.1.10", 40004, kTcpSyn | kTcpAck, "forward", true);
	d.tcp("10.1.1.10", 40004, "10.1.1.100", 3306, kTcpAck, "forward");

	d.change("reject the connection while that flow is open",
		 [](State &s) { s.private_endpoint("pe-east")->connectionState = {"Rejected", "not approved", "None"}; });
	d.tcp("10.1.1.10", 40004, "10.1.1.100", 3306, kTcpAck, "drop pec-rejected");
	d.tcp("10.1.1.10", 40005, "10.1.1.100", 3306, kTcpSyn, "drop pec-rejected");

	d.change("approve again; firewall rules for the clients subnet on both servers", [](State &s) {
		s.private_endpoint("pe-east")->connectionState = {"Approved", "", "None"};
		for (auto *sv : {s.server("westus-db"), s.server("eastus-db")})
			sv->firewallRules = {{"clients", "10.1.1.0", "10.1.1.255"}};
	});
	d.tcp("10.1.1.10", 40006, "20.10.1.5", 3306, kTcpSyn, "forward");
	d.tcp("10.1.1.10", 40007, "20.10.2.5", 3306, kTcpSyn, "drop nsg-deny");
	d.tcp("10.1.1.10", 40008, "10.1.1.100", 3306, kTcpSyn, "forward");

	d.change("eastus-db: the 0.0.0.0 rule (allow Azure services) instead",
		 [](State &s) { s.server("eastus-db")->firewallRules = {{"AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"}}; });
	d.tcp("40.64.1.2", 40009, "20.10.2.5", 3306, kTcpSyn, "forward", true);
	d.tcp("203.0.113.7", 40010, "20.10.2.5", 3306, kTcpSyn, "drop firewall-no-match", true);

	d.change("westus-db: an IP rule covering the service-endpoint subnet sqlep",
		 [](State &s) { s.server("westus-db")->firewallRules.push_back({"sqlep", "10.1.2.0", "10.1.2.255"}); });
	d.tcp("10.1.2.10", 40011, "20.10.1.5", 3306, kTcpSyn, "drop vnet-rule-no-match");
	d.change("westus-db: a VNet rule for sqlep",
		 [](State &s) { s.server("westus-db")->virtualNetworkRules = {{"sqlep-rule", "client-vnet", "sqlep"}}; });
	d.tcp("10.1.2.10", 40012, "20.10.1.5", 3306, kTcpSyn, "forward");

	d.change("eastus-db: publicNetworkAccess Disabled",
		 [](State &s) { s.server("eastus-db")->publicNetworkAccess = "Disabled"; });
	d.tcp("40.64.1.2", 40013, "20.10.2.5", 3306, kTcpSyn, "drop public-access-disabled", true);
	d.tcp("10.1.1.10", 40014, "10.1.1.100", 3306, kTcpSyn, "forward");

	d.change("delete the private endpoint connection", [](State &s) {
		auto *pe = s.private_endpoint("pe-east");
		pe->connectionPresent = false;
		pe->connectionState = {"Disconnected", "", "None"};
	});
	d.tcp("10.1.1.10", 40015, "10.1.1.100", 3306, kTcpSyn, "drop pec-disconnected");
	return d.summary();
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"linkgate reference evaluator"};
	std::string state_file;
	std::vector<std::string> explain;
	app.add_option("--state", state_file, "state file (ARM JSON)")->check(CLI::ExistingFile);
	std::string egress_vnet;
	app.add_option("--explain", explain, "VNET SRC DST PROTO SPORT DPORT: decide one new flow")->expected(6);
	app.add_option("--egress-vnet", egress_vnet,
		       "VNet of the interface the flow leaves by (peered VNets); default: VNET");
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e) == 0 ? 0 : 2;
	}
	if (explain.empty())
		return walkthrough();

	if (state_file.empty()) {
		std::fprintf(stderr, "--explain needs --state FILE\n");
		return 2;
	}
	auto st = load_state_file(state_file);
	if (!st) {
		std::fprintf(stderr, "%s\n", st.error().c_str());
		return 1;
	}
	Evaluator ev(HostConfig{});
	if (auto c = ev.commit(*st); !c) {
		std::fprintf(stderr, "%s\n", c.error().c_str());
		return 1;
	}
	auto src = Addr::parse(explain[1]), dst = Addr::parse(explain[2]);
	std::map<std::string, uint8_t> protos{{"Tcp", kProtoTcp}, {"Udp", kProtoUdp}, {"Icmp", kProtoIcmp}};
	if (!src || !dst || !protos.count(explain[3])) {
		std::fprintf(stderr, "--explain: expected VNET SRC-IP DST-IP Tcp|Udp|Icmp SPORT DPORT\n");
		return 2;
	}
	auto port = [](const std::string &v) -> std::optional<uint16_t> {
		unsigned n = 0;
		auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
		if (ec != std::errc() || p != v.data() + v.size() || n > 65535)
			return std::nullopt;
		return uint16_t(n);
	};
	auto sport = port(explain[4]), dport = port(explain[5]);
	if (!sport || !dport) {
		std::fprintf(stderr, "--explain: ports are 0-65535\n");
		return 2;
	}
	if (!egress_vnet.empty() && !st->vnet(egress_vnet)) {
		std::fprintf(stderr, "--egress-vnet: no VNet %s in the state\n", egress_vnet.c_str());
		return 2;
	}
	Tuple t{explain[0], *src, *dst, protos[explain[3]], *sport, *dport, egress_vnet};
	Decision d = ev.explain(t);
	nlohmann::json out{{"verdict", verdict_name(d.verdict)}, {"reason", reason_name(d.reason)},
			   {"stage", stage_name(d.stage)},     {"nsg", d.nsg},
			   {"rule", d.rule},                   {"backend", d.backend},
			   {"generation", d.generation}};
	std::cout << out.dump(2) << "\n";
	return 0;
}
