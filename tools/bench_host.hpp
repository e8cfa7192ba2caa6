// A private host for benchmarks: the calling process moves into a new
// network namespace (gone when the process exits, with its veths), then gets
// one veth per interface of a HostConfig with its MAC, routes and permanent
// neighbours, as tests/xdp/xdp_harness does, so that bpf_fib_lookup under
// BPF_PROG_TEST_RUN finds real next hops.
#pragma once

#include "evaluator.hpp"
#include "result.hpp"

namespace lg::bench {

// unshare(CLONE_NEWNET), forwarding on, lo up without addresses.
Status enter_netns();

// Create the interfaces, routes and neighbours of tmpl; returns the host
// with the kernel's ifindexes (interfaces in tmpl's order).
Result<HostConfig> realize(const HostConfig &tmpl);

} // namespace lg::bench
