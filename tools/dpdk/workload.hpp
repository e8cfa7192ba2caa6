// The DPDK benchmark's workload (docs/dpdk-performance.md): one ClassBench
// rule set lowered twice — into a linkgate State whose client subnet NSG
// holds the rules, and into the ClassBench file dpdk-test-acl reads — and
// one set of TCP flows written as a pcap for net_pcap and as a
// dpdk-test-acl trace. Everything is a pure function of the inputs and the
// seed: the same options give byte-identical files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "evaluator.hpp"
#include "model.hpp"
#include "packet.hpp"
#include "result.hpp"

namespace lg::bench::dpdk {

// One ClassBench filter (IPv4 5-tuple), already masked.
struct CbRule {
	uint32_t src = 0, dst = 0; // host order
	int src_len = 0, dst_len = 0;
	uint16_t sport_lo = 0, sport_hi = 0xffff, dport_lo = 0, dport_hi = 0xffff;
	uint8_t proto = 0, proto_mask = 0; // mask 0: any protocol
};

// Reads a ClassBench filter file ("@SRC/LEN DST/LEN LO : HI LO : HI
// PROTO/MASK ..."), gzip-compressed when the name ends in .gz.
Result<std::vector<CbRule>> read_classbench(const std::string &path, size_t max_rules);

// The fixed shape of the scenario (addresses the docs quote).
struct Scenario {
	std::string vnet = "client-vnet";
	std::string client_subnet = "10.64.0.0/16"; // NSG "classbench-nsg"
	std::string endpoint_subnet = "10.65.0.0/24";
	std::string private_endpoint_ip = "10.65.0.100"; // PEC Approved -> db1
	std::string public_ip = "40.121.158.30";          // db1, firewall admits the clients
	std::vector<std::string> backends{"192.168.20.11", "192.168.20.12"};
	std::string backend_route = "192.168.0.0/16";
	Mac port0_mac{0x02, 0x70, 0x63, 0x61, 0x70, 0x00}; // net_pcap's default MAC (port 0)
	Mac client_mac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
	Mac next_hop_mac{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}; // behind port 1
};

struct WorkloadOptions {
	std::string classbench; // rule file (.gz ok)
	size_t rules = 1000;    // NSG rules, the two allow rules included
	double allow_depth = 0.9; // where the two rules that admit the traffic sit (0..1)
	int deny_permille = 400;  // share of ClassBench rules turned into Deny
	uint64_t seed = 1;
	Scenario sc;
};

// A flow of the generated traffic (TCP SYN, client -> PE or public IP:3306).
struct Flow {
	uint32_t src, dst; // host order
	uint16_t sport, dport;
};

struct Workload {
	State state;                 // validated, defaults filled
	std::vector<CbRule> rules;   // the NSG's custom rules in priority order, as ClassBench
	std::vector<std::string> rule_names;
	size_t allow_index = 0;      // position of the first of the two admitting rules
	size_t forced_allow = 0;     // ClassBench rules that overlap the traffic, made Allow
	size_t topped_up = 0;        // filters repeated (shifted sources) when the file had too few
	HostConfig host;             // ifindex 1: port 0 (the VNet), 2: port 1 (backends)
};

Result<Workload> build_workload(const WorkloadOptions &o);

// flows distinct flows, deterministic in (count, seed): sources spread over
// the client subnet, destination port 3306, half to the private endpoint
// and half to the public IP.
std::vector<Flow> make_flows(const Scenario &sc, size_t count, uint64_t seed);

// The 60-byte (64 with FCS) Ethernet/IPv4/TCP SYN frame of a flow, as it
// arrives on port 0: dst MAC = port 0's MAC, untagged, checksums right.
std::vector<uint8_t> flow_frame(const Scenario &sc, const Flow &f);

// The established-flow workload (docs/dpdk-performance.md, "Established
// flows"): the client's data frame of a flow (TCP PSH|ACK with 6 bytes of
// payload, 60 bytes, to port 0's MAC), the backend Maglev picks for it (as
// the program and the reference evaluator do: lg_flow_hash of the original
// tuple), and that backend's SYN-ACK to the DNAT'd SYN, as it arrives on
// port 1 (src = the backend, dst = the client; the reply key of the flow).
std::vector<uint8_t> data_frame(const Scenario &sc, const Flow &f);
std::string backend_of(const Scenario &sc, const Flow &f);
std::vector<uint8_t> reply_frame(const Scenario &sc, const Flow &f);

// Files. Each returns an error naming the path.
// frames frames (0: one per flow), cycling through the flows in order, so
// that a pcap of 1M frames can carry 1k flows (the same replay footprint as
// the 1M-flow pcap).
Status write_pcap(const std::string &path, const Scenario &sc, const std::vector<Flow> &flows, size_t frames = 0);
enum class FrameKind { Syn, Data, Reply };
Status write_pcap(const std::string &path, const Scenario &sc, const std::vector<Flow> &flows, size_t frames,
		  FrameKind kind);
// mapped: the IPv6 layout of dpdk-test-acl --ipv6 with IPv4-mapped
// addresses (::ffff:a.b.c.d/96+len), the field layout linkgate-dpdk's
// classifier uses for both families (dataplane/acl.hpp AclInput).
Status write_acl_rules(const std::string &path, const std::vector<CbRule> &rules, bool mapped = false);
Status write_acl_trace(const std::string &path, const std::vector<Flow> &flows, bool mapped = false);

// Runs up to `sample` flows (spread over the list) through the reference
// evaluator, frame by frame from port 0: each must be forwarded to port 1
// with DNAT to a backend. Returns per-rule counts of the NSG rule that
// admitted them ("rule-name" -> n), or the first flow that was not.
Result<std::vector<std::pair<std::string, size_t>>> check_flows(const Workload &w, const std::vector<Flow> &flows,
								 size_t sample);

// The handshake the established workload replays, through the reference
// evaluator for up to `sample` flows (spread over the list): the SYN from
// port 0 is forwarded with DNAT to the backend backend_of() names,
// reply_frame() from port 1 is forwarded to the client, and then the data
// frame from port 0 is forwarded to port 1 with DNAT. Returns the flows
// checked, or the first that was not so.
Result<size_t> check_established(const Workload &w, const std::vector<Flow> &flows, size_t sample);

} // namespace lg::bench::dpdk
