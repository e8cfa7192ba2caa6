// One flow of a dataplane's flow table as JSON (linkgatectl flows): the
// same shape for the XDP program's table and linkgate-dpdk's.
#pragma once

#include <nlohmann/json.hpp>

#include "compiler.hpp"

extern "C" {
#include "lg_flow.h"
}

namespace lg {

// Names come from `live` (the generation now live); the reply key is the one
// the program builds: from the backend (or the original destination) back
// to the source, in the egress interface's VNet.
nlohmann::json flow_to_json(const lg_flow_entry &e, const CompiledTables &live);

// A fixed-size ABI struct as lower-case hex (linkgate-dpdk's dataplane.flowLog
// sends flow samples and flow-log records so: exact bytes, checked length).
std::string to_hex(const void *p, size_t n);
bool from_hex(const std::string &text, void *p, size_t n); // false: not 2n hex digits

} // namespace lg
