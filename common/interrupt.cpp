#include "common/interrupt.h"

#include <csignal>

namespace streamsink {

namespace {

volatile std::sig_atomic_t g_signal = 0;  // the last SIGINT/SIGTERM received, 0 = none

void on_signal(int sig) { g_signal = sig; }

void install(int sig) {
  struct sigaction old {};
  sigaction(sig, nullptr, &old);
  if (old.sa_handler == SIG_IGN) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  // Once: the handler gives way to the default action, so a second Ctrl-C ends a command whose stop is slow to come
  // (a long chunk). No SA_RESTART: a blocking read (chat's prompt) returns at the signal.
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

}  // namespace

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
