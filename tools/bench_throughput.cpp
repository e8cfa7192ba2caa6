// linkgate-bench all, section "throughput": packets per second received at
// the far end of a veth path, for linkgate's XDP program and its peers on
// the same rules and traffic, in interleaved rounds (docs/benchmarks.md).
//
//   gen netns            this section's netns (the device under test)         sink netns
//   lg_gen --redirect--> lgb0p ==veth== lgb0 [XDP or kernel+nft] lgb1 ==veth== lgb1p [lg_sink]
//
// The generator is BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on
// lg_gen (tools/lg_traffic.bpf.c), run from the gen namespace. Every figure
// is a ratio to the bare redirect program measured in the same round.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include "bench_common.hpp"
#include "bench_host.hpp"
#include "bench_netns.hpp"
#include "bench_registry.hpp"
#include "bench_rules.hpp"
#include "compiler.hpp"
#include "lg_bare.skel.h"
#include "lg_traffic.skel.h"
#include "lg_xdp.skel.h"
#include "packet.hpp"
#include "table_eval.hpp"
#include "xdp_loader.hpp"

namespace lg::bench {
namespace {

constexpr uint32_t kGenPorts = 60000;    // LG_GEN_PORTS
constexpr uint32_t kSrcBase = 0x0a008001; // 10.0.128.1: subnet "gen" 10.0.128.0/17
constexpr uint64_t kNewBase = 2000000;    // flow numbers of new flows (clear of the established ones)
const Mac kGenMac{0x02, 0, 0, 0, 0x07, 0x01};

uint64_t now_ns()
{
	return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
				std::chrono::steady_clock::now().time_since_epoch())
				.count());
}

struct Opts {
	std::vector<std::string> cases; // substrings; empty: all (bare always runs)
	int flows_max = 1000000;
	std::vector<int> rule_counts{10, 100, 1000};
	int nsgs = 300;
	bool no_xdp_filter = false;
};
Opts g_opts;

// One TCP frame of `size` bytes (Ethernet header on, no FCS), dst:3306.
std::vector<uint8_t> frame(const Mac &dmac, uint32_t dst, size_t size)
{
	auto f = PacketBuilder()
			 .eth(kGenMac, dmac)
			 .ipv4(ip4(kSrcBase), ip4(dst), 64)
			 .tcp(1024, 3306, kTcpAck, 1, 1)
			 .payload(std::vector<uint8_t>(size > 54 ? size - 54 : 0, 0x5a))
			 .build();
	return f;
}

// A linkgate instance: one policy, its own flow table.
struct Lg {
	std::string label;
	int rules = 0;
	std::unique_ptr<XdpDataplane> dp;
	CompiledTables t;
};

enum class Dut { Bare, Linkgate, Kernel, NftLinear, NftSet, XdpFilter, Lru };

struct Case {
	std::string name, group, what;
	Dut dut = Dut::Bare;
	Lg *lg = nullptr;
	std::string nft; // nft -f input
	int rules = 0;
	uint64_t flows = 1000; // cycled established flows
	uint32_t mode = 0;     // LG_GEN_*
	size_t size = 60;
	bool to_pe = false;    // linkgate: to the private endpoint (DNAT'ed); others: to the backend
	std::vector<double> pps, sent, recv, window;
	double last_pps = 0;
	uint64_t new_used = 0; // new-flow numbers taken by earlier samples
};

struct Env {
	Netns gen, sink;
	uint32_t in_if = 0, out_if = 0, gen_if = 0;
	std::string in_name, out_name;
	Mac in_mac{};
	lg_traffic *tr = nullptr;
	lg_bare *bare = nullptr;
	uint32_t pe = 0, backend = 0;
	std::vector<std::string> xf_cmds;
	bool xf_ok = false;
};

Status attach_fd(uint32_t ifindex, int fd)
{
	int e = bpf_xdp_attach(int(ifindex), fd, XDP_FLAGS_DRV_MODE, nullptr);
	if (e)
		return err("XDP attach to ifindex " + std::to_string(ifindex) + ": " + std::strerror(-e));
	return Ok{};
}

Status detach_fd(uint32_t ifindex)
{
	int e = bpf_xdp_detach(int(ifindex), XDP_FLAGS_DRV_MODE, nullptr);
	if (e && e != -ENOENT)
		return err(std::string("XDP detach: ") + std::strerror(-e));
	return Ok{};
}

Status write_text(const std::string &path, const std::string &text)
{
	std::ofstream f(path);
	f << text;
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Status configure(Env &e, Case &c, const std::string &workdir)
{
	switch (c.dut) {
	case Dut::Bare: return attach_fd(e.in_if, bpf_program__fd(e.bare->progs.lg_bare));
	case Dut::Lru: return attach_fd(e.in_if, bpf_program__fd(e.tr->progs.lg_lru));
	case Dut::Linkgate: return c.lg->dp->attach(e.in_if, XDP_FLAGS_DRV_MODE);
	case Dut::Kernel: return attach_fd(e.in_if, bpf_program__fd(e.tr->progs.lg_pass));
	case Dut::NftLinear:
	case Dut::NftSet: {
		if (auto st = attach_fd(e.in_if, bpf_program__fd(e.tr->progs.lg_pass)); !st)
			return st;
		std::string f = workdir + "/rules.nft";
		if (auto st = write_text(f, c.nft); !st)
			return st;
		return sh("nft -f " + f);
	}
	case Dut::XdpFilter: return sh("xdp-filter load -m native -p allow -f tcp,udp,ipv4 " + e.in_name);
	}
	return Ok{};
}

Status unconfigure(Env &e, Case &c)
{
	switch (c.dut) {
	case Dut::Linkgate: return c.lg->dp->detach(e.in_if, XDP_FLAGS_DRV_MODE);
	case Dut::NftLinear:
	case Dut::NftSet:
		if (auto st = sh("nft delete table inet lgbench"); !st)
			return st;
		return detach_fd(e.in_if);
	case Dut::XdpFilter: return sh("xdp-filter unload " + e.in_name);
	default: return detach_fd(e.in_if);
	}
}

uint64_t sink_count(Env &e)
{
	int n = libbpf_num_possible_cpus();
	std::vector<uint64_t> v(size_t(n > 0 ? n : 1));
	uint32_t z = 0;
	if (bpf_map__lookup_elem(e.tr->maps.sink_cnt, &z, sizeof z, v.data(), v.size() * sizeof(uint64_t), 0))
		return 0;
	uint64_t s = 0;
	for (auto x : v)
		s += x;
	return s;
}

// Remove every flow of a linkgate instance (new-flow cases start empty):
// collect the keys in one pass, delete them in batches.
void clear_flows(XdpDataplane &dp)
{
	int fd = bpf_map__fd(dp.skeleton()->maps.lg_flows);
	std::vector<lg_flow_key> keys;
	lg_flow_key cur{}, next{};
	bool first = true;
	while (bpf_map_get_next_key(fd, first ? nullptr : &cur, &next) == 0) {
		keys.push_back(next);
		cur = next;
		first = false;
	}
	for (size_t i = 0; i < keys.size(); i += 8192) {
		uint32_t cnt = uint32_t(std::min<size_t>(8192, keys.size() - i));
		LIBBPF_OPTS(bpf_map_batch_opts, bo);
		if (bpf_map_delete_batch(fd, &keys[i], &cnt, &bo))
			for (size_t j = i; j < i + std::min<size_t>(8192, keys.size() - i); j++)
				bpf_map_delete_elem(fd, &keys[j]);
	}
}

// One sample: one live-frames test run of `frames` frames (one call: each
// call costs tens of ms of set-up and tear-down on this kernel, so the rate
// is taken between the first and the last frame at the sink).
struct SampleOut {
	double pps = 0, sent = 0, recv = 0, window_s = 0;
};

Result<SampleOut> sample(Env &e, Case &c, uint64_t frames)
{
	auto fr = frame(e.in_mac, c.to_pe ? e.pe : e.backend, c.size);
	auto *bss = e.tr->bss;
	bss->gen_ifindex = e.gen_if;
	bss->gen_mode = c.mode;
	bss->gen_flows = c.flows;
	bss->gen_next = 0;
	// New flows never repeat across samples (the mix and the LRU table keep
	// what earlier samples inserted).
	bss->gen_new_base = kNewBase + c.new_used;
	c.new_used += frames;
	bss->gen_new_next = 0;
	bss->gen_src_base = kSrcBase;
	std::memcpy(bss->gen_hdr, fr.data(), 54);
	int fd = bpf_program__fd(e.tr->progs.lg_gen);
	uint64_t r0 = sink_count(e);
	bss->sink_first = 0;
	bss->sink_last = 0;
	Status st = e.gen.enter([&]() -> Status {
		std::vector<uint8_t> in = fr;
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_size_in = uint32_t(in.size()),
			    .repeat = int(frames), .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);
		uint64_t a = now_ns();
		int r = bpf_prog_test_run_opts(fd, &o);
		if (getenv("LG_BENCH_DEBUG"))
			std::fprintf(stderr, "  call: %lu frames in %.3f ms\n", (unsigned long)frames, double(now_ns() - a) / 1e6);
		if (r)
			return err(std::string("live-frames test run: ") + std::strerror(-r));
		return Ok{};
	});
	if (!st)
		return err(st.error());
	usleep(5000); // frames still in the veth rings
	uint64_t r1 = sink_count(e);
	SampleOut so;
	so.sent = double(frames);
	so.recv = double(r1 - r0);
	so.window_s = double(bss->sink_last - bss->sink_first) / 1e9;
	if (so.recv > 1 && so.window_s > 0)
		so.pps = (so.recv - 1) / so.window_s;
	if (getenv("LG_BENCH_DEBUG"))
		std::fprintf(stderr, "%s: sent %lu received %lu window %.3f s\n", c.name.c_str(), (unsigned long)frames,
			     (unsigned long)(r1 - r0), so.window_s);
	return so;
}

// Establish flow 0 for real (SYN from the client, SYN-ACK from the
// backend, the client's ACK), then copy it to flows 1..n-1 (same entry, the client address
// and port of flow i): what n established connections leave in the table.
Status make_flows(Env &e, Lg &lg, uint64_t n)
{
	auto syn = PacketBuilder()
			   .eth(kGenMac, e.in_mac)
			   .ipv4(ip4(kSrcBase), ip4(e.pe), 64)
			   .tcp(1024, 3306, kTcpSyn, 1000, 0)
			   .build();
	auto r = lg.dp->run(syn, e.in_if);
	if (!r)
		return err(r.error());
	if (r->action != XDP_REDIRECT)
		return err(lg.label + ": the SYN of the measured flows was not forwarded (action " +
			   std::to_string(r->action) + ")");
	auto fl = lg.dp->flows();
	if (fl.size() != 1)
		return err(lg.label + ": expected one flow after the SYN");
	Addr be;
	std::memcpy(be.b.data(), fl[0].nat_addr, 16);
	uint16_t be_port = ntohs(fl[0].nat_port);
	auto synack = PacketBuilder()
			      .eth(kGenMac, e.in_mac)
			      .ipv4(be.str(), ip4(kSrcBase), 64)
			      .tcp(be_port, 1024, kTcpSyn | kTcpAck, 5000, 1001)
			      .build();
	r = lg.dp->run(synack, e.out_if);
	if (!r)
		return err(r.error());
	auto ack = PacketBuilder()
			   .eth(kGenMac, e.in_mac)
			   .ipv4(ip4(kSrcBase), ip4(e.pe), 64)
			   .tcp(1024, 3306, kTcpAck, 1001, 5001)
			   .build();
	r = lg.dp->run(ack, e.in_if);
	if (!r)
		return err(r.error());
	int fd = bpf_map__fd(lg.dp->skeleton()->maps.lg_flows);
	lg_flow_key cur{}, k{}, ko{}, kr{};
	lg_flow_entry eo{}, er{};
	int found = 0;
	for (bool first = true; bpf_map_get_next_key(fd, first ? nullptr : &cur, &k) == 0; first = false) {
		lg_flow_entry v{};
		if (bpf_map_lookup_elem(fd, &k, &v) == 0) {
			if (v.flags & LG_FLOW_F_REPLY)
				kr = k, er = v;
			else
				ko = k, eo = v;
			found++;
		}
		cur = k;
	}
	if (found != 2 || eo.state != LG_CT_ESTABLISHED)
		return err(lg.label + ": the template flow is not established (" + std::to_string(found) + " keys)");
	if (std::memcmp(kr.dst, ko.src, 16) != 0 || kr.dport != ko.sport)
		return err(lg.label + ": unexpected reply key layout");
	std::vector<lg_flow_key> keys;
	std::vector<lg_flow_entry> vals;
	auto flush = [&]() -> Status {
		for (size_t i = 0; i < keys.size(); i += 8192) {
			uint32_t cnt = uint32_t(std::min<size_t>(8192, keys.size() - i));
			LIBBPF_OPTS(bpf_map_batch_opts, bo);
			if (bpf_map_update_batch(fd, &keys[i], &vals[i], &cnt, &bo))
				return err(std::string("cannot fill the flow table: ") + std::strerror(errno));
		}
		keys.clear();
		vals.clear();
		return Ok{};
	};
	for (uint64_t f = 1; f < n; f++) {
		uint32_t a = htonl(kSrcBase + uint32_t(f / kGenPorts));
		uint16_t p = htons(uint16_t(1024 + f % kGenPorts));
		lg_flow_key o = ko, rk = kr;
		std::memcpy(&o.src[12], &a, 4);
		o.sport = p;
		std::memcpy(&rk.dst[12], &a, 4);
		rk.dport = p;
		lg_flow_entry v1 = eo, v2 = er;
		v1.orig = o;
		v2.orig = o;
		v1.expires_ns = v2.expires_ns = ~0ull >> 2;
		keys.push_back(o);
		vals.push_back(v1);
		keys.push_back(rk);
		vals.push_back(v2);
		if (keys.size() >= 262144)
			if (auto st = flush(); !st)
				return st;
	}
	if (auto st = flush(); !st)
		return st;
	if (lg.dp->flow_entries() != 2 * n)
		return err(lg.label + ": " + std::to_string(lg.dp->flow_entries()) + " keys in the flow table, expected " +
			   std::to_string(2 * n));
	return Ok{};
}

Result<nlohmann::json> run_throughput(const RunContext &ctx)
{
	auto &P = ctx.progress;
	nlohmann::json out;
	std::vector<int> rule_counts = ctx.quick ? std::vector<int>{10, 100} : g_opts.rule_counts;
	int big_rules = rule_counts.back();
	std::vector<uint64_t> flow_counts = ctx.quick ? std::vector<uint64_t>{1000, 10000}
						      : std::vector<uint64_t>{1000, 100000, uint64_t(g_opts.flows_max)};
	int nsgs = ctx.quick ? 20 : g_opts.nsgs;

	// Rules: the ClassBench set, minus what would match the traffic.
	P("loading rules from " + ctx.classbench);
	auto base = classbench_policy({CbRule{0x01020300, 0, 24, 0}}, 1000, ctx.seed);
	const auto &pe_obj = base.state.privateEndpoints.at(0);
	TrafficBox box;
	box.src_lo = 0x0a008000;
	box.src_hi = 0x0a00ffff;
	uint32_t pe = Addr::parse(pe_obj.privateIPAddress)->v4();
	uint32_t backend = 0;
	for (auto &b : base.state.servers.at(0).backends)
		if (auto a = Addr::parse(b.address); a && a->is_v4()) {
			box.dsts.push_back(a->v4());
			if (!backend)
				backend = a->v4();
		}
	box.dsts.push_back(pe);
	auto rs = load_classbench(ctx.classbench, big_rules + nsgs * 5, box);
	if (!rs)
		return err(rs.error());
	std::vector<CbRule> all = rs->rules;
	auto first = [&](int n) { return std::vector<CbRule>(all.begin(), all.begin() + n); };
	std::vector<CbRule> others(all.begin() + big_rules, all.end());
	out["rules"] = {{"source", rs->source},
			{"skipped_matching_traffic", rs->skipped_match},
			{"skipped_protocol", rs->skipped_proto}};

	// The host: lgb0 carries the VNet, lgb1 the backend side.
	Env e;
	auto g = Netns::create();
	if (!g)
		return err(g.error());
	e.gen = std::move(*g);
	auto s = Netns::create();
	if (!s)
		return err(s.error());
	e.sink = std::move(*s);
	auto host = realize(base.host);
	if (!host)
		return err(host.error());
	e.in_if = host->interfaces[0].ifindex;
	e.out_if = host->interfaces[1].ifindex;
	e.in_mac = host->interfaces[0].mac;
	char n0[IF_NAMESIZE] = {}, n1[IF_NAMESIZE] = {};
	if_indextoname(e.in_if, n0);
	if_indextoname(e.out_if, n1);
	e.in_name = n0;
	e.out_name = n1;
	e.pe = pe;
	e.backend = backend;
	for (auto &cmd : {"ip link set " + e.in_name + "p netns " + std::to_string(e.gen.pid()),
			  "ip link set " + e.out_name + "p netns " + std::to_string(e.sink.pid())})
		if (auto st = sh(cmd); !st)
			return err(st.error());
	if (auto st = e.gen.sh("ip link set " + e.in_name + "p up"); !st)
		return err(st.error());
	if (auto st = e.sink.sh("ip link set " + e.out_name + "p up"); !st)
		return err(st.error());
	for (uint32_t b : box.dsts)
		if (b != pe)
			if (auto st = sh("ip neigh replace " + ip4(b) + " lladdr 02:00:00:00:08:01 nud permanent dev " +
					 e.out_name);
			    !st)
				return err(st.error());
	if (auto st = sh("ip neigh replace " + ip4(kSrcBase) + " lladdr " + mac_str(kGenMac) + " nud permanent dev " +
			 e.in_name);
	    !st)
		return err(st.error());

	// Programs: generator, sink, pass, LRU baseline; bare redirect.
	e.tr = lg_traffic__open();
	if (!e.tr)
		return err("cannot open lg_traffic");
	std::unique_ptr<lg_traffic, void (*)(lg_traffic *)> tr_own(e.tr, lg_traffic__destroy);
	bpf_map__set_max_entries(e.tr->maps.lru_flows, 1u << 20);
	if (lg_traffic__load(e.tr))
		return err("the kernel refused tools/lg_traffic.bpf.c");
	e.bare = lg_bare__open_and_load();
	if (!e.bare)
		return err("cannot load lg_bare");
	std::unique_ptr<lg_bare, void (*)(lg_bare *)> bare_own(e.bare, lg_bare__destroy);
	Status st = e.sink.enter([&]() -> Status {
		uint32_t i = if_nametoindex((e.out_name + "p").c_str());
		return attach_fd(i, bpf_program__fd(e.tr->progs.lg_sink));
	});
	if (!st)
		return err(st.error());
	st = e.gen.enter([&]() -> Status {
		e.gen_if = if_nametoindex((e.in_name + "p").c_str());
		return e.gen_if ? Status(Ok{}) : err("no generator veth");
	});
	if (!st)
		return err(st.error());

	// linkgate instances.
	std::vector<InterfaceBinding> binds = {{e.in_if, "scale", e.in_mac}, {e.out_if, "", host->interfaces[1].mac}};
	std::vector<std::unique_ptr<Lg>> lgs;
	auto add_lg = [&](const std::string &label, testing::RandomPolicy pol, uint32_t capacity,
			  int rules) -> Result<Lg *> {
		P("compiling and loading linkgate: " + label);
		auto l = std::make_unique<Lg>();
		l->label = label;
		l->rules = rules;
		auto t = compile(pol.state, binds, 1);
		if (!t)
			return err("compile " + label + ": " + t.error());
		l->t = std::move(*t);
		XdpConfig xc;
		xc.flow_capacity = capacity;
		auto dp = XdpDataplane::load(xc);
		if (!dp)
			return err(dp.error());
		l->dp = std::move(*dp);
		if (auto p = l->dp->publish(l->t); !p)
			return err("publish " + label + ": " + p.error());
		lgs.push_back(std::move(l));
		return lgs.back().get();
	};
	const uint32_t new_cap = ctx.quick ? 200000 : 1000000;
	std::map<int, Lg *> lg_new;
	for (int n : rule_counts) {
		auto l = add_lg(std::to_string(n) + " rules, new flows", classbench_policy(first(n), 1000, ctx.seed), new_cap, n);
		if (!l)
			return err(l.error());
		lg_new[n] = *l;
	}
	auto l_nsg = add_lg(std::to_string(big_rules) + " rules + " + std::to_string(nsgs) + " NSGs, new flows",
			    classbench_policy(first(big_rules), 1000, ctx.seed, nsgs, others), new_cap, big_rules);
	if (!l_nsg)
		return err(l_nsg.error());
	std::map<uint64_t, Lg *> lg_est;
	for (uint64_t n : flow_counts) {
		auto l = add_lg(std::to_string(big_rules) + " rules, " + std::to_string(n) + " flows",
				classbench_policy(first(big_rules), 1000, ctx.seed), uint32_t(n + 16), big_rules);
		if (!l)
			return err(l.error());
		P("establishing " + std::to_string(n) + " flows");
		if (auto st2 = make_flows(e, **l, n); !st2)
			return err(st2.error());
		lg_est[n] = *l;
	}
	// The mix: half new flows, half over 1,000 established ones.
	auto l_mix = add_lg(std::to_string(big_rules) + " rules, mix", classbench_policy(first(big_rules), 1000, ctx.seed),
			    new_cap, big_rules);
	if (!l_mix)
		return err(l_mix.error());
	if (auto st2 = make_flows(e, **l_mix, 1000); !st2)
		return err(st2.error());

	// xdp-filter: the single-field projections of the deny rules. Kept
	// loaded on a spare veth so that its maps survive between rounds.
	if (!g_opts.no_xdp_filter) {
		e.xf_cmds = xdp_filter_cmds(first(big_rules), box);
		P("loading xdp-filter (" + std::to_string(e.xf_cmds.size()) + " single-field rules)");
		auto x = sh("ip link add lgbx type veth peer name lgbxp && ip link set lgbx up && ip link set lgbxp up && "
			    "xdp-filter load -m native -p allow -f tcp,udp,ipv4 lgbx");
		e.xf_ok = bool(x);
		if (x) {
			std::string batch;
			for (size_t i = 0; i < e.xf_cmds.size() && e.xf_ok; i++)
				if (auto y = sh("xdp-filter " + e.xf_cmds[i]); !y) {
					e.xf_ok = false;
					out["xdp_filter_error"] = y.error();
				}
		} else {
			out["xdp_filter_error"] = x.error();
		}
	}

	// The cases.
	std::vector<Case> cases;
	auto add = [&](Case c) { cases.push_back(std::move(c)); };
	std::string bn = std::to_string(big_rules);
	uint64_t est_flows = flow_counts.front();
	for (size_t size : {size_t(60), size_t(508)}) {
		std::string sz = size == 60 ? "64B" : "512B";
		Case c;
		c.size = size;
		c.group = "established " + sz;
		c.flows = est_flows;
		c.name = "bare/" + sz;
		c.dut = Dut::Bare;
		c.what = "lg_bare: fib lookup, TTL, MACs, redirect (the baseline)";
		add(c);
		c.name = "linkgate/" + sz;
		c.dut = Dut::Linkgate;
		c.lg = lg_est[est_flows];
		c.to_pe = true;
		c.rules = big_rules;
		c.what = "lg_xdp, " + bn + " rules, ACKs of " + std::to_string(est_flows) + " established flows (DNAT)";
		add(c);
		c.to_pe = false;
		c.lg = nullptr;
		c.name = "kernel/" + sz;
		c.dut = Dut::Kernel;
		c.rules = 0;
		c.what = "XDP_PASS, kernel forwarding, no nftables rule";
		add(c);
		c.name = "nft-linear-" + bn + "/" + sz;
		c.dut = Dut::NftLinear;
		c.rules = big_rules;
		c.nft = nft_linear(first(big_rules), "lgbench");
		c.what = "kernel forwarding, nftables forward chain of " + bn + " rules (stateless, no match: all walked)";
		add(c);
	}
	for (int n : rule_counts) {
		std::string rn = std::to_string(n);
		Case c;
		c.group = "rules";
		c.flows = est_flows;
		c.rules = n;
		if (n != big_rules) {
			c.name = "nft-linear-" + rn + "/64B";
			c.dut = Dut::NftLinear;
			c.nft = nft_linear(first(n), "lgbench");
			c.what = "nftables forward chain of " + rn + " rules";
			add(c);
		}
		int kept = 0;
		c.name = "nft-set-" + rn + "/64B";
		c.dut = Dut::NftSet;
		c.nft = nft_set(first(n), "lgbench", &kept);
		c.what = "nftables concatenated interval set of the deny rules (" + std::to_string(kept) + " elements kept of " +
			 rn + " rules)";
		add(c);
		c.name = "linkgate-new-" + rn + "/64B";
		c.dut = Dut::Linkgate;
		c.lg = lg_new[n];
		c.to_pe = true;
		c.mode = 1;
		c.what = "lg_xdp, " + rn + " rules, every packet a new flow (SYN): decision, Maglev, flow insert, DNAT";
		add(c);
	}
	{
		Case c;
		c.group = "new flows";
		c.name = "lru-insert/64B";
		c.dut = Dut::Lru;
		c.mode = 1;
		c.what = "bare program + one LRU-hash insert per packet, every packet a new flow";
		add(c);
		c.name = "linkgate-new-" + bn + "-nsg" + std::to_string(nsgs) + "/64B";
		c.dut = Dut::Linkgate;
		c.lg = *l_nsg;
		c.to_pe = true;
		c.rules = big_rules;
		c.what = "lg_xdp, " + bn + " rules + " + std::to_string(nsgs) + " more NSGs (5 rules each), new flows";
		add(c);
		c.name = "linkgate-mix-" + bn + "/64B";
		c.lg = *l_mix;
		c.mode = 2;
		c.flows = 1000;
		c.what = "lg_xdp, " + bn + " rules, half new flows, half ACKs of 1,000 established flows";
		add(c);
	}
	for (uint64_t n : flow_counts) {
		if (n == est_flows)
			continue;
		Case c;
		c.group = "flows";
		c.name = "linkgate-flows-" + std::to_string(n) + "/64B";
		c.dut = Dut::Linkgate;
		c.lg = lg_est[n];
		c.flows = n;
		c.to_pe = true;
		c.rules = big_rules;
		c.what = "lg_xdp, ACKs cycling over " + std::to_string(n) + " established flows (table capacity " +
			 std::to_string(n) + ")";
		add(c);
	}
	if (e.xf_ok) {
		Case c;
		c.group = "established 64B";
		c.name = "xdp-filter/64B";
		c.dut = Dut::XdpFilter;
		c.rules = int(e.xf_cmds.size());
		c.what = "xdp-filter (allow policy) with " + std::to_string(e.xf_cmds.size()) +
			 " single-field deny entries projected from the " + bn + " rules, then kernel forwarding";
		add(c);
	}

	if (!g_opts.cases.empty())
		std::erase_if(cases, [](const Case &c) {
			if (c.name.rfind("bare/", 0) == 0)
				return false;
			for (auto &w : g_opts.cases)
				if (c.name.find(w) != std::string::npos)
					return false;
			return true;
		});

	// Rounds: every case once per round, order rotated.
	int rounds = ctx.rounds;
	for (int r = 0; r < rounds + 1; r++) { // round 0: warm-up, not counted
		for (size_t i = 0; i < cases.size(); i++) {
			Case &c = cases[(i + size_t(r)) % cases.size()];
			P("round " + std::to_string(r) + "/" + std::to_string(rounds) + (r == 0 ? " (warm-up)" : "") + ": " +
			  c.name);
			if (c.lg && c.mode == 1)
				clear_flows(*c.lg->dp);
			if (auto st2 = configure(e, c, ctx.workdir); !st2)
				return err(c.name + ": " + st2.error());
			// Frames for about sample_s seconds at the rate of the case's last sample.
			uint64_t frames = r == 0 || c.last_pps <= 0
						  ? (ctx.quick ? 2000 : 20000)
						  : uint64_t(std::clamp(c.last_pps * ctx.sample_s, 1000.0, 2e7));
			auto smp = sample(e, c, frames);
			auto un = unconfigure(e, c);
			if (!smp)
				return err(c.name + ": " + smp.error());
			if (!un)
				return err(c.name + ": " + un.error());
			c.last_pps = smp->pps;
			if (r > 0) {
				c.pps.push_back(smp->pps);
				c.sent.push_back(smp->sent);
				c.recv.push_back(smp->recv);
				c.window.push_back(smp->window_s);
			}
		}
	}
	if (e.xf_ok)
		(void)sh("xdp-filter unload lgbx");

	auto find = [&](const std::string &n) -> Case * {
		for (auto &c : cases)
			if (c.name == n)
				return &c;
		return nullptr;
	};
	auto ratio = [&](const Case &a, const Case &b) {
		std::vector<double> v;
		for (size_t i = 0; i < a.pps.size() && i < b.pps.size(); i++)
			v.push_back(b.pps[i] > 0 ? a.pps[i] / b.pps[i] : 0);
		return v;
	};
	nlohmann::json jc = nlohmann::json::array();
	for (auto &c : cases) {
		std::string sz = c.size == 60 ? "64B" : "512B";
		Case *b = find("bare/" + sz);
		double loss = 0, sent = 0;
		for (size_t i = 0; i < c.sent.size(); i++)
			loss += c.sent[i] - c.recv[i], sent += c.sent[i];
		jc.push_back({{"name", c.name},
			      {"group", c.group},
			      {"what", c.what},
			      {"frame_bytes", c.size + 4},
			      {"rules", c.rules},
			      {"flows", c.mode == 1 ? 0 : c.flows},
			      {"traffic", c.mode == 0 ? "established" : c.mode == 1 ? "new" : "mix"},
			      {"pps", c.pps},
			      {"pps_spread", Spread::of(c.pps).json()},
			      {"not_received_share", sent > 0 ? loss / sent : 0},
			      {"frames_per_sample", c.sent},
			      {"window_s", c.window},
			      {"ratio_to_bare", Spread::of(ratio(c, *b)).json()},
			      {"ratio_to_bare_per_round", ratio(c, *b)}});
	}
	out["cases"] = jc;
	out["baseline"] = "bare/64B (bare/512B for 512-byte frames), same round";
	nlohmann::json ratios = nlohmann::json::array(), targets = nlohmann::json::array();
	auto add_ratio = [&](const std::string &name, const std::string &a, const std::string &b, const std::string &what,
			     double target, bool ge) {
		Case *ca = find(a), *cb = find(b);
		if (!ca || !cb)
			return;
		auto v = ratio(*ca, *cb);
		Spread sp = Spread::of(v);
		nlohmann::json j = {{"name", name}, {"what", what}, {"per_round", v}, {"spread", sp.json()}};
		ratios.push_back(j);
		if (target > 0) {
			j["target"] = target;
			j["op"] = ge ? ">=" : "<=";
			j["met_median"] = ge ? sp.median >= target : sp.median <= target;
			j["met_every_round"] = ge ? sp.min >= target : sp.max <= target;
			targets.push_back(j);
		}
	};
	// Decision time alone: the per-packet time a case adds to its own path's
	// baseline (linkgate over the bare redirect, nftables over plain kernel
	// forwarding), per round; nftables' over linkgate's.
	auto add_extra = [&](const std::string &name, const std::string &lgc, const std::string &lgb,
			     const std::string &nf, const std::string &nfb, double target) {
		Case *a = find(lgc), *ab = find(lgb), *b = find(nf), *bb = find(nfb);
		if (!a || !ab || !b || !bb)
			return;
		std::vector<double> v;
		for (size_t i = 0; i < a->pps.size(); i++) {
			double lx = 1 / a->pps[i] - 1 / ab->pps[i], nx = 1 / b->pps[i] - 1 / bb->pps[i];
			v.push_back(lx > 0 ? nx / lx : 0);
		}
		Spread sp = Spread::of(v);
		nlohmann::json j = {{"name", name},
				    {"what", "(1/pps(" + nf + ") - 1/pps(" + nfb + ")) / (1/pps(" + lgc + ") - 1/pps(" + lgb +
						 ")): time per packet each adds to its own path"},
				    {"per_round", v},
				    {"spread", sp.json()}};
		ratios.push_back(j);
		if (target > 0) {
			j["target"] = target;
			j["op"] = ">=";
			j["met_median"] = sp.median >= target;
			j["met_every_round"] = sp.min >= target;
			targets.push_back(j);
		}
	};
	add_extra("XDP decision time vs nftables linear, " + bn + " rules (added time per packet)",
		  "linkgate-new-" + bn + "/64B", "bare/64B", "nft-linear-" + bn + "/64B", "kernel/64B", 50);
	add_extra("XDP decision time vs nftables set, " + bn + " rules (added time per packet)",
		  "linkgate-new-" + bn + "/64B", "bare/64B", "nft-set-" + bn + "/64B", "kernel/64B", 0);
	std::string rs0 = std::to_string(rule_counts.front());
	add_ratio("XDP established / bare redirect (throughput, 64B)", "linkgate/64B", "bare/64B",
		  "linkgate established-flow packets/s over the bare redirect program's", 0.7, true);
	add_ratio("XDP established / bare redirect (throughput, 512B)", "linkgate/512B", "bare/512B", "the same, 512-byte frames",
		  0, true);
	add_ratio("XDP decision " + bn + " rules / nftables linear " + bn + " rules", "linkgate-new-" + bn + "/64B",
		  "nft-linear-" + bn + "/64B", "new-flow packets/s (every packet decided) over nftables' packets/s", 50, true);
	add_ratio("XDP decision " + bn + " rules / nftables set " + bn + " rules", "linkgate-new-" + bn + "/64B",
		  "nft-set-" + bn + "/64B", "the same against the interval set", 0, true);
	add_ratio("cost per new flow, " + bn + " rules / " + rs0 + " rules (throughput)", "linkgate-new-" + rs0 + "/64B",
		  "linkgate-new-" + bn + "/64B", "packets/s at " + rs0 + " rules over packets/s at " + bn + " rules", 1.5,
		  false);
	add_ratio("new flows/s: linkgate / LRU insert", "linkgate-new-" + bn + "/64B", "lru-insert/64B",
		  "linkgate new flows per second over a bare program that only inserts into an LRU hash", 0, true);
	add_ratio(std::to_string(nsgs) + " more NSGs / none (new flows)", "linkgate-new-" + bn + "-nsg" + std::to_string(nsgs) + "/64B",
		  "linkgate-new-" + bn + "/64B", "new-flow throughput with hundreds of NSGs in the policy", 0, true);
	add_ratio("flows " + std::to_string(flow_counts.back()) + " / " + std::to_string(flow_counts.front()),
		  "linkgate-flows-" + std::to_string(flow_counts.back()) + "/64B", "linkgate/64B",
		  "established throughput cycling over many flows vs 1,000", 0, true);
	add_ratio("xdp-filter / kernel forwarding", "xdp-filter/64B", "kernel/64B", "", 0, true);
	add_ratio("nftables linear " + bn + " / kernel forwarding", "nft-linear-" + bn + "/64B", "kernel/64B", "", 0, true);
	out["ratios"] = ratios;
	out["targets"] = targets;
	out["params"] = {{"rounds", rounds}, {"sample_s", ctx.sample_s}, {"rule_counts", rule_counts},
			 {"flow_counts", flow_counts}, {"nsgs", nsgs}, {"xdp_filter_entries", e.xf_cmds.size()}};
	return out;
}

LG_BENCH_SECTION(Section{"throughput",
			 "packets/s through a veth path: linkgate, bare redirect, kernel + nftables, xdp-filter; rules, "
			 "flows, new flows",
			 [](CLI::App &a) {
				 a.add_option("--max-flows", g_opts.flows_max, "throughput: largest established flow count")
					 ->check(CLI::Range(10000, 4000000));
				 a.add_option("--nsgs", g_opts.nsgs, "throughput: extra NSGs of the hundreds-of-NSGs policy")
					 ->check(CLI::Range(1, 1000));
				 a.add_flag("--no-xdp-filter", g_opts.no_xdp_filter, "throughput: leave xdp-filter out");
				 a.add_option("--cases", g_opts.cases,
					      "throughput: only the cases whose names contain one of these (bare always runs; for profiling)");
			 },
			 run_throughput, true, 20});

} // namespace
} // namespace lg::bench
