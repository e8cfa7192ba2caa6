// A small two-port scenario shared by the pipeline, generation and binary
// tests of linkgate-dpdk: port 0 is the client VNet's side, port 1 the
// backend / Internet side. The state has an allowed private endpoint with
// DNAT, a public endpoint behind a firewall range, an NSG deny and the
// default rules; frames() builds a conversation over it (both directions).
#pragma once

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "evaluator.hpp"
#include "model.hpp"
#include "packet.hpp"
#include "policy_helpers.hpp"

namespace lg::dpdktest {

inline const Mac kClientMac{0x02, 0xc1, 0, 0, 0, 0x0a}, kGwMac{0x02, 0x99, 0, 0, 0, 0x01};

inline Addr A(const char *s) { return *Addr::parse(s); }

// The calling thread on CPU cpu (modulo the CPUs there are): the EAL pinned
// the main thread (-l 0), and threads inherit that, so two test threads
// would otherwise run by turns rather than at once.
inline void pin_to_cpu(unsigned cpu)
{
	unsigned n = std::max(1u, std::thread::hardware_concurrency());
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(cpu % n, &cs);
	pthread_setaffinity_np(pthread_self(), sizeof cs, &cs);
}

// PEC status of pe-east, server westus-db's firewall range end, the NSG
// rule "web"'s access and port: what the generation tests change.
struct Knobs {
	std::string pec = "Approved";
	std::string fw_end = "10.1.1.255";
	std::string web_access = "Deny";
	std::string web_port = "8080";
	std::string east_backend = "192.168.20.11";
	std::string inbound_extra; // non-empty: an extra Inbound allow rule to this port
};

inline State scenario_state(const Knobs &k = {})
{
	using testing::make_rule;
	State s;
	VirtualNetwork v;
	v.name = "client-vnet";
	v.vni = 100;
	v.addressPrefixes = {"10.1.0.0/16"};
	v.subnets = {{"clients", "10.1.1.0/24", "clients-nsg", {}, "Disabled"}};
	s.virtualNetworks.push_back(v);
	NetworkSecurityGroup n;
	n.name = "clients-nsg";
	n.defaultSecurityRules = default_security_rules();
	n.securityRules = {make_rule("allow-pe", 100, "Outbound", "Allow", "Tcp", "*", "10.1.1.100", "3306"),
			   make_rule("web", 150, "Outbound", k.web_access, "Tcp", "*", "*", k.web_port),
			   make_rule("allow-westus", 200, "Outbound", "Allow", "Tcp", "*", "20.10.1.0/24", "3306")};
	if (!k.inbound_extra.empty())
		n.securityRules.push_back(make_rule("in-extra", 300, "Inbound", "Allow", "Tcp", "*", "*", k.inbound_extra));
	s.networkSecurityGroups.push_back(n);
	MySqlServer w;
	w.name = "westus-db";
	w.fullyQualifiedDomainName = "westus-db.mysql.database.azure.com";
	w.publicIp = "20.10.1.5";
	w.backends = {{"192.168.10.11", 3306, 1}};
	w.firewallRules = {{"clients", "10.1.1.0", k.fw_end}};
	MySqlServer e;
	e.name = "eastus-db";
	e.fullyQualifiedDomainName = "eastus-db.mysql.database.azure.com";
	e.publicIp = "20.10.2.5";
	e.backends = {{k.east_backend, 3306, 1}};
	s.servers = {w, e};
	PrivateEndpoint pe = make_private_endpoint("pe-east", "client-vnet", "clients", "10.1.1.100", "eastus-db");
	pe.connectionState.status = k.pec;
	s.privateEndpoints.push_back(pe);
	return s;
}

// The evaluator's host for ports with these MACs (ifindex = port + 1): the
// client VNet behind port 0 (next hop kClientMac), everything else behind
// port 1 (next hop kGwMac) — what linkgate-dpdk's --route flags say.
inline HostConfig scenario_host(const Mac &mac0, const Mac &mac1)
{
	HostConfig h;
	h.interfaces = {{1, mac0, "client-vnet"}, {2, mac1, ""}};
	h.routes = {{*Prefix::parse("10.1.0.0/16"), 1, A("10.1.0.254")}, {*Prefix::parse("0.0.0.0/0"), 2, A("192.168.0.1")}};
	h.neighbors = {{1, A("10.1.0.254"), kClientMac}, {2, A("192.168.0.1"), kGwMac}};
	return h;
}

// linkgate-dpdk's --route flags for the same host.
inline std::vector<std::string> scenario_routes()
{
	return {"10.1.0.0/16=0," + mac_str(kClientMac), "0.0.0.0/0=1," + mac_str(kGwMac)};
}

struct Frame {
	uint16_t port; // arrives on this port
	std::vector<uint8_t> bytes;
	std::string what;
};

// Round 1 arrives on port 0 (client side), round 2 on port 1 (replies and
// inbound), round 3 on both. dst MAC: the port's own.
inline std::vector<std::vector<Frame>> scenario_rounds(const Mac &mac0, const Mac &mac1)
{
	auto c = [&](const char *src, const char *dst) { return PacketBuilder().eth(kClientMac, mac0).ipv4(src, dst); };
	auto b = [&](const char *src, const char *dst) { return PacketBuilder().eth(kGwMac, mac1).ipv4(src, dst); };
	std::vector<uint8_t> trunc = c("10.1.1.10", "8.8.8.8").udp(1, 2).payload("x").build();
	trunc.resize(20);
	std::vector<std::vector<Frame>> r(3);
	r[0] = {{0, c("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpSyn, 100).build(), "SYN to the private endpoint (DNAT)"},
		{0, c("10.1.1.10", "8.8.8.8").tcp(40001, 8080, kTcpSyn).build(), "SYN denied by NSG rule web"},
		{0, c("10.1.1.10", "20.10.1.5").tcp(40002, 3306, kTcpSyn, 200).build(), "SYN to a public endpoint (firewall allows)"},
		{0, c("10.1.1.11", "20.10.2.5").tcp(40003, 3306, kTcpSyn).build(), "SYN to a public endpoint without rules"},
		{0, PacketBuilder().eth(kClientMac, Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}).arp_request(kClientMac, "10.1.1.10", "10.1.1.100").build(), "ARP for the private endpoint (XDP_TX)"},
		{0, c("10.1.1.10", "8.8.8.8").tcp(40004, 443, kTcpAck).build(), "ACK without a flow"},
		{0, c("10.1.1.10", "8.8.8.8").udp(5000, 53).payload("query").build(), "UDP to the Internet"},
		{0, trunc, "truncated IPv4"}};
	r[1] = {{1, b("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpSyn | kTcpAck, 900, 101).build(), "SYN-ACK from the PE backend (translated back)"},
		{1, b("192.168.10.11", "10.1.1.10").tcp(3306, 40002, kTcpSyn | kTcpAck, 700, 201).build(), "SYN-ACK from the public endpoint's backend"},
		{1, b("8.8.8.8", "10.1.1.10").udp(53, 5000).payload("answer").build(), "UDP reply"},
		{1, b("8.8.8.8", "10.1.1.10").tcp(50000, 23, kTcpSyn).build(), "inbound SYN (default deny)"}};
	r[2] = {{1, b("192.168.20.11", "10.1.1.10").tcp(3306, 40000, kTcpAck | kTcpPsh, 901, 101).payload("greeting").build(), "PE backend data"},
		{0, c("10.1.1.10", "10.1.1.100").tcp(40000, 3306, kTcpAck, 101, 901).build(), "ACK to the private endpoint"},
		{0, c("10.1.1.10", "20.10.1.5").tcp(40002, 3306, kTcpAck, 201, 701).build(), "ACK to the public endpoint"}};
	return r;
}

// ---- pcap files (classic format, microsecond stamps, Ethernet) ----
inline bool write_pcap(const std::string &path, const std::vector<std::vector<uint8_t>> &frames)
{
	std::ofstream f(path, std::ios::binary);
	uint32_t hdr[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
	f.write(reinterpret_cast<const char *>(hdr), sizeof hdr);
	uint32_t t = 0;
	for (auto &fr : frames) {
		uint32_t rec[4] = {1700000000, t++, uint32_t(fr.size()), uint32_t(fr.size())};
		f.write(reinterpret_cast<const char *>(rec), sizeof rec);
		f.write(reinterpret_cast<const char *>(fr.data()), std::streamsize(fr.size()));
	}
	return bool(f);
}

// Frames of a pcap file; a missing file is an empty list.
inline std::vector<std::vector<uint8_t>> read_pcap(const std::string &path)
{
	std::vector<std::vector<uint8_t>> out;
	std::ifstream f(path, std::ios::binary);
	uint32_t hdr[6];
	if (!f.read(reinterpret_cast<char *>(hdr), sizeof hdr))
		return out;
	bool swap = hdr[0] == 0xd4c3b2a1 || hdr[0] == 0x4d3cb2a1;
	auto fix = [&](uint32_t v) { return swap ? __builtin_bswap32(v) : v; };
	uint32_t rec[4];
	while (f.read(reinterpret_cast<char *>(rec), sizeof rec)) {
		std::vector<uint8_t> fr(fix(rec[2]));
		if (!f.read(reinterpret_cast<char *>(fr.data()), std::streamsize(fr.size())))
			break;
		out.push_back(std::move(fr));
	}
	return out;
}

} // namespace lg::dpdktest
