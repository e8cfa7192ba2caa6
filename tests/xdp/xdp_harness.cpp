#include "xdp_harness.hpp"

#include <algorithm>

#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <sys/vfs.h>
#include <unistd.h>
#ifdef LG_WITH_DPDK
#include <rte_errno.h>
#include <rte_mbuf.h>
#endif

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace lg::xdptest {

bool sh(const std::string &cmd)
{
	int rc = std::system((cmd + " 2>&1").c_str());
	if (rc != 0) {
		ADD_FAILURE() << "command failed (" << rc << "): " << cmd;
		return false;
	}
	return true;
}

static bool write_file(const std::string &path, const std::string &v)
{
	std::ofstream f(path);
	f << v;
	f.close();
	if (!f) {
		ADD_FAILURE() << "cannot write " << path;
		return false;
	}
	return true;
}

bool ensure_bpffs()
{
	struct statfs st {};
	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == 0xcafe4a11 /* BPF_FS_MAGIC */)
		return true;
	return sh("mount -t bpf bpf /sys/fs/bpf");
}

bool enter_netns()
{
	if (unshare(CLONE_NEWNET) != 0) {
		ADD_FAILURE() << "unshare(CLONE_NEWNET): " << std::strerror(errno);
		return false;
	}
	// bpf_fib_lookup reports "forwarding disabled" otherwise.
	// lo up creates the local table (on-link gateways need it); its
	// addresses go: 127/8 and ::1 are not in the evaluator's host.
	return write_file("/proc/sys/net/ipv4/ip_forward", "1") &&
	       write_file("/proc/sys/net/ipv6/conf/all/forwarding", "1") &&
	       write_file("/proc/sys/net/ipv6/conf/default/forwarding", "1") && sh("ip link set lo up") &&
	       sh("ip addr flush dev lo");
}

static std::string family_flag(const Addr &a) { return a.is_v4() ? "-4" : "-6"; }

HostConfig realize(const HostConfig &tmpl, std::map<uint32_t, uint32_t> *map)
{
	HostConfig h = tmpl;
	std::map<uint32_t, uint32_t> m;
	std::map<uint32_t, std::string> names;
	int i = 0;
	for (auto &ifc : h.interfaces) {
		std::string n = "lgx" + std::to_string(i++);
		sh("ip link add " + n + " address " + mac_str(ifc.mac) + " type veth peer name " + n + "p");
		sh("ip link set " + n + " up && ip link set " + n + "p up");
		uint32_t real = if_nametoindex(n.c_str());
		EXPECT_NE(real, 0u) << n;
		m[ifc.ifindex] = real;
		names[real] = n;
		ifc.ifindex = real;
	}
	for (auto &r : h.routes) {
		r.ifindex = m[r.ifindex];
		std::string cmd = "ip " + family_flag(r.prefix.addr) + " route add " + r.prefix.str() + " dev " + names[r.ifindex];
		if (r.gateway)
			cmd += " via " + r.gateway->str() + " onlink";
		sh(cmd);
	}
	for (auto &n : h.neighbors) {
		n.ifindex = m[n.ifindex];
		sh("ip " + family_flag(n.ip) + " neigh replace " + n.ip.str() + " lladdr " + mac_str(n.mac) +
		   " nud permanent dev " + names[n.ifindex]);
	}
	if (!h.local_addresses.empty() && !h.interfaces.empty())
		for (auto &a : h.local_addresses)
			sh("ip addr add " + a.str() + (a.is_v4() ? "/32" : "/128 nodad") + " dev " +
			   names[h.interfaces[0].ifindex]);
	if (map)
		*map = m;
	return h;
}

std::vector<InterfaceBinding> bindings(const HostConfig &h)
{
	std::vector<InterfaceBinding> b;
	for (auto &i : h.interfaces)
		b.push_back({i.ifindex, i.vnet});
	return b;
}

static uint64_t mono_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

std::unique_ptr<Pair> Pair::make(const HostConfig &host, const EvaluatorConfig &given, const State *initial,
				 bool flow_log)
{
	EvaluatorConfig ecfg = given;
#ifdef LG_WITH_DPDK
	// A 1M-flow rte_hash per test costs seconds of zeroing; no test comes
	// near it, and the ct-full tests set small capacities of their own.
	// All three sides get the same capacity, so that a run that fills the
	// table (a fuzzer's) says ct-full at the same flow everywhere.
	ecfg.flow_capacity = std::min<size_t>(ecfg.flow_capacity, 1u << 16);
#endif
	auto p = std::unique_ptr<Pair>(new Pair());
	p->host_ = host;
	XdpConfig x;
	x.tcp_established_ns = ecfg.tcp_established_ns;
	x.tcp_transient_ns = ecfg.tcp_transient_ns;
	x.tcp_close_ns = ecfg.tcp_close_ns;
	x.udp_ns = ecfg.udp_ns;
	x.icmp_ns = ecfg.icmp_ns;
	x.fragment_ns = ecfg.fragment_ns;
	x.flow_capacity = uint32_t(ecfg.flow_capacity);
	x.frag_capacity = uint32_t(ecfg.frag_capacity);
	x.flow_log = flow_log;
	auto dp = XdpDataplane::load(x);
	if (!dp) {
		ADD_FAILURE() << dp.error();
		return nullptr;
	}
	p->dp_ = std::move(*dp);
	p->ev_ = std::make_unique<Evaluator>(host, ecfg);
	if (auto st = p->dp_->set_local_addresses(host.local_addresses); !st) {
		ADD_FAILURE() << st.error();
		return nullptr;
	}
	// The evaluator starts with an empty generation; so does XDP.
	if (initial) {
		if (auto st = p->ev_->commit(*initial); !st) {
			ADD_FAILURE() << "evaluator refused the state: " << st.error();
			return nullptr;
		}
	}
	auto t = compile(initial ? *initial : State{}, bindings(host), p->ev_->generation());
	if (!t || !p->dp_->publish(*t).ok()) {
		ADD_FAILURE() << "cannot publish the empty generation";
		return nullptr;
	}
#ifdef LG_WITH_DPDK
	dp::EngineConfig dc;
	dc.host = host;
	dc.timeouts = ecfg;
	dc.flow_log = flow_log;
	auto e = dp::Engine::create(dc);
	if (!e) {
		ADD_FAILURE() << "DPDK engine: " << e.error();
		return nullptr;
	}
	p->dpdk_ = std::move(*e);
	p->dpdk_->online(0); // this thread is worker 0
	if (auto st = p->dpdk_->publish(*t); !st) {
		ADD_FAILURE() << "DPDK publish: " << st.error();
		return nullptr;
	}
#endif
	p->tables_ = *t;
	return p;
}

bool Pair::commit(const State &s)
{
	if (auto st = ev_->commit(s); !st) {
		ADD_FAILURE() << "evaluator refused the state: " << st.error();
		return false;
	}
	auto t = compile(s, bindings(host_), ev_->generation());
	if (!t) {
		ADD_FAILURE() << "compile: " << t.error();
		return false;
	}
	if (auto st = dp_->publish(*t); !st) {
		ADD_FAILURE() << "publish: " << st.error();
		return false;
	}
#ifdef LG_WITH_DPDK
	if (auto st = dpdk_->publish(*t); !st) {
		ADD_FAILURE() << "DPDK publish: " << st.error();
		return false;
	}
#endif
	tables_ = std::move(*t);
	return true;
}

uint64_t Pair::now() const { return mono_ns() + offset_; }

void Pair::advance(uint64_t ns)
{
	offset_ += ns;
	dp_->set_time_offset(offset_);
#ifdef LG_WITH_DPDK
	dpdk_->set_time_offset(offset_);
#endif
}

Outcome Pair::run_xdp(const std::vector<uint8_t> &frame, uint32_t ifindex)
{
	Outcome o;
	auto before = dp_->reason_counts();
	std::map<uint32_t, uint64_t> eg;
	for (auto &i : host_.interfaces)
		eg[i.ifindex] = dp_->egress_packets(i.ifindex);
	auto r = dp_->run(frame, ifindex);
	if (!r) {
		ADD_FAILURE() << r.error();
		return o;
	}
	auto after = dp_->reason_counts();
	switch (r->action) {
	case XDP_REDIRECT: o.verdict = LG_VERDICT_FORWARD; break;
	case XDP_TX: o.verdict = LG_VERDICT_TX; break;
	case XDP_PASS: o.verdict = LG_VERDICT_PASS; break;
	case XDP_DROP: o.verdict = LG_VERDICT_DROP; break;
	default: ADD_FAILURE() << "XDP action " << r->action; break;
	}
	int changed = 0;
	for (int i = 0; i < LG_REASON__COUNT; i++)
		if (after[size_t(i)] != before[size_t(i)]) {
			changed++;
			EXPECT_EQ(after[size_t(i)] - before[size_t(i)], 1u) << reason_name(lg_reason(i));
			if (o.verdict == LG_VERDICT_DROP)
				o.reason = lg_reason(i);
			else
				EXPECT_EQ(i, LG_REASON_NONE) << "a packet not dropped counted as " << reason_name(lg_reason(i));
		}
	EXPECT_EQ(changed, 1) << "exactly one reason counter moves per packet";
	for (auto &[ifx, n] : eg)
		if (dp_->egress_packets(ifx) != n)
			o.egress = ifx;
	o.frame = std::move(r->frame);
	return o;
}

Decision Pair::check(const std::vector<uint8_t> &frame, uint32_t ifindex, const std::string &what)
{
	// Counters by name on the evaluator side, by id on the XDP side.
	Counters cb = ev_->counters();
	std::vector<uint64_t> rb, pb, sb;
	for (size_t i = 0; i < tables_.rule_names.size(); i++)
		rb.push_back(dp_->rule_hits(uint32_t(i)));
	for (size_t i = 0; i < tables_.pe_names.size(); i++)
		pb.push_back(dp_->pe_packets(uint32_t(i)));
	for (size_t i = 0; i < tables_.server_names.size(); i++)
		sb.push_back(dp_->server_packets(uint32_t(i)));

	Decision d = ev_->process(frame, ifindex, now());
	Outcome o = run_xdp(frame, ifindex);
	SCOPED_TRACE(what + ": evaluator " + verdict_name(d.verdict) + "/" + reason_name(d.reason) + " at " +
		     stage_name(d.stage) + "\nframe in:\n" + hex(frame));
	EXPECT_STREQ(verdict_name(o.verdict), verdict_name(d.verdict));
	EXPECT_STREQ(reason_name(o.reason), reason_name(d.verdict == LG_VERDICT_DROP ? d.reason : LG_REASON_NONE));
	if (d.verdict != LG_VERDICT_DROP && o.verdict == d.verdict) {
		EXPECT_EQ(o.frame, d.frame) << "xdp:\n" << hex(o.frame) << "\nevaluator:\n" << hex(d.frame);
	}
	if (d.verdict == LG_VERDICT_FORWARD && o.verdict == d.verdict) {
		EXPECT_EQ(o.egress, d.egress_ifindex);
	}

	const Counters &ca = ev_->counters();
	auto delta = [](const std::map<std::string, uint64_t> &a, const std::map<std::string, uint64_t> &b,
			const std::string &k) {
		auto ia = a.find(k), ib = b.find(k);
		return (ia == a.end() ? 0 : ia->second) - (ib == b.end() ? 0 : ib->second);
	};
	for (size_t i = 0; i < tables_.rule_names.size(); i++)
		EXPECT_EQ(dp_->rule_hits(uint32_t(i)) - rb[i], delta(ca.rule_hits, cb.rule_hits, tables_.rule_names[i]))
			<< "rule hits of " << tables_.rule_names[i];
	for (size_t i = 0; i < tables_.pe_names.size(); i++)
		EXPECT_EQ(dp_->pe_packets(uint32_t(i)) - pb[i],
			  delta(ca.private_endpoints, cb.private_endpoints, tables_.pe_names[i]))
			<< "packets of private endpoint " << tables_.pe_names[i];
	for (size_t i = 0; i < tables_.server_names.size(); i++)
		EXPECT_EQ(dp_->server_packets(uint32_t(i)) - sb[i], delta(ca.servers, cb.servers, tables_.server_names[i]))
			<< "packets of server " << tables_.server_names[i];
#ifdef LG_WITH_DPDK
	check_dpdk(frame, ifindex, d, cb);
#endif
	return d;
}

#ifdef LG_WITH_DPDK
Pair::~Pair()
{
	dpdk_.reset();
	rte_mempool_free(pool_);
}

void Pair::check_burst(const std::vector<std::vector<uint8_t>> &frames, uint32_t ifindex, const std::string &what)
{
	if (!pool_) {
		char name[32]; // a pool name is unique in the process
		std::snprintf(name, sizeof name, "lgt_pb_%p", static_cast<void *>(this));
		pool_ = rte_pktmbuf_pool_create(name, 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
		ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
	}
	ASSERT_LE(frames.size(), 128u);
	std::vector<rte_mbuf *> pkts;
	struct Free {
		std::vector<rte_mbuf *> &p;
		~Free()
		{
			for (rte_mbuf *m : p)
				rte_pktmbuf_free(m);
		}
	} free_them{pkts};
	for (auto &f : frames) {
		rte_mbuf *m = rte_pktmbuf_alloc(pool_);
		ASSERT_NE(m, nullptr);
		pkts.push_back(m);
		char *d = f.size() <= UINT16_MAX ? rte_pktmbuf_append(m, uint16_t(f.size())) : nullptr;
		ASSERT_NE(d, nullptr) << "a frame of " << f.size() << " bytes (one mbuf's data room at most)";
		if (!f.empty())
			std::memcpy(d, f.data(), f.size());
	}

	Counters cb = ev_->counters();
	dp::EngineCounters before = dpdk_->counters();
	// The engine adds the offset itself, as XDP does (check_dpdk).
	uint64_t raw = dp::Engine::clock_ns(), t = raw + offset_;
	std::vector<dp::Verdict> v(pkts.size());
	dpdk_->decide_burst(ifindex, pkts.data(), uint16_t(pkts.size()), v.data(), raw);
	dpdk_->quiescent(0);
	dp::EngineCounters after = dpdk_->counters();
	for (size_t k = 0; k < frames.size(); k++) {
		Decision d = ev_->process(frames[k], ifindex, t);
		SCOPED_TRACE(what + ": frame " + std::to_string(k) + " of a burst of " + std::to_string(frames.size()) +
			     ", evaluator " + verdict_name(d.verdict) + "/" + reason_name(d.reason) + "\nframe in:\n" +
			     hex(frames[k]));
		EXPECT_STREQ(verdict_name(v[k].verdict), verdict_name(d.verdict));
		EXPECT_STREQ(reason_name(v[k].reason), reason_name(d.verdict == LG_VERDICT_DROP ? d.reason : LG_REASON_NONE));
		if (d.verdict == LG_VERDICT_FORWARD && v[k].verdict == d.verdict) {
			EXPECT_EQ(v[k].egress, d.egress_ifindex);
		}
		if (d.verdict != LG_VERDICT_DROP && v[k].verdict == d.verdict) {
			const uint8_t *b = rte_pktmbuf_mtod(pkts[k], const uint8_t *);
			std::vector<uint8_t> got(b, b + rte_pktmbuf_data_len(pkts[k]));
			EXPECT_EQ(got, d.frame) << "dpdk:\n" << hex(got) << "\nevaluator:\n" << hex(d.frame);
		}
	}
	SCOPED_TRACE(what + ": the burst's counters");
	const Counters &ca = ev_->counters();
	for (size_t i = 0; i < LG_REASON__COUNT; i++)
		EXPECT_EQ(after.reasons[i] - before.reasons[i], ca.reasons[i] - cb.reasons[i]) << reason_name(lg_reason(i));
	expect_dpdk_object_counts(before, after, cb);
	// The dataplanes count keys halved: a flow to itself (one key) is a
	// half (docs/agent.md, stats).
	EXPECT_EQ(after.flows, ev_->flow_keys() / 2);
}

void Pair::check_dpdk(const std::vector<uint8_t> &frame, uint32_t ifindex, const Decision &d, const Counters &cb)
{
	dp::EngineCounters before = dpdk_->counters();
	std::vector<uint8_t> buf = frame;
	dp::Verdict v = dpdk_->decide(ifindex, buf.data(), uint32_t(buf.size()), dp::Engine::clock_ns());
	dpdk_->quiescent(0);
	dp::EngineCounters after = dpdk_->counters();
	SCOPED_TRACE("DPDK engine");
	EXPECT_STREQ(verdict_name(v.verdict), verdict_name(d.verdict));
	EXPECT_STREQ(reason_name(v.reason), reason_name(d.verdict == LG_VERDICT_DROP ? d.reason : LG_REASON_NONE));
	if (d.verdict != LG_VERDICT_DROP && v.verdict == d.verdict) {
		EXPECT_EQ(buf, d.frame) << "dpdk:\n" << hex(buf) << "\nevaluator:\n" << hex(d.frame);
	}
	if (d.verdict == LG_VERDICT_FORWARD && v.verdict == d.verdict) {
		EXPECT_EQ(v.egress, d.egress_ifindex);
	}
	int moved = 0;
	for (size_t i = 0; i < LG_REASON__COUNT; i++)
		if (after.reasons[i] != before.reasons[i]) {
			moved++;
			EXPECT_EQ(after.reasons[i] - before.reasons[i], 1u) << reason_name(lg_reason(i));
			EXPECT_EQ(i, size_t(v.verdict == LG_VERDICT_DROP ? v.reason : LG_REASON_NONE));
		}
	EXPECT_EQ(moved, 1) << "exactly one reason counter moves per packet";
	expect_dpdk_object_counts(before, after, cb);
}

// The engine's rule, private endpoint and server counters moved from before
// to after as the evaluator's did since cb.
void Pair::expect_dpdk_object_counts(const dp::EngineCounters &before, const dp::EngineCounters &after,
				     const Counters &cb)
{
	const Counters &ca = ev_->counters();
	auto delta = [](const std::map<std::string, uint64_t> &a, const std::map<std::string, uint64_t> &b,
			const std::string &k) {
		auto ia = a.find(k), ib = b.find(k);
		return (ia == a.end() ? 0 : ia->second) - (ib == b.end() ? 0 : ib->second);
	};
	for (auto &n : tables_.rule_names)
		EXPECT_EQ(delta(after.rules, before.rules, n), delta(ca.rule_hits, cb.rule_hits, n)) << "rule hits of " << n;
	for (auto &n : tables_.pe_names)
		EXPECT_EQ(delta(after.private_endpoints, before.private_endpoints, n),
			  delta(ca.private_endpoints, cb.private_endpoints, n))
			<< "packets of private endpoint " << n;
	for (auto &n : tables_.server_names)
		EXPECT_EQ(delta(after.servers, before.servers, n), delta(ca.servers, cb.servers, n))
			<< "packets of server " << n;
}
#endif

} // namespace lg::xdptest
