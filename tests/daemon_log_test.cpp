// The daemons' log lines (control/daemon_log.hpp): every line of a message
// prefixed, nothing cut, one write; out of memory, undated and cut.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdlib>
#include <new>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_log.hpp"
#include "temp_dir.hpp"

// Every allocation of this test binary, refused while set: the logging's
// out-of-memory path, which a real daemon reaches only under memory
// pressure.
std::atomic<bool> g_refuse_new{false};

void *operator new(size_t n)
{
	if (g_refuse_new.load(std::memory_order_relaxed))
		throw std::bad_alloc();
	if (void *p = std::malloc(n ? n : 1))
		return p;
	throw std::bad_alloc();
}

// GCC pairs the free below with the operator new it sees called, not with
// this replacement's malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

void vlog(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lg::vlog_to_stderr("linkgate-dpdk", fmt, ap);
	va_end(ap);
}

// What fn writes to stderr, read back from a file.
template <class Fn> std::string stderr_of(Fn fn)
{
	lgtest::TempDir dir;
	std::string path = dir.path() + "/stderr";
	int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	EXPECT_GE(fd, 0);
	int saved = dup(STDERR_FILENO);
	EXPECT_GE(saved, 0);
	EXPECT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

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
	std::string big(8000, 'y');
	std::string out = stderr_of([&] {
		lg::log_to_stderr("linkgated", "first\nsecond");
		lg::log_to_stderr("linkgated", big);
	});
	auto ls = lines_of(out);
	ASSERT_EQ(ls.size(), 3u) << out;
	const std::regex dated(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z linkgated: (.*))");
	std::smatch m;
	ASSERT_TRUE(std::regex_match(ls[0], m, dated)) << ls[0];
	EXPECT_EQ(m[1], "first");
	ASSERT_TRUE(std::regex_match(ls[1], m, dated)) << ls[1];
	EXPECT_EQ(m[1], "second");
	ASSERT_TRUE(std::regex_match(ls[2], m, dated)) << ls[2].substr(0, 80);
	EXPECT_EQ(m[1], big);
}

TEST(LogLines, OutOfMemoryAMessageGoesOutUndatedAndCut)
{
	std::string big(5000, 'z');
	const char *long_arg = "a value long enough that formatting it must allocate";
	std::string out = stderr_of([&] {
		g_refuse_new = true;
		lg::log_to_stderr("linkgated", "no memory for the date\nsecond line");
		lg::log_to_stderr("linkgated", big);
		vlog("gen %d: %s", 7, long_arg); // vformat's own string cannot be made
		g_refuse_new = false;
	});
	auto ls = lines_of(out);
	ASSERT_EQ(ls.size(), 3u) << out.substr(0, 200);
	EXPECT_EQ(ls[0], "linkgated: no memory for the date second line") << "one line, as no line could be prefixed";
	EXPECT_EQ(ls[1], "linkgated: " + big.substr(0, 1022 - 11)) << "cut to the 1 KiB stack buffer, newline included";
	EXPECT_EQ(ls[2], std::string("linkgate-dpdk: gen 7: ") + long_arg);
	// And the same calls with memory are dated again.
	std::string dated = stderr_of([] { lg::log_to_stderr("linkgated", "back"); });
	EXPECT_NE(dated.find("Z linkgated: back\n"), std::string::npos) << dated;
}

} // namespace
