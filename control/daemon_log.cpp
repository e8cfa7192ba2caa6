#include "daemon_log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "flow_log.hpp"

namespace lg {

std::string vformat(const char *fmt, va_list ap)
{
	va_list again;
	va_copy(again, ap);
	struct End {
		va_list &ap;
		~End() { va_end(ap); } // also when a string below throws
	} end{again};
	char small[512];
	int n = std::vsnprintf(small, sizeof small, fmt, ap);
	std::string s;
	if (n < 0) {
		s = fmt; // an encoding error: the format itself says what was meant
	} else if (size_t(n) < sizeof small) {
		s.assign(small, size_t(n));
	} else {
		s.resize(size_t(n) + 1);
		std::vsnprintf(s.data(), s.size(), fmt, again);
		s.resize(size_t(n));
	}
	return s;
}

std::string log_lines(std::string_view program, std::string_view date, std::string_view text)
{
	if (!text.empty() && text.back() == '\n')
		text.remove_suffix(1);
	std::string out;
	out.reserve(text.size() + 64);
	for (;;) {
		size_t nl = text.find('\n');
		if (!date.empty())
			out.append(date).push_back(' ');
		out.append(program).append(": ").append(text.substr(0, nl)).push_back('\n');
		if (nl == std::string_view::npos)
			return out;
		text.remove_prefix(nl + 1);
	}
}

bool stderr_is_journal()
{
	const char *js = std::getenv("JOURNAL_STREAM");
	unsigned long long dev = 0, ino = 0;
	struct stat st {};
	return js && std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       st.st_dev == dev && st.st_ino == ino;
}

namespace {

void write_all(const char *p, size_t n) noexcept
{
	// Errors other than EINTR end it: a log line is not worth a crash or a
	// retry loop without end.
	for (size_t off = 0; off < n;) {
		ssize_t w = ::write(STDERR_FILENO, p + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += size_t(w);
	}
}

// Out of memory: "PROGRAM: text" from a stack buffer, undated, on one line,
// cut to its size. Both entry points end here.
void vlog_without_memory(std::string_view program, const char *fmt, va_list ap) noexcept
{
	char buf[1024];
	int n = std::snprintf(buf, sizeof buf, "%.*s: ", int(program.size()), program.data());
	if (n < 0 || size_t(n) >= sizeof buf)
		return;
	int m = std::vsnprintf(buf + n, sizeof buf - size_t(n) - 1, fmt, ap);
	size_t len = m < 0 ? size_t(n) : std::min(sizeof buf - 2, size_t(n) + size_t(m));
	std::replace(buf + n, buf + len, '\n', ' '); // one line: there is no room to prefix each
	buf[len] = '\n';
	write_all(buf, len + 1);
}

void log_without_memory(std::string_view program, const char *fmt, ...) noexcept
{
	va_list ap;
	va_start(ap, fmt);
	vlog_without_memory(program, fmt, ap);
	va_end(ap);
}

} // namespace

void log_to_stderr(std::string_view program, std::string_view text) noexcept
{
	static const bool journal = stderr_is_journal();
	try {
		std::string date;
		if (!journal) {
			timespec ts{};
			clock_gettime(CLOCK_REALTIME, &ts);
			date = iso_time(uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec));
		}
		std::string out = log_lines(program, date, text);
		write_all(out.data(), out.size());
	} catch (...) {
		log_without_memory(program, "%.*s", int(std::min<size_t>(text.size(), 1024)), text.data());
	}
}

void vlog_to_stderr(std::string_view program, const char *fmt, va_list ap) noexcept
{
	va_list again;
	va_copy(again, ap);
	try {
		log_to_stderr(program, vformat(fmt, ap));
	} catch (...) {
		vlog_without_memory(program, fmt, again);
	}
	va_end(again);
}

} // namespace lg
