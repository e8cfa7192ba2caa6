#include "dpdk_bench.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "arm_json.hpp"
#include "bench_common.hpp"
#include "packet.hpp"
#include "runners.hpp"
#include "workload.hpp"

namespace lg::bench {
namespace {

using namespace lg::bench::dpdk;
namespace fs = std::filesystem;

struct DpdkOptions {
	std::string classbench = LG_CLASSBENCH; // tests/fixtures/classbench, as linkgate-bench all
	size_t rules = 1000;
	double allow_depth = 0.9;
	std::vector<size_t> flows{1000, 1000000};
	double seconds = 4;
	int repeats = 3;
	std::vector<std::string> algs{"scalar", "sse", "avx2", "avx512x16", "avx512x32"};
	// ipv4: dpdk-test-acl's IPv4 5-tuple layout; ipv6: its IPv6 layout with
	// IPv4-mapped addresses; linkgate: the IPv4 layout on the rte_acl rules
	// linkgate-dpdk builds from the NSG (--dump-acl: defaults included).
	std::vector<std::string> acl_layouts{"ipv4", "ipv6", "linkgate"};
	size_t acl_packets = 4000000; // classifications per test-acl run
	int tracestep = 64;           // 5-tuples per rte_acl_classify call: linkgate-dpdk's burst
	std::string lcores = "0,1";
	int mem_mb = 0; // 0: sized from the frames
	std::string huge_dir; // "": --no-huge
	int mbuf_size = 2176; // RTE_MBUF_DEFAULT_BUF_SIZE
	std::string workdir = "/tmp/linkgate-bench-dpdk";
	std::string testpmd = "dpdk-testpmd", test_acl = "dpdk-test-acl", linkgate_dpdk;
	std::string lg_acl_alg; // linkgate-dpdk --acl-alg; "": its default
	std::string lg_start_marker = "workers, generation";
	std::vector<std::string> only; // testpmd, linkgate, acl
	// new: SYNs of flows that never get a reply (the first pass creates
	// the flows, which stay new: every frame takes the full path); established: handshakes completed in a warm-up, then the
	// clients' data frames (the fast path), measured after the warm-up.
	std::vector<std::string> workloads{"new", "established"};
	std::string json_path, markdown_path;
	uint64_t seed = 1;
	bool generate_only = false, quiet = false;
};

DpdkOptions g_opt;

bool wants(const DpdkOptions &o, const std::string &what)
{
	return o.only.empty() || std::find(o.only.begin(), o.only.end(), what) != o.only.end();
}

std::string flows_label(size_t n)
{
	if (n >= 1000000 && n % 1000000 == 0)
		return std::to_string(n / 1000000) + "M";
	if (n >= 1000 && n % 1000 == 0)
		return std::to_string(n / 1000) + "k";
	return std::to_string(n);
}

// linkgate-dpdk beside this binary: <builddir>/tools/ or <builddir>/tools/dpdk/.
std::string find_linkgate_dpdk()
{
	std::error_code ec;
	fs::path self = fs::read_symlink("/proc/self/exe", ec);
	if (ec)
		return "";
	for (fs::path p : {self.parent_path() / ".." / "dataplane" / "linkgate-dpdk",
			   self.parent_path() / ".." / ".." / "dataplane" / "linkgate-dpdk"})
		if (access(p.c_str(), X_OK) == 0)
			return fs::weakly_canonical(p, ec).string();
	return "";
}

double tsc_hz()
{
#if defined(__x86_64__)
	using clock = std::chrono::steady_clock;
	auto t0 = clock::now();
	uint64_t c0 = __rdtsc();
	std::this_thread::sleep_for(std::chrono::milliseconds(200));
	uint64_t c1 = __rdtsc();
	double s = std::chrono::duration<double>(clock::now() - t0).count();
	return double(c1 - c0) / s;
#else
	return 0;
#endif
}

// Memory for the EAL: the pool that holds the whole pcap (infinite_rx copies
// it into mbufs at start; ~700 bytes an mbuf with a 256-byte data room, more
// for linkgate-dpdk's own pool), its flow table, and room to spare.
int mem_for(const DpdkOptions &o, size_t frames)
{
	if (o.mem_mb)
		return o.mem_mb;
	size_t mb = 512 + frames * size_t(o.mbuf_size + 400) * 8 / 5 / (1 << 20);
	return int(std::min<size_t>(mb, 8192));
}

// One forwarding case: `flows` distinct flows replayed from a pcap of
// `frames` frames. The same flows with more frames isolate the replay's own
// memory footprint from the flow table's.
struct Case {
	size_t flows = 0, frames = 0;
	bool established = false;
	std::string pcap;                    // port 0, infinite_rx
	std::string syn_pcap, reply_pcap;    // established: the warm-up's ports 2 and 3, read once
	std::vector<TestpmdRun> testpmd;   // per round
	std::vector<LinkgateRun> linkgate; // per round (successful runs)
	std::vector<std::string> linkgate_errors;
	std::string label() const
	{
		return flows_label(flows) + (established ? " established flows" : " new flows") +
		       (frames != flows ? ", " + flows_label(frames) + " frames" : "");
	}
};

// One flow set: its traces for dpdk-test-acl and what the reference said.
struct FlowSet {
	size_t flows = 0;
	std::string trace, trace6;
	std::map<std::string, std::vector<AclRun>> acl; // acl_key(alg, layout) -> per round
	// linkgate-dpdk's classifier alone on the same trace (--classify-trace),
	// for the "linkgate" layout's keys, per round.
	std::map<std::string, std::vector<AclRun>> lg_alone;
	std::vector<std::pair<std::string, size_t>> admitted_by;
	size_t checked = 0;
	size_t established_checked = 0; // handshakes held to the reference
};

struct Ratio {
	std::string name, what;
	std::vector<double> per_round;
	double target = 0;
	bool at_least = true; // target is a lower bound (else an upper bound)
};

std::string acl_key(const std::string &alg, const std::string &layout)
{
	return layout == "ipv4" ? alg : layout == "ipv6" ? alg + " (ipv6 layout)" : alg + " (linkgate-dpdk's rules)";
}

std::string spread_text(const Spread &s, int d)
{
	return fixed(s.median, d) + " [" + fixed(s.min, d) + "–" + fixed(s.max, d) + "]";
}

} // namespace

CLI::App *register_dpdk_subcommand(CLI::App &app)
{
	DpdkOptions &o = g_opt;
	auto *c = app.add_subcommand("dpdk", "DPDK fast path beside dpdk-testpmd io forwarding and dpdk-test-acl, "
					     "same rules and traffic (docs/dpdk-performance.md)");
	c->add_option("--classbench", o.classbench, "ClassBench filter file the NSG rules come from (.gz ok)")
		->capture_default_str();
	c->add_option("--rules", o.rules, "NSG rules (ClassBench filters + the two that admit the traffic)")
		->check(CLI::Range(3, 1000))
		->capture_default_str();
	c->add_option("--allow-depth", o.allow_depth, "position of the admitting rules in the NSG, 0..1")
		->check(CLI::Range(0.0, 1.0))
		->capture_default_str();
	c->add_option("--flows", o.flows, "concurrent flows, one pcap each")->capture_default_str();
	c->add_option("--seconds", o.seconds, "forwarding time of each testpmd / linkgate-dpdk run")
		->check(CLI::Range(2.0, 600.0))
		->capture_default_str();
	c->add_option("--repeats", o.repeats, "rounds; every program runs once a round, ratios are per round")
		->check(CLI::Range(1, 100))
		->capture_default_str();
	c->add_option("--algs", o.algs, "rte_acl classify algorithms to try (unsupported ones are reported)")
		->capture_default_str();
	c->add_option("--acl-packets", o.acl_packets, "classifications per dpdk-test-acl run")->capture_default_str();
	c->add_option("--acl-layouts", o.acl_layouts,
		      "dpdk-test-acl field layouts: ipv4 (5-tuple), ipv6 (IPv4-mapped), linkgate (ipv4 on the rules "
		      "linkgate-dpdk builds)")
		->check(CLI::IsMember({"ipv4", "ipv6", "linkgate"}))
		->capture_default_str();
	c->add_option("--tracestep", o.tracestep, "5-tuples per rte_acl_classify call")
		->check(CLI::Range(1, 4096))
		->capture_default_str();
	c->add_option("--lcores", o.lcores, "EAL -l: main lcore, forwarding lcore")->capture_default_str();
	c->add_option("--mem-mb", o.mem_mb, "EAL -m (0: from the pcap size)")->capture_default_str();
	c->add_option("--huge-dir", o.huge_dir,
		      "a mounted hugetlbfs: every program's memory in hugepages (default: --no-huge, 4 KiB pages)")
		->check(CLI::ExistingDirectory);
	c->add_option("--mbuf-size", o.mbuf_size, "testpmd --mbuf-size (data room; 2176 = RTE_MBUF_DEFAULT_BUF_SIZE)")
		->check(CLI::Range(256, 65535))
		->capture_default_str();
	c->add_option("--workdir", o.workdir, "where the generated state, rules, traces and pcaps go")
		->capture_default_str();
	c->add_option("--testpmd", o.testpmd, "dpdk-testpmd binary")->capture_default_str();
	c->add_option("--test-acl", o.test_acl, "dpdk-test-acl binary")->capture_default_str();
	c->add_option("--linkgate-dpdk", o.linkgate_dpdk,
		      "linkgate-dpdk binary (default: <builddir>/dataplane/linkgate-dpdk; skipped when absent)");
	c->add_option("--lg-acl-alg", o.lg_acl_alg, "linkgate-dpdk --acl-alg (default: its own default)");
	c->add_option("--lg-start-marker", o.lg_start_marker,
		      "text linkgate-dpdk prints when it starts forwarding (times the run)")
		->capture_default_str();
	c->add_option("--workloads", o.workloads,
		      "new (SYNs of flows that never see a reply: the first pass creates them, every frame takes the full "
		      "path), established (handshakes in a warm-up, then data frames)")
		->check(CLI::IsMember({"new", "established"}))
		->capture_default_str();
	c->add_option("--only", o.only, "run only these: testpmd, linkgate, acl")
		->check(CLI::IsMember({"testpmd", "linkgate", "acl"}));
	c->add_option("--seed", o.seed, "seed of the Allow/Deny mix and the flows")->capture_default_str();
	c->add_option("--json", o.json_path, "write the results as JSON here");
	c->add_option("--markdown", o.markdown_path, "write the results table as markdown here");
	c->add_flag("--generate-only", o.generate_only, "write the workload files and stop");
	c->add_flag("-q,--quiet", o.quiet, "no progress on stderr");
	return c;
}


int run_dpdk_subcommand(const std::string &cmdline)
{
	const DpdkOptions &o = g_opt;
	auto fail = [](const std::string &m) {
		std::cerr << "\nlinkgate-bench dpdk: " << m << "\n";
		return 1;
	};
	Progress prog(o.quiet);
	nlohmann::json out = result_head("dpdk", cmdline);

	std::error_code ec;
	fs::create_directories(o.workdir, ec);
	if (ec)
		return fail("cannot create " + o.workdir + ": " + ec.message());
	if (o.flows.empty() || *std::min_element(o.flows.begin(), o.flows.end()) == 0)
		return fail("--flows needs positive counts");

	// ---- the workload ------------------------------------------------------
	prog.show("workload: " + std::to_string(o.rules) + " rules from " + o.classbench);
	WorkloadOptions wo;
	wo.classbench = o.classbench;
	wo.rules = o.rules;
	wo.allow_depth = o.allow_depth;
	wo.seed = o.seed;
	auto w = build_workload(wo);
	if (!w)
		return fail(w.error());
	const Scenario &sc = wo.sc;
	std::string state_path = o.workdir + "/state.json", rules_path = o.workdir + "/acl.rules",
		    rules6_path = o.workdir + "/acl6.rules";
	if (auto s = save_state_file(state_path, w->state, false); !s)
		return fail(s.error());
	if (auto s = write_acl_rules(rules_path, w->rules); !s)
		return fail(s.error());
	if (auto s = write_acl_rules(rules6_path, w->rules, true); !s)
		return fail(s.error());

	std::vector<size_t> counts = o.flows;
	std::sort(counts.begin(), counts.end());
	counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
	size_t max_frames = counts.back();
	std::vector<FlowSet> sets;
	std::vector<Case> cases;
	for (size_t n : counts) {
		FlowSet fs_;
		fs_.flows = n;
		std::string base = o.workdir + "/flows-" + flows_label(n);
		fs_.trace = base + ".trace";
		fs_.trace6 = base + ".trace6";
		auto flows = make_flows(sc, n, o.seed);
		prog.show("workload: " + flows_label(n) + " flows: traces");
		if (auto s = write_acl_trace(fs_.trace, flows); !s)
			return fail(s.error());
		if (auto s = write_acl_trace(fs_.trace6, flows, true); !s)
			return fail(s.error());
		bool want_new = std::count(o.workloads.begin(), o.workloads.end(), "new") > 0,
		     want_est = std::count(o.workloads.begin(), o.workloads.end(), "established") > 0;
		// The SYN pcap of one frame a flow: the new-flow case and the
		// established warm-up's port 2.
		std::string syn = base + ".pcap";
		prog.show("workload: " + flows_label(n) + " flows: SYNs -> " + syn);
		if (auto s = write_pcap(syn, sc, flows, n, FrameKind::Syn); !s)
			return fail(s.error());
		std::string reply = base + "-synack.pcap";
		if (want_est) {
			prog.show("workload: " + flows_label(n) + " flows: the backends' SYN-ACKs -> " + reply);
			if (auto s = write_pcap(reply, sc, flows, n, FrameKind::Reply); !s)
				return fail(s.error());
		}
		for (bool est : {false, true}) {
			if (est ? !want_est : !want_new)
				continue;
			for (size_t frames : {n, max_frames}) {
				if (frames == max_frames && frames == n && !cases.empty() && cases.back().flows == n &&
				    cases.back().established == est)
					continue; // the largest set: one pcap
				Case c;
				c.flows = n;
				c.frames = frames;
				c.established = est;
				std::string sfx = frames == n ? "" : "-" + flows_label(frames) + "-frames";
				c.pcap = est ? base + "-data" + sfx + ".pcap" : base + sfx + ".pcap";
				if (est) {
					c.syn_pcap = syn;
					c.reply_pcap = reply;
				}
				prog.show("workload: " + c.label() + " -> " + c.pcap);
				if (c.pcap != syn)
					if (auto s = write_pcap(c.pcap, sc, flows, frames, est ? FrameKind::Data : FrameKind::Syn); !s)
						return fail(s.error());
				cases.push_back(c);
			}
		}
		// Every flow of the small sets, a spread sample of the large ones,
		// through the reference evaluator: forwarded, DNAT, by the deep rules.
		prog.show("workload: " + flows_label(n) + " flows: checking with the reference evaluator");
		fs_.checked = std::min<size_t>(n, 2000);
		auto chk = check_flows(*w, flows, fs_.checked);
		if (!chk)
			return fail(chk.error());
		fs_.admitted_by = *chk;
		if (std::count(o.workloads.begin(), o.workloads.end(), "established")) {
			prog.show("workload: " + flows_label(n) + " flows: handshakes and data with the reference evaluator");
			auto ce = check_established(*w, flows, std::min<size_t>(n, 2000));
			if (!ce)
				return fail(ce.error());
			fs_.established_checked = *ce;
		}
		sets.push_back(std::move(fs_));
	}
	std::string route = sc.backend_route + "=1," + mac_str(sc.next_hop_mac);
	// Established: the SYN-ACKs go to the clients, on the warm-up's port 2.
	std::string client_route = sc.client_subnet + "=2," + mac_str(sc.client_mac);
	size_t deny = 0;
	for (auto &r : w->state.networkSecurityGroups.front().securityRules)
		deny += r.access == "Deny";
	nlohmann::json jw = {{"classbench", o.classbench},
			     {"rules", w->rules.size()},
			     {"deny_rules", deny},
			     {"allow_rules_at", w->allow_index},
			     {"allow_rules", {w->rule_names[w->allow_index], w->rule_names[w->allow_index + 1]}},
			     {"classbench_rules_forced_allow", w->forced_allow},
			     {"classbench_rules_repeated", w->topped_up},
			     {"state", state_path},
			     {"acl_rules", rules_path},
			     {"acl_rules_ipv6_layout", rules6_path},
			     {"vnet", sc.vnet},
			     {"client_subnet", sc.client_subnet},
			     {"private_endpoint", sc.private_endpoint_ip + ":3306"},
			     {"public_endpoint", sc.public_ip + ":3306"},
			     {"backends", sc.backends},
			     {"frame", "60 bytes + FCS: Ethernet (untagged, src " + mac_str(sc.client_mac) + ", dst " +
						   mac_str(sc.port0_mac) + ") / IPv4 / TCP SYN, checksums valid"},
			     {"route", route}};
	nlohmann::json jsets = nlohmann::json::array();
	for (auto &f : sets) {
		nlohmann::json ab = nlohmann::json::object();
		for (auto &[rule, n] : f.admitted_by)
			ab[rule] = n;
		jsets.push_back({{"flows", f.flows},
				 {"trace", f.trace},
				 {"trace_ipv6_layout", f.trace6},
				 {"checked_with_reference", f.checked},
				 {"handshakes_checked_with_reference", f.established_checked},
				 {"admitted_by", ab}});
	}
	jw["flow_sets"] = jsets;
	nlohmann::json jpc = nlohmann::json::array();
	for (auto &c : cases)
		jpc.push_back({{"flows", c.flows},
			       {"frames", c.frames},
			       {"established", c.established},
			       {"pcap", c.pcap},
			       {"warmup_syn_pcap", c.syn_pcap},
			       {"warmup_synack_pcap", c.reply_pcap}});
	jw["pcaps"] = jpc;
	out["workload"] = jw;
	if (o.generate_only) {
		prog.done();
		std::cout << out.dump(2) << "\n";
		return 0;
	}

	// ---- the programs, interleaved by round --------------------------------
	std::string lg_bin = o.linkgate_dpdk.empty() ? find_linkgate_dpdk() : o.linkgate_dpdk;
	bool have_lg = !lg_bin.empty() && access(lg_bin.c_str(), X_OK) == 0 && wants(o, "linkgate");
	std::string lg_missing = lg_bin.empty()		? "linkgate-dpdk is not built (no <builddir>/dataplane/linkgate-dpdk)"
				 : !wants(o, "linkgate") ? "not requested (--only)"
							 : lg_bin + " is not executable";
	// What this linkgate-dpdk accepts: without --mbufs its pool cannot hold a
	// large pcap (net_pcap infinite_rx copies every frame into the pool).
	bool lg_mbufs = false;
	if (have_lg) {
		Eal e;
		e.lcores = o.lcores;
		e.prefix = "lgbench" + std::to_string(getpid()) + "_help";
		auto h = linkgate_help(lg_bin, e);
		lg_mbufs = h && h->find("--mbufs") != std::string::npos;
	}
	// The rte_acl rules linkgate-dpdk builds, for dpdk-test-acl (layout "linkgate").
	std::string lg_rules_path, lg_rules_why;
	size_t lg_rules_n = 0;
	uint32_t lg_rules_dir = 0; // the NSG direction of lg_rules_path
	std::string lg_bin_acl;
	if (wants(o, "acl") && std::find(o.acl_layouts.begin(), o.acl_layouts.end(), "linkgate") != o.acl_layouts.end()) {
		std::string bin = o.linkgate_dpdk.empty() ? find_linkgate_dpdk() : o.linkgate_dpdk;
		Eal e;
		e.lcores = o.lcores;
		e.mem_mb = 1024;
		e.huge_dir = o.huge_dir;
		e.prefix = "lgbench" + std::to_string(getpid()) + "_dump";
		auto d = bin.empty() ? Result<std::pair<std::string, size_t>>(err("linkgate-dpdk is not built"))
				     : linkgate_dump_acl(bin, e, state_path, sc.vnet, o.workdir + "/lg-acl-");
		if (d) {
			lg_rules_path = d->first;
			lg_rules_n = d->second;
			lg_rules_dir = uint32_t(std::strtoul(lg_rules_path.c_str() + (o.workdir + "/lg-acl-").size(), nullptr, 10));
			// Builds before --classify-trace: raw rte_acl only.
			Eal eh = e;
			eh.prefix += "help";
			auto h = linkgate_help(bin, eh);
			if (h && h->find("--classify-trace") != std::string::npos)
				lg_bin_acl = bin;
		} else {
			lg_rules_why = d.error();
		}
	}
	constexpr size_t kLgDefaultPoolFrames = 14000; // 8191 mbufs a port + 2048, less rings and bursts
	double hz = tsc_hz();
	std::vector<std::string> acl_seen;
	std::map<std::string, std::string> acl_unsupported;
	int run_no = 0;
	auto eal_for = [&](size_t frames) {
		Eal e;
		e.lcores = o.lcores;
		e.mem_mb = mem_for(o, frames);
		e.huge_dir = o.huge_dir;
		e.prefix = "lgbench" + std::to_string(getpid()) + "_" + std::to_string(run_no++);
		return e;
	};
	for (int r = 0; r < o.repeats; r++) {
		std::string round = "round " + std::to_string(r + 1) + "/" + std::to_string(o.repeats) + ", ";
		for (auto &c : cases) {
			std::string tag = round + c.label() + ": ";
			if (wants(o, "testpmd")) {
				prog.show(tag + "dpdk-testpmd io");
				auto t = run_testpmd(o.testpmd, eal_for(c.frames), c.pcap, c.frames, o.seconds, o.mbuf_size);
				if (!t)
					return fail(t.error());
				c.testpmd.push_back(*t);
			}
			if (have_lg && !lg_mbufs && c.frames > kLgDefaultPoolFrames) {
				if (r == 0)
					c.linkgate_errors.push_back(
						"not run: the " + flows_label(c.frames) +
						"-frame pcap does not fit linkgate-dpdk's mbuf pool (8191 mbufs a port + 2048), "
						"and this build has no --mbufs to size it");
			} else if (have_lg) {
				prog.show(tag + "linkgate-dpdk");
				LinkgateOptions lo;
				lo.bin = lg_bin;
				lo.state = state_path;
				lo.vnet = sc.vnet;
				lo.route = route;
				lo.flow_capacity = std::max<size_t>(c.flows + c.flows / 4, 65536);
				lo.mbufs = lg_mbufs ? c.frames + 16384 : 0;
				lo.acl_alg = o.lg_acl_alg;
				lo.start_marker = o.lg_start_marker;
				lo.seconds = o.seconds;
				lo.stats_json = o.workdir + "/linkgate-stats.json";
				if (c.established) {
					// Port 2 (client VNet) replays the SYNs once, port 3 the
					// backends' SYN-ACKs once, in step (one worker polls the
					// ports in order, a burst at a time): every flow is
					// ESTABLISHED after it; port 0's data frames then take the
					// fast path. Measured from telemetry once 98 % of 100 ms
					// of frames were fast-path frames.
					lo.extra_vdevs = {"net_pcap1,rx_pcap=" + c.syn_pcap, "net_pcap2,rx_pcap=" + c.reply_pcap};
					lo.extra_ports = {"2=" + sc.vnet, "3"};
					lo.extra_routes = {client_route};
					// ... and not before port 0's first pass, whose data
					// frames establish the flows on the full path.
					lo.warm_rx = 2 * c.flows + c.frames;
				} else {
					// New flows: measured once the first pass over the pcap
					// has created every flow, so that the table holds them
					// all; the pass itself (the inserts) is not the case.
					lo.warm_rx = c.frames;
					lo.warm_fast_share = 0;
				}
				lo.window_after_warmup = true;
				auto l = run_linkgate(lo, eal_for(c.frames + lo.flow_capacity / 2), c.pcap);
				if (!l) {
					// The peers are still measured; the error goes into the report.
					c.linkgate_errors.push_back(l.error());
					std::cerr << "\nlinkgate-bench dpdk: " << l.error() << "\n";
				} else {
					c.linkgate.push_back(*l);
					c.linkgate.back().round = size_t(r);
				}
			}
		}
		if (!wants(o, "acl"))
			continue;
		for (auto &f : sets)
			for (auto &layout : o.acl_layouts)
				for (auto &alg : o.algs) {
					std::string key = acl_key(alg, layout);
					if (acl_unsupported.count(key))
						continue;
					bool v6 = layout == "ipv6";
					if (layout == "linkgate" && lg_rules_path.empty()) {
						acl_unsupported[key] = "no rules from linkgate-dpdk --dump-acl: " + lg_rules_why;
						continue;
					}
					prog.show(round + flows_label(f.flows) + " flows: dpdk-test-acl --alg=" + alg + (v6 ? " --ipv6" : ""));
					int iter = int(std::max<size_t>(1, o.acl_packets / f.flows));
					const std::string &rf = v6 ? rules6_path : layout == "linkgate" ? lg_rules_path : rules_path;
					auto a = run_test_acl(o.test_acl, eal_for(0), rf, v6 ? f.trace6 : f.trace,
							      f.flows, alg, iter, o.tracestep, v6);
					if (!a)
						return fail(a.error());
					if (!a->supported) {
						acl_unsupported[key] = a->why;
						continue;
					}
					if (std::find(acl_seen.begin(), acl_seen.end(), key) == acl_seen.end())
						acl_seen.push_back(key);
					f.acl[key].push_back(*a);
					if (layout == "linkgate" && !lg_bin_acl.empty()) {
						prog.show(round + flows_label(f.flows) + " flows: linkgate-dpdk --classify-trace --acl-alg " + alg);
						auto l = run_linkgate_classify(lg_bin_acl, eal_for(0), state_path, sc.vnet, lg_rules_dir,
									       f.trace, alg, iter, o.tracestep);
						if (!l)
							return fail(l.error());
						if (l->supported)
							f.lg_alone[key].push_back(*l);
					}
				}
	}
	prog.done();

	// ---- ratios, each within a round ----------------------------------------
	std::vector<Ratio> ratios;
	auto find_case = [&](size_t flows, size_t frames, bool est = false) -> const Case * {
		for (auto &c : cases)
			if (c.flows == flows && c.frames == frames && c.established == est)
				return &c;
		return nullptr;
	};
	auto lg_classify = [](const Case &c) {
		std::vector<double> v;
		for (auto &l : c.linkgate)
			if (l.classify_cycles_per_pkt)
				v.push_back(*l.classify_cycles_per_pkt);
		return v;
	};
	for (auto &c : cases) {
		Ratio ra{"linkgate/testpmd " + c.label(), "linkgate-dpdk Mpps / dpdk-testpmd io Mpps, same pcap, same round",
			 {}, 0.6, true};
		for (const auto &l : c.linkgate)
			if (l.round < c.testpmd.size() && c.testpmd[l.round].mpps > 0)
				ra.per_round.push_back(l.mpps / c.testpmd[l.round].mpps);
		ratios.push_back(ra);
		Ratio rp{"linkgate/testpmd per CPU " + c.label(),
			 "the same, each Mpps divided by the CPU share its process got while forwarding", {}, 0, true};
		for (const auto &l : c.linkgate)
			if (l.round < c.testpmd.size() && c.testpmd[l.round].cpu_share > 0 && l.cpu_share > 0 &&
			    c.testpmd[l.round].mpps > 0)
				rp.per_round.push_back((l.mpps / l.cpu_share) /
						       (c.testpmd[l.round].mpps / c.testpmd[l.round].cpu_share));
		ratios.push_back(rp);
	}
	for (bool est : {false, true}) {
		if (counts.size() < 2)
			break;
		size_t lo = counts.front(), hi = counts.back();
		std::string l = flows_label(lo), h = flows_label(hi);
		const Case *same = find_case(lo, hi, est), *small = find_case(lo, lo, est), *big = find_case(hi, hi, est);
		if (!same && !small && !big)
			continue;
		std::string kind = est ? " established" : " new";
		// Rates by round, 0 where a run failed.
		auto per_round = [](const std::vector<double> &a, const std::vector<double> &b) {
			std::vector<double> v;
			for (size_t r = 0; r < a.size() && r < b.size(); r++)
				if (a[r] > 0 && b[r] > 0)
					v.push_back(a[r] / b[r]);
			return v;
		};
		auto lgm = [&](const Case *c) {
			std::vector<double> v(size_t(o.repeats), 0.0);
			if (c)
				for (auto &x : c->linkgate)
					if (x.round < v.size())
						v[x.round] = x.mpps;
			return v;
		};
		auto tpm = [](const Case *c) {
			std::vector<double> v;
			if (c)
				for (auto &x : c->testpmd)
					v.push_back(x.mpps);
			return v;
		};
		ratios.push_back({"linkgate " + h + "/" + l + kind + " flows",
				  "linkgate-dpdk Mpps, " + h + kind + " flows / " + l + kind + " flows, both pcaps of " + h +
					  " frames",
				  per_round(lgm(big), lgm(same)), 0.5, true});
		ratios.push_back({"linkgate " + h + "/" + l + kind + " flows (own pcaps)",
				  "linkgate-dpdk Mpps, " + h + kind + " flows / " + l + kind + " flows, each with its own pcap",
				  per_round(lgm(big), lgm(small)), 0, true});
		ratios.push_back({"testpmd " + h + "/" + l + " frames" + kind,
				  "dpdk-testpmd io Mpps, pcap of " + h + " frames / of " + l +
					  " (the replay's own memory cost; " + kind.substr(1) + "-flow pcaps)",
				  per_round(tpm(same), tpm(small)), 0, true});
	}
	// Classification: linkgate-dpdk's own classify cycles/packet (when it
	// reports them) against raw rte_acl on the same rules and tuples. The
	// target is read on the like-for-like row only: linkgate-dpdk's rules
	// and its algorithm, --lg-acl-alg or else rte_acl's default, the widest
	// the CPU runs (linkgate-dpdk raises the EAL's SIMD limit to 512).
	std::string lg_alg = o.lg_acl_alg;
	for (auto it = o.algs.rbegin(); lg_alg.empty() && it != o.algs.rend(); ++it)
		if (!acl_unsupported.count(acl_key(*it, "linkgate")) && !acl_unsupported.count(acl_key(*it, "ipv4")))
			lg_alg = *it;
	std::string like_for_like = acl_key(lg_alg, "linkgate");
	for (auto &f : sets) {
		const Case *c = find_case(f.flows, f.flows);
		for (auto &key : acl_seen) {
			auto it = f.acl.find(key);
			if (it == f.acl.end())
				continue;
			if (c) {
				Ratio rc{"classify/rte_acl " + key + " " + flows_label(f.flows),
					 "linkgate-dpdk classify cycles/pkt / dpdk-test-acl " + key + " cycles/pkt", {},
					 key == like_for_like ? 1.2 : 0, false};
				for (const auto &l : c->linkgate)
					if (l.round < it->second.size() && l.classify_cycles_per_pkt &&
					    it->second[l.round].cycles_per_pkt > 0)
						rc.per_round.push_back(*l.classify_cycles_per_pkt /
								       it->second[l.round].cycles_per_pkt);
				ratios.push_back(rc);
			}
			if (auto al = f.lg_alone.find(key); al != f.lg_alone.end()) {
				Ratio ra{"classifier alone/rte_acl " + key + " " + flows_label(f.flows),
					 "linkgate-dpdk --classify-trace cycles/tuple / dpdk-test-acl " + key +
						 " cycles/pkt, same trace, calls and round",
					 {}, 1.2, false};
				for (size_t r = 0; r < al->second.size() && r < it->second.size(); r++)
					if (it->second[r].cycles_per_pkt > 0)
						ra.per_round.push_back(al->second[r].cycles_per_pkt / it->second[r].cycles_per_pkt);
				ratios.push_back(ra);
			}
		}
	}

	// ---- JSON ---------------------------------------------------------------
	auto met = [](const Ratio &ra, const Spread &s, bool every) {
		double v = every ? (ra.at_least ? s.min : s.max) : s.median;
		return ra.at_least ? v >= ra.target : v <= ra.target;
	};
	std::map<std::string, bool> agreement; // case label -> linkgate-dpdk's rule hits == the reference's
	nlohmann::json jc = nlohmann::json::array();
	for (auto &c : cases) {
		nlohmann::json j = {{"label", c.label()},
				    {"flows", c.flows},
				    {"frames", c.frames},
				    {"pcap", c.pcap},
				    {"established", c.established}};
		std::vector<double> tm, tcpu, tstart, tshare;
		for (auto &t : c.testpmd) {
			tm.push_back(t.mpps);
			tcpu.push_back(t.cpu_share > 0 ? t.mpps / t.cpu_share : 0);
			tshare.push_back(t.cpu_share);
			tstart.push_back(t.startup_seconds);
		}
		Spread ts = Spread::of(tm);
		j["testpmd"] = {{"mpps", tm},
				{"spread", ts.json()},
				{"cycles_per_pkt", ts.median > 0 ? hz * Spread::of(tshare).median / (ts.median * 1e6) : 0},
				{"cpu_share", tshare},
				{"mpps_per_cpu", tcpu},
				{"startup_seconds", tstart}};
		if (have_lg) {
			// Where the reference decided every flow of the set: did
			// linkgate-dpdk admit each flow by the same NSG rule?
			nlohmann::json agree = nullptr;
			for (auto &f : sets)
				if (f.flows == c.flows && f.checked == f.flows && !c.linkgate.empty()) {
					bool same = true;
					for (auto &[rule, n] : f.admitted_by) {
						auto it = c.linkgate.front().rule_hits.find(std::string("classbench-nsg/") + rule);
						same = same && it != c.linkgate.front().rule_hits.end() && it->second == n;
					}
					agree = same;
				}
			if (!agree.is_null())
				agreement[c.label()] = agree.get<bool>();
			std::vector<double> lm, lmean, lc, lcpu, lshare, lfast, lwarm, lwin;
			nlohmann::json raw = nlohmann::json::array(), lint = nlohmann::json::array();
			for (auto &l : c.linkgate) {
				if (l.windowed) {
					lfast.push_back(l.fast_share);
					lwarm.push_back(l.warmup_seconds);
					lwin.push_back(l.window_seconds);
				}
				lm.push_back(l.mpps);
				lmean.push_back(l.mean_mpps);
				lint.push_back(l.interval_mpps);
				lc.push_back(l.cycles_per_pkt);
				lcpu.push_back(l.cpu_share > 0 ? l.mpps / l.cpu_share : 0);
				lshare.push_back(l.cpu_share);
				raw.push_back(nlohmann::json::parse(l.raw, nullptr, false));
			}
			j["linkgate"] = {{"binary", lg_bin},
					 {"acl_alg", o.lg_acl_alg.empty() ? "default" : o.lg_acl_alg},
					 {"mbufs_option", lg_mbufs},
					 {"mpps", lm},
					 {"mpps_is", "the median of one-second rates, as testpmd's"},
					 {"mpps_intervals", lint},
					 {"mpps_mean", lmean},
					 {"spread", Spread::of(lm).json()},
					 {"cycles_per_pkt", lc},
					 {"classify_cycles_per_pkt", lg_classify(c)},
					 {"mpps_per_cpu", lcpu},
					 {"cpu_share", lshare},
					 {"stats", raw},
					 {"rule_hits_match_reference", agree},
					 {"window", {{"what", c.established ? "rates between telemetry samples, the first once rx "
									      "covered the handshakes and one pass of the pcap "
									      "and fastPackets/rx of 100 ms reached 0.98"
									    : "rates between telemetry samples, the first once rx "
									      "covered one pass of the pcap (every flow made)"},
						     {"fast_share", lfast},
						     {"warmup_seconds", lwarm},
						     {"seconds", lwin}}},
					 {"errors", c.linkgate_errors}};
		} else {
			j["linkgate"] = {{"skipped", lg_missing}};
		}
		jc.push_back(j);
	}
	out["cases"] = jc;
	nlohmann::json jacl = nlohmann::json::array();
	for (auto &f : sets) {
		nlohmann::json ja = nlohmann::json::object();
		for (auto &[key, runs] : f.acl) {
			std::vector<double> cy;
			for (auto &a : runs)
				cy.push_back(a.cycles_per_pkt);
			ja[key] = {{"cycles_per_pkt", cy}, {"spread", Spread::of(cy).json()}};
			if (auto al = f.lg_alone.find(key); al != f.lg_alone.end()) {
				std::vector<double> lc;
				for (auto &a : al->second)
					lc.push_back(a.cycles_per_pkt);
				ja[key]["linkgate_classifier_alone"] = {{"cycles_per_tuple", lc}, {"spread", Spread::of(lc).json()}};
			}
		}
		jacl.push_back({{"flows", f.flows}, {"algorithms", ja}});
	}
	out["rte_acl"] = jacl;
	nlohmann::json un = nlohmann::json::object();
	for (auto &[key, why] : acl_unsupported)
		un[key] = why;
	out["rte_acl_unsupported"] = un;
	nlohmann::json jr = nlohmann::json::array();
	for (auto &ra : ratios) {
		Spread s = Spread::of(ra.per_round);
		nlohmann::json j = {{"name", ra.name}, {"what", ra.what}, {"per_round", ra.per_round}, {"spread", s.json()}};
		if (ra.target > 0) {
			j["target"] = (ra.at_least ? ">= " : "<= ") + fixed(ra.target, 1);
			if (!ra.per_round.empty()) {
				j["met_median"] = met(ra, s, false);
				j["met_every_round"] = met(ra, s, true);
			}
		}
		jr.push_back(j);
	}
	out["ratios"] = jr;
	out["params"] = {{"seconds", o.seconds},
			 {"repeats", o.repeats},
			 {"lcores", o.lcores},
			 {"mbuf_size", o.mbuf_size},
			 {"tracestep", o.tracestep},
			 {"acl_packets", o.acl_packets},
			 {"acl_layouts", o.acl_layouts},
			 {"seed", o.seed},
			 {"tsc_hz", hz},
			 {"eal", (o.huge_dir.empty() ? std::string("--no-huge") : "--huge-dir " + o.huge_dir + " --huge-unlink") +
					 " --no-pci --file-prefix <unique>, -m sized from the pcap"},
			 {"devices", "net_pcap0 rx_pcap=<pcap>,infinite_rx=1 -> net_null0 no-rx=1"}};
	if (!lg_rules_path.empty())
		out["acl_linkgate_rules"] = {{"path", lg_rules_path}, {"rules", lg_rules_n}};
	out["machine"]["loadavg_end"] = loadavg();
	out["finished"] = utc_now();

	// ---- markdown -----------------------------------------------------------
	std::string md;
	auto row = [&](std::initializer_list<std::string> cells) {
		md += "|";
		for (auto &cell : cells)
			md += " " + cell + " |";
		md += "\n";
	};
	auto ratio_text = [&](const std::string &name) {
		for (auto &ra : ratios)
			if (ra.name == name && !ra.per_round.empty())
				return spread_text(Spread::of(ra.per_round), 2);
		return std::string("—");
	};
	md += "Median [min–max] over " + std::to_string(o.repeats) + " round(s), " + fixed(o.seconds, 0) +
	      " s a run, one forwarding lcore, 60-byte frames; ratios are taken within a round. CPU share: CPU time "
	      "of the process / wall time while forwarding. Mpps of both programs: the median of one-second rates "
	      "(testpmd's printed ones, linkgate-dpdk's from its telemetry in its window), testpmd's first second "
	      "left out. cycles/pkt: testpmd TSC Hz × CPU share / pps; "
	      "linkgate-dpdk its busy cycles / rx. Per CPU: the ratio of Mpps / CPU share. New flows: SYNs of flows "
	      "that never see a reply (every frame takes the program's full path), linkgate-dpdk measured once the "
	      "first pass over the pcap has made every flow. Established flows: handshakes completed in a warm-up, "
	      "then the clients' data frames, measured once their first pass has established every flow and the "
	      "fast path decides the frames. Both in a window of telemetry samples after that warm-up (Mpps, "
	      "cycles/pkt and CPU share of that window).\n\n";
	row({"program", "case", "Mpps", "CPU share", "cycles/pkt", "ratio to testpmd", "per CPU", "target"});
	row({"---", "---", "---:", "---:", "---:", "---:", "---:", "---"});
	auto share_text = [](const std::vector<double> &v) { return v.empty() ? std::string("—") : fixed(Spread::of(v).median, 2); };
	for (auto &c : cases) {
		std::vector<double> tm, tsh;
		for (auto &t : c.testpmd) {
			tm.push_back(t.mpps);
			tsh.push_back(t.cpu_share);
		}
		Spread ts = Spread::of(tm);
		if (!tm.empty())
			row({"dpdk-testpmd io", c.label(), spread_text(ts, 2), share_text(tsh),
			     ts.median > 0 ? fixed(hz * Spread::of(tsh).median / (ts.median * 1e6), 0) : "—", "1 (baseline)", "1",
			     ""});
		if (!have_lg) {
			row({"linkgate-dpdk", c.label(), "not measured", "—", "—", "—", "—", "≥ 0.6"});
			continue;
		}
		std::vector<double> lm, lc, lsh;
		for (auto &l : c.linkgate) {
			lm.push_back(l.mpps);
			lc.push_back(l.cycles_per_pkt);
			lsh.push_back(l.cpu_share);
		}
		bool not_run = !c.linkgate_errors.empty() && c.linkgate_errors.front().rfind("not run", 0) == 0;
		row({"linkgate-dpdk", c.label(), lm.empty() ? (not_run ? "not run" : "failed") : spread_text(Spread::of(lm), 2),
		     share_text(lsh), lc.empty() ? "—" : fixed(Spread::of(lc).median, 0),
		     ratio_text("linkgate/testpmd " + c.label()), ratio_text("linkgate/testpmd per CPU " + c.label()), "≥ 0.6"});
	}
	for (auto &c : cases)
		if (!c.linkgate_errors.empty()) {
			std::string e = c.linkgate_errors.front();
			md += "\nlinkgate-dpdk, " + c.label() + ": " + e.substr(0, e.find('\n')).substr(0, 300) + "\n";
		}
	for (auto &[label, same] : agreement)
		md += "\nlinkgate-dpdk, " + label + ": NSG rule hit counters " +
		      (same ? "equal" : "**differ from**") + " the reference evaluator's rule for every flow.\n";
	for (auto &c : cases) {
		if (c.linkgate.empty())
			continue;
		std::vector<double> fs, ws;
		for (auto &l : c.linkgate) {
			fs.push_back(l.fast_share);
			ws.push_back(l.warmup_seconds);
		}
		if (c.established)
			md += "\nlinkgate-dpdk, " + c.label() + ": the fast path decided " + spread_text(Spread::of(fs), 4) +
			      " of the window's frames (fastPackets / rx); the window opened " + spread_text(Spread::of(ws), 1) +
			      " s after forwarding began (handshakes on ports 2 and 3, then the first pass of data frames, "
			      "which establishes the flows on the full path).\n";
		else
			md += "\nlinkgate-dpdk, " + c.label() + ": the window opened " + spread_text(Spread::of(ws), 1) +
			      " s after forwarding began (the first pass over the pcap, which creates the flows).\n";
	}
	if (counts.size() >= 2) {
		md += "\n";
		row({"scaling", "ratio", "target"});
		row({"---", "---:", "---"});
		for (auto &ra : ratios)
			if ((ra.name.rfind("linkgate ", 0) == 0 && ra.name.find("testpmd") == std::string::npos) ||
			    ra.name.rfind("testpmd ", 0) == 0)
				row({ra.what, have_lg || ra.name.rfind("testpmd ", 0) == 0 ? ratio_text(ra.name) : "not measured",
				     ra.target > 0 ? "≥ " + fixed(ra.target, 1) : "—"});
	}
	md += "\n";
	// In the pipeline: what the workers' batches cost a classification while
	// forwarding. Alone: the same classifier on the same trace, called as
	// dpdk-test-acl calls rte_acl (linkgate-dpdk --classify-trace).
	row({"rte_acl classify (dpdk-test-acl)", "flows", "cycles/pkt", "linkgate-dpdk in the pipeline", "ratio",
	     "linkgate-dpdk classifier alone", "ratio", "target"});
	row({"---", "---:", "---:", "---:", "---:", "---:", "---:", "---"});
	for (auto &f : sets) {
		const Case *c = find_case(f.flows, f.flows);
		std::vector<double> lcl = c ? lg_classify(*c) : std::vector<double>{};
		for (auto &key : acl_seen) {
			auto it = f.acl.find(key);
			if (it == f.acl.end())
				continue;
			std::vector<double> cy;
			for (auto &a : it->second)
				cy.push_back(a.cycles_per_pkt);
			std::vector<double> alone;
			if (auto al = f.lg_alone.find(key); al != f.lg_alone.end())
				for (auto &a : al->second)
					alone.push_back(a.cycles_per_pkt);
			bool lg_layout = key.find("linkgate-dpdk's rules") != std::string::npos;
			row({key, flows_label(f.flows), spread_text(Spread::of(cy), 1),
			     !lcl.empty() ? fixed(Spread::of(lcl).median, 1) : have_lg ? "not reported" : "not measured",
			     ratio_text("classify/rte_acl " + key + " " + flows_label(f.flows)),
			     !alone.empty() ? fixed(Spread::of(alone).median, 1) : lg_layout ? "not measured" : "—",
			     !alone.empty() ? ratio_text("classifier alone/rte_acl " + key + " " + flows_label(f.flows)) : "—",
			     "≤ 1.2"});
		}
	}
	// What the in-pipeline figure stands for: the answers and calls of a run
	// (at 1k flows, the pcap's first pass only: every call is a cold one).
	for (auto &f : sets) {
		const Case *c = find_case(f.flows, f.flows);
		if (!c)
			continue;
		std::vector<double> calls, answers;
		for (auto &l : c->linkgate) {
			auto j = nlohmann::json::parse(l.raw, nullptr, false);
			auto cl = j.is_object() ? j.find("classify") : j.end();
			if (j.is_object() && cl != j.end() && cl->is_object() && cl->value("calls", 0.0) > 0) {
				calls.push_back(cl->value("calls", 0.0));
				answers.push_back(cl->value("lookups", 0.0));
			}
		}
		if (!calls.empty())
			md += "\nlinkgate-dpdk in the pipeline, " + flows_label(f.flows) + " flows: " +
			      fixed(Spread::of(answers).median, 0) + " answers in " + fixed(Spread::of(calls).median, 0) +
			      " rte_acl calls a run (median).\n";
	}
	if (!acl_unsupported.empty()) {
		md += "\nNot available here:";
		for (auto &[key, why] : acl_unsupported)
			md += " " + key + " (" + why + ");";
		md += "\n";
	}
	if (!have_lg)
		md += "\nlinkgate-dpdk: " + lg_missing + ".\n";
	out["markdown"] = md;

	// ---- people -------------------------------------------------------------
	std::cout << "linkgate-bench dpdk: " << w->rules.size() << " NSG rules (" << deny << " Deny) from "
		  << o.classbench << ", traffic admitted by rules #" << w->allow_index + 1 << "–#" << w->allow_index + 2
		  << "\n"
		  << out["machine"]["nproc"] << " CPUs, " << std::string(out["machine"]["cpu_model"]) << "; load "
		  << loadavg() << "\n\n"
		  << md;
	for (auto &c : cases)
		for (auto &e : c.linkgate_errors)
			if (e.rfind("not run", 0) != 0)
				std::cout << "\nlinkgate-dpdk (" << c.label() << ") failed: " << e << "\n";

	if (!o.json_path.empty()) {
		std::ofstream f(o.json_path);
		f << out.dump(2) << "\n";
		f.close();
		if (!f)
			return fail("cannot write " + o.json_path);
	}
	if (!o.markdown_path.empty()) {
		std::ofstream f(o.markdown_path);
		f << md;
		f.close();
		if (!f)
			return fail("cannot write " + o.markdown_path);
	}
	return 0;
}

} // namespace lg::bench
