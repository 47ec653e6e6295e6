// The SwiGLU feed-forward block of Llama (Shazeer, "GLU Variants Improve Transformer"):
// down(silu(gate(x)) · up(x)). Names match Hugging Face: gate_proj, up_proj, down_proj.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/config.h"

namespace streamsink {

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& x);  // [B, T, dim] → [B, T, dim]
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

}  // namespace streamsink
