// Small builders shared by the test suites.
#pragma once

#include <string>

#include "model.hpp"

namespace lg::testing {

// A security rule with single-valued fields; source ports "*".
inline SecurityRule make_rule(const std::string &name, int prio, const std::string &dir, const std::string &access,
			      const std::string &proto, const std::string &src, const std::string &dst,
			      const std::string &dport = "*")
{
	SecurityRule r;
	r.name = name;
	r.priority = prio;
	r.direction = dir;
	r.access = access;
	r.protocol = proto;
	r.sourceAddressPrefix = src;
	r.destinationAddressPrefix = dst;
	r.sourcePortRange = "*";
	r.destinationPortRange = dport;
	return r;
}

} // namespace lg::testing
