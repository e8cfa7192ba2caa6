#include "bench_common.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

namespace lg::bench {

std::string loadavg()
{
	std::ifstream f("/proc/loadavg");
	std::string a, b, c;
	f >> a >> b >> c;
	return a + " " + b + " " + c;
}

nlohmann::json machine()
{
	nlohmann::json m;
	m["nproc"] = sysconf(_SC_NPROCESSORS_ONLN);
	std::ifstream ci("/proc/cpuinfo");
	std::string line, model = "unknown";
	while (std::getline(ci, line))
		if (line.rfind("model name", 0) == 0) {
			auto c = line.find(':');
			model = c == std::string::npos ? line : line.substr(c + 2);
			break;
		}
	m["cpu_model"] = model;
	utsname u{};
	if (uname(&u) == 0)
		m["kernel"] = std::string(u.sysname) + " " + u.release;
	return m;
}

Spread Spread::of(std::vector<double> v)
{
	Spread s;
	if (v.empty())
		return s;
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	s.min = v.front();
	s.max = v.back();
	return s;
}

RoundRatios round_ratios(const std::vector<double> &num, const std::vector<double> &den)
{
	RoundRatios r;
	for (size_t i = 0; i < num.size() && i < den.size(); i++) {
		if (num[i] > 0 && den[i] > 0)
			r.values.push_back(num[i] / den[i]);
		else
			r.left_out++;
	}
	return r;
}

nlohmann::json Spread::json() const { return {{"median", median}, {"min", min}, {"max", max}}; }

Progress::Progress(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO)) {}

void Progress::show(const std::string &line)
{
	if (quiet_)
		return;
	if (tty_) {
		std::cerr << '\r' << line << std::string(last_ > line.size() ? last_ - line.size() : 0, ' ') << std::flush;
		last_ = line.size();
	} else {
		std::cerr << line << '\n';
	}
}

void Progress::done()
{
	if (!quiet_ && tty_ && last_)
		std::cerr << '\n';
	last_ = 0;
}

Status sh(const std::string &cmd)
{
	FILE *p = popen((cmd + " 2>&1").c_str(), "r");
	if (!p)
		return err("cannot run: " + cmd);
	std::string out;
	char buf[256];
	while (size_t n = fread(buf, 1, sizeof buf, p))
		out.append(buf, n);
	int rc = pclose(p);
	if (rc != 0)
		return err("command failed (" + std::to_string(rc) + "): " + cmd + (out.empty() ? "" : ": " + out));
	return Ok{};
}

std::string utc_now()
{
	char b[32];
	std::time_t t = std::time(nullptr);
	std::tm tm{};
	gmtime_r(&t, &tm);
	std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return b;
}

std::string fixed(double v, int decimals)
{
	char b[64];
	std::snprintf(b, sizeof b, "%.*f", decimals, v);
	return b;
}

nlohmann::json result_head(const std::string &subcommand, const std::string &cmdline)
{
	nlohmann::json out;
	out["tool"] = "linkgate-bench";
	out["subcommand"] = subcommand;
	out["command"] = cmdline;
	out["started"] = utc_now();
	out["machine"] = machine();
	out["machine"]["loadavg_start"] = loadavg();
	return out;
}

} // namespace lg::bench
