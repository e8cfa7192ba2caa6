// Extra network namespaces for a benchmark section (which already runs in a
// private one, bench_registry.hpp): each is held by a child process that
// dies with the section (PR_SET_PDEATHSIG), so the namespace and its veths
// go away however the section ends.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "result.hpp"

namespace lg::bench {

class Netns {
public:
	static Result<Netns> create();
	Netns() = default;
	Netns(Netns &&o) noexcept;
	Netns &operator=(Netns &&o) noexcept;
	~Netns();
	pid_t pid() const { return pid_; }
	int fd() const { return fd_; }
	// Run fn with the calling thread in this namespace (children it forks
	// inherit it), then switch back.
	Status enter(const std::function<Status()> &fn) const;
	// /bin/sh -c cmd inside the namespace.
	Status sh(const std::string &cmd) const;

private:
	pid_t pid_ = -1;
	int fd_ = -1;
};

} // namespace lg::bench
