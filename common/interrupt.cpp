#include "common/interrupt.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <ctime>

namespace streamsink {

namespace {

// Lock-free atomics, not volatile: the handler may run on any of the process's threads (OpenMP's, CUDA's), two at
// once when two signals come together, and a lock-free atomic is what a handler may share across threads.
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free);
std::atomic<int> g_signal{0};         // the first SIGINT/SIGTERM received, 0 = none
std::atomic<int64_t> g_first_ns{0};   // when it came (CLOCK_MONOTONIC ns), 0 until its handler has stored it

void on_signal(int sig) {
  const int64_t now = monotonic_ns_signal_safe();
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig)) {  // the first
    g_first_ns.store(now);
    return;
  }
  const int64_t first = g_first_ns.load();
  // The first's time not stored yet (its handler runs on another thread right now), or this one comes within
  // kSignalRepeatNs of it: the same request, delivered twice.
  if (first == 0 || now - first < kSignalRepeatNs) return;
  // A second request: the default action, which ends the process once this handler returns (the signal is blocked
  // in this thread until then; raise() signals the calling thread). signal() and raise() are async-signal-safe.
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
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

}  // namespace

int64_t monotonic_ns_signal_safe() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + static_cast<int64_t>(t.tv_nsec);
}

void install_interrupt_handler() {
  install(SIGINT);
  install(SIGTERM);
}

bool interrupted() { return g_signal.load() != 0; }

int interrupt_signal() { return g_signal.load(); }

const char* interrupt_signal_name() {
  switch (g_signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "";
  }
}

int interrupt_exit_code() { return g_signal != 0 ? 128 + g_signal : 1; }

}  // namespace streamsink
