#include "host_events.hpp"

#include <cerrno>
#include <cstring>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <vector>

namespace lg::agent {

namespace {
// The kernel's NUD_VALID (include/net/neighbour.h, not in the uapi): the
// states in which a route lookup uses the neighbour's link-layer address.
constexpr unsigned kNudValid = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY;
} // namespace

HostEvents::Seen HostEvents::feed(const void *buf, size_t n)
{
	Seen s;
	// NLMSG_* want a mutable int length and an aligned start; recv buffers
	// are aligned (alignas(nlmsghdr)).
	int len = n > size_t(INT32_MAX) ? INT32_MAX : int(n);
	auto *h = static_cast<const nlmsghdr *>(buf);
	for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
		s.messages++;
		switch (h->nlmsg_type) {
		case RTM_NEWADDR:
		case RTM_DELADDR:
			s.addresses = true;
			s.fib = true;
			break;
		case RTM_NEWNEIGH:
		case RTM_DELNEIGH:
			if (neighbour(NLMSG_DATA(h), h->nlmsg_len - NLMSG_LENGTH(0), h->nlmsg_type == RTM_DELNEIGH))
				s.fib = true;
			break;
		case RTM_NEWLINK:
		case RTM_DELLINK:
			s.links = true;
			s.fib = true;
			break;
		case RTM_NEWROUTE:
		case RTM_DELROUTE:
		case RTM_NEWRULE:
		case RTM_DELRULE:
		case RTM_NEWNETCONF:
		case RTM_DELNETCONF:
		case RTM_NEWNEXTHOP: // nexthop objects: routes that use one are not announced again
		case RTM_DELNEXTHOP:
		case RTM_NEWNEXTHOPBUCKET:
		case RTM_DELNEXTHOPBUCKET:
			s.fib = true;
			break;
		default: // NLMSG_NOOP, NLMSG_DONE, groups nobody asked for
			break;
		}
	}
	if (len != 0) { // bytes left that are no whole message (a truncated read)
		neigh_.clear(); // the lost part may have changed any neighbour
		s.addresses = true;
		s.fib = true;
		s.links = true;
	}
	return s;
}

HostEvents::Seen HostEvents::lost()
{
	neigh_.clear();
	Seen s;
	s.addresses = true;
	s.fib = true;
	s.links = true;
	return s;
}

bool HostEvents::remember_neighbours(int nl_fd)
{
	struct {
		nlmsghdr h;
		ndmsg n;
	} req{};
	req.h.nlmsg_len = sizeof req;
	req.h.nlmsg_type = RTM_GETNEIGH;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.h.nlmsg_seq = 0x6e656967; // "neig": the replies of this request
	req.n.ndm_family = AF_UNSPEC; // IPv4 and IPv6 (bridge entries are not in it)
	if (send(nl_fd, &req, sizeof req, 0) != ssize_t(sizeof req))
		return false;
	// A dump's datagrams are about a page each; MSG_TRUNC tells a longer one.
	std::vector<char> buf(65536);
	for (;;) {
		pollfd p{nl_fd, POLLIN, 0};
		int pr = poll(&p, 1, 1000);
		if (pr <= 0) {
			if (pr == 0)
				errno = ETIMEDOUT;
			break;
		}
		ssize_t r = recv(nl_fd, buf.data(), buf.size(), MSG_TRUNC | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0 || size_t(r) > buf.size()) {
			if (r >= 0)
				errno = EMSGSIZE;
			break;
		}
		int len = int(r);
		bool bad = false;
		for (auto *h = reinterpret_cast<const nlmsghdr *>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq != req.h.nlmsg_seq)
				continue;
			// The table changed while it was read: what was read may mix two of its states.
			if (h->nlmsg_flags & NLM_F_DUMP_INTR) {
				errno = EINTR;
				bad = true;
				break;
			}
			// DONE's and ERROR's payload starts with an int: 0 or a negated errno.
			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				int rc = 0;
				if (h->nlmsg_len >= NLMSG_LENGTH(sizeof rc))
					std::memcpy(&rc, NLMSG_DATA(h), sizeof rc);
				if (h->nlmsg_type == NLMSG_DONE && rc == 0)
					return true;
				errno = rc < 0 ? -rc : EPROTO;
				bad = true;
				break;
			}
			if (h->nlmsg_type == RTM_NEWNEIGH)
				(void)neighbour(NLMSG_DATA(h), h->nlmsg_len - NLMSG_LENGTH(0), false);
		}
		if (bad)
			break;
	}
	int e = errno;
	neigh_.clear();
	errno = e;
	return false;
}

// One neighbour notice: true when it may change a route lookup's answer.
// A neighbour never seen before counts as changed: it may have been there,
// with another address, before the agent started reading.
bool HostEvents::neighbour(const void *msg, size_t len, bool del)
{
	if (len < NLMSG_ALIGN(sizeof(ndmsg)))
		return true;
	ndmsg nd;
	std::memcpy(&nd, msg, sizeof nd);
	// Bridge forwarding entries (AF_BRIDGE) share the group; no route
	// lookup reads them, and a bridge learns them all the time.
	if (nd.ndm_family != AF_INET && nd.ndm_family != AF_INET6)
		return false;
	Key k{nd.ndm_family, uint32_t(nd.ndm_ifindex), {}};
	Lladdr ll{};
	bool has_dst = false, has_ll = false;
	int alen = int(len - NLMSG_ALIGN(sizeof(ndmsg)));
	auto *a = reinterpret_cast<const rtattr *>(static_cast<const char *>(msg) + NLMSG_ALIGN(sizeof(ndmsg)));
	for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
		size_t pl = RTA_PAYLOAD(a);
		if (a->rta_type == NDA_DST && (pl == 4 || pl == 16)) {
			std::memcpy(k.addr.data(), RTA_DATA(a), pl);
			has_dst = true;
		} else if (a->rta_type == NDA_LLADDR && pl > 0 && pl <= ll.b.size()) {
			ll.len = uint8_t(pl);
			std::memcpy(ll.b.data(), RTA_DATA(a), pl);
			has_ll = true;
		}
	}
	if (!has_dst)
		return true;
	auto it = neigh_.find(k);
	if (!del && (nd.ndm_state & kNudValid) && has_ll) {
		if (it != neigh_.end()) {
			if (it->second == ll)
				return false; // a state change with the same address
			it->second = ll;
		} else if (neigh_.size() < kMaxNeighbours) {
			neigh_.emplace(k, ll);
		}
		return true;
	}
	if (it != neigh_.end())
		neigh_.erase(it);
	return true;
}

} // namespace lg::agent
