// The three programs the DPDK benchmark drives, each as a child process on
// the same virtual devices (net_pcap with infinite_rx -> net_null) and a
// fresh EAL --file-prefix, and the parsers of their output. Every run is
// bounded: SIGINT at the planned end, SIGKILL after a grace period.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "result.hpp"

namespace lg::bench::dpdk {

struct ProcResult {
	int exit_code = -1;   // -1: killed by a signal we did not send on purpose
	bool timed_out = false; // needed SIGKILL
	std::string output;   // stdout and stderr, interleaved
	double cpu_seconds = 0; // user + system of the child (its own threads)
	double wall_seconds = 0;
	double started_after_s = 0; // when start_marker appeared
	// CPU time of the child over [start marker, SIGINT] and that window's
	// length: cpu_share = how much of a CPU it got while forwarding (1.0 for a
	// forwarding lcore that was never preempted; the main lcore sleeps).
	double window_cpu = 0, window_wall = 0;
	double cpu_share() const { return window_wall > 0 ? window_cpu / window_wall : 0; }
};

// Runs argv; sends SIGINT after interrupt_after_s (0: never) and SIGKILL
// kill_after_s later (or at kill_after_s when no SIGINT is planned).
// With start_marker, the SIGINT clock starts when that text appears in the
// output (SIGINT at start_timeout_s if it never does).
// With a hook, it is called (about every 100 ms) once the start marker
// appeared, with the child's pid and the seconds since then; true: send
// SIGINT now (the window then is the hook's own business).
using ProcHook = std::function<bool(pid_t pid, double since_start)>;
Result<ProcResult> run_process(const std::vector<std::string> &argv, double interrupt_after_s, double kill_after_s,
			       const std::string &start_marker = "", double start_timeout_s = 0,
			       const ProcHook &hook = nullptr);
// utime + stime of a live process in seconds, -1 when unreadable.
double process_cpu(pid_t pid);

// A DPDK telemetry client (the EAL's dpdk_telemetry.v2 socket of a
// --file-prefix): one command, its JSON answer.
class Telemetry {
public:
	explicit Telemetry(std::string socket_path) : path_(std::move(socket_path)) {}
	~Telemetry();
	Telemetry(const Telemetry &) = delete;
	Telemetry &operator=(const Telemetry &) = delete;
	// The object under `command` in the answer, as JSON text; empty: no
	// answer (not up yet, or gone).
	std::string query(const std::string &command);

private:
	std::string path_;
	int fd_ = -1;
};

// EAL arguments shared by every run: no hugepages, no PCI, a unique prefix.
struct Eal {
	std::string lcores = "0,1"; // main + one forwarding lcore
	int mem_mb = 512;
	std::string prefix;         // --file-prefix
	// A mounted hugetlbfs: DPDK memory in its pages (--huge-dir, files
	// unlinked at once); "": --no-huge, 4 KiB pages.
	std::string huge_dir;
	std::vector<std::string> args() const;
	// The EAL's runtime directory of this prefix (/var/run/dpdk/<prefix> for
	// root), removed after every run so that none accumulate.
	std::string runtime_dir() const;
	void remove_runtime_dir() const;
};

// The two virtual ports: 0 = net_pcap replaying `pcap` forever, 1 = net_null.
std::vector<std::string> vdev_args(const std::string &pcap);

// ---- dpdk-testpmd, io forwarding, --stats-period 1 ------------------------
struct TestpmdRun {
	std::vector<double> tx_pps; // port 1 Tx-pps, one sample a second
	double mpps = 0;            // median of the samples after the first
	uint64_t rx_total = 0, tx_total = 0;
	std::string port0_mac;
	double cpu_seconds = 0; // whole process, start-up included
	double startup_seconds = 0; // until forwarding started
	double cpu_share = 0;       // ProcResult::cpu_share of the run
};
Result<TestpmdRun> parse_testpmd(const std::string &out);
// mbuf_size: data room with headroom (testpmd --mbuf-size); RTE_MBUF_DEFAULT_BUF_SIZE
// (2176) is what rte_pktmbuf_pool_create users such as linkgate-dpdk take.
Result<TestpmdRun> run_testpmd(const std::string &bin, const Eal &eal, const std::string &pcap, size_t frames,
			       double seconds, int mbuf_size);

// ---- dpdk-test-acl --------------------------------------------------------
struct AclRun {
	std::string alg;
	bool supported = false;
	std::string why; // when not supported
	double cycles_per_pkt = 0, pps = 0;
	uint64_t packets = 0;
};
// The "search_ip5tuples @lcore ..." summary line.
std::optional<AclRun> parse_test_acl(const std::string &out);
Result<AclRun> run_test_acl(const std::string &bin, const Eal &eal, const std::string &rules, const std::string &trace,
			    size_t trace_len, const std::string &alg, int iterations, int tracestep, bool ipv6 = false);

// ---- linkgate-dpdk --------------------------------------------------------
struct LinkgateOptions {
	std::string bin, state, vnet, route; // route: "PREFIX=1,MAC"
	size_t flow_capacity = 0;          // --flows; 0: not passed
	size_t mbufs = 0;                  // --mbufs (pool size); 0: not passed
	std::string acl_alg;               // --acl-alg; "": its default
	// What it prints when its workers start forwarding (the SIGINT clock and
	// the CPU window start there; without it, SIGINT after 120 s).
	std::string start_marker = "workers, generation";
	double seconds = 5;
	std::string stats_json;
	// Established-flow workload: more devices and routes, and the rates of
	// a window that starts once the fast path decides the frames.
	std::vector<std::string> extra_vdevs;         // after the two of vdev_args()
	std::vector<std::string> extra_ports;         // --port values
	std::vector<std::string> extra_routes;        // --route values
	bool window_after_warmup = false;             // measure from telemetry, after the warm-up
	double warm_fast_share = 0.98;                // warm: fastPackets / rx over 100 ms at least this
	uint64_t warm_rx = 0;                         // ... and rx at least this (a whole pass of the pcap)
	double warmup_timeout = 90;                   // seconds
	std::string telemetry_socket;                 // <runtime dir>/dpdk_telemetry.v2
};
// linkgate-dpdk is stopped with SIGINT `seconds` after it says it forwards
// (as testpmd is), --duration being only a safety net.
struct LinkgateRun {
	size_t round = 0; // of the bench: a failed run leaves a gap, not a shift
	uint64_t rx = 0, tx = 0, dropped = 0;
	double seconds = 0, tsc_hz = 0, busy_cycles = 0;
	// The median of one-second rates, as testpmd's (mean_mpps when the run
	// gave none): tx / seconds, or the window's, is mean_mpps.
	double mpps = 0;
	double mean_mpps = 0;
	std::vector<double> interval_mpps;
	double cycles_per_pkt = 0;  // busy_cycles / rx
	std::optional<double> classify_cycles_per_pkt; // when the binary reports it
	std::map<std::string, uint64_t> reasons;
	std::map<std::string, uint64_t> rule_hits; // "nsg/rule" -> new flows it admitted (when reported)
	std::string raw; // the stats JSON as written
	double cpu_seconds = 0, wall_seconds = 0; // whole process, start-up included
	double cpu_share = 0;                     // ProcResult::cpu_share of the run
	uint64_t fast_packets = 0;                // the whole run (stats JSON)
	// window_after_warmup: the window's rates (mpps, cycles_per_pkt, cpu_share
	// above are then the window's), its fastPackets / rx, and the warm-up.
	bool windowed = false;
	double window_seconds = 0, warmup_seconds = 0, fast_share = 0;
	uint64_t window_rx = 0, window_tx = 0, window_fast = 0;
};
Result<LinkgateRun> parse_linkgate_stats(const std::string &json_text);
// `linkgate-dpdk <EAL> -- --help`: which options this build has.
Result<std::string> linkgate_help(const std::string &bin, const Eal &eal);
// linkgate-dpdk --dump-acl on `state` (port 0 in `vnet`): the file of the NSG
// direction with the most IPv4 rte_acl rules (dpdk-test-acl's format), and
// how many it holds.
Result<std::pair<std::string, size_t>> linkgate_dump_acl(const std::string &bin, const Eal &eal,
							 const std::string &state, const std::string &vnet,
							 const std::string &prefix);
// linkgate-dpdk --classify-trace: its classifier of NSG direction `dir`
// alone on a dpdk-test-acl trace, called as dpdk-test-acl calls rte_acl.
// supported == false: linkgate-dpdk refused the algorithm.
Result<AclRun> run_linkgate_classify(const std::string &bin, const Eal &eal, const std::string &state,
				     const std::string &vnet, uint32_t dir, const std::string &trace, const std::string &alg,
				     int iterations, int tracestep);
// "classify: ... N cycles/tuple" of --classify-trace.
std::optional<double> parse_linkgate_classify(const std::string &out);
Result<LinkgateRun> run_linkgate(const LinkgateOptions &o, const Eal &eal, const std::string &pcap);

} // namespace lg::bench::dpdk
