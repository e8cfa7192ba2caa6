// linkgated's log: lg::log_to_stderr as "linkgated" (control/daemon_log.hpp).
#pragma once

namespace lg::agent {

void log(const char *fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

} // namespace lg::agent
