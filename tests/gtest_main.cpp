// The GoogleTest entry shared by every suite.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "common/device.h"
#include "tests/helpers.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  streamsink::apply_sdpa_env();  // STREAMSINK_SDPA_CUDNN=0 (scripts/gpu_check.sh reruns failed cuda tests with it)
  // The matmul peaks that tests (and the programs they start) measure go into a cache beside the programs, shared by
  // this build's tests, not the user's (train/peak_flops.h): measured while CTest loads every core, they are low.
  // A caller's own STREAMSINK_PEAK_CACHE is kept.
  const auto cache = std::filesystem::path(streamsink::testing::streamsink_binary()).parent_path() / "test-cache";
  setenv("STREAMSINK_PEAK_CACHE", (cache / "cpu_peak.json").c_str(), 0);
  return RUN_ALL_TESTS();
}
