// ctest-labels: integration slow
// scripts/bench/kernels.sh end to end at toy durations: every Google Benchmark of scripts/bench/kernels.cpp runs
// its first iterations (the decode step's long stream at 16k tokens instead of 1M: 10 s in all), and the driver
// prints its table and every key=value line with a number. Skipped where the kernels program was not built: it is
// optional, built only where Google Benchmark is installed (scripts/bench/CMakeLists.txt).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/helpers.h"

using namespace streamsink::testing;

TEST(BenchKernels, EveryBenchmarkRunsAndEveryRatioIsPrinted) {
  const auto build = std::filesystem::path(streamsink_binary()).parent_path();
  if (!std::filesystem::exists(build / "scripts/bench/kernels"))
    GTEST_SKIP() << "no " << (build / "scripts/bench/kernels") << " (built where Google Benchmark is installed)";
  const auto r = run_shell("STREAMSINK_BENCH_BUILD=" + build.string() + " bash " + source_dir() +
                           "/scripts/bench/kernels.sh --quick -- --benchmark_min_time=0.001 "
                           "--benchmark_min_warmup_time=0 --long-position 16384");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string config : {"tiny", "small"})
    for (const std::string sink : {"none", "token", "zero", "logit"})
      for (const std::string bench : {"attention", "train_step"})
        EXPECT_NE(r.output.find("| " + bench + "/" + config + "/" + sink + " |"), std::string::npos)
            << bench << "/" << config << "/" << sink << "\n" << r.output;
  for (const std::string w : {"252", "1020", "4092"})
    for (const auto& row : {"decode_step/W=" + w + "/pos=full", "decode_step/W=" + w + "/pos=16k",
                                  "kvcache/W=" + w})
      EXPECT_NE(r.output.find("| " + row + " |"), std::string::npos) << row << "\n" << r.output;
  for (const std::string row : {"train_pair/tiny/zero", "train_pair/small/logit", "decode_pair/W=4092"})
    EXPECT_NE(r.output.find("| " + row + " |"), std::string::npos) << row << "\n" << r.output;
  for (const char* key : {"config=tiny train_none_tok_s=", "config=small train_none_tok_s=", "zero_over_none_train=",
                          "logit_over_none_train=", "zero_over_none_attention=", "window=252 decode_step_us=",
                          "window=4092 decode_step_us=", "decode_step_pos16k_over_posW=", "kvcache_share=",
                          "loader_over_train_small="})
    EXPECT_NE(r.output.find(key), std::string::npos) << key << "\n" << r.output;
  EXPECT_EQ(r.output.find("n/a"), std::string::npos) << r.output;
}
