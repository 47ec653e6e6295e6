// ctest-labels: integration
// The executable's front door: --help, --version, unknown commands.
#include <gtest/gtest.h>

#include "tests/helpers.h"

using streamsink::testing::run_shell;
using streamsink::testing::run_streamsink;
using streamsink::testing::streamsink_binary;

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

// STREAMSINK_SDPA_CUDNN=0 (common/device.h) reaches torch's switch, and the version says so; unset, torch decides.
TEST(Cli, SdpaCudnnEnvironmentSwitchTurnsCudnnAttentionOff) {
  auto off = run_shell("STREAMSINK_SDPA_CUDNN=0 " + streamsink_binary() + " --version");
  EXPECT_EQ(off.exit_code, 0);
  EXPECT_NE(off.output.find("cuDNN attention off"), std::string::npos) << off.output;
  auto on = run_shell("env -u STREAMSINK_SDPA_CUDNN " + streamsink_binary() + " --version");
  EXPECT_NE(on.output.find("cuDNN attention allowed"), std::string::npos) << on.output;
}

// `bench-peak --device cuda` where no GPU is usable: an error that says so, not a CPU figure passed off as the GPU's.
TEST(Cli, BenchPeakOnCudaWithoutAGpuSaysSo) {
  auto v = run_streamsink("--version");
  if (v.output.find("cuda       usable") != std::string::npos) GTEST_SKIP() << "a GPU is usable here";
  auto r = run_streamsink("bench-peak --device cuda");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("bench-peak --device cuda: CUDA is not usable in this process"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("matmul_"), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandExitsNonZeroWithTheList) {
  auto r = run_streamsink("no-such-command");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown command 'no-such-command'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("commands:"), std::string::npos) << r.output;
}

// `tokenizer train` into a folder that does not exist yet makes it (as the other commands make theirs) rather than
// failing after the whole training; and it prints its own summary, not sentencepiece's INFO log (~350 lines).
TEST(Cli, TokenizerTrainMakesItsOutputFolderAndKeepsSentencepiecesLogQuiet) {
  streamsink::testing::TempDir dir;
  const std::string out = dir.str() + "/new/sub/t.model";
  auto r = streamsink::testing::run_streamsink("tokenizer train --input " + streamsink::testing::source_dir() +
                                               "/tests/data/corpus --vocab-size 1000 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::is_regular_file(out));
  EXPECT_EQ(r.output.find("LOG(INFO)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wrote " + out), std::string::npos) << r.output;
}
