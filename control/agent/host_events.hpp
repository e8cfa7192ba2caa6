// What the host's rtnetlink notifications mean for the XDP program's cached
// next hops (docs/agent.md, "The host's FIB"). The fast path reuses a next
// hop that the full path resolved with bpf_fib_lookup and the host-address
// check; any change of a route, nexthop object, rule, link, address,
// forwarding setting or neighbour (its link-layer address, or whether it
// has one) may change that answer. Neighbours also announce state changes that change no answer
// (REACHABLE, STALE, DELAY, PROBE with the same address); those are told
// apart here, so that a busy neighbour table does not empty every cache.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>

#include <linux/rtnetlink.h>

namespace lg::agent {

class HostEvents {
public:
	// The rtnetlink groups whose notices it reads (NETLINK_ADD_MEMBERSHIP).
	static constexpr unsigned kGroups[] = {
		RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE,   RTNLGRP_IPV6_ROUTE,
		RTNLGRP_IPV4_RULE,   RTNLGRP_IPV6_RULE,   RTNLGRP_LINK,         RTNLGRP_NEIGH,
		RTNLGRP_IPV4_NETCONF, RTNLGRP_IPV6_NETCONF, RTNLGRP_NEXTHOP,
	};
	struct Seen {
		size_t messages = 0;
		bool addresses = false; // the host's own addresses (lg_local)
		bool fib = false;       // anything a route lookup answers from
		bool links = false;     // an interface came, went or changed (its ifindex or MAC)
		Seen &operator|=(const Seen &o)
		{
			messages += o.messages;
			addresses |= o.addresses;
			fib |= o.fib;
			links |= o.links;
			return *this;
		}
	};
	// Notifications as read from the socket: n bytes of whole messages. A
	// message it cannot read through counts as a change of everything.
	Seen feed(const void *buf, size_t n);
	// Notifications were lost (ENOBUFS): everything may have changed, and
	// what it remembers of the neighbours is forgotten.
	Seen lost();
	// Reads the host's neighbour table (an RTM_GETNEIGH dump on nl_fd, a
	// NETLINK_ROUTE socket of no group) and remembers each neighbour's
	// link-layer address, without calling it a change: later notices that
	// repeat it are state changes. True when the dump was read whole; false
	// (nothing remembered, errno set) on an error or an interrupted dump.
	bool remember_neighbours(int nl_fd);
	size_t neighbours() const { return neigh_.size(); }
	// Neighbours remembered; past this, a neighbour's every notice is a change.
	static constexpr size_t kMaxNeighbours = 65536;

private:
	struct Key {
		uint8_t family;
		uint32_t ifindex;
		std::array<uint8_t, 16> addr;
		auto operator<=>(const Key &) const = default;
	};
	struct Lladdr {
		uint8_t len;
		std::array<uint8_t, 32> b;
		bool operator==(const Lladdr &) const = default;
	};
	std::map<Key, Lladdr> neigh_; // neighbours with a link-layer address, as last announced
	bool neighbour(const void *msg, size_t len, bool del);
};

} // namespace lg::agent
