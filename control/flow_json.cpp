#include "flow_json.hpp"

#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "net.hpp"
#include "table_eval.hpp"

namespace lg {

namespace {

std::string key_str(const lg_flow_key &k)
{
	auto ep = [](const uint8_t *a16, uint16_t port_be) {
		Addr a;
		std::memcpy(a.b.data(), a16, 16);
		return host_port(a, ntohs(port_be));
	};
	return std::to_string(k.vni) + " " + std::to_string(k.proto) + " " + ep(k.src, k.sport) + " > " +
	       ep(k.dst, k.dport);
}

const char *state_word(uint8_t s)
{
	switch (s) {
	case LG_CT_NEW: return "new";
	case LG_CT_ESTABLISHED: return "established";
	case LG_CT_CLOSING: return "closing";
	case LG_CT_CLOSED: return "closed";
	}
	return "unknown";
}

const char *kind_word(uint8_t k)
{
	switch (k) {
	case LG_DEST_ROUTED: return "routed";
	case LG_DEST_PRIVATE_ENDPOINT: return "private-endpoint";
	case LG_DEST_PUBLIC_ENDPOINT: return "public-endpoint";
	}
	return "unknown";
}

} // namespace

nlohmann::json flow_to_json(const lg_flow_entry &e, const CompiledTables &live)
{
	lg_flow_key r;
	lg_flow_reply_key(&e, &r);
	// A flow of an older generation may carry an index that has moved since;
	// it is re-checked at its next packet.
	const auto &names = e.kind == LG_DEST_PRIVATE_ENDPOINT ? live.pe_names : live.server_names;
	nlohmann::json object =
		e.kind != LG_DEST_ROUTED && e.object_id < names.size() ? nlohmann::json(names[e.object_id]) : nullptr;
	nlohmann::json backend = nullptr;
	if (e.kind != LG_DEST_ROUTED) {
		Addr a;
		std::memcpy(a.b.data(), e.nat_addr, 16);
		backend = host_port(a, ntohs(e.nat_port));
	}
	return {{"original", key_str(e.orig)},
		{"reply", key_str(r)},
		{"state", state_word(e.state)},
		{"kind", kind_word(e.kind)},
		{"object", object},
		{"backend", backend},
		{"generation", e.generation},
		{"expiresNs", e.expires_ns},
		{"packets", e.packets},
		{"bytes", e.bytes}};
}

std::string to_hex(const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	std::string out(2 * n, '0');
	const auto *b = static_cast<const uint8_t *>(p);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	return out;
}

bool from_hex(const std::string &text, void *p, size_t n)
{
	auto nibble = [](char c) {
		return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
	};
	if (text.size() != 2 * n)
		return false;
	auto *b = static_cast<uint8_t *>(p);
	for (size_t i = 0; i < n; i++) {
		int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		b[i] = uint8_t(hi << 4 | lo);
	}
	return true;
}

} // namespace lg
