#include "log.hpp"

#include <cstdarg>

#include "daemon_log.hpp"

namespace lg::agent {

void log(const char *fmt, ...) noexcept
{
	va_list ap;
	va_start(ap, fmt);
	vlog_to_stderr("linkgated", fmt, ap);
	va_end(ap);
}

} // namespace lg::agent
