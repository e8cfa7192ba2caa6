// linkgated's log: one line on stderr a call, "linkgated: ...", dated (UTC,
// milliseconds) unless stderr is the systemd journal, which dates every line
// itself. One write a line: the sweep thread logs too.
#pragma once

namespace lg::agent {

void log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Whether stderr is the stream systemd connected to the journal: its device
// and inode are the ones JOURNAL_STREAM ("DEV:INODE") names.
bool stderr_is_journal();

} // namespace lg::agent
