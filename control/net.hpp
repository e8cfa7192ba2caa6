// IP addresses and prefixes. Every address is 16 bytes; IPv4 is stored as
// ::ffff:a.b.c.d so that one prefix type and one trie serve both families.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lg {

struct Addr {
	std::array<uint8_t, 16> b{};

	static Addr from_v4(uint32_t host_order);
	// Text as written by people and ARM: IPv4 as a.b.c.d only. IPv6 text in
	// ::ffff:0:0/96 (IPv4-mapped) is refused: it would be held as IPv4, and
	// the dataplanes drop such packets as malformed (docs/decisions.md).
	static std::optional<Addr> parse(std::string_view s);
	// Any address text, mapped ones included (packet builders of tests).
	static std::optional<Addr> parse_any(std::string_view s);
	bool is_v4() const;
	// The host's business before any policy (lg_process): IPv4 224/4 and
	// 255.255.255.255, IPv6 ff00::/8.
	bool is_multicast_or_broadcast() const;
	bool is_link_local() const; // IPv6 fe80::/10
	uint32_t v4() const; // host order; only for is_v4()
	std::string str() const;
	auto operator<=>(const Addr &) const = default;
};

struct Prefix {
	Addr addr;    // masked
	int len = 0;  // in the 128-bit space: an IPv4 /n is 96 + n

	// "10.0.0.0/8", "2001:db8::/32", or a bare address (a host prefix).
	// host_bits_set, when given, reports whether the text had bits past len.
	static std::optional<Prefix> parse(std::string_view s, bool *host_bits_set = nullptr);
	static Prefix host(const Addr &a) { return Prefix{a, 128}; }
	bool is_v4() const;
	int family_len() const { return is_v4() ? len - 96 : len; }
	bool contains(const Addr &a) const;
	bool contains(const Prefix &p) const { return p.len >= len && contains(p.addr); }
	bool overlaps(const Prefix &p) const { return contains(p) || p.contains(*this); }
	std::string str() const;
	auto operator<=>(const Prefix &) const = default;
};

// One of the addresses Azure keeps for itself in an IPv4 subnet `p` that
// holds `a`: the first four (network, gateway, two for DNS) and the last
// (broadcast). IPv6 subnets: none.
bool azure_reserved(const Prefix &p, const Addr &a);

// "a.b.c.d:port" or "[v6]:port", as --backend takes it.
std::string host_port(const Addr &a, unsigned port);

// Every address of one family: 0.0.0.0/0 and ::/0 (the IPv4 one is ::ffff:0:0/96).
Prefix any_v4();
Prefix any_v6();

} // namespace lg
