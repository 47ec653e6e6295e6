// The decoder-only transformer (Llama architecture): token embedding, n_layers pre-norm blocks of attention and
// SwiGLU, a final RMSNorm and the LM head. Parameter names map one-to-one onto Hugging Face Llama names
// (model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight, ..., lm_head.weight).
//
// Shapes: B batch, T tokens, C new tokens of a decode step, V vocab.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/attention.h"
#include "model/config.h"
#include "model/kv_cache_interface.h"
#include "model/mlp.h"
#include "model/norm.h"

namespace streamsink {

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, AttentionProbe* probe,
                     const AttentionWindow* window);
  at::Tensor step(const at::Tensor& x, const at::Tensor& cos_t, const at::Tensor& sin_t, const at::Tensor& cos_q,
                  const at::Tensor& sin_q, KVCacheInterface& cache, int64_t layer);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(Block);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelConfig& cfg);

  // Logits for every position. tokens [B, T] int64 → [B, T, V] (float32, or the model's dtype when wider).
  // T may exceed context_length. `window` restricts attention to sinks + a window (see AttentionWindow).
  at::Tensor forward(const at::Tensor& tokens, AttentionProbe* probe = nullptr,
                     const AttentionWindow* window = nullptr);
  // The last position's logits alone, as forward(tokens).select(1, T - 1) without the head's other T - 1 rows:
  // tokens [B, T] → [B, V]. The recompute baseline's forward per token.
  at::Tensor forward_last(const at::Tensor& tokens);
  // Mean cross-entropy over targets != -100. targets [B, T] int64.
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets) const;

  // Decode step: tokens [B, C] with their positions; appends to the cache and returns logits [B, C, V].
  at::Tensor step(const at::Tensor& tokens, const StepPositions& pos, KVCacheInterface& cache);

  // Re-draws every parameter from the config's init (called by the constructor; exposed for tests).
  void reset_parameters();

  const ModelConfig& config() const { return cfg_; }
  int64_t num_parameters() const;

 private:
  // The last block's output, before the final norm: tokens [B, T] → [B, T, dim].
  at::Tensor hidden(const at::Tensor& tokens, AttentionProbe* probe, const AttentionWindow* window);
  // The final norm and the LM head: [B, T, dim] → logits [B, T, V] (float32 or wider).
  at::Tensor head(const at::Tensor& hidden);
  ModelConfig cfg_;
  std::shared_ptr<torch::nn::Module> model_;  // the "model." prefix of HF names
  torch::nn::Embedding embed_tokens_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  std::vector<Block> blocks_;
  RMSNorm norm_{nullptr};
  torch::nn::Linear lm_head_{nullptr};  // null when tied to the embedding
  at::Tensor rope_cos_, rope_sin_;      // [context_length, D] cached tables for positions 0..T-1 (not parameters)
};
TORCH_MODULE(Transformer);

// Parameter count from the config alone (the closed form the tests check against named_parameters()).
double parameter_count(const ModelConfig& cfg);

// Training FLOPs per token (forward + backward = 3 × forward), as nanoGPT / PaLM count them: 6 per matmul
// weight (the LM head included, embedding lookups excluded) plus 12·L·dim·T for the attention scores and mix.
double training_flops_per_token(const ModelConfig& cfg, int64_t seq_len);

}  // namespace streamsink
