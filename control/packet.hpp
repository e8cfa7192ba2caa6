// Frames as bytes: a plain parser for the reference evaluator (SPEC §3 step 1)
// and a fluent builder that tests, fixtures and the demo use to make frames.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "net.hpp"

extern "C" {
#include "lg_reasons.h"
}

namespace lg {

using Mac = std::array<uint8_t, 6>;
std::optional<Mac> parse_mac(const std::string &s);
std::string mac_str(const Mac &m);

inline constexpr uint16_t kEthIPv4 = 0x0800;
inline constexpr uint16_t kEthIPv6 = 0x86dd;
inline constexpr uint16_t kEthArp = 0x0806;
inline constexpr uint16_t kEthVlan = 0x8100;
inline constexpr uint16_t kEthQinQ = 0x88a8;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoEsp = 50;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmp6 = 58;

inline constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10;

// What the parser learnt of an IP packet. Offsets index the frame.
struct Parsed {
	uint16_t ethertype = 0; // after the VLAN tags
	int vlans = 0;
	size_t l3 = 0;     // IP header
	size_t l3_end = 0; // end of the IP datagram (frame padding beyond it is kept)
	int family = 0;    // 4 or 6; 0 for non-IP
	Addr src, dst;
	uint8_t proto = 0; // final protocol after IPv6 extension headers
	uint8_t ttl = 0;
	size_t l4 = 0;     // L4 header (valid when has_l4)
	bool has_l4 = false;
	// Fragments: fragment = more follow or offset > 0 (atomic fragments are not).
	bool fragment = false;
	bool first_fragment = false;
	uint32_t frag_id = 0;
	uint32_t frag_offset = 0; // bytes
	uint32_t frag_payload = 0; // bytes of fragmentable payload this fragment carries
	// L4 fields, host order, valid when has_l4.
	uint16_t sport = 0, dport = 0;
	uint8_t tcp_flags = 0;
	uint8_t icmp_type = 0, icmp_code = 0;
	uint16_t icmp_id = 0;
	bool has_ports() const { return has_l4 && (proto == kProtoTcp || proto == kProtoUdp); }
	bool is_icmp() const { return proto == kProtoIcmp || proto == kProtoIcmp6; }
};

// Parse Ethernet, VLANs, IPv4/IPv6 (extension headers) and the L4 header.
// Returns LG_REASON_NONE or the drop reason of SPEC §3 step 1. Non-IP frames
// parse fine with family 0.
lg_reason parse_frame(std::span<const uint8_t> f, Parsed &p);

// Parse the IP header quoted inside an ICMP error (starting at `off`, up to
// `end`): addresses, protocol, and ports / echo id when the first 8 bytes of
// L4 are there. Returns false when the quote is unusable.
bool parse_inner(std::span<const uint8_t> f, size_t off, size_t end, int family, Parsed &p);

bool icmp_is_error(int family, uint8_t type);
bool icmp_is_echo_request(int family, uint8_t type);
bool icmp_is_echo_reply(int family, uint8_t type);

uint16_t rd16(std::span<const uint8_t> f, size_t off);
uint32_t rd32(std::span<const uint8_t> f, size_t off);
void wr16(std::span<uint8_t> f, size_t off, uint16_t v);

// Full Internet checksum of a byte range (for builders and tests).
uint16_t inet_checksum(std::span<const uint8_t> data, uint32_t initial = 0);
// Pseudo-header sum for TCP/UDP/ICMPv6.
uint32_t pseudo_sum(const Addr &src, const Addr &dst, uint8_t proto, uint32_t len, bool v4);

// Fluent frame builder with correct lengths and checksums unless told
// otherwise. Example:
//   PacketBuilder().eth(a, b).ipv4("10.0.0.1", "10.0.0.2").tcp(1234, 3306, kTcpSyn).build()
class PacketBuilder {
public:
	PacketBuilder &eth(const Mac &src, const Mac &dst);
	PacketBuilder &vlan(uint16_t tpid, uint16_t vid);
	PacketBuilder &ipv4(const std::string &src, const std::string &dst, uint8_t ttl = 64);
	PacketBuilder &ipv6(const std::string &src, const std::string &dst, uint8_t hop_limit = 64);
	PacketBuilder &ipv4_options(std::vector<uint8_t> opts); // padded to 4 bytes
	PacketBuilder &ipv4_fragment(uint16_t id, uint16_t offset_bytes, bool more);
	// IPv6 extension header (type, body bytes after the 2-byte header, padded to 8).
	PacketBuilder &ipv6_ext(uint8_t type, std::vector<uint8_t> body = {});
	PacketBuilder &ipv6_fragment(uint32_t id, uint16_t offset_bytes, bool more);
	PacketBuilder &tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 1, uint32_t ack = 0);
	PacketBuilder &udp(uint16_t sport, uint16_t dport);
	PacketBuilder &icmp(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0);
	// L4 header given as raw bytes (protocol number set on the IP header).
	PacketBuilder &raw_l4(uint8_t proto, std::vector<uint8_t> bytes);
	PacketBuilder &payload(std::vector<uint8_t> bytes);
	PacketBuilder &payload(const std::string &text);
	// Quote a whole IP packet (an inner frame's L3 part, first `quote` bytes)
	// as the payload of an ICMP error.
	PacketBuilder &icmp_error(uint8_t type, uint8_t code, std::span<const uint8_t> inner_frame, size_t quote = 28);
	PacketBuilder &arp_request(const Mac &sha, const std::string &spa, const std::string &tpa);
	std::vector<uint8_t> build() const;

private:
	struct Tag { uint16_t tpid, vid; };
	Mac src_{0x02, 0, 0, 0, 0, 1}, dst_{0x02, 0, 0, 0, 0, 2};
	std::vector<Tag> tags_;
	int family_ = 0;
	Addr isrc_, idst_;
	uint8_t ttl_ = 64;
	std::vector<uint8_t> v4opts_;
	bool frag_ = false;
	uint32_t frag_id_ = 0;
	uint16_t frag_off_ = 0;
	bool frag_more_ = false;
	struct Ext { uint8_t type; std::vector<uint8_t> body; };
	std::vector<Ext> ext_;
	uint8_t proto_ = 0;
	std::vector<uint8_t> l4_;
	bool l4_csum_ = false; // compute TCP/UDP/ICMP checksum over l4_ + payload_
	std::vector<uint8_t> payload_;
	std::vector<uint8_t> arp_;
};

} // namespace lg
