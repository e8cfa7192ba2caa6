#include "log.hpp"

#include <cstdarg>

#include "daemon_log.hpp"

namespace lg::agent {

void log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::string text = vformat(fmt, ap);
	va_end(ap);
	log_to_stderr("linkgated", text);
}

} // namespace lg::agent
