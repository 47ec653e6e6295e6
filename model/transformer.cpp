#include "model/transformer.h"

#include <torch/nn/init.h>
#include <torch/utils.h>

#include <cmath>

#include "model/rope.h"

namespace streamsink {

BlockImpl::BlockImpl(const ModelConfig& cfg) {
  input_layernorm = register_module("input_layernorm", RMSNorm(cfg.dim, cfg.norm_eps));
  self_attn = register_module("self_attn", Attention(cfg));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(cfg.dim, cfg.norm_eps));
  mlp = register_module("mlp", MLP(cfg));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                              AttentionProbe* probe, const AttentionWindow* window) {
  auto h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, probe, window);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

at::Tensor BlockImpl::step(const at::Tensor& x, const at::Tensor& cos_t, const at::Tensor& sin_t,
                           const at::Tensor& cos_q, const at::Tensor& sin_q, KVCacheInterface& cache,
                           int64_t layer) {
  auto h = x + self_attn->step(input_layernorm->forward(x), cos_t, sin_t, cos_q, sin_q, cache, layer);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

TransformerImpl::TransformerImpl(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  model_ = register_module("model", std::make_shared<torch::nn::Module>("LlamaModel"));
  embed_tokens_ = model_->register_module("embed_tokens", torch::nn::Embedding(cfg.vocab_size, cfg.dim));
  layers_ = model_->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers; ++i) {
    blocks_.push_back(Block(cfg));
    layers_->push_back(blocks_.back());
  }
  norm_ = model_->register_module("norm", RMSNorm(cfg.dim, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    lm_head_ = register_module("lm_head",
                               torch::nn::Linear(torch::nn::LinearOptions(cfg.dim, cfg.vocab_size).bias(false)));
  auto [cos, sin] = rope_tables(at::arange(cfg.context_length, at::kLong), cfg.head_dim(), cfg.rope_theta, at::kFloat);
  rope_cos_ = register_buffer("rope_cos", cos);
  rope_sin_ = register_buffer("rope_sin", sin);
  reset_parameters();
}

void TransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double resid_std = cfg_.init_std / std::sqrt(2.0 * cfg_.n_layers);  // GPT-2's scaled residual init
  for (auto& p : named_parameters()) {
    const auto& name = p.key();
    auto& w = p.value();
    if (name.find("norm") != std::string::npos) {
      w.fill_(1.0);
    } else if (name.find(".sinks") != std::string::npos) {
      w.zero_();
    } else if (name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos) {
      w.normal_(0.0, resid_std);
    } else {
      w.normal_(0.0, cfg_.init_std);
    }
  }
}

at::Tensor TransformerImpl::forward(const at::Tensor& tokens, AttentionProbe* probe,
                                    const AttentionWindow* window) {
  return head(hidden(tokens, probe, window));  // [B, T, V]
}

at::Tensor TransformerImpl::forward_last(const at::Tensor& tokens) {
  const auto h = hidden(tokens, nullptr, nullptr);  // [B, T, dim]
  return head(h.narrow(1, h.size(1) - 1, 1)).squeeze(1);  // [B, V]
}

at::Tensor TransformerImpl::head(const at::Tensor& hidden) {
  const auto h = norm_->forward(hidden);
  return at_least_float(lm_head_ ? lm_head_->forward(h) : at::linear(h, embed_tokens_->weight));
}

at::Tensor TransformerImpl::hidden(const at::Tensor& tokens, AttentionProbe* probe, const AttentionWindow* window) {
  const int64_t T = tokens.size(1);
  at::Tensor cos, sin;  // [T, D]
  if (T <= cfg_.context_length) {
    cos = rope_cos_.narrow(0, 0, T);
    sin = rope_sin_.narrow(0, 0, T);
  } else {  // longer than the training context (dense evaluation past T): fresh tables
    std::tie(cos, sin) =
        rope_tables(at::arange(T, tokens.options()), cfg_.head_dim(), cfg_.rope_theta, rope_cos_.scalar_type());
  }
  auto h = embed_tokens_->forward(tokens);  // [B, T, dim]
  cos = cos.to(h.scalar_type());
  sin = sin.to(h.scalar_type());
  for (auto& b : blocks_) h = b->forward(h, cos, sin, probe, window);
  return h;  // [B, T, dim]
}

at::Tensor TransformerImpl::loss(const at::Tensor& logits, const at::Tensor& targets) const {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), /*weight=*/{},
                                at::Reduction::Mean, /*ignore_index=*/-100);
}

at::Tensor TransformerImpl::step(const at::Tensor& tokens, const StepPositions& pos, KVCacheInterface& cache) {
  auto h = embed_tokens_->forward(tokens);  // [B, C, dim]
  const auto dt = h.scalar_type();
  // One table lookup for both query positions: [B, C, 2] (text, sink query) → cos/sin [B, C, 2, D].
  auto [cos_q, sin_q] = rope_tables(at::stack({pos.text, pos.sink_query}, -1), cfg_.head_dim(), cfg_.rope_theta, dt);
  cos_q = cos_q.unsqueeze(1), sin_q = sin_q.unsqueeze(1);                  // [B, 1, C, 2, D]: broadcast over heads
  const auto cos_t = cos_q.select(-2, 0), sin_t = sin_q.select(-2, 0);  // [B, 1, C, D]: text positions
  for (size_t i = 0; i < blocks_.size(); ++i)
    h = blocks_[i]->step(h, cos_t, sin_t, cos_q, sin_q, cache, static_cast<int64_t>(i));
  return head(h);  // [B, C, V]
}

int64_t TransformerImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

double parameter_count(const ModelConfig& c) {
  // In double: model/model_memory.cpp sizes absurd configs (a mistyped dim) with it, past 2^63; exact below 2^53.
  const double dim = static_cast<double>(c.dim), kv = static_cast<double>(c.n_kv_heads * c.head_dim());
  const double attn = 2 * dim * dim + 2 * dim * kv + (c.sink == SinkKind::kLogit ? static_cast<double>(c.n_heads) : 0);
  const double per_layer = attn + 3 * dim * static_cast<double>(c.ffn_dim()) + 2 * dim;  // + two RMSNorm weights
  return static_cast<double>(c.vocab_size) * dim * (c.tie_embeddings ? 1 : 2) + static_cast<double>(c.n_layers) * per_layer +
         dim;
}

double training_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  const double kv = static_cast<double>(c.n_kv_heads * c.head_dim());
  const double matmul_params =
      c.n_layers * (2.0 * c.dim * c.dim + 2.0 * c.dim * kv + 3.0 * c.dim * c.ffn_dim()) + 1.0 * c.dim * c.vocab_size;
  return 6.0 * matmul_params + 12.0 * c.n_layers * c.dim * seq_len;
}

}  // namespace streamsink
