#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace lg::agent {

bool stderr_is_journal()
{
	const char *js = std::getenv("JOURNAL_STREAM");
	unsigned long long dev = 0, ino = 0;
	struct stat st {};
	return js && std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       st.st_dev == dev && st.st_ino == ino;
}

std::string log_date(int64_t unix_ns)
{
	int64_t sec = unix_ns / 1000000000, ns = unix_ns % 1000000000;
	if (ns < 0) { // floor, also before 1970
		sec--;
		ns += 1000000000;
	}
	time_t s = time_t(sec);
	struct tm tm {};
	gmtime_r(&s, &tm);
	char buf[48];
	size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	std::snprintf(buf + n, sizeof buf - n, ".%03dZ", int(ns / 1000000));
	return buf;
}

void log(const char *fmt, ...)
{
	static const bool journal = stderr_is_journal();
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	std::string date;
	if (!journal) {
		timespec ts{};
		clock_gettime(CLOCK_REALTIME, &ts);
		date = log_date(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec) + " ";
	}
	std::fprintf(stderr, "%slinkgated: %s\n", date.c_str(), msg);
}

} // namespace lg::agent
