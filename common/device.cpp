#include "common/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#if STREAMSINK_WITH_CUDA
#include <ATen/cuda/CUDAContextLight.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"

namespace streamsink {

bool cuda_usable() { return torch::cuda::is_available(); }

void apply_sdpa_env() {
  const char* v = std::getenv("STREAMSINK_SDPA_CUDNN");
  if (v && std::string(v) == "0") at::globalContext().setSDPUseCuDNN(false);
}

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

std::vector<std::string> cuda_device_names() {
  std::vector<std::string> out;
  if (!cuda_usable()) return out;
  for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i) {
#if STREAMSINK_WITH_CUDA
    const auto* p = at::cuda::getDeviceProperties(i);
    char buf[512];
    std::snprintf(buf, sizeof buf, "%d: %s (%.1f GiB)", i, p->name, p->totalGlobalMem / double(1ull << 30));
    out.emplace_back(buf);
#else
    out.emplace_back(std::to_string(i) + ": (device names need a CUDA build of streamsink)");
#endif
  }
  return out;
}

c10::Device resolve_device(const std::string& spec, int local_rank) {
  // The rank's GPU among those this process sees: cuda:local_rank, or cuda:0 when it sees one GPU (per-task binding:
  // srun --gpus-per-task=1, or a CUDA_VISIBLE_DEVICES per rank). More ranks on a node than GPUs is an error here,
  // not NCCL's "duplicate GPU" later.
  const auto rank_gpu = [&] {
    const auto n = static_cast<int>(torch::cuda::device_count());
    if (n == 1) return c10::Device(c10::kCUDA, 0);
    if (local_rank >= n)
      throw Error("local rank " + std::to_string(local_rank) + " has no GPU of its own: this process sees " +
                  std::to_string(n) + " (start at most " + std::to_string(n) + " ranks per node, or bind one GPU " +
                  "per rank with CUDA_VISIBLE_DEVICES or srun --gpus-per-task=1)");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  };
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto") return cuda_usable() ? rank_gpu() : c10::Device(c10::kCPU);
  if (spec.rfind("cuda", 0) == 0) {
    if (!cuda_usable()) throw Error("device '" + spec + "' asked for, but CUDA is not usable in this process");
    if (spec == "cuda") return rank_gpu();
    return c10::Device(spec);
  }
  throw Error("device '" + spec + "': expected auto, cpu, cuda or cuda:N");
}

}  // namespace streamsink
