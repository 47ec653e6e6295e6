// Which devices this process can use, and resolving a config's `device: auto|cpu|cuda`.
#pragma once
#include <c10/core/Device.h>

#include <string>
#include <vector>

namespace streamsink {

bool cuda_usable();
std::vector<std::string> cuda_device_names();  // "0: NVIDIA H100 80GB HBM3 (79.1 GiB)"
// "auto" → cuda:local_rank when CUDA is usable, else cpu; "cpu"; "cuda" (error when unusable); "cuda:N".
c10::Device resolve_device(const std::string& spec, int local_rank = 0);
// Waits until every kernel queued on `device` has finished (nothing to wait for on the CPU): for timing.
void synchronize(c10::Device device);

}  // namespace streamsink
