// Userspace owner of the XDP dataplane: loads bpf/lg_xdp.bpf.c through its
// libbpf skeleton (one RAII owner, typed map access, no map looked up by
// name), publishes CompiledTables as a new generation, runs frames through
// BPF_PROG_TEST_RUN and reads counters. Errors come back as operator words.
// Not thread-safe: one control thread drives it. See docs/xdp.md.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "compiler.hpp"
#include "net.hpp"
#include "result.hpp"

extern "C" {
#include "lg_flow.h"
#include "lg_limits.h"
#include "lg_reasons.h"
#include "lg_xdp.h"
}

struct lg_xdp; // the bpftool skeleton
struct bpf_map;

namespace lg {

struct XdpConfig {
	uint64_t tcp_established_ns = LG_TIMEOUT_TCP_ESTABLISHED * 1000000000ull;
	uint64_t tcp_transient_ns = LG_TIMEOUT_TCP_TRANSIENT * 1000000000ull;
	uint64_t tcp_close_ns = LG_TIMEOUT_TCP_CLOSE * 1000000000ull;
	uint64_t udp_ns = LG_TIMEOUT_UDP * 1000000000ull;
	uint64_t icmp_ns = LG_TIMEOUT_ICMP * 1000000000ull;
	uint64_t fragment_ns = LG_FRAG_TIMEOUT * 1000000000ull;
	// Make lg_flowlog's records (SPEC §6 flow logs): only for a loader that
	// drains them (linkgated --flow-log).
	bool flow_log = false;
	uint32_t flow_capacity = LG_CT_CAPACITY_DEFAULT; // flows; the map holds 2 keys each
	uint32_t frag_capacity = LG_FRAG_CAPACITY_DEFAULT;
	uint32_t rule_counters = LG_MAX_RULE_COUNTERS; // lg_rule::counter ids (the compiler refuses more)
	uint32_t pe_counters = LG_MAX_PRIVATE_ENDPOINTS; // lg_pe::id
	uint32_t server_counters = LG_MAX_SERVERS;       // server indices
	// Generation slots (entries of every outer map), 2..LG_GEN_SLOTS. With 2,
	// a publish right after another waits for the previous flip's RCU
	// barrier (one grace period, ~10-20 ms); with 3 it writes the slot
	// retired two flips ago and does not wait unless two flips came within
	// one grace period, at the cost of one more copy of every table.
	// linkgated uses 3. Pinned maps of another count are refused at load.
	uint32_t gen_slots = 2;
	// Pin maps and XDP links here (the agent: "/sys/fs/bpf/linkgate") so the
	// dataplane outlives the process; "" pins nothing. A later load with the
	// same directory adopts the pinned maps (tables, flows, counters) and
	// links, after checking lg_active's layout version.
	std::string pin_dir;
};

// One BPF_PROG_TEST_RUN: the XDP action and the frame as the program left it.
struct XdpRun {
	int action = 0; // XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT, XDP_ABORTED
	std::vector<uint8_t> frame;
};

class XdpDataplane {
public:
	// Open, size and load the program (needs CAP_BPF/CAP_NET_ADMIN); checks
	// every map's key and value size against the abi/ structs.
	static Result<std::unique_ptr<XdpDataplane>> load(const XdpConfig &cfg = {});
	~XdpDataplane();
	XdpDataplane(const XdpDataplane &) = delete;
	XdpDataplane &operator=(const XdpDataplane &) = delete;

	// Write t element by element into the inactive slot retired longest ago
	// (of LG_GEN_SLOTS; replacing a map only when a table outgrows it),
	// then flip lg_active once: t is live when this returns. The RCU barrier
	// that frees the slot a flip retires runs on a background thread; a
	// publish waits only for the barrier guarding the slot it writes (with 3
	// slots: the one started two flips ago), and runs it again when it
	// failed. The MACs of t.ifaces are read from the kernel for ARP/ND
	// answers. On error the active generation is unchanged.
	Status publish(const CompiledTables &t);
	uint64_t generation() const { return generation_; }
	// Wait for every pending barrier (and that of adopted pins); a failed
	// one is run again here, and its error returned if that fails too.
	Status settle();

	// The addresses passed to the host. too_many (if given) says whether a
	// failure was a set larger than lg_local, which only a smaller set mends.
	Status set_local_addresses(const std::vector<Addr> &addrs, bool *too_many = nullptr);
	Status set_interface_mac(uint32_t ifindex, const std::array<uint8_t, 6> &mac);
	// The MACs of these interfaces as they are now, written to lg_ifmac
	// where they changed (a publish does the same for the bound ones).
	Status refresh_macs(const std::vector<uint32_t> &ifindexes);

	// Attach through a BPF link (pinned as <pin_dir>/link_<ifindex> when
	// pinning). A pinned link of an earlier run is taken over with an atomic
	// program replacement: no packet goes unfiltered in between.
	// xdp_flags: XDP_FLAGS_DRV_MODE / _SKB_MODE / 0 (kernel's choice).
	Status attach(uint32_t ifindex, uint32_t xdp_flags = 0);
	Status detach(uint32_t ifindex, uint32_t xdp_flags = 0); // also unpins
	// This process holds a link on ifindex that the kernel still has there
	// (a link whose interface went away is defunct: ifindex 0).
	bool attached(uint32_t ifindex) const;
	// Pinned links of interfaces not in `keep` (an earlier run's, whose
	// interface is no longer configured, or gone): detached and unpinned.
	// Returns the ifindexes it removed.
	Result<std::vector<uint32_t>> prune_links(const std::vector<uint32_t> &keep);
	// Remove every pin of this dataplane (maps stay while still held).
	Status unpin();
	bool adopted() const { return adopted_; } // pinned state was taken over

	// Run one frame through the program as if it arrived on ingress_ifindex
	// (a device of the caller's network namespace; 0 for none).
	Result<XdpRun> run(std::span<const uint8_t> frame, uint32_t ingress_ifindex);

	// Added to the program's clock (tests move time forward with it).
	void set_time_offset(uint64_t ns);
	// The program's clock: CLOCK_MONOTONIC + the time offset.
	uint64_t now_ns() const;

	// What bounds the fast path's cached next hops (bpf/lg_ct.bpf.h,
	// docs/xdp.md "The next hop's lifetime"): the host's routes,
	// neighbours, links or addresses changed now; every such change reaches
	// fib_changed() within the next `ns` (an agent that reads them);
	// nobody watches (a second at most). Loaded: unwatched, never changed.
	// ahead_ns > 0 dates the change that far ahead: nothing resolved before
	// then is trusted (an agent's start, docs/agent.md); a later call
	// never moves the stamp back before it.
	void fib_changed(uint64_t ahead_ns = 0);
	void fib_distrust(); // a change at the end of time: nothing is trusted until the next fib_changed()
	void fib_watched_for(uint64_t ns);
	void fib_unwatched();
	uint64_t fib_watched_until_ns() const;

	// Counters, summed over CPUs.
	std::array<uint64_t, LG_REASON__COUNT> reason_counts() const;
	uint64_t rule_hits(uint32_t counter) const;
	uint64_t pe_packets(uint32_t id) const;
	uint64_t server_packets(uint32_t index) const;
	uint64_t egress_packets(uint32_t ifindex) const;
	uint64_t fast_packets() const; // forwarded by the established-flow fast path

	size_t flow_entries() const;     // keys in lg_flows (2 per flow)
	// The keys reclaim() left in lg_flows at its last sweep, and when that
	// sweep started and ended (CLOCK_MONOTONIC ns); none before the first
	// sweep. The sweep walks the table anyway: stats takes its count
	// instead of a walk of its own on the agent's control thread
	// (docs/agent.md).
	struct Swept {
		size_t keys = 0;
		uint64_t started_ns = 0;
		uint64_t at_ns = 0; // ended
	};
	std::optional<Swept> last_sweep() const;
	// The last sweep's count if, at now_ns, it is from the sweep before the
	// next one is due (sweeps every interval_ns, each as long as the last,
	// and a second of slack); none otherwise: count with flow_entries().
	std::optional<size_t> recent_sweep_keys(uint64_t now_ns, uint64_t interval_ns) const;
	size_t fragment_entries() const;

	// Every flow once (the copy under its original key, with the later
	// expiry of its two copies), at most `limit` of them in table order.
	std::vector<lg_flow_entry> flows(size_t limit = SIZE_MAX) const;
	// The same, each with its reply copy's counts (flow logs).
	// `complete`: every flow was read (the walk neither failed nor stopped at `limit`).
	std::vector<lg_flow_sample> flow_samples(size_t limit = SIZE_MAX, bool *complete = nullptr) const;
	// lg_flowlog's records, each removed as it is read; and lg_log_cnt.
	std::vector<std::pair<lg_flow_key, lg_flowlog_entry>> drain_flowlog();
	uint64_t log_counter(lg_log_counter c) const;
	bool flow_log() const { return flow_log_; } // XdpConfig::flow_log
	// Remove expired flows and fragment memories as of the program's clock
	// (CLOCK_MONOTONIC + time offset); returns the flows removed. The
	// agent calls it in the background: the program only removes what it
	// looks up.
	size_t reclaim();

	int prog_fd() const;
	lg_xdp *skeleton() { return skel_; }

private:
	XdpDataplane() = default;
	std::vector<struct bpf_map *> pinned_maps() const;
	std::string link_path(uint32_t ifindex) const;
	lg_xdp *skel_ = nullptr;
	// last_sweep(): written by reclaim() (the agent's sweep thread), read
	// by stats (its control thread).
	mutable std::mutex sweep_mu_;
	std::optional<Swept> swept_;
	static constexpr size_t kTables = 15;
	Status write_table(size_t i, uint32_t slot, const void *keys, const void *vals, uint32_t n,
			   uint64_t version = 0);
	Status barrier_now();
	Status wait_free(uint32_t slot); // the barriers guarding slot are done
	// Inner maps per slot and table (-1: none) and their max_entries.
	std::array<std::array<int, kTables>, LG_GEN_SLOTS> slot_fds_{};
	std::array<std::array<uint32_t, kTables>, LG_GEN_SLOTS> slot_cap_{};
	// What each inner map holds, so a publish writes only what changed
	// (invalid: unknown, e.g. adopted pins; then everything is written).
	// Compared and updated in place (no copy of a table per publish).
	struct Shadow {
		bool valid = false;
		uint64_t version = 0;                                // arrays: CompiledTables::maglev_version
		std::vector<uint8_t> vals;                           // arrays
		std::unordered_map<std::string, std::string> kv;     // hash/LPM
	};
	std::array<std::array<Shadow, kTables>, LG_GEN_SLOTS> shadow_;
	// One background barrier per flip, oldest first: after it, no packet
	// reads `guards` (the slot that flip retired). They run on long-lived
	// threads (one started at load, more when flips come faster than grace
	// periods end, at most kBarrierThreads), each barrier as soon as a
	// thread is free: barriers of flips in a burst overlap, as concurrent
	// synchronize_rcu() calls do, instead of queueing one grace period
	// behind another. No thread is created per publish.
	struct Barrier {
		uint32_t guards = 0;
		int outer_fd = -1, inner_fd = -1;
		uint32_t slot = 0; // the outer entry it re-sets (the live slot)
		bool done = false; // under barrier_mu_
		int err = -1;      // -1: not run (no thread could be started)
	};
	std::deque<std::shared_ptr<Barrier>> barriers_; // the control thread's list
	static constexpr size_t kBarrierThreads = 4;
	std::vector<std::thread> barrier_threads_;
	std::mutex barrier_mu_;
	std::condition_variable barrier_cv_;
	std::deque<std::shared_ptr<Barrier>> barrier_queue_; // to run, under barrier_mu_
	size_t barrier_idle_ = 0;                            // threads waiting for one, under barrier_mu_
	bool barrier_stop_ = false;
	void barrier_loop();
	bool start_barrier_thread(); // false: none could be started
	// ARP/ND answers: the MAC last written to lg_ifmac per interface, and a
	// socket to read them (refreshed at every publish, written when changed).
	std::unordered_map<uint32_t, std::array<uint8_t, 6>> macs_;
	int mac_sock_ = -1;
	bool adopt_barrier_ = false; // adopted pins: a barrier before any slot is written
	uint32_t active_ = 0;
	uint32_t slots_ = 2; // XdpConfig::gen_slots
	bool flow_log_ = false;
	bool published_ = false;
	uint64_t generation_ = 0;
	std::vector<std::pair<uint32_t, int>> links_; // ifindex, BPF link fd
	std::string pin_dir_;
	bool adopted_ = false;
	int ncpu_ = 1;
};

} // namespace lg
