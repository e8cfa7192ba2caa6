#include "net.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace lg {

Addr Addr::from_v4(uint32_t h)
{
	Addr a;
	a.b[10] = a.b[11] = 0xff;
	a.b[12] = uint8_t(h >> 24);
	a.b[13] = uint8_t(h >> 16);
	a.b[14] = uint8_t(h >> 8);
	a.b[15] = uint8_t(h);
	return a;
}

std::optional<Addr> Addr::parse(std::string_view s)
{
	auto a = parse_any(s);
	if (a && a->is_v4() && s.find(':') != std::string_view::npos)
		return std::nullopt;
	return a;
}

std::optional<Addr> Addr::parse_any(std::string_view s)
{
	if (s.empty() || s.size() > 45)
		return std::nullopt;
	char buf[46];
	std::memcpy(buf, s.data(), s.size());
	buf[s.size()] = 0;
	Addr a;
	in_addr v4;
	if (s.find(':') == std::string_view::npos) {
		if (inet_pton(AF_INET, buf, &v4) != 1)
			return std::nullopt;
		return from_v4(ntohl(v4.s_addr));
	}
	if (inet_pton(AF_INET6, buf, a.b.data()) != 1)
		return std::nullopt;
	return a;
}

std::string host_port(const Addr &a, unsigned port)
{
	return a.is_v4() ? a.str() + ":" + std::to_string(port) : "[" + a.str() + "]:" + std::to_string(port);
}

bool Addr::is_v4() const
{
	for (int i = 0; i < 10; i++)
		if (b[i])
			return false;
	return b[10] == 0xff && b[11] == 0xff;
}

bool Addr::is_multicast_or_broadcast() const
{
	return is_v4() ? (v4() >> 28) == 0xe || v4() == 0xffffffff : b[0] == 0xff;
}

bool Addr::is_link_local() const { return !is_v4() && b[0] == 0xfe && (b[1] & 0xc0) == 0x80; }

uint32_t Addr::v4() const
{
	return uint32_t(b[12]) << 24 | uint32_t(b[13]) << 16 | uint32_t(b[14]) << 8 | b[15];
}

std::string Addr::str() const
{
	char buf[INET6_ADDRSTRLEN];
	if (is_v4()) {
		in_addr v4{htonl(this->v4())};
		inet_ntop(AF_INET, &v4, buf, sizeof buf);
	} else {
		inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
	}
	return buf;
}

static Addr mask(const Addr &a, int len)
{
	Addr m = a;
	for (int i = 0; i < 16; i++) {
		int bits = len - 8 * i;
		if (bits >= 8)
			continue;
		m.b[i] &= bits <= 0 ? 0 : uint8_t(0xff << (8 - bits));
	}
	return m;
}

std::optional<Prefix> Prefix::parse(std::string_view s, bool *host_bits_set)
{
	auto slash = s.find('/');
	auto a = Addr::parse(s.substr(0, slash));
	if (!a)
		return std::nullopt;
	int len = 128;
	if (slash != std::string_view::npos) {
		auto n = s.substr(slash + 1);
		int v = -1;
		auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
		int max = a->is_v4() ? 32 : 128;
		if (n.empty() || ec != std::errc() || p != n.data() + n.size() || v < 0 || v > max)
			return std::nullopt;
		len = a->is_v4() ? 96 + v : v;
	}
	Prefix p{mask(*a, len), len};
	if (host_bits_set)
		*host_bits_set = p.addr != *a;
	return p;
}

bool Prefix::is_v4() const { return len >= 96 && addr.is_v4(); }

// Families never mix: ::/0 does not contain 10.0.0.1.
bool Prefix::contains(const Addr &a) const { return a.is_v4() == is_v4() && mask(a, len) == addr; }

std::string Prefix::str() const { return addr.str() + "/" + std::to_string(family_len()); }

bool azure_reserved(const Prefix &p, const Addr &a)
{
	if (!p.is_v4() || !p.contains(a))
		return false;
	uint32_t off = a.v4() - p.addr.v4(), host_bits = uint32_t(32 - p.family_len());
	return off < 4 || off == (host_bits >= 32 ? UINT32_MAX : (uint32_t(1) << host_bits) - 1);
}

Prefix any_v4() { return Prefix{Addr::from_v4(0), 96}; }
Prefix any_v6() { return Prefix{Addr{}, 0}; }

} // namespace lg
