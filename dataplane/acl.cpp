#include "acl.hpp"

#include <rte_acl.h>
#include <rte_byteorder.h>
#include <rte_errno.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

extern "C" {
#include "lg_tables.h"
}

namespace lg::dp {

namespace {

__extension__ typedef unsigned __int128 u128;

u128 load128(const uint8_t b[16])
{
	u128 v = 0;
	for (int i = 0; i < 16; i++)
		v = (v << 8) | b[i];
	return v;
}

bool has_bit(const CompiledTables &t, uint32_t bitmap, uint32_t r)
{
	return bitmap < t.bitmaps.size() && ((t.bitmaps[bitmap].w[r / 64] >> (r % 64)) & 1);
}

// Merged [lo, hi] ranges of field values where rule r's bit is set.
std::vector<std::pair<u128, u128>> field_ranges(const CompiledTables &t, const lg_span &sp, uint32_t r, u128 max)
{
	std::vector<std::pair<u128, u128>> out;
	for (uint32_t i = 0; i < sp.n; i++) {
		const lg_ivl &iv = t.ivl[sp.off + i];
		if (!has_bit(t, iv.bitmap, r))
			continue;
		u128 lo = load128(iv.lo);
		u128 hi = i + 1 < sp.n ? load128(t.ivl[sp.off + i + 1].lo) - 1 : max;
		if (!out.empty() && out.back().second + 1 == lo)
			out.back().second = hi;
		else
			out.emplace_back(lo, hi);
	}
	return out;
}

// A range as prefixes (value, length) over 128 bits.
void range_prefixes(u128 lo, u128 hi, std::vector<std::pair<u128, int>> *out)
{
	for (;;) {
		int len = 128;
		// Grow the block at lo while it stays aligned and inside the range.
		while (len > 0) {
			int nl = len - 1;
			u128 size = nl == 0 ? ~u128(0) : (u128(1) << (128 - nl)) - 1; // block size - 1
			if ((lo & size) != 0 || lo + size > hi || lo + size < lo)
				break;
			len = nl;
		}
		out->emplace_back(lo, len);
		u128 last = len == 0 ? ~u128(0) : lo + ((u128(1) << (128 - len)) - 1);
		if (last >= hi)
			return;
		lo = last + 1;
	}
}

void set_addr(uint32_t w[4], uint8_t bits[4], u128 v, int len)
{
	for (int i = 0; i < 4; i++) {
		w[i] = uint32_t(v >> (96 - 32 * i));
		int b = len - 32 * i;
		bits[i] = uint8_t(b <= 0 ? 0 : b >= 32 ? 32 : b);
		if (bits[i] == 0)
			w[i] = 0;
	}
}

const uint8_t kClassProtos[LG_PC__COUNT][2] = {{6, 0}, {17, 0}, {1, 58}, {50, 0}, {51, 0}, {0, 0}};

// Up to eleven fields a rule: protocol, four source words, four destination
// words, the two ports. Which of them a context reads depends on its kind.
constexpr uint32_t kMaxFields = 11;
RTE_ACL_RULE_DEF(LgAclRule, kMaxFields);

// The four contexts of a direction (AclClassifier::kind_of): IPv4-mapped
// inputs read only the addresses' last word, portless inputs no ports. The
// portless flag itself is not a field: it picks the context.
constexpr bool kind_v4(unsigned k) { return k < 2; }
constexpr bool kind_portless(unsigned k) { return k & 1; }

// Offset in AclInput of word w (0-3) of the source or destination address.
uint32_t addr_word(bool src, uint32_t w)
{
	if (w == 3)
		return src ? offsetof(AclInput, src3) : offsetof(AclInput, dst3);
	return uint32_t((src ? offsetof(AclInput, src) : offsetof(AclInput, dst)) + 4 * w);
}

rte_acl_config acl_config(unsigned kind)
{
	rte_acl_config c{};
	c.num_categories = 1;
	uint32_t f = 0;
	uint8_t grp = 1;
	c.defs[f] = {RTE_ACL_FIELD_TYPE_BITMASK, 1, uint8_t(f), 0, offsetof(AclInput, proto)};
	f++;
	for (uint32_t w = kind_v4(kind) ? 3 : 0; w < 4; w++, f++)
		c.defs[f] = {RTE_ACL_FIELD_TYPE_MASK, 4, uint8_t(f), grp++, addr_word(true, w)};
	for (uint32_t w = kind_v4(kind) ? 3 : 0; w < 4; w++, f++)
		c.defs[f] = {RTE_ACL_FIELD_TYPE_MASK, 4, uint8_t(f), grp++, addr_word(false, w)};
	if (!kind_portless(kind)) {
		c.defs[f] = {RTE_ACL_FIELD_TYPE_RANGE, 2, uint8_t(f), grp, offsetof(AclInput, sport)};
		f++;
		c.defs[f] = {RTE_ACL_FIELD_TYPE_RANGE, 2, uint8_t(f), grp, offsetof(AclInput, dport)};
		f++;
	}
	c.num_fields = f;
	return c;
}

// Whether the spec's address words 0-2 admit an IPv4-mapped address
// (0, 0, 0x0000ffff): then it is the spec's word 3 alone for IPv4 inputs.
bool admits_v4(const uint32_t w[4], const uint8_t bits[4])
{
	static constexpr uint32_t kMapped[3] = {0, 0, 0xffff};
	for (int i = 0; i < 3; i++) {
		uint32_t m = bits[i] ? ~uint32_t(0) << (32 - bits[i]) : 0;
		if ((kMapped[i] & m) != (w[i] & m))
			return false;
	}
	return true;
}

// The rte_acl rule of spec s in a context of `kind` (fields as acl_config).
void fill_rule(LgAclRule *a, const AclRuleSpec &s, unsigned kind)
{
	std::memset(a, 0, sizeof(*a));
	a->data.category_mask = 1;
	a->data.priority = int32_t(LG_NSG_MAX_RULES - s.rule); // lower index wins
	a->data.userdata = s.rule + 1;
	uint32_t f = 0;
	a->field[f].value.u8 = s.proto;
	a->field[f++].mask_range.u8 = s.proto_mask;
	for (int w = kind_v4(kind) ? 3 : 0; w < 4; w++, f++) {
		a->field[f].value.u32 = s.src[w];
		a->field[f].mask_range.u32 = s.src_bits[w];
	}
	for (int w = kind_v4(kind) ? 3 : 0; w < 4; w++, f++) {
		a->field[f].value.u32 = s.dst[w];
		a->field[f].mask_range.u32 = s.dst_bits[w];
	}
	if (!kind_portless(kind)) {
		a->field[f].value.u16 = s.sport_lo;
		a->field[f++].mask_range.u16 = s.sport_hi;
		a->field[f].value.u16 = s.dport_lo;
		a->field[f++].mask_range.u16 = s.dport_hi;
	}
}

} // namespace

Result<std::vector<AclRuleSpec>> acl_rules(const CompiledTables &t, uint32_t dir, size_t max_rules)
{
	if (dir >= t.nsg_dirs.size())
		return err("no NSG direction " + std::to_string(dir));
	const lg_nsg_dir &d = t.nsg_dirs[dir];
	const u128 addr_max = ~u128(0), port_max = 0xffff;
	std::vector<AclRuleSpec> out;
	for (uint32_t r = 0; r < d.nrules; r++) {
		std::vector<std::pair<uint8_t, uint8_t>> protos; // value, mask
		bool all = true;
		for (int pc = 0; pc < LG_PC__COUNT; pc++)
			all = all && has_bit(t, d.proto_bitmap[pc], r);
		if (all) {
			protos.emplace_back(0, 0);
		} else {
			for (int pc = 0; pc < LG_PC__COUNT; pc++) {
				if (!has_bit(t, d.proto_bitmap[pc], r))
					continue;
				if (pc == LG_PC_OTHER) {
					for (int p = 0; p < 256; p++)
						if (p != 6 && p != 17 && p != 1 && p != 58 && p != 50 && p != 51)
							protos.emplace_back(uint8_t(p), 0xff);
					continue;
				}
				for (uint8_t p : kClassProtos[pc])
					if (p)
						protos.emplace_back(p, 0xff);
			}
		}
		if (protos.empty())
			continue;
		std::vector<std::pair<u128, int>> src, dst;
		for (auto [lo, hi] : field_ranges(t, d.field[LG_F_SRC], r, addr_max))
			range_prefixes(lo, hi, &src);
		for (auto [lo, hi] : field_ranges(t, d.field[LG_F_DST], r, addr_max))
			range_prefixes(lo, hi, &dst);
		auto sp = field_ranges(t, d.field[LG_F_SPORT], r, port_max);
		auto dp = field_ranges(t, d.field[LG_F_DPORT], r, port_max);
		bool portless = has_bit(t, d.portless_bitmap, r);
		size_t n = protos.size() * src.size() * dst.size() * (sp.size() * dp.size() + (portless ? 1 : 0));
		if (out.size() + n > max_rules)
			return err("NSG " + (d.nsg < t.nsg_names.size() ? t.nsg_names[d.nsg] : std::to_string(d.nsg)) +
				   ": more than " + std::to_string(max_rules) + " rte_acl rules");
		for (auto [pv, pm] : protos)
			for (auto &[sv, sl] : src)
				for (auto &[dv, dl] : dst) {
					AclRuleSpec a;
					a.proto = pv;
					a.proto_mask = pm;
					a.rule = r;
					set_addr(a.src, a.src_bits, sv, sl);
					set_addr(a.dst, a.dst_bits, dv, dl);
					for (auto [slo, shi] : sp)
						for (auto [dlo, dhi] : dp) {
							a.portless = 0;
							a.sport_lo = uint16_t(slo);
							a.sport_hi = uint16_t(shi);
							a.dport_lo = uint16_t(dlo);
							a.dport_hi = uint16_t(dhi);
							out.push_back(a);
						}
					if (portless) {
						a.portless = 1;
						a.sport_lo = a.dport_lo = 0;
						a.sport_hi = a.dport_hi = 0xffff;
						out.push_back(a);
					}
				}
	}
	return out;
}

std::string acl_rules_test_acl_v4(const std::vector<AclRuleSpec> &rules)
{
	std::string out;
	char line[160];
	for (const AclRuleSpec &s : rules) {
		if (s.portless || !admits_v4(s.src, s.src_bits) || !admits_v4(s.dst, s.dst_bits))
			continue;
		uint32_t a = s.src[3], b = s.dst[3];
		std::snprintf(line, sizeof line, "@%u.%u.%u.%u/%u\t%u.%u.%u.%u/%u\t%u : %u\t%u : %u\t0x%02X/0x%02X\n",
			      a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff, s.src_bits[3], b >> 24, (b >> 16) & 0xff,
			      (b >> 8) & 0xff, b & 0xff, s.dst_bits[3], s.sport_lo, s.sport_hi, s.dport_lo, s.dport_hi,
			      s.proto, s.proto_mask);
		out += line;
	}
	return out;
}

void acl_input(AclInput *in, uint8_t proto, bool has_ports, uint16_t sport, uint16_t dport, const uint8_t src[16],
	       const uint8_t dst[16])
{
	static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	// ::ffff:a.b.c.d on both sides (the key of an IPv4 frame always is).
	bool v4 = !std::memcmp(src, kMapped, 12) && !std::memcmp(dst, kMapped, 12);
	in->proto = proto;
	in->kind = uint8_t((v4 ? 0 : 2) | (has_ports ? 0 : 1));
	in->pad[0] = in->pad[1] = 0;
	std::memcpy(in->src, src, 12);
	std::memcpy(&in->src3, src + 12, 4);
	std::memcpy(in->dst, dst, 12);
	std::memcpy(&in->dst3, dst + 12, 4);
	in->sport = has_ports ? rte_cpu_to_be_16(sport) : 0;
	in->dport = has_ports ? rte_cpu_to_be_16(dport) : 0;
}

Result<std::shared_ptr<AclClassifier>> AclClassifier::build(const std::vector<AclRuleSpec> &rules, size_t max_bytes,
							    bool *too_big, bool *for_now)
{
	static std::atomic<uint64_t> seq{0};
	std::shared_ptr<AclClassifier> c(new AclClassifier());
	c->nrules_ = rules.size();
	std::vector<LgAclRule> rr;
	rr.reserve(rules.size());
	for (unsigned kind = 0; kind < kKinds; kind++) {
		rr.clear();
		for (const AclRuleSpec &s : rules) {
			if (bool(s.portless) != kind_portless(kind))
				continue;
			if (kind_v4(kind) && !(admits_v4(s.src, s.src_bits) && admits_v4(s.dst, s.dst_bits)))
				continue;
			rr.emplace_back();
			fill_rule(&rr.back(), s, kind);
		}
		if (rr.empty())
			continue; // no rule of this kind: its inputs match nothing
		std::string name = "lgacl" + std::to_string(seq++);
		rte_acl_param p{};
		p.name = name.c_str();
		p.socket_id = SOCKET_ID_ANY;
		p.rule_size = sizeof(LgAclRule);
		p.max_rule_num = uint32_t(rr.size());
		// rte_acl_create sets rte_errno for a bad parameter or a name in
		// use, not when its allocations fail (DPDK 22.11).
		rte_errno = 0;
		c->ctx_[kind] = rte_acl_create(&p);
		if (!c->ctx_[kind]) {
			// Out of memory for the context and its rules: as for the build.
			bool oom = rte_errno == 0 || rte_errno == ENOMEM;
			if (too_big)
				*too_big = oom;
			if (for_now)
				*for_now = oom;
			return err("rte_acl_create: " + std::string(oom ? "out of memory" : rte_strerror(rte_errno)));
		}
		if (int e = rte_acl_add_rules(c->ctx_[kind], reinterpret_cast<const rte_acl_rule *>(rr.data()),
					      uint32_t(rr.size())))
			return err("rte_acl_add_rules: " + std::string(rte_strerror(-e)));
		rte_acl_config cfg = acl_config(kind);
		cfg.max_size = max_bytes;
		if (int e = rte_acl_build(c->ctx_[kind], &cfg)) {
			if (too_big)
				*too_big = e == -ENOMEM || e == -ERANGE;
			return err("rte_acl_build: " + std::string(rte_strerror(-e)));
		}
	}
	return c;
}

AclClassifier::~AclClassifier()
{
	for (rte_acl_ctx *x : ctx_)
		if (x)
			rte_acl_free(x);
}

uint32_t AclClassifier::first(const AclInput &in) const
{
	rte_acl_ctx *x = ctx_[kind_of(in)];
	const uint8_t *d = reinterpret_cast<const uint8_t *>(&in);
	uint32_t res = 0;
	if (!x)
		return LG_NONE;
	rte_acl_classify(x, &d, &res, 1, 1);
	return res ? res - 1 : LG_NONE;
}

void AclClassifier::classify(const AclInput *const *in, uint32_t *results, uint32_t num) const
{
	// Usually one kind (a burst's new IPv4 TCP/UDP flows): one call.
	unsigned k0 = num ? kind_of(*in[0]) : 0;
	uint32_t i = 1;
	while (i < num && kind_of(*in[i]) == k0)
		i++;
	if (i == num) {
		classify_kind(k0, in, results, num);
		return;
	}
	// Mixed: one call per kind over that kind's inputs, answers put back.
	const AclInput *part[kMaxBurst];
	uint32_t idx[kMaxBurst], res[kMaxBurst];
	for (uint32_t o = 0; o < num; o += kMaxBurst) {
		uint32_t m = std::min(num - o, kMaxBurst);
		for (unsigned kind = 0; kind < kKinds; kind++) {
			uint32_t n = 0;
			for (uint32_t j = 0; j < m; j++)
				if (kind_of(*in[o + j]) == kind) {
					part[n] = in[o + j];
					idx[n++] = o + j;
				}
			if (!n)
				continue;
			classify_kind(kind, part, res, n);
			for (uint32_t j = 0; j < n; j++)
				results[idx[j]] = res[j];
		}
	}
}

void AclClassifier::classify_kind(unsigned kind, const AclInput *const *in, uint32_t *results, uint32_t num) const
{
	rte_acl_ctx *x = ctx_[kind];
	if (!x) {
		for (uint32_t i = 0; i < num; i++)
			results[i] = LG_NONE;
		return;
	}
	rte_acl_classify(x, reinterpret_cast<const uint8_t **>(const_cast<const AclInput **>(in)), results, num, 1);
	// userdata is rule + 1; no match (0) wraps to LG_NONE (UINT32_MAX).
	static_assert(LG_NONE == 0u - 1u);
	for (uint32_t i = 0; i < num; i++)
		results[i] -= 1;
}

int AclClassifier::set_algorithm(int alg)
{
	for (rte_acl_ctx *x : ctx_)
		if (x)
			if (int e = rte_acl_set_ctx_classify(x, static_cast<enum rte_acl_classify_alg>(alg)))
				return e;
	return 0;
}

} // namespace lg::dp
