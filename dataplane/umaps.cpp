#include "umaps.hpp"

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_jhash.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

extern "C" {
#include "lg_xdp.h"
}

namespace lg::dp {

namespace {
uint32_t u32_key(const void *key)
{
	uint32_t k;
	std::memcpy(&k, key, 4);
	return k;
}
long refuse(lg_umap *, const void *) { return -EPERM; }

// Generation hash tables are read for every packet (interface VNI, own
// addresses, endpoint counters): a multiply-xor over 8-byte words costs a
// fraction of jhash on these 4–20 byte keys. Not adversarial input: the
// keys are the operator's own table entries.
[[maybe_unused]] uint32_t fast_hash(const void *key, size_t n)
{
	const uint8_t *p = static_cast<const uint8_t *>(key);
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	while (n >= 8) {
		uint64_t w;
		std::memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t w = 0;
		std::memcpy(&w, p, n);
		h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
	}
	h ^= h >> 29;
	return uint32_t(h);
}
long refuse_update(lg_umap *, const void *, const void *, __u64) { return -EPERM; }

inline bool key_eq(const void *a, const void *b, size_t n) { return lg_host_key_eq(a, b, uint32_t(n)); }

// rte_hash's compare for lg_flows (its own is memcmp for a 44-byte key); a
// constant size lets the compiler unroll the word compare.
constexpr size_t kFlowKey = sizeof(lg_flow_key);
static_assert(kFlowKey == 44, "SharedHash::sig hashes 44 bytes in five words and a half");
inline bool flow_key_eq(const void *a, const void *b) { return lg_host_key_eq(a, b, kFlowKey); }
int flow_key_cmp(const void *a, const void *b, size_t) { return flow_key_eq(a, b) ? 0 : 1; }

thread_local BurstHints *t_hints = nullptr; // SharedHash::install

// Fault a table's memory in now, on the control thread, not on the workers
// as flows arrive. Under --no-huge the EAL's memory is a memfd whose pages
// the kernel allocates at their first write, and rte_zmalloc does not write
// fresh memory: 1M flows are ~100k first writes, a second of the worker's
// time in this VM (docs/dpdk-performance.md). Hugepages are already there.
void populate(void *lo, void *hi)
{
	uintptr_t a = uintptr_t(lo) & ~uintptr_t(4095), b = uintptr_t(hi);
	if (b <= a || madvise(reinterpret_cast<void *>(a), b - a, MADV_POPULATE_WRITE) == 0)
		return;
	// Kernels before 5.14: touch each page of [lo, hi) (nobody reads the table yet).
	for (uintptr_t p = uintptr_t(lo); p < b; p = (p | 4095) + 1) {
		volatile uint8_t *c = reinterpret_cast<volatile uint8_t *>(p);
		*c = *c;
	}
}
} // namespace

// ---- ArrayMap ----
ArrayMap::ArrayMap(size_t value_size, size_t n) : vals_(value_size, n), base_(vals_.at(0)), n_(n), vs_(value_size)
{
	static const lg_umap_ops ops = {lookup, update, del};
	this->ops = &ops;
	// bpf_helpers.h serves lookups inline from these (lookup() below is the
	// same answer, for callers that go through ops).
	this->kind = n <= UINT32_MAX ? LG_UMAP_INLINE : LG_UMAP_OPS;
	this->n = uint32_t(n);
	this->base = base_;
	this->value_size = value_size;
	this->cpu_stride = 0;
}
void *ArrayMap::lookup(lg_umap *m, const void *key)
{
	return static_cast<ArrayMap *>(m)->at(u32_key(key));
}
long ArrayMap::update(lg_umap *m, const void *key, const void *val, __u64 flags)
{
	auto *a = static_cast<ArrayMap *>(m);
	uint8_t *p = a->at(u32_key(key));
	if (!p)
		return -E2BIG;
	if (flags == BPF_NOEXIST)
		return -EEXIST;
	std::memcpy(p, val, a->vs_);
	return 0;
}
long ArrayMap::del(lg_umap *, const void *) { return -EINVAL; }

// ---- PerCpuArray ----
PerCpuArray::PerCpuArray(size_t value_size, size_t n)
	: n_(n), vals_(value_size, n * LG_HOST_CPUS), base_(vals_.at(0)), vs_(value_size), cpu_stride_(value_size * n)
{
	static const lg_umap_ops ops = {lookup, update, del};
	this->ops = &ops;
	this->kind = n <= UINT32_MAX ? LG_UMAP_INLINE : LG_UMAP_OPS;
	this->n = uint32_t(n);
	this->base = base_;
	this->value_size = value_size;
	this->cpu_stride = cpu_stride_;
}
void *PerCpuArray::lookup(lg_umap *m, const void *key)
{
	return static_cast<PerCpuArray *>(m)->at(lg_host_cpu, u32_key(key));
}
long PerCpuArray::update(lg_umap *m, const void *key, const void *val, __u64)
{
	auto *a = static_cast<PerCpuArray *>(m);
	uint8_t *p = a->at(lg_host_cpu, u32_key(key));
	if (!p)
		return -E2BIG;
	std::memcpy(p, val, a->vs_);
	return 0;
}
long PerCpuArray::del(lg_umap *, const void *) { return -EINVAL; }
uint64_t PerCpuArray::sum_u64(size_t i) const
{
	uint64_t t = 0;
	if (i >= n_)
		return 0;
	for (unsigned c = 0; c < LG_HOST_CPUS; c++) {
		uint64_t v;
		std::memcpy(&v, base_ + size_t(c) * cpu_stride_ + i * vs_, 8);
		t += v;
	}
	return t;
}

// ---- FixedHash ----
FixedHash::FixedHash(size_t key_size, size_t value_size, size_t n)
	: ks_(key_size), keys_(key_size, std::max<size_t>(n, 1)), vals_(value_size, std::max<size_t>(n, 1))
{
	static const lg_umap_ops ops = {lookup, refuse_update, refuse};
	this->ops = &ops;
	size_t cap = 4;
	while (cap < 2 * n)
		cap <<= 1;
	mask_ = cap - 1;
	slot_.assign(cap, Slot{0, 0});
	if (ks_ == 4)
		direct_.assign(kDirect, 0);
}
uint32_t FixedHash::hash(const void *key, size_t n)
{
#ifdef __SSE4_2__
	// CRC32-C, 8 bytes an instruction: these keys are 4 to 36 bytes.
	const uint8_t *p = static_cast<const uint8_t *>(key);
	uint64_t h = 0x9e3779b9u ^ n;
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t w;
		std::memcpy(&w, p, 8);
		h = __builtin_ia32_crc32di(h, w);
	}
	uint32_t h32 = uint32_t(h);
	if (n >= 4) {
		uint32_t w;
		std::memcpy(&w, p, 4);
		h32 = __builtin_ia32_crc32si(h32, w);
		p += 4;
		n -= 4;
	}
	for (; n; p++, n--)
		h32 = __builtin_ia32_crc32qi(h32, *p);
	return h32 ^ (h32 >> 16);
#else
	return fast_hash(key, n);
#endif
}
void FixedHash::insert(const void *key, const void *val)
{
	if (void *v = find(key)) {
		std::memcpy(v, val, vals_.value_size());
		return;
	}
	if (n_ >= keys_.size())
		return; // sized by the builder: cannot happen
	std::memcpy(keys_.at(n_), key, ks_);
	std::memcpy(vals_.at(n_), val, vals_.value_size());
	uint32_t hv = hash(key, ks_), h = hv & uint32_t(mask_);
	while (slot_[h].entry)
		h = (h + 1) & uint32_t(mask_);
	slot_[h] = Slot{hv, uint32_t(++n_)};
	if (ks_ == 4) {
		uint32_t k = u32_key(key);
		if (k < kDirect)
			direct_[k] = uint32_t(n_);
		else
			only_direct_ = false;
	}
}
void *FixedHash::find(const void *key) const
{
	if (!n_)
		return nullptr;
	if (ks_ == 4) {
		uint32_t k = u32_key(key);
		if (k < kDirect && direct_[k])
			return const_cast<uint8_t *>(vals_.at(direct_[k] - 1));
		if (only_direct_)
			return nullptr;
	}
	uint32_t hv = hash(key, ks_), h = hv & uint32_t(mask_);
	for (;;) {
		const Slot &sl = slot_[h];
		if (!sl.entry)
			return nullptr;
		if (sl.hash == hv && key_eq(keys_.at(sl.entry - 1), key, ks_))
			return const_cast<uint8_t *>(vals_.at(sl.entry - 1));
		h = (h + 1) & uint32_t(mask_);
	}
}
void *FixedHash::lookup(lg_umap *m, const void *key) { return static_cast<FixedHash *>(m)->find(key); }
long FixedHash::update(lg_umap *, const void *, const void *, __u64) { return -EPERM; }
long FixedHash::del(lg_umap *, const void *) { return -EPERM; }

// ---- LpmMap ----
LpmMap::LpmMap(size_t data_size, size_t value_size) : ds_(data_size), vs_(value_size)
{
	static const lg_umap_ops ops = {lookup, refuse_update, refuse};
	this->ops = &ops;
}
static void mask_bits(uint8_t *d, size_t n, uint32_t len)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t bit = uint32_t(i) * 8;
		if (bit >= len)
			d[i] = 0;
		else if (len - bit < 8)
			d[i] &= uint8_t(0xff00u >> (len - bit));
	}
}
void LpmMap::insert(uint32_t prefixlen, const void *data, const void *val)
{
	auto it = std::find_if(levels_.begin(), levels_.end(), [&](const Level &l) { return l.len == prefixlen; });
	if (it == levels_.end()) {
		levels_.push_back(Level{prefixlen, {}, nullptr});
		it = levels_.end() - 1;
	}
	std::vector<uint8_t> k(static_cast<const uint8_t *>(data), static_cast<const uint8_t *>(data) + ds_);
	mask_bits(k.data(), ds_, prefixlen);
	it->pending.emplace_back(std::move(k), std::vector<uint8_t>(static_cast<const uint8_t *>(val),
								     static_cast<const uint8_t *>(val) + vs_));
}
void LpmMap::seal()
{
	std::sort(levels_.begin(), levels_.end(), [](const Level &a, const Level &b) { return a.len > b.len; });
	for (auto &l : levels_) {
		l.table = std::make_unique<FixedHash>(ds_, vs_, l.pending.size());
		for (auto &[k, v] : l.pending)
			l.table->insert(k.data(), v.data());
		l.pending.clear();
	}
}
void *LpmMap::lookup(lg_umap *m, const void *key)
{
	auto *t = static_cast<LpmMap *>(m);
	uint32_t want = u32_key(key); // the key's own prefixlen bounds the match
	uint8_t buf[64];
	if (t->ds_ > sizeof(buf))
		return nullptr;
	for (auto &l : t->levels_) {
		if (l.len > want)
			continue;
		std::memcpy(buf, static_cast<const uint8_t *>(key) + 4, t->ds_);
		mask_bits(buf, t->ds_, l.len);
		if (void *v = l.table->find(buf))
			return v;
	}
	return nullptr;
}
long LpmMap::update(lg_umap *, const void *, const void *, __u64) { return -EPERM; }
long LpmMap::del(lg_umap *, const void *) { return -EPERM; }

// ---- OuterMap ----
OuterMap::OuterMap() : slot_(LG_GEN_SLOTS, nullptr)
{
	static const lg_umap_ops ops = {lookup, refuse_update, refuse};
	this->ops = &ops;
}
void *OuterMap::lookup(lg_umap *m, const void *key)
{
	auto *o = static_cast<OuterMap *>(m);
	uint32_t k = u32_key(key);
	if (k >= o->slot_.size() || !o->slot_[k])
		return nullptr;
	return &o->slot_[k]; // a "map": its first word is the inner lg_umap
}
long OuterMap::update(lg_umap *, const void *, const void *, __u64) { return -EPERM; }
long OuterMap::del(lg_umap *, const void *) { return -EPERM; }

// ---- SharedHash ----
std::unique_ptr<SharedHash> SharedHash::create(const std::string &name, size_t key_size, size_t value_size,
					       size_t capacity, rte_rcu_qsbr *qsbr, std::string *err)
{
	std::unique_ptr<SharedHash> s(new SharedHash());
	static const lg_umap_ops ops = {lookup, update, del};
	s->ops = &ops;
	s->ks_ = key_size;
	s->vs_ = value_size;
	s->capacity_ = capacity;
	rte_hash_parameters p{};
	p.name = name.c_str();
	p.entries = uint32_t(std::max<size_t>(capacity, 8));
	p.key_len = uint32_t(key_size);
	p.hash_func = rte_hash_crc; // SSE4.2 CRC32: the flow key is hashed for every packet
	p.socket_id = SOCKET_ID_ANY;
	p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD |
		       RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
	s->h_ = rte_hash_create(&p);
	if (!s->h_) {
		*err = "rte_hash_create(" + name + ", " + std::to_string(capacity) + " entries): " +
		       rte_strerror(rte_errno) + " (give the EAL more memory (-m) or lower --flows)";
		return nullptr;
	}
	if (key_size == kFlowKey)
		rte_hash_set_cmp_func(s->h_, flow_key_cmp);
	rte_hash_rcu_config rc{};
	rc.v = qsbr;
	rc.mode = RTE_HASH_QSBR_MODE_DQ;
	if (int e = rte_hash_rcu_qsbr_add(s->h_, &rc); e) {
		*err = "rte_hash_rcu_qsbr_add(" + name + "): " + rte_strerror(rte_errno);
		return nullptr;
	}
	// prelookup() hashes keys itself (rte_hash_crc inline, seed 0): it must
	// be rte_hash's own signature, or no bulk lookup would find anything.
	{
		uint8_t probe[64];
		for (size_t i = 0; i < sizeof probe; i++)
			probe[i] = uint8_t(i * 37 + 11);
		if (key_size > sizeof probe || rte_hash_hash(s->h_, probe) != s->sig(probe)) {
			*err = "internal: " + name + "'s rte_hash signature is not rte_hash_crc";
			return nullptr;
		}
	}
	size_t slots = size_t(rte_hash_max_key_id(s->h_)) + 1;
	s->stride_ = kHeader + (value_size + 7) / 8 * 8;
	s->vals_ = static_cast<uint8_t *>(rte_zmalloc(nullptr, slots * s->stride_, 64)); // zero: not ready
	if (!s->vals_) {
		*err = "no DPDK memory for " + std::to_string(capacity) + " " + name + " entries (" +
		       std::to_string((slots * (s->stride_ + key_size + 16)) >> 20) +
		       " MiB): give the EAL more (-m) or lower --flows";
		return nullptr;
	}
	populate(s->vals_, s->vals_ + slots * s->stride_);
	// rte_hash's key store: the keys of the first and last positions bound it.
	void *k0 = nullptr, *k1 = nullptr;
	rte_hash_get_key_with_position(s->h_, 0, &k0);
	rte_hash_get_key_with_position(s->h_, int32_t(slots) - 2, &k1);
	if (k0 && k1 > k0)
		populate(k0, static_cast<uint8_t *>(k1) + key_size);
	return s;
}
SharedHash::~SharedHash()
{
	if (h_)
		rte_hash_free(h_);
	rte_free(vals_);
}
size_t SharedHash::count() const { return size_t(std::max<int64_t>(live_.load(std::memory_order_relaxed), 0)); }
uint32_t SharedHash::sig(const void *key) const
{
	if (ks_ != kFlowKey)
		return rte_hash_crc(key, uint32_t(ks_), 0);
	// rte_hash_crc(key, 44, 0) unrolled: five 8-byte steps, one 4-byte.
	const uint8_t *p = static_cast<const uint8_t *>(key);
	uint32_t h = 0;
	for (size_t i = 0; i < 40; i += 8) {
		uint64_t w;
		std::memcpy(&w, p + i, 8);
		h = rte_hash_crc_8byte(w, h);
	}
	uint32_t w4;
	std::memcpy(&w4, p + 40, 4);
	return rte_hash_crc_4byte(w4, h);
}

void SharedHash::install(BurstHints *h) { t_hints = h; }
BurstHints *SharedHash::installed() { return t_hints; }

void SharedHash::prelookup(BurstHints &h, unsigned from) const
{
	h.map = this;
	for (unsigned o = from; o < h.n; o += RTE_HASH_LOOKUP_BULK_MAX) {
		unsigned k = std::min<unsigned>(h.n - o, RTE_HASH_LOOKUP_BULK_MAX);
		for (unsigned i = o; i < o + k; i++) {
			h.sig[i] = sig(h.key[i]);
			h.used[i] = false;
		}
		bool ok = rte_hash_lookup_with_hash_bulk(h_, h.key + o, h.sig + o, k, h.pos + o) == 0;
		for (unsigned i = o; i < o + k; i++) {
			h.valid[i] = ok; // !ok cannot happen (k <= 64): the lookups go to rte_hash
			if (!ok) {
				h.pos[i] = -ENOENT;
			} else if (h.pos[i] >= 0) {
				// Every line of the slot (a flow entry spans two or three).
				const uint8_t *v = slot_at(h.pos[i]);
				for (size_t b = 0; b < stride_; b += 64)
					rte_prefetch0(v + b);
				rte_prefetch0(v + stride_ - 1);
			}
		}
		// After every prefetch is under way: a key another worker is
		// adding right now is absent (as if this frame came just before).
		for (unsigned i = o; i < o + k; i++)
			if (h.pos[i] >= 0 && !ready(h.pos[i]))
				h.pos[i] = -ENOENT;
	}
}

void SharedHash::forget(const void *key) const
{
	if (lg_host_hint.map == this && key_eq(lg_host_hint.key, key, ks_))
		lg_host_hint.map = nullptr; // the frame's inline hint (bpf_helpers.h)
	BurstHints *h = t_hints;
	if (!h || h->map != this)
		return;
	uint32_t g = sig(key);
	for (unsigned i = 0; i < h->n; i++)
		if (h->valid[i] && h->sig[i] == g && key_eq(h->key[i], key, ks_)) {
			h->valid[i] = false;
			h->forgotten++;
		}
}

void *SharedHash::lookup(lg_umap *m, const void *key)
{
	auto *s = static_cast<SharedHash *>(m);
	if (BurstHints *h = t_hints; h && h->map == s && h->cur >= 0) {
		for (int c : {h->cur, h->cur2})
			if (c >= 0 && h->valid[c] &&
			    (s->ks_ == kFlowKey ? flow_key_eq(key, h->key[c]) : key_eq(key, h->key[c], s->ks_))) {
				h->hits++;
				h->used[c] = true;
				return h->pos[c] < 0 ? nullptr : s->value_at(h->pos[c]);
			}
		h->misses++;
	}
	int32_t pos = rte_hash_lookup(s->h_, key);
	return pos < 0 || !s->ready(pos) ? nullptr : s->value_at(pos);
}
void SharedHash::AddLock::lock()
{
	while (held.exchange(true, std::memory_order_acquire))
		while (held.load(std::memory_order_relaxed))
			rte_pause();
}
long SharedHash::update(lg_umap *m, const void *key, const void *val, __u64 flags)
{
	auto *s = static_cast<SharedHash *>(m);
	hash_sig_t sig = s->sig(key);
	int32_t pos;
	if (flags == BPF_EXIST && rte_hash_lookup_with_hash(s->h_, key, sig) < 0)
		return -ENOENT;
	// "Absent, then add" is one step for every worker, as the kernel's
	// bucket lock makes it: of two workers adding one key, one adds and the
	// other finds it (BPF_NOEXIST is how a flow claims its keys, ct-clash).
	// Per stripe of signatures, so only writes of one stripe wait. Under the
	// lock a key found is ready: adds and deletes finish under it.
	std::lock_guard<AddLock> g(s->add_locks_[sig % kAddStripes]);
	pos = rte_hash_lookup_with_hash(s->h_, key, sig);
	if (pos >= 0) {
		if (flags == BPF_NOEXIST)
			return -EEXIST;
		// A replacement (a new flow taking an expired flow's key, a first
		// fragment's memory), as the kernel swaps in a new element: a new
		// owner before and after the copy, under the lock, so that the
		// control thread's delete of the value it read (del_owned) refuses
		// and its copies taken across the write are dropped; odd while it
		// writes, so a copy taken wholly inside is dropped too. The
		// program's own writes to a live entry go through its pointer.
		uint32_t *ow = s->owner_word(pos);
		__atomic_store_n(ow, __atomic_load_n(ow, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		std::memcpy(s->value_at(pos), val, s->vs_);
		__atomic_store_n(ow, __atomic_load_n(ow, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
		return 0;
	}
	if (flags == BPF_EXIST)
		return -ENOENT; // the key it waited for was being deleted

	// BPF's hash map counts elements against max_entries: E2BIG when full.
	if (s->count() >= s->capacity_)
		return -E2BIG;
	pos = rte_hash_add_key_with_hash(s->h_, key, sig);
	if (pos < 0)
		return pos == -ENOSPC ? -E2BIG : pos;
	s->forget(key); // a hint of this burst may say it is absent
	s->live_.fetch_add(1, std::memory_order_relaxed);
	// rte_hash has linked the key: lock-free readers find it but, until
	// the release below, see it not ready (absent), never the slot's
	// previous value. Then the lock: a writer that finds it after reads this.
	std::memcpy(s->value_at(pos), val, s->vs_);
	s->set_ready(pos, true);
	return 0;
}
long SharedHash::del(lg_umap *m, const void *key)
{
	auto *s = static_cast<SharedHash *>(m);
	s->forget(key); // a hint of this burst may point at it
	hash_sig_t sig = s->sig(key);
	std::lock_guard<AddLock> g(s->add_locks_[sig % kAddStripes]);
	return s->del_locked(key, sig, rte_hash_lookup_with_hash(s->h_, key, sig));
}
long SharedHash::del_owned(const void *key, int32_t pos, uint32_t owner)
{
	forget(key);
	hash_sig_t sig = this->sig(key);
	std::lock_guard<AddLock> g(add_locks_[sig % kAddStripes]);
	int32_t now = rte_hash_lookup_with_hash(h_, key, sig);
	// Deleted and made again since it was read: in another slot, or in the
	// same one after a grace period, with another owner count.
	if (now != pos || __atomic_load_n(owner_word(pos), __ATOMIC_RELAXED) != owner)
		return -ENOENT;
	return del_locked(key, sig, pos);
}
long SharedHash::del_locked(const void *key, hash_sig_t sig, int32_t pos)
{
	if (pos < 0)
		return -ENOENT;
	// A new owner, then not ready, before the key is unlinked, so before its
	// slot can be reused (after a grace period): the next owner's key is
	// never shown with this value, also when the caller is not an RCU
	// reader (the control thread's reclaim). By 2: the count stays even
	// (odd is a replacement under way).
	__atomic_store_n(owner_word(pos), __atomic_load_n(owner_word(pos), __ATOMIC_RELAXED) + 2, __ATOMIC_RELAXED);
	set_ready(pos, false);
	rte_hash_del_key_with_hash(h_, key, sig);
	live_.fetch_sub(1, std::memory_order_relaxed);
	return 0;
}
int32_t SharedHash::iterate(uint32_t *next, uint8_t *key, uint8_t *val, size_t n, uint32_t *owner) const
{
	const void *k;
	void *data;
	int32_t pos;
	while ((pos = rte_hash_iterate(h_, &k, &data, next)) >= 0) {
		// A seqlock on the owner count: the slot may change owner while it
		// is copied (this thread reports no quiescent state to hold it).
		uint32_t before = __atomic_load_n(owner_word(pos), __ATOMIC_ACQUIRE);
		if (!ready(pos) || (before & 1))
			continue; // an add (not in the table yet), a delete or a replacement under way
		if (key)
			std::memcpy(key, k, ks_);
		std::memcpy(val, value_at(pos), n);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(owner_word(pos), __ATOMIC_RELAXED) != before || !ready(pos))
			continue; // deleted while copied: gone
		*owner = before;
		return pos;
	}
	return pos;
}
bool SharedHash::copy(const void *key, void *val, size_t n) const
{
	n = std::min(n, vs_);
	std::vector<uint8_t> k(ks_);
	// A slot that changed owner while it was copied is looked up again.
	for (int tries = 0; tries < 8; tries++) {
		int32_t pos = rte_hash_lookup(h_, key);
		if (pos < 0)
			return false;
		uint32_t before = __atomic_load_n(owner_word(pos), __ATOMIC_ACQUIRE);
		if (!ready(pos))
			return false; // an add under way, or a delete
		if (before & 1) { // a replacement under way: its value in a moment
			rte_pause();
			continue;
		}
		std::memcpy(val, value_at(pos), n);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (key_of(pos, before, k.data()) && std::memcmp(k.data(), key, ks_) == 0)
			return true;
	}
	return false;
}

bool SharedHash::key_of(int32_t pos, uint32_t owner, uint8_t *key) const
{
	void *k = nullptr;
	if (rte_hash_get_key_with_position(h_, pos, &k) != 0 || !k)
		return false;
	std::memcpy(key, k, ks_);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(owner_word(pos), __ATOMIC_RELAXED) == owner && ready(pos);
}

} // namespace lg::dp
