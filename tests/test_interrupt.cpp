// common/interrupt.*: the first SIGINT/SIGTERM sets the flag; a repeat within a second is the same request (as
// `timeout -s INT` sends it: to the process, then to its group) and changes nothing; a second one later ends the
// process with the signal's default action; a signal ignored when the handler is installed stays ignored. Oracles:
// the signal disposition itself (sigaction), read back after each step, and the death of a forked child.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <ctime>

#include "common/interrupt.h"

using namespace streamsink;

namespace {
void (*disposition(int sig))(int) {
  struct sigaction now {};
  sigaction(sig, nullptr, &now);
  return now.sa_handler;
}

void sleep_seconds(double s) {
  timespec t{};
  t.tv_sec = static_cast<time_t>(s);
  t.tv_nsec = static_cast<long>((s - static_cast<double>(t.tv_sec)) * 1e9);
  nanosleep(&t, nullptr);
}
}  // namespace

TEST(Interrupt, TheFirstSignalSetsTheFlagAndAnImmediateRepeatChangesNothing) {
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, nullptr, &old_int);
  sigaction(SIGTERM, nullptr, &old_term);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_IGN);  // as under nohup or in a script's background job
  install_interrupt_handler();
  EXPECT_FALSE(interrupted());
  EXPECT_EQ(interrupt_exit_code(), 1);
  EXPECT_STREQ(interrupt_signal_name(), "");
  EXPECT_NE(disposition(SIGINT), SIG_DFL);   // caught
  EXPECT_EQ(disposition(SIGTERM), SIG_IGN);  // left as the shell meant
  std::raise(SIGINT);
  EXPECT_TRUE(interrupted());
  EXPECT_EQ(interrupt_signal(), SIGINT);
  EXPECT_STREQ(interrupt_signal_name(), "SIGINT");
  EXPECT_EQ(interrupt_exit_code(), 130);
  std::raise(SIGINT);  // at once: the same request twice, so this process is still here
  std::raise(SIGTERM);  // ignored, as the shell meant
  EXPECT_EQ(interrupt_signal(), SIGINT) << "the first signal is the one reported";
  EXPECT_NE(disposition(SIGINT), SIG_DFL);
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

// A user's second Ctrl-C, a second or more after the first, ends the process at once with the signal's default
// action (exit status "killed by SIGINT"), for a stop that is slow to come.
TEST(InterruptDeathTest, ASecondSignalLaterEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const int sig : {SIGINT, SIGTERM}) {
    EXPECT_EXIT(
        {
          std::signal(SIGINT, SIG_DFL);
          std::signal(SIGTERM, SIG_DFL);
          install_interrupt_handler();
          std::raise(sig);
          std::raise(sig);
          if (!interrupted()) std::_Exit(2);
          sleep_seconds(1.2);
          std::raise(sig);
          std::_Exit(3);  // not reached
        },
        ::testing::KilledBySignal(sig), "");
  }
}
