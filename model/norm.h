// RMSNorm (Zhang & Sennrich, 2019), as in Llama: x / sqrt(mean(x²) + eps) · weight, computed in float32.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace streamsink {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] → [..., dim]
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

}  // namespace streamsink
