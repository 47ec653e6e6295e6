// bf16 autocast for a scope: what `with torch.autocast(device_type, dtype=torch.bfloat16)` does in Python. The
// matmuls (linear, bmm, SDPA) run in bf16; the ops autocast keeps in float32 (softmax, losses, reductions) and our
// own float32 islands (RMSNorm, the sink softmax: model/norm.cpp, model/attention.cpp) stay so. On CUDA, and on
// CPUs too: with AVX512_BF16 or AMX the CPU runs bf16 matmuls several times faster than fp32 (docs/benchmarks.md).
#pragma once
#include <ATen/autocast_mode.h>

namespace streamsink {

class AutocastGuard {
 public:
  AutocastGuard(bool enabled, c10::DeviceType device) : enabled_(enabled), device_(device) {
    if (!enabled_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_, prev_enabled_ = false;
  c10::DeviceType device_;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace streamsink
