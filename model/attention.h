// Causal self-attention with grouped-query heads and the four sink variants (DESIGN.md, "Sink variants").
//
// Shapes: B batch, T tokens (C new tokens in a decode step), H query heads, Hkv key/value heads, G = H / Hkv,
// D head_dim, N cached window slots, S sink slots.
//
// Sink variants inside the softmax (a row of scores s_1..s_n):
//   none, token: p_j = exp(s_j) / Σ exp(s)                      (token sinks are ordinary tokens in the input)
//   zero:        p_j = exp(s_j) / (exp(0) + Σ exp(s))           (softmax-off-by-one; the extra value is zero)
//   logit:       p_j = exp(s_j) / (exp(b_h) + Σ exp(s))         (gpt-oss: one learned b_h per head, no value)
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "model/config.h"
#include "model/kv_cache_interface.h"

namespace streamsink {

// When passed to a forward, every layer takes the explicit (non-fused) path and records its attention
// probabilities, so tools can look at where attention goes (the paper's Figure 2).
struct AttentionProbe {
  std::vector<at::Tensor> probs;  // one per layer: [B, H, T, T] (detached, float32)
};

// A restricted attention pattern over a whole sequence: each query sees the first `sinks` positions and the last
// `window` positions up to itself (itself included). It mimics a sink + window cache inside one forward (with
// text positions), so the trainer can measure what losing the sink costs without the decoder (`sinks` = 0 gives
// window attention).
struct AttentionWindow {
  int64_t sinks = 0;
  int64_t window = 0;
};
// [T, T] bool, true = visible: causal, and (j < sinks or i - j < window).
at::Tensor window_mask(int64_t T, const AttentionWindow& w, const at::Device& device);

// Softmax over the last dim with the variant's extra sink logit (undefined = none). scores [..., n] with -inf
// where masked; sink_logit broadcastable to scores[..., :1]. Gradients reach the scores and the sink logit.
at::Tensor softmax_with_sink(const at::Tensor& scores, const at::Tensor& sink_logit);

// The logit sink's extra query columns for fused_sink_attention: b_over_scale [B, H, T, 1] (float) as `n` columns
// [B, H, T, n] in q's dtype. n = 1: b/scale itself. n = 2: hi, b/scale rounded to the dtype SDPA will run in (q's,
// or autocast's when autocast is on for q's device: it casts every floating dtype but fp64), and lo, the rest, also
// rounded to it; the scores add them in at least fp32, so b_h keeps ~16 bits in bf16 where one part alone keeps 8
// (rounded by up to 2^-9 relative: 0.4%). q is read for its dtype and device only.
at::Tensor logit_sink_query_columns(const at::Tensor& b_over_scale, const at::Tensor& q, int64_t n);

// float32 for half/bfloat16 tensors (softmax and logits are accumulated in at least float32), else unchanged.
inline at::Tensor at_least_float(const at::Tensor& t) {
  return at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t;
}

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& cfg);

  // Training / full-sequence forward. x [B, T, dim]; cos/sin [T, D] for positions 0..T-1. Returns [B, T, dim].
  // Takes the fused at::scaled_dot_product_attention (for `zero` and `logit` through fused_sink_attention) unless a
  // probe is given or bf16 autocast is on for a CPU (where the explicit path is the faster one: model/attention.cpp).
  // `window` (optional) restricts the causal pattern (see AttentionWindow).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, AttentionProbe* probe,
                     const AttentionWindow* window = nullptr);

  // Decode step over a KV cache. x [B, C, dim]; (cos_t, sin_t) [B, 1, C, D] for the text positions (keys, and
  // queries against the window); (cos_q, sin_q) [B, 1, C, 2, D] for the queries' two rotations, the text and the
  // sink-query positions stacked (model/kv_cache_interface.h says why two). Returns [B, C, dim].
  at::Tensor step(const at::Tensor& x, const at::Tensor& cos_t, const at::Tensor& sin_t, const at::Tensor& cos_q,
                  const at::Tensor& sin_q, KVCacheInterface& cache, int64_t layer);

  // The variant's extra logit as [1, H, 1, 1], or undefined for none/token.
  at::Tensor sink_logit() const;

  // `zero` and `logit` through the fused kernel: the sink as one more key, in front of the others, whose value is
  // zero and whose score is 0 (zero) or b_h (logit), so each row's softmax is the variant's. A dummy query in front
  // of the queries keeps the pattern causal (SDPA aligns is_causal top-left: query i, now row i+1, sees keys 0..i+1,
  // i.e. the sink and tokens 0..i); its row is dropped. For `logit` one more dimension carries b_h: q holds b_h/scale
  // there, the sink key 1, every other key 0, so the sink's score is scale·(b_h/scale)·1 = b_h and the others are
  // unchanged; gradients reach b_h through q. q [B, H, T, D], k/v [B, Hkv, T, D]; visible [T, T] or undefined
  // (causal). Returns [B, H, T, D]. `logit_dims`: how many extra dimensions `logit` adds (one carries b_h/scale; with
  // two or more, two carry it as hi + lo, logit_sink_query_columns; the rest are zero); 0 = by device: 1 on a
  // CPU, 8 on a GPU (head sizes a multiple of 8 for the fused CUDA kernels). The oracle:
  // tests/test_fused_sink_attention.cpp.
  at::Tensor fused_sink_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& visible, double scale, int64_t logit_dims = 0) const;

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  at::Tensor sinks;  // [H] learned sink logits (sink == logit only): checkpoint name self_attn.sinks

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  SinkKind sink_;
};
TORCH_MODULE(Attention);

}  // namespace streamsink
