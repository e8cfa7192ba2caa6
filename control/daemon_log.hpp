// The daemons' log (linkgated, linkgate-dpdk): each line of a message on
// stderr as "DATE PROGRAM: text", dated in UTC to the millisecond unless
// stderr is the systemd journal, which dates every line itself. A message
// goes out in one write call, whatever its length (a pipe keeps only those
// up to PIPE_BUF whole against other writers). Logging never throws: out of
// memory, the message is cut to what a stack buffer holds, undated.
#pragma once

#include <cstdarg>
#include <string>
#include <string_view>

namespace lg {

// printf's text of fmt and ap, however long.
std::string vformat(const char *fmt, va_list ap);

// `text` as log lines: every line of it (a last newline ends the last line)
// becomes "DATE PROGRAM: line\n", or "PROGRAM: line\n" when date is empty. An
// empty text is one empty line: a message is never lost.
std::string log_lines(std::string_view program, std::string_view date, std::string_view text);

// Whether stderr is the stream systemd connected to the journal: its device
// and inode are the ones JOURNAL_STREAM ("DEV:INODE") names.
bool stderr_is_journal();

// log_lines of text on stderr, dated unless stderr_is_journal().
void log_to_stderr(std::string_view program, std::string_view text) noexcept;
// The same of printf's text of fmt and ap: each daemon's log() calls it.
void vlog_to_stderr(std::string_view program, const char *fmt, va_list ap) noexcept;

} // namespace lg
