// The GoogleTest entry shared by every suite.
#include <gtest/gtest.h>

#include "common/device.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  streamsink::apply_sdpa_env();  // STREAMSINK_SDPA_CUDNN=0 (scripts/gpu_check.sh reruns failed cuda tests with it)
  return RUN_ALL_TESTS();
}
