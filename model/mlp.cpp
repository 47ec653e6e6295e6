#include "model/mlp.h"

namespace streamsink {

MLPImpl::MLPImpl(const ModelConfig& cfg) {
  using torch::nn::LinearOptions;
  gate_proj = register_module("gate_proj", torch::nn::Linear(LinearOptions(cfg.dim, cfg.ffn_dim()).bias(false)));
  up_proj = register_module("up_proj", torch::nn::Linear(LinearOptions(cfg.dim, cfg.ffn_dim()).bias(false)));
  down_proj = register_module("down_proj", torch::nn::Linear(LinearOptions(cfg.ffn_dim(), cfg.dim).bias(false)));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

}  // namespace streamsink
