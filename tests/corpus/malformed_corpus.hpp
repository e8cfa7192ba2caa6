// The malformed-frame corpus (SPEC §3 steps 1–3): named frames and frame
// sequences, each with what must happen to it, over one fixed policy and
// host. Data only: a dataplane test realizes host(), commits policy(), runs
// every step of every case through its dataplane and the reference
// evaluator, compares them and checks the step's expectation.
//
//   for (auto &c : lg::corpus::malformed_cases())
//     for (auto &st : c.steps) run(st.frame, ifindex_of(st.ifindex)), check(st);
//
// Cases share one state in order (flows and fragment memories persist):
// each uses tuples and fragment ids of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "evaluator.hpp"
#include "model.hpp"
#include "packet.hpp"
#include "seed_fixture.hpp"

namespace lg::corpus {

// Template ifindexes of host(): the client VNet's side and the backend /
// Internet side.
using seed_fixture::kClientIf, seed_fixture::kBackendIf;

HostConfig host();
State policy(); // validated; lets the valid frames of the corpus through

struct Step {
	std::vector<uint8_t> frame;
	uint32_t ifindex = kClientIf; // template ifindex it arrives on
	std::optional<lg_verdict> verdict; // expected verdict, when named
	std::optional<lg_reason> reason;   // expected drop reason, when named
	// Truncations and malformed frames: neither forwarded nor sent back.
	bool never_forward = false;
	std::string what; // step label within the case
};

struct Case {
	std::string name;
	std::vector<Step> steps;
};

// Every named malformed case: truncations of valid frames of every kind at
// every byte offset, bad IHL and lengths, VLAN depth, IPv6 extension chains,
// fragments out of order and overlapping, TCP without SYN, bad data offsets,
// protocol 0, bad ICMP error quotes.
std::vector<Case> malformed_cases();

// The valid frames the corpus mutates (each forwarded or answered under
// policy()), by name.
std::vector<Case> valid_frames();

// n cases, each one valid frame with 1..4 random bytes replaced (seeded):
// no expectation beyond agreement with the evaluator.
std::vector<Case> byte_flip_cases(uint64_t seed, int n);

} // namespace lg::corpus
