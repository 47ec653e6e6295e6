// ctest-labels: integration
// The executable's front door: --help, --version, unknown commands.
#include <gtest/gtest.h>

#include "tests/helpers.h"

using streamsink::testing::run_streamsink;

TEST(Cli, HelpListsCommandsAndExitsZero) {
  auto r = run_streamsink("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("version"), std::string::npos) << r.output;
}

TEST(Cli, VersionNamesLibTorchAndCuda) {
  auto r = run_streamsink("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("libtorch   2."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cuda"), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandExitsNonZeroWithTheList) {
  auto r = run_streamsink("no-such-command");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown command 'no-such-command'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("commands:"), std::string::npos) << r.output;
}
