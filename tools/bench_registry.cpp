#include "bench_registry.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "bench_common.hpp"

namespace lg::bench {

std::vector<Section> &sections()
{
	static std::vector<Section> s;
	return s;
}

std::vector<Subcommand> &subcommands()
{
	static std::vector<Subcommand> s;
	return s;
}

bool register_section(Section s)
{
	auto &v = sections();
	v.push_back(std::move(s));
	std::stable_sort(v.begin(), v.end(), [](const Section &a, const Section &b) { return a.order < b.order; });
	return true;
}

bool register_subcommand(Subcommand s)
{
	subcommands().push_back(std::move(s));
	return true;
}

static Status write_file(const std::string &path, const std::string &v)
{
	std::ofstream f(path);
	f << v;
	f.close();
	if (!f)
		return err("cannot write " + path);
	return Ok{};
}

Status enter_private_host()
{
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)
		return err(std::string("unshare(CLONE_NEWNET|CLONE_NEWNS): ") + std::strerror(errno) + " (run as root)");
	if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
		return err(std::string("mount --make-rprivate /: ") + std::strerror(errno));
	// A fresh bpffs instance: pins (linkgated's, xdp-filter's, libxdp's
	// dispatcher) live and die with this mount namespace.
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
		return err(std::string("mount bpffs: ") + std::strerror(errno));
	for (auto *p : {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding",
			"/proc/sys/net/ipv6/conf/default/forwarding", "/proc/sys/net/ipv4/conf/all/rp_filter",
			"/proc/sys/net/ipv4/conf/default/rp_filter"})
		if (auto st = write_file(p, std::strstr(p, "rp_filter") ? "0" : "1"); !st)
			return st;
	if (auto st = sh("ip link set lo up"); !st)
		return st;
	return sh("ip addr flush dev lo");
}

static volatile pid_t g_child = 0;

void forward_signal(int sig)
{
	if (g_child > 0)
		kill(g_child, sig);
}

Result<nlohmann::json> run_isolated(const std::string &name, bool isolate, const std::string &workdir,
				    const std::function<Result<nlohmann::json>()> &fn)
{
	std::string out = workdir + "/" + name + ".result.json", errf = workdir + "/" + name + ".error.txt";
	std::cout.flush();
	std::cerr.flush();
	pid_t pid = fork();
	if (pid < 0)
		return err(std::string("fork: ") + std::strerror(errno));
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		Result<nlohmann::json> r = err("not run");
		try {
			if (isolate) {
				if (auto st = enter_private_host(); !st)
					r = err(st.error());
				else
					r = fn();
			} else {
				r = fn();
			}
		} catch (const std::exception &e) {
			r = err(std::string("exception: ") + e.what());
		}
		if (r) {
			std::ofstream f(out);
			f << r->dump();
			f.close();
			_exit(f ? 0 : 3);
		}
		std::ofstream f(errf);
		f << r.error();
		f.close();
		_exit(1);
	}
	g_child = pid;
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	g_child = 0;
	if (WIFSIGNALED(status))
		return err("section " + name + " killed by signal " + std::to_string(WTERMSIG(status)));
	if (WEXITSTATUS(status) != 0) {
		std::ifstream f(errf);
		std::string e((std::istreambuf_iterator<char>(f)), {});
		return err(e.empty() ? "section " + name + " exited " + std::to_string(WEXITSTATUS(status)) : e);
	}
	std::ifstream f(out);
	try {
		return nlohmann::json::parse(f);
	} catch (const std::exception &e) {
		return err("section " + name + ": unreadable result: " + e.what());
	}
}

} // namespace lg::bench
