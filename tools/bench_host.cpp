#include "bench_host.hpp"

#include <net/if.h>
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

#include "bench_common.hpp"
#include "packet.hpp"

namespace lg::bench {

static Status write_file(const std::string &path, const std::string &v)
{
	std::ofstream f(path);
	f << v;
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Status enter_netns()
{
	if (unshare(CLONE_NEWNET) != 0)
		return err(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno) + " (run as root)");
	// bpf_fib_lookup says "forwarding disabled" otherwise; lo up creates the
	// local table that on-link routes need.
	for (auto *p : {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding",
			"/proc/sys/net/ipv6/conf/default/forwarding"})
		if (auto st = write_file(p, "1"); !st)
			return st;
	if (auto st = sh("ip link set lo up"); !st)
		return st;
	return sh("ip addr flush dev lo");
}

static std::string fam(const Addr &a) { return a.is_v4() ? "-4" : "-6"; }

Result<HostConfig> realize(const HostConfig &tmpl)
{
	HostConfig h = tmpl;
	std::map<uint32_t, uint32_t> m;
	std::map<uint32_t, std::string> names;
	int i = 0;
	for (auto &ifc : h.interfaces) {
		std::string n = "lgb" + std::to_string(i++);
		if (auto st = sh("ip link add " + n + " address " + mac_str(ifc.mac) + " type veth peer name " + n + "p");
		    !st)
			return err(st.error());
		if (auto st = sh("ip link set " + n + " up && ip link set " + n + "p up"); !st)
			return err(st.error());
		uint32_t real = if_nametoindex(n.c_str());
		if (!real)
			return err("no ifindex for " + n);
		m[ifc.ifindex] = real;
		names[real] = n;
		ifc.ifindex = real;
	}
	for (auto &r : h.routes) {
		r.ifindex = m[r.ifindex];
		std::string cmd = "ip " + fam(r.prefix.addr) + " route add " + r.prefix.str() + " dev " + names[r.ifindex];
		if (r.gateway)
			cmd += " via " + r.gateway->str() + " onlink";
		if (auto st = sh(cmd); !st)
			return err(st.error());
	}
	for (auto &n : h.neighbors) {
		n.ifindex = m[n.ifindex];
		if (auto st = sh("ip " + fam(n.ip) + " neigh replace " + n.ip.str() + " lladdr " + mac_str(n.mac) +
				 " nud permanent dev " + names[n.ifindex]);
		    !st)
			return err(st.error());
	}
	return h;
}

} // namespace lg::bench
