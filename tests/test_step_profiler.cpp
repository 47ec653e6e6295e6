// ctest-labels: integration
// The step profiler (train/step_profiler.h): the --profile window's parsing, the report's arithmetic on a summary
// whose figures are known, and a real profiled run: the report names the matmuls that do the work, the trace is
// Chrome JSON, and profiling changes no number the run computes (weights bit for bit equal to an unprofiled run).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "model/safetensors.h"
#include "tests/corpus_fixture.h"
#include "train/step_profiler.h"

using namespace streamsink;
using namespace streamsink::testing;

TEST(StepProfiler, ParsesTheWindowAndRefusesAnythingElse) {
  EXPECT_EQ(parse_profile_window("5:3"), (std::pair<int64_t, int64_t>{5, 3}));
  EXPECT_EQ(parse_profile_window(""), (std::pair<int64_t, int64_t>{0, 0}));
  for (const char* bad : {"5", "0:3", "5:0", "a:b", "5:3x", ":3", "-1:2"})
    expect_error([&] { parse_profile_window(bad); }, {"--profile", bad});
}

TEST(StepProfiler, ReportsPerStepTimeBusyShareAndTheLargestFirst) {
  ProfileSummary s;
  s.steps = 4;
  s.wall_ms = 200;
  s.gpu_kernel_ms = 150;
  s.gpu_memcpy_ms = 2.5;
  s.gpu_kernels = {{"gemm_big", 10, 120}, {"softmax", 40, 20}, {"rmsnorm", 40, 10}};
  s.cpu_ops = {{"aten::mm", 30, 80}, {"aten::add", 90, 8}};
  const std::string r = format_profile(s, /*top=*/2);
  EXPECT_NE(r.find("4 step(s), 200.00 ms wall, 50.00 ms a step"), std::string::npos) << r;
  EXPECT_NE(r.find("kernels 150.00 ms (busy 75.0% of the wall time), copies and sets 2.50 ms"), std::string::npos) << r;
  EXPECT_NE(r.find("| 120.000 | 80.0 | 10 | gemm_big |"), std::string::npos) << r;  // 120 of 150 kernel ms
  EXPECT_NE(r.find("| 20.000 | 13.3 | 40 | softmax |"), std::string::npos) << r;
  EXPECT_EQ(r.find("rmsnorm"), std::string::npos) << r;                              // beyond the top 2
  EXPECT_NE(r.find("| 80.000 | 40.0 | 30 | aten::mm |"), std::string::npos) << r;   // 80 of 200 wall ms
  EXPECT_LT(r.find("gemm_big"), r.find("softmax"));

  ProfileSummary cpu_only;
  cpu_only.steps = 1;
  cpu_only.wall_ms = 10;
  EXPECT_NE(format_profile(cpu_only).find("gpu: no kernels recorded"), std::string::npos);
}

TEST(StepProfiler, AProfiledRunReportsItsMatmulsAndComputesExactlyWhatAnUnprofiledRunDoes) {
  TempDir dir;
  const std::string common = "--set train.steps=6 --set train.eval_interval=0 --set train.threads=1";
  auto plain = run_streamsink(tiny_train_args(dir.str() + "/plain", common));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  auto profiled = run_streamsink(tiny_train_args(dir.str() + "/profiled", common + " --profile 3:2"));
  ASSERT_EQ(profiled.exit_code, 0) << profiled.output;
  EXPECT_NE(profiled.output.find("profiled steps 3-4"), std::string::npos) << profiled.output;

  const std::string report = read_file(dir.str() + "/profiled/profile.txt");
  EXPECT_NE(report.find("profile: 2 step(s)"), std::string::npos) << report;
  EXPECT_NE(report.find("aten::mm"), std::string::npos) << report;
  EXPECT_NE(report.find("gpu: no kernels recorded"), std::string::npos) << report;
  const auto trace = nlohmann::json::parse(read_file(dir.str() + "/profiled/profile.json"));
  ASSERT_TRUE(trace.contains("traceEvents"));
  EXPECT_GT(trace["traceEvents"].size(), 10u);

  auto a = load_safetensors(dir.str() + "/plain/checkpoints/step_0000006/model.safetensors");
  auto b = load_safetensors(dir.str() + "/profiled/checkpoints/step_0000006/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << name;

  auto bad = run_streamsink(tiny_train_args(dir.str() + "/bad", common + " --profile 0:2"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--profile: expected FIRST:COUNT"), std::string::npos) << bad.output;
}
