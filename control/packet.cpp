#include "packet.hpp"

#include <cstdio>
#include <cstring>

extern "C" {
#include "lg_limits.h"
}

namespace lg {

std::optional<Mac> parse_mac(const std::string &s)
{
	Mac m;
	unsigned v[6];
	char tail;
	if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return std::nullopt;
	for (int i = 0; i < 6; i++)
		m[i] = uint8_t(v[i]);
	return m;
}

std::string mac_str(const Mac &m)
{
	char b[18];
	std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	return b;
}

uint16_t rd16(std::span<const uint8_t> f, size_t off) { return uint16_t(f[off] << 8 | f[off + 1]); }
uint32_t rd32(std::span<const uint8_t> f, size_t off) { return uint32_t(rd16(f, off)) << 16 | rd16(f, off + 2); }
void wr16(std::span<uint8_t> f, size_t off, uint16_t v)
{
	f[off] = uint8_t(v >> 8);
	f[off + 1] = uint8_t(v);
}

bool icmp_is_error(int family, uint8_t t)
{
	if (family == 4)
		return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
	return t >= 1 && t <= 4;
}
bool icmp_is_echo_request(int family, uint8_t t) { return family == 4 ? t == 8 : t == 128; }
bool icmp_is_echo_reply(int family, uint8_t t) { return family == 4 ? t == 0 : t == 129; }

static bool is_ipv6_ext(uint8_t nh)
{
	// Walked extension headers; AH and ESP end the walk (NSG protocols of their own).
	return nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 135 || nh == 139 || nh == 140;
}

// Bytes of L4 header that must be present before ports are read.
static size_t l4_min(uint8_t proto)
{
	switch (proto) {
	case kProtoTcp: return 20;
	case kProtoUdp: return 8;
	case kProtoIcmp:
	case kProtoIcmp6: return 8;
	default: return 0;
	}
}

static lg_reason parse_l4(std::span<const uint8_t> f, Parsed &p)
{
	size_t need = l4_min(p.proto);
	if (p.l4 + need > p.l3_end)
		return LG_REASON_MALFORMED;
	if (p.proto == kProtoTcp) {
		size_t doff = size_t(f[p.l4 + 12] >> 4) * 4;
		if (doff < 20 || p.l4 + doff > p.l3_end)
			return LG_REASON_MALFORMED;
		p.sport = rd16(f, p.l4);
		p.dport = rd16(f, p.l4 + 2);
		p.tcp_flags = f[p.l4 + 13];
	} else if (p.proto == kProtoUdp) {
		p.sport = rd16(f, p.l4);
		p.dport = rd16(f, p.l4 + 2);
	} else if ((p.family == 4 && p.proto == kProtoIcmp) || (p.family == 6 && p.proto == kProtoIcmp6)) {
		p.icmp_type = f[p.l4];
		p.icmp_code = f[p.l4 + 1];
		p.icmp_id = rd16(f, p.l4 + 4);
	}
	p.has_l4 = true;
	return LG_REASON_NONE;
}

// IPv4 options f[off, off + n) (RFC 791): a source route (LSRR 0x83, SSRR
// 0x89) makes the destination the next hop, not the end (docs/decisions.md);
// an option that runs past the header is malformed.
static lg_reason ipv4_options(std::span<const uint8_t> f, size_t off, size_t n)
{
	for (size_t pos = 0; pos < n;) {
		uint8_t t = f[off + pos];
		if (t == 0) // end of the list
			break;
		if (t == 1) { // no-op
			pos++;
			continue;
		}
		if (pos + 1 >= n)
			return LG_REASON_MALFORMED;
		size_t l = f[off + pos + 1];
		if (l < 2 || pos + l > n)
			return LG_REASON_MALFORMED;
		if (t == 0x83 || t == 0x89)
			return LG_REASON_IP_SOURCE_ROUTE;
		pos += l;
	}
	return LG_REASON_NONE;
}

static lg_reason parse_ipv4(std::span<const uint8_t> f, Parsed &p)
{
	size_t l3 = p.l3;
	if (l3 + 20 > f.size() || f[l3] >> 4 != 4)
		return LG_REASON_MALFORMED;
	size_t ihl = size_t(f[l3] & 0xf) * 4;
	size_t tot = rd16(f, l3 + 2);
	if (ihl < 20 || l3 + ihl > f.size() || tot < ihl || l3 + tot > f.size())
		return LG_REASON_MALFORMED;
	p.family = 4;
	p.l3_end = l3 + tot;
	p.ttl = f[l3 + 8];
	p.proto = f[l3 + 9];
	p.src = Addr::from_v4(rd32(f, l3 + 12));
	p.dst = Addr::from_v4(rd32(f, l3 + 16));
	if (p.proto == 0) // HOPOPT means nothing in IPv4
		return LG_REASON_MALFORMED;
	uint16_t fo = rd16(f, l3 + 6);
	bool more = fo & 0x2000;
	p.frag_offset = uint32_t(fo & 0x1fff) * 8;
	p.frag_id = rd16(f, l3 + 4);
	p.frag_payload = uint32_t(tot - ihl);
	p.fragment = more || p.frag_offset;
	p.first_fragment = p.fragment && p.frag_offset == 0;
	if (p.fragment && p.frag_offset + p.frag_payload > 65535)
		return LG_REASON_MALFORMED;
	if (lg_reason r = ipv4_options(f, l3 + 20, ihl - 20); r != LG_REASON_NONE)
		return r;
	p.l4 = l3 + ihl;
	if (p.fragment && !p.first_fragment)
		return LG_REASON_NONE;
	return parse_l4(f, p);
}

static lg_reason parse_ipv6(std::span<const uint8_t> f, Parsed &p)
{
	size_t l3 = p.l3;
	if (l3 + 40 > f.size() || f[l3] >> 4 != 6)
		return LG_REASON_MALFORMED;
	size_t plen = rd16(f, l3 + 4);
	if (plen == 0 || l3 + 40 + plen > f.size()) // jumbograms are not forwarded
		return LG_REASON_MALFORMED;
	p.family = 6;
	p.l3_end = l3 + 40 + plen;
	p.ttl = f[l3 + 7];
	std::memcpy(p.src.b.data(), &f[l3 + 8], 16);
	std::memcpy(p.dst.b.data(), &f[l3 + 24], 16);
	// IPv4-mapped addresses are not on the wire (RFC 4291 2.5.5.2), and
	// IPv4 is held mapped: one would match IPv4 ranges, objects and flows.
	if (p.src.is_v4() || p.dst.is_v4())
		return LG_REASON_MALFORMED;
	uint8_t nh = f[l3 + 6];
	size_t off = l3 + 40;
	int n = 0;
	bool seen_frag = false;
	while (is_ipv6_ext(nh)) {
		if ((nh == 0 && n != 0) || (nh == 44 && seen_frag) || ++n > LG_MAX_IPV6_EXT)
			return LG_REASON_IPV6_EXT_CHAIN;
		if (off + 8 > p.l3_end)
			return LG_REASON_MALFORMED;
		uint8_t next = f[off];
		if (nh == 44) {
			seen_frag = true;
			uint16_t fo = rd16(f, off + 2);
			bool more = fo & 1;
			uint32_t foff = uint32_t(fo >> 3) * 8;
			if (more || foff) { // an atomic fragment (offset 0, M=0) is a whole packet
				p.fragment = true;
				p.first_fragment = foff == 0;
				p.frag_offset = foff;
				p.frag_id = rd32(f, off + 4);
				p.frag_payload = uint32_t(p.l3_end - (off + 8));
				if (foff + p.frag_payload > 65535)
					return LG_REASON_MALFORMED;
			}
			off += 8;
			nh = next;
			if (p.fragment && !p.first_fragment)
				break; // the rest is payload of a later fragment
			continue;
		}
		// A Routing header with segments left names the next hop, not the
		// destination: refused (docs/decisions.md).
		if (nh == 43 && f[off + 3] != 0)
			return LG_REASON_IPV6_EXT_CHAIN;
		size_t len = (size_t(f[off + 1]) + 1) * 8;
		if (off + len > p.l3_end)
			return LG_REASON_MALFORMED;
		off += len;
		nh = next;
	}
	p.proto = nh;
	p.l4 = off;
	if (p.fragment && !p.first_fragment)
		return LG_REASON_NONE;
	return parse_l4(f, p);
}

lg_reason parse_frame(std::span<const uint8_t> f, Parsed &p)
{
	p = Parsed{};
	if (f.size() < 14)
		return LG_REASON_MALFORMED;
	uint16_t et = rd16(f, 12);
	size_t off = 14;
	while (et == kEthVlan || et == kEthQinQ) {
		if (p.vlans == LG_MAX_VLAN_DEPTH)
			return LG_REASON_VLAN_DEPTH;
		if (off + 4 > f.size())
			return LG_REASON_MALFORMED;
		et = rd16(f, off + 2);
		off += 4;
		p.vlans++;
	}
	p.ethertype = et;
	p.l3 = off;
	if (et == kEthIPv4)
		return parse_ipv4(f, p);
	if (et == kEthIPv6)
		return parse_ipv6(f, p);
	return LG_REASON_NONE;
}

bool parse_inner(std::span<const uint8_t> f, size_t off, size_t end, int family, Parsed &p)
{
	p = Parsed{};
	p.l3 = off;
	if (family == 4) {
		if (off + 20 > end || f[off] >> 4 != 4)
			return false;
		size_t ihl = size_t(f[off] & 0xf) * 4;
		if (ihl < 20 || off + ihl + 8 > end)
			return false;
		p.family = 4;
		p.proto = f[off + 9];
		p.src = Addr::from_v4(rd32(f, off + 12));
		p.dst = Addr::from_v4(rd32(f, off + 16));
		if (rd16(f, off + 6) & 0x1fff) // a quoted later fragment has no ports
			return false;
		p.l4 = off + ihl;
	} else {
		if (off + 40 + 8 > end || f[off] >> 4 != 6)
			return false;
		p.family = 6;
		p.proto = f[off + 6];
		std::memcpy(p.src.b.data(), &f[off + 8], 16);
		std::memcpy(p.dst.b.data(), &f[off + 24], 16);
		p.l4 = off + 40; // quotes with extension headers are not matched
	}
	p.l3_end = end;
	if (p.proto == kProtoTcp || p.proto == kProtoUdp) {
		p.sport = rd16(f, p.l4);
		p.dport = rd16(f, p.l4 + 2);
	} else if ((family == 4 && p.proto == kProtoIcmp) || (family == 6 && p.proto == kProtoIcmp6)) {
		p.icmp_type = f[p.l4];
		p.icmp_code = f[p.l4 + 1];
		p.icmp_id = rd16(f, p.l4 + 4);
	} else {
		return false;
	}
	p.has_l4 = true;
	return true;
}

uint16_t inet_checksum(std::span<const uint8_t> d, uint32_t s)
{
	size_t i = 0;
	for (; i + 1 < d.size(); i += 2)
		s += uint32_t(d[i] << 8 | d[i + 1]);
	if (i < d.size())
		s += uint32_t(d[i] << 8);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return uint16_t(~s);
}

uint32_t pseudo_sum(const Addr &src, const Addr &dst, uint8_t proto, uint32_t len, bool v4)
{
	uint32_t s = 0;
	for (int i = v4 ? 6 : 0; i < 8; i++) {
		s += uint32_t(src.b[2 * i] << 8 | src.b[2 * i + 1]);
		s += uint32_t(dst.b[2 * i] << 8 | dst.b[2 * i + 1]);
	}
	s += proto;
	s += len >> 16;
	s += len & 0xffff;
	return s;
}

// ---- builder ----

PacketBuilder &PacketBuilder::eth(const Mac &s, const Mac &d)
{
	src_ = s;
	dst_ = d;
	return *this;
}
PacketBuilder &PacketBuilder::vlan(uint16_t tpid, uint16_t vid)
{
	tags_.push_back({tpid, vid});
	return *this;
}
PacketBuilder &PacketBuilder::ipv4(const std::string &s, const std::string &d, uint8_t ttl)
{
	family_ = 4;
	isrc_ = *Addr::parse(s);
	idst_ = *Addr::parse(d);
	ttl_ = ttl;
	return *this;
}
PacketBuilder &PacketBuilder::ipv6(const std::string &s, const std::string &d, uint8_t hl)
{
	family_ = 6;
	isrc_ = *Addr::parse_any(s);
	idst_ = *Addr::parse_any(d);
	ttl_ = hl;
	return *this;
}
PacketBuilder &PacketBuilder::ipv4_options(std::vector<uint8_t> o)
{
	while (o.size() % 4)
		o.push_back(0);
	v4opts_ = std::move(o);
	return *this;
}
PacketBuilder &PacketBuilder::ipv4_fragment(uint16_t id, uint16_t off, bool more)
{
	frag_ = true;
	frag_id_ = id;
	frag_off_ = off;
	frag_more_ = more;
	return *this;
}
PacketBuilder &PacketBuilder::ipv6_ext(uint8_t type, std::vector<uint8_t> body)
{
	while ((body.size() + 2) % 8)
		body.push_back(0);
	ext_.push_back({type, std::move(body)});
	return *this;
}
PacketBuilder &PacketBuilder::ipv6_fragment(uint32_t id, uint16_t off, bool more)
{
	uint16_t fo = uint16_t((off / 8) << 3 | (more ? 1 : 0));
	ext_.push_back({44, {uint8_t(fo >> 8), uint8_t(fo), uint8_t(id >> 24), uint8_t(id >> 16), uint8_t(id >> 8), uint8_t(id)}});
	return *this;
}
PacketBuilder &PacketBuilder::tcp(uint16_t sp, uint16_t dp, uint8_t flags, uint32_t seq, uint32_t ack)
{
	proto_ = kProtoTcp;
	l4_ = {uint8_t(sp >> 8), uint8_t(sp), uint8_t(dp >> 8), uint8_t(dp),
	       uint8_t(seq >> 24), uint8_t(seq >> 16), uint8_t(seq >> 8), uint8_t(seq),
	       uint8_t(ack >> 24), uint8_t(ack >> 16), uint8_t(ack >> 8), uint8_t(ack),
	       0x50, flags, 0xff, 0xff, 0, 0, 0, 0};
	l4_csum_ = true;
	return *this;
}
PacketBuilder &PacketBuilder::udp(uint16_t sp, uint16_t dp)
{
	proto_ = kProtoUdp;
	l4_ = {uint8_t(sp >> 8), uint8_t(sp), uint8_t(dp >> 8), uint8_t(dp), 0, 0, 0, 0};
	l4_csum_ = true;
	return *this;
}
PacketBuilder &PacketBuilder::icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq)
{
	proto_ = family_ == 6 ? kProtoIcmp6 : kProtoIcmp;
	l4_ = {type, code, 0, 0, uint8_t(id >> 8), uint8_t(id), uint8_t(seq >> 8), uint8_t(seq)};
	l4_csum_ = true;
	return *this;
}
PacketBuilder &PacketBuilder::raw_l4(uint8_t proto, std::vector<uint8_t> b)
{
	proto_ = proto;
	l4_ = std::move(b);
	l4_csum_ = false;
	return *this;
}
PacketBuilder &PacketBuilder::payload(std::vector<uint8_t> b)
{
	payload_ = std::move(b);
	return *this;
}
PacketBuilder &PacketBuilder::payload(const std::string &t) { return payload(std::vector<uint8_t>(t.begin(), t.end())); }

PacketBuilder &PacketBuilder::icmp_error(uint8_t type, uint8_t code, std::span<const uint8_t> inner, size_t quote)
{
	Parsed ip;
	parse_frame(inner, ip);
	size_t end = std::min(inner.size(), ip.l3 + quote);
	icmp(type, code, 0, 0);
	payload(std::vector<uint8_t>(inner.begin() + long(ip.l3), inner.begin() + long(end)));
	return *this;
}

PacketBuilder &PacketBuilder::arp_request(const Mac &sha, const std::string &spa, const std::string &tpa)
{
	auto s = Addr::parse(spa)->v4(), t = Addr::parse(tpa)->v4();
	arp_ = {0, 1, 8, 0, 6, 4, 0, 1};
	arp_.insert(arp_.end(), sha.begin(), sha.end());
	for (int i = 3; i >= 0; i--)
		arp_.push_back(uint8_t(s >> (8 * i)));
	for (int i = 0; i < 6; i++)
		arp_.push_back(0);
	for (int i = 3; i >= 0; i--)
		arp_.push_back(uint8_t(t >> (8 * i)));
	dst_ = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	src_ = sha;
	return *this;
}

std::vector<uint8_t> PacketBuilder::build() const
{
	std::vector<uint8_t> f(dst_.begin(), dst_.end());
	f.insert(f.end(), src_.begin(), src_.end());
	uint16_t et = arp_.empty() ? (family_ == 6 ? kEthIPv6 : kEthIPv4) : kEthArp;
	for (auto &t : tags_) {
		f.push_back(uint8_t(t.tpid >> 8));
		f.push_back(uint8_t(t.tpid));
		f.push_back(uint8_t(t.vid >> 8));
		f.push_back(uint8_t(t.vid));
	}
	f.push_back(uint8_t(et >> 8));
	f.push_back(uint8_t(et));
	if (!arp_.empty()) {
		f.insert(f.end(), arp_.begin(), arp_.end());
		f.resize(std::max<size_t>(f.size(), 60), 0);
		return f;
	}
	std::vector<uint8_t> l4 = l4_;
	l4.insert(l4.end(), payload_.begin(), payload_.end());
	if (l4_csum_) {
		size_t co = proto_ == kProtoTcp ? 16 : proto_ == kProtoUdp ? 6 : 2;
		uint32_t ps = proto_ == kProtoIcmp ? 0 : pseudo_sum(isrc_, idst_, proto_, uint32_t(l4.size()), family_ == 4);
		if (proto_ == kProtoUdp)
			wr16(l4, 4, uint16_t(l4.size()));
		uint16_t c = inet_checksum(l4, ps);
		if (proto_ == kProtoUdp && c == 0)
			c = 0xffff;
		wr16(l4, co, c);
	}
	size_t l3 = f.size();
	if (family_ == 4) {
		size_t ihl = 20 + v4opts_.size();
		size_t tot = ihl + l4.size();
		uint16_t fo = frag_ ? uint16_t((frag_more_ ? 0x2000 : 0) | (frag_off_ / 8)) : 0;
		f.insert(f.end(), {uint8_t(0x40 | ihl / 4), 0, uint8_t(tot >> 8), uint8_t(tot),
				   uint8_t(frag_id_ >> 8), uint8_t(frag_id_), uint8_t(fo >> 8), uint8_t(fo), ttl_, proto_, 0, 0});
		f.insert(f.end(), isrc_.b.begin() + 12, isrc_.b.end());
		f.insert(f.end(), idst_.b.begin() + 12, idst_.b.end());
		f.insert(f.end(), v4opts_.begin(), v4opts_.end());
		wr16(f, l3 + 10, inet_checksum(std::span(f).subspan(l3, ihl)));
	} else if (family_ == 6) {
		std::vector<uint8_t> ext;
		for (size_t i = 0; i < ext_.size(); i++) {
			uint8_t next = i + 1 < ext_.size() ? ext_[i + 1].type : proto_;
			auto &b = ext_[i].body;
			ext.push_back(next);
			ext.push_back(ext_[i].type == 44 ? 0 : uint8_t((b.size() + 2) / 8 - 1));
			ext.insert(ext.end(), b.begin(), b.end());
		}
		size_t plen = ext.size() + l4.size();
		uint8_t first = ext_.empty() ? proto_ : ext_[0].type;
		f.insert(f.end(), {0x60, 0, 0, 0, uint8_t(plen >> 8), uint8_t(plen), first, ttl_});
		f.insert(f.end(), isrc_.b.begin(), isrc_.b.end());
		f.insert(f.end(), idst_.b.begin(), idst_.b.end());
		f.insert(f.end(), ext.begin(), ext.end());
	}
	f.insert(f.end(), l4.begin(), l4.end());
	if (f.size() < 60)
		f.resize(60, 0); // Ethernet minimum; padding lies beyond the IP datagram
	return f;
}

} // namespace lg
