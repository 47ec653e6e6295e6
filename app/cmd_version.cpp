// `streamsink version`: our version, LibTorch's, and the devices this process can use.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>

#include "app/commands.h"
#include "common/device.h"
#include "streamsink_version.h"

namespace streamsink::app {

int cmd_version(int argc, char** argv) {
  CLI::App app{"Print streamsink's version, the LibTorch version, and the devices it sees", "streamsink version"};
  CLI11_PARSE(app, argc, argv);
  std::printf("streamsink %s\n", STREAMSINK_VERSION);
  std::printf("libtorch   %s\n", TORCH_VERSION);
  std::printf("cpu        %d threads (intra-op)\n", at::get_num_threads());
  const bool cuda = cuda_usable();
  std::printf("cuda       %s\n", cuda ? "usable" : "not usable");
  for (const auto& d : cuda_device_names()) std::printf("  device   %s\n", d.c_str());
  std::printf("sdpa       cuDNN attention %s\n",
              at::globalContext().userEnabledCuDNNSDP() ? "allowed" : "off (STREAMSINK_SDPA_CUDNN=0)");
  return 0;
}

}  // namespace streamsink::app
