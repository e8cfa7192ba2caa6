#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "flow_log.hpp"

namespace lg::agent {

bool stderr_is_journal()
{
	const char *js = std::getenv("JOURNAL_STREAM");
	unsigned long long dev = 0, ino = 0;
	struct stat st {};
	return js && std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       st.st_dev == dev && st.st_ino == ino;
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
		date = iso_time(uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec)) + " ";
	}
	std::fprintf(stderr, "%slinkgated: %s\n", date.c_str(), msg);
}

} // namespace lg::agent
