// The policy compiler: lowers one validated State into the generation tables
// of abi/lg_tables.h, which the XDP program and the DPDK fast path load. No
// libbpf or DPDK here: it produces plain vectors.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"
#include "result.hpp"

extern "C" {
#include "lg_tables.h"
}

namespace lg {

// Which VNet's traffic arrives on an interface ("" for none: backend side).
struct InterfaceBinding {
	uint32_t ifindex = 0;
	std::string vnet;
	std::array<uint8_t, 6> mac{}; // answers ARP / NDP for served addresses
};

struct CompiledTables {
	uint64_t generation = 0;
	lg_gcfg gcfg{};
	std::vector<lg_ivl> ivl;
	std::vector<lg_bitmap> bitmaps;
	std::vector<lg_nsg_dir> nsg_dirs;
	std::vector<lg_rule> rules;
	std::vector<std::pair<lg_subnet_key, lg_subnet>> subnets;
	std::vector<std::pair<lg_addr_key, lg_nic>> nics;
	std::vector<std::pair<lg_addr_key, lg_pe>> pes;
	std::vector<std::pair<lg_pubip_key, uint32_t>> pubips; // -> lg_server index
	std::vector<lg_server> servers;
	std::vector<lg_fwrange> fwranges;
	std::vector<lg_vnetrule_key> vnetrules;
	std::vector<lg_backend> backends;
	std::vector<uint32_t> maglev; // LG_MAGLEV_SIZE entries per table
	// Names the contents of `maglev`: two tables with the same nonzero
	// version hold the same maglev array, so a publish may skip comparing
	// it (512 KB for two servers). Set by compile() with a cache; 0 means
	// unknown. Whoever edits `maglev` afterwards must set it to 0.
	uint64_t maglev_version = 0;
	std::vector<std::pair<uint32_t, lg_iface>> ifaces;

	// Names behind the indices: counters, explain and flow listings.
	std::vector<std::string> nsg_names;    // lg_nsg_dir::nsg
	std::vector<std::string> rule_names;   // lg_rule::counter -> "nsg/rule"
	std::vector<std::string> pe_names;     // lg_pe::id
	std::vector<std::string> server_names; // lg_server index
	std::vector<std::string> subnet_names; // lg_subnet::id -> "vnet/subnet"
};

// Carried from one compile to the next (linkgated keeps one): a server's
// Maglev tables are a pure function of its backend list (addresses, ports
// and weights, in order), so a list the previous compile saw reuses its
// tables instead of filling 65,537 slots per family again. The output is
// byte-identical to a compile without the cache (tests/compiler). It holds
// the lists of the last successful compile only, so it stays the size of the
// live state's tables.
struct CompileCache {
	// Per family (0: IPv4, 1: IPv6): LG_MAGLEV_SIZE entries, each the
	// backend's position in the server's list or LG_NONE; empty when no
	// backend of that family has weight > 0 (no table).
	struct Maglev {
		std::vector<uint32_t> local[2];
	};
	std::map<std::string, std::shared_ptr<const Maglev>> maglev; // by backend list
	uint64_t maglev_built = 0, maglev_reused = 0;                 // lists filled / reused, over the cache's life
	// How the last compile laid its tables out in CompiledTables::maglev
	// (each table, its family and the server's first backend, in order) and
	// the version it stamped: the same layout gives the same array.
	struct Placement {
		std::shared_ptr<const Maglev> tables;
		int family = 0;
		uint32_t base = 0;
		bool operator==(const Placement &o) const
		{
			return tables == o.tables && family == o.family && base == o.base;
		}
	};
	std::vector<Placement> maglev_layout;
	uint64_t maglev_version = 0;
	uint64_t maglev_moved = 0; // compiles that took the previous output's array (over the cache's life)
};

// Compile a State that validate() accepted. Errors are limits the tables
// cannot hold (e.g. more intervals than LG_BSEARCH_STEPS reaches). `cache`
// (optional) carries what a later compile can reuse; the result does not
// depend on it. `prev` (optional, only with `cache`): the previous output
// compiled with that cache, which the caller may give its Maglev array up:
// when the new array is the same (same maglev_version), it is moved out of
// prev->maglev (left empty) instead of filled again, 512 KB of memory
// traffic per two servers less. Untouched when the compile fails.
Result<CompiledTables> compile(const State &s, const std::vector<InterfaceBinding> &ifaces, uint64_t generation,
			       CompileCache *cache = nullptr, CompiledTables *prev = nullptr);

} // namespace lg
