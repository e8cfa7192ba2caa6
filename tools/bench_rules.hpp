// Rule sets for linkgate-bench all: ClassBench filters (the files of
// tests/fixtures/classbench, format in its README) turned into NSG rules for
// linkgate, an nftables linear chain, an nftables interval set and the
// single-field rules xdp-filter can hold, so that every peer gets the same
// rules. Traffic of the benchmark is kept out of every rule (see
// TrafficBox): all of them walk the whole rule set, then the default allows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "random_policy.hpp"
#include "result.hpp"

namespace lg::bench {

struct CbRule {
	uint32_t src = 0, dst = 0; // host order
	int slen = 0, dlen = 0;
	uint16_t splo = 0, sphi = 65535, dplo = 0, dphi = 65535;
	int proto = -1; // -1: any
	bool allow = false;
	int line = 0;   // 1-based line of the file
};

// What the measured traffic may carry: no kept rule matches any packet in it.
struct TrafficBox {
	uint32_t src_lo = 0, src_hi = 0;
	std::vector<uint32_t> dsts;
	uint16_t sport_lo = 1024, sport_hi = 61023, dport = 3306;
};

struct RuleSet {
	std::vector<CbRule> rules;
	int skipped_match = 0;   // rules that matched the traffic (left out)
	int skipped_proto = 0;   // protocols an NSG cannot say (GRE, ...)
	std::string source;
};

// The first n usable rules of the file, in order; allow/deny mixed by a
// fixed hash of the position (ClassBench has no actions).
Result<RuleSet> load_classbench(const std::string &path, int n, const TrafficBox &box);

// NSG security rules, priority 100 + 3 * i, direction `direction`.
std::vector<SecurityRule> to_nsg_rules(const std::vector<CbRule> &rules, const std::string &direction,
				       const std::string &prefix);

// nft -f input: table inet <table>, forward chain (policy accept).
std::string nft_linear(const std::vector<CbRule> &rules, const std::string &table);
// Deny rules as elements of one concatenated interval set (pipapo); an
// element overlapping one already kept is left out (pipapo refuses
// overlaps). *kept gets the number of elements.
std::string nft_set(const std::vector<CbRule> &rules, const std::string &table, int *kept);
// xdp-filter arguments, one command each ("ip A -m src", "port P -m dst"):
// the single-field projections of deny rules it can hold without touching
// the traffic. xdp-filter ORs fields; it cannot express a 5-tuple rule.
std::vector<std::string> xdp_filter_cmds(const std::vector<CbRule> &rules, const TrafficBox &box);

// scale_policy(2, tag_prefixes, seed) with NSG "big" holding `rules` as
// Outbound rules; extra_nsgs more subnets 10.0.(2+k).0/24, each with its own
// NSG holding a slice of `others` (hundreds of NSGs).
testing::RandomPolicy classbench_policy(const std::vector<CbRule> &rules, int tag_prefixes, uint64_t seed,
					int extra_nsgs = 0, const std::vector<CbRule> &others = {});

std::string ip4(uint32_t a);

} // namespace lg::bench
