// Weight-aware Maglev consistent hashing (SPEC §5): the per-server lookup
// table that maps a flow's slot to a backend. Built on the control thread,
// read by the dataplanes with one load per packet. See docs/maglev.md.
#pragma once

#include "net.hpp"

#include <lg_limits.h>

#include <cstdint>
#include <vector>

namespace lg {

struct MaglevBackend {
	Addr address;
	uint16_t port = 0;   // host order
	uint32_t weight = 0; // 0: takes no slots (drained or unhealthy)
};

inline constexpr int32_t kMaglevNone = -1;

// Seeds of lg_jhash2 for a backend's offset and skip. Part of the contract:
// hosts built with different seeds disagree on every flow.
inline constexpr uint32_t kMaglevOffsetSeed = 0x4c474d30u; // "LGM0"
inline constexpr uint32_t kMaglevSkipSeed = 0x4c474d31u;   // "LGM1"

// A backend's place in the fill: its first preferred slot and its stride.
struct MaglevPermutation {
	uint32_t offset;
	uint32_t skip;
};

// offset = lg_jhash2(w, 5, kMaglevOffsetSeed) % size and
// skip = lg_jhash2(w, 5, kMaglevSkipSeed) % (size - 1) + 1, where w[0..3] are
// the 16 address bytes read big-endian (as lg_flow_hash reads addresses) and
// w[4] is the port. For a size that is not prime the skip is raised to the
// next value coprime with size, so every permutation still visits every slot.
MaglevPermutation maglev_permutation(const Addr &address, uint16_t port, uint32_t size);

// Lookup table of `size` (prime, default LG_MAGLEV_SIZE = 65537) entries, each
// an index into `backends`; every entry kMaglevNone when no backend has
// weight > 0. A pure function of the backend set: the order of `backends`
// does not matter. Entries that repeat one address:port are one backend with
// the largest of their weights, named by the lowest index with that weight.
// size 0 gives an empty table.
std::vector<int32_t> maglev_table(const std::vector<MaglevBackend> &backends,
				  uint32_t size = LG_MAGLEV_SIZE);

// Slot of a flow: lg_flow_hash(...) % size, the expression the BPF and DPDK
// dataplanes use. size 0 gives 0.
uint32_t maglev_slot(uint32_t flow_hash, uint32_t size = LG_MAGLEV_SIZE);

} // namespace lg
