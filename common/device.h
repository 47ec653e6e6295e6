// Which devices this process can use, and resolving a config's `device: auto|cpu|cuda`.
#pragma once
#include <c10/core/Device.h>

#include <string>
#include <vector>

namespace streamsink {

bool cuda_usable();
std::vector<std::string> cuda_device_names();  // "0: NVIDIA H100 80GB HBM3 (79.1 GiB)"
// "auto" → the local rank's GPU when CUDA is usable, else cpu; "cpu"; "cuda" (error when unusable); "cuda:N".
// The local rank's GPU is cuda:local_rank, or cuda:0 for every rank when the process sees one GPU (per-task GPU
// binding); an Error when the local rank is past the GPUs it sees.
c10::Device resolve_device(const std::string& spec, int local_rank = 0);
// STREAMSINK_SDPA_CUDNN=0 turns off SDPA's cuDNN backend (torch 2.11 tries it first on Hopper with CUDA 13; flash,
// memory-efficient and math remain), so a GPU run can tell a cuDNN attention problem from ours. main() and the tests'
// main call it; anything but "0" leaves torch's choice alone.
void apply_sdpa_env();
// Waits until every kernel queued on `device` has finished (nothing to wait for on the CPU): for timing.
void synchronize(c10::Device device);

}  // namespace streamsink
