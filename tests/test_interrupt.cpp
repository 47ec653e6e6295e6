// common/interrupt.*: the first SIGINT/SIGTERM sets the flag and gives the default action back (so a second one
// ends the process), and a signal ignored when the handler is installed stays ignored. The oracle is the signal
// disposition itself (sigaction), read back after each step. One test: the flag is process-wide.
#include <gtest/gtest.h>

#include <csignal>

#include "common/interrupt.h"

using namespace streamsink;

namespace {
void (*disposition(int sig))(int) {
  struct sigaction now {};
  sigaction(sig, nullptr, &now);
  return now.sa_handler;
}
}  // namespace

TEST(Interrupt, TheFirstSignalSetsTheFlagAndASecondHasTheDefaultAction) {
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
  EXPECT_EQ(disposition(SIGINT), SIG_DFL) << "a second Ctrl-C must end the process";
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}
