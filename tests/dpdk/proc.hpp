// Child processes and temporary places for the tests that run the real
// linkgate-dpdk (and linkgated): every process is killed and reaped, and
// every temp dir and EAL runtime dir removed, also when a test fails.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lg::dpdktest {

inline std::string slurp_file(const std::string &path)
{
	std::ifstream f(path);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

// A temp dir and an EAL file prefix of its own; both gone at destruction
// (the EAL leaves /var/run/dpdk/<prefix> behind, or the XDG/tmp one when
// not root).
class Scratch {
public:
	explicit Scratch(const std::string &tag)
	{
		std::string t = "/tmp/lgdpdk-" + tag + ".XXXXXX";
		std::vector<char> b(t.begin(), t.end());
		b.push_back(0);
		if (!mkdtemp(b.data()))
			throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
		dir_ = b.data();
		prefix_ = "lgt" + tag + "-" + std::to_string(getpid());
	}
	~Scratch()
	{
		std::error_code ec;
		std::filesystem::remove_all(dir_, ec);
		for (auto &d : runtime_dirs())
			std::filesystem::remove_all(d, ec);
	}
	Scratch(const Scratch &) = delete;
	Scratch &operator=(const Scratch &) = delete;
	const std::string &dir() const { return dir_; }
	std::string path(const std::string &name) const { return dir_ + "/" + name; }
	const std::string &prefix() const { return prefix_; }
	std::vector<std::string> runtime_dirs() const
	{
		std::vector<std::string> v = {"/var/run/dpdk/" + prefix_, "/tmp/dpdk/" + prefix_};
		if (const char *x = getenv("XDG_RUNTIME_DIR"))
			v.push_back(std::string(x) + "/dpdk/" + prefix_);
		return v;
	}

private:
	std::string dir_, prefix_;
};

// A child with stdout and stderr in files; SIGKILLed and reaped at
// destruction if still running.
class Proc {
public:
	Proc(std::vector<std::string> argv, const std::string &out, const std::string &err, bool stdin_null = true)
		: out_(out), err_(err)
	{
		pid_t parent = getpid();
		pid_ = fork();
		if (pid_ == 0) {
			setpgid(0, 0);
			// Out of the test's process group, so a timeout's kill of the
			// group misses it: it dies with the test instead.
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
			int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
			int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(o, 1);
			dup2(e, 2);
			if (stdin_null) {
				int n = open("/dev/null", O_RDONLY);
				dup2(n, 0);
			}
			std::vector<char *> av;
			for (auto &a : argv)
				av.push_back(a.data());
			av.push_back(nullptr);
			execv(av[0], av.data());
			std::fprintf(stderr, "exec %s failed\n", av[0]);
			_exit(127);
		}
	}
	~Proc() { kill9(); }
	Proc(const Proc &) = delete;
	Proc &operator=(const Proc &) = delete;

	pid_t pid() const { return pid_; }
	bool running()
	{
		if (pid_ <= 0)
			return false;
		int st = 0;
		if (waitpid(pid_, &st, WNOHANG) == pid_) {
			pid_ = -1;
			code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return false;
		}
		return true;
	}
	// Exit code (128 + signal when killed); -1 when still running after timeout_ms.
	int wait(int timeout_ms)
	{
		auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
		while (running()) {
			if (std::chrono::steady_clock::now() > deadline)
				return -1;
			poll(nullptr, 0, 10);
		}
		return code_;
	}
	int terminate(int timeout_ms = 10000)
	{
		if (pid_ > 0)
			kill(pid_, SIGTERM);
		int rc = wait(timeout_ms);
		if (rc == -1) {
			kill9();
			return -1;
		}
		return rc;
	}
	void kill9()
	{
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
			pid_ = -1;
			code_ = 128 + SIGKILL;
		}
	}
	std::string out() const { return slurp_file(out_); }
	std::string err() const { return slurp_file(err_); }

private:
	pid_t pid_ = -1;
	int code_ = -1;
	std::string out_, err_;
};

// Run to completion (killed after timeout_ms): exit code, stdout, stderr.
struct RunResult {
	int code;
	std::string out, err;
};
inline RunResult run(const std::vector<std::string> &argv, const std::string &scratch_dir, int timeout_ms = 30000)
{
	static int n = 0;
	std::string o = scratch_dir + "/run" + std::to_string(n) + ".out", e = scratch_dir + "/run" + std::to_string(n) + ".err";
	n++;
	Proc p(argv, o, e);
	int rc = p.wait(timeout_ms);
	if (rc == -1)
		p.kill9();
	return {rc, p.out(), p.err()};
}

// linkgate-dpdk's own lines of `text`, dated "YYYY-MM-DDTHH:MM:SS.mmmZ
// linkgate-dpdk: ..." (the EAL's and drivers' log lines have prefixes of
// their own).
inline std::vector<std::string> own_lines(const std::string &text)
{
	static const std::regex own(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z linkgate-dpdk: .*)");
	std::vector<std::string> v;
	std::stringstream ss(text);
	std::string l;
	while (std::getline(ss, l))
		if (std::regex_match(l, own))
			v.push_back(l);
	return v;
}

} // namespace lg::dpdktest
