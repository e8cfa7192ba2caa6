// rte_acl classification (dataplane/acl.*) against the table walk the XDP
// program does (control/table_eval.cpp te_nsg_first): for random policies
// and random tuples (both families, with and without ports: each of the
// classifier's four contexts), every NSG direction, every classify
// algorithm this CPU runs, the same first rule.
#include <gtest/gtest.h>
#include <rte_acl.h>

#include <cstring>
#include <map>
#include <set>

#include "acl.hpp"
#include "random_policy.hpp"
#include "table_eval.hpp"

namespace lg {
namespace {

// Algorithms rte_acl can run here (set_algorithm refuses the others).
std::vector<int> algorithms(dp::AclClassifier &c)
{
	std::vector<int> out;
	for (int a : {RTE_ACL_CLASSIFY_SCALAR, RTE_ACL_CLASSIFY_SSE, RTE_ACL_CLASSIFY_AVX2,
		      RTE_ACL_CLASSIFY_AVX512X16, RTE_ACL_CLASSIFY_AVX512X32})
		if (c.set_algorithm(a) == 0)
			out.push_back(a);
	return out;
}

bool has_ports(uint8_t proto) { return proto == 6 || proto == 17; }

int compare(const testing::RandomPolicy &rp, uint64_t seed, int tuples, std::set<int> *algs_seen,
	    std::set<unsigned> *kinds_seen)
{
	auto t = compile(rp.state, rp.ifaces, 1);
	EXPECT_TRUE(t.ok()) << (t ? "" : t.error());
	if (!t)
		return 0;
	std::vector<std::shared_ptr<dp::AclClassifier>> acl;
	for (uint32_t d = 0; d < t->nsg_dirs.size(); d++) {
		auto rules = dp::acl_rules(*t, d);
		EXPECT_TRUE(rules.ok());
		auto c = dp::AclClassifier::build(*rules);
		EXPECT_TRUE(c.ok()) << (c ? "" : c.error());
		if (!c)
			return 0;
		acl.push_back(*c);
	}
	testing::TupleGen gen(rp, seed, true);
	int checked = 0;
	for (int i = 0; i < tuples; i++) {
		Tuple tu = gen.next();
		TePacket p{};
		std::memcpy(p.src, tu.src.b.data(), 16);
		std::memcpy(p.dst, tu.dst.b.data(), 16);
		p.proto = tu.proto;
		p.has_ports = has_ports(tu.proto);
		p.sport = tu.sport;
		p.dport = tu.dport;
		dp::AclInput in;
		dp::acl_input(&in, p.proto, p.has_ports, p.sport, p.dport, p.src, p.dst);
		kinds_seen->insert(dp::AclClassifier::kind_of(in));
		for (uint32_t d = 0; d < t->nsg_dirs.size(); d++) {
			uint32_t want = te_nsg_first(*t, d, &p);
			for (int a : algorithms(*acl[d])) {
				algs_seen->insert(a);
				acl[d]->set_algorithm(a);
				uint32_t got = acl[d]->first(in);
				if (got != want) {
					ADD_FAILURE() << "NSG dir " << d << " (" << t->nsg_names[t->nsg_dirs[d].nsg]
						      << ") alg " << a << ": " << tu.src.str() << " -> " << tu.dst.str()
						      << " proto " << int(tu.proto) << " " << tu.sport << ">" << tu.dport
						      << ": rte_acl rule " << got << ", table walk " << want;
					return checked;
				}
				checked++;
			}
		}
	}
	return checked;
}

TEST(DpdkAcl, MatchesTheTableWalkOnRandomPolicies)
{
	std::set<int> algs;
	std::set<unsigned> kinds;
	int checked = 0;
	for (uint64_t seed = 1; seed <= 12; seed++)
		checked += compare(testing::random_policy(seed), seed * 7, 300, &algs, &kinds);
	EXPECT_GT(checked, 5000);
	EXPECT_GE(algs.size(), 2u) << "scalar and at least one vector algorithm";
	// IPv4 and IPv6, with and without ports: each of the four contexts answered.
	EXPECT_EQ(kinds.size(), 4u);
	std::printf("%d classifications agreed over %zu algorithms\n", checked, algs.size());
}

// Lists crossed with lists (a 1,000-prefix tag against port lists) expand
// past rte_acl's budget: acl_rules() says so, and the engine then keeps the
// bit-vector walk for that direction (the DPDK differential suites cover it).
TEST(DpdkAcl, CrossedListsExceedTheBudget)
{
	auto rp = testing::scale_policy(10, 1000, 5);
	auto t = compile(rp.state, rp.ifaces, 1);
	ASSERT_TRUE(t.ok());
	size_t over = 0;
	for (uint32_t d = 0; d < t->nsg_dirs.size(); d++)
		over += !dp::acl_rules(*t, d, 200000).ok();
	EXPECT_GT(over, 0u);
}

TEST(DpdkAcl, BurstClassifyEqualsSingle)
{
	auto rp = testing::random_policy(3);
	auto t = compile(rp.state, rp.ifaces, 1);
	ASSERT_TRUE(t.ok());
	ASSERT_FALSE(t->nsg_dirs.empty());
	auto rules = dp::acl_rules(*t, 0);
	ASSERT_TRUE(rules.ok());
	auto c = dp::AclClassifier::build(*rules);
	ASSERT_TRUE(c.ok());
	testing::TupleGen gen(rp, 9, true);
	std::vector<dp::AclInput> in(64);
	std::vector<const dp::AclInput *> ptr;
	for (auto &x : in) {
		Tuple tu = gen.next();
		dp::acl_input(&x, tu.proto, has_ports(tu.proto), tu.sport, tu.dport, tu.src.b.data(), tu.dst.b.data());
		ptr.push_back(&x);
	}
	std::set<unsigned> kinds;
	for (auto &x : in)
		kinds.insert(dp::AclClassifier::kind_of(x));
	EXPECT_GE(kinds.size(), 2u) << "a burst of mixed kinds, split into one call per kind";
	std::vector<uint32_t> res(64);
	(*c)->classify(ptr.data(), res.data(), 64);
	for (size_t i = 0; i < 64; i++)
		EXPECT_EQ(res[i], (*c)->first(in[i]));
}

TEST(DpdkAcl, TooManyRulesIsAnError)
{
	auto rp = testing::scale_policy(100, 1000, 2);
	auto t = compile(rp.state, rp.ifaces, 1);
	ASSERT_TRUE(t.ok());
	auto r = dp::acl_rules(*t, 0, 10);
	EXPECT_FALSE(r.ok());
}

} // namespace
} // namespace lg
