// Ctrl-C and `kill` as a request to stop cleanly: a command that runs for long installs the handler, checks
// interrupted() between units of work (a token, a chunk), and stops there, leaving its outputs whole or absent.
#pragma once

#include <cstdint>

namespace streamsink {

// SIGINT and SIGTERM set the flag from now on, except a signal that was ignored when the program started (nohup, a
// background job of a script): that one stays ignored, as the shell meant. A second one a second or more after the
// first has the default action (the process ends), for a user whose stop is slow to come; one sooner is the same
// request delivered twice (`timeout -s INT` signals the process and its group) and changes nothing.
void install_interrupt_handler();
// Whether SIGINT or SIGTERM arrived since install_interrupt_handler().
bool interrupted();
// The signal that arrived (SIGINT or SIGTERM), 0 when none.
int interrupt_signal();
// Its name ("SIGINT", "SIGTERM"), "" when none.
const char* interrupt_signal_name();
// The conventional exit status for it: 128 + its number (130 for SIGINT); 1 when none.
int interrupt_exit_code();

// For handlers of their own (the launcher's): a signal that comes less than kSignalRepeatNs (a second) after the
// first is the same request delivered twice (`timeout` signals the process and then its group; srun and shells
// forward to every task), not a user's second Ctrl-C.
inline constexpr int64_t kSignalRepeatNs = 1000000000;
// CLOCK_MONOTONIC in nanoseconds (> 0); async-signal-safe (clock_gettime is, POSIX.1-2008).
int64_t monotonic_ns_signal_safe();

}  // namespace streamsink
