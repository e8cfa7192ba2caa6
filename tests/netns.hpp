// Network namespaces and veth pairs made by one test and removed with it,
// also when the test fails. Names carry the process id so parallel test
// binaries never collide; traffic only ever flows between these namespaces.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lg::testing {

struct CmdResult {
	int status = -1; // exit status, -1 when it did not exit normally
	std::string out; // stdout and stderr
};

// /bin/sh -c cmd, output captured.
CmdResult sh(const std::string &cmd);

class Topology {
public:
	Topology();
	~Topology();
	Topology(const Topology &) = delete;
	Topology &operator=(const Topology &) = delete;

	// Create namespace `name` (the real name gets a per-process prefix);
	// loopback up. Returns the real name.
	std::string add_ns(const std::string &name);
	// A veth pair: `if_a` in namespace a, `if_b` in namespace b, both up,
	// with fixed MACs when given.
	void add_veth(const std::string &ns_a, const std::string &if_a, const std::string &ns_b, const std::string &if_b,
		      const std::string &mac_a = "", const std::string &mac_b = "");
	// Run a shell command inside a namespace; false (and the output in *out)
	// when it fails.
	bool run(const std::string &ns, const std::string &cmd, std::string *out = nullptr) const;
	int ifindex(const std::string &ns, const std::string &ifname) const;
	std::string mac(const std::string &ns, const std::string &ifname) const;
	const std::string &real(const std::string &ns) const;

	// Run fn in a child process inside namespace ns; returns its exit code
	// (fn's return value), -1 if it died.
	static int in_ns(const std::string &real_ns, const std::function<int()> &fn);
	// The same without waiting: the child's pid, for wait_child().
	static int spawn_in_ns(const std::string &real_ns, const std::function<int()> &fn);
	static int wait_child(int pid);

private:
	std::string prefix_;
	std::vector<std::pair<std::string, std::string>> ns_; // short -> real
};

} // namespace lg::testing
