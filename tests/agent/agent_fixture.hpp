// Runs the real linkgated on a temporary socket and state file, and talks to
// it as a raw socket client or through the real linkgatectl.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <linux/sockios.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lgtest {

using json = nlohmann::json;

inline std::string slurp(const std::string &path)
{
	std::ifstream f(path);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

// A connected client socket, or -1.
inline int connect_unix(const std::string &path)
{
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

inline bool send_all(int fd, const std::string &data)
{
	for (size_t off = 0; off < data.size();) {
		ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		off += size_t(n);
	}
	return true;
}

// One line from fd (without its newline); "" on EOF or after timeout_ms.
inline std::string read_line(int fd, int timeout_ms = 10000)
{
	std::string line;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		pollfd p{fd, POLLIN, 0};
		if (left.count() <= 0 || poll(&p, 1, int(left.count())) <= 0)
			return "";
		char c;
		ssize_t n = recv(fd, &c, 1, 0);
		if (n <= 0)
			return "";
		if (c == '\n')
			return line;
		line += c;
	}
}

// True when the peer closes fd within timeout_ms: end of stream, or a reset
// when it closed with data of ours unread. Pending data is skipped.
inline bool closed_by_peer(int fd, int timeout_ms = 10000)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		pollfd p{fd, POLLIN, 0};
		if (left.count() <= 0 || poll(&p, 1, int(left.count())) <= 0)
			return false;
		char buf[65536];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
	}
}

// True once the peer has read every byte sent on the Unix stream socket fd
// (SIOCOUTQ: what the other end has not read yet), within timeout_ms.
inline bool peer_read_all(int fd, int timeout_ms = 10000)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (;;) {
		int unread = -1;
		if (ioctl(fd, SIOCOUTQ, &unread) != 0)
			return false;
		if (unread == 0)
			return true;
		if (std::chrono::steady_clock::now() >= deadline)
			return false;
		poll(nullptr, 0, 1);
	}
}

// A connection the agent has accepted and served one request on. Retries
// while the agent is still at its connection cap (start-up probes, clients
// whose close it has not seen yet); -1 after timeout_ms.
inline int served_connection(const std::string &path, int timeout_ms = 10000)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	while (std::chrono::steady_clock::now() < deadline) {
		int fd = connect_unix(path);
		if (fd < 0)
			return -1;
		send_all(fd, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"status\"}\n");
		std::string line = read_line(fd);
		if (!line.empty() && nlohmann::json::parse(line).contains("result"))
			return fd;
		close(fd);
		poll(nullptr, 0, 10);
	}
	return -1;
}

class Daemon {
public:
	explicit Daemon(std::vector<std::string> extra = {}) : extra_(std::move(extra))
	{
		char tmpl[] = "/tmp/lgagent.XXXXXX";
		if (!mkdtemp(tmpl))
			throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
		dir_ = tmpl;
		socket_ = dir_ + "/run/linkgated.sock";
		state_ = dir_ + "/lib/state.json";
	}
	~Daemon()
	{
		stop();
		std::error_code ec;
		std::filesystem::remove_all(dir_, ec);
	}
	Daemon(const Daemon &) = delete;
	Daemon &operator=(const Daemon &) = delete;

	const std::string &dir() const { return dir_; }
	const std::string &socket_path() const { return socket_; }
	const std::string &state_path() const { return state_; }
	std::string log() const { return slurp(dir_ + "/linkgated.log"); }
	// Start linkgated in a session of its own (setsid), as a service
	// manager starts it: with autogroup scheduling it then does not share
	// the CPU share of the test's session (agent_bench --own-session).
	void set_own_session(bool on) { own_session_ = on; }
	// Another linkgated executable (a copy standing for another build).
	void set_binary(std::string path) { binary_ = std::move(path); }
	// Another --state for the next start (a mistyped one, say).
	void set_state_path(std::string path) { state_ = std::move(path); }

	// Starts linkgated; true once its socket accepts. False when it exited
	// first (exit_code() then says how).
	bool start()
	{
		pid_t parent = getpid();
		pid_ = fork();
		if (pid_ == 0) {
			// Dies with the test (a timeout kills the test's process
			// group, which an own-session agent has left).
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
			int log = open((dir_ + "/linkgated.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
			dup2(log, 2);
			if (own_session_)
				setsid();
			std::vector<std::string> args{binary_, "--state", state_, "--socket", socket_};
			args.insert(args.end(), extra_.begin(), extra_.end());
			// Not the host's default pin directory: an agent without XDP
			// refuses to start beside another's pinned programs there.
			if (std::find(extra_.begin(), extra_.end(), "--pin-dir") == extra_.end()) {
				args.push_back("--pin-dir");
				args.push_back(dir_ + "/pins");
			}
			std::vector<char *> argv;
			for (auto &a : args)
				argv.push_back(a.data());
			argv.push_back(nullptr);
			execv(binary_.c_str(), argv.data());
			_exit(127);
		}
		// Poll for the socket to accept, watching for an early exit.
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
		while (std::chrono::steady_clock::now() < deadline) {
			int st = 0;
			if (waitpid(pid_, &st, WNOHANG) == pid_) {
				pid_ = -1;
				exit_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
				return false;
			}
			int fd = connect_unix(socket_);
			if (fd >= 0) {
				close(fd);
				return true;
			}
			poll(nullptr, 0, 5);
		}
		return false;
	}

	// SIGTERM and a bounded wait, then kill -9; the exit code. SIGCONT
	// because an agent paused by the test hook handles SIGTERM only once
	// it runs again.
	int stop()
	{
		if (pid_ > 0) {
			kill(pid_, SIGTERM);
			kill(pid_, SIGCONT);
			if (wait_exit(20) < 0)
				kill9();
		}
		return exit_;
	}
	// kill -9 and reap (works on a stopped agent too).
	void kill9()
	{
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
			pid_ = -1;
			exit_ = 128 + SIGKILL;
		}
	}
	// True once the agent has stopped itself (SIGSTOP, the test pause hook).
	bool wait_stopped(int timeout_ms = 20000)
	{
		auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
		while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
			int st = 0;
			pid_t r = waitpid(pid_, &st, WNOHANG | WUNTRACED);
			if (r == pid_ && WIFSTOPPED(st))
				return true;
			if (r == pid_) {
				pid_ = -1;
				return false;
			}
			poll(nullptr, 0, 2);
		}
		return false;
	}
	pid_t pid() const { return pid_; }
	// Waits (bounded) for the agent to exit by itself; its exit code, or -1
	// if it is still running at the deadline.
	int wait_exit(int seconds)
	{
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
		while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
			int st = 0;
			if (waitpid(pid_, &st, WNOHANG) == pid_) {
				pid_ = -1;
				exit_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
				break;
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(5)); // polling a child's exit
		}
		return pid_ > 0 ? -1 : exit_;
	}

	int exit_code() const { return exit_; }
	bool running() const { return pid_ > 0; }

	// One request on a fresh connection.
	json rpc(const std::string &method, const json &params = json::object(), int id = 1) const
	{
		int fd = connect_unix(socket_);
		if (fd < 0)
			return json{{"error", "connect failed"}};
		json req{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
		send_all(fd, req.dump() + "\n");
		std::string line = read_line(fd);
		close(fd);
		return line.empty() ? json(nullptr) : json::parse(line);
	}
	uint64_t generation() const { return rpc("status").at("result").at("generation").get<uint64_t>(); }

private:
	std::vector<std::string> extra_;
	std::string binary_ = LINKGATED;
	std::string dir_, socket_, state_;
	pid_t pid_ = -1;
	int exit_ = -1;
	bool own_session_ = false;
};

} // namespace lgtest
