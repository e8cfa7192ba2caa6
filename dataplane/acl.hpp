// NSG classification for the DPDK fast path with rte_acl (issue 5). The ACL
// rules of one NSG direction are derived from the same compiled interval
// tables the XDP program searches (abi/lg_tables.h), so both dataplanes
// classify one set of rules: rule r matches on field f exactly where the
// field's intervals carry bit r. docs/dpdk.md explains the mapping.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "compiler.hpp"
#include "result.hpp"

struct rte_acl_ctx;

namespace lg::dp {

// One rte_acl rule, fields in host order. Addresses are four 32-bit words
// with a prefix length each; ports are ranges.
struct AclRuleSpec {
	uint8_t proto = 0, proto_mask = 0; // mask 0: any protocol
	uint8_t portless = 0;              // 1: matches packets without ports
	uint8_t pad = 0;                   // named: a rule list's bytes key the classifier cache
	uint32_t src[4]{}, dst[4]{};
	uint8_t src_bits[4]{}, dst_bits[4]{};
	uint16_t sport_lo = 0, sport_hi = 0xffff, dport_lo = 0, dport_hi = 0xffff;
	uint32_t rule = 0; // index within the NSG direction (priority order)
};
static_assert(std::has_unique_object_representations_v<AclRuleSpec>, "no padding: the cache key is the bytes");

// The rules of nsg_dirs[dir]; an error when they exceed max_rules.
Result<std::vector<AclRuleSpec>> acl_rules(const CompiledTables &t, uint32_t dir, size_t max_rules = 4000000);

// The rules of the IPv4 context with ports (what IPv4 TCP/UDP flows are
// classified by) in dpdk-test-acl's IPv4 rule format, highest priority
// first: raw rte_acl measured on exactly the rules linkgate-dpdk builds.
std::string acl_rules_test_acl_v4(const std::vector<AclRuleSpec> &rules);

// What the classifier reads per packet (network order, as in a frame),
// built by acl_input(). An IPv4 tuple is its first 16 bytes, laid out as
// dpdk-test-acl's 5-tuple (the IPv4 contexts read nothing else); the IPv6
// contexts also read the addresses' first three words.
struct AclInput {
	uint8_t proto;
	uint8_t kind; // AclClassifier::kind_of: picks the context, not a field
	uint8_t pad[2];
	uint32_t src3; // the addresses' last words
	uint32_t dst3;
	uint16_t sport;
	uint16_t dport;
	uint32_t src[3]; // the addresses' first three words
	uint32_t dst[3];
};
static_assert(sizeof(AclInput) == 40);
void acl_input(AclInput *in, uint8_t proto, bool has_ports, uint16_t sport, uint16_t dport, const uint8_t src[16],
	       const uint8_t dst[16]);

class AclClassifier {
public:
	// Builds an rte_acl context (call off the worker lcores). *too_big is
	// set when rte_acl ran out of memory or past max_bytes (ENOMEM, ERANGE):
	// the rules are fine, the context does not fit. *for_now as well when
	// that was the context's own allocation (rte_acl_create), which a heap
	// with more room later may give.
	static Result<std::shared_ptr<AclClassifier>> build(const std::vector<AclRuleSpec> &rules,
							    size_t max_bytes = 0, bool *too_big = nullptr,
							    bool *for_now = nullptr);
	~AclClassifier();
	AclClassifier(const AclClassifier &) = delete;
	AclClassifier &operator=(const AclClassifier &) = delete;

	// First matching rule index, or UINT32_MAX (LG_NONE).
	uint32_t first(const AclInput &in) const;
	// A burst: results[i] as first() (num inputs).
	void classify(const AclInput *const *in, uint32_t *results, uint32_t num) const;
	// The same when every input is of kind `kind` (the caller knows: no check).
	void classify_kind(unsigned kind, const AclInput *const *in, uint32_t *results, uint32_t num) const;
	// 0 on success; -ENOTSUP when this CPU cannot run alg.
	int set_algorithm(int alg);
	size_t rules() const { return nrules_; }

	// Which context answers an input: 0 IPv4 with ports, 1 IPv4 portless,
	// 2 IPv6 with ports, 3 IPv6 portless (docs/dpdk.md, "Classification").
	// acl_input() sets it.
	static unsigned kind_of(const AclInput &in) { return in.kind & 3; }

private:
	static constexpr unsigned kKinds = 4;
	static constexpr uint32_t kMaxBurst = 64;
	AclClassifier() = default;
	// IPv4 contexts read the addresses' last word only (a trie a third the
	// depth), portless ones no ports; nullptr: no rule of that kind.
	rte_acl_ctx *ctx_[kKinds]{};
	size_t nrules_ = 0;
};

} // namespace lg::dp
