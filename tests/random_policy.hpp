// Seeded random policies and new-flow tuples for differential tests: the
// table-driven decision (tests/compiler), the XDP program (tests/xdp) and the
// DPDK fast path are each checked against the reference evaluator on them.
//
//   auto p = lg::testing::random_policy(seed);   // always passes validate()
//   lg::testing::TupleGen gen(p, seed);
//   lg::Tuple t = gen.next();                    // t.vnet: ingress VNet ("" = backend side)
//
// Deterministic: the same seed gives the same policy and tuples (the
// generators use only std::mt19937_64's raw output, no distributions).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "compiler.hpp"
#include "evaluator.hpp"

namespace lg::testing {

struct RandomPolicy {
	State state; // validated, defaults filled
	// ifindex i+1 carries VNet i (state order), with MAC 02:00:00:00:00:<i+1>;
	// the last one (ifindex = VNets + 1) is the backend side (vnet "").
	std::vector<InterfaceBinding> ifaces;
	// The same interfaces; routes: every VNet's address space and the ranges
	// of its gateways to its interface, 0.0.0.0/0 and ::/0 to the backend
	// side. No neighbours, no local addresses.
	HostConfig host;
};

// Several VNets (some peered, one-sided too), local network gateways,
// IPv4/IPv6 subnets (Microsoft.Sql endpoints, privateEndpointNetworkPolicies
// Enabled), NICs, NSGs with overlapping rules in both directions (every
// protocol, port ranges and lists, IPv4/IPv6 prefixes and lists, service
// tags incl. AzureCloud, VirtualNetwork/Internet/AzureLoadBalancer), private
// endpoints in every PEC state (deleted connections too), servers with
// IPv4/IPv6 backends (weight 0 too), firewall ranges, the 0.0.0.0 rule, VNet
// rules and publicNetworkAccess both ways.
RandomPolicy random_policy(uint64_t seed);

// One VNet whose subnets and NICs use NSG "big" with `rules` custom rules;
// service tag "Big" has `tag_prefixes` prefixes and is used by some rules.
RandomPolicy scale_policy(int rules, int tag_prefixes, uint64_t seed);

// New-flow tuples biased towards what the policy names: NIC, private
// endpoint, public and backend IPs, subnet and tag members, edges (±1) of
// prefixes and ranges; ports 3306 and rule port edges. src and dst are of
// one family; protocols TCP, UDP, ICMP/ICMPv6, ESP, AH and others (ports 0
// for protocols without ports).
//
// By default every address is one a kernel routes as HostConfig says: never
// unspecified, loopback, link-local, multicast, 0.0.0.0/8 or 240.0.0.0/4.
// special_addresses = true lets those through (edges of 0.0.0.0/0, ::/64…):
// for decisions over tables, where no kernel routes.
class TupleGen {
public:
	TupleGen(const RandomPolicy &p, uint64_t seed, bool special_addresses = false);
	Tuple next();

private:
	struct Span {
		Addr lo, hi;
	};
	struct Pool {
		std::vector<Addr> points[2]; // [0] IPv4, [1] IPv6
		std::vector<Span> spans[2];
	};
	Addr addr(const Pool &pool, bool v4, bool edges);
	uint16_t port();
	uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }

	std::mt19937_64 rng_;
	bool special_;
	std::vector<std::string> vnets_;
	Pool all_;                                         // everything the policy names
	std::vector<Pool> local_;                          // per VNet: its NICs, endpoints, subnets
	std::vector<std::pair<std::string, Addr>> pe_ips_; // (vnet, ip)
	std::vector<Addr> pubs_;
	std::vector<uint16_t> ports_;
};

// Egress interface of dst under h's routes (longest prefix; families never
// mix), 0 when none: what the evaluator uses to pick the destination VNet.
uint32_t route_ifindex(const HostConfig &h, const Addr &dst);

} // namespace lg::testing
