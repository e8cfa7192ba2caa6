#include "pipeline.hpp"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "dp_log.hpp"

namespace lg::dp {

namespace {
// A worker's own counters: only it writes them, others read (relaxed). A
// load and a store instead of a locked read-modify-write (four or five of
// them a burst).
inline void bump(std::atomic<uint64_t> &c, uint64_t v)
{
	c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}
} // namespace

Result<uint16_t> setup_port(uint16_t id, unsigned workers, rte_mempool *pool, Mac *mac, uint16_t ring)
{
	std::string name = "port " + std::to_string(id);
	rte_eth_dev_info info{};
	if (rte_eth_dev_info_get(id, &info))
		return err(name + ": no such DPDK port");
	uint16_t q = uint16_t(std::min<unsigned>({workers, info.max_rx_queues, info.max_tx_queues}));
	if (q == 0)
		q = 1;
	rte_eth_conf conf{};
	if (q > 1 && info.flow_type_rss_offloads) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
	}
	// Every worker has a TX queue of its own on every port.
	uint16_t txq = uint16_t(std::min<unsigned>(workers, info.max_tx_queues));
	if (txq < workers)
		return err(name + " has " + std::to_string(info.max_tx_queues) + " TX queues, fewer than the " +
			   std::to_string(workers) + " workers");
	if (int e = rte_eth_dev_configure(id, q, txq, &conf); e)
		return err(name + ": configure: " + rte_strerror(-e));
	// The device's descriptor limits: a NIC may not take `ring` as it is.
	uint16_t nrx = ring, ntx = ring;
	if (int e = rte_eth_dev_adjust_nb_rx_tx_desc(id, &nrx, &ntx); e)
		return err(name + ": descriptors: " + rte_strerror(-e));
	for (uint16_t i = 0; i < q; i++)
		if (int e = rte_eth_rx_queue_setup(id, i, nrx, rte_eth_dev_socket_id(id), nullptr, pool); e)
			return err(name + ": rx queue: " + rte_strerror(-e));
	for (uint16_t i = 0; i < txq; i++)
		if (int e = rte_eth_tx_queue_setup(id, i, ntx, rte_eth_dev_socket_id(id), nullptr); e)
			return err(name + ": tx queue: " + rte_strerror(-e));
	rte_ether_addr a;
	if (int e = rte_eth_macaddr_get(id, &a); e)
		return err(name + ": MAC address: " + rte_strerror(-e));
	if (int e = rte_eth_dev_start(id); e)
		return err(name + ": start: " + rte_strerror(-e));
	// Frames to the port's own MAC arrive either way; a device without
	// promiscuous mode still serves them.
	if (int e = rte_eth_promiscuous_enable(id); e)
		lg::dp::log("%s: promiscuous mode: %s", name.c_str(), rte_strerror(-e));
	std::memcpy(mac->data(), a.addr_bytes, 6);
	return q;
}

Pipeline::Pipeline(Engine &engine, const std::vector<uint16_t> &ports, unsigned workers)
	: engine_(engine), rxq_(workers), tx_(workers), stats_(workers)
{
	uint16_t max_port = 0;
	for (uint16_t p : ports)
		max_port = std::max(max_port, p);
	member_.resize(size_t(max_port) + 1);
	for (uint16_t p : ports)
		member_[p] = 1;
	for (auto &w : tx_) {
		w.resize(size_t(max_port) + 1);
		for (auto &v : w)
			v.reserve(size_t(kBurst) * ports.size() * 2);
	}
}

void Pipeline::assign(unsigned wid, uint16_t port, uint16_t queue) { rxq_[wid].push_back({port, queue}); }

unsigned Pipeline::run_once(unsigned wid) { return iterate(wid, nullptr, 0); }

unsigned Pipeline::iterate(unsigned wid, uint32_t *idle, uint32_t iter)
{
	WorkerStats &st = stats_[wid];
	auto &tx = tx_[wid];
	rte_mbuf *pkts[kBurst];
	Verdict v[kBurst];
	unsigned total = 0;
	const auto &rxq = rxq_[wid];
	for (size_t q = 0; q < rxq.size(); q++) {
		auto [port, queue] = rxq[q];
		if (idle && idle[q] >= kIdlePolls && iter % kIdleEvery)
			continue;
		uint16_t n = rte_eth_rx_burst(port, queue, pkts, kBurst);
		if (idle)
			idle[q] = n ? 0 : std::min(idle[q] + 1, kIdlePolls);
		if (!n)
			continue;
		total += n;
		bump(st.rx, n); // counted before its outcomes
		uint64_t t0 = rte_rdtsc();
		engine_.decide_burst(ifindex_of(port), pkts, n, v, Engine::clock_ns());
		for (uint16_t i = 0; i < n; i++) {
			uint32_t out = v[i].verdict == LG_VERDICT_FORWARD ? v[i].egress - 1
				       : v[i].verdict == LG_VERDICT_TX    ? port
									 : UINT32_MAX;
			if (out < tx.size() && member_[out]) { // a gap between port ids is no port of ours
				tx[out].push_back(pkts[i]);
			} else {
				// PASS: the host stack sees these frames on its own side of
				// the port (net_af_packet) or not at all; nothing to do here.
				// A forward to a port not given to the pipeline is a drop.
				bump(v[i].verdict == LG_VERDICT_PASS ? st.passed : st.dropped, 1);
				rte_pktmbuf_free(pkts[i]);
			}
		}
		bump(st.busy_cycles, rte_rdtsc() - t0);
	}
	for (size_t p = 0; p < tx.size(); p++) {
		auto &b = tx[p];
		if (b.empty())
			continue;
		size_t sent = 0;
		while (sent < b.size()) {
			uint16_t k = rte_eth_tx_burst(uint16_t(p), uint16_t(wid), b.data() + sent,
						      uint16_t(std::min<size_t>(b.size() - sent, kBurst)));
			if (!k)
				break;
			sent += k;
		}
		for (size_t i = sent; i < b.size(); i++)
			rte_pktmbuf_free(b[i]);
		bump(st.tx, sent);
		bump(st.tx_failed, b.size() - sent);
		b.clear();
	}
	return total;
}

void Pipeline::run(unsigned wid, const std::atomic<bool> &stop)
{
	engine_.online(wid);
	std::vector<uint32_t> idle(rxq_[wid].size(), 0); // empty polls in a row, per queue
	for (uint32_t iter = 0; !stop.load(std::memory_order_relaxed); iter++) {
		iterate(wid, idle.data(), iter);
		engine_.quiescent(wid);
		bump(stats_[wid].iterations, 1);
	}
	engine_.offline(wid);
}

PipelineTotals Pipeline::totals() const
{
	PipelineTotals t;
	for (auto &s : stats_) {
		t.rx += s.rx;
		t.tx += s.tx;
		t.tx_failed += s.tx_failed;
		t.passed += s.passed;
		t.dropped += s.dropped;
		t.busy_cycles += s.busy_cycles;
	}
	return t;
}

} // namespace lg::dp
