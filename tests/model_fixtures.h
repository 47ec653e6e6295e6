// Tiny models and a naive dense KV cache for the model and decoder tests.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_cache_interface.h"

namespace streamsink::testing {

inline ModelConfig tiny_config(SinkKind sink = SinkKind::kNone, int64_t n_kv_heads = 2) {
  ModelConfig c;
  c.vocab_size = 64;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = n_kv_heads;
  c.hidden_dim = 48;
  c.context_length = 32;
  c.sink = sink;
  c.sink_tokens = 2;
  c.sink_token_id = 4;
  c.init_std = 0.2;  // large enough that attention is far from uniform
  return c;
}

// A `logit` model's sink logits set to distinct non-zero values (linspace(-1, 2) over every layer's heads), so a test
// sees them act: at their initial zeros a logit model computes what a zero-sink model does. Other variants: no-op.
inline void set_distinct_sink_logits(torch::nn::Module& m) {
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters())
    if (p.key().find("sinks") != std::string::npos) p.value().copy_(at::linspace(-1.0, 2.0, p.value().numel()));
}

inline const std::vector<SinkKind>& all_sinks() {
  static const std::vector<SinkKind> v = {SinkKind::kNone, SinkKind::kToken, SinkKind::kZero, SinkKind::kLogit};
  return v;
}

// Keeps every key and value ever appended (torch::cat per step: a test oracle, not for production). The first
// `n_sink` tokens of the stream form the sink group; every key is visible to every later query.
class NaiveDenseCache : public KVCacheInterface {
 public:
  NaiveDenseCache(int64_t n_layers, int64_t n_sink) : k_(n_layers), v_(n_layers), n_sink_(n_sink) {}
  CacheView append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) override {
    auto& K = k_[layer];
    auto& V = v_[layer];
    const int64_t before = K.defined() ? K.size(2) : 0;
    K = K.defined() ? at::cat({K, k_rot}, 2) : k_rot;
    V = V.defined() ? at::cat({V, v}, 2) : v;
    const int64_t total = K.size(2), C = k_rot.size(2), B = k_rot.size(0);
    // query c (stream index before + c) sees keys with index <= before + c
    auto q_idx = at::arange(before, before + C, at::kLong).view({C, 1});
    auto k_idx = at::arange(total, at::kLong).view({1, total});
    auto visible = (k_idx <= q_idx).view({1, 1, C, total}).expand({B, 1, C, total});
    const int64_t S = std::min(n_sink_, total);
    return CacheView{K, V, visible, S};
  }

 private:
  std::vector<at::Tensor> k_, v_;
  int64_t n_sink_;
};

}  // namespace streamsink::testing
