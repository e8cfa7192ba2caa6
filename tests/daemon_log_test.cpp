// The daemons' log lines (control/daemon_log.hpp): every line of a message
// prefixed, nothing cut, one write.
#include <fcntl.h>
#include <unistd.h>

#include <cstdarg>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_log.hpp"
#include "temp_dir.hpp"

namespace {

std::string format(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::string s = lg::vformat(fmt, ap);
	va_end(ap);
	return s;
}

std::vector<std::string> lines_of(const std::string &text)
{
	std::vector<std::string> v;
	std::istringstream in(text);
	for (std::string l; std::getline(in, l);)
		v.push_back(l);
	return v;
}

TEST(LogLines, FormatsWithoutCutting)
{
	EXPECT_EQ(format("gen %llu on %s", 7ull, "veth0"), "gen 7 on veth0");
	std::string big(10000, 'x');
	EXPECT_EQ(format("[%s]", big.c_str()), "[" + big + "]") << "a message over any buffer is whole";
	EXPECT_EQ(format("%s", ""), "");
}

TEST(LogLines, EveryLineOfAMessageCarriesThePrefix)
{
	const std::string d = "2026-11-30T15:12:52.123Z";
	EXPECT_EQ(lg::log_lines("linkgated", d, "started"), d + " linkgated: started\n");
	EXPECT_EQ(lg::log_lines("linkgated", "", "started"), "linkgated: started\n");
	EXPECT_EQ(lg::log_lines("linkgate-dpdk", d, "bad state:\n  line 2\n  line 3\n"),
		  d + " linkgate-dpdk: bad state:\n" + d + " linkgate-dpdk:   line 2\n" + d + " linkgate-dpdk:   line 3\n");
	EXPECT_EQ(lg::log_lines("linkgated", "", "a\n\nb"), "linkgated: a\nlinkgated: \nlinkgated: b\n");
	EXPECT_EQ(lg::log_lines("linkgated", "", ""), "linkgated: \n") << "an empty message is still a line";
}

TEST(LogLines, StderrGetsDatedLinesInOneWhole)
{
	lgtest::TempDir dir;
	std::string path = dir.path() + "/stderr";
	int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	int saved = dup(STDERR_FILENO);
	ASSERT_GE(saved, 0);
	ASSERT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	std::string big(8000, 'y');
	lg::log_to_stderr("linkgated", "first\nsecond");
	lg::log_to_stderr("linkgated", big);
	dup2(saved, STDERR_FILENO);
	close(saved);
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	auto ls = lines_of(ss.str());
	ASSERT_EQ(ls.size(), 3u) << ss.str();
	const std::regex dated(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z linkgated: (.*))");
	std::smatch m;
	ASSERT_TRUE(std::regex_match(ls[0], m, dated)) << ls[0];
	EXPECT_EQ(m[1], "first");
	ASSERT_TRUE(std::regex_match(ls[1], m, dated)) << ls[1];
	EXPECT_EQ(m[1], "second");
	ASSERT_TRUE(std::regex_match(ls[2], m, dated)) << ls[2].substr(0, 80);
	EXPECT_EQ(m[1], big);
}

} // namespace
