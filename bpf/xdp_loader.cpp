// XDP loader: see xdp_loader.hpp and docs/xdp.md (the generation swap).
#include "xdp_loader.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <bit>
#include <charconv>
#include <numeric>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <ctime>
#include <type_traits>

#include "lg_xdp.skel.h"

extern "C" {
#include "lg_flow.h"
#include "lg_tables.h"
#include "lg_xdp.h"
}

namespace lg {

namespace {

std::string sys(const std::string &what, int e)
{
	return what + ": " + std::strerror(e < 0 ? -e : e);
}

Status check_size(bpf_map *m, const char *name, size_t key, size_t value)
{
	if (!m)
		return err(std::string("XDP object lacks map ") + name + " (stale build?)");
	if (bpf_map__key_size(m) != key || bpf_map__value_size(m) != value)
		return err(std::string("XDP map ") + name + " does not match the ABI headers (key " +
			   std::to_string(bpf_map__key_size(m)) + "/" + std::to_string(key) + ", value " +
			   std::to_string(bpf_map__value_size(m)) + "/" + std::to_string(value) + "): rebuild linkgate");
	return Ok{};
}

// Generation tables in the order of XdpDataplane's slot arrays; lg_gcfg is
// last (the barrier re-sets its entry).
struct TableSpec {
	const char *name;
	bpf_map_type type;
	uint32_t flags;
	uint32_t ksize, vsize;
};
const TableSpec kSpec[] = {
	{"lg_ivl_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_ivl)},
	{"lg_bitmap_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_bitmap)},
	{"lg_nsg_dir_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_nsg_dir)},
	{"lg_rule_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_rule)},
	{"lg_subnet_g", BPF_MAP_TYPE_LPM_TRIE, BPF_F_NO_PREALLOC, sizeof(lg_subnet_key), sizeof(lg_subnet)},
	{"lg_nic_g", BPF_MAP_TYPE_HASH, 0, sizeof(lg_addr_key), sizeof(lg_nic)},
	{"lg_pe_g", BPF_MAP_TYPE_HASH, 0, sizeof(lg_addr_key), sizeof(lg_pe)},
	{"lg_pubip_g", BPF_MAP_TYPE_HASH, 0, sizeof(lg_pubip_key), 4},
	{"lg_server_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_server)},
	{"lg_fwrange_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_fwrange)},
	{"lg_vnetrule_g", BPF_MAP_TYPE_HASH, 0, sizeof(lg_vnetrule_key), 4},
	{"lg_backend_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_backend)},
	{"lg_maglev_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, 4},
	{"lg_iface_g", BPF_MAP_TYPE_HASH, 0, 4, sizeof(lg_iface)},
	{"lg_gcfg_g", BPF_MAP_TYPE_ARRAY, BPF_F_INNER_MAP, 4, sizeof(lg_gcfg)},
};
constexpr size_t kGcfg = 14, kMaglev = 12;

std::array<bpf_map *, std::size(kSpec)> outer_maps(lg_xdp *skel)
{
	auto *m = &skel->maps;
	return {m->lg_ivl, m->lg_bitmap, m->lg_nsg_dir, m->lg_rule, m->lg_subnet, m->lg_nic, m->lg_pe, m->lg_pubip,
		m->lg_server, m->lg_fwrange, m->lg_vnetrule, m->lg_backend, m->lg_maglev, m->lg_iface, m->lg_gcfg};
}

// Headroom so that small changes fit the map already in the slot.
uint32_t capacity(uint32_t n) { return std::max(64u, std::bit_ceil(n)); }

// Keyed table as two packed arrays (std::pair may pad).
struct Packed {
	std::vector<uint8_t> keys, vals;
	uint32_t n = 0;
};
template <typename K, typename V>
Packed pack(const std::vector<std::pair<K, V>> &kv)
{
	Packed p;
	p.n = uint32_t(kv.size());
	p.keys.resize(kv.size() * sizeof(K));
	p.vals.resize(kv.size() * sizeof(V));
	for (size_t i = 0; i < kv.size(); i++) {
		std::memcpy(p.keys.data() + i * sizeof(K), &kv[i].first, sizeof(K));
		std::memcpy(p.vals.data() + i * sizeof(V), &kv[i].second, sizeof(V));
	}
	return p;
}

// Write n elements (arrays: indices 0..n-1) into fd; plain updates, no
// grace period.
int fill(int fd, const TableSpec &sp, const void *keys, const void *vals, uint32_t n)
{
	auto *v = static_cast<const uint8_t *>(vals);
	if (sp.type == BPF_MAP_TYPE_ARRAY) {
		if (n == 0)
			return 0;
		std::vector<uint32_t> idx(n);
		std::iota(idx.begin(), idx.end(), 0u);
		uint32_t count = n;
		LIBBPF_OPTS(bpf_map_batch_opts, bo);
		if (bpf_map_update_batch(fd, idx.data(), vals, &count, &bo) == 0 && count == n)
			return 0;
		for (uint32_t i = 0; i < n; i++)
			if (bpf_map_update_elem(fd, &i, v + size_t(i) * sp.vsize, BPF_ANY))
				return errno;
		return 0;
	}
	auto *k = static_cast<const uint8_t *>(keys);
	for (uint32_t i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, k + size_t(i) * sp.ksize, v + size_t(i) * sp.vsize, BPF_ANY))
			return errno;
	return 0;
}

// Delete the keys of a hash/LPM inner map that the new table lacks.
int delete_stale(int fd, const TableSpec &sp, const void *keys, uint32_t n)
{
	auto *k = static_cast<const char *>(keys);
	std::unordered_set<std::string> want;
	for (uint32_t i = 0; i < n; i++)
		want.emplace(k + size_t(i) * sp.ksize, sp.ksize);
	std::vector<std::string> stale;
	std::string cur(sp.ksize, '\0'), next(sp.ksize, '\0');
	const void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
		if (!want.count(next))
			stale.push_back(next);
		cur = next;
		prev = cur.data();
	}
	if (errno != ENOENT)
		return errno;
	for (auto &s : stale)
		if (bpf_map_delete_elem(fd, s.data()) && errno != ENOENT)
			return errno;
	return 0;
}

// Re-set an outer entry to the inner map it holds: the syscall returns after
// synchronize_rcu(), i.e. when every packet that read the previous lg_active
// has finished. Returns 0 or errno.
int rcu_barrier_op(int outer_fd, uint32_t slot, int inner_fd)
{
	return bpf_map_update_elem(outer_fd, &slot, &inner_fd, BPF_ANY) ? errno : 0;
}

uint64_t percpu_sum(bpf_map *m, uint32_t key, int ncpu)
{
	if (key >= bpf_map__max_entries(m))
		return 0;
	std::vector<uint64_t> v(size_t(ncpu), 0);
	if (bpf_map__lookup_elem(m, &key, sizeof key, v.data(), v.size() * sizeof(uint64_t), 0))
		return 0;
	uint64_t s = 0;
	for (auto x : v)
		s += x;
	return s;
}

size_t count_keys(bpf_map *m)
{
	std::vector<uint8_t> k(bpf_map__key_size(m)), next(k.size());
	size_t n = 0;
	const void *prev = nullptr;
	while (bpf_map__get_next_key(m, prev, next.data(), next.size()) == 0) {
		n++;
		k = next;
		prev = k.data();
	}
	return n;
}

} // namespace

Result<std::unique_ptr<XdpDataplane>> XdpDataplane::load(const XdpConfig &cfg)
{
	std::unique_ptr<XdpDataplane> d(new XdpDataplane());
	for (auto &sl : d->slot_fds_)
		sl.fill(-1);
	d->skel_ = lg_xdp__open();
	if (!d->skel_)
		return err(sys("cannot open the XDP object", errno));
	auto *s = d->skel_;
	auto *m = &s->maps;

	struct Want {
		bpf_map *map;
		const char *name;
		size_t key, value;
	};
	// Inner templates carry the generation tables' layouts.
	const Want want[] = {
		{bpf_map__inner_map(m->lg_ivl), "lg_ivl", 4, sizeof(lg_ivl)},
		{bpf_map__inner_map(m->lg_bitmap), "lg_bitmap", 4, sizeof(lg_bitmap)},
		{bpf_map__inner_map(m->lg_nsg_dir), "lg_nsg_dir", 4, sizeof(lg_nsg_dir)},
		{bpf_map__inner_map(m->lg_rule), "lg_rule", 4, sizeof(lg_rule)},
		{bpf_map__inner_map(m->lg_subnet), "lg_subnet", sizeof(lg_subnet_key), sizeof(lg_subnet)},
		{bpf_map__inner_map(m->lg_nic), "lg_nic", sizeof(lg_addr_key), sizeof(lg_nic)},
		{bpf_map__inner_map(m->lg_pe), "lg_pe", sizeof(lg_addr_key), sizeof(lg_pe)},
		{bpf_map__inner_map(m->lg_pubip), "lg_pubip", sizeof(lg_pubip_key), 4},
		{bpf_map__inner_map(m->lg_server), "lg_server", 4, sizeof(lg_server)},
		{bpf_map__inner_map(m->lg_fwrange), "lg_fwrange", 4, sizeof(lg_fwrange)},
		{bpf_map__inner_map(m->lg_vnetrule), "lg_vnetrule", sizeof(lg_vnetrule_key), 4},
		{bpf_map__inner_map(m->lg_backend), "lg_backend", 4, sizeof(lg_backend)},
		{bpf_map__inner_map(m->lg_maglev), "lg_maglev", 4, 4},
		{bpf_map__inner_map(m->lg_iface), "lg_iface", 4, sizeof(lg_iface)},
		{bpf_map__inner_map(m->lg_gcfg), "lg_gcfg", 4, sizeof(lg_gcfg)},
		{m->lg_active, "lg_active", 4, sizeof(lg_active)},
		{m->lg_flows, "lg_flows", sizeof(lg_flow_key), sizeof(lg_flow_entry)},
		{m->lg_frags, "lg_frags", sizeof(lg_frag_key), sizeof(lg_frag_entry)},
		{m->lg_flowlog, "lg_flowlog", sizeof(lg_flow_key), sizeof(lg_flowlog_entry)},
		{m->lg_ifmac, "lg_ifmac", 4, sizeof(lg_ifmac)},
		{m->lg_local, "lg_local", sizeof(lg_local_key), 1},
	};
	for (auto &w : want)
		if (auto st = check_size(w.map, w.name, w.key, w.value); !st)
			return err(st.error());

	if (cfg.flow_capacity == 0 || cfg.frag_capacity == 0)
		return err("flow and fragment capacities must be at least 1");
	if (cfg.gen_slots < 2 || cfg.gen_slots > LG_GEN_SLOTS)
		return err("generation slots must be 2.." + std::to_string(LG_GEN_SLOTS));
	d->slots_ = cfg.gen_slots;
	d->flow_log_ = cfg.flow_log;
	for (bpf_map *om : outer_maps(s))
		bpf_map__set_max_entries(om, cfg.gen_slots);
	bpf_map__set_max_entries(m->lg_flows, 2 * cfg.flow_capacity);
	bpf_map__set_max_entries(m->lg_frags, cfg.frag_capacity);
	bpf_map__set_max_entries(m->lg_rule_cnt, std::max(cfg.rule_counters, 1u));
	bpf_map__set_max_entries(m->lg_pe_cnt, std::max(cfg.pe_counters, 1u));
	bpf_map__set_max_entries(m->lg_srv_cnt, std::max(cfg.server_counters, 1u));
	s->rodata->lg_tcp_established_ns = cfg.tcp_established_ns;
	s->rodata->lg_tcp_transient_ns = cfg.tcp_transient_ns;
	s->rodata->lg_tcp_close_ns = cfg.tcp_close_ns;
	s->rodata->lg_udp_ns = cfg.udp_ns;
	s->rodata->lg_icmp_ns = cfg.icmp_ns;
	s->rodata->lg_fragment_ns = cfg.fragment_ns;
	s->rodata->lg_flowlog_on = cfg.flow_log;

	d->pin_dir_ = cfg.pin_dir;
	if (!cfg.pin_dir.empty()) {
		if (mkdir(cfg.pin_dir.c_str(), 0700) && errno != EEXIST)
			return err(sys("cannot create the pin directory " + cfg.pin_dir + " (is bpffs mounted?)", errno));
		for (bpf_map *pm : d->pinned_maps())
			if (int e = bpf_map__set_pin_path(pm, (cfg.pin_dir + "/" + bpf_map__name(pm)).c_str()))
				return err(sys("cannot pin map " + std::string(bpf_map__name(pm)), e));
	}

	if (int e = lg_xdp__load(s)) {
		if (!cfg.pin_dir.empty())
			return err(sys("cannot load the XDP program over the maps pinned in " + cfg.pin_dir +
					       " (capacity or layout changed? remove the directory to start afresh, "
					       "which drops the flows)",
				       e));
		return err(sys("the kernel refused the XDP program (verifier or missing CAP_BPF)", e));
	}
	int n = libbpf_num_possible_cpus();
	d->ncpu_ = n > 0 ? n : 1;
	d->start_barrier_thread(); // or at the first flip (or barriers run inline)
	lg_active a{};
	uint32_t z = 0;
	if (bpf_map__lookup_elem(m->lg_active, &z, sizeof z, &a, sizeof a, 0))
		return err(sys("cannot read lg_active", errno));
	if (a.layout == 0) { // fresh maps
		a = lg_active{0, LG_XDP_LAYOUT_VERSION, 0};
		if (bpf_map__update_elem(m->lg_active, &z, sizeof z, &a, sizeof a, BPF_ANY))
			return err(sys("cannot initialise lg_active", errno));
	} else if (a.layout != LG_XDP_LAYOUT_VERSION) {
		return err("the maps pinned in " + cfg.pin_dir + " have layout version " + std::to_string(a.layout) +
			   ", this linkgate uses " + std::to_string(LG_XDP_LAYOUT_VERSION) +
			   ": remove the directory to start afresh (drops the flows)");
	} else { // adopt the generation the pinned maps carry
		d->adopted_ = true;
		d->active_ = a.slot < d->slots_ ? a.slot : 0;
		d->generation_ = a.generation;
		d->published_ = true;
		// Hold the pinned inner maps so publishes reuse them.
		auto outers = outer_maps(s);
		for (uint32_t slot = 0; slot < d->slots_; slot++)
			for (size_t i = 0; i < kTables; i++) {
				uint32_t id = 0;
				if (bpf_map_lookup_elem(bpf_map__fd(outers[i]), &slot, &id))
					continue; // empty entry: the next publish creates it
				int fd = bpf_map_get_fd_by_id(id);
				bpf_map_info info{};
				uint32_t len = sizeof info;
				if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
					if (fd >= 0)
						close(fd);
					return err(sys("cannot open the pinned table " + std::string(bpf_map__name(outers[i])), errno));
				}
				// libbpf checks the pinned outer maps, not the tables in
				// them: one of another shape (a build that changed a
				// table without a layout version) would be read with the
				// wrong stride.
				const TableSpec &sp = kSpec[i];
				if (info.type != sp.type || info.key_size != sp.ksize || info.value_size != sp.vsize) {
					close(fd);
					return err("the table " + std::string(bpf_map__name(outers[i])) + " pinned in " +
						   cfg.pin_dir + " has type " + std::to_string(info.type) + ", key " +
						   std::to_string(info.key_size) + " and value " +
						   std::to_string(info.value_size) + " bytes, this linkgate " +
						   std::to_string(sp.type) + ", " + std::to_string(sp.ksize) + " and " +
						   std::to_string(sp.vsize) +
						   ": remove the directory to start afresh (drops the flows)");
				}
				d->slot_fds_[slot][i] = fd;
				d->slot_cap_[slot][i] = info.max_entries;
			}
		// The previous agent may have died between its flip and its barrier.
		d->adopt_barrier_ = true;
	}
	return d;
}

std::vector<bpf_map *> XdpDataplane::pinned_maps() const
{
	auto *m = &skel_->maps;
	// Everything but the per-CPU scratch and the skeleton's .rodata/.bss.
	return {m->lg_ivl, m->lg_bitmap, m->lg_nsg_dir, m->lg_rule, m->lg_subnet, m->lg_nic, m->lg_pe,
		m->lg_pubip, m->lg_server, m->lg_fwrange, m->lg_vnetrule, m->lg_backend, m->lg_maglev, m->lg_iface,
		m->lg_gcfg, m->lg_active, m->lg_flows, m->lg_frags, m->lg_reason_cnt, m->lg_rule_cnt, m->lg_pe_cnt,
		m->lg_srv_cnt, m->lg_egress_cnt, m->lg_local, m->lg_ifmac, m->lg_flowlog, m->lg_log_cnt};
}

XdpDataplane::~XdpDataplane()
{
	{
		std::lock_guard lk(barrier_mu_);
		barrier_stop_ = true; // after the queued barriers: they use our inner map fds
	}
	barrier_cv_.notify_all();
	for (auto &t : barrier_threads_)
		t.join();
	if (mac_sock_ >= 0)
		close(mac_sock_);
	for (auto &[ifindex, fd] : links_)
		close(fd); // a pinned link stays attached, an unpinned one goes
	for (auto &sl : slot_fds_)
		for (int fd : sl)
			if (fd >= 0)
				close(fd);
	if (skel_)
		lg_xdp__destroy(skel_);
}

Status XdpDataplane::barrier_now()
{
	int fd = slot_fds_[active_][kGcfg];
	if (fd < 0)
		return Ok{}; // nothing published in that slot: no packet reads tables
	if (int e = rcu_barrier_op(bpf_map__fd(skel_->maps.lg_gcfg), active_, fd))
		return err(sys("cannot wait for packets on the old tables", e));
	return Ok{};
}

// Joins the pending barriers up to the newest one that guards `slot`
// (grace periods end in order, so the older ones are done or nearly). A
// failed one is replaced by a barrier run now, after every flip so far,
// which covers them all. slot == LG_GEN_SLOTS: every pending barrier.
Status XdpDataplane::wait_free(uint32_t slot)
{
	size_t upto = 0;
	for (size_t j = 0; j < barriers_.size(); j++)
		if (slot == LG_GEN_SLOTS || barriers_[j]->guards == slot)
			upto = j + 1;
	bool failed = adopt_barrier_;
	auto join = [&](Barrier &b) {
		std::unique_lock lk(barrier_mu_);
		barrier_cv_.wait(lk, [&] { return b.done; });
	};
	for (size_t j = 0; j < upto; j++) {
		Barrier &b = *barriers_.front();
		join(b);
		failed |= b.err != 0;
		barriers_.pop_front();
	}
	if (!failed)
		return Ok{};
	// A barrier after the last flip covers every older one: drop them all.
	for (auto &b : barriers_)
		join(*b);
	barriers_.clear();
	adopt_barrier_ = true; // owed until one succeeds: a retry must not write into the slot first
	if (auto st = barrier_now(); !st)
		return st;
	adopt_barrier_ = false;
	return Ok{};
}

Status XdpDataplane::settle() { return wait_free(LG_GEN_SLOTS); }

bool XdpDataplane::start_barrier_thread()
{
	if (barrier_threads_.size() >= kBarrierThreads)
		return !barrier_threads_.empty();
	try {
		barrier_threads_.emplace_back([this] { barrier_loop(); });
	} catch (const std::system_error &) {
		return !barrier_threads_.empty();
	}
	return true;
}

void XdpDataplane::barrier_loop()
{
	// A barrier only sleeps through a grace period: normal scheduling, even
	// when the thread that started this one runs at a real-time priority.
	sched_param sp{};
	pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
	std::unique_lock lk(barrier_mu_);
	for (;;) {
		barrier_idle_++;
		barrier_cv_.wait(lk, [&] { return barrier_stop_ || !barrier_queue_.empty(); });
		barrier_idle_--;
		if (barrier_queue_.empty())
			return; // stopping, nothing left
		auto b = barrier_queue_.front();
		barrier_queue_.pop_front();
		lk.unlock();
		int e = rcu_barrier_op(b->outer_fd, b->slot, b->inner_fd);
		lk.lock();
		b->err = e;
		b->done = true;
		barrier_cv_.notify_all();
	}
}

// Fast path: the slot's map is big enough, so plain element writes of what
// changed (no grace period; no packet reads this slot). Slow path: a bigger
// map, one outer update (synchronize_rcu). Arrays keep stale entries past n: every
// index the program reads comes from this generation's own tables (spans,
// indices, gcfg), so nothing reaches them.
Status XdpDataplane::write_table(size_t i, uint32_t slot, const void *keys, const void *vals, uint32_t n,
				 uint64_t version)
{
	const TableSpec &sp = kSpec[i];
	Shadow &sh = shadow_[slot][i];
	auto *v = static_cast<const uint8_t *>(vals);
	auto *k = static_cast<const char *>(keys);
	bool array = sp.type == BPF_MAP_TYPE_ARRAY;
	size_t bytes = size_t(n) * sp.vsize;
	int fd = slot_fds_[slot][i];
	// The shadow becomes exactly what was just written in full.
	auto remember_all = [&] {
		sh.kv.clear();
		sh.vals.clear();
		if (array)
			sh.vals.assign(v, v + bytes);
		else
			for (uint32_t j = 0; j < n; j++)
				sh.kv.insert_or_assign(std::string(k + size_t(j) * sp.ksize, sp.ksize),
						       std::string(reinterpret_cast<const char *>(v) + size_t(j) * sp.vsize,
								   sp.vsize));
	};
	if (fd >= 0 && n <= slot_cap_[slot][i]) {
		bool had = sh.valid;
		// The same contents as the map holds (the Maglev array of an
		// unchanged backend layout): nothing to compare or write.
		if (had && version && sh.version == version && sh.vals.size() == bytes)
			return Ok{};
		sh.valid = false; // until the writes below succeed
		int e = 0;
		if (!had) {
			e = array ? 0 : delete_stale(fd, sp, keys, n);
			if (!e)
				e = fill(fd, sp, keys, vals, n);
			if (e)
				return err(sys(std::string("cannot fill table ") + sp.name, e));
			remember_all();
		} else if (array) {
			// Only the elements that differ from what the map holds,
			// compared in blocks; the shadow is updated in place.
			std::vector<uint32_t> idx;
			std::vector<uint8_t> buf;
			size_t old_n = sh.vals.size() / sp.vsize;
			size_t same = std::min<size_t>(n, old_n);
			constexpr size_t kBlock = 64;
			for (size_t j0 = 0; j0 < n; j0 += kBlock) {
				size_t j1 = std::min<size_t>(n, j0 + kBlock);
				if (j1 <= same && std::memcmp(sh.vals.data() + j0 * sp.vsize, v + j0 * sp.vsize,
							      (j1 - j0) * sp.vsize) == 0)
					continue;
				for (size_t j = j0; j < j1; j++) {
					const uint8_t *nv = v + j * sp.vsize;
					if (j < same && std::memcmp(sh.vals.data() + j * sp.vsize, nv, sp.vsize) == 0)
						continue;
					idx.push_back(uint32_t(j));
					buf.insert(buf.end(), nv, nv + sp.vsize);
				}
			}
			uint32_t count = uint32_t(idx.size());
			LIBBPF_OPTS(bpf_map_batch_opts, bo);
			if (count == 1) {
				if (bpf_map_update_elem(fd, &idx[0], buf.data(), BPF_ANY))
					e = errno;
			} else if (count && !(bpf_map_update_batch(fd, idx.data(), buf.data(), &count, &bo) == 0 &&
					      count == idx.size())) {
				for (size_t j = 0; j < idx.size() && !e; j++)
					if (bpf_map_update_elem(fd, &idx[j], buf.data() + j * sp.vsize, BPF_ANY))
						e = errno;
			}
			if (e)
				return err(sys(std::string("cannot fill table ") + sp.name, e));
			sh.vals.resize(bytes); // entries past n stay in the map, unread
			for (size_t j = 0; j < idx.size(); j++)
				std::memcpy(sh.vals.data() + size_t(idx[j]) * sp.vsize, buf.data() + j * sp.vsize, sp.vsize);
		} else {
			// The keys the table no longer has, then changed and new keys:
			// in this order a table at its capacity takes a replaced key
			// (no packet reads this slot while it is written).
			size_t kept = 0;
			for (uint32_t j = 0; j < n; j++)
				kept += sh.kv.count(std::string(k + size_t(j) * sp.ksize, sp.ksize));
			if (kept != sh.kv.size()) {
				std::unordered_set<std::string_view> want;
				for (uint32_t j = 0; j < n; j++)
					want.emplace(k + size_t(j) * sp.ksize, sp.ksize);
				for (auto it = sh.kv.begin(); it != sh.kv.end() && !e;) {
					if (want.count(it->first)) {
						++it;
					} else if (bpf_map_delete_elem(fd, it->first.data()) && errno != ENOENT) {
						e = errno;
					} else {
						it = sh.kv.erase(it);
					}
				}
			}
			for (uint32_t j = 0; j < n && !e; j++) {
				std::string_view key(k + size_t(j) * sp.ksize, sp.ksize);
				std::string_view val(reinterpret_cast<const char *>(v) + size_t(j) * sp.vsize, sp.vsize);
				auto old = sh.kv.find(std::string(key));
				if (old != sh.kv.end() && old->second == val)
					continue;
				if (bpf_map_update_elem(fd, key.data(), val.data(), BPF_ANY))
					e = errno;
				else if (old != sh.kv.end())
					old->second.assign(val);
				else
					sh.kv.emplace(std::string(key), std::string(val));
			}
			if (e)
				return err(sys(std::string("cannot fill table ") + sp.name, e));
		}
		sh.valid = true;
		sh.version = version;
		return Ok{};
	}
	// Slow path: a bigger map, one outer update (synchronize_rcu).
	uint32_t cap = capacity(n);
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = sp.flags);
	int nfd = bpf_map_create(sp.type, sp.name, sp.ksize, sp.vsize, cap, &o);
	if (nfd < 0)
		return err(sys(std::string("cannot create table ") + sp.name + " of " + std::to_string(cap) + " entries", errno));
	if (int e = fill(nfd, sp, keys, vals, n)) {
		close(nfd);
		return err(sys(std::string("cannot fill table ") + sp.name, e));
	}
	if (bpf_map_update_elem(bpf_map__fd(outer_maps(skel_)[i]), &slot, &nfd, BPF_ANY)) {
		int e = errno;
		close(nfd);
		return err(sys(std::string("cannot install table ") + sp.name, e));
	}
	if (fd >= 0)
		close(fd);
	slot_fds_[slot][i] = nfd;
	slot_cap_[slot][i] = cap;
	remember_all();
	sh.valid = true;
	sh.version = version;
	return Ok{};
}

Status XdpDataplane::publish(const CompiledTables &t)
{
	// The slot retired longest ago (with 3 slots: two flips ago) is free
	// once the barrier of the flip that retired it has run.
	uint32_t target = published_ ? (active_ + 1) % slots_ : 0;
	if (auto st = wait_free(target); !st)
		return st;
	Packed subnet = pack(t.subnets), nic = pack(t.nics), pe = pack(t.pes), pubip = pack(t.pubips),
	       iface = pack(t.ifaces);
	std::vector<std::pair<lg_vnetrule_key, uint32_t>> vr;
	for (auto &k : t.vnetrules)
		vr.push_back({k, 1u});
	Packed vnetrule = pack(vr);
	lg_gcfg g = t.gcfg;
	g.generation = t.generation;
	struct In {
		const void *keys, *vals;
		uint32_t n;
	};
	const In in[kTables] = {
		{nullptr, t.ivl.data(), uint32_t(t.ivl.size())},
		{nullptr, t.bitmaps.data(), uint32_t(t.bitmaps.size())},
		{nullptr, t.nsg_dirs.data(), uint32_t(t.nsg_dirs.size())},
		{nullptr, t.rules.data(), uint32_t(t.rules.size())},
		{subnet.keys.data(), subnet.vals.data(), subnet.n},
		{nic.keys.data(), nic.vals.data(), nic.n},
		{pe.keys.data(), pe.vals.data(), pe.n},
		{pubip.keys.data(), pubip.vals.data(), pubip.n},
		{nullptr, t.servers.data(), uint32_t(t.servers.size())},
		{nullptr, t.fwranges.data(), uint32_t(t.fwranges.size())},
		{vnetrule.keys.data(), vnetrule.vals.data(), vnetrule.n},
		{nullptr, t.backends.data(), uint32_t(t.backends.size())},
		{nullptr, t.maglev.data(), uint32_t(t.maglev.size())},
		{iface.keys.data(), iface.vals.data(), iface.n},
		{nullptr, &g, 1},
	};
	for (size_t i = 0; i < kTables; i++)
		if (auto st = write_table(i, target, in[i].keys, in[i].vals, in[i].n, i == kMaglev ? t.maglev_version : 0);
		    !st)
			return st;

	// One write publishes the generation.
	lg_active a{target, LG_XDP_LAYOUT_VERSION, t.generation};
	uint32_t z = 0;
	if (bpf_map__update_elem(skel_->maps.lg_active, &z, sizeof z, &a, sizeof a, BPF_ANY))
		return err(sys("cannot switch lg_active", errno));
	uint32_t retired = published_ ? active_ : LG_GEN_SLOTS;
	active_ = target;
	published_ = true;
	generation_ = t.generation;

	// MACs of the bound interfaces answer ARP and neighbour solicitations
	// (written to lg_ifmac when they changed).
	{
		std::vector<uint32_t> bound;
		for (auto &[ifindex, _] : t.ifaces)
			bound.push_back(ifindex);
		(void)refresh_macs(bound); // the control loop's link events retry (Plane::relink)
	}

	// The barrier (one grace period) only guards a later publish into the
	// retired slot, so it runs off the critical path; wait_free() joins it.
	// Started last: waking its thread may take this CPU for a moment.
	// Its fds stay open until then: the slot it re-sets (the live one) is
	// written again only after a later flip's barrier, joined after this one.
	if (retired < LG_GEN_SLOTS) {
		auto b = std::make_shared<Barrier>();
		b->guards = retired;
		b->outer_fd = bpf_map__fd(skel_->maps.lg_gcfg);
		b->slot = target;
		b->inner_fd = slot_fds_[target][kGcfg];
		bool more;
		{
			std::lock_guard lk(barrier_mu_);
			more = barrier_idle_ <= barrier_queue_.size(); // every thread busy with one
		}
		if ((more && start_barrier_thread()) || !barrier_threads_.empty()) {
			std::lock_guard lk(barrier_mu_);
			barrier_queue_.push_back(b);
			barrier_cv_.notify_one();
		} else {
			b->done = true; // no thread: err stays -1, the publish into that slot runs a barrier itself
		}
		barriers_.push_back(std::move(b));
	}
	return Ok{};
}

Status XdpDataplane::set_local_addresses(const std::vector<Addr> &addrs, bool *too_many)
{
	// Replace the set without a gap: an address in both sets is never
	// touched (a restarted agent does this on the live, adopted map, and
	// such an address must never be missing from it: its packets would be
	// decided by policy). The gone addresses leave first, so a set that
	// fits always fits, however little it shares with the old one. A set
	// larger than the map is refused, but the gone ones still leave: one
	// left behind would pass its packets to the host stack unchecked. An
	// add that fails all the same (no memory) puts back what this call
	// changed.
	auto *m = skel_->maps.lg_local;
	auto key = [](const Addr &a) {
		lg_local_key k{};
		std::memcpy(k.addr, a.b.data(), 16);
		return k;
	};
	auto less = [](const lg_local_key &a, const lg_local_key &b) { return std::memcmp(&a, &b, sizeof a) < 0; };
	auto same = [](const lg_local_key &a, const lg_local_key &b) { return std::memcmp(&a, &b, sizeof a) == 0; };
	// Sorted, so that a host with tens of thousands of addresses costs a
	// sort, not a comparison of every pair.
	auto in = [&](const std::vector<lg_local_key> &v, const lg_local_key &k) {
		return std::binary_search(v.begin(), v.end(), k, less);
	};
	std::vector<lg_local_key> old, want;
	lg_local_key k{}, next{};
	const void *prev = nullptr;
	while (bpf_map__get_next_key(m, prev, &next, sizeof next) == 0) {
		old.push_back(next);
		k = next;
		prev = &k;
	}
	std::sort(old.begin(), old.end(), less);
	for (const Addr &a : addrs)
		want.push_back(key(a));
	std::sort(want.begin(), want.end(), less);
	want.erase(std::unique(want.begin(), want.end(), same), want.end());
	std::vector<lg_local_key> gone, added;
	uint8_t one = 1;
	for (const lg_local_key &o : old)
		if (!in(want, o) && bpf_map__delete_elem(m, &o, sizeof o, 0) == 0)
			gone.push_back(o);
	// The count is not in the message: linkgated reports a cause once,
	// however many addresses the host has at each read.
	bool over = want.size() > bpf_map__max_entries(m);
	if (too_many)
		*too_many = over;
	if (over)
		return err("too many host addresses for lg_local (it holds " + std::to_string(bpf_map__max_entries(m)) + ")");
	for (const lg_local_key &w : want) {
		if (in(old, w))
			continue;
		if (bpf_map__update_elem(m, &w, sizeof w, &one, 1, BPF_ANY)) {
			int e = errno;
			for (const lg_local_key &a : added)
				bpf_map__delete_elem(m, &a, sizeof a, 0);
			for (const lg_local_key &g : gone)
				bpf_map__update_elem(m, &g, sizeof g, &one, 1, BPF_ANY);
			return err(sys("host addresses not written to lg_local", e));
		}
		added.push_back(w);
	}
	return Ok{};
}

Status XdpDataplane::refresh_macs(const std::vector<uint32_t> &ifindexes)
{
	if (mac_sock_ < 0)
		mac_sock_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	Status st = Ok{};
	for (uint32_t ifindex : ifindexes) {
		ifreq ifr{};
		ifr.ifr_ifindex = int(ifindex);
		if (mac_sock_ < 0 || ioctl(mac_sock_, SIOCGIFNAME, &ifr) || ioctl(mac_sock_, SIOCGIFHWADDR, &ifr))
			continue; // not a device of this namespace: no answers on it
		std::array<uint8_t, 6> mac;
		std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
		if (auto it = macs_.find(ifindex); it == macs_.end() || it->second != mac)
			if (Status s = set_interface_mac(ifindex, mac); !s)
				st = s;
	}
	return st;
}

Status XdpDataplane::set_interface_mac(uint32_t ifindex, const std::array<uint8_t, 6> &mac)
{
	lg_ifmac v{};
	std::memcpy(v.mac, mac.data(), 6);
	if (bpf_map__update_elem(skel_->maps.lg_ifmac, &ifindex, sizeof ifindex, &v, sizeof v, BPF_ANY)) {
		macs_.erase(ifindex);
		return err(sys("cannot record the MAC of interface " + std::to_string(ifindex), errno));
	}
	macs_[ifindex] = mac;
	return Ok{};
}

std::string XdpDataplane::link_path(uint32_t ifindex) const
{
	return pin_dir_.empty() ? "" : pin_dir_ + "/link_" + std::to_string(ifindex);
}

Status XdpDataplane::attach(uint32_t ifindex, uint32_t flags)
{
	std::string path = link_path(ifindex);
	int fd = -1;
	if (!path.empty() && access(path.c_str(), F_OK) == 0) {
		// An earlier run's link: swap the program in place.
		fd = bpf_obj_get(path.c_str());
		if (fd < 0)
			return err(sys("cannot open the pinned XDP link " + path, errno));
		if (int e = bpf_link_update(fd, prog_fd(), nullptr)) {
			close(fd);
			fd = -1;
			// ENOLINK: the link's interface went away (this ifindex is
			// another, or the same one recreated): a new link replaces it.
			if (e != -ENOLINK && errno != ENOLINK)
				return err(sys("cannot replace the program of the pinned XDP link " + path, e));
			unlink(path.c_str());
		}
	}
	if (fd < 0) {
		LIBBPF_OPTS(bpf_link_create_opts, o, .flags = flags);
		fd = bpf_link_create(prog_fd(), int(ifindex), BPF_XDP, &o);
		if (fd < 0)
			return err(sys("cannot attach XDP to interface " + std::to_string(ifindex) +
					       " (another XDP program there, or the mode unsupported?)",
				       errno));
		if (!path.empty() && bpf_obj_pin(fd, path.c_str())) {
			int e = errno;
			close(fd);
			return err(sys("cannot pin the XDP link as " + path, e));
		}
	}
	// One link a process holds per interface: an earlier one (the same
	// link taken over, or a defunct one replaced) is let go.
	for (auto it = links_.begin(); it != links_.end();)
		if (it->first == ifindex) {
			close(it->second);
			it = links_.erase(it);
		} else {
			++it;
		}
	links_.push_back({ifindex, fd});
	return Ok{};
}

bool XdpDataplane::attached(uint32_t ifindex) const
{
	for (auto &[idx, fd] : links_) {
		if (idx != ifindex)
			continue;
		bpf_link_info info{};
		uint32_t len = sizeof info;
		return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == BPF_LINK_TYPE_XDP &&
		       info.xdp.ifindex == ifindex;
	}
	return false;
}

Status XdpDataplane::detach(uint32_t ifindex, uint32_t)
{
	for (auto it = links_.begin(); it != links_.end(); ++it) {
		if (it->first != ifindex)
			continue;
		if (!pin_dir_.empty())
			unlink(link_path(ifindex).c_str());
		int e = bpf_link_detach(it->second);
		close(it->second);
		links_.erase(it);
		if (e)
			return err(sys("cannot detach XDP from interface " + std::to_string(ifindex), e));
		return Ok{};
	}
	return err("XDP is not attached to interface " + std::to_string(ifindex) + " by this process");
}

Result<std::vector<uint32_t>> XdpDataplane::prune_links(const std::vector<uint32_t> &keep)
{
	std::vector<uint32_t> gone;
	if (pin_dir_.empty())
		return gone;
	DIR *d = opendir(pin_dir_.c_str());
	if (!d)
		return err(sys("cannot list " + pin_dir_, errno));
	std::vector<uint32_t> pinned;
	while (dirent *e = readdir(d)) {
		std::string_view n(e->d_name);
		uint32_t idx = 0;
		if (!n.starts_with("link_"))
			continue;
		auto [end, ec] = std::from_chars(n.data() + 5, n.data() + n.size(), idx);
		if (ec == std::errc() && end == n.data() + n.size() && idx)
			pinned.push_back(idx);
	}
	closedir(d);
	for (uint32_t idx : pinned) {
		if (std::find(keep.begin(), keep.end(), idx) != keep.end())
			continue;
		std::string path = link_path(idx);
		if (int fd = bpf_obj_get(path.c_str()); fd >= 0) {
			(void)bpf_link_detach(fd); // fails (ENOLINK) when the interface is gone: nothing to detach
			close(fd);
		}
		if (unlink(path.c_str()) && errno != ENOENT)
			return err(sys("cannot unpin the XDP link " + path, errno));
		for (auto it = links_.begin(); it != links_.end(); ++it)
			if (it->first == idx) {
				close(it->second);
				links_.erase(it);
				break;
			}
		gone.push_back(idx);
	}
	return gone;
}

Status XdpDataplane::unpin()
{
	if (pin_dir_.empty())
		return Ok{};
	for (auto &[ifindex, fd] : links_)
		unlink(link_path(ifindex).c_str());
	for (bpf_map *pm : pinned_maps())
		if (int e = bpf_map__unpin(pm, nullptr); e && e != -ENOENT)
			return err(sys("cannot unpin " + std::string(bpf_map__name(pm)), e));
	rmdir(pin_dir_.c_str());
	return Ok{};
}

Result<XdpRun> XdpDataplane::run(std::span<const uint8_t> frame, uint32_t ingress_ifindex)
{
	std::vector<uint8_t> in(frame.begin(), frame.end());
	XdpRun r;
	r.frame.resize(in.size() + 256);
	xdp_md ctx{};
	ctx.ingress_ifindex = ingress_ifindex;
	ctx.data_end = uint32_t(in.size()); // all linear, as a NIC hands small frames
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = r.frame.data(),
		    .data_size_in = uint32_t(in.size()), .data_size_out = uint32_t(r.frame.size()),
		    .ctx_in = &ctx, .ctx_size_in = uint32_t(sizeof ctx),
		    .repeat = 1);
	if (int e = bpf_prog_test_run_opts(prog_fd(), &o))
		return err(sys("BPF_PROG_TEST_RUN failed", e));
	r.action = int(o.retval);
	r.frame.resize(o.data_size_out);
	return r;
}

void XdpDataplane::set_time_offset(uint64_t ns) { skel_->bss->lg_time_offset_ns = ns; }

uint64_t XdpDataplane::now_ns() const
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts); // bpf_ktime_get_coarse_ns() lags it by less than a tick
	return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec) + skel_->bss->lg_time_offset_ns;
}

// .bss is mapped into this process: each store is one whole word that the
// program's next packet reads (it loads each once, volatile).
void XdpDataplane::fib_changed(uint64_t ahead_ns)
{
	// The program's clock is the coarse one (a tick, 4 ms here, behind
	// CLOCK_MONOTONIC): stamped with the fine one, the change would lie in
	// the program's future until the next tick, and next hops resolved
	// after it would not be trusted. One ns past the coarse time: a next
	// hop resolved in the same tick, before the change, is not trusted.
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec) + skel_->bss->lg_time_offset_ns;
	// Never earlier than a stamp dated ahead (an agent's start): a notice
	// read within that time would end its distrust early. ~0 (distrust)
	// is replaced. One writer, the agent's thread: no compare-and-swap.
	uint64_t cur = __atomic_load_n(&skel_->bss->lg_fib_changed_ns, __ATOMIC_ACQUIRE);
	if (cur != ~0ull && cur >= now + 1 + ahead_ns)
		return;
	__atomic_store_n(&skel_->bss->lg_fib_changed_ns, now + 1 + ahead_ns, __ATOMIC_RELEASE);
}

void XdpDataplane::fib_distrust() { __atomic_store_n(&skel_->bss->lg_fib_changed_ns, ~0ull, __ATOMIC_RELEASE); }

void XdpDataplane::fib_watched_for(uint64_t ns)
{
	__atomic_store_n(&skel_->bss->lg_fib_watched_until_ns, now_ns() + ns, __ATOMIC_RELEASE);
}

void XdpDataplane::fib_unwatched() { __atomic_store_n(&skel_->bss->lg_fib_watched_until_ns, 0, __ATOMIC_RELEASE); }

uint64_t XdpDataplane::fib_watched_until_ns() const
{
	return __atomic_load_n(&skel_->bss->lg_fib_watched_until_ns, __ATOMIC_ACQUIRE);
}

std::array<uint64_t, LG_REASON__COUNT> XdpDataplane::reason_counts() const
{
	std::array<uint64_t, LG_REASON__COUNT> a{};
	for (uint32_t i = 0; i < LG_REASON__COUNT; i++)
		a[i] = percpu_sum(skel_->maps.lg_reason_cnt, i, ncpu_);
	return a;
}

uint64_t XdpDataplane::fast_packets() const
{
	// lg_scratch starts with the count (bpf/lg_maps.bpf.h).
	auto *m = skel_->maps.lg_scratch;
	size_t vs = (bpf_map__value_size(m) + 7) / 8 * 8;
	std::vector<uint8_t> v(vs * size_t(ncpu_));
	uint32_t z = 0;
	if (bpf_map__lookup_elem(m, &z, sizeof z, v.data(), v.size(), 0))
		return 0;
	uint64_t n = 0;
	for (int c = 0; c < ncpu_; c++) {
		uint64_t x;
		std::memcpy(&x, v.data() + vs * size_t(c), 8);
		n += x;
	}
	return n;
}
uint64_t XdpDataplane::rule_hits(uint32_t c) const { return percpu_sum(skel_->maps.lg_rule_cnt, c, ncpu_); }
uint64_t XdpDataplane::pe_packets(uint32_t id) const { return percpu_sum(skel_->maps.lg_pe_cnt, id, ncpu_); }
uint64_t XdpDataplane::server_packets(uint32_t i) const { return percpu_sum(skel_->maps.lg_srv_cnt, i, ncpu_); }
uint64_t XdpDataplane::egress_packets(uint32_t i) const { return percpu_sum(skel_->maps.lg_egress_cnt, i, ncpu_); }
size_t XdpDataplane::fragment_entries() const { return count_keys(skel_->maps.lg_frags); }
namespace {

// Every copy of every flow, a batch at a time (one syscall per `chunk`
// copies; the agent sweeps every second and a full table holds 2,000,000
// copies). A flow's two copies share `orig`; the fast path refreshes only
// the copy it found, so a flow expires at the later of its copies'
// expires_ns (abi/lg_flow.h).
template <typename F> bool for_each_copy(bpf_map *m, uint32_t chunk, F &&visit)
{
	uint32_t in_tok = 0, out_tok = 0;
	std::vector<lg_flow_key> keys(chunk);
	std::vector<lg_flow_entry> vals(chunk);
	bool first = true;
	for (;;) {
		uint32_t n = chunk;
		LIBBPF_OPTS(bpf_map_batch_opts, o);
		int rc = bpf_map_lookup_batch(bpf_map__fd(m), first ? nullptr : &in_tok, &out_tok, keys.data(), vals.data(),
					      &n, &o);
		int e = rc ? errno : 0;
		if (rc && e != ENOENT && e != ENOSPC)
			return false; // unreadable: the caller sees what was read
		if (rc && e == ENOSPC && n == 0) {
			chunk *= 2; // a bucket holds more than a chunk
			keys.resize(chunk);
			vals.resize(chunk);
			continue;
		}
		bool more = true;
		for (uint32_t i = 0; i < n && more; i++)
			if constexpr (std::is_same_v<std::invoke_result_t<F &, const lg_flow_key &, const lg_flow_entry &>, bool>)
				more = visit(keys[i], vals[i]); // false: enough
			else
				visit(keys[i], vals[i]);
		if (!more || (rc && e == ENOENT))
			return true;
		in_tok = out_tok;
		first = false;
	}
}

// 64-bit hash of a flow's original key (splitmix64 over its words).
uint64_t orig_hash(const lg_flow_key &k)
{
	uint64_t w[6] = {};
	std::memcpy(w, &k, sizeof k);
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (uint64_t x : w) {
		h ^= x;
		h *= 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
	}
	return h;
}

} // namespace

// Counted in batch reads of 256 copies, as the sweep reads them: 110 ms
// for 200,000 copies in a 2,000,000-entry map, where a bpf_map_get_next_key
// walk took 186 ms (630 against 1,035 ms for 1,000,000; 2026-11-29).
size_t XdpDataplane::flow_entries() const
{
	size_t n = 0;
	for_each_copy(skel_->maps.lg_flows, 256, [&](const lg_flow_key &, const lg_flow_entry &) { n++; });
	return n;
}

std::optional<XdpDataplane::Swept> XdpDataplane::last_sweep() const
{
	std::lock_guard lk(sweep_mu_);
	return swept_;
}

std::optional<size_t> XdpDataplane::recent_sweep_keys(uint64_t now_ns, uint64_t interval_ns) const
{
	auto sw = last_sweep();
	if (!sw)
		return std::nullopt;
	if (now_ns < sw->started_ns) // a sweep that began after the caller's clock read
		return sw->keys;
	// A count is replaced when the next sweep ends: interval + its length
	// after this one ended, interval + 2 lengths after it started.
	uint64_t took = sw->at_ns - sw->started_ns;
	if (now_ns - sw->started_ns > interval_ns + 2 * took + 1000000000ull)
		return std::nullopt;
	return sw->keys;
}

std::vector<lg_flow_entry> XdpDataplane::flows(size_t limit) const
{
	std::vector<lg_flow_entry> out;
	for (lg_flow_sample &f : flow_samples(limit))
		out.push_back(f.e);
	return out;
}

std::vector<lg_flow_sample> XdpDataplane::flow_samples(size_t limit, bool *complete) const
{
	// The original copies up to `limit`, then each one's reply copy looked
	// up by its key: the listing reads what it lists, not the whole table
	// (2,000,000 copies when full).
	std::vector<lg_flow_sample> out;
	if (complete)
		*complete = false;
	if (!limit)
		return out;
	bool read = for_each_copy(skel_->maps.lg_flows, 256, [&](const lg_flow_key &, const lg_flow_entry &e) {
		if (lg_flow_listed(&e))
			out.push_back(lg_flow_sample{e, 0, 0, 0, 0});
		return out.size() < limit;
	});
	if (complete)
		*complete = read && out.size() < limit;
	int fd = bpf_map__fd(skel_->maps.lg_flows);
	for (lg_flow_sample &f : out) {
		lg_flow_key rk;
		lg_flow_reply_key(&f.e, &rk);
		lg_flow_entry r;
		// A flow whose two keys are one (to itself, from itself) has one copy.
		if (std::memcmp(&rk, &f.e.orig, sizeof rk) != 0 && bpf_map_lookup_elem(fd, &rk, &r) == 0 &&
		    (r.flags & LG_FLOW_F_REPLY) && std::memcmp(&r.orig, &f.e.orig, sizeof r.orig) == 0) {
			f.e.expires_ns = std::max(f.e.expires_ns, r.expires_ns);
			f.reply_packets = r.packets;
			f.reply_bytes = r.bytes;
			f.reply_found = 1;
		}
	}
	return out;
}

std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> XdpDataplane::drain_flowlog()
{
	// Keys first, then read-and-delete each: a record the program writes
	// meanwhile under a drained key waits for the next drain.
	std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> out;
	bpf_map *m = skel_->maps.lg_flowlog;
	std::vector<lg_flow_key> keys;
	lg_flow_key k, next;
	const void *prev = nullptr;
	while (keys.size() < LG_FLOWLOG_CAPACITY && bpf_map__get_next_key(m, prev, &next, sizeof next) == 0) {
		keys.push_back(next);
		k = next;
		prev = &k;
	}
	for (const lg_flow_key &key : keys) {
		lg_flowlog_entry v;
		if (bpf_map__lookup_and_delete_elem(m, &key, sizeof key, &v, sizeof v, 0) == 0)
			out.emplace_back(key, v);
	}
	return out;
}

uint64_t XdpDataplane::log_counter(lg_log_counter c) const { return percpu_sum(skel_->maps.lg_log_cnt, c, ncpu_); }

size_t XdpDataplane::reclaim()
{
	timespec t0{};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t now = now_ns();
	// One pass keeps the expired copies and the hashes of the live copies'
	// flows; a flow goes when no copy of it is live. A hash collision (odds
	// ~2^-64 per pair) only keeps an expired flow until a later sweep.
	// Batches of 256 copies: each read is one syscall that runs to its end
	// on a kernel without preemption, and it walks the table's buckets
	// (empty ones too: 2 per flow of capacity): 1,024 copies took 0.6 ms
	// p50, 2.7 ms at most, with 100,000 flows in a 1,000,000-flow table.
	// A request's thread waits at most that long for a CPU the sweep holds.
	struct Dead {
		lg_flow_key key;
		uint64_t hash;
		bool reply;
	};
	std::vector<Dead> dead;
	std::vector<uint64_t> live;
	for_each_copy(skel_->maps.lg_flows, 256, [&](const lg_flow_key &k, const lg_flow_entry &e) {
		if (lg_flow_copy_expired(&e, now))
			dead.push_back({k, orig_hash(e.orig), (e.flags & LG_FLOW_F_REPLY) != 0});
		else
			live.push_back(orig_hash(e.orig));
	});
	size_t n = 0, removed = 0;
	if (!dead.empty()) {
		// Open addressing over the (few) expired flows' hashes; the live
		// copies probe it.
		size_t cap = std::bit_ceil(dead.size() * 2 + 1);
		std::vector<uint64_t> slot(cap, 0);
		std::vector<uint8_t> alive(cap, 0);
		auto find = [&](uint64_t h) -> size_t {
			h |= 1; // 0 marks an empty slot
			for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1))
				if (slot[i] == h || slot[i] == 0)
					return i;
		};
		for (auto &d : dead)
			slot[find(d.hash)] = d.hash | 1;
		for (uint64_t h : live)
			if (size_t i = find(h); slot[i])
				alive[i] = 1;
		for (auto &d : dead)
			if (!alive[find(d.hash)]) {
				// Read again first: the program may have made the flow anew
				// under this key since the sweep read it (a packet of its
				// tuple after expiry). The kernel has no compare-and-delete,
				// so this narrows that window to two syscalls.
				lg_flow_entry e{};
				if (bpf_map__lookup_elem(skel_->maps.lg_flows, &d.key, sizeof d.key, &e, sizeof e, 0) != 0 ||
				    !lg_flow_copy_expired(&e, now))
					continue;
				if (bpf_map__delete_elem(skel_->maps.lg_flows, &d.key, sizeof d.key, 0) == 0)
					removed++;
				n += !d.reply;
			}
	}
	{
		timespec ts{};
		clock_gettime(CLOCK_MONOTONIC, &ts);
		std::lock_guard lk(sweep_mu_);
		swept_ = Swept{dead.size() + live.size() - removed, uint64_t(t0.tv_sec) * 1000000000ull + uint64_t(t0.tv_nsec),
			       uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec)};
	}
	std::vector<lg_frag_key> gone;
	lg_frag_key k{}, next{};
	const void *prev = nullptr;
	while (bpf_map__get_next_key(skel_->maps.lg_frags, prev, &next, sizeof next) == 0) {
		k = next;
		prev = &k;
		lg_frag_entry v{};
		if (bpf_map__lookup_elem(skel_->maps.lg_frags, &k, sizeof k, &v, sizeof v, 0) == 0 && lg_frag_expired(&v, now))
			gone.push_back(k);
	}
	for (auto &d : gone) {
		// Read again first, as the flows above: a first fragment may have
		// remembered a new datagram under this key since the walk.
		lg_frag_entry v{};
		if (bpf_map__lookup_elem(skel_->maps.lg_frags, &d, sizeof d, &v, sizeof v, 0) == 0 && lg_frag_expired(&v, now))
			bpf_map__delete_elem(skel_->maps.lg_frags, &d, sizeof d, 0);
	}
	return n;
}

int XdpDataplane::prog_fd() const { return bpf_program__fd(skel_->progs.lg_xdp); }

} // namespace lg
