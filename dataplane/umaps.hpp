// The maps of the XDP program as the DPDK build of it sees them (lg_host.h):
// each class is an lg_umap whose ops serve bpf_map_*_elem. Generation tables
// are immutable once built; the flow and fragment tables are rte_hash with
// lock-free readers and RCU QSBR reclamation, shared by every worker lcore.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <rte_hash.h>

extern "C" {
#include "lg_host.h"
}

struct rte_hash;
struct rte_rcu_qsbr;

namespace lg::dp {

// Fixed-size values in 8-byte aligned storage.
class Values {
public:
	Values() = default;
	Values(size_t value_size, size_t n) : vs_(value_size), n_(n), w_((value_size * n + 7) / 8 + 1, 0) {}
	uint8_t *at(size_t i) { return reinterpret_cast<uint8_t *>(w_.data()) + i * vs_; }
	const uint8_t *at(size_t i) const { return reinterpret_cast<const uint8_t *>(w_.data()) + i * vs_; }
	size_t size() const { return n_; }
	size_t value_size() const { return vs_; }

private:
	size_t vs_ = 0, n_ = 0;
	std::vector<uint64_t> w_;
};

// lg_umap with every field zero (kind LG_UMAP_OPS) until a map sets its own.
struct UmapBase : lg_umap {
	UmapBase() : lg_umap{} {}
};

// Arrays and per-CPU arrays are looked up inline by the program
// (bpf_helpers.h, from the layout in lg_umap: tens a packet, scratch()
// alone is one); every other map's lookup is one indirect call
// (ops->lookup): each lookup below is a handful of instructions over fields
// read straight from the map object, no bounds or sizes fetched through
// containers.

// BPF_MAP_TYPE_ARRAY: u32 index -> value. Writable (lg_active).
class ArrayMap : public UmapBase {
public:
	ArrayMap(size_t value_size, size_t n);
	template <typename T> static std::unique_ptr<ArrayMap> of(const std::vector<T> &v)
	{
		auto m = std::make_unique<ArrayMap>(sizeof(T), v.size());
		if (!v.empty())
			std::memcpy(m->vals_.at(0), v.data(), sizeof(T) * v.size());
		return m;
	}
	uint8_t *at(size_t i) { return i < n_ ? base_ + i * vs_ : nullptr; }

private:
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	Values vals_;
	uint8_t *base_;
	size_t n_, vs_;
};

// BPF_MAP_TYPE_PERCPU_ARRAY: one copy per worker (lg_host_cpu).
class PerCpuArray : public UmapBase {
public:
	PerCpuArray(size_t value_size, size_t n);
	uint8_t *at(unsigned cpu, size_t i) { return i < n_ ? base_ + size_t(cpu) * cpu_stride_ + i * vs_ : nullptr; }
	size_t size() const { return n_; }
	uint64_t sum_u64(size_t i) const; // counters: the u64 at index i over every CPU

private:
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	size_t n_;
	Values vals_;
	uint8_t *base_;
	size_t vs_, cpu_stride_;
};

// Exact-match table built once (BPF_MAP_TYPE_HASH of a generation, and the
// host tables lg_local / lg_ifmac): open addressing, linear probing; each
// slot holds its key's 32-bit hash (CRC32-C), so a probe compares keys only
// when the hashes agree. Read for every packet (interface VNI, own
// addresses), often empty (lg_local without --local).
class FixedHash : public UmapBase {
public:
	FixedHash(size_t key_size, size_t value_size, size_t n);
	void insert(const void *key, const void *val); // builder only: before the map is published
	void *find(const void *key) const;

private:
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	static uint32_t hash(const void *key, size_t n);
	size_t ks_, n_ = 0, mask_;
	Values keys_, vals_;
	struct Slot {
		uint32_t hash;
		uint32_t entry; // entry + 1, 0 empty
	};
	std::vector<Slot> slot_;
	// 4-byte keys below kDirect (ifindexes: lg_iface, lg_ifmac) are also
	// indexed directly; while every key is, a lookup never hashes.
	static constexpr uint32_t kDirect = 64;
	std::vector<uint32_t> direct_; // entry + 1, 0 absent; 4-byte keys only
	bool only_direct_ = true;
};

// BPF_MAP_TYPE_LPM_TRIE: key = u32 prefixlen + data. One exact table per
// prefix length present, searched longest first.
class LpmMap : public UmapBase {
public:
	LpmMap(size_t data_size, size_t value_size);
	void insert(uint32_t prefixlen, const void *data, const void *val); // builder only
	void seal();                                                       // after the last insert

private:
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	struct Level {
		uint32_t len;
		std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> pending;
		std::unique_ptr<FixedHash> table;
	};
	size_t ds_, vs_;
	std::vector<Level> levels_; // sealed: longest first
};

// BPF_MAP_TYPE_ARRAY_OF_MAPS with LG_GEN_SLOTS slots: the lookup returns a
// pointer to the slot's word, which holds the inner lg_umap.
class OuterMap : public UmapBase {
public:
	OuterMap();
	void set(uint32_t slot, lg_umap *inner) { slot_[slot] = inner; }
	lg_umap *inner(uint32_t slot) const { return slot < slot_.size() ? slot_[slot] : nullptr; }

private:
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	std::vector<lg_umap *> slot_;
};

class SharedHash;

// The flow keys of one burst, looked up together before the program runs
// (Engine::decide_burst): one rte_hash bulk lookup, which hashes every key
// and prefetches every bucket before comparing any, instead of one
// dependent chain of cache misses per packet. While frame `cur` is decided,
// the program's lookups of its own key in `map` are answered from here
// (after a full key compare); anything else goes to rte_hash.
//
// Why an answer taken at the start of the burst is still right:
// - this worker's own writes: an insert or a delete of a key forgets the
//   hints of that key (the next lookup goes to rte_hash), an update in
//   place leaves the key where it is (rte_hash never moves a key's slot,
//   only its bucket entry);
// - a key deleted by another thread: its slot, and the value beside it, is
//   reused only after every online worker has passed a quiescent state, and
//   this worker reports one only after the burst (Pipeline::run), so the
//   pointer stays readable; the frame is decided as if it had arrived just
//   before the delete, one of the orders two CPUs give in XDP as well;
// - a key added by another thread after the bulk lookup: the frame is
//   decided as if it had arrived just before the add; an add of its own
//   (BPF_NOEXIST) still asks rte_hash and finds the other thread's key.
//
// A frame has up to two hints: its own key (cur) and the other key of the
// flow that key found (cur2: the reply key of an original entry, the
// original key of a reply entry), which the program looks up to write the
// flow back under both keys.
struct BurstHints {
	static constexpr unsigned kFrames = 64;       // frames a burst (RTE_HASH_LOOKUP_BULK_MAX)
	static constexpr unsigned kMax = 2 * kFrames; // keys
	const SharedHash *map = nullptr;              // hints of this table
	unsigned n = 0;                               // keys
	int cur = -1, cur2 = -1;                      // the hints of the frame being decided; -1: none
	const void *key[kMax];
	uint32_t sig[kMax];                  // rte_hash signature of key[i]
	int32_t pos[kMax];                   // key slot, or < 0: absent
	bool valid[kMax];
	bool used[kMax];                     // answered a lookup
	uint64_t hits = 0, misses = 0, forgotten = 0; // answers given / lookups passed on / hints dropped
};

// BPF_MAP_TYPE_HASH that packets write (flows, fragments): rte_hash with
// lock-free readers, writers serialised inside rte_hash, an add of a new key
// a test-and-set across workers (update()'s stripe locks) that readers see
// only once its value is written (the slot's ready word), key slots reused
// only after every worker passed a quiescent state (RCU QSBR defer queue),
// so a value pointer stays valid until this worker's next quiescent state
// (the end of its burst), longer than BPF needs (the rest of the packet).
// The control thread, no RCU reader, walks copies (for_each).
class SharedHash : public UmapBase {
public:
	static std::unique_ptr<SharedHash> create(const std::string &name, size_t key_size, size_t value_size,
						  size_t capacity, rte_rcu_qsbr *qsbr, std::string *err);
	~SharedHash();
	size_t count() const;
	size_t capacity() const { return capacity_; }
	size_t key_size() const { return ks_; }

	// Burst pre-lookup: h.key[from..h.n) in bulk lookups of up to 64 (their
	// values prefetched), valid, unused; h.map = this. The calling thread's
	// lookups use h while it is installed (install()).
	void prelookup(BurstHints &h, unsigned from = 0) const;
	static void install(BurstHints *h); // this thread's hints, nullptr: none
	static BurstHints *installed();
	uint8_t *value_at(int32_t pos) const { return slot_at(pos) + kHeader; }
	// Every entry, for the control thread (not an RCU reader): f(key,
	// value) gets copies, each taken whole from one owner of its slot (an
	// entry an update is replacing that instant is skipped, as one added a
	// moment later would be): the value's first value_bytes (the rest
	// zero) and, with keys, the key
	// (else nullptr: the key store is another cache line an entry, which a
	// walk of a million flows feels). f returns 0 (false) to keep the
	// entry, 1 (true) to delete it, 2 to delete it uncounted; a delete
	// happens only if the key still has that slot and owner (not a flow
	// made again under the same key since, nor a value an update replaced)
	// and, with recheck, if f still says so of a copy taken again just
	// before (a value the program rewrote through its pointer since the
	// walk read it: f must have no side effects). Returns the counted
	// entries deleted.
	template <typename F>
	size_t for_each(F &&f, size_t value_bytes = SIZE_MAX, bool keys = false, bool recheck = false);
	// key's value (its first n bytes), for the control thread as for_each
	// copies: taken whole from one owner of the key's slot. False: absent.
	bool copy(const void *key, void *val, size_t n) const;

private:
	SharedHash() = default;
	static void *lookup(lg_umap *m, const void *key);
	static long update(lg_umap *m, const void *key, const void *val, __u64 flags);
	static long del(lg_umap *m, const void *key);
	// The next ready entry: its value's first n bytes copied to val, its
	// key to key (nullptr: not copied), its owner count; < 0 at the end.
	int32_t iterate(uint32_t *next, uint8_t *key, uint8_t *val, size_t n, uint32_t *owner) const;
	// The key of pos into key, if pos still has that owner.
	bool key_of(int32_t pos, uint32_t owner, uint8_t *key) const;
	long del_owned(const void *key, int32_t pos, uint32_t owner); // del() of that owner only
	long del_locked(const void *key, hash_sig_t sig, int32_t pos);
	uint32_t sig(const void *key) const;
	void forget(const void *key) const; // this thread's hints of key
	// A key's slot: an 8-byte header, then the value. The header's first
	// word says the value is written: rte_hash links a key before update()
	// can copy its value in, and the kernel's map never shows an element
	// before its value, so a key whose slot is not ready is absent to every
	// reader. The second counts the slot's owners, a seqlock for readers
	// that are not RCU readers (for_each, copy): 2 more at a delete, 1
	// before and 1 after an update that replaces the value, so a copy
	// taken across a change of owner, or begun while it was odd, is
	// dropped.
	static constexpr size_t kHeader = 8;
	uint8_t *slot_at(int32_t pos) const { return vals_ + size_t(pos) * stride_; }
	uint32_t *ready_word(int32_t pos) const { return reinterpret_cast<uint32_t *>(slot_at(pos)); }
	uint32_t *owner_word(int32_t pos) const { return reinterpret_cast<uint32_t *>(slot_at(pos)) + 1; }
	bool ready(int32_t pos) const { return __atomic_load_n(ready_word(pos), __ATOMIC_ACQUIRE) != 0; }
	void set_ready(int32_t pos, bool r) const { __atomic_store_n(ready_word(pos), uint32_t(r), __ATOMIC_RELEASE); }
	rte_hash *h_ = nullptr;
	size_t ks_ = 0, vs_ = 0, stride_ = 0, capacity_ = 0;
	uint8_t *vals_ = nullptr; // (max key id + 1) slots, rte_zmalloc'd
	// update()'s adds and replacements, del() and del_owned(): a lock per
	// stripe of key signatures, each on its own line.
	struct alignas(64) AddLock {
		std::atomic<bool> held{false};
		void lock();
		void unlock() { held.store(false, std::memory_order_release); }
	};
	static constexpr unsigned kAddStripes = 64;
	AddLock add_locks_[kAddStripes];
	// Keys in the table. Not rte_hash_count(): it counts a deleted key
	// until the RCU defer queue hands its slot back, so flows removed a
	// moment ago would still show in counters and fill the capacity.
	std::atomic<int64_t> live_{0};
};

template <typename F> size_t SharedHash::for_each(F &&f, size_t value_bytes, bool keys, bool recheck)
{
	struct Doomed {
		std::vector<uint8_t> key;
		int32_t pos;
		uint32_t owner;
		bool counted;
	};
	std::vector<Doomed> doomed;
	std::vector<uint8_t> k(ks_), v(vs_);
	size_t n = std::min(value_bytes, vs_);
	uint32_t next = 0, owner;
	int32_t pos;
	while ((pos = iterate(&next, keys ? k.data() : nullptr, v.data(), n, &owner)) >= 0) {
		int verdict = int(f(keys ? static_cast<const void *>(k.data()) : nullptr, v.data()));
		if (!verdict)
			continue;
		if (keys || key_of(pos, owner, k.data())) // else deleted since: gone already
			doomed.push_back(Doomed{k, pos, owner, verdict == 1});
	}
	size_t gone = 0;
	for (auto &d : doomed) {
		if (recheck && (!copy(d.key.data(), v.data(), n) ||
				!f(keys ? static_cast<const void *>(d.key.data()) : nullptr, v.data())))
			continue;
		gone += del_owned(d.key.data(), d.pos, d.owner) == 0 && d.counted;
	}
	return gone;
}

} // namespace lg::dp
