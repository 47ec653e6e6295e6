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
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

}  // namespace

void install_interrupt_handler() {
  install(SIGINT);
  install(SIGTERM);
}

bool interrupted() { return g_signal != 0; }

const char* interrupt_signal_name() {
  switch (g_signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "";
  }
}

int interrupt_exit_code() { return g_signal != 0 ? 128 + g_signal : 1; }

}  // namespace streamsink
