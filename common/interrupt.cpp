#include "common/interrupt.h"

#include <csignal>
#include <ctime>

namespace streamsink {

namespace {

volatile std::sig_atomic_t g_signal = 0;  // the first SIGINT/SIGTERM received, 0 = none
// When it came (CLOCK_MONOTONIC, seconds), written once by the handler before g_signal.
volatile double g_first_at = 0;

void on_signal(int sig) {
  const double now = monotonic_seconds_signal_safe();
  if (g_signal == 0) {
    g_first_at = now;
    g_signal = sig;
    return;
  }
  if (now - g_first_at < kSignalRepeatSeconds) return;  // the same request, delivered twice
  // A second request: the default action, which ends the process once this handler returns (the signal is blocked
  // until then). signal() and raise() are async-signal-safe.
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install(int sig) {
  struct sigaction old {};
  sigaction(sig, nullptr, &old);
  if (old.sa_handler == SIG_IGN) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  // No SA_RESTART: a blocking read (chat's prompt) returns at the signal.
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);  // SIGINT and SIGTERM handled one at a time: g_first_at is written by one handler
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(sig, &sa, nullptr);
}

}  // namespace

double monotonic_seconds_signal_safe() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void install_interrupt_handler() {
  install(SIGINT);
  install(SIGTERM);
}

bool interrupted() { return g_signal != 0; }

int interrupt_signal() { return g_signal; }

const char* interrupt_signal_name() {
  switch (g_signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "";
  }
}

int interrupt_exit_code() { return g_signal != 0 ? 128 + g_signal : 1; }

}  // namespace streamsink
