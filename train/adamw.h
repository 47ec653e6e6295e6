// AdamW (Loshchilov & Hutter) over two parameter groups: matmul weights and embeddings decay; norms and sink
// logits do not. The update is at::_fused_adamw_ (one fused kernel per group, CPU and CUDA); the state lives in
// plain tensors, so a checkpoint saves and restores it exactly.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/safetensors.h"

namespace streamsink {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  // named parameters (name → tensor requiring grad); decay is decided by name: `true` for 2-D matmul weights and
  // the embedding, `false` for norms (".*norm.weight") and sinks ("self_attn.sinks").
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions opts);
  void step(double lr);  // parameters with an undefined grad are skipped
  void zero_grad();
  int64_t steps_taken() const;

  static bool decays(const std::string& name, const at::Tensor& p);
  // State as named tensors (exp_avg.NAME, exp_avg_sq.NAME, step.NAME), CPU copies, for checkpoints.
  TensorMap state() const;
  void load_state(const TensorMap& state, const std::string& where);  // Error naming `where` on a mismatch

 private:
  struct Group {
    double weight_decay;
    std::vector<std::string> names;
    std::vector<at::Tensor> params, exp_avg, exp_avg_sq, steps;
  };
  std::vector<Group> groups_;
  AdamWOptions opts_;
};

}  // namespace streamsink
