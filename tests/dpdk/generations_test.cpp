// Generations in linkgate-dpdk's engine (docs/dpdk.md, "Generations, workers
// and flows"): which publishes build rte_acl contexts, flows across
// generation changes (SPEC §4), and two worker threads deciding frames while
// the control thread publishes: every frame is one generation's, and once
// publish() returns every worker's next frame uses the new one. Last, one
// worker decides the replies of flows another worker is still making.
#include <gtest/gtest.h>
#include <pthread.h>
#include <rte_pause.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include "compiler.hpp"
#include "dpdk_scenario.hpp"
#include <rte_malloc.h>

#include "engine.hpp"
#include "hex.hpp"

// Allocation failure, injected: while t_fail_in >= 0 on a thread, that
// thread's operator new counts it down and throws std::bad_alloc at 0, once.
namespace {
thread_local long t_fail_in = -1;
}

void *operator new(std::size_t n)
{
	if (t_fail_in >= 0 && t_fail_in-- == 0)
		throw std::bad_alloc();
	if (void *p = std::malloc(n ? n : 1))
		return p;
	throw std::bad_alloc();
}
// GCC sees free() of what its inlined operator new returned; it is malloc's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace lg {
namespace {

using namespace dpdktest;

const Mac kMac0{0x02, 0, 0, 0, 0, 1}, kMac1{0x02, 0, 0, 0, 0, 2};

struct Rig {
	HostConfig host = scenario_host(kMac0, kMac1);
	std::unique_ptr<dp::Engine> eng;
	uint64_t gen = 0;

	explicit Rig(unsigned workers, size_t flows = 4096, size_t acl_max_bytes = 0)
	{
		dp::EngineConfig cfg;
		cfg.host = host;
		cfg.workers = workers;
		cfg.timeouts.flow_capacity = flows;
		cfg.acl_max_bytes = acl_max_bytes;
		auto e = dp::Engine::create(cfg);
		EXPECT_TRUE(e) << e.error();
		if (e)
			eng = std::move(*e);
	}
	CompiledTables tables(const State &s, uint64_t g)
	{
		std::vector<InterfaceBinding> b = {{1, "client-vnet", kMac0}, {2, "", kMac1}};
		auto t = compile(s, b, g);
		EXPECT_TRUE(t) << t.error();
		return t ? *t : CompiledTables{};
	}
	void publish(const State &s)
	{
		auto t = tables(s, ++gen);
		auto st = eng->publish(t);
		ASSERT_TRUE(st.ok()) << st.error();
		ASSERT_EQ(eng->generation(), gen);
	}
};

TEST(DpdkGenerations, AclBuildsOnlyForChangedNsgDirections)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	r.publish(scenario_state());
	uint64_t b0 = r.eng->acl_builds();
	EXPECT_GE(b0, 2u) << "clients-nsg has an inbound and an outbound direction";
	EXPECT_EQ(r.eng->walk_directions(), 0u);

	Knobs k;
	k.pec = "Rejected";
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b0) << "a PEC state change built an rte_acl context";
	k.fw_end = "10.1.1.5";
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b0) << "a firewall range change built an rte_acl context";
	k.east_backend = "192.168.20.12";
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b0) << "a backend change built an rte_acl context";

	k.web_port = "8081"; // an Outbound rule
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b0 + 1) << "an Outbound rule change builds the outbound direction only";
	k.inbound_extra = "5000"; // a new Inbound rule
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b0 + 2) << "an Inbound rule added builds the inbound direction only";
	k.inbound_extra = "";
	k.web_port = "8080"; // back to the first generation's rules: both directions
	r.publish(scenario_state(k));
	uint64_t b1 = r.eng->acl_builds();
	EXPECT_LE(b1, b0 + 4);
	// Republishing the same rules (generation number only) builds nothing.
	r.publish(scenario_state(k));
	EXPECT_EQ(r.eng->acl_builds(), b1);
}

// One frame through the engine and the evaluator (same generation history):
// they must agree; returns the engine's verdict.
struct Both {
	Rig &rig;
	Evaluator ev;
	explicit Both(Rig &r) : rig(r), ev(r.host) {}
	void commit(const State &s)
	{
		ASSERT_TRUE(ev.commit(s).ok());
		rig.gen = ev.generation() - 1;
		rig.publish(s);
	}
	dp::Verdict run(std::vector<uint8_t> f, uint32_t ifindex, const char *what)
	{
		Decision d = ev.process(f, ifindex, dp::Engine::clock_ns());
		dp::Verdict v = rig.eng->decide(ifindex, f.data(), uint32_t(f.size()), dp::Engine::clock_ns());
		rig.eng->quiescent(0);
		EXPECT_STREQ(verdict_name(v.verdict), verdict_name(d.verdict)) << what;
		EXPECT_STREQ(reason_name(v.reason), reason_name(d.verdict == LG_VERDICT_DROP ? d.reason : LG_REASON_NONE)) << what;
		if (d.verdict == LG_VERDICT_FORWARD && v.verdict == d.verdict) {
			EXPECT_EQ(f, d.frame) << what;
			EXPECT_EQ(v.egress, d.egress_ifindex) << what;
		}
		return v;
	}
};

// An rte_acl context that does not fit (here: a 4 KiB bound; on a host, the
// EAL's memory running out under a rule set of a costly shape) is no failed
// publish: the direction walks, as one over the rule budget does, and
// decides as the evaluator does.
TEST(DpdkGenerations, AContextThatDoesNotFitWalks)
{
	{
		Rig r(1, 4096, 4096);
		ASSERT_TRUE(r.eng);
		r.eng->online(0);
		Both b(r);
		b.commit(scenario_state());
		EXPECT_GE(r.eng->walk_directions(), 2u);
		EXPECT_EQ(r.eng->acl_builds(), 0u);
		auto c = [](const char *dst, uint16_t dport) {
			return PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", dst).tcp(41000, dport, kTcpSyn, 10).build();
		};
		EXPECT_EQ(b.run(c("10.1.1.100", 3306), 1, "allow-pe").verdict, LG_VERDICT_FORWARD);
		dp::Verdict v = b.run(c("192.168.20.11", 8080), 1, "web (Deny)");
		EXPECT_EQ(v.verdict, LG_VERDICT_DROP);
		EXPECT_EQ(v.reason, LG_REASON_NSG_DENY);
		Knobs k;
		k.web_port = "8081"; // the walk follows a rule change
		b.commit(scenario_state(k));
		EXPECT_EQ(b.run(c("192.168.20.11", 8081), 1, "web (Deny) on its new port").reason, LG_REASON_NSG_DENY);
		r.eng->offline(0);
	} // one engine per process

	// Without the bound the same rules build.
	Rig fits(1);
	ASSERT_TRUE(fits.eng);
	fits.publish(scenario_state());
	EXPECT_EQ(fits.eng->walk_directions(), 0u);
	EXPECT_GE(fits.eng->acl_builds(), 2u);
}

// The EAL's heap out of room already when a context is made (rte_acl_create,
// before any build): the directions walk, as when a build runs out.
TEST(DpdkGenerations, AContextWithoutMemoryWalks)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	r.eng->online(0);
	Both b(r);
	std::vector<void *> filler;
	for (size_t sz : {size_t(1) << 20, size_t(4096), size_t(64)})
		while (void *p = rte_malloc(nullptr, sz, 0))
			filler.push_back(p);
	ASSERT_FALSE(filler.empty());
	uint64_t builds = r.eng->acl_builds();
	b.commit(scenario_state());
	for (void *p : filler)
		rte_free(p);
	EXPECT_GE(r.eng->walk_directions(), 2u);
	EXPECT_EQ(r.eng->acl_builds(), builds);
	auto c = [](const char *dst, uint16_t dport) {
		return PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", dst).tcp(41000, dport, kTcpSyn, 10).build();
	};
	EXPECT_EQ(b.run(c("10.1.1.100", 3306), 1, "allow-pe").verdict, LG_VERDICT_FORWARD);
	EXPECT_EQ(b.run(c("192.168.20.11", 8080), 1, "web (Deny)").reason, LG_REASON_NSG_DENY);
	// With room again, the next publish builds the contexts: a heap short
	// for a moment is not remembered as rules that do not fit.
	b.commit(scenario_state());
	EXPECT_EQ(r.eng->walk_directions(), 0u);
	EXPECT_GT(r.eng->acl_builds(), builds);
	EXPECT_EQ(b.run(c("192.168.20.11", 8080), 1, "web (Deny), classified").reason, LG_REASON_NSG_DENY);
	r.eng->offline(0);
}

// Counters by name cover the live generation's names: a rule renamed at
// each publish does not pile its old names into every counters reply.
TEST(DpdkGenerations, CountersNameTheLiveRulesOnly)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	for (int i = 1; i <= 20; i++) {
		State s = scenario_state();
		s.networkSecurityGroups[0].securityRules[0].name = "renamed-" + std::to_string(i);
		r.publish(s);
		ASSERT_FALSE(::testing::Test::HasFatalFailure()) << i;
	}
	dp::EngineCounters c = r.eng->counters();
	std::set<std::string> live(r.eng->live().rule_names.begin(), r.eng->live().rule_names.end());
	for (auto &[name, n] : c.rules)
		EXPECT_TRUE(live.count(name)) << name << " is no rule of the live generation";
	EXPECT_EQ(c.rules.size(), live.size());
	std::string nsg = scenario_state().networkSecurityGroups[0].name;
	EXPECT_TRUE(c.rules.count(nsg + "/renamed-20"));
	EXPECT_FALSE(c.rules.count(nsg + "/renamed-19"));
}

// A flow lives while either copy does (the fast path refreshes only the
// copy it found): reclaim keeps a flow whose reply copy has expired while
// its original copy lives, and the reply direction still finds it.
TEST(DpdkGenerations, ReclaimKeepsAFlowWhileEitherCopyLives)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	r.eng->online(0);
	r.publish(scenario_state());
	auto run = [&](std::vector<uint8_t> f, uint32_t port, uint64_t t) {
		dp::Verdict v = r.eng->decide(port, f.data(), uint32_t(f.size()), t);
		r.eng->quiescent(0);
		return v;
	};
	auto c = [] { return PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", "10.1.1.100"); };
	auto s = [] { return PacketBuilder().eth(kGwMac, kMac1).ipv4("192.168.20.11", "10.1.1.10"); };
	constexpr uint64_t kS = 1000000000ull;
	uint64_t t0 = dp::Engine::clock_ns();
	ASSERT_EQ(run(c().tcp(43000, 3306, kTcpSyn, 10).build(), 1, t0).verdict, LG_VERDICT_FORWARD);
	ASSERT_EQ(run(s().tcp(3306, 43000, kTcpSyn | kTcpAck, 50, 11).build(), 2, t0).verdict, LG_VERDICT_FORWARD);
	ASSERT_EQ(run(c().tcp(43000, 3306, kTcpAck, 11, 51).build(), 1, t0).verdict, LG_VERDICT_FORWARD);
	// 200 s later the client sends (the fast path: its copy alone is
	// refreshed); at 300 s the reply copy's 240 s have passed.
	uint64_t fast = lg_host_fast_packets();
	ASSERT_EQ(run(c().tcp(43000, 3306, kTcpAck | kTcpPsh, 11, 51).payload("q").build(), 1, t0 + 200 * kS).verdict,
		  LG_VERDICT_FORWARD);
	EXPECT_GT(lg_host_fast_packets(), fast) << "the client's frame took the fast path";
	EXPECT_EQ(r.eng->reclaim(t0 + 300 * kS), 0u) << "a flow whose original copy lives was reclaimed";
	EXPECT_EQ(r.eng->flow_entries(), 2u);
	EXPECT_EQ(run(s().tcp(3306, 43000, kTcpAck, 51, 12).build(), 2, t0 + 300 * kS).verdict, LG_VERDICT_FORWARD)
		<< "the server's reply after the sweep";
	// Both copies past their time: the flow goes.
	EXPECT_EQ(r.eng->reclaim(t0 + 1000 * kS), 1u);
	EXPECT_EQ(r.eng->flow_entries(), 0u);
	r.eng->offline(0);
}

// An engine destroyed while flows it removed on the control thread still
// wait for a grace period (a worker online, no quiescent state since) frees
// them with its hashes. It left their defer queues behind, and the next
// engine in the process could not make its own (rte_hash_rcu_qsbr_add:
// "File exists").
TEST(DpdkGenerations, AnEngineDestroyedWithDeletionsPendingLeavesNothingBehind)
{
	constexpr uint64_t kS = 1000000000ull;
	for (int round = 0; round < 3; round++) {
		SCOPED_TRACE("engine " + std::to_string(round));
		Rig r(1);
		ASSERT_TRUE(r.eng);
		r.eng->online(0);
		r.publish(scenario_state());
		uint64_t t0 = dp::Engine::clock_ns();
		auto f = PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", "10.1.1.100").tcp(43001, 3306, kTcpSyn, 10).build();
		ASSERT_EQ(r.eng->decide(1, f.data(), uint32_t(f.size()), t0).verdict, LG_VERDICT_FORWARD);
		ASSERT_EQ(r.eng->reclaim(t0 + 1000 * kS), 1u);
		EXPECT_EQ(r.eng->flow_entries(), 0u);
		// Destroyed now: no quiescent state, no offline().
	}
}

TEST(DpdkGenerations, FlowsSurviveUnrelatedPublishAndDieWithTheirPec)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	r.eng->online(0);
	Both b(r);
	b.commit(scenario_state());
	auto c = [](const char *src, const char *dst) { return PacketBuilder().eth(kClientMac, kMac0).ipv4(src, dst); };
	auto s = [](const char *src, const char *dst) { return PacketBuilder().eth(kGwMac, kMac1).ipv4(src, dst); };
	EXPECT_EQ(b.run(c("10.1.1.10", "10.1.1.100").tcp(41000, 3306, kTcpSyn, 10).build(), 1, "SYN").verdict, LG_VERDICT_FORWARD);
	EXPECT_EQ(b.run(s("192.168.20.11", "10.1.1.10").tcp(3306, 41000, kTcpSyn | kTcpAck, 50, 11).build(), 2, "SYN-ACK").verdict,
		  LG_VERDICT_FORWARD);
	EXPECT_EQ(b.run(c("10.1.1.10", "10.1.1.100").tcp(41000, 3306, kTcpAck, 11, 51).build(), 1, "ACK").verdict, LG_VERDICT_FORWARD);
	ASSERT_EQ(r.eng->counters().flows, 1u);
	ASSERT_EQ(r.eng->flows().size(), 1u);
	uint64_t flow_gen = r.eng->flows()[0].generation;

	// Unrelated changes: a firewall range and the NSG's inbound rules.
	Knobs k;
	k.fw_end = "10.1.1.5";
	k.inbound_extra = "5000";
	b.commit(scenario_state(k));
	EXPECT_EQ(r.eng->counters().flows, 1u) << "a publish lost the flow";
	EXPECT_EQ(b.run(c("10.1.1.10", "10.1.1.100").tcp(41000, 3306, kTcpAck | kTcpPsh, 11, 51).payload("q").build(), 1, "data after an unrelated publish").verdict,
		  LG_VERDICT_FORWARD);
	EXPECT_EQ(b.run(s("192.168.20.11", "10.1.1.10").tcp(3306, 41000, kTcpAck, 51, 12).build(), 2, "reply after an unrelated publish").verdict,
		  LG_VERDICT_FORWARD);
	EXPECT_EQ(r.eng->counters().flows, 1u);
	ASSERT_EQ(r.eng->flows().size(), 1u);
	EXPECT_GT(r.eng->flows()[0].generation, flow_gen) << "the flow was re-checked against the new generation";

	// The PEC is rejected: the flow's next packet is dropped and the flow goes.
	k.pec = "Rejected";
	b.commit(scenario_state(k));
	EXPECT_EQ(r.eng->counters().flows, 1u) << "flows go at their next packet, not at the publish";
	dp::Verdict v = b.run(c("10.1.1.10", "10.1.1.100").tcp(41000, 3306, kTcpAck, 12, 52).build(), 1, "after the PEC was rejected");
	EXPECT_EQ(v.verdict, LG_VERDICT_DROP);
	EXPECT_EQ(v.reason, LG_REASON_PEC_REJECTED);
	EXPECT_EQ(r.eng->counters().flows, 0u);
	EXPECT_EQ(r.eng->flow_entries(), 0u) << "both keys of the flow are gone";
	EXPECT_EQ(b.ev.flow_count(), 0u);
	r.eng->offline(0);
}

// A restarted linkgated without XDP pins numbers generations from 1 again
// and publishes to the linkgate-dpdk that kept running. A flow stamped N by
// the old agent must still be re-checked when the new agent's generation N
// arrives with other tables (here: its PEC rejected).
TEST(DpdkGenerations, GenerationNumbersStartingOverStillRecheckFlows)
{
	Rig r(1);
	ASSERT_TRUE(r.eng);
	r.eng->online(0);
	auto c = [](uint16_t sport, uint8_t flags) {
		return PacketBuilder().eth(kClientMac, kMac0).ipv4("10.1.1.10", "10.1.1.100").tcp(sport, 3306, flags, 10, 51).build();
	};
	auto decide = [&](std::vector<uint8_t> f) {
		dp::Verdict v = r.eng->decide(1, f.data(), uint32_t(f.size()), dp::Engine::clock_ns());
		r.eng->quiescent(0);
		return v;
	};
	auto pub = [&](const State &s, uint64_t g) {
		auto st = r.eng->publish(r.tables(s, g));
		ASSERT_TRUE(st.ok()) << st.error();
	};
	pub(scenario_state(), 1);
	pub(scenario_state(), 2); // the old agent's generation 2
	ASSERT_EQ(decide(c(42000, kTcpSyn)).verdict, LG_VERDICT_FORWARD);
	ASSERT_EQ(r.eng->counters().flows, 1u);
	EXPECT_EQ(r.eng->flows()[0].generation, 2u) << "flows() reports the agent's generation numbers";
	pub(scenario_state(), 1); // the new agent's first generation: same state
	Knobs k;
	k.pec = "Rejected";
	pub(scenario_state(k), 2); // its second: the PEC rejected
	dp::Verdict v = decide(c(42000, kTcpAck));
	EXPECT_EQ(v.verdict, LG_VERDICT_DROP) << "a flow stamped 2 by the old agent skipped the re-check of the new generation 2";
	EXPECT_EQ(v.reason, LG_REASON_PEC_REJECTED);
	EXPECT_EQ(r.eng->counters().flows, 0u);
	r.eng->offline(0);
}

// Even generations: NSG rule "web" allows TCP 3306 and westus-db's firewall
// admits the clients; odd ones: "web" denies TCP 3306 and the firewall
// admits 10.1.1.0-10.1.1.5 only, pe-east's PEC is Rejected. A SYN from
// 10.1.1.10+ to westus-db's public IP is forwarded (even) or dropped nsg-deny
// (odd); a mix of an even NSG with an odd firewall would drop it
// firewall-no-match. A SYN to pe-east is forwarded or dropped pec-rejected.
State alternating(uint64_t g)
{
	Knobs k;
	k.web_port = "3306";
	k.web_access = g % 2 ? "Deny" : "Allow";
	k.fw_end = g % 2 ? "10.1.1.5" : "10.1.1.255";
	k.pec = g % 2 ? "Rejected" : "Approved";
	return scenario_state(k);
}

TEST(DpdkGenerations, ConcurrentWorkersSeeWholeGenerations)
{
	constexpr uint64_t kPublishes = 40;
	// Room for every flow the workers make while a publish (rte_acl builds
	// included) runs on a loaded machine: a full table would drop ct-full.
	Rig r(2, 1u << 18);
	ASSERT_TRUE(r.eng);
	std::vector<CompiledTables> gens(kPublishes + 2);
	for (uint64_t g = 1; g < gens.size(); g++)
		gens[g] = r.tables(alternating(g), g);
	ASSERT_TRUE(r.eng->publish(gens[1]).ok());

	std::atomic<uint64_t> returned{1};   // the last generation whose publish() returned
	std::atomic<bool> publishing{false}, stop{false};
	struct alignas(64) W {
		std::atomic<uint64_t> confirmed{0}, frames{0}, during_publish{0}, mixed{0}, stale{0};
		std::string first_error;
	};
	W w[2];
	auto worker = [&](unsigned wid) {
		W &me = w[wid];
		r.eng->online(wid);
		uint64_t last = 0, i = 0;
		while (!stop.load(std::memory_order_acquire)) {
			uint64_t seen = returned.load(std::memory_order_acquire);
			bool pub = publishing.load(std::memory_order_acquire);
			// A new flow every frame: source 10.1.1.10-129 (worker 0) or
			// 10.1.1.130-249 (worker 1), every source port.
			uint64_t n = i++;
			std::string src = "10.1.1." + std::to_string(10 + wid * 120 + (n / 60000) % 120);
			uint16_t sport = uint16_t(1024 + n % 60000);
			bool to_pe = n % 2;
			auto f = PacketBuilder()
					 .eth(kClientMac, kMac0)
					 .ipv4(src, to_pe ? "10.1.1.100" : "20.10.1.5")
					 .tcp(sport, 3306, kTcpSyn)
					 .build();
			dp::Verdict v = r.eng->decide(1, f.data(), uint32_t(f.size()), dp::Engine::clock_ns());
			r.eng->quiescent(wid);
			int parity = v.verdict == LG_VERDICT_FORWARD ? 0
				     : v.verdict == LG_VERDICT_DROP && v.reason == (to_pe ? LG_REASON_PEC_REJECTED : LG_REASON_NSG_DENY) ? 1
																 : -1;
			if (parity < 0 && me.mixed++ == 0)
				me.first_error = std::string(to_pe ? "PE" : "public endpoint") + " frame: " + verdict_name(v.verdict) + "/" +
						 reason_name(v.reason) + " (generation " + std::to_string(seen) + " returned)";
			if (seen != last) {
				// The first frame begun after publish(seen) returned.
				if (parity != int(seen % 2) && me.stale++ == 0)
					me.first_error = "first frame after generation " + std::to_string(seen) + " was published: " +
							 verdict_name(v.verdict) + "/" + reason_name(v.reason);
				last = seen;
				me.confirmed.store(seen, std::memory_order_release);
			}
			if (pub)
				me.during_publish++;
			me.frames++;
		}
		r.eng->offline(wid);
	};
	std::thread t0(worker, 0), t1(worker, 1);
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	bool timed_out = false;
	// Both workers online and deciding with generation 1 first.
	while (w[0].confirmed.load(std::memory_order_acquire) < 1 || w[1].confirmed.load(std::memory_order_acquire) < 1) {
		if (std::chrono::steady_clock::now() > deadline) {
			timed_out = true;
			break;
		}
		std::this_thread::yield();
	}
	std::string publish_error;
	for (uint64_t g = 2; g <= kPublishes + 1 && !timed_out; g++) {
		publishing.store(true, std::memory_order_release);
		auto st = r.eng->publish(gens[g]);
		publishing.store(false, std::memory_order_release);
		// No ASSERT here: returning with t0/t1 joinable would terminate the binary.
		if (!st.ok()) {
			publish_error = "publish of generation " + std::to_string(g) + ": " + st.error();
			break;
		}
		returned.store(g, std::memory_order_release);
		// Both workers decide a frame with generation g before the next publish.
		while (w[0].confirmed.load(std::memory_order_acquire) < g || w[1].confirmed.load(std::memory_order_acquire) < g) {
			if (std::chrono::steady_clock::now() > deadline) {
				timed_out = true;
				break;
			}
			std::this_thread::yield();
		}
		// Keep the flow table from filling: every flow is new and unused again.
		r.eng->reclaim(~0ull);
	}
	stop.store(true, std::memory_order_release);
	t0.join();
	t1.join();
	ASSERT_EQ(publish_error, "");
	EXPECT_FALSE(timed_out) << "a worker did not decide a frame within 60 s";
	for (int i = 0; i < 2; i++) {
		SCOPED_TRACE("worker " + std::to_string(i));
		EXPECT_EQ(w[i].mixed.load(), 0u) << w[i].first_error;
		EXPECT_EQ(w[i].stale.load(), 0u) << w[i].first_error;
		EXPECT_GE(w[i].confirmed.load(), kPublishes + 1);
		EXPECT_GT(w[i].frames.load(), 2 * kPublishes);
		std::printf("worker %d: %llu frames, %llu begun while a publish was in progress\n", i,
			    (unsigned long long)w[i].frames.load(), (unsigned long long)w[i].during_publish.load());
	}
	EXPECT_GT(w[0].during_publish.load() + w[1].during_publish.load(), 0u)
		<< "no frame was decided while a publish was in progress: the test proved nothing";
	EXPECT_EQ(r.eng->generation(), kPublishes + 1);
}

// A publish that runs out of memory at any of its allocations answers an
// error and changes nothing: the workers decide with the live generation,
// the engine reports it, and the next publish goes through whole. The
// allocation that fails walks every one of a publish's, in turn.
TEST(DpdkGenerations, APublishThatRunsOutOfMemoryChangesNothing)
{
	Rig r(1, 1u << 16);
	ASSERT_TRUE(r.eng);
	r.eng->online(0);
	uint16_t sport = 1024;
	// SYNs to pe-east and to westus-db's public IP: forwarded in even
	// generations, dropped pec-rejected and nsg-deny in odd ones (alternating()).
	auto parity = [&]() {
		int p[2];
		for (int pe = 0; pe < 2; pe++) {
			auto f = PacketBuilder()
					 .eth(kClientMac, kMac0)
					 .ipv4("10.1.1.10", pe ? "10.1.1.100" : "20.10.1.5")
					 .tcp(sport++, 3306, kTcpSyn)
					 .build();
			dp::Verdict v = r.eng->decide(1, f.data(), uint32_t(f.size()), dp::Engine::clock_ns());
			r.eng->quiescent(0);
			p[pe] = v.verdict == LG_VERDICT_FORWARD ? 0
				: v.verdict == LG_VERDICT_DROP && v.reason == (pe ? LG_REASON_PEC_REJECTED : LG_REASON_NSG_DENY) ? 1
																: -1;
		}
		return p[0] == p[1] ? p[0] : -1;
	};
	ASSERT_TRUE(r.eng->publish(r.tables(alternating(2), 1)).ok());
	ASSERT_EQ(parity(), 0);
	// Generation 2: the NSG rule's access, the firewall and the PEC change,
	// and an Inbound rule is added (an rte_acl build on the way; an access
	// alone is not the classifier's).
	State odd = alternating(1);
	odd.networkSecurityGroups[0].securityRules.push_back(
		testing::make_rule("in-extra", 300, "Inbound", "Allow", "Tcp", "*", "*", "5000"));
	CompiledTables next = r.tables(odd, 2);
	uint64_t builds = r.eng->acl_builds();
	long failures = 0;
	for (long k = 0;; k++) {
		t_fail_in = k;
		// As linkgate-dpdk's control channel: a throw is an error answered.
		Status st = [&]() -> Status {
			try {
				return r.eng->publish(next);
			} catch (const std::bad_alloc &) {
				return err("threw std::bad_alloc");
			}
		}();
		bool injected = t_fail_in < 0;
		t_fail_in = -1;
		if (!injected) {
			ASSERT_TRUE(st.ok()) << st.error();
			break;
		}
		failures++;
		ASSERT_FALSE(st.ok()) << "allocation " << k << " failed, and the publish said it went through";
		ASSERT_EQ(r.eng->generation(), 1u) << "allocation " << k << ": " << st.error();
		ASSERT_EQ(r.eng->acl_builds(), builds) << "allocation " << k << ": a refused generation counted its rte_acl builds";
		ASSERT_EQ(parity(), 0) << "allocation " << k << " failed, and the workers use another generation: "
				       << st.error();
	}
	std::printf("%ld allocations of a publish failed in turn\n", failures);
	EXPECT_GT(failures, 10);
	EXPECT_EQ(r.eng->generation(), 2u);
	EXPECT_EQ(parity(), 1);
	EXPECT_GT(r.eng->acl_builds(), builds);
	// The slots are still in order: two more publishes, each whole.
	for (uint64_t g = 3; g <= 4; g++) {
		ASSERT_TRUE(r.eng->publish(r.tables(alternating(g), g)).ok());
		EXPECT_EQ(r.eng->generation(), g);
		EXPECT_EQ(parity(), int(g % 2));
	}
	r.eng->offline(0);
}

// Replies decided on another worker than their flow's first packet, while
// that worker goes on making flows (RSS sends a reply to the queue its own
// tuple hashes to; one flow table shared by every worker, docs/decisions.md).
// Worker 0 decides bursts of clients' SYNs to pe-east (DNAT) together with
// the ACKs of flows whose SYN-ACK worker 1 has decided; worker 1 decides the
// backend's SYN-ACKs (translated back) of the flows worker 0 has made. Each
// frame must be what the evaluator gives for the same order within its flow
// (SYN, SYN-ACK, ACK): verdict, reason, egress and bytes.
TEST(DpdkWorkers, RepliesOnAnotherWorkerMatchTheEvaluator)
{
	constexpr uint32_t kFlows = 20000, kChunk = 32;
	Rig r(2, 1u << 16);
	ASSERT_TRUE(r.eng);
	Evaluator ev(r.host);
	State s = scenario_state();
	ASSERT_TRUE(ev.commit(s).ok());
	r.gen = ev.generation() - 1;
	r.publish(s);

	// frames[k][i]: flow i's SYN (k 0, port 0), SYN-ACK (1, port 1), ACK (2, port 0).
	std::vector<std::vector<uint8_t>> frames[3], want[3];
	std::vector<Decision> expect[3];
	const uint32_t ifindex[3] = {1, 2, 1};
	uint64_t now = dp::Engine::clock_ns();
	for (uint32_t i = 0; i < kFlows; i++) {
		std::string src = "10.1.1." + std::to_string(10 + i % 240);
		uint16_t sport = uint16_t(1024 + i / 240);
		frames[0].push_back(PacketBuilder().eth(kClientMac, kMac0).ipv4(src, "10.1.1.100").tcp(sport, 3306, kTcpSyn, 100).build());
		frames[1].push_back(PacketBuilder()
					    .eth(kGwMac, kMac1)
					    .ipv4("192.168.20.11", src)
					    .tcp(3306, sport, kTcpSyn | kTcpAck, 900, 101)
					    .build());
		frames[2].push_back(PacketBuilder()
					    .eth(kClientMac, kMac0)
					    .ipv4(src, "10.1.1.100")
					    .tcp(sport, 3306, kTcpAck, 101, 901)
					    .payload("q")
					    .build());
		for (int k = 0; k < 3; k++) {
			expect[k].push_back(ev.process(frames[k][i], ifindex[k], now));
			ASSERT_EQ(expect[k][i].verdict, LG_VERDICT_FORWARD) << "flow " << i << " frame " << k;
		}
	}
	ASSERT_EQ(ev.flow_count(), size_t(kFlows));

	struct Got {
		lg_verdict verdict = LG_VERDICT_DROP;
		lg_reason reason = LG_REASON_NONE;
		uint32_t egress = 0;
	};
	std::vector<Got> got[3];
	for (auto &g : got)
		g.resize(kFlows);
	std::atomic<uint32_t> syned{0}, synacked{0};
	std::atomic<bool> timed_out{false};
	uint64_t mixed = 0; // worker 0's bursts with SYNs and ACKs both
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	auto late = [&] {
		if (std::chrono::steady_clock::now() < deadline)
			return false;
		timed_out.store(true);
		return true;
	};
	auto run = [&](unsigned wid, uint32_t port_ifindex, std::vector<std::pair<int, uint32_t>> &burst) {
		uint8_t *data[2 * kChunk];
		uint32_t len[2 * kChunk];
		dp::Verdict out[2 * kChunk];
		for (size_t j = 0; j < burst.size(); j++) {
			auto &f = frames[burst[j].first][burst[j].second];
			data[j] = f.data();
			len[j] = uint32_t(f.size());
		}
		r.eng->decide_frames(port_ifindex, data, len, unsigned(burst.size()), out, dp::Engine::clock_ns());
		r.eng->quiescent(wid);
		for (size_t j = 0; j < burst.size(); j++)
			got[burst[j].first][burst[j].second] = Got{out[j].verdict, out[j].reason, out[j].egress};
	};
	std::thread w0([&] {
		pin_to_cpu(0); // one CPU each (the EAL pinned the main thread, and threads inherit it)
		r.eng->online(0);
		uint32_t next_syn = 0, next_ack = 0;
		std::vector<std::pair<int, uint32_t>> burst;
		while (next_ack < kFlows && !timed_out.load() && !late()) {
			burst.clear();
			uint32_t sa = synacked.load(std::memory_order_acquire);
			// The last SYNs wait for ACKs to go with them, so that one burst
			// has both whatever the scheduling (worker 1 stuck: the deadline).
			bool hold = kFlows - next_syn <= kChunk && sa == next_ack;
			for (; !hold && burst.size() < kChunk && next_syn < kFlows; next_syn++)
				burst.push_back({0, next_syn});
			bool syns = !burst.empty();
			for (; burst.size() < 2 * kChunk && next_ack < sa; next_ack++)
				burst.push_back({2, next_ack});
			if (burst.empty()) {
				r.eng->quiescent(0);
				rte_pause();
				continue;
			}
			mixed += syns && burst.back().first == 2;
			run(0, 1, burst);
			syned.store(next_syn, std::memory_order_release);
		}
		r.eng->offline(0);
	});
	std::thread w1([&] {
		pin_to_cpu(1);
		r.eng->online(1);
		uint32_t next = 0;
		std::vector<std::pair<int, uint32_t>> burst;
		while (next < kFlows && !timed_out.load() && !late()) {
			uint32_t sy = syned.load(std::memory_order_acquire);
			burst.clear();
			for (; burst.size() < kChunk && next < sy; next++)
				burst.push_back({1, next});
			if (burst.empty()) {
				r.eng->quiescent(1);
				rte_pause();
				continue;
			}
			run(1, 2, burst);
			synacked.store(next, std::memory_order_release);
		}
		r.eng->offline(1);
	});
	w0.join();
	w1.join();
	ASSERT_FALSE(timed_out.load()) << "the workers did not decide every frame within 60 s";
	static const char *kWhat[3] = {"SYN", "SYN-ACK", "ACK"};
	uint32_t wrong = 0;
	for (int k = 0; k < 3; k++)
		for (uint32_t i = 0; i < kFlows; i++) {
			const Decision &d = expect[k][i];
			const Got &g = got[k][i];
			bool ok = g.verdict == d.verdict && g.reason == LG_REASON_NONE && g.egress == d.egress_ifindex &&
				  frames[k][i] == d.frame;
			if (!ok && wrong++ < 3)
				ADD_FAILURE() << kWhat[k] << " of flow " << i << ": " << verdict_name(g.verdict) << "/"
					      << reason_name(g.reason) << " out of " << g.egress << ", the evaluator "
					      << verdict_name(d.verdict) << " out of " << d.egress_ifindex << "\n  got  "
					      << lg::testing::hex(frames[k][i]) << "\n  want " << lg::testing::hex(d.frame);
		}
	EXPECT_EQ(wrong, 0u) << "frames that differ from the evaluator's";
	EXPECT_EQ(r.eng->flow_entries(), 2 * ev.flow_count());
	// Worker 1 decided SYN-ACKs while worker 0 was still making flows.
	EXPECT_GT(mixed, 0u) << "the two workers never ran at once: the test proved nothing";
}

} // namespace
} // namespace lg
