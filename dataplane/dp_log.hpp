// linkgate-dpdk's log: lg::log_to_stderr as "linkgate-dpdk"
// (control/daemon_log.hpp). Not for the lcores' loops: it allocates.
#pragma once

#include <cstdarg>

#include "daemon_log.hpp"

namespace lg::dp {

inline void __attribute__((format(printf, 1, 2))) log(const char *fmt, ...) noexcept
{
	va_list ap;
	va_start(ap, fmt);
	vlog_to_stderr("linkgate-dpdk", fmt, ap);
	va_end(ap);
}

} // namespace lg::dp
