#include "train/adamw.h"

#include <torch/utils.h>

#include "common/error.h"

namespace streamsink {

bool AdamW::decays(const std::string& name, const at::Tensor& p) {
  if (name.find("norm") != std::string::npos || name.find("sinks") != std::string::npos) return false;
  return p.dim() >= 2;
}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions opts) : opts_(opts) {
  groups_.resize(2);
  groups_[0].weight_decay = opts.weight_decay;  // decayed
  groups_[1].weight_decay = 0.0;                // not decayed
  for (auto& [name, p] : params) {
    auto& g = groups_[decays(name, p) ? 0 : 1];
    g.names.push_back(name);
    g.params.push_back(p);
    g.exp_avg.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
    g.exp_avg_sq.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
    g.steps.push_back(at::zeros({}, p.options().dtype(p.scalar_type() == at::kDouble ? at::kDouble : at::kFloat)));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    std::vector<at::Tensor> params, grads, m, v, steps;
    for (size_t i = 0; i < g.params.size(); ++i) {
      if (!g.params[i].grad().defined()) continue;
      params.push_back(g.params[i]);
      grads.push_back(g.params[i].grad());
      m.push_back(g.exp_avg[i]);
      v.push_back(g.exp_avg_sq[i]);
      steps.push_back(g.steps[i]);
    }
    if (params.empty()) continue;
    at::_foreach_add_(steps, 1);  // the fused kernel reads the step count, it does not advance it
    at::_fused_adamw_(params, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, opts_.beta1, opts_.beta2,
                      g.weight_decay, opts_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
}

void AdamW::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params)
      if (p.grad().defined()) p.mutable_grad().zero_();
}

int64_t AdamW::steps_taken() const {
  for (const auto& g : groups_)
    if (!g.steps.empty()) return static_cast<int64_t>(g.steps[0].item<double>());
  return 0;
}

TensorMap AdamW::state() const {
  TensorMap out;
  for (const auto& g : groups_)
    for (size_t i = 0; i < g.names.size(); ++i) {
      out["exp_avg." + g.names[i]] = g.exp_avg[i].detach().to(at::kCPU);
      out["exp_avg_sq." + g.names[i]] = g.exp_avg_sq[i].detach().to(at::kCPU);
      out["step." + g.names[i]] = g.steps[i].detach().to(at::kCPU);
    }
  return out;
}

void AdamW::load_state(const TensorMap& state, const std::string& where) {
  torch::NoGradGuard no_grad;
  size_t used = 0;
  for (auto& g : groups_)
    for (size_t i = 0; i < g.names.size(); ++i) {
      for (auto [prefix, dst] : {std::pair<const char*, at::Tensor*>{"exp_avg.", &g.exp_avg[i]},
                                 {"exp_avg_sq.", &g.exp_avg_sq[i]},
                                 {"step.", &g.steps[i]}}) {
        auto it = state.find(prefix + g.names[i]);
        if (it == state.end()) fail(where, std::string("optimizer state '") + prefix + g.names[i] + "' is missing");
        if (it->second.sizes() != dst->sizes())
          fail(where, std::string("optimizer state '") + prefix + g.names[i] + "' has the wrong shape");
        dst->copy_(it->second);
        ++used;
      }
    }
  if (used != state.size()) fail(where, "optimizer state holds tensors this model does not have");
}

}  // namespace streamsink
