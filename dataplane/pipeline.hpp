// linkgate-dpdk's poll loop: per worker, one RX burst from each of its
// (port, queue) pairs, the engine's decision for the burst, then TX on the
// worker's own queue of every egress port (XDP_TX: back on the ingress
// port), PASS and DROP freed. Used by linkgate_dpdk.cpp's workers and by
// tests/dpdk (net_ring ports). docs/dpdk.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine.hpp"
#include "result.hpp"

struct rte_mbuf;
struct rte_mempool;

namespace lg::dp {

// A DPDK port as the engine sees it: ifindex = port id + 1.
inline uint32_t ifindex_of(uint16_t port) { return uint32_t(port) + 1; }

// Configure and start port `id` with up to `workers` RX queues (RSS when
// there are several) and exactly `workers` TX queues (one per worker);
// promiscuous. Returns the number of RX queues; *mac gets the port's MAC.
Result<uint16_t> setup_port(uint16_t id, unsigned workers, rte_mempool *pool, Mac *mac, uint16_t ring = 1024);

struct alignas(64) WorkerStats {
	std::atomic<uint64_t> rx{0}, tx{0}, tx_failed{0}, passed{0}, dropped{0}, busy_cycles{0};
	std::atomic<uint64_t> iterations{0}; // run()'s loop, busy or not
};

struct PipelineTotals {
	uint64_t rx = 0, tx = 0, tx_failed = 0, passed = 0, dropped = 0, busy_cycles = 0;
};

class Pipeline {
public:
	// Frames a poll: one engine burst (Engine's flow pre-lookup takes 64),
	// which is also one rte_acl call for its new flows. 64 rather than 32:
	// classification 12 % cheaper a flow (docs/dpdk-performance.md).
	static constexpr uint16_t kBurst = 64;

	// `ports`: every port a frame may leave by; `workers` poll loops.
	Pipeline(Engine &engine, const std::vector<uint16_t> &ports, unsigned workers);

	// Worker `wid` polls RX queue `queue` of `port`.
	void assign(unsigned wid, uint16_t port, uint16_t queue);
	const std::vector<std::pair<uint16_t, uint16_t>> &queues(unsigned wid) const { return rxq_[wid]; }

	// Worker thread: one RX burst per assigned queue, decided and sent (on TX
	// queue `wid`). Returns the frames received. Does not report a quiescent
	// state: the caller does (run() after every iteration).
	unsigned run_once(unsigned wid);
	// online, run_once + quiescent until `stop`, offline; except that a
	// queue that returned nothing kIdlePolls times in a row is polled every
	// kIdleEvery-th iteration only, until it returns a frame (docs/dpdk.md).
	void run(unsigned wid, const std::atomic<bool> &stop);
	static constexpr uint32_t kIdlePolls = 64, kIdleEvery = 4;

	const WorkerStats &stats(unsigned wid) const { return stats_[wid]; }
	PipelineTotals totals() const;
	unsigned workers() const { return unsigned(rxq_.size()); }

private:
	// One iteration; idle (per queue of wid, or nullptr: poll every queue)
	// and iter as run() keeps them.
	unsigned iterate(unsigned wid, uint32_t *idle, uint32_t iter);

	Engine &engine_;
	std::vector<std::vector<std::pair<uint16_t, uint16_t>>> rxq_; // per worker
	std::vector<std::vector<std::vector<rte_mbuf *>>> tx_;         // per worker, per port id
	std::vector<uint8_t> member_;                                  // per port id: given to the pipeline
	std::vector<WorkerStats> stats_;
};

} // namespace lg::dp
