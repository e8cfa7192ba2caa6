#include "bench_netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench_common.hpp"

namespace lg::bench {

Result<Netns> Netns::create()
{
	int p[2];
	if (pipe(p) != 0)
		return err(std::string("pipe: ") + std::strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return err(std::string("fork: ") + std::strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		char ok = unshare(CLONE_NEWNET) == 0 ? 1 : 0;
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	char ok = 0;
	ssize_t n = read(p[0], &ok, 1);
	close(p[0]);
	Netns ns;
	ns.pid_ = pid;
	if (n != 1 || !ok)
		return err("cannot create a network namespace");
	ns.fd_ = open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
	if (ns.fd_ < 0)
		return err(std::string("open netns: ") + std::strerror(errno));
	if (auto st = ns.sh("ip link set lo up"); !st)
		return err(st.error());
	return ns;
}

Netns::Netns(Netns &&o) noexcept : pid_(o.pid_), fd_(o.fd_)
{
	o.pid_ = -1;
	o.fd_ = -1;
}

Netns &Netns::operator=(Netns &&o) noexcept
{
	std::swap(pid_, o.pid_);
	std::swap(fd_, o.fd_);
	return *this;
}

Netns::~Netns()
{
	if (fd_ >= 0)
		close(fd_);
	if (pid_ > 0) {
		kill(pid_, SIGKILL);
		waitpid(pid_, nullptr, 0);
	}
}

Status Netns::enter(const std::function<Status()> &fn) const
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return err(std::string("open own netns: ") + std::strerror(errno));
	if (setns(fd_, CLONE_NEWNET) != 0) {
		close(self);
		return err(std::string("setns: ") + std::strerror(errno));
	}
	Status st = fn();
	if (setns(self, CLONE_NEWNET) != 0)
		std::abort(); // cannot get back: nothing after this would be measured where it claims
	close(self);
	return st;
}

Status Netns::sh(const std::string &cmd) const
{
	return enter([&] { return lg::bench::sh(cmd); });
}

} // namespace lg::bench
