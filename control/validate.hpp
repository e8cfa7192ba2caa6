// Validation of a whole State against SPEC §2: limits, enums, formats and
// references. Every message starts with the object path and names the field,
// e.g. "networkSecurityGroups/web/securityRules/ssh: priority 5000 is outside 100-4096".
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "model.hpp"
#include "result.hpp"

namespace lg {

// Every problem, in state order (VNets, gateways, NSGs, NICs, private
// endpoints, servers, service tags). Empty when the state is valid.
std::vector<std::string> validate_all(const State &s);
// The first problem of validate_all, or Ok.
Status validate(const State &s);

// A DPDK dataplane's name (dataplane.register, linkgate-dpdk --name):
// 1-64 characters of A-Z a-z 0-9 . _ -
bool valid_dataplane_name(std::string_view n);

// Fills what an object created in code may leave empty, as the JSON readers
// do: every NSG's six default rules, a private endpoint's connection name, a
// server's FQDN.
void fill_defaults(State &s);

// Applies mutate to a copy of s, fills defaults, validates, and only then
// replaces s: a rejected change leaves s exactly as it was. mutate may
// return void or Status (an error from it is returned unchanged).
template <class F>
Status try_change(State &s, F &&mutate)
{
	State next = s;
	if constexpr (std::is_void_v<std::invoke_result_t<F, State &>>) {
		std::forward<F>(mutate)(next);
	} else {
		Status st = std::forward<F>(mutate)(next);
		if (!st)
			return st;
	}
	fill_defaults(next);
	if (Status v = validate(next); !v)
		return v;
	s = std::move(next);
	return Ok{};
}

} // namespace lg
