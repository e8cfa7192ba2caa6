#include "engine.hpp"

#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <string>
#include <set>
#include <string_view>

extern "C" {
#include "lg_limits.h"
#include "lg_tables.h"
#include "lg_xdp.h"
}

namespace lg::dp {

namespace {
Engine *g_engine = nullptr; // the program's maps are process globals: one engine
thread_local int t_wid = -1;  // this thread's reader id, -1: not a worker
thread_local bool t_registered = false; // online() gave this non-EAL thread an lcore id

const char *const kOuterNames[] = {"lg_ivl",    "lg_bitmap",  "lg_nsg_dir", "lg_rule",     "lg_subnet",
				   "lg_nic",    "lg_pe",      "lg_pubip",   "lg_server",   "lg_fwrange",
				   "lg_vnetrule", "lg_backend", "lg_maglev", "lg_iface",    "lg_gcfg"};
constexpr size_t kOuters = sizeof(kOuterNames) / sizeof(kOuterNames[0]);

constexpr size_t kIfaceOuter = 13;

// One worker's burst (decide_frames): flow keys and their pre-lookup, the
// frames that may start a flow with their rte_acl input, and the batches
// classified so far. Thread-local: decide() may run on any thread.
struct Burst {
	static constexpr unsigned kMax = BurstHints::kFrames;
	BurstHints hints;
	unsigned n = 0;
	int cur = -1; // frame being decided, -1: outside a burst
	lg_flow_key keys[BurstHints::kMax];
	int8_t hint_of[kMax];  // frame -> its key's hint, -1: none
	int16_t hint2_of[kMax]; // frame -> the hint of its flow's other key, -1: none
	// Bursts left without other-key hints: set when a burst used few of
	// them (flows that are not written back, fast-path traffic).
	unsigned skip_other = 0;
	bool cand[kMax];      // may start a flow (TCP SYN, UDP) without one: in[] holds its NSG tuple
	AclInput in[kMax];
	// The candidates in frame order, as rte_acl takes them: a batch is a
	// slice of cin from the asking frame's rank on, classified in place.
	const AclInput *cin[kMax];
	uint8_t rank[kMax]; // candidate frame -> its place in cin
	unsigned ncand = 0;
	unsigned kinds = 0; // AclClassifier::kind_of of the candidates, one bit each
	// One rte_acl call per (generation slot, NSG direction) asked for in the
	// burst, over every candidate from the asking frame on.
	struct Batch {
		uint32_t slot, dir;
		uint32_t first;     // rank of the asking frame: res[r - first] answers rank r
		uint32_t res[kMax];
	};
	static constexpr unsigned kBatches = 4;
	Batch batch[kBatches];
	unsigned nbatch = 0;
};
thread_local Burst t_burst;

inline uint16_t be16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }

// The program's flow key (lg_ct.bpf.h key_of) of an IPv4 or IPv6 TCP/UDP
// frame (up to LG_MAX_VLAN_DEPTH tags, no fragment, no IPv6 extension
// header), and whether it may start a flow (TCP SYN without ACK/RST/FIN,
// UDP). 0: another kind of frame, no key. A key got wrong here would cost a
// lookup, never a decision: a hint answers only the program's own key,
// compared in full.
bool pre_key(const uint8_t *d, uint32_t len, uint32_t vni, lg_flow_key *k, bool *starts)
{
	if (len < 14)
		return false;
	uint32_t off = 14;
	uint16_t et = be16(d + 12);
	for (int i = 0; i < LG_MAX_VLAN_DEPTH && (et == 0x8100 || et == 0x88a8); i++) {
		if (off + 4 > len)
			return false;
		et = be16(d + off + 2);
		off += 4;
	}
	uint32_t l4, end;
	uint8_t proto, family;
	const uint8_t *ip = d + off;
	if (et == 0x0800) {
		if (off + 20 > len || ip[0] >> 4 != 4)
			return false;
		uint32_t ihl = uint32_t(ip[0] & 0xf) * 4, tot = be16(ip + 2);
		if (ihl < 20 || tot < ihl || off + tot > len || (be16(ip + 6) & 0x3fff))
			return false;
		proto = ip[9];
		family = LG_AF_INET;
		l4 = off + ihl;
		end = off + tot;
	} else if (et == 0x86dd) {
		if (off + 40 > len || ip[0] >> 4 != 6)
			return false;
		uint32_t plen = be16(ip + 4);
		if (!plen || off + 40 + plen > len)
			return false;
		proto = ip[6];
		family = LG_AF_INET6;
		l4 = off + 40;
		end = off + 40 + plen;
	} else {
		return false;
	}
	if (proto == 6) {
		if (l4 + 20 > end)
			return false;
		*starts = (d[l4 + 13] & 0x17) == 0x02;
	} else if (proto == 17) {
		if (l4 + 8 > end)
			return false;
		*starts = true;
	} else {
		return false;
	}
	// The key is written in whole 8-byte words (the last 4 bytes as one):
	// it is read as words right away (the CRC, rte_hash's compare), and a
	// load that spans several narrower stores waits for them to reach the
	// cache instead of being forwarded from the store buffer.
	static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pre_key builds little-endian words");
	static_assert(offsetof(lg_flow_key, src) == 8 && offsetof(lg_flow_key, dst) == 24 &&
			      offsetof(lg_flow_key, sport) == 40,
		      "lg_flow_key layout");
	uint8_t *kb = reinterpret_cast<uint8_t *>(k);
	uint64_t w0 = uint64_t(vni) | uint64_t(family) << 32 | uint64_t(proto) << 40; // echo, pad0 zero
	std::memcpy(kb, &w0, 8);
	if (family == LG_AF_INET) {
		// ::ffff:a.b.c.d: bytes 0-9 zero, 10-11 0xff, 12-15 the address.
		uint32_t sa, da;
		std::memcpy(&sa, ip + 12, 4);
		std::memcpy(&da, ip + 16, 4);
		uint64_t zero = 0, ws = 0xffff0000ull | uint64_t(sa) << 32, wd = 0xffff0000ull | uint64_t(da) << 32;
		std::memcpy(kb + 8, &zero, 8);
		std::memcpy(kb + 16, &ws, 8);
		std::memcpy(kb + 24, &zero, 8);
		std::memcpy(kb + 32, &wd, 8);
	} else {
		std::memcpy(kb + offsetof(lg_flow_key, src), ip + 8, 16);
		std::memcpy(kb + offsetof(lg_flow_key, dst), ip + 24, 16);
	}
	uint32_t ports; // sport, dport in network order, as key_of
	std::memcpy(&ports, d + l4, 4);
	std::memcpy(kb + offsetof(lg_flow_key, sport), &ports, 4);
	return true;
}

template <typename K, typename V> std::unique_ptr<FixedHash> hash_of(const std::vector<std::pair<K, V>> &kv)
{
	auto h = std::make_unique<FixedHash>(sizeof(K), sizeof(V), kv.size());
	for (auto &[k, v] : kv)
		h->insert(&k, &v);
	return h;
}
} // namespace

struct Engine::Generation {
	std::shared_ptr<const CompiledTables> t;
	std::vector<std::unique_ptr<ArrayMap>> arrays;
	std::vector<std::unique_ptr<FixedHash>> hashes;
	std::unique_ptr<LpmMap> subnets;
	std::array<lg_umap *, kOuters> inner{};
	std::vector<std::shared_ptr<AclClassifier>> acl; // per lg_nsg_dir
	std::vector<std::string> acl_keys;
	uint64_t acl_built = 0; // contexts this generation built (counted once it is published)
};

uint64_t Engine::clock_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

Result<std::unique_ptr<Engine>> Engine::create(const EngineConfig &cfg)
{
	if (g_engine)
		return err("one linkgate engine per process");
	if (std::strcmp(kOuterNames[kIfaceOuter], "lg_iface") != 0)
		return err("internal: lg_iface is not outer map " + std::to_string(kIfaceOuter));
	if (cfg.workers == 0 || cfg.workers >= LG_HOST_CPUS)
		return err("workers must be 1.." + std::to_string(LG_HOST_CPUS - 1) + ", not " + std::to_string(cfg.workers));
	std::unique_ptr<Engine> e(new Engine());
	e->cfg_ = cfg;
	size_t qs = rte_rcu_qsbr_get_memsize(LG_HOST_CPUS);
	e->qsbr_ = static_cast<rte_rcu_qsbr *>(rte_zmalloc("lg_qsbr", qs, RTE_CACHE_LINE_SIZE));
	if (!e->qsbr_ || rte_rcu_qsbr_init(e->qsbr_, LG_HOST_CPUS))
		return err("cannot set up RCU QSBR (is the EAL initialised?)");
	for (size_t i = 0; i < kOuters; i++)
		e->outer_.push_back(std::make_unique<OuterMap>());
	e->active_ = std::make_unique<ArrayMap>(sizeof(lg_active), 1);
	std::string why;
	// Two keys per flow, as in the XDP map (SPEC §4 capacity in flows).
	e->flows_ = SharedHash::create("lg_flows", sizeof(lg_flow_key), sizeof(lg_flow_entry),
				       2 * cfg.timeouts.flow_capacity, e->qsbr_, &why);
	if (!e->flows_)
		return err(why);
	e->frags_ = SharedHash::create("lg_frags", sizeof(lg_frag_key), sizeof(lg_frag_entry),
				       cfg.timeouts.frag_capacity, e->qsbr_, &why);
	if (!e->frags_)
		return err(why);
	e->flowlog_ = SharedHash::create("lg_flowlog", sizeof(lg_flow_key), sizeof(lg_flowlog_entry),
					 LG_FLOWLOG_CAPACITY, e->qsbr_, &why);
	if (!e->flowlog_)
		return err(why);
	e->log_cnt_ = std::make_unique<PerCpuArray>(8, LG_LOG__COUNT);
	e->reason_cnt_ = std::make_unique<PerCpuArray>(8, LG_REASON__COUNT);
	e->rule_cnt_ = std::make_unique<PerCpuArray>(8, LG_MAX_RULE_COUNTERS);
	e->pe_cnt_ = std::make_unique<PerCpuArray>(8, LG_MAX_PRIVATE_ENDPOINTS);
	e->srv_cnt_ = std::make_unique<PerCpuArray>(8, LG_MAX_SERVERS);
	e->egress_cnt_ = std::make_unique<PerCpuArray>(8, LG_EGRESS_COUNTERS);
	e->scratch_ = std::make_unique<PerCpuArray>(lg_host_scratch_size, 1);
	e->local_ = std::make_unique<FixedHash>(sizeof(lg_local_key), 1, cfg.host.local_addresses.size());
	for (const Addr &a : cfg.host.local_addresses) {
		lg_local_key k{};
		std::memcpy(k.addr, a.b.data(), 16);
		uint8_t one = 1;
		e->local_->insert(&k, &one);
	}
	e->ifmac_ = std::make_unique<FixedHash>(4, sizeof(lg_ifmac), cfg.host.interfaces.size());
	for (const HostInterface &i : cfg.host.interfaces) {
		lg_ifmac v{};
		std::memcpy(v.mac, i.mac.data(), 6);
		e->ifmac_->insert(&i.ifindex, &v);
	}
	// The egress interface's MAC is resolved once here, not per packet.
	auto smac = [&](uint32_t ifindex) -> std::optional<Mac> {
		for (const HostInterface &i : cfg.host.interfaces)
			if (i.ifindex == ifindex)
				return i.mac;
		return std::nullopt;
	};
	for (const HostRoute &r : cfg.host.routes)
		e->routes_.push_back(Route{r.prefix, r.ifindex, r.gateway, std::nullopt, smac(r.ifindex)});
	for (const MacRoute &r : cfg.mac_routes)
		e->routes_.push_back(Route{r.prefix, r.ifindex, std::nullopt, r.mac, smac(r.ifindex)});
	std::stable_sort(e->routes_.begin(), e->routes_.end(),
			 [](const Route &a, const Route &b) { return a.prefix.len > b.prefix.len; });
	for (Route &r : e->routes_) {
		uint8_t m[16]{};
		for (int b = 0; b < r.prefix.len && b < 128; b++)
			m[b / 8] |= uint8_t(0x80u >> (b % 8));
		std::memcpy(r.msk, m, 16);
		std::memcpy(r.net, r.prefix.addr.b.data(), 16);
		r.net[0] &= r.msk[0];
		r.net[1] &= r.msk[1];
		r.v4 = r.prefix.is_v4();
	}
	for (const HostNeighbor &n : cfg.host.neighbors)
		e->neigh_[{n.ifindex, n.ip}] = n.mac;

	g_engine = e.get();
	if (lg_host_bind([](const char *name, void *arg) { return static_cast<Engine *>(arg)->resolve(name); },
			 e.get())) {
		g_engine = nullptr;
		return err("internal: a map of the program has no DPDK counterpart");
	}
	const EvaluatorConfig &t = cfg.timeouts;
	e->set_flow_timeouts(t.tcp_established_ns, t.tcp_transient_ns, t.tcp_close_ns, t.udp_ns, t.icmp_ns);
	lg_host_set_time_offset(0);
	e->set_flow_log(cfg.flow_log);
	// Routes, neighbours and own addresses are fixed for the life of the
	// process (above), so the fast path's cached next hops can never be
	// stale: watched for ever, never changed. A generation change already
	// sends each flow through the full path (docs/dpdk.md).
	lg_host_set_fib(0, ~0ull);
	e->live_ = std::make_shared<CompiledTables>();
	return e;
}

Engine::~Engine()
{
	if (g_engine == this)
		g_engine = nullptr;
	// No worker decides on an engine being destroyed. Unregistered, they
	// hold back no grace period: the hashes' defer queues, freed with them,
	// reclaim every deletion still waiting. Otherwise rte_rcu_qsbr_dq_delete
	// fails and leaves a queue whose name a later engine cannot reuse.
	if (qsbr_)
		for (unsigned w = 0; w < LG_HOST_CPUS; w++)
			rte_rcu_qsbr_thread_unregister(qsbr_, w);
	// The hashes' defer queues read the QSBR variable as they are freed.
	flows_.reset();
	frags_.reset();
	flowlog_.reset();
	rte_free(qsbr_);
}

lg_umap *Engine::resolve(const char *name)
{
	for (size_t i = 0; i < kOuters; i++)
		if (!std::strcmp(name, kOuterNames[i]))
			return outer_[i].get();
	const std::pair<const char *, lg_umap *> fixed[] = {
		{"lg_active", active_.get()},       {"lg_flows", flows_.get()},         {"lg_frags", frags_.get()},
		{"lg_reason_cnt", reason_cnt_.get()}, {"lg_rule_cnt", rule_cnt_.get()}, {"lg_pe_cnt", pe_cnt_.get()},
		{"lg_srv_cnt", srv_cnt_.get()},     {"lg_egress_cnt", egress_cnt_.get()}, {"lg_local", local_.get()},
		{"lg_ifmac", ifmac_.get()},         {"lg_scratch", scratch_.get()},     {"lg_flowlog", flowlog_.get()},
		{"lg_log_cnt", log_cnt_.get()}};
	for (auto &[n, m] : fixed)
		if (!std::strcmp(name, n))
			return m;
	return nullptr;
}

Result<std::shared_ptr<Engine::Generation>> Engine::build(const CompiledTables &t)
{
	auto g = std::make_shared<Generation>();
	g->t = std::make_shared<CompiledTables>(t);
	auto arr = [&](std::unique_ptr<ArrayMap> m) {
		g->arrays.push_back(std::move(m));
		return static_cast<lg_umap *>(g->arrays.back().get());
	};
	auto hsh = [&](std::unique_ptr<FixedHash> m) {
		g->hashes.push_back(std::move(m));
		return static_cast<lg_umap *>(g->hashes.back().get());
	};
	g->subnets = std::make_unique<LpmMap>(sizeof(lg_subnet_key) - 4, sizeof(lg_subnet));
	for (auto &[k, v] : t.subnets)
		g->subnets->insert(k.prefixlen, &k.vni_be, &v);
	g->subnets->seal();
	std::vector<std::pair<lg_vnetrule_key, uint32_t>> vr;
	for (auto &k : t.vnetrules)
		vr.push_back({k, 1u});
	lg_gcfg gc = t.gcfg;
	// Flows are stamped with the engine's own count of publishes, not the
	// agent's number: a restarted linkgated numbers from 1 again (no pins
	// to adopt), and a flow stamped N by the old agent would not be
	// re-checked against the new agent's generation N (SPEC §4).
	gc.generation = stamp_ + 1;
	g->inner = {arr(ArrayMap::of(t.ivl)),      arr(ArrayMap::of(t.bitmaps)),  arr(ArrayMap::of(t.nsg_dirs)),
		    arr(ArrayMap::of(t.rules)),    g->subnets.get(),              hsh(hash_of(t.nics)),
		    hsh(hash_of(t.pes)),           hsh(hash_of(t.pubips)),        arr(ArrayMap::of(t.servers)),
		    arr(ArrayMap::of(t.fwranges)), hsh(hash_of(vr)),              arr(ArrayMap::of(t.backends)),
		    arr(ArrayMap::of(t.maglev)),   hsh(hash_of(t.ifaces)),        arr(ArrayMap::of(std::vector<lg_gcfg>{gc}))};
	// rte_acl per NSG direction; a direction whose rules did not change keeps
	// its context (no rebuild for PEC, firewall or backend changes).
	for (uint32_t d = 0; d < t.nsg_dirs.size(); d++) {
		auto rules = acl_rules(t, d, cfg_.acl_max_rules);
		if (!rules) {
			// Lists crossed with lists: the direction keeps the program's
			// bit-vector walk, which gives the same answers (tests/dpdk).
			g->acl.push_back(nullptr);
			g->acl_keys.emplace_back();
			continue;
		}
		std::string key(reinterpret_cast<const char *>(rules->data()), rules->size() * sizeof(AclRuleSpec));
		auto it = acl_cache_.find(key);
		std::shared_ptr<AclClassifier> c;
		if (it != acl_cache_.end()) {
			c = it->second; // null: known not to fit, not built again
		} else {
			bool too_big = false, for_now = false;
			auto b = AclClassifier::build(*rules, cfg_.acl_max_bytes, &too_big, &for_now);
			if (!b && too_big) {
				// Within the rule budget but not within memory (some
				// shapes of rule take hundreds of MB): the walk, as
				// above, remembered under its rules like a context.
				// Not remembered when the heap was short of the context
				// itself: the next publish builds it again.
				g->acl.push_back(nullptr);
				g->acl_keys.push_back(for_now ? std::string() : std::move(key));
				continue;
			}
			if (!b)
				return err(b.error());
			c = *b;
			if (cfg_.acl_algorithm && c->set_algorithm(cfg_.acl_algorithm))
				return err("rte_acl algorithm " + std::to_string(cfg_.acl_algorithm) +
					   " is not supported on this CPU");
			g->acl_built++;
		}
		g->acl.push_back(c);
		g->acl_keys.push_back(std::move(key));
	}
	return g;
}

Status Engine::publish(const CompiledTables &t)
{
	std::lock_guard lk(control_);
	// Everything that allocates comes before the flip, and nothing after it
	// can fail: a publish that answers an error has changed nothing, and one
	// that flipped completes (else the next would take the live slot).
	uint32_t target = published_ ? (active_slot_ + 1) % LG_GEN_SLOTS : 0;
	std::shared_ptr<Generation> g;
	std::map<std::string, std::shared_ptr<AclClassifier>> keep; // the contexts of the live generations
	std::map<uint64_t, uint64_t>::node_type stamp_node;
	try {
		auto b = build(t);
		if (!b)
			return err(b.error());
		g = *b;
		for (uint32_t s = 0; s < LG_GEN_SLOTS; s++) {
			const Generation *gen = s == target ? g.get() : gens_[s].get();
			for (size_t d = 0; gen && d < gen->acl.size(); d++)
				if (!gen->acl_keys[d].empty())
					keep[gen->acl_keys[d]] = gen->acl[d];
		}
		std::map<uint64_t, uint64_t> one{{stamp_ + 1, t.generation}};
		stamp_node = one.extract(one.begin());
		reserve_rebase(*live_, t);
	} catch (const std::exception &e) {
		return err("generation " + std::to_string(t.generation) + " not built: " + e.what());
	}

	// The target slot was retired by the previous publish: its readers are gone.
	for (size_t i = 0; i < kOuters; i++)
		outer_[i]->set(target, g->inner[i]);
	gens_[target] = g;
	auto *a = reinterpret_cast<lg_active *>(active_->at(0));
	a->layout = LG_XDP_LAYOUT_VERSION;
	a->generation = stamp_ + 1; // the slot's lg_gcfg.generation (the program checks the pair)
	__atomic_store_n(&a->slot, target, __ATOMIC_RELEASE);

	// Wait until every online worker has passed a quiescent state: from then
	// on no packet reads the old slot, and every worker uses this generation.
	uint64_t token = rte_rcu_qsbr_start(qsbr_);
	if (t_wid >= 0)
		rte_rcu_qsbr_quiescent(qsbr_, unsigned(t_wid));
	rte_rcu_qsbr_check(qsbr_, token, true);

	rebase_counters(*live_);
	live_ = g->t;
	active_slot_ = target;
	published_ = true;
	generation_ = t.generation;
	stamp_++;
	stamp_gen_.insert(std::move(stamp_node));
	acl_builds_ += g->acl_built;
	if (stamp_gen_.size() > 4096)
		stamp_gen_.erase(stamp_gen_.begin());
	acl_cache_.swap(keep);
	return Ok{};
}

uint64_t Engine::acl_builds() const
{
	std::lock_guard lk(control_);
	return acl_builds_;
}

size_t Engine::walk_directions() const
{
	std::lock_guard lk(control_);
	auto g = gens_[active_slot_];
	return g ? size_t(std::count(g->acl.begin(), g->acl.end(), nullptr)) : 0;
}

void Engine::set_flow_timeouts(uint64_t tcp_established_ns, uint64_t tcp_transient_ns, uint64_t tcp_close_ns,
			       uint64_t udp_ns, uint64_t icmp_ns)
{
	EvaluatorConfig &t = cfg_.timeouts;
	t.tcp_established_ns = tcp_established_ns;
	t.tcp_transient_ns = tcp_transient_ns;
	t.tcp_close_ns = tcp_close_ns;
	t.udp_ns = udp_ns;
	t.icmp_ns = icmp_ns;
	lg_host_timeouts to{t.tcp_established_ns, t.tcp_transient_ns, t.tcp_close_ns, t.udp_ns, t.icmp_ns, t.fragment_ns};
	lg_host_set_timeouts(&to);
}

void Engine::set_flow_log(bool on)
{
	flow_log_.store(on, std::memory_order_relaxed);
	lg_host_set_flow_log(on);
}

Status Engine::set_acl_algorithm(int alg)
{
	std::lock_guard lk(control_);
	for (auto &[k, c] : acl_cache_)
		if (c && c->set_algorithm(alg))
			return err("rte_acl algorithm " + std::to_string(alg) + " is not supported on this CPU");
	cfg_.acl_algorithm = alg;
	return Ok{};
}

void Engine::online(unsigned wid)
{
	// rte_hash's multi-writer add indexes a per-lcore free-slot cache with
	// rte_lcore_id(): a thread the EAL did not create (LCORE_ID_ANY) would
	// index past it. Such a thread gets an lcore id of its own here.
	if (rte_lcore_id() == LCORE_ID_ANY && rte_thread_register() == 0)
		t_registered = true;
	lg_host_cpu = wid;
	t_wid = int(wid);
	rte_rcu_qsbr_thread_register(qsbr_, wid);
	rte_rcu_qsbr_thread_online(qsbr_, wid);
}

void Engine::offline(unsigned wid)
{
	rte_rcu_qsbr_thread_offline(qsbr_, wid);
	rte_rcu_qsbr_thread_unregister(qsbr_, wid);
	t_wid = -1;
	if (t_registered) {
		rte_thread_unregister();
		t_registered = false;
	}
}

void Engine::quiescent(unsigned wid) { rte_rcu_qsbr_quiescent(qsbr_, wid); }

void Engine::set_time_offset(uint64_t ns) { lg_host_set_time_offset(ns); }

Verdict Engine::decide(uint32_t ifindex, uint8_t *frame, uint32_t len, uint64_t now_ns)
{
	Verdict v;
	decide_frames(ifindex, &frame, &len, 1, &v, now_ns);
	return v;
}

uint32_t Engine::active_slot() const
{
	const auto *a = reinterpret_cast<const lg_active *>(active_->at(0));
	uint32_t slot = __atomic_load_n(&a->slot, __ATOMIC_ACQUIRE);
	return slot < LG_GEN_SLOTS ? slot : 0;
}

uint32_t Engine::vni_of(uint32_t slot, uint32_t ifindex) const
{
	// lg_iface of the slot, as egress_vni(). A publish between the burst's
	// read of the slot and the program's own makes keys with the other VNI:
	// they then find no hint and ask rte_hash.
	auto *m = static_cast<FixedHash *>(outer_[kIfaceOuter]->inner(slot));
	const auto *i = m && ifindex ? static_cast<const lg_iface *>(m->find(&ifindex)) : nullptr;
	return i ? i->vni : 0;
}

void Engine::decide_frames(uint32_t ifindex, uint8_t *const *data, const uint32_t *len, unsigned n, Verdict *out,
			   uint64_t now_ns)
{
	Burst &b = t_burst;
	if (n > Burst::kMax) {
		for (unsigned o = 0; o < n; o += Burst::kMax)
			decide_frames(ifindex, data + o, len + o, std::min(n - o, Burst::kMax), out + o, now_ns);
		return;
	}
	// Flow keys of the burst, then one bulk lookup of all of them.
	uint32_t slot = active_slot();
	uint32_t vni = vni_of(slot, ifindex);
	b.n = n;
	b.nbatch = 0;
	b.hints.n = 0;
	for (unsigned i = 0; i < n; i++) {
		bool starts = false;
		b.hint_of[i] = -1;
		b.cand[i] = false;
		unsigned h = b.hints.n;
		if (data[i] && pre_key(data[i], len[i], vni, &b.keys[h], &starts)) {
			b.hints.key[h] = &b.keys[h];
			b.hint_of[i] = int8_t(h);
			b.cand[i] = starts;
			b.hints.n++;
		}
	}
	flows_->prelookup(b.hints);
	// The other key of every flow found (lg_ct.bpf.h reply_key(), or the
	// original key of a reply entry), looked up the same way: the program
	// writes the flow back under it. Read from entries other workers may be
	// writing: a torn key is only a hint that answers nothing.
	unsigned n1 = b.hints.n;
	bool other = b.skip_other == 0;
	if (!other)
		b.skip_other--;
	for (unsigned i = 0; i < n; i++) {
		b.hint2_of[i] = -1;
		int h = b.hint_of[i];
		if (!other || h < 0 || b.hints.pos[h] < 0)
			continue;
		const auto *e = reinterpret_cast<const lg_flow_entry *>(flows_->value_at(b.hints.pos[h]));
		lg_flow_key &o = b.keys[b.hints.n];
		if (e->flags & LG_FLOW_F_REPLY) {
			std::memcpy(&o, &e->orig, sizeof o);
		} else {
			std::memset(&o, 0, sizeof o);
			o.vni = e->reply_vni;
			o.family = e->orig.family;
			o.proto = e->orig.proto;
			o.echo = lg_echo_reverse(e->orig.echo);
			if (e->kind != LG_DEST_ROUTED) {
				std::memcpy(o.src, e->nat_addr, 16);
				o.sport = e->nat_port;
			} else {
				std::memcpy(o.src, e->orig.dst, 16);
				o.sport = e->orig.dport;
			}
			std::memcpy(o.dst, e->orig.src, 16);
			o.dport = e->orig.sport;
		}
		b.hints.key[b.hints.n] = &o;
		b.hint2_of[i] = int16_t(b.hints.n++);
	}
	if (b.hints.n > n1)
		flows_->prelookup(b.hints, n1);
	// A frame without a flow that may start one: its NSG tuple (nsg_first
	// classifies the candidates of the burst together).
	b.ncand = 0;
	b.kinds = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!b.cand[i])
			continue;
		unsigned h = unsigned(b.hint_of[i]);
		if (b.hints.pos[h] >= 0) {
			b.cand[i] = false;
			continue;
		}
		const lg_flow_key &k = b.keys[h];
		acl_input(&b.in[i], k.proto, true, rte_be_to_cpu_16(k.sport), rte_be_to_cpu_16(k.dport), k.src, k.dst);
		b.kinds |= 1u << AclClassifier::kind_of(b.in[i]);
		b.rank[i] = uint8_t(b.ncand);
		b.cin[b.ncand++] = &b.in[i];
	}
	SharedHash::install(&b.hints);
	// One context for the burst: same ingress port and time for every frame.
	lg_host_ctx ctx{};
	ctx.md.ingress_ifindex = ifindex;
	ctx.now = now_ns;
	bool begun = false; // a frame ran lg_xdp's prelude (lg_host_run)
	for (unsigned i = 0; i < n; i++) {
		b.cur = int(i);
		b.hints.cur = b.hint_of[i];
		b.hints.cur2 = b.hint2_of[i];
		// The frame's own key, answered inline by bpf_helpers.h (lg_host_hint).
		if (int h = b.hint_of[i]; h >= 0 && b.hints.valid[h]) {
			lg_host_hint.map = flows_.get();
			lg_host_hint.key = b.hints.key[h];
			lg_host_hint.val = b.hints.pos[h] < 0 ? nullptr : flows_->value_at(b.hints.pos[h]);
			lg_host_hint.key_size = uint32_t(sizeof(lg_flow_key));
		} else {
			lg_host_hint.map = nullptr;
		}
		if (!data[i]) {
			// Cannot be read as one frame: count it as the program would a bad frame.
			out[i] = Verdict{LG_VERDICT_DROP, LG_REASON_MALFORMED, 0};
			uint32_t z = LG_REASON_MALFORMED;
			if (auto *c = reinterpret_cast<uint64_t *>(reason_cnt_->at(lg_host_cpu, z)))
				*c += 1;
			continue;
		}
		ctx.data = data[i];
		ctx.len = len[i];
		out[i] = run_one(ctx, begun);
		begun = true;
	}
	b.cur = -1;
	b.hints.cur = b.hints.cur2 = -1;
	lg_host_hint.map = nullptr;
	b.hints.hits += lg_host_hint.hits;
	lg_host_hint.hits = 0;
	SharedHash::install(nullptr);
	if (b.hints.n > n1) {
		// Other keys that answered no lookup (flows the program does not
		// write back): stop computing them for 15 bursts, then look again.
		unsigned used = 0;
		for (unsigned k = n1; k < b.hints.n; k++)
			used += b.hints.used[k];
		if (4 * used < b.hints.n - n1)
			b.skip_other = 15;
	}
	BurstStats &st = classify_[lg_host_cpu % LG_HOST_CPUS].burst;
	st.hint_hits += b.hints.hits;
	st.hint_misses += b.hints.misses;
	st.hints_forgotten += b.hints.forgotten;
	b.hints.hits = b.hints.misses = b.hints.forgotten = 0;
}

Verdict Engine::run_one(lg_host_ctx &c, bool next)
{
	lg_host_result r;
	if (next)
		lg_host_run_next(&c, &r);
	else
		lg_host_run(&c, &r);
	Verdict v{LG_VERDICT_DROP, lg_reason(r.reason), 0};
	switch (r.action) {
	case XDP_REDIRECT:
		v.verdict = LG_VERDICT_FORWARD;
		v.egress = r.egress;
		break;
	case XDP_TX: v.verdict = LG_VERDICT_TX; break;
	case XDP_PASS: v.verdict = LG_VERDICT_PASS; break;
	default: break;
	}
	return v;
}

void Engine::decide_burst(uint32_t ifindex, rte_mbuf **pkts, uint16_t n, Verdict *out, uint64_t now_ns)
{
	uint8_t *data[Burst::kMax];
	uint32_t len[Burst::kMax];
	for (unsigned o = 0; o < n; o += Burst::kMax) {
		unsigned k = std::min<unsigned>(n - o, Burst::kMax);
		// Every frame's first line is on its way before the first is parsed.
		for (unsigned i = 0; i < k; i++) {
			rte_mbuf *m = pkts[o + i];
			if (m->nb_segs > 1 && rte_pktmbuf_linearize(m)) {
				data[i] = nullptr;
				len[i] = 0;
				continue;
			}
			data[i] = rte_pktmbuf_mtod(m, uint8_t *);
			len[i] = rte_pktmbuf_data_len(m);
			rte_prefetch0(data[i]);
		}
		decide_frames(ifindex, data, len, k, out + o, now_ns);
	}
}

uint32_t Engine::nsg_first(uint32_t slot, uint32_t dir, uint8_t proto, uint8_t has_ports, uint16_t sport,
			   uint16_t dport, const uint8_t *src, const uint8_t *dst)
{
	Generation *g = slot < gens_.size() ? gens_[slot].get() : nullptr;
	if (!g || dir >= g->acl.size())
		return LG_NONE;
	if (!g->acl[dir])
		return LG_HOST_WALK;
	// Classification cost, per worker (linkgate-bench dpdk compares it with
	// raw rte_acl): the rte_acl calls, a burst's batch and a single tuple's
	// with building its input. An answer taken from a batch adds no cycles
	// (a key compare; reading the TSC twice would cost more than that).
	AclInput in;
	acl_input(&in, proto, has_ports, sport, dport, src, dst);
	ClassifyStat &cs = classify_[lg_host_cpu % LG_HOST_CPUS];
	uint32_t r = LG_NONE;
	bool answered = false;
	// A frame of a burst that may start a flow, asking with its own tuple:
	// the answer of this (slot, direction)'s batch, classified now for every
	// such frame from this one on if nobody asked before. The slot's
	// generation cannot change during the burst (a publish waits for this
	// worker's quiescent state before it reuses a slot).
	Burst &b = t_burst;
	if (b.cur >= 0 && b.cand[b.cur] && std::memcmp(&in, &b.in[b.cur], sizeof in) == 0) {
		Burst::Batch *bt = nullptr;
		for (unsigned i = 0; i < b.nbatch; i++)
			if (b.batch[i].slot == slot && b.batch[i].dir == dir)
				bt = &b.batch[i];
		unsigned rank = b.rank[b.cur];
		if (!bt && b.nbatch < Burst::kBatches) {
			bt = &b.batch[b.nbatch++];
			bt->slot = slot;
			bt->dir = dir;
			bt->first = rank;
			uint64_t t0 = rte_rdtsc();
			unsigned m = b.ncand - rank;
			// Usually one kind (new IPv4 TCP/UDP flows): straight to its context.
			if (__builtin_popcount(b.kinds) == 1)
				g->acl[dir]->classify_kind(unsigned(__builtin_ctz(b.kinds)), b.cin + rank, bt->res, m);
			else
				g->acl[dir]->classify(b.cin + rank, bt->res, m);
			cs.burst.acl_calls++;
			cs.burst.acl_tuples += m;
			cs.cycles += rte_rdtsc() - t0;
		}
		if (bt && rank >= bt->first) {
			r = bt->res[rank - bt->first];
			answered = true;
			cs.burst.acl_batched++;
		}
	}
	if (!answered) {
		uint64_t t0 = rte_rdtsc();
		AclInput one;
		acl_input(&one, proto, has_ports, sport, dport, src, dst);
		r = g->acl[dir]->first(one);
		cs.cycles += rte_rdtsc() - t0;
		cs.burst.acl_calls++;
		cs.burst.acl_tuples++;
	}
	cs.lookups++;
	return r;
}

std::shared_ptr<const AclClassifier> Engine::live_classifier(uint32_t dir) const
{
	const Generation *g = gens_[active_slot()].get();
	return g && dir < g->acl.size() ? g->acl[dir] : nullptr;
}

Engine::BurstStats Engine::burst_stats() const
{
	BurstStats t;
	for (const ClassifyStat &c : classify_) {
		t.hint_hits += c.burst.hint_hits;
		t.hint_misses += c.burst.hint_misses;
		t.hints_forgotten += c.burst.hints_forgotten;
		t.acl_calls += c.burst.acl_calls;
		t.acl_tuples += c.burst.acl_tuples;
		t.acl_batched += c.burst.acl_batched;
	}
	return t;
}

std::pair<uint64_t, uint64_t> Engine::classify_stats() const
{
	uint64_t c = 0, n = 0;
	for (const ClassifyStat &s : classify_) {
		c += s.cycles;
		n += s.lookups;
	}
	return {c, n};
}

long Engine::fib(lg_host_ctx *, bpf_fib_lookup *f)
{
	Addr dst{};
	if (f->family == 2) { // AF_INET
		dst.b[10] = dst.b[11] = 0xff;
		std::memcpy(&dst.b[12], &f->ipv4_dst, 4);
	} else {
		std::memcpy(dst.b.data(), f->ipv6_dst, 16);
	}
	uint64_t d[2];
	std::memcpy(d, dst.b.data(), 16);
	// Addr::is_v4 (::ffff:0:0/96), inline
	bool v4 = d[0] == 0 && !dst.b[8] && !dst.b[9] && dst.b[10] == 0xff && dst.b[11] == 0xff;
	for (const Route &r : routes_) {
		if (r.v4 != v4 || (d[0] & r.msk[0]) != r.net[0] || (d[1] & r.msk[1]) != r.net[1])
			continue;
		Addr nh = r.gateway ? *r.gateway : dst;
		f->ifindex = r.ifindex;
		if (r.smac)
			std::memcpy(f->smac, r.smac->data(), 6);
		if (r.mac) {
			std::memcpy(f->dmac, r.mac->data(), 6);
			return BPF_FIB_LKUP_RET_SUCCESS;
		}
		auto n = neigh_.find({r.ifindex, nh});
		if (n == neigh_.end())
			return BPF_FIB_LKUP_RET_NO_NEIGH;
		std::memcpy(f->dmac, n->second.data(), 6);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	return BPF_FIB_LKUP_RET_NOT_FWDED;
}

// Room for rebase_counters(old) to fold into: every name it adds, every
// snapshot it writes (it runs after the flip and must not allocate), and
// the totals it then forgets: those of names next lacks, as XDP's agent
// forgets names the live generation no longer has (a name back later
// starts from zero in both). The totals, and so the counters reply, stay
// the size of the state; they grew with every renamed rule.
void Engine::reserve_rebase(const CompiledTables &old, const CompiledTables &next)
{
	using Gone = std::vector<std::map<std::string, uint64_t>::iterator>;
	auto room = [](const std::vector<std::string> &names, const std::vector<std::string> &next_names,
		       std::map<std::string, uint64_t> &tot, std::vector<uint64_t> &snap, PerCpuArray &raw, Gone &gone) {
		for (size_t i = 0; i < names.size() && i < raw.size(); i++)
			tot.try_emplace(names[i], 0);
		snap.reserve(raw.size());
		std::set<std::string_view> keep(next_names.begin(), next_names.end());
		gone.clear();
		for (auto it = tot.begin(); it != tot.end(); ++it)
			if (!keep.count(it->first))
				gone.push_back(it);
	};
	room(old.rule_names, next.rule_names, tot_rules_, snap_rules_, *rule_cnt_, gone_rules_);
	room(old.pe_names, next.pe_names, tot_pes_, snap_pes_, *pe_cnt_, gone_pes_);
	room(old.server_names, next.server_names, tot_servers_, snap_servers_, *srv_cnt_, gone_servers_);
}

void Engine::rebase_counters(const CompiledTables &old) noexcept
{
	using Gone = std::vector<std::map<std::string, uint64_t>::iterator>;
	auto fold = [](const std::vector<std::string> &names, std::map<std::string, uint64_t> &tot,
		       std::vector<uint64_t> &snap, PerCpuArray &raw, Gone &gone) {
		// Each counter read once: the value folded is the new snapshot, so
		// a hit counted between two reads is credited exactly once.
		snap.resize(raw.size(), 0); // within the reserved capacity
		for (size_t i = 0; i < raw.size(); i++) {
			uint64_t now = raw.sum_u64(i);
			if (i < names.size())
				tot.find(names[i])->second += now - snap[i]; // reserve_rebase() made it
			snap[i] = now;
		}
		for (auto it : gone) // map iterators outlive other inserts; erase frees only
			tot.erase(it);
		gone.clear();
	};
	fold(old.rule_names, tot_rules_, snap_rules_, *rule_cnt_, gone_rules_);
	fold(old.pe_names, tot_pes_, snap_pes_, *pe_cnt_, gone_pes_);
	fold(old.server_names, tot_servers_, snap_servers_, *srv_cnt_, gone_servers_);
}

EngineCounters Engine::counters()
{
	std::lock_guard lk(control_);
	EngineCounters c;
	for (size_t i = 0; i < LG_REASON__COUNT; i++)
		c.reasons[i] = reason_cnt_->sum_u64(i);
	// The live generation's names only: the totals by name since start,
	// plus what this generation counted.
	auto add = [](const std::vector<std::string> &names, const std::map<std::string, uint64_t> &tot,
		      const std::vector<uint64_t> &snap, PerCpuArray &raw, std::map<std::string, uint64_t> &out) {
		out.clear();
		for (size_t i = 0; i < names.size() && i < raw.size(); i++) {
			auto [it, fresh] = out.try_emplace(names[i], 0);
			if (fresh)
				if (auto t = tot.find(names[i]); t != tot.end())
					it->second = t->second;
			it->second += raw.sum_u64(i) - (i < snap.size() ? snap[i] : 0);
		}
	};
	add(live_->rule_names, tot_rules_, snap_rules_, *rule_cnt_, c.rules);
	add(live_->pe_names, tot_pes_, snap_pes_, *pe_cnt_, c.private_endpoints);
	add(live_->server_names, tot_servers_, snap_servers_, *srv_cnt_, c.servers);
	c.flows = flows_->count() / 2;
	return c;
}

std::vector<lg_flow_entry> Engine::flows(size_t max)
{
	std::lock_guard lk(control_);
	std::vector<lg_flow_entry> out;
	flows_->for_each([&](const void *, uint8_t *v) {
		lg_flow_entry e;
		std::memcpy(&e, v, sizeof e);
		if (lg_flow_listed(&e) && out.size() < max) {
			// The agent's generation number for the engine's stamp.
			auto it = stamp_gen_.find(e.generation);
			e.generation = it != stamp_gen_.end() ? it->second : 0;
			out.push_back(e);
		}
		return false;
	});
	return out;
}

std::vector<lg_flow_sample> Engine::flow_samples(size_t max)
{
	std::vector<lg_flow_sample> out;
	for (const lg_flow_entry &e : flows(max))
		out.push_back(lg_flow_sample{e, 0, 0, 0, 0});
	std::lock_guard lk(control_);
	for (lg_flow_sample &f : out) {
		lg_flow_key rk;
		lg_flow_reply_key(&f.e, &rk);
		lg_flow_entry r;
		if (std::memcmp(&rk, &f.e.orig, sizeof rk) != 0 && flows_->copy(&rk, &r, sizeof r) &&
		    (r.flags & LG_FLOW_F_REPLY) && std::memcmp(&r.orig, &f.e.orig, sizeof r.orig) == 0) {
			f.reply_packets = r.packets;
			f.reply_bytes = r.bytes;
			f.reply_found = 1;
		}
	}
	return out;
}

std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> Engine::drain_flowlog()
{
	std::lock_guard lk(control_);
	std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> out;
	flowlog_->for_each(
		[&](const void *k, uint8_t *v) {
			std::pair<lg_flow_key, lg_flowlog_entry> r;
			std::memcpy(&r.first, k, sizeof r.first);
			std::memcpy(&r.second, v, sizeof r.second);
			auto it = stamp_gen_.find(r.second.generation); // the agent's number, as flows()
			r.second.generation = it != stamp_gen_.end() ? it->second : 0;
			out.push_back(r);
			return true;
		},
		SIZE_MAX, true);
	return out;
}

uint64_t Engine::log_counter(lg_log_counter c) { return log_cnt_->sum_u64(c); }

size_t Engine::flow_entries() { return flows_->count(); }

size_t Engine::reclaim(uint64_t now_ns)
{
	std::lock_guard lk(control_);
	// A flow expires at the later expiry of its two copies (the program's
	// fast path refreshes only the copy it found). A first pass reads
	// expires_ns alone (one cache line an entry; usually nothing has
	// expired, and then nothing else is read); the second looks up the twin
	// of each expired copy, as lg_flow_lookup does. A lookup, not a set of
	// the walk's live copies: a walk can miss a key that a worker moved
	// meanwhile (a cuckoo displacement into a bucket it had passed), and a
	// flow left with one copy loses its other direction.
	auto expires = [](const uint8_t *v) {
		uint64_t x;
		std::memcpy(&x, v + offsetof(lg_flow_entry, expires_ns), sizeof x);
		return x;
	};
	constexpr size_t kExpires = offsetof(lg_flow_entry, expires_ns) + sizeof(uint64_t);
	size_t due = 0;
	flows_->for_each(
		[&](const void *, uint8_t *v) {
			due += expires(v) <= now_ns;
			return false;
		},
		kExpires);
	size_t n = 0;
	if (due)
		// Flows counted by their original copies, as XDP's reclaim counts
		// them: a flow to itself has no other. Asked again before each
		// delete, as XDP's reads again: a packet may have made the flow
		// anew in place since the walk.
		n = flows_->for_each([&](const void *, uint8_t *v) {
			if (expires(v) > now_ns)
				return 0;
			lg_flow_entry e, twin;
			std::memcpy(&e, v, sizeof e);
			if (!lg_flow_copy_expired(&e, now_ns))
				return 0; // a claim: its flow is being made
			lg_flow_key tk;
			if (e.flags & LG_FLOW_F_REPLY)
				tk = e.orig;
			else
				lg_flow_reply_key(&e, &tk);
			if (flows_->copy(&tk, &twin, sizeof twin) && twin.expires_ns > now_ns &&
			    std::memcmp(&twin.orig, &e.orig, sizeof e.orig) == 0)
				return 0;
			return e.flags & LG_FLOW_F_REPLY ? 2 : 1;
		}, SIZE_MAX, false, true);
	frags_->for_each(
		[&](const void *, uint8_t *v) {
			lg_frag_entry e;
			std::memcpy(&e, v, sizeof e);
			return lg_frag_expired(&e, now_ns) != 0;
		},
		SIZE_MAX, false, true);
	return n;
}

} // namespace lg::dp

extern "C" __u32 lg_host_nsg_first(__u32 slot, __u32 dir, __u8 proto, __u8 has_ports, __u16 sport, __u16 dport,
				   const __u8 *src, const __u8 *dst)
{
	return lg::dp::g_engine->nsg_first(slot, dir, proto, has_ports, sport, dport, src, dst);
}

extern "C" long lg_host_fib(struct lg_host_ctx *ctx, struct bpf_fib_lookup *f)
{
	return lg::dp::g_engine->fib(ctx, f);
}
