#include "maglev.hpp"

#include <lg_hash.h>

#include <algorithm>
#include <functional>
#include <numeric>

namespace lg {

MaglevPermutation maglev_permutation(const Addr &address, uint16_t port, uint32_t size)
{
	if (size <= 1)
		return {0, size};
	uint32_t w[5];
	for (int i = 0; i < 4; i++)
		w[i] = uint32_t(address.b[4 * i]) << 24 | uint32_t(address.b[4 * i + 1]) << 16 |
		       uint32_t(address.b[4 * i + 2]) << 8 | uint32_t(address.b[4 * i + 3]);
	w[4] = port;
	MaglevPermutation p;
	p.offset = lg_jhash2(w, 5, kMaglevOffsetSeed) % size;
	p.skip = lg_jhash2(w, 5, kMaglevSkipSeed) % (size - 1) + 1;
	// A no-op for a prime size; otherwise keeps the walk a full cycle.
	while (std::gcd(p.skip, size) != 1)
		p.skip = p.skip + 1 < size ? p.skip + 1 : 1;
	return p;
}

namespace {

struct Member {
	const MaglevBackend *b;
	int32_t index; // in the caller's vector
};

bool same_identity(const MaglevBackend &x, const MaglevBackend &y)
{
	return x.address == y.address && x.port == y.port;
}

} // namespace

std::vector<int32_t> maglev_table(const std::vector<MaglevBackend> &backends, uint32_t size)
{
	std::vector<int32_t> table(size, kMaglevNone);
	if (size == 0)
		return table;

	std::vector<Member> all;
	all.reserve(backends.size());
	for (size_t i = 0; i < backends.size(); i++)
		all.push_back({&backends[i], int32_t(i)});
	// Identity order (address, then port) fixes the fill order whatever the
	// caller's order: that makes the table a function of the set. Within one
	// identity: largest weight first, then lowest index, so the copy kept
	// below does not depend on the caller's order either.
	std::sort(all.begin(), all.end(), [](const Member &x, const Member &y) {
		if (x.b->address != y.b->address)
			return x.b->address < y.b->address;
		if (x.b->port != y.b->port)
			return x.b->port < y.b->port;
		if (x.b->weight != y.b->weight)
			return x.b->weight > y.b->weight;
		return x.index < y.index;
	});
	std::vector<Member> m;
	for (const Member &x : all)
		if (x.b->weight > 0 && (m.empty() || !same_identity(*m.back().b, *x.b)))
			m.push_back(x);
	if (m.empty())
		return table;

	const uint32_t n = uint32_t(m.size());
	uint64_t max_weight = 0;
	std::vector<uint32_t> cur(n), skip(n);
	for (uint32_t i = 0; i < n; i++) {
		MaglevPermutation p = maglev_permutation(m[i].b->address, m[i].b->port, size);
		cur[i] = p.offset;
		skip[i] = p.skip;
		max_weight = std::max<uint64_t>(max_weight, m[i].b->weight);
	}

	// Katran's MaglevHashV2 fill: each round every backend (in identity
	// order) earns its weight in credit and claims its next free preferred
	// slot once the credit reaches the largest weight. After round r a
	// backend has claimed floor(r * w / max) times, so its k-th claim falls
	// in round ceil(k * max / w): a heap of (round, backend) replays the same
	// claims in the same order without visiting idle backends in each round,
	// which a heavily skewed weight set would make 65537 rounds * N long.
	using Claim = std::pair<uint64_t, uint32_t>; // round, member
	auto round_of = [&](uint64_t k, uint32_t i) {
		uint64_t w = m[i].b->weight;
		return (k * max_weight + w - 1) / w;
	};
	std::vector<uint64_t> claims(n, 0);
	std::vector<Claim> heap;
	heap.reserve(n);
	for (uint32_t i = 0; i < n; i++)
		heap.push_back({round_of(1, i), i});
	std::make_heap(heap.begin(), heap.end(), std::greater<>());
	for (uint32_t filled = 0; filled < size; filled++) {
		std::pop_heap(heap.begin(), heap.end(), std::greater<>());
		uint32_t i = heap.back().second;
		while (table[cur[i]] != kMaglevNone)
			cur[i] = uint32_t((uint64_t(cur[i]) + skip[i]) % size);
		table[cur[i]] = m[i].index;
		heap.back().first = round_of(++claims[i] + 1, i);
		std::push_heap(heap.begin(), heap.end(), std::greater<>());
	}
	return table;
}

uint32_t maglev_slot(uint32_t flow_hash, uint32_t size)
{
	return size == 0 ? 0 : flow_hash % size;
}

} // namespace lg
