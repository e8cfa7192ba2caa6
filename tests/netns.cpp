#include "netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <stdexcept>

namespace lg::testing {

CmdResult sh(const std::string &cmd)
{
	CmdResult r;
	FILE *p = popen((cmd + " 2>&1").c_str(), "r");
	if (!p)
		return r;
	std::array<char, 4096> buf;
	size_t n;
	while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
		r.out.append(buf.data(), n);
	int st = pclose(p);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return r;
}

Topology::Topology() : prefix_("lgt" + std::to_string(getpid()) + "-") {}

Topology::~Topology()
{
	// Deleting a namespace takes its veths (and their peers) with it. Never
	// this process: its main thread may still be inside (a std::exit from
	// another thread), and the namespaces must go all the same.
	std::string self = std::to_string(getpid());
	for (auto it = ns_.rbegin(); it != ns_.rend(); ++it)
		sh("ip netns pids " + it->second + " | grep -vx " + self + " | xargs -r kill -9; ip netns del " + it->second);
}

std::string Topology::add_ns(const std::string &name)
{
	std::string real = prefix_ + name;
	auto r = sh("ip netns add " + real);
	if (r.status != 0)
		throw std::runtime_error("ip netns add " + real + ": " + r.out);
	ns_.emplace_back(name, real); // recorded before anything else can fail: the destructor deletes it
	r = sh("ip -n " + real + " link set lo up");
	if (r.status != 0)
		throw std::runtime_error("ip -n " + real + " link set lo up: " + r.out);
	return real;
}

const std::string &Topology::real(const std::string &ns) const
{
	for (auto &[s, r] : ns_)
		if (s == ns)
			return r;
	throw std::runtime_error("no namespace " + ns);
}

void Topology::add_veth(const std::string &ns_a, const std::string &if_a, const std::string &ns_b,
			const std::string &if_b, const std::string &mac_a, const std::string &mac_b)
{
	const std::string &a = real(ns_a), &b = real(ns_b);
	std::string cmd = "ip -n " + a + " link add name " + if_a + (mac_a.empty() ? "" : " address " + mac_a) +
			  " type veth peer name " + if_b + (mac_b.empty() ? "" : " address " + mac_b) + " netns " + b +
			  " && ip -n " + a + " link set " + if_a + " up && ip -n " + b + " link set " + if_b + " up";
	auto r = sh(cmd);
	if (r.status != 0)
		throw std::runtime_error(cmd + ": " + r.out);
}

bool Topology::run(const std::string &ns, const std::string &cmd, std::string *out) const
{
	auto r = sh("ip netns exec " + real(ns) + " sh -c '" + cmd + "'");
	if (out)
		*out = r.out;
	return r.status == 0;
}

int Topology::ifindex(const std::string &ns, const std::string &ifname) const
{
	std::string out;
	if (!run(ns, "cat /sys/class/net/" + ifname + "/ifindex", &out))
		return -1;
	return std::stoi(out);
}

std::string Topology::mac(const std::string &ns, const std::string &ifname) const
{
	std::string out;
	if (!run(ns, "cat /sys/class/net/" + ifname + "/address", &out))
		return "";
	while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
		out.pop_back();
	return out;
}

int Topology::spawn_in_ns(const std::string &real_ns, const std::function<int()> &fn)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(("/run/netns/" + real_ns).c_str(), O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
			_exit(125);
		close(fd);
		// Nothing may unwind into the child's copy of GoogleTest (it would
		// run the parent's remaining tests and teardowns).
		int rc = 126;
		try {
			rc = fn();
		} catch (...) {
		}
		_exit(rc);
	}
	return pid;
}

int Topology::wait_child(int pid)
{
	int st = 0;
	if (pid <= 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int Topology::in_ns(const std::string &real_ns, const std::function<int()> &fn)
{
	return wait_child(spawn_in_ns(real_ns, fn));
}

} // namespace lg::testing
