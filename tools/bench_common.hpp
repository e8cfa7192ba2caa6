// Shared by every linkgate-bench subcommand: the machine description, order
// statistics over interleaved rounds, progress on stderr, shell commands.
// Numbers in docs/ come from this tool's own output (STYLE habit 12).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "result.hpp"

namespace lg::bench {

// nproc, CPU model, kernel, load average: the "where" of every report.
nlohmann::json machine();
std::string loadavg();

// The head of every result: tool, subcommand, command line, start time,
// machine with its load at the start.
nlohmann::json result_head(const std::string &subcommand, const std::string &cmdline);

// Median and spread of one quantity over rounds.
struct Spread {
	double median = 0, min = 0, max = 0;
	static Spread of(std::vector<double> v);
	nlohmann::json json() const;
};

// Per-round ratios num[r] / den[r] of net costs (a case minus the harness).
// A round where either is not above zero, a net cost lost in the harness's
// noise, has no ratio: it is left out and counted rather than turned into a
// negative or infinite one (which a "<=" target would call met).
struct RoundRatios {
	std::vector<double> values;
	size_t left_out = 0;
};
RoundRatios round_ratios(const std::vector<double> &num, const std::vector<double> &den);

// One status line on stderr, rewritten in place when stderr is a terminal.
class Progress {
public:
	explicit Progress(bool quiet);
	void show(const std::string &line);
	void done();

private:
	bool quiet_, tty_;
	size_t last_ = 0;
};

// /bin/sh -c cmd; an error with its output when it does not exit 0.
Status sh(const std::string &cmd);

std::string utc_now();
std::string fixed(double v, int decimals);

} // namespace lg::bench
