// linkgate-dpdk's poll loop (dataplane/pipeline.*) on net_ring ports made
// in-process with rte_eth_from_rings(): frames built with PacketBuilder are
// enqueued on the RX rings, Pipeline::run_once decides and transmits them,
// and what comes out of each TX ring must be, in order and byte for byte,
// what the reference evaluator forwards (or sends back: XDP_TX) on that port;
// then Pipeline::run receives a frame on a queue that had gone idle. First,
// the flow table's memory is resident as soon as it is made.
#include <gtest/gtest.h>
#include <pthread.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <sys/mman.h>

#include <algorithm>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "dpdk_scenario.hpp"
#include "hex.hpp"
#include "engine.hpp"
#include "pipeline.hpp"
#include "compiler.hpp"

namespace lg {
namespace {

using namespace dpdktest;
using lg::testing::hex;

struct RingPort {
	rte_ring *rx = nullptr, *tx = nullptr;
	uint16_t id = 0;
	Mac mac{};
};

rte_mempool *pool()
{
	static rte_mempool *p = rte_pktmbuf_pool_create("lgt_pipe", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
	return p;
}

RingPort make_port(const std::string &name, unsigned workers)
{
	RingPort p;
	p.rx = rte_ring_create((name + "_rx").c_str(), 1024, int(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
	p.tx = rte_ring_create((name + "_tx").c_str(), 1024, int(rte_socket_id()), 0);
	EXPECT_TRUE(p.rx && p.tx) << rte_strerror(rte_errno);
	// One RX ring; every worker's TX queue feeds the same TX ring.
	std::vector<rte_ring *> txs(workers, p.tx);
	int id = rte_eth_from_rings(name.c_str(), &p.rx, 1, txs.data(), workers, rte_socket_id());
	EXPECT_GE(id, 0) << rte_strerror(rte_errno);
	p.id = uint16_t(id);
	auto q = dp::setup_port(p.id, workers, pool(), &p.mac, 256);
	EXPECT_TRUE(q) << (q ? "" : q.error());
	return p;
}

void enqueue(const RingPort &p, const std::vector<uint8_t> &f)
{
	rte_mbuf *m = rte_pktmbuf_alloc(pool());
	ASSERT_NE(m, nullptr);
	char *d = rte_pktmbuf_append(m, uint16_t(f.size()));
	ASSERT_NE(d, nullptr);
	std::memcpy(d, f.data(), f.size());
	ASSERT_EQ(rte_ring_enqueue(p.rx, m), 0);
}

std::vector<std::vector<uint8_t>> drain(const RingPort &p)
{
	std::vector<std::vector<uint8_t>> out;
	void *o;
	while (rte_ring_dequeue(p.tx, &o) == 0) {
		auto *m = static_cast<rte_mbuf *>(o);
		std::vector<uint8_t> f(rte_pktmbuf_pkt_len(m));
		EXPECT_EQ(m->nb_segs, 1);
		const uint8_t *src = rte_pktmbuf_mtod(m, const uint8_t *);
		std::memcpy(f.data(), src, f.size());
		out.push_back(std::move(f));
		rte_pktmbuf_free(m);
	}
	return out;
}

// A flow table of `capacity` keys on an RCU QSBR variable for `readers`
// threads (SharedHash::create), freed in that order.
struct TableRig {
	rte_rcu_qsbr *q = nullptr;
	std::unique_ptr<dp::SharedHash> h;
	std::string why = "no memory for the RCU variable";
	TableRig(const std::string &name, unsigned readers, size_t capacity)
	{
		q = static_cast<rte_rcu_qsbr *>(rte_zmalloc((name + "_q").c_str(), rte_rcu_qsbr_get_memsize(readers),
							     RTE_CACHE_LINE_SIZE));
		if (q && rte_rcu_qsbr_init(q, readers) == 0)
			h = dp::SharedHash::create(name, sizeof(lg_flow_key), sizeof(lg_flow_entry), capacity, q, &why);
	}
	~TableRig()
	{
		h.reset();
		rte_free(q);
	}
};

// Key number i of a test's table (vni tells the tables apart).
lg_flow_key numbered_key(uint32_t vni, uint32_t i)
{
	lg_flow_key k{};
	k.vni = vni;
	k.family = LG_AF_INET;
	k.proto = 6;
	std::memcpy(k.src + 12, &i, 4);
	k.sport = uint16_t(i);
	return k;
}

// A flow table's memory is faulted in when it is made, not by a worker as
// flows arrive (--no-huge: the EAL's memfd gets its pages at their first
// write; SharedHash::create populates them). The first test of this binary,
// on a fresh EAL heap: without the populate its pages are absent.
TEST(DpdkFlowTable, MemoryIsResidentOnceCreated)
{
	TableRig t("lgt_pop", 1, 1 << 19);
	ASSERT_TRUE(t.h) << t.why;
	auto &h = t.h;
	uintptr_t a = uintptr_t(h->value_at(0)) & ~uintptr_t(4095);
	uintptr_t b = uintptr_t(h->value_at(int32_t(h->capacity()) - 1) + sizeof(lg_flow_entry));
	std::vector<unsigned char> in((b - a + 4095) / 4096);
	ASSERT_EQ(mincore(reinterpret_cast<void *>(a), b - a, in.data()), 0) << std::strerror(errno);
	size_t absent = size_t(std::count_if(in.begin(), in.end(), [](unsigned char c) { return !(c & 1); }));
	EXPECT_EQ(absent, 0u) << "pages of the table's values not resident, of " << in.size();
}

// BPF_NOEXIST is a test-and-set across threads, as in the kernel: two
// workers that add the same keys at the same time never both succeed
// (a flow claims its reply key that way: ct-clash), and every key is
// counted once. Before the stripe locks both adds of a key succeeded
// whenever they met between rte_hash's lookup and its add.
TEST(DpdkFlowTable, NoExistAddsOfOneKeyByTwoThreadsGiveOneWinner)
{
	constexpr uint32_t kKeys = 200000, kChunk = 1000, kHead = 100, kChunks = kKeys / kChunk;
	TableRig t("lgt_race", 2, kKeys);
	ASSERT_TRUE(t.h) << t.why;
	auto &h = t.h;
	auto key = [](uint32_t i) { return numbered_key(7, i); };
	// wins[t][i]: thread t's add of key i succeeded.
	std::vector<std::vector<uint8_t>> wins(2, std::vector<uint8_t>(kKeys));
	std::vector<long> errors(2, 0);
	bool registered[2] = {false, false}; // not vector<bool>: its bits share words
	// The keys go in chunks, both threads in the same chunk at once; chunk c's
	// leader (thread c % 2) adds its first kHead keys alone, then both race
	// for the rest. So each wins keys whatever the scheduling, and a race
	// that drops or doubles a key shows as none or both.
	std::atomic<uint32_t> done[2] = {0, 0}; // chunks thread t has finished
	std::atomic<uint32_t> headed{0};        // chunks whose leader added its head
	auto adder = [&](int t) {
		pin_to_cpu(unsigned(t)); // each adder a CPU of its own
		// rte_hash's multi-writer add indexes a per-lcore cache by lcore id.
		bool reg = rte_thread_register() == 0;
		registered[t] = reg;
		lg_umap *m = h.get();
		auto add = [&](uint32_t i) {
			lg_flow_key k = key(i);
			lg_flow_entry v{};
			v.object_id = uint32_t(t);
			long r = m->ops->update(m, &k, &v, BPF_NOEXIST);
			if (r == 0)
				wins[size_t(t)][i] = 1;
			else if (r != -EEXIST)
				errors[size_t(t)]++;
		};
		for (uint32_t c = 0; c < kChunks; c++) {
			while (done[1 - t].load(std::memory_order_acquire) < c)
				rte_pause();
			uint32_t i = c * kChunk;
			if (c % 2 == uint32_t(t)) {
				for (; i < c * kChunk + kHead; i++)
					add(i);
				headed.store(c + 1, std::memory_order_release);
			} else {
				while (headed.load(std::memory_order_acquire) <= c)
					rte_pause();
			}
			for (; i < (c + 1) * kChunk; i++)
				add(i);
			done[t].store(c + 1, std::memory_order_release);
		}
		if (reg)
			rte_thread_unregister();
	};
	std::thread a(adder, 0), b(adder, 1);
	a.join();
	b.join();
	ASSERT_TRUE(registered[0] && registered[1]) << "rte_thread_register: " << rte_strerror(rte_errno);
	EXPECT_EQ(errors[0] + errors[1], 0) << "adds failed other than with EEXIST";
	uint32_t both = 0, none = 0, won[2] = {0, 0}, raced[2] = {0, 0};
	for (uint32_t i = 0; i < kKeys; i++) {
		both += wins[0][i] && wins[1][i];
		none += !wins[0][i] && !wins[1][i];
		won[0] += wins[0][i];
		won[1] += wins[1][i];
		bool head = i % kChunk < kHead;
		raced[0] += !head && wins[0][i];
		raced[1] += !head && wins[1][i];
	}
	EXPECT_EQ(both, 0u) << "keys both threads added (thread 0 won " << won[0] << ", thread 1 " << won[1] << ")";
	EXPECT_EQ(none, 0u);
	// Each won at least the heads it led: a first add of a new key succeeds.
	EXPECT_GE(won[0], kHead * kChunks / 2);
	EXPECT_GE(won[1], kHead * kChunks / 2);
	std::printf("keys won outside the heads: thread 0 %u, thread 1 %u\n", raced[0], raced[1]);
	EXPECT_EQ(h->count(), size_t(kKeys));
	// The value is the winner's.
	lg_umap *m = h.get();
	for (uint32_t i = 0; i < kKeys; i += 997) {
		lg_flow_key k = key(i);
		auto *v = static_cast<const lg_flow_entry *>(m->ops->lookup(m, &k));
		ASSERT_NE(v, nullptr);
		EXPECT_EQ(v->object_id, wins[1][i] ? 1u : 0u) << "key " << i;
	}
}

// A reader never sees a key before its value (the kernel's map copies the
// value, then links the element; rte_hash links the key before update() can
// copy): a reader on another CPU (lookups and pre-lookups by turns) spins on
// each key as it is added and must
// find it absent or with its own value, never a fresh slot's zeros or the
// previous owner's. Keys are deleted 16 behind, so slots are reused (after
// the reader's quiescent states) and a delete must not leave its slot ready.
TEST(DpdkFlowTable, ReadersNeverSeeAKeyBeforeItsValue)
{
	constexpr uint32_t kKeys = 200000, kBehind = 16;
	TableRig t("lgt_pub", 1, 1024);
	ASSERT_TRUE(t.h) << t.why;
	auto &h = t.h;
	rte_rcu_qsbr *q = t.q;
	auto key = [](uint32_t i) { return numbered_key(9, i); };
	constexpr size_t kWords = sizeof(lg_flow_entry) / 8;
	static_assert(sizeof(lg_flow_entry) % 8 == 0);
	auto stamp = [](uint32_t i) { return (uint64_t(i + 1) << 32) | (i + 1); };
	lg_umap *m = h.get();
	std::atomic<uint32_t> added{0}; // keys the writer has added; kKeys + kBehind + 1 when it stops
	std::atomic<uint32_t> at{0};    // the key the reader waits for
	std::atomic<bool> go{false};
	uint64_t seen = 0, bad = 0, first_bad_key = 0, first_bad_word = 0;
	std::set<const void *> slots;
	std::thread reader([&] {
		pin_to_cpu(1); // the writer, this test's main thread, is on CPU 0
		rte_rcu_qsbr_thread_register(q, 0);
		rte_rcu_qsbr_thread_online(q, 0);
		auto hints_box = std::make_unique<dp::BurstHints>();
		dp::BurstHints &hints = *hints_box;
		unsigned turn = 0;
		go.store(true);
		for (uint32_t i = 0; i < kKeys; i++) {
			lg_flow_key k = key(i);
			at.store(i, std::memory_order_release);
			for (;;) {
				rte_rcu_qsbr_quiescent(q, 0); // no value held: slots may be reused
				uint32_t before = added.load(std::memory_order_acquire);
				// By turns a program's lookup and a burst's pre-lookup.
				const void *v = nullptr;
				if (++turn & 1) {
					v = m->ops->lookup(m, &k);
				} else {
					hints.n = 1;
					hints.key[0] = &k;
					h->prelookup(hints);
					v = hints.pos[0] >= 0 ? h->value_at(hints.pos[0]) : nullptr;
				}
				if (v) {
					uint64_t w[kWords];
					std::memcpy(w, v, sizeof w);
					seen++;
					slots.insert(v);
					for (size_t j = 0; j < kWords; j++)
						if (w[j] != stamp(i)) {
							if (!bad++) {
								first_bad_key = i;
								first_bad_word = w[j];
							}
							break;
						}
					break;
				}
				if (before > i)
					break; // its add was over before this lookup: deleted since (or failed)
			}
		}
		rte_rcu_qsbr_thread_offline(q, 0);
		rte_rcu_qsbr_thread_unregister(q, 0);
	});
	while (!go.load()) {
	}
	std::map<long, long> errors; // error code -> count
	for (uint32_t i = 0; i < kKeys; i++) {
		// Not more than 8 keys ahead of the reader: a reader that is not
		// running reports no quiescent state, and deleted slots, not
		// reclaimed, would run out (a worker reports one every burst).
		while (at.load(std::memory_order_acquire) + 8 < i)
			rte_pause();
		lg_flow_key k = key(i);
		uint64_t w[kWords];
		std::fill(w, w + kWords, stamp(i));
		if (long r = m->ops->update(m, &k, w, BPF_NOEXIST))
			errors[r]++;
		added.store(i + 1, std::memory_order_release);
		if (i >= kBehind) {
			lg_flow_key old = key(i - kBehind);
			if (long r = m->ops->del(m, &old))
				errors[r]++;
		}
	}
	added.store(kKeys + kBehind + 1, std::memory_order_release);
	reader.join();
	for (auto [code, n] : errors)
		ADD_FAILURE() << n << " adds or deletes failed: " << std::strerror(int(-code));
	EXPECT_EQ(bad, 0u) << "values read before they were written, first at key " << first_bad_key << ": word "
			   << std::hex << first_bad_word;
	// The reader kept up, and slots were reused under it.
	EXPECT_GT(seen, uint64_t(kKeys / 2));
	EXPECT_LT(slots.size(), size_t(seen / 4));
	EXPECT_EQ(h->count(), size_t(kBehind));
}

// The control thread's walk (for_each: listing, reclaim) is no RCU reader,
// so a slot may change owner while it is copied. A writer on another CPU
// deletes and adds 64 keys over and over (no RCU readers: a freed slot is
// reused at once, by any key); every copy the walk hands out must be one
// owner's whole key and value, never one key with another's value.
TEST(DpdkFlowTable, TheControlWalkCopiesOneOwnerWhole)
{
	constexpr uint32_t kKeys = 64;
	TableRig t("lgt_walk", 1, 1024);
	ASSERT_TRUE(t.h) << t.why;
	auto &h = t.h;
	auto key = [](uint32_t i) { return numbered_key(11, i); };
	constexpr size_t kWords = sizeof(lg_flow_entry) / 8;
	lg_umap *m = h.get();
	std::atomic<bool> stop{false}, started{false};
	bool registered = false;
	uint64_t churns = 0;
	long errors = 0;
	std::thread writer([&] {
		pin_to_cpu(1);
		registered = rte_thread_register() == 0; // rte_hash's multi-writer add
		for (uint32_t v = 1; registered && !stop.load(std::memory_order_relaxed); v++) {
			for (uint32_t i = 0; i < kKeys; i++) {
				lg_flow_key k = key(i);
				uint64_t w[kWords];
				std::fill(w, w + kWords, (uint64_t(i) << 32) | v);
				if (v > 1)
					errors += m->ops->del(m, &k) != 0;
				errors += m->ops->update(m, &k, w, BPF_NOEXIST) != 0;
				churns++;
			}
			started.store(true, std::memory_order_release);
		}
		if (registered)
			rte_thread_unregister();
	});
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
	while (!started.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline) {
	}
	uint64_t copies = 0, torn = 0;
	std::string first;
	for (int pass = 0; pass < 40000 && std::chrono::steady_clock::now() < deadline; pass++)
		h->for_each([&](const void *k, uint8_t *v) {
			uint32_t i;
			std::memcpy(&i, static_cast<const lg_flow_key *>(k)->src + 12, 4);
			uint64_t w[kWords];
			std::memcpy(w, v, sizeof w);
			copies++;
			bool whole = i < kKeys && (w[0] >> 32) == i;
			for (size_t j = 1; j < kWords; j++)
				whole = whole && w[j] == w[0];
			if (!whole && !torn++)
				first = "key " + std::to_string(i) + " with value word " + std::to_string(w[0] >> 32) + ":" +
					std::to_string(uint32_t(w[0]));
			return false;
		}, SIZE_MAX, true);
	stop.store(true);
	writer.join();
	ASSERT_TRUE(registered) << "rte_thread_register: " << rte_strerror(rte_errno);
	EXPECT_EQ(errors, 0);
	EXPECT_EQ(torn, 0u) << "copies mixing owners, of " << copies << "; first: " << first;
	EXPECT_GT(copies, 1000u);
	EXPECT_GT(churns, 10 * uint64_t(kKeys)) << "the writer hardly ran beside the walk";
}

// The control thread's copy of one key's value (SharedHash::copy, which
// reclaim uses to look a copy's twin up): the value as written; a key never
// added or deleted is absent; a key made again gives its new value.
TEST(DpdkFlowTable, ACopyOfOneKeyIsItsValue)
{
	TableRig t("lgt_copy", 1, 1024);
	ASSERT_TRUE(t.h) << t.why;
	lg_umap *m = t.h.get();
	lg_flow_key k = numbered_key(9, 1), other = numbered_key(9, 2);
	lg_flow_entry e{}, got{};
	e.expires_ns = 77;
	e.object_id = 5;
	ASSERT_EQ(m->ops->update(m, &k, &e, BPF_NOEXIST), 0);
	ASSERT_TRUE(t.h->copy(&k, &got, sizeof got));
	EXPECT_EQ(got.expires_ns, 77u);
	EXPECT_EQ(got.object_id, 5u);
	EXPECT_FALSE(t.h->copy(&other, &got, sizeof got));
	ASSERT_EQ(m->ops->del(m, &k), 0);
	EXPECT_FALSE(t.h->copy(&k, &got, sizeof got));
	e.object_id = 6;
	ASSERT_EQ(m->ops->update(m, &k, &e, BPF_NOEXIST), 0);
	ASSERT_TRUE(t.h->copy(&k, &got, sizeof got));
	EXPECT_EQ(got.object_id, 6u);
	ASSERT_EQ(m->ops->del(m, &k), 0);
}

// A replacement's value (update() of a present key: a new flow taking an
// expired flow's key) is written between two bumps of its slot's owner
// count; a copy begun while the count is odd is dropped, however fast it
// finishes, as the walk's copies begun before the first bump are. Planted:
// the owner count is the 4 bytes before the value (SharedHash's header), left
// odd as update() leaves it while it writes.
TEST(DpdkFlowTable, ACopyBegunWhileAReplacementWritesIsDropped)
{
	TableRig t("lgt_odd", 1, 1024);
	ASSERT_TRUE(t.h) << t.why;
	lg_umap *m = t.h.get();
	for (uint32_t i = 0; i < 3; i++) {
		lg_flow_key k = numbered_key(15, i);
		lg_flow_entry e{};
		e.object_id = i;
		ASSERT_EQ(m->ops->update(m, &k, &e, BPF_NOEXIST), 0);
	}
	lg_flow_key k1 = numbered_key(15, 1);
	auto *v = static_cast<uint8_t *>(m->ops->lookup(m, &k1));
	ASSERT_NE(v, nullptr);
	uint32_t *owner = reinterpret_cast<uint32_t *>(v - 4);
	ASSERT_EQ(*owner % 2, 0u) << "a settled slot's owner count is even";
	auto listed = [&] {
		std::set<uint32_t> ids;
		t.h->for_each([&](const void *, uint8_t *c) {
			ids.insert(reinterpret_cast<const lg_flow_entry *>(c)->object_id);
			return false;
		});
		return ids;
	};
	lg_flow_entry got{};
	++*owner; // a replacement under way
	EXPECT_FALSE(t.h->copy(&k1, &got, sizeof got)) << "a copy while the value is written";
	EXPECT_EQ(listed(), (std::set<uint32_t>{0, 2})) << "the walk skips it";
	EXPECT_EQ(t.h->for_each([](const void *, uint8_t *) { return true; }), 2u) << "and deletes only what it copied";
	++*owner; // written
	ASSERT_TRUE(t.h->copy(&k1, &got, sizeof got));
	EXPECT_EQ(got.object_id, 1u);
	EXPECT_EQ(listed(), (std::set<uint32_t>{1}));
	// A delete keeps the count even.
	ASSERT_EQ(m->ops->del(m, &k1), 0);
	EXPECT_EQ(*owner % 2, 0u);
}

// A walk's delete removes the entry it read, not a flow made again under
// the same key since (a new flow takes an expired flow's key: in a new slot
// once a sweep or takeover deleted it): here the walk answers "delete" for
// every entry, and each answer first makes the even keys it answered
// before anew, after the walk read them and before it deletes them.
TEST(DpdkFlowTable, TheControlWalkDeletesOnlyTheOwnerItRead)
{
	constexpr uint32_t kKeys = 300;
	TableRig t("lgt_owned", 1, 1024);
	ASSERT_TRUE(t.h) << t.why;
	auto &h = t.h;
	lg_umap *m = h.get();
	auto key = [](uint32_t i) { return numbered_key(12, i); };
	lg_flow_entry e{};
	for (uint32_t i = 0; i < kKeys; i++) {
		lg_flow_key k = key(i);
		e.object_id = 1;
		e.server = i; // the walk, like reclaim's, copies no keys
		ASSERT_EQ(m->ops->update(m, &k, &e, BPF_NOEXIST), 0);
	}
	// Keys 0, 2, 4...: deleted and made again (object 2) between the walk's
	// copy (object 1) and its delete; the odd keys are left as read.
	std::set<uint32_t> remade;
	std::vector<uint32_t> pending;
	size_t deleted = h->for_each([&](const void *no_key, uint8_t *v) {
		EXPECT_EQ(no_key, nullptr);
		const auto *c = reinterpret_cast<const lg_flow_entry *>(v);
		if (c->object_id != 1)
			return false; // a flow made again, met by the walk
		for (uint32_t j : pending) {
			lg_flow_key k = key(j);
			lg_flow_entry n{};
			n.object_id = 2;
			n.server = j;
			EXPECT_EQ(m->ops->del(m, &k), 0);
			EXPECT_EQ(m->ops->update(m, &k, &n, BPF_NOEXIST), 0);
			remade.insert(j);
		}
		pending.clear();
		if (c->server % 2 == 0)
			pending.push_back(c->server);
		return true;
	});
	// The last even key answered was not made again: it goes too.
	EXPECT_GE(remade.size(), size_t(kKeys / 2 - 1));
	EXPECT_EQ(deleted, size_t(kKeys) - remade.size()) << "the walk deleted flows made after it read them";
	EXPECT_EQ(h->count(), remade.size());
	for (uint32_t i = 0; i < kKeys; i++) {
		lg_flow_key k = key(i);
		auto *v = static_cast<const lg_flow_entry *>(m->ops->lookup(m, &k));
		if (!remade.count(i)) {
			EXPECT_EQ(v, nullptr) << "key " << i;
		} else {
			ASSERT_NE(v, nullptr) << "key " << i << ": the flow made again is gone";
			EXPECT_EQ(v->object_id, 2u);
		}
	}
}

// Entries numbered_key(tag, 0..n-1), expired at 5 ns, each with its number
// in `server`.
static ::testing::AssertionResult add_expired(lg_umap *m, uint32_t tag, uint32_t n)
{
	lg_flow_entry e{};
	e.expires_ns = 5;
	for (uint32_t i = 0; i < n; i++) {
		lg_flow_key k = numbered_key(tag, i);
		e.server = i;
		if (long r = m->ops->update(m, &k, &e, BPF_NOEXIST))
			return ::testing::AssertionFailure() << "add " << i << ": " << r;
	}
	return ::testing::AssertionSuccess();
}

// A value rewritten in place through the program's pointer (same slot,
// same owner: a packet refreshing a live flow's expiry) between the walk's
// copy and its delete: with recheck the walk asks again on a fresh copy and
// keeps it (reclaim's flows and fragments).
TEST(DpdkFlowTable, TheControlWalkWithRecheckKeepsAValueRewrittenInPlace)
{
	constexpr uint32_t kKeys = 200;
	for (bool recheck : {false, true}) {
		TableRig t(recheck ? "lgt_rechk1" : "lgt_rechk0", 1, 1024);
		ASSERT_TRUE(t.h) << t.why;
		lg_umap *m = t.h.get();
		ASSERT_TRUE(add_expired(m, 13, kKeys));
		// Every entry is expired when the walk reads it; the even ones are
		// made young in place right after.
		size_t deleted = t.h->for_each(
			[&](const void *, uint8_t *v) {
				const auto *c = reinterpret_cast<const lg_flow_entry *>(v);
				if (c->expires_ns > 10)
					return false;
				if (c->server % 2 == 0) {
					lg_flow_key k = numbered_key(13, c->server);
					auto *live = static_cast<lg_flow_entry *>(m->ops->lookup(m, &k));
					EXPECT_NE(live, nullptr);
					if (live)
						__atomic_store_n(&live->expires_ns, 100ull, __ATOMIC_RELAXED);
				}
				return true;
			},
			SIZE_MAX, false, recheck);
		EXPECT_EQ(deleted, recheck ? kKeys / 2 : kKeys) << "recheck " << recheck;
		EXPECT_EQ(t.h->count(), recheck ? kKeys / 2 : 0u) << "recheck " << recheck;
		for (uint32_t i = 0; recheck && i < kKeys; i++) {
			lg_flow_key k = numbered_key(13, i);
			EXPECT_EQ(m->ops->lookup(m, &k) != nullptr, i % 2 == 0) << "key " << i;
		}
	}
}

// A value an update replaced (a new flow taking an expired flow's key in
// place, lg_flow_reserve; a first fragment replacing an expired memory)
// between the walk's copy and its delete is kept, also when the new value
// looks expired to the walk too (a reservation carries its maker's clock):
// the update gave the slot a new owner, so the delete refuses.
TEST(DpdkFlowTable, TheControlWalkKeepsAValueAnUpdateReplaced)
{
	constexpr uint32_t kKeys = 200;
	for (uint64_t flags : {uint64_t(BPF_ANY), uint64_t(BPF_EXIST)}) {
		TableRig t(flags == BPF_ANY ? "lgt_repl0" : "lgt_repl1", 1, 1024);
		ASSERT_TRUE(t.h) << t.why;
		lg_umap *m = t.h.get();
		ASSERT_TRUE(add_expired(m, 14, kKeys));
		size_t deleted = t.h->for_each(
			[&](const void *, uint8_t *v) {
				const auto *c = reinterpret_cast<const lg_flow_entry *>(v);
				if (c->expires_ns > 10)
					return false;
				if (c->server % 2 == 0 && c->object_id == 0) {
					lg_flow_key k = numbered_key(14, c->server);
					lg_flow_entry n = *c;
					n.object_id = 7; // the new flow; its expiry still reads as expired
					EXPECT_EQ(m->ops->update(m, &k, &n, flags), 0);
				}
				return true;
			},
			SIZE_MAX, false, true);
		EXPECT_EQ(deleted, kKeys / 2) << "flags " << flags;
		EXPECT_EQ(t.h->count(), kKeys / 2) << "flags " << flags;
		for (uint32_t i = 0; i < kKeys; i++) {
			lg_flow_key k = numbered_key(14, i);
			auto *v = static_cast<const lg_flow_entry *>(m->ops->lookup(m, &k));
			EXPECT_EQ(v != nullptr, i % 2 == 0) << "key " << i;
			if (v) {
				EXPECT_EQ(v->object_id, 7u) << "key " << i;
			}
		}
	}
}

TEST(DpdkPipeline, NetRingFramesMatchTheEvaluator)
{
	ASSERT_NE(pool(), nullptr) << rte_strerror(rte_errno);
	RingPort p0 = make_port("lgt_ring0", 1), p1 = make_port("lgt_ring1", 1);
	ASSERT_EQ(p0.id + 1, p1.id) << "the scenario numbers ports 0 and 1 in order";
	// Ifindexes are port + 1: the scenario's host has 1 and 2.
	ASSERT_EQ(p0.id, 0);
	HostConfig host = scenario_host(p0.mac, p1.mac);
	Evaluator ev(host);
	State st = scenario_state();
	ASSERT_TRUE(ev.commit(st).ok());

	dp::EngineConfig cfg;
	cfg.host.interfaces = host.interfaces;
	// The routes linkgate-dpdk's --route flags give (scenario_routes()).
	cfg.mac_routes = {{*Prefix::parse("10.1.0.0/16"), 1, kClientMac}, {*Prefix::parse("0.0.0.0/0"), 2, kGwMac}};
	cfg.timeouts.flow_capacity = 4096;
	auto e = dp::Engine::create(cfg);
	ASSERT_TRUE(e) << e.error();
	dp::Engine &eng = **e;
	std::vector<InterfaceBinding> b = {{1, "client-vnet", p0.mac}, {2, "", p1.mac}};
	auto t = compile(st, b, ev.generation());
	ASSERT_TRUE(t) << t.error();
	ASSERT_TRUE(eng.publish(*t).ok());

	dp::Pipeline pipe(eng, {p0.id, p1.id}, 1);
	pipe.assign(0, p0.id, 0);
	pipe.assign(0, p1.id, 0);
	eng.online(0);

	std::map<std::string, int> verdicts;
	uint64_t frames = 0, expect_tx = 0, expect_pass = 0, expect_drop = 0;
	for (auto &round : scenario_rounds(p0.mac, p1.mac)) {
		// The pipeline polls port 0's queue, then port 1's: the evaluator
		// sees the frames in that order.
		std::vector<const Frame *> order;
		for (uint16_t port : {uint16_t(0), uint16_t(1)})
			for (auto &f : round)
				if (f.port == port)
					order.push_back(&f);
		std::map<uint16_t, std::vector<std::pair<std::vector<uint8_t>, std::string>>> want;
		for (auto *f : order) {
			RingPort &rp = f->port == 0 ? p0 : p1;
			enqueue(rp, f->bytes);
			Decision d = ev.process(f->bytes, f->port + 1u, dp::Engine::clock_ns());
			verdicts[std::string(verdict_name(d.verdict)) + "/" + reason_name(d.reason)]++;
			frames++;
			if (d.verdict == LG_VERDICT_FORWARD) {
				want[uint16_t(d.egress_ifindex - 1)].push_back({d.frame, f->what});
				expect_tx++;
			} else if (d.verdict == LG_VERDICT_TX) {
				want[f->port].push_back({d.frame, f->what});
				expect_tx++;
			} else if (d.verdict == LG_VERDICT_PASS) {
				expect_pass++;
			} else {
				expect_drop++;
			}
		}
		EXPECT_EQ(pipe.run_once(0), round.size());
		eng.quiescent(0);
		for (RingPort *rp : {&p0, &p1}) {
			auto got = drain(*rp);
			auto &w = want[rp->id];
			ASSERT_EQ(got.size(), w.size()) << "frames out of port " << rp->id;
			for (size_t i = 0; i < got.size(); i++)
				EXPECT_EQ(got[i], w[i].first) << w[i].second << " out of port " << rp->id << "\ngot:\n"
							      << hex(got[i]) << "\nevaluator:\n" << hex(w[i].first);
		}
	}
	// Every kind of outcome the scenario is meant to have.
	for (const char *k : {"forward/none", "tx/none", "drop/nsg-deny", "drop/firewall-no-match", "drop/ct-invalid",
			      "drop/malformed", "drop/nsg-default-deny"})
		EXPECT_GT(verdicts[k], 0) << k << " (saw: " << [&] {
			std::string s;
			for (auto &[n, c] : verdicts)
				s += n + "=" + std::to_string(c) + " ";
			return s;
		}() << ")";
	dp::PipelineTotals tot = pipe.totals();
	EXPECT_EQ(tot.rx, frames);
	EXPECT_EQ(tot.tx, expect_tx);
	EXPECT_EQ(tot.tx_failed, 0u);
	EXPECT_EQ(tot.passed, expect_pass);
	EXPECT_EQ(tot.dropped, expect_drop);
	// The engine's reason counters agree with the evaluator's.
	dp::EngineCounters c = eng.counters();
	const Counters &ec = ev.counters();
	for (size_t i = 0; i < LG_REASON__COUNT; i++)
		EXPECT_EQ(c.reasons[i], ec.reasons[i]) << reason_name(lg_reason(i));
	EXPECT_EQ(c.flows, ev.flow_count());
	eng.offline(0);

	// The worker loop: both queues have been empty long enough to be polled
	// only every kIdleEvery-th iteration; a frame that arrives on one of
	// them then is still received and decided as the evaluator decides it.
	std::optional<Frame> late;
	for (auto &round : scenario_rounds(p0.mac, p1.mac))
		for (auto &f : round)
			if (!late && f.port == 1)
				late = f;
	ASSERT_TRUE(late); // before the worker starts: a fatal failure with it joinable would terminate
	std::atomic<bool> stop{false};
	std::thread worker([&] { pipe.run(0, stop); });
	const dp::WorkerStats &ws = pipe.stats(0);
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
	while (ws.iterations.load() < 20 * dp::Pipeline::kIdlePolls && std::chrono::steady_clock::now() < deadline)
		std::this_thread::yield();
	EXPECT_GE(ws.iterations.load(), 20 * dp::Pipeline::kIdlePolls) << "the worker loop did not run";
	uint64_t rx0 = ws.rx.load(), done0 = ws.tx.load() + ws.passed.load() + ws.dropped.load();
	Decision d = ev.process(late->bytes, 2, dp::Engine::clock_ns());
	enqueue(p1, late->bytes);
	while (ws.tx.load() + ws.passed.load() + ws.dropped.load() == done0 &&
	       std::chrono::steady_clock::now() < deadline)
		std::this_thread::yield();
	stop.store(true);
	worker.join();
	EXPECT_EQ(ws.rx.load(), rx0 + 1) << "the frame on the idle queue was not received";
	auto out = drain(d.verdict == LG_VERDICT_FORWARD && d.egress_ifindex == 1 ? p0 : p1);
	if (d.verdict == LG_VERDICT_FORWARD || d.verdict == LG_VERDICT_TX) {
		ASSERT_EQ(out.size(), 1u) << late->what;
		EXPECT_EQ(out[0], d.frame) << late->what;
	} else {
		EXPECT_TRUE(out.empty()) << late->what;
	}

	// A forward to a port between the pipeline's port ids that was not
	// given to it is a drop (before 2026-12-02 only the highest id bounded
	// the check, and the frame left by port 1, which the pipeline does not
	// own).
	RingPort p2 = make_port("lgt_ring2", 1);
	ASSERT_EQ(p2.id, p1.id + 1);
	{
		dp::Pipeline gap(eng, {p0.id, p2.id}, 1);
		gap.assign(0, p0.id, 0);
		auto syn = PacketBuilder().eth(kClientMac, p0.mac).ipv4("10.1.1.10", "10.1.1.100").tcp(40100, 3306, kTcpSyn).build();
		Decision pd = ev.process(syn, 1, dp::Engine::clock_ns());
		ASSERT_EQ(pd.verdict, LG_VERDICT_FORWARD);
		ASSERT_EQ(pd.egress_ifindex, 2u) << "the backend's side is port 1";
		enqueue(p0, syn);
		eng.online(0);
		EXPECT_EQ(gap.run_once(0), 1u);
		eng.quiescent(0);
		eng.offline(0);
		EXPECT_TRUE(drain(p1).empty()) << "sent on a port not given to the pipeline";
		EXPECT_TRUE(drain(p2).empty());
		EXPECT_EQ(gap.totals().tx, 0u);
		EXPECT_EQ(gap.totals().dropped, 1u);
	}
	for (RingPort *rp : {&p0, &p1, &p2}) {
		rte_eth_dev_stop(rp->id);
		rte_eth_dev_close(rp->id);
	}
}

} // namespace
} // namespace lg
