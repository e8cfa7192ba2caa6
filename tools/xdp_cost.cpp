#include "xdp_cost.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include "bench_common.hpp"
#include "bench_host.hpp"
#include "compiler.hpp"
#include "lg_bare.skel.h"
#include "lg_bench.skel.h"
#include "lg_xdp.skel.h"
#include "packet.hpp"
#include "random_policy.hpp"
#include "table_eval.hpp"
#include "xdp_loader.hpp"

namespace lg::bench {

CLI::App *add_xdp_cost(CLI::App &app, XdpCostOptions &o)
{
	auto *c = app.add_subcommand("xdp-cost",
				     "ns/packet of the XDP program (BPF_PROG_TEST_RUN) beside a bare forwarding program");
	c->add_option("--repeat", o.repeat, "BPF_PROG_TEST_RUN iterations per sample")->check(CLI::Range(1u, 100000000u));
	c->add_option("--rounds", o.rounds, "samples per case (cases interleaved, order rotated each round)")
		->check(CLI::Range(1, 1000));
	c->add_option("--warmup", o.warmup, "uncounted rounds first")->check(CLI::Range(0, 100));
	c->add_option("--flows", o.flows, "flow-table capacity; filled before measuring")
		->check(CLI::Range(1u, 10000000u));
	c->add_option("--big-rules", o.big_rules, "custom rules of the large NSG")->check(CLI::Range(2, 1000));
	c->add_option("--big-prefixes", o.big_prefixes, "prefixes of the large NSG's service tag")
		->check(CLI::Range(1, 100000));
	c->add_option("--small-rules", o.small_rules, "custom rules of the small NSG")->check(CLI::Range(2, 1000));
	c->add_option("--small-prefixes", o.small_prefixes, "prefixes of the small NSG's service tag")
		->check(CLI::Range(1, 100000));
	c->add_option("--seed", o.seed, "policy seed (tests/random_policy.hpp scale_policy)");
	c->add_option("--json", o.json_path, "write the results as JSON here");
	c->add_option("--only", o.only, "measure only these cases (the nop cases always run; for profiling)");
	c->add_flag("-q,--quiet", o.quiet, "no progress on stderr");
	return c;
}

namespace {

// Mirrors struct lg_bench_frame of tools/lg_bench.bpf.c (size checked at load).
struct BenchFrame {
	uint32_t len;
	uint8_t data[256];
};

const Mac kClientMac{0x02, 0, 0, 0, 0x01, 0x01};
const Mac kBackendMac{0x02, 0, 0, 0, 0x02, 0x01};

uint64_t mono_ns()
{
	return uint64_t(
		std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
			.count());
}

struct Sample {
	double kernel_ns = 0; // BPF_PROG_TEST_RUN's duration: loop time / repeat, whole ns
	double wall_ns = 0;   // the syscall's wall time / repeat (includes preemption)
	uint32_t retval = 0;  // action of the last iteration
};

Result<Sample> test_run(int fd, const std::vector<uint8_t> &frame, uint32_t ifindex, uint32_t repeat,
			std::vector<uint8_t> *out = nullptr)
{
	std::vector<uint8_t> in = frame, o(frame.size() + 256);
	xdp_md ctx{};
	ctx.ingress_ifindex = ifindex;
	// The whole frame linear, as a NIC delivers a small frame: data_end 0
	// would leave the test run a zero-length head.
	ctx.data_end = uint32_t(frame.size());
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = o.data(),
		    .data_size_in = uint32_t(in.size()), .data_size_out = uint32_t(o.size()), .ctx_in = &ctx,
		    .ctx_size_in = sizeof ctx, .repeat = int(repeat));
	uint64_t t0 = mono_ns();
	int e = bpf_prog_test_run_opts(fd, &opts);
	uint64_t t1 = mono_ns();
	if (e)
		return err(std::string("BPF_PROG_TEST_RUN: ") + std::strerror(-e));
	if (out) {
		o.resize(opts.data_size_out);
		*out = std::move(o);
	}
	return Sample{double(opts.duration), double(t1 - t0) / repeat, opts.retval};
}

const char *action_name(uint32_t a)
{
	switch (a) {
	case XDP_ABORTED: return "XDP_ABORTED";
	case XDP_DROP: return "XDP_DROP";
	case XDP_PASS: return "XDP_PASS";
	case XDP_TX: return "XDP_TX";
	case XDP_REDIRECT: return "XDP_REDIRECT";
	default: return "?";
	}
}

// One scale_policy() generation loaded into its own lg_xdp instance.
struct PolicyBench {
	std::string label;
	int rules = 0, prefixes = 0;
	testing::RandomPolicy pol;
	CompiledTables t;
	std::unique_ptr<XdpDataplane> dp;
	uint32_t vni = 0;
	Addr pe;
	std::vector<std::string> neutralised; // rules turned to Esp (see worst_case)
};

struct Tuple4 {
	Addr src, dst;
	uint16_t sport = 0, dport = 0;
	TeResult r{};
	long score = -1;
	std::string how; // stage and deciding rule, for the report
};

TePacket te_packet(const PolicyBench &p, const Tuple4 &c, uint32_t egress)
{
	TePacket k{};
	k.vni = p.vni;
	std::memcpy(k.src, c.src.b.data(), 16);
	std::memcpy(k.dst, c.dst.b.data(), 16);
	k.proto = kProtoTcp;
	k.has_ports = 1;
	k.sport = c.sport;
	k.dport = c.dport;
	k.egress_ifindex = egress;
	return k;
}

// NSG levels on the path to the private endpoint and how deep in each
// the first match lies: more levels and later rules mean more work per
// decision (more binary searches, more bitmap words ANDed).
long path_score(const PolicyBench &p, const TePacket &k, std::string *how)
{
	std::vector<uint32_t> dirs;
	if (auto *sn = te_subnet_lookup(p.t, k.vni, k.src)) {
		if (auto *nic = te_nic_lookup(p.t, k.vni, k.src); nic && nic->nsg_out != LG_NONE)
			dirs.push_back(nic->nsg_out);
		if (sn->nsg_out != LG_NONE)
			dirs.push_back(sn->nsg_out);
	}
	if (auto *pe = te_pe_lookup(p.t, k.vni, k.dst); pe && pe->subnet_in != LG_NONE)
		dirs.push_back(pe->subnet_in);
	long s = long(dirs.size()) * 100000;
	std::string h;
	for (uint32_t d : dirs) {
		uint32_t first = te_nsg_first(p.t, d, &k);
		if (first == LG_NONE)
			continue;
		s += long(first);
		const lg_rule &r = p.t.rules[p.t.nsg_dirs[d].rule_base + first];
		h += (h.empty() ? "" : ", ") + p.t.rule_names[r.counter] + (r.allow ? " allow" : " deny");
	}
	if (how)
		*how = std::to_string(dirs.size()) + " NSG level(s) on the path, first match in each: " + h;
	return s;
}

// The first rule of each NSG level on k's path; true when all are defaults.
bool defaults_decide(const PolicyBench &p, const TePacket &k, std::vector<std::string> *custom)
{
	std::vector<uint32_t> dirs;
	if (auto *sn = te_subnet_lookup(p.t, k.vni, k.src)) {
		if (auto *nic = te_nic_lookup(p.t, k.vni, k.src); nic && nic->nsg_out != LG_NONE)
			dirs.push_back(nic->nsg_out);
		if (sn->nsg_out != LG_NONE)
			dirs.push_back(sn->nsg_out);
	}
	if (auto *pe = te_pe_lookup(p.t, k.vni, k.dst); pe && pe->subnet_in != LG_NONE)
		dirs.push_back(pe->subnet_in);
	bool all = true;
	for (uint32_t d : dirs) {
		uint32_t first = te_nsg_first(p.t, d, &k);
		if (first == LG_NONE)
			continue;
		const lg_rule &r = p.t.rules[p.t.nsg_dirs[d].rule_base + first];
		if (!r.is_default) {
			all = false;
			custom->push_back(p.t.rule_names[r.counter]);
		}
	}
	return all;
}

// scale_policy's random rules deny or allow a tuple from the VNet early
// (a wide Deny near the top is almost certain among 1,000). For the
// decision's worst case, the custom rules that match the measured tuples are
// turned to protocol Esp, one at a time, until at every NSG level the
// default rule (priority 65000) decides: every bitmap word is then ANDed,
// and the interval searches run over the whole policy, which keeps its
// rule count and tag (Esp rules keep their address intervals).
Status worst_case(PolicyBench &p, const std::vector<Tuple4> &ts, uint32_t egress,
		  const std::vector<InterfaceBinding> &b)
{
	for (int iter = 0; iter < 2000; iter++) {
		auto t = compile(p.pol.state, b, 1);
		if (!t)
			return err("compile (" + p.label + "): " + t.error());
		p.t = std::move(*t);
		p.vni = te_iface_vni(p.t, egress);
		std::vector<std::string> custom;
		bool done = true;
		for (auto &c : ts) {
			TePacket k = te_packet(p, c, egress);
			done = defaults_decide(p, k, &custom) && done;
		}
		if (done)
			return Ok{};
		for (auto &name : custom) {
			auto slash = name.find('/');
			for (auto &n : p.pol.state.networkSecurityGroups)
				if (n.name == name.substr(0, slash))
					for (auto &r : n.securityRules)
						if (r.name == name.substr(slash + 1) && r.protocol != "Esp") {
							r.protocol = "Esp";
							p.neutralised.push_back(name);
						}
		}
	}
	return err("policy " + p.label + ": cannot make the default rules decide the measured tuples");
}

// The measured tuples of one policy: the decided SYN, the established
// flow (worst_case), and a SYN a custom rule denies (pick_deny).
struct Picks {
	Tuple4 decide, established, deny;
};

// TCP tuples between the VNet's NICs and subnet addresses and to the private
// endpoint: the one denied by a custom rule (nsg-deny) with the most NSG
// levels on its path; score -1 when there is none.
Tuple4 pick_deny(const PolicyBench &p, uint32_t egress, uint64_t seed)
{
	std::mt19937_64 rng(seed ^ 0x62656e6368ull);
	std::vector<Addr> srcs;
	for (auto &n : p.pol.state.networkInterfaces)
		if (auto a = Addr::parse(n.privateIPAddress); a && a->is_v4())
			srcs.push_back(*a);
	for (int i = 0; i < 40; i++)
		srcs.push_back(Addr::from_v4(0x0a000000u | uint32_t(i % 2) << 8 | uint32_t(20 + rng() % 200)));
	Tuple4 deny;
	// Destinations: the endpoint, then the VNet's own addresses (routed).
	std::vector<Addr> dsts = {p.pe};
	for (size_t i = 0; i < 6 && i < srcs.size(); i++)
		dsts.push_back(srcs[i]);
	for (int i = 0; i < 6; i++)
		dsts.push_back(Addr::from_v4(0x0a000000u | uint32_t(i % 2) << 8 | uint32_t(20 + rng() % 200)));
	static const uint16_t ports[] = {LG_MYSQL_PORT, 22, 80, 443, 1433};
	for (auto &dst : dsts)
	for (auto &src : srcs)
		for (int j = 0; j < 8; j++) {
			Tuple4 c;
			c.src = src;
			c.dst = dst;
			c.sport = uint16_t(1024 + rng() % 64000);
			c.dport = dst == p.pe ? LG_MYSQL_PORT : j < 5 ? ports[j] : uint16_t(1024 + rng() % 64000);
			if (c.src == c.dst)
				continue;
			TePacket k = te_packet(p, c, egress);
			c.r = te_decide(p.t, &k);
			c.score = path_score(p, k, &c.how);
			c.how = std::string(stage_name(c.r.stage)) + "; " + c.how;
			if (c.r.reason == LG_REASON_NSG_DENY && c.score > deny.score)
				deny = c;
		}
	return deny;
}

std::vector<uint8_t> tcp_frame(const Mac &smac, const Mac &dmac, const Addr &src, const Addr &dst, uint16_t sport,
			       uint16_t dport, uint8_t flags, uint32_t seq, uint32_t ack)
{
	return PacketBuilder().eth(smac, dmac).ipv4(src.str(), dst.str(), 64).tcp(sport, dport, flags, seq, ack).build();
}

// Fill the flow table to capacity with inert flows (a VNI no interface has),
// so that a new flow's insertion fails with ct-full after its decision.
Status fill_flows(XdpDataplane &dp, uint32_t capacity, uint64_t generation)
{
	int fd = bpf_map__fd(dp.skeleton()->maps.lg_flows);
	size_t have = dp.flow_entries();
	size_t want = size_t(capacity) * 2;
	std::vector<lg_flow_key> keys;
	std::vector<lg_flow_entry> vals;
	for (size_t i = 0; have + keys.size() < want; i++) {
		lg_flow_key k{};
		k.vni = 0xfffffe;
		k.family = LG_AF_INET;
		k.proto = kProtoTcp;
		Addr a = Addr::from_v4(0x64400000u + uint32_t(i));
		std::memcpy(k.src, a.b.data(), 16);
		std::memcpy(k.dst, a.b.data(), 16);
		k.sport = htons(1);
		k.dport = htons(2);
		lg_flow_entry e{};
		e.generation = generation;
		e.expires_ns = ~0ull;
		e.state = LG_CT_ESTABLISHED;
		e.orig = k;
		keys.push_back(k);
		vals.push_back(e);
	}
	for (size_t i = 0; i < keys.size(); i += 4096) {
		uint32_t n = uint32_t(std::min<size_t>(4096, keys.size() - i));
		LIBBPF_OPTS(bpf_map_batch_opts, bo);
		uint32_t count = n;
		if (bpf_map_update_batch(fd, &keys[i], &vals[i], &count, &bo) == 0 && count == n)
			continue;
		for (uint32_t j = 0; j < n; j++)
			if (bpf_map_update_elem(fd, &keys[i + j], &vals[i + j], BPF_NOEXIST) && errno != EEXIST)
				return err(std::string("cannot fill the flow table: ") + std::strerror(errno));
	}
	return Ok{};
}

// One measured case. Wrapped: lg_bench_restore puts the frame back before
// every iteration and tail-calls the target.
struct Case {
	std::string name, what;
	int target_fd = -1;
	bool wrapped = true;
	std::vector<uint8_t> frame;
	uint32_t ifindex = 0;
	uint32_t expect_action = XDP_DROP;
	XdpDataplane *dp = nullptr; // lg_xdp cases: counters are checked
	lg_reason expect_reason = LG_REASON_NONE;
	uint32_t expect_egress = 0;
	std::vector<Sample> samples;
};

Case mk(std::string name, std::string what, int fd, bool wrapped, std::vector<uint8_t> frame, uint32_t ifindex,
	uint32_t action)
{
	Case c;
	c.name = std::move(name);
	c.what = std::move(what);
	c.target_fd = fd;
	c.wrapped = wrapped;
	c.frame = std::move(frame);
	c.ifindex = ifindex;
	c.expect_action = action;
	return c;
}

class Runner {
public:
	explicit Runner(lg_bench *wrap) : wrap_(wrap) {}

	// One sample of c; checks that every iteration took the expected path.
	Result<Sample> run(Case &c, uint32_t repeat)
	{
		int fd = c.target_fd;
		if (c.wrapped) {
			BenchFrame f{};
			if (c.frame.size() > sizeof f.data)
				return err("frame too long for the restore wrapper");
			f.len = uint32_t(c.frame.size());
			std::memcpy(f.data, c.frame.data(), c.frame.size());
			uint32_t z = 0;
			if (bpf_map__update_elem(wrap_->maps.lg_bench_frame, &z, sizeof z, &f, sizeof f, BPF_ANY))
				return err(std::string("cannot set the frame: ") + std::strerror(errno));
			if (bpf_map__update_elem(wrap_->maps.lg_bench_progs, &z, sizeof z, &c.target_fd, sizeof(int),
						 BPF_ANY))
				return err(std::string("cannot set the tail call target: ") + std::strerror(errno));
			fd = bpf_program__fd(wrap_->progs.lg_bench_restore);
		}
		std::array<uint64_t, LG_REASON__COUNT> before{};
		uint64_t eg0 = 0;
		if (c.dp) {
			before = c.dp->reason_counts();
			eg0 = c.expect_egress ? c.dp->egress_packets(c.expect_egress) : 0;
		}
		auto s = test_run(fd, c.frame, c.ifindex, repeat);
		if (!s)
			return s;
		if (s->retval != c.expect_action)
			return err(c.name + ": " + action_name(s->retval) + ", expected " + action_name(c.expect_action));
		if (c.dp) {
			auto after = c.dp->reason_counts();
			uint64_t total = 0;
			for (size_t i = 0; i < after.size(); i++)
				total += after[i] - before[i];
			uint64_t hit = after[c.expect_reason] - before[c.expect_reason];
			if (total != repeat || hit != repeat)
				return err(c.name + ": " + std::to_string(hit) + " of " + std::to_string(repeat) +
					   " iterations counted as " + reason_name(c.expect_reason) + " (" +
					   std::to_string(total) + " counted)");
			if (c.expect_egress && c.dp->egress_packets(c.expect_egress) - eg0 != repeat)
				return err(c.name + ": not every iteration was redirected to the backend side");
		}
		return s;
	}

private:
	lg_bench *wrap_;
};

Case find_case(const std::vector<Case> &cases, const std::string &n)
{
	for (auto &c : cases)
		if (c.name == n)
			return c;
	throw std::logic_error("no case " + n);
}

struct Ratio {
	std::string name, num, den, what;
	double target = 0; // 0: no target, for information
	std::vector<double> per_round;
	size_t left_out = 0; // rounds where either side was not above the harness
};

} // namespace

int run_xdp_cost(const XdpCostOptions &o, const std::string &cmdline)
{
	return run_xdp_cost_into(o, cmdline, nullptr, true);
}

int run_xdp_cost_into(const XdpCostOptions &o, const std::string &cmdline, nlohmann::json *result, bool own_netns)
{
	auto fail = [&](const std::string &m) {
		std::cerr << "linkgate-bench xdp-cost: " << m << "\n";
		if (result)
			*result = {{"error", m}};
		return 1;
	};
	Progress prog(o.quiet);
	nlohmann::json out = result_head("xdp-cost", cmdline);

	if (own_netns)
		if (auto st = enter_netns(); !st)
			return fail(st.error());

	// Policies: the same VNet, subnets, NICs, endpoint and server shape.
	prog.show("building policies");
	std::vector<std::unique_ptr<PolicyBench>> pols;
	auto add_pol = [&](int rules, int prefixes) {
		auto p = std::make_unique<PolicyBench>();
		p->rules = rules;
		p->prefixes = prefixes;
		p->label = std::to_string(rules) + " rules, " + std::to_string(prefixes) + "-prefix tag";
		p->pol = testing::scale_policy(rules, prefixes, o.seed);
		pols.push_back(std::move(p));
	};
	add_pol(o.small_rules, o.small_prefixes);
	add_pol(o.small_rules, o.big_prefixes);
	add_pol(o.big_rules, o.big_prefixes);
	PolicyBench &small = *pols[0], &small_tag = *pols[1], &big = *pols[2];

	// One host for all: interface 1 carries the VNet, 2 the backend side.
	auto host = realize(big.pol.host);
	if (!host)
		return fail(host.error());
	if (host->interfaces.size() != 2)
		return fail("scale_policy host has " + std::to_string(host->interfaces.size()) + " interfaces, expected 2");
	uint32_t vnet_if = host->interfaces[0].ifindex, be_if = host->interfaces[1].ifindex;
	Mac vnet_mac = host->interfaces[0].mac, be_mac = host->interfaces[1].mac;
	char vnet_name[IF_NAMESIZE] = {}, be_name[IF_NAMESIZE] = {};
	if_indextoname(vnet_if, vnet_name);
	if_indextoname(be_if, be_name);

	std::map<std::string, Picks> picks;
	for (auto &p : pols) {
		prog.show("compiling and loading: " + p->label);
		std::vector<InterfaceBinding> b = {{vnet_if, "scale", vnet_mac}, {be_if, "", be_mac}};
		const auto &st = p->pol.state;
		const auto &pe = st.privateEndpoints.at(0);
		p->pe = *Addr::parse(pe.privateIPAddress);
		// The client: a NIC with an NSG in the endpoint's subnet, so that
		// three NSG levels run (NIC out, subnet out, endpoint subnet in).
		const NetworkInterface *client = nullptr;
		for (auto &n : st.networkInterfaces)
			if (!n.networkSecurityGroup.empty() && n.subnet == pe.subnet && Addr::parse(n.privateIPAddress)->is_v4())
				client = &n;
		if (!client)
			return fail("policy " + p->label + " has no NIC with an NSG in the endpoint's subnet");
		Tuple4 dec, est;
		dec.src = est.src = *Addr::parse(client->privateIPAddress);
		dec.dst = est.dst = p->pe;
		dec.dport = est.dport = LG_MYSQL_PORT;
		dec.sport = 40000;
		est.sport = 40001;
		if (auto ws = worst_case(*p, {dec, est}, vnet_if, b); !ws)
			return fail(ws.error());
		for (auto *c : {&dec, &est}) {
			TePacket k = te_packet(*p, *c, vnet_if);
			c->r = te_decide(p->t, &k);
			c->score = path_score(*p, k, &c->how);
			c->how = std::string(stage_name(c->r.stage)) + "; " + c->how;
			if (!c->r.allowed || c->r.backend == LG_NONE)
				return fail("policy " + p->label + ": the measured tuple is not allowed to a backend");
		}
		XdpConfig xc;
		xc.flow_capacity = o.flows;
		auto dp = XdpDataplane::load(xc);
		if (!dp)
			return fail(dp.error());
		p->dp = std::move(*dp);
		if (auto st2 = p->dp->publish(p->t); !st2)
			return fail("publish (" + p->label + "): " + st2.error());
		Picks pk{dec, est, pick_deny(*p, vnet_if, o.seed)};
		picks[p->label] = pk;
		// Next hops: the clients and every backend, resolved (permanent).
		for (auto *c : {&pk.decide, &pk.established, &pk.deny})
			if (c->score >= 0)
				if (auto st = sh("ip neigh replace " + c->src.str() + " lladdr " + mac_str(kClientMac) +
						 " nud permanent dev " + vnet_name);
				    !st)
					return fail(st.error());
		for (auto &be : p->t.backends) {
			Addr a;
			std::memcpy(a.b.data(), be.addr, 16);
			if (auto st = sh("ip neigh replace " + a.str() + " lladdr " + mac_str(kBackendMac) +
					 " nud permanent dev " + be_name);
			    !st)
				return fail(st.error());
		}
	}
	Picks &bp = picks[big.label];
	if (bp.deny.score < 0)
		return fail("the large policy denies none of the candidate tuples with nsg-deny; try another --seed");

	// The established flow: SYN, SYN-ACK from the backend, ACK, through the
	// large policy's program (DNAT to the Maglev-picked backend).
	prog.show("establishing the measured flow");
	const Tuple4 &ef = bp.established;
	const lg_backend &ebe = big.t.backends[ef.r.backend];
	Addr be_addr;
	std::memcpy(be_addr.b.data(), ebe.addr, 16);
	uint16_t be_port = ntohs(ebe.port_be);
	{
		auto syn = tcp_frame(kClientMac, vnet_mac, ef.src, ef.dst, ef.sport, ef.dport, kTcpSyn, 1000, 0);
		auto synack = tcp_frame(kBackendMac, be_mac, be_addr, ef.src, be_port, ef.sport, kTcpSyn | kTcpAck, 5000, 1001);
		auto ack = tcp_frame(kClientMac, vnet_mac, ef.src, ef.dst, ef.sport, ef.dport, kTcpAck, 1001, 5001);
		for (auto &[f, ifx] :
		     std::vector<std::pair<std::vector<uint8_t>, uint32_t>>{{syn, vnet_if}, {synack, be_if}, {ack, vnet_if}}) {
			auto r = big.dp->run(f, ifx);
			if (!r)
				return fail(r.error());
			if (r->action != XDP_REDIRECT)
				return fail(std::string("setting up the established flow: ") + action_name(uint32_t(r->action)));
		}
		auto fl = big.dp->flows();
		if (fl.size() != 1 || fl[0].state != LG_CT_ESTABLISHED)
			return fail("the measured flow is not established");
	}
	for (auto &p : pols) {
		prog.show("filling the flow table (" + std::to_string(o.flows) + " flows): " + p->label);
		if (auto st = fill_flows(*p->dp, o.flows, 1); !st)
			return fail(st.error());
	}

	lg_bare *bare = lg_bare__open_and_load();
	lg_bench *wrap = lg_bench__open();
	if (!bare || !wrap)
		return fail("cannot open the benchmark BPF objects");
	std::unique_ptr<lg_bare, void (*)(lg_bare *)> bare_own(bare, lg_bare__destroy);
	std::unique_ptr<lg_bench, void (*)(lg_bench *)> wrap_own(wrap, lg_bench__destroy);
	if (bpf_map__value_size(wrap->maps.lg_bench_frame) != sizeof(BenchFrame))
		return fail("lg_bench_frame does not match BenchFrame: rebuild");
	if (lg_bench__load(wrap))
		return fail("the kernel refused tools/lg_bench.bpf.c");
	int nop_fd = bpf_program__fd(wrap->progs.lg_bench_nop);
	int bare_fd = bpf_program__fd(bare->progs.lg_bare);

	auto syn_of = [&](const Tuple4 &c) {
		return tcp_frame(kClientMac, vnet_mac, c.src, c.dst, c.sport, c.dport, kTcpSyn, 1000, 0);
	};
	auto ack = tcp_frame(kClientMac, vnet_mac, ef.src, ef.dst, ef.sport, ef.dport, kTcpAck, 1001, 5001);
	auto bare_ack = tcp_frame(kClientMac, vnet_mac, ef.src, be_addr, ef.sport, be_port, kTcpAck, 1001, 5001);
	std::string sn = "new-" + std::to_string(o.small_rules), bn = "new-" + std::to_string(o.big_rules);
	std::string stn = sn + "-tag" + std::to_string(o.big_prefixes);
	std::string dn = "deny-" + std::to_string(o.big_rules);
	auto decide_case = [&](const std::string &name, PolicyBench &p, bool wrapped) {
		const Tuple4 &c = picks[p.label].decide;
		Case k;
		k.name = (wrapped ? "" : "direct:") + name;
		k.what = "SYN " + c.src.str() + ":" + std::to_string(c.sport) + " -> private endpoint " + c.dst.str() +
			 ":3306 through " + p.label + " (" + c.how + "; " + std::to_string(p.neutralised.size()) +
			 " matching custom rules turned to Esp), decided allowed, then refused ct-full (flow table full)";
		k.target_fd = p.dp->prog_fd();
		k.wrapped = wrapped;
		k.frame = syn_of(c);
		k.ifindex = vnet_if;
		k.dp = p.dp.get();
		k.expect_reason = LG_REASON_CT_FULL;
		return k;
	};
	std::vector<Case> cases;
	cases.push_back(mk("nop", "restore wrapper + tail call to a program that returns XDP_DROP (subtracted)", nop_fd,
			 true, ack, vnet_if, XDP_DROP));
	cases.push_back(mk("bare", "lg_bare: ACK " + ef.src.str() + " -> " + be_addr.str() +
					 ":3306, parse, bpf_fib_lookup, TTL, MACs, bpf_redirect to the backend side",
			 bare_fd, true, bare_ack, vnet_if, XDP_REDIRECT));
	{
		Case k = mk("established",
		       "ACK of an established flow " + ef.src.str() + ":" + std::to_string(ef.sport) + " -> " +
			       ef.dst.str() + ":3306, DNAT to " + be_addr.str() + ":" + std::to_string(be_port) +
			       ", redirected (" + big.label + ")",
		       big.dp->prog_fd(), true, ack, vnet_if, XDP_REDIRECT);
		k.dp = big.dp.get();
		k.expect_reason = LG_REASON_NONE;
		k.expect_egress = be_if;
		cases.push_back(k);
	}
	cases.push_back(decide_case(sn, small, true));
	cases.push_back(decide_case(stn, small_tag, true));
	cases.push_back(decide_case(bn, big, true));
	{
		Case k = mk(dn, "SYN " + bp.deny.src.str() + ":" + std::to_string(bp.deny.sport) + " -> " + bp.deny.dst.str() +
				   ":3306 through " + big.label + ", dropped nsg-deny (" + bp.deny.how + ")",
		       big.dp->prog_fd(), true, syn_of(bp.deny), vnet_if, XDP_DROP);
		k.dp = big.dp.get();
		k.expect_reason = LG_REASON_NSG_DENY;
		cases.push_back(k);
	}
	// The same frames without the wrapper: they are not changed by the
	// program (dropped), so repeat alone is honest for them. A check of the
	// subtraction.
	cases.push_back(mk("direct:nop", "lg_bench_nop run directly: the BPF_PROG_TEST_RUN loop itself", nop_fd, false,
			 ack, vnet_if, XDP_DROP));
	cases.push_back(decide_case(sn, small, false));
	cases.push_back(decide_case(bn, big, false));
	{
		Case k = find_case(cases, dn);
		k.name = "direct:" + dn;
		k.wrapped = false;
		cases.push_back(k);
	}

	if (!o.only.empty())
		std::erase_if(cases, [&](const Case &c) {
			return c.name.find("nop") == std::string::npos &&
			       std::find(o.only.begin(), o.only.end(), c.name) == o.only.end();
		});
	Runner runner(wrap);
	// One checked iteration of each first: the path is the one described.
	for (auto &c : cases)
		if (auto s = runner.run(c, 1); !s)
			return fail(s.error());
	out["machine"]["loadavg_before_rounds"] = loadavg();
	int total = o.warmup + o.rounds;
	for (int r = 0; r < total; r++) {
		for (size_t i = 0; i < cases.size(); i++) {
			Case &c = cases[(i + size_t(r)) % cases.size()]; // rotate the order every round
			prog.show("round " + std::to_string(r + 1) + "/" + std::to_string(total) +
				  (r < o.warmup ? " (warm-up)" : "") + ": " + c.name);
			auto s = runner.run(c, o.repeat);
			if (!s)
				return fail(s.error());
			if (r >= o.warmup)
				c.samples.push_back(*s);
		}
	}
	prog.done();
	out["machine"]["loadavg_end"] = loadavg();

	auto find = [&](const std::string &n) -> Case & {
		for (auto &c : cases)
			if (c.name == n)
				return c;
		throw std::logic_error("no case " + n);
	};
	// Net cost per round: the case minus the harness case of the same round
	// and kind (wrapped: restore + tail call + loop; direct: loop).
	auto net = [&](const Case &c, size_t r) {
		const Case &base = find(c.wrapped ? "nop" : "direct:nop");
		return c.samples[r].kernel_ns - base.samples[r].kernel_ns;
	};
	std::vector<Ratio> ratios = {
		{"established / bare", "established", "bare",
		 "established-flow cost vs a bare program doing the same redirect", 1.4, {}},
		{bn + " / " + sn, bn, sn, "decision at " + big.label + " vs " + small.label, 1.5, {}},
		{bn + " / " + stn, bn, stn, "decision at " + big.label + " vs " + small_tag.label + " (rules alone)", 0, {}},
		{dn + " / bare", dn, "bare", "a denied SYN vs the bare forward", 0, {}},
		{"direct:" + bn + " / direct:" + sn, "direct:" + bn, "direct:" + sn, "the same, without the wrapper", 0, {}},
	};
	std::erase_if(ratios, [&](const Ratio &ra) {
		auto has = [&](const std::string &n) {
			return std::any_of(cases.begin(), cases.end(), [&](const Case &c) { return c.name == n; });
		};
		return !has(ra.num) || !has(ra.den);
	});
	for (auto &ra : ratios) {
		std::vector<double> num, den;
		for (size_t r = 0; r < size_t(o.rounds); r++) {
			num.push_back(net(find(ra.num), r));
			den.push_back(net(find(ra.den), r));
		}
		auto rr = round_ratios(num, den);
		ra.per_round = rr.values;
		ra.left_out = rr.left_out;
	}

	nlohmann::json jc = nlohmann::json::array();
	for (auto &c : cases) {
		std::vector<double> k, w, n;
		for (size_t r = 0; r < c.samples.size(); r++) {
			k.push_back(c.samples[r].kernel_ns);
			w.push_back(c.samples[r].wall_ns);
			n.push_back(c.name.find("nop") == std::string::npos ? net(c, r) : c.samples[r].kernel_ns);
		}
		jc.push_back({{"name", c.name},
			      {"what", c.what},
			      {"wrapped", c.wrapped},
			      {"frame_bytes", c.frame.size()},
			      {"action", action_name(c.expect_action)},
			      {"reason", c.dp ? reason_name(c.expect_reason) : "-"},
			      {"kernel_ns", k},
			      {"wall_ns", w},
			      {"raw", Spread::of(k).json()},
			      {"wall", Spread::of(w).json()},
			      {"net", Spread::of(n).json()}});
	}
	out["cases"] = jc;
	nlohmann::json jr = nlohmann::json::array();
	for (auto &ra : ratios) {
		Spread s = Spread::of(ra.per_round);
		nlohmann::json j = {{"name", ra.name},
				     {"what", ra.what},
				     {"per_round", ra.per_round},
				     {"rounds_left_out", ra.left_out},
				     {"spread", ra.per_round.empty() ? nlohmann::json() : s.json()}}; // none: no ratio
		if (ra.target > 0) {
			// No round with a ratio meets nothing.
			bool any = !ra.per_round.empty();
			j["target"] = ra.target;
			j["met_median"] = any && s.median <= ra.target;
			j["met_every_round"] = any && ra.left_out == 0 && s.max <= ra.target;
		}
		jr.push_back(j);
	}
	out["ratios"] = jr;
	out["params"] = {{"repeat", o.repeat},   {"rounds", o.rounds},         {"warmup", o.warmup},
			 {"flows", o.flows},     {"big_rules", o.big_rules},   {"big_prefixes", o.big_prefixes},
			 {"small_rules", o.small_rules}, {"small_prefixes", o.small_prefixes}, {"seed", o.seed},
			 {"only", o.only}};
	nlohmann::json jp = nlohmann::json::array();
	for (auto &p : pols)
		jp.push_back({{"label", p->label},
			      {"rules", p->rules},
			      {"tag_prefixes", p->prefixes},
			      {"intervals", p->t.ivl.size()},
			      {"bitmaps", p->t.bitmaps.size()},
			      {"rules_turned_to_esp", p->neutralised}});
	out["policies"] = jp;
	out["finished"] = utc_now();

	// The human table.
	std::cout << "linkgate-bench xdp-cost: repeat " << o.repeat << ", " << o.rounds << " rounds (+" << o.warmup
		  << " warm-up), flow table " << o.flows << " flows (full)\n"
		  << out["machine"]["nproc"] << " CPUs, " << std::string(out["machine"]["cpu_model"]) << ", "
		  << std::string(out["machine"]["kernel"]) << "; load " << loadavg() << "\n\n";
	std::printf("%-22s %10s %8s %8s %10s\n", "case", "net ns/pkt", "min", "max", "raw median");
	for (auto &c : cases) {
		std::vector<double> k, n;
		for (size_t r = 0; r < c.samples.size(); r++) {
			k.push_back(c.samples[r].kernel_ns);
			n.push_back(c.name.find("nop") == std::string::npos ? net(c, r) : c.samples[r].kernel_ns);
		}
		Spread sn2 = Spread::of(n), sk = Spread::of(k);
		std::printf("%-22s %10s %8s %8s %10s\n", c.name.c_str(), fixed(sn2.median, 1).c_str(),
			    fixed(sn2.min, 1).c_str(), fixed(sn2.max, 1).c_str(), fixed(sk.median, 1).c_str());
	}
	std::printf("\n%-30s %8s %8s %8s %8s  %s\n", "ratio (net, per round)", "median", "min", "max", "target", "met");
	bool left_out = false;
	for (auto &ra : ratios) {
		Spread s = Spread::of(ra.per_round);
		bool any = !ra.per_round.empty();
		auto num = [&](double v) { return any ? fixed(v, 2) : std::string("-"); };
		std::string met = ra.target <= 0 ? ""
				  : !any ? "NO (no round)"
				  : s.max <= ra.target && ra.left_out == 0 ? "yes (every round)"
				  : s.median <= ra.target ? "yes (median)"
							  : "NO";
		if (ra.left_out)
			met += " [" + std::to_string(ra.left_out) + " round(s) left out]";
		left_out = left_out || ra.left_out;
		std::printf("%-30s %8s %8s %8s %8s  %s\n", ra.name.c_str(), num(s.median).c_str(), num(s.min).c_str(),
			    num(s.max).c_str(), ra.target > 0 ? ("<= " + fixed(ra.target, 1)).c_str() : "-", met.c_str());
	}
	if (left_out)
		std::cout << "\nA round is left out of a ratio when either net cost was not above zero: "
			     "the harness's noise was larger than the cost. Raise --repeat.\n";
	std::cout << "\nnet = case minus the harness case (nop / direct:nop) of the same round; kernel "
		     "BPF_PROG_TEST_RUN duration, whole ns per iteration.\n";
	for (auto &c : cases)
		std::cout << "  " << c.name << ": " << c.what << "\n";

	if (result)
		*result = out;
	if (!o.json_path.empty()) {
		std::ofstream f(o.json_path);
		f << out.dump(2) << "\n";
		f.close();
		if (!f)
			return fail("cannot write " + o.json_path);
	}
	return 0;
}

} // namespace lg::bench
