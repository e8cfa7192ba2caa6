// Table-driven decision: every step is a lookup the BPF program can do (bounded
// loops, fixed-size keys). Keep it C: the dataplanes copy it line by line.
#include "table_eval.hpp"

#include <arpa/inet.h>

#include <cstring>

extern "C" {
#include "lg_hash.h"
#include "lg_limits.h"
}

namespace lg {

static const uint8_t kProtoTcp_ = 6, kProtoUdp_ = 17, kProtoIcmp_ = 1, kProtoIcmp6_ = 58, kProtoEsp_ = 50,
		     kProtoAh_ = 51;

static int is_v4(const uint8_t a[16])
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return std::memcmp(a, pfx, 12) == 0;
}

uint32_t te_ivl_find(const lg_ivl *ivl, uint32_t n, const uint8_t key[16])
{
	uint32_t lo = 0, hi = n; // answer in [lo, hi); ivl[lo].lo <= key
	if (n == 0)
		return LG_NONE;
	for (int step = 0; step < LG_BSEARCH_STEPS; step++) {
		if (hi - lo <= 1)
			break;
		uint32_t mid = lo + (hi - lo) / 2;
		if (std::memcmp(ivl[mid].lo, key, 16) <= 0)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int proto_class(uint8_t proto)
{
	switch (proto) {
	case kProtoTcp_: return LG_PC_TCP;
	case kProtoUdp_: return LG_PC_UDP;
	case kProtoIcmp_:
	case kProtoIcmp6_: return LG_PC_ICMP;
	case kProtoEsp_: return LG_PC_ESP;
	case kProtoAh_: return LG_PC_AH;
	default: return LG_PC_OTHER;
	}
}

static void port_key(uint16_t port, uint8_t key[16])
{
	std::memset(key, 0, 16);
	key[14] = uint8_t(port >> 8);
	key[15] = uint8_t(port);
}

uint32_t te_nsg_first(const CompiledTables &t, uint32_t dir, const TePacket *p)
{
	const lg_nsg_dir *d = &t.nsg_dirs[dir];
	uint64_t acc[LG_NSG_WORDS];
	const lg_bitmap *pc = &t.bitmaps[d->proto_bitmap[proto_class(p->proto)]];
	const lg_bitmap *pl = &t.bitmaps[d->portless_bitmap];
	uint32_t w;

	for (w = 0; w < d->nwords && w < LG_NSG_WORDS; w++)
		acc[w] = pc->w[w] & (p->has_ports ? ~0ull : pl->w[w]);

	// Address fields always; port fields only when the packet has ports (a
	// portless packet's candidates are already cut by the portless bitmap).
	int nfields = p->has_ports ? LG_F__COUNT : LG_F_SPORT;
	for (int f = 0; f < nfields; f++) {
		uint8_t key[16];
		if (f == LG_F_SRC)
			std::memcpy(key, p->src, 16);
		else if (f == LG_F_DST)
			std::memcpy(key, p->dst, 16);
		else
			port_key(f == LG_F_SPORT ? p->sport : p->dport, key);
		const lg_span *sp = &d->field[f];
		uint32_t i = te_ivl_find(&t.ivl[sp->off], sp->n, key);
		if (i == LG_NONE)
			return LG_NONE;
		const lg_bitmap *b = &t.bitmaps[t.ivl[sp->off + i].bitmap];
		for (w = 0; w < d->nwords && w < LG_NSG_WORDS; w++)
			acc[w] &= b->w[w];
	}
	for (w = 0; w < d->nwords && w < LG_NSG_WORDS; w++)
		if (acc[w])
			return w * 64 + uint32_t(__builtin_ctzll(acc[w]));
	return LG_NONE;
}

const lg_subnet *te_subnet_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16])
{
	const lg_subnet *best = nullptr;
	uint32_t best_len = 0;
	for (size_t i = 0; i < t.subnets.size(); i++) {
		const lg_subnet_key *k = &t.subnets[i].first;
		if (k->vni_be != htonl(vni) || k->prefixlen < 32)
			continue;
		uint32_t len = k->prefixlen - 32, full = len / 8, rem = len % 8;
		if (std::memcmp(k->addr, addr, full) != 0)
			continue;
		if (rem && ((k->addr[full] ^ addr[full]) & uint8_t(0xff << (8 - rem))))
			continue;
		if (!best || len > best_len) {
			best = &t.subnets[i].second;
			best_len = len;
		}
	}
	return best;
}

template <typename V>
static auto addr_lookup(const std::vector<std::pair<lg_addr_key, V>> &v, uint32_t vni, const uint8_t addr[16])
	-> const V *
{
	for (size_t i = 0; i < v.size(); i++)
		if (v[i].first.vni == vni && std::memcmp(v[i].first.addr, addr, 16) == 0)
			return &v[i].second;
	return nullptr;
}

const lg_nic *te_nic_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16])
{
	return addr_lookup(t.nics, vni, addr);
}

const lg_pe *te_pe_lookup(const CompiledTables &t, uint32_t vni, const uint8_t addr[16])
{
	return addr_lookup(t.pes, vni, addr);
}

uint32_t te_pubip_lookup(const CompiledTables &t, const uint8_t addr[16])
{
	for (size_t i = 0; i < t.pubips.size(); i++)
		if (std::memcmp(t.pubips[i].first.addr, addr, 16) == 0)
			return t.pubips[i].second;
	return LG_NONE;
}

uint32_t te_iface_vni(const CompiledTables &t, uint32_t ifindex)
{
	for (size_t i = 0; i < t.ifaces.size(); i++)
		if (t.ifaces[i].first == ifindex)
			return t.ifaces[i].second.vni;
	return 0;
}

// One NSG level. Returns 1 when it allows (or is absent); records the rule.
static int run_nsg(const CompiledTables &t, uint32_t dir, lg_stage stage, const TePacket *p, TeResult *r,
		   lg_stage *last)
{
	if (dir == LG_NONE)
		return 1; // a level without an NSG allows
	uint32_t i = te_nsg_first(t, dir, p);
	if (i == LG_NONE)
		return 1; // unreachable: the default rules match everything
	const lg_rule *rule = &t.rules[t.nsg_dirs[dir].rule_base + i];
	r->counter = rule->counter;
	*last = stage;
	if (r->nlevels < kTeMaxLevels) {
		TeLevel *l = &r->levels[r->nlevels++];
		l->counter = rule->counter;
		l->stage = stage;
		l->allow = rule->allow;
		l->is_default = rule->is_default;
	}
	if (rule->allow)
		return 1;
	r->reason = rule->is_default ? LG_REASON_NSG_DEFAULT_DENY : LG_REASON_NSG_DENY;
	r->stage = stage;
	return 0;
}

static TeResult drop(TeResult r, lg_reason reason, lg_stage stage)
{
	r.allowed = 0;
	r.reason = reason;
	r.stage = stage;
	return r;
}

// SPEC §5: Maglev slot of the flow hash, in the table of the packet's family.
static TeResult backend_stage(const CompiledTables &t, TeResult r, const TePacket *p, lg_stage last)
{
	const lg_server *sv = &t.servers[r.server];
	uint32_t off = sv->maglev[is_v4(p->src) ? 0 : 1];
	if (off == LG_NONE)
		return drop(r, LG_REASON_NO_BACKEND, LG_STAGE_BACKEND);
	uint32_t h = lg_flow_hash(p->src, p->dst, htons(p->sport), htons(p->dport), p->proto);
	uint32_t b = t.maglev[off + h % LG_MAGLEV_SIZE];
	if (b == LG_NONE)
		return drop(r, LG_REASON_NO_BACKEND, LG_STAGE_BACKEND);
	r.backend = b;
	r.allowed = 1;
	r.stage = last;
	return r;
}

static int fw_match(const CompiledTables &t, const lg_server *sv, uint32_t a)
{
	// Ranges are sorted and disjoint: the last one starting at or below a.
	uint32_t lo = 0, hi = sv->ranges.n;
	if (hi == 0)
		return 0;
	for (int step = 0; step < 32 && hi - lo > 1; step++) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t.fwranges[sv->ranges.off + mid].lo <= a)
			lo = mid;
		else
			hi = mid;
	}
	const lg_fwrange *r = &t.fwranges[sv->ranges.off + lo];
	return a >= r->lo && a <= r->hi;
}

static int vnet_rule(const CompiledTables &t, uint32_t server, uint32_t subnet)
{
	for (size_t i = 0; i < t.vnetrules.size(); i++)
		if (t.vnetrules[i].server == server && t.vnetrules[i].subnet == subnet)
			return 1;
	return 0;
}

TeResult te_decide(const CompiledTables &t, const TePacket *p)
{
	TeResult r;
	std::memset(&r, 0, sizeof r);
	r.reason = LG_REASON_NONE;
	r.stage = LG_STAGE_NONE;
	r.kind = LG_DEST_ROUTED;
	r.counter = r.pe = r.server = r.backend = LG_NONE;
	lg_stage last = LG_STAGE_NONE; // stage of the last check that passed

	// Step 4: source side, NIC then subnet, Outbound.
	const lg_subnet *ss = te_subnet_lookup(t, p->vni, p->src);
	if (ss) {
		const lg_nic *nic = te_nic_lookup(t, p->vni, p->src);
		if (nic && !run_nsg(t, nic->nsg_out, LG_STAGE_NIC_OUTBOUND, p, &r, &last))
			return r;
		if (!run_nsg(t, ss->nsg_out, LG_STAGE_SUBNET_OUTBOUND, p, &r, &last))
			return r;
	}

	// Step 5: private endpoint of the packet's VNet.
	const lg_pe *pe = te_pe_lookup(t, p->vni, p->dst);
	if (pe) {
		r.kind = LG_DEST_PRIVATE_ENDPOINT;
		r.pe = pe->id;
		r.server = pe->server;
		if (pe->status == LG_PEC_PENDING)
			return drop(r, LG_REASON_PEC_PENDING, LG_STAGE_PRIVATE_ENDPOINT);
		if (pe->status == LG_PEC_REJECTED)
			return drop(r, LG_REASON_PEC_REJECTED, LG_STAGE_PRIVATE_ENDPOINT);
		if (pe->status != LG_PEC_APPROVED)
			return drop(r, LG_REASON_PEC_DISCONNECTED, LG_STAGE_PRIVATE_ENDPOINT);
		if (p->proto != kProtoTcp_ || !p->has_ports || p->dport != LG_MYSQL_PORT)
			return drop(r, LG_REASON_PE_PORT, LG_STAGE_PRIVATE_ENDPOINT);
		last = LG_STAGE_PRIVATE_ENDPOINT;
		if (pe->subnet_in != LG_NONE && !run_nsg(t, pe->subnet_in, LG_STAGE_PE_SUBNET_INBOUND, p, &r, &last))
			return r;
		return backend_stage(t, r, p, last);
	}

	// Public endpoint of a server.
	uint32_t si = te_pubip_lookup(t, p->dst);
	if (si != LG_NONE) {
		const lg_server *sv = &t.servers[si];
		r.kind = LG_DEST_PUBLIC_ENDPOINT;
		r.server = si;
		if (!(sv->flags & LG_SERVER_F_PUBLIC))
			return drop(r, LG_REASON_PUBLIC_ACCESS_DISABLED, LG_STAGE_PUBLIC_ENDPOINT);
		if (p->proto != kProtoTcp_ || !p->has_ports || p->dport != LG_MYSQL_PORT)
			return drop(r, LG_REASON_PUBLIC_PORT, LG_STAGE_PUBLIC_ENDPOINT);
		if (ss && (ss->flags & LG_SUBNET_F_SQL_ENDPOINT)) {
			// Service-endpoint traffic: VNet rules only.
			if (!vnet_rule(t, si, ss->id))
				return drop(r, LG_REASON_VNET_RULE_NO_MATCH, LG_STAGE_PUBLIC_ENDPOINT);
			return backend_stage(t, r, p, LG_STAGE_PUBLIC_ENDPOINT);
		}
		int ok = 0;
		if (is_v4(p->src)) {
			uint32_t a = uint32_t(p->src[12]) << 24 | uint32_t(p->src[13]) << 16 | uint32_t(p->src[14]) << 8 |
				     p->src[15];
			ok = fw_match(t, sv, a);
		}
		if (!ok && (sv->flags & LG_SERVER_F_ALLOW_AZURE)) {
			const lg_span *ac = &t.gcfg.azure_cloud;
			uint32_t i = te_ivl_find(&t.ivl[ac->off], ac->n, p->src);
			ok = i != LG_NONE && t.ivl[ac->off + i].bitmap == 1;
		}
		if (!ok)
			return drop(r, LG_REASON_FIREWALL_NO_MATCH, LG_STAGE_PUBLIC_ENDPOINT);
		return backend_stage(t, r, p, LG_STAGE_PUBLIC_ENDPOINT);
	}

	// Anything else: destination subnet then NIC, Inbound, in the VNet of
	// the egress interface when it has one, else the packet's.
	uint32_t dvni = te_iface_vni(t, p->egress_ifindex);
	if (dvni == 0)
		dvni = p->vni;
	const lg_subnet *ds = te_subnet_lookup(t, dvni, p->dst);
	if (ds) {
		if (!run_nsg(t, ds->nsg_in, LG_STAGE_SUBNET_INBOUND, p, &r, &last))
			return r;
		const lg_nic *nic = te_nic_lookup(t, dvni, p->dst);
		if (nic && !run_nsg(t, nic->nsg_in, LG_STAGE_NIC_INBOUND, p, &r, &last))
			return r;
	}
	r.allowed = 1;
	r.stage = last == LG_STAGE_NONE ? LG_STAGE_FORWARD : last;
	return r;
}

} // namespace lg
