// Maglev table (SPEC §5): balance, weights, disruption on removal, and that
// the table is a pure, reproducible function of the backend set.
#include "maglev.hpp"

#include <lg_hash.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace lg {
namespace {

constexpr uint32_t kSize = LG_MAGLEV_SIZE;
constexpr int kFlows = 1'000'000;

std::vector<MaglevBackend> pool(int n, uint32_t weight = 1)
{
	std::vector<MaglevBackend> v;
	for (int i = 0; i < n; i++)
		v.push_back({Addr::from_v4(0x0a140000u + 1 + uint32_t(i)), LG_MYSQL_PORT, weight});
	return v;
}

// Flows per slot for kFlows random clients of one MySQL endpoint, hashed as
// the dataplanes hash them. Fixed seed: every run sees the same flows.
const std::vector<uint32_t> &flows_per_slot()
{
	static const std::vector<uint32_t> counts = [] {
		std::vector<uint32_t> c(kSize, 0);
		std::mt19937_64 rng(20240611);
		const Addr dst = Addr::from_v4(0x0a010203u);
		for (int i = 0; i < kFlows; i++) {
			uint64_t r = rng();
			Addr src = Addr::from_v4(uint32_t(r));
			uint16_t sport = uint16_t(1024 + (r >> 32) % (65536 - 1024));
			uint32_t h = lg_flow_hash(src.b.data(), dst.b.data(), htons(sport),
						  htons(LG_MYSQL_PORT), IPPROTO_TCP);
			c[maglev_slot(h, kSize)]++;
		}
		return c;
	}();
	return counts;
}

std::vector<uint64_t> flows_per_backend(const std::vector<int32_t> &table, size_t n)
{
	std::vector<uint64_t> f(n, 0);
	const auto &c = flows_per_slot();
	for (uint32_t s = 0; s < kSize; s++)
		f[size_t(table[s])] += c[s];
	return f;
}

TEST(MaglevBalance, HundredEqualBackendsWithinFivePercent)
{
	auto t = maglev_table(pool(100));
	auto f = flows_per_backend(t, 100);
	const double even = double(kFlows) / 100;
	double worst = 0;
	for (uint64_t x : f)
		worst = std::max(worst, std::fabs(double(x) - even) / even);
	std::printf("balance: 100 backends, %d flows, max deviation %.2f%%\n", kFlows, 100 * worst);
	EXPECT_LE(worst, 0.05);
}

TEST(MaglevBalance, EqualWeightsSlotCountsDifferByAtMostOne)
{
	for (int n : {3, 100, 1000}) {
		auto t = maglev_table(pool(n));
		std::vector<uint32_t> slots(size_t(n), 0);
		for (int32_t e : t) {
			ASSERT_GE(e, 0);
			ASSERT_LT(e, n);
			slots[size_t(e)]++;
		}
		auto [lo, hi] = std::minmax_element(slots.begin(), slots.end());
		EXPECT_LE(*hi - *lo, 1u) << n << " backends";
	}
}

TEST(MaglevWeights, OneTwoThreeProportional)
{
	auto b = pool(3);
	b[0].weight = 1;
	b[1].weight = 2;
	b[2].weight = 3;
	auto f = flows_per_backend(maglev_table(b), 3);
	for (size_t i = 0; i < 3; i++) {
		double want = double(b[i].weight) / 6;
		double got = double(f[i]) / kFlows;
		std::printf("weights: weight %u share %.4f (want %.4f)\n", b[i].weight, got, want);
		EXPECT_NEAR(got / want, 1.0, 0.02) << "weight " << b[i].weight;
	}
}

TEST(MaglevWeights, MixedPoolEachBackendProportional)
{
	// 30 backends, ten each of weight 1, 2 and 3 (sum 60).
	auto b = pool(30);
	for (size_t i = 0; i < b.size(); i++)
		b[i].weight = uint32_t(1 + i % 3);
	auto f = flows_per_backend(maglev_table(b), b.size());
	for (size_t i = 0; i < b.size(); i++) {
		double want = double(b[i].weight) / 60;
		EXPECT_NEAR(double(f[i]) / kFlows / want, 1.0, 0.05) << "backend " << i;
	}
}

TEST(MaglevWeights, LargeWeightsDoNotOverflow)
{
	auto b = pool(2);
	b[0].weight = 0xffffffffu;
	b[1].weight = 0x80000000u;
	auto t = maglev_table(b);
	auto n1 = std::count(t.begin(), t.end(), 1);
	EXPECT_NEAR(double(n1) / kSize, 1.0 / 3, 0.01);
}

// Katran's MaglevHashV2 loop, round by round, over distinct backends already
// in identity order: the heap in maglev_table must claim the same slots.
std::vector<int32_t> round_by_round(const std::vector<MaglevBackend> &b, uint32_t size)
{
	std::vector<int32_t> t(size, kMaglevNone);
	uint64_t max_weight = 0;
	for (const auto &x : b)
		max_weight = std::max<uint64_t>(max_weight, x.weight);
	std::vector<uint64_t> credit(b.size(), 0), next(b.size(), 0);
	uint32_t filled = 0;
	while (max_weight > 0) {
		for (size_t i = 0; i < b.size(); i++) {
			credit[i] += b[i].weight;
			if (credit[i] < max_weight)
				continue;
			credit[i] -= max_weight;
			auto p = maglev_permutation(b[i].address, b[i].port, size);
			uint32_t cur;
			do
				cur = uint32_t((p.offset + next[i]++ * p.skip) % size);
			while (t[cur] != kMaglevNone);
			t[cur] = int32_t(i);
			if (++filled == size)
				return t;
		}
	}
	return t;
}

TEST(MaglevWeights, SameClaimsAsRoundByRoundFill)
{
	std::mt19937 rng(11);
	for (int round = 0; round < 20; round++) {
		auto b = pool(1 + int(rng() % 60)); // ascending addresses: identity order
		for (auto &x : b)
			x.weight = round % 2 ? 1 + rng() % 1000 : rng() % 4;
		for (uint32_t size : {13u, 4099u, kSize})
			ASSERT_EQ(maglev_table(b, size), round_by_round(b, size))
				<< "round " << round << " size " << size;
	}
}

// Plain Maglev also moves a few slots between surviving backends when one
// leaves (once the removed one stops claiming, the others' later claims land
// elsewhere). Moving only the removed backend's slots for every set forces
// per-slot rendezvous, whose binomial slot counts miss ±5% at 65537 slots
// (docs/maglev.md), so these bound the collateral moves instead. Measured
// over random pools of IPv4 backends (docs/maglev.md): mean 0.24% (N=10) and
// 0.58% (N=100) of all flows, worst single removal 1.07% and 1.26%; this
// pool: mean 0.24% / 0.54%, max 0.29% / 0.59%.
constexpr double kCollateralMax = 0.015;

struct Disruption {
	double moved;      // share of all flows that change backend
	double collateral; // share of all flows that move but were not on the removed backend
	bool all_served;   // every slot still names a backend
};

Disruption remove_one(const std::vector<MaglevBackend> &b, const std::vector<int32_t> &before,
		      size_t r)
{
	auto rest = b;
	rest.erase(rest.begin() + long(r));
	auto after = maglev_table(rest);
	const auto &c = flows_per_slot();
	Disruption d{0, 0, true};
	uint64_t moved = 0, collateral = 0;
	for (uint32_t s = 0; s < kSize; s++) {
		if (after[s] == kMaglevNone)
			d.all_served = false;
		// Back to indices of `b`; the removed backend's flows all move.
		int32_t now = after[s] >= int32_t(r) ? after[s] + 1 : after[s];
		if (now == before[s])
			continue;
		moved += c[s];
		if (before[s] != int32_t(r))
			collateral += c[s];
	}
	d.moved = double(moved) / kFlows;
	d.collateral = double(collateral) / kFlows;
	return d;
}

void check_removals(int n, double collateral_mean_bound)
{
	auto b = pool(n);
	auto before = maglev_table(b);
	double worst_collateral = 0, sum_collateral = 0, worst_moved = 0;
	for (size_t r = 0; r < size_t(n); r++) {
		Disruption d = remove_one(b, before, r);
		EXPECT_TRUE(d.all_served) << "removed " << r;
		EXPECT_GE(d.moved, 1.0 / n * 0.95) << "removed " << r;
		EXPECT_LE(d.moved, 1.0 / n * 1.05 + kCollateralMax) << "removed " << r;
		EXPECT_LE(d.collateral, kCollateralMax) << "removed " << r;
		worst_collateral = std::max(worst_collateral, d.collateral);
		worst_moved = std::max(worst_moved, d.moved);
		sum_collateral += d.collateral;
	}
	std::printf("stability: N=%d, each of %d removals: moved max %.3f%% (1/N = %.3f%%), "
		    "flows of other backends moved mean %.3f%% max %.3f%% of all flows\n",
		    n, n, 100 * worst_moved, 100.0 / n, 100 * sum_collateral / n,
		    100 * worst_collateral);
	EXPECT_LE(sum_collateral / n, collateral_mean_bound);
}

TEST(MaglevStability, RemoveOneOfTen) { check_removals(10, 0.006); }

TEST(MaglevStability, RemoveOneOfHundred) { check_removals(100, 0.008); }

// Surveys behind the bounds above and docs/maglev.md; slow, so run on demand:
//   maglev_test --gtest_also_run_disabled_tests --gtest_filter='*Survey*'
TEST(MaglevStability, DISABLED_SurveyRandomPools)
{
	std::mt19937 rng(1);
	for (int n : {10, 100}) {
		const int pools = n == 10 ? 200 : 30;
		double worst = 0, sum = 0;
		for (int p = 0; p < pools; p++) {
			std::vector<MaglevBackend> b;
			for (int i = 0; i < n; i++)
				b.push_back({Addr::from_v4(uint32_t(rng())), LG_MYSQL_PORT, 1});
			auto before = maglev_table(b);
			for (size_t r = 0; r < size_t(n); r++) {
				Disruption d = remove_one(b, before, r);
				worst = std::max(worst, d.collateral);
				sum += d.collateral;
			}
		}
		std::printf("survey: N=%d, %d random pools, every removal: flows of other backends "
			    "moved mean %.3f%% max %.3f%% of all flows\n",
			    n, pools, 100 * sum / (pools * n), 100 * worst);
		EXPECT_LE(worst, kCollateralMax);
	}
}

// The construction that moves only the removed backend's slots: each slot
// goes to the backend whose (identity, slot) hash is highest. Its slot counts
// are binomial, so it cannot keep the ±5% that Maglev keeps.
TEST(MaglevStability, DISABLED_SurveyRendezvousBalance)
{
	for (int n : {10, 100, 1000}) {
		auto b = pool(n);
		std::vector<uint32_t> slots(size_t(n), 0);
		for (uint32_t s = 0; s < kSize; s++) {
			uint32_t best = 0;
			size_t owner = 0;
			for (size_t i = 0; i < b.size(); i++) {
				uint32_t w[6];
				for (int j = 0; j < 4; j++)
					w[j] = uint32_t(b[i].address.b[4 * j]) << 24 |
					       uint32_t(b[i].address.b[4 * j + 1]) << 16 |
					       uint32_t(b[i].address.b[4 * j + 2]) << 8 |
					       uint32_t(b[i].address.b[4 * j + 3]);
				w[4] = b[i].port;
				w[5] = s;
				uint32_t h = lg_jhash2(w, 6, kMaglevOffsetSeed);
				if (i == 0 || h > best) {
					best = h;
					owner = i;
				}
			}
			slots[owner]++;
		}
		const double even = double(kSize) / n;
		double worst = 0;
		for (uint32_t c : slots)
			worst = std::max(worst, std::fabs(c - even) / even);
		std::printf("survey: rendezvous per slot, N=%d: max slot-count deviation %.2f%%\n", n,
			    100 * worst);
		if (n >= 100) {
			EXPECT_GT(worst, 0.05);
		}
	}
}

TEST(MaglevDeterminism, OrderDoesNotMatter)
{
	auto b = pool(50);
	for (size_t i = 0; i < b.size(); i++) {
		b[i].weight = uint32_t(1 + i % 4);
		b[i].port = uint16_t(3306 + i % 2);
	}
	b.push_back({*Addr::parse("2001:db8::7"), 3307, 2});
	auto t = maglev_table(b);
	auto shuffled = b;
	std::mt19937 rng(7);
	for (int round = 0; round < 3; round++) {
		std::shuffle(shuffled.begin(), shuffled.end(), rng);
		auto u = maglev_table(shuffled);
		for (uint32_t s = 0; s < kSize; s++) {
			const auto &x = b[size_t(t[s])];
			const auto &y = shuffled[size_t(u[s])];
			ASSERT_TRUE(x.address == y.address && x.port == y.port) << "slot " << s;
		}
	}
}

TEST(MaglevDeterminism, EmptyAndZeroWeightGiveNone)
{
	auto empty = maglev_table({});
	ASSERT_EQ(empty.size(), kSize);
	EXPECT_EQ(std::count(empty.begin(), empty.end(), kMaglevNone), long(kSize));
	auto zero = maglev_table(pool(5, 0));
	ASSERT_EQ(zero.size(), kSize);
	EXPECT_EQ(std::count(zero.begin(), zero.end(), kMaglevNone), long(kSize));
}

TEST(MaglevDeterminism, ZeroWeightBackendTakesNoSlot)
{
	auto b = pool(4);
	b[2].weight = 0;
	auto t = maglev_table(b);
	EXPECT_EQ(std::count(t.begin(), t.end(), 2), 0);
	EXPECT_EQ(std::count(t.begin(), t.end(), kMaglevNone), 0);
	// Same table as without it, so draining is a removal.
	auto rest = b;
	rest.erase(rest.begin() + 2);
	auto u = maglev_table(rest);
	for (uint32_t s = 0; s < kSize; s++)
		ASSERT_EQ(t[s], u[s] >= 2 ? u[s] + 1 : u[s]) << "slot " << s;
}

TEST(MaglevDeterminism, SingleBackendOwnsEverySlot)
{
	std::vector<MaglevBackend> b = {{Addr::from_v4(0x0a000001u), 3306, 0},
					{Addr::from_v4(0x0a000002u), 3306, 7}};
	auto t = maglev_table(b);
	EXPECT_EQ(std::count(t.begin(), t.end(), 1), long(kSize));
}

TEST(MaglevDeterminism, DuplicateEndpointIsOneBackend)
{
	auto b = pool(3);
	b.push_back(b[1]); // index 3 repeats index 1 with the same weight
	auto t = maglev_table(b);
	EXPECT_EQ(std::count(t.begin(), t.end(), 3), 0);
	b[3].weight = 5; // now the heavier copy names the backend
	auto u = maglev_table(b);
	EXPECT_EQ(std::count(u.begin(), u.end(), 1), 0);
	EXPECT_GT(std::count(u.begin(), u.end(), 3), long(kSize) / 2);
}

// Pinned from an independent (Python) lookup3 over the documented words, so a
// change of hash inputs, word order or seeds cannot pass unnoticed.
TEST(MaglevDeterminism, PermutationMatchesReferenceHash)
{
	auto p = maglev_permutation(Addr::from_v4(0x0a000001u), 3306, kSize);
	EXPECT_EQ(p.offset, 17557u);
	EXPECT_EQ(p.skip, 39017u);
	auto q = maglev_permutation(*Addr::parse("2001:db8::7"), 3307, kSize);
	EXPECT_EQ(q.offset, 20962u);
	EXPECT_EQ(q.skip, 52925u);
}

TEST(MaglevSlot, FlowHashModSize)
{
	const Addr src = *Addr::parse("192.0.2.10");
	const Addr dst = *Addr::parse("10.1.2.3");
	uint32_t h = lg_flow_hash(src.b.data(), dst.b.data(), htons(40000), htons(3306), IPPROTO_TCP);
	EXPECT_EQ(h, 0xe7ef155eu); // independent Python lookup3
	EXPECT_EQ(maglev_slot(h), 11632u);
	EXPECT_EQ(maglev_slot(0xffffffffu, 13), 0xffffffffu % 13);
	EXPECT_EQ(maglev_slot(12345, 0), 0u);
}

TEST(MaglevSizes, SmallAndNonPrimeSizesFillEverySlot)
{
	auto b = pool(7);
	for (uint32_t size : {1u, 2u, 13u, 100u, 4096u}) {
		auto t = maglev_table(b, size);
		ASSERT_EQ(t.size(), size);
		for (int32_t e : t)
			ASSERT_TRUE(e >= 0 && e < 7) << "size " << size;
	}
	EXPECT_TRUE(maglev_table(b, 0).empty());
}

// The table of `b`, built three times (each must be whole); the best
// build time is printed, not asserted: a unit test is no benchmark.
std::vector<int32_t> built(const std::vector<MaglevBackend> &b, double &best_ms)
{
	best_ms = 1e9;
	std::vector<int32_t> t;
	for (int i = 0; i < 3; i++) { // best of three: the machine is shared
		auto t0 = std::chrono::steady_clock::now();
		t = maglev_table(b);
		auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
		EXPECT_EQ(std::count(t.begin(), t.end(), kMaglevNone), 0);
		best_ms = std::min(best_ms, ms.count());
	}
	return t;
}

TEST(MaglevScale, ThousandBackendsOfMixedOrSkewedWeights)
{
	auto b = pool(1000);
	for (size_t i = 0; i < b.size(); i++)
		b[i].weight = uint32_t(1 + i % 10);
	double mixed = 0, skewed = 0;
	auto t = built(b, mixed);
	ASSERT_EQ(t.size(), size_t(kSize));
	// Skewed: round by round this is 65537 rounds of 1000 backends. The
	// heavy one takes (almost) every slot.
	for (auto &x : b)
		x.weight = 1;
	b[0].weight = 0xffffffffu;
	t = built(b, skewed);
	ASSERT_EQ(t.size(), size_t(kSize));
	EXPECT_GT(std::count(t.begin(), t.end(), 0), std::ptrdiff_t(kSize) * 99 / 100);
	std::printf("perf: 1000 backends, %u slots: weights 1..10 %.2f ms, one heavy %.2f ms\n",
		    kSize, mixed, skewed);
}

} // namespace
} // namespace lg
