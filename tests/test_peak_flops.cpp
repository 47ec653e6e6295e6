// The MFU denominators: the GPU data-sheet table, and the CPU's measured matmul peaks, one per training precision,
// cached per CPU model and thread count (a cache round trip with planted figures; the fp32 key of earlier versions
// still read).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/error.h"
#include "common/file_util.h"
#include "tests/helpers.h"
#include "train/peak_flops.h"

using namespace streamsink;
using streamsink::testing::TempDir;

namespace {

// Sets (or, with nullptr, unsets) one environment variable for a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// STREAMSINK_PEAK_CACHE pointed at a file in a fresh folder for one test, restored after.
class ScopedCache {
 public:
  std::string file() const { return dir_.str() + "/cpu_peak.json"; }

 private:
  TempDir dir_;
  ScopedEnv env_{"STREAMSINK_PEAK_CACHE", file().c_str()};
};

}  // namespace

TEST(PeakFlops, TheCacheFileIsPeakCacheElseUnderCacheElseUnderHome) {
  {
    ScopedEnv p("STREAMSINK_PEAK_CACHE", "/x/peaks.json"), c("STREAMSINK_CACHE", "/y");
    EXPECT_EQ(peak_cache_path(), "/x/peaks.json");
  }
  {
    ScopedEnv p("STREAMSINK_PEAK_CACHE", nullptr), c("STREAMSINK_CACHE", "/y");
    EXPECT_EQ(peak_cache_path(), "/y/cpu_peak.json");
  }
  ScopedEnv p("STREAMSINK_PEAK_CACHE", nullptr), c("STREAMSINK_CACHE", nullptr), h("HOME", "/h");
  EXPECT_EQ(peak_cache_path(), "/h/.cache/streamsink/cpu_peak.json");
}

// The tests' main points the cache beside the programs under test: the figures measured while CTest loads every core
// (tests, and the trainers they start, which inherit it) never reach the user's cache.
TEST(PeakFlops, TestsMeasureIntoTheBuildsCacheNotTheUsers) {
  const std::filesystem::path bin_dir = std::filesystem::path(streamsink::testing::streamsink_binary()).parent_path();
  const std::string ours = (bin_dir / "test-cache" / "cpu_peak.json").string();
  if (const char* given = std::getenv("STREAMSINK_PEAK_CACHE"); given && ours != given)
    GTEST_SKIP() << "the caller set STREAMSINK_PEAK_CACHE=" << given << " (kept by the tests' main)";
  EXPECT_EQ(peak_cache_path(), ours);
}

TEST(PeakFlops, KnownGpusComeFromTheDataSheetTable) {
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H100 80GB HBM3", "bf16"), 989e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H100 PCIe", "bf16"), 756e12);  // matched before the SXM row
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H200", "fp32"), 67e12);
  EXPECT_EQ(gpu_peak_flops("Some Future GPU", "bf16"), 0);  // unknown: no MFU rather than a made-up one
  // Names that contain another row's (review, session 8: L40 read as L4, the NVL parts as SXM).
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA L40", "bf16"), 181e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA L40S", "bf16"), 362e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA L4", "bf16"), 121e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H100 NVL", "bf16"), 835e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H200 NVL", "bf16"), 835e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA GH200 480GB", "bf16"), 989e12);
  EXPECT_EQ(gpu_peak_flops("Tesla V100-SXM2-16GB", "bf16"), 0);  // no bf16 tensor cores
}

TEST(PeakFlops, TheCpuCacheKeepsOneFigurePerPrecisionAndReadsTheOldFp32Key) {
  ScopedCache cache;
  const std::string cpu = cpu_model_name();
  // fp32 under the key earlier versions wrote (no precision suffix), bf16 under its own
  std::ofstream(cache.file()) << nlohmann::json{{cpu + " | threads=3", 1.5e11}, {cpu + " | threads=3 | bf16", 6.0e11}};
  const auto f = cpu_peak(3, "fp32"), b = cpu_peak(3, "bf16");
  EXPECT_TRUE(f.cached);
  EXPECT_TRUE(b.cached);
  EXPECT_DOUBLE_EQ(f.flops, 1.5e11);
  EXPECT_DOUBLE_EQ(b.flops, 6.0e11);
  EXPECT_EQ(b.precision, "bf16");
  EXPECT_THROW(cpu_peak(3, "fp16"), Error);
}

TEST(PeakFlops, AMissingPrecisionIsMeasuredAndCachedBesideTheOthers) {
  ScopedCache cache;
  const std::string cpu = cpu_model_name();
  std::ofstream(cache.file()) << nlohmann::json{{cpu + " | threads=1", 1.5e11}};
  const auto b = cpu_peak(1, "bf16");  // absent: measured (n = 1024, 2 s), then cached
  EXPECT_FALSE(b.cached);
  EXPECT_GT(b.flops, 1e8);
  auto j = nlohmann::json::parse(read_file(cache.file()));
  EXPECT_DOUBLE_EQ(j[cpu + " | threads=1"].get<double>(), 1.5e11) << "the fp32 figure is kept";
  EXPECT_DOUBLE_EQ(j[cpu + " | threads=1 | bf16"].get<double>(), b.flops);
  const auto again = cpu_peak(1, "bf16");
  EXPECT_TRUE(again.cached);
  EXPECT_DOUBLE_EQ(again.flops, b.flops);
}

// The measurement itself, in each precision: a positive figure, labelled with its precision; others refused.
// The measurement leaves the global CPU random stream where it was: the trainer measures after a resume has restored
// it, and an uninterrupted run (whose peak was cached) must draw the same numbers.
TEST(PeakFlops, MeasuringLeavesTheCpuRandomStreamAlone) {
  auto gen = at::detail::getDefaultCPUGenerator();
  gen.set_current_seed(7);
  const auto before = gen.get_state();
  (void)measure_cpu_peak(1, "fp32", 64, 0.01);
  EXPECT_TRUE(at::equal(gen.get_state(), before));
}

TEST(PeakFlops, MeasuresEachPrecisionsMatmul) {
  const auto f = measure_cpu_peak(1, "fp32", 128, 0.05), b = measure_cpu_peak(1, "bf16", 128, 0.05);
  EXPECT_GT(f.flops, 1e8);
  EXPECT_GT(b.flops, 1e8);
  EXPECT_EQ(f.precision, "fp32");
  EXPECT_EQ(b.precision, "bf16");
  EXPECT_THROW(measure_cpu_peak(1, "int8", 128, 0.05), Error);
}

TEST(PeakFlops, ARefusedMeasurementLeavesTheThreadCountAsItWas) {
  const int before = at::get_num_threads();
  EXPECT_THROW(measure_cpu_peak(before + 1, "int8", 128, 0.05), Error);
  EXPECT_EQ(at::get_num_threads(), before);
}
