#include "model/attention.h"

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/rope.h"

namespace streamsink {

at::Tensor softmax_with_sink(const at::Tensor& scores, const at::Tensor& sink_logit) {
  if (!sink_logit.defined()) return at::softmax(scores, -1);
  // p_j = exp(s_j - lse) with lse = log(exp(b) + Σ exp(s)): the extra column never materialises.
  auto lse = at::logsumexp(scores, {-1}, /*keepdim=*/true);    // [..., 1]
  lse = at::logaddexp(lse, sink_logit.to(lse.scalar_type()));  // broadcast: [..., 1]
  return at::exp(scores - lse);
}

at::Tensor window_mask(int64_t T, const AttentionWindow& w, const at::Device& device) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  auto i = at::arange(T, opts).view({T, 1}), j = at::arange(T, opts).view({1, T});
  return (j <= i).logical_and((j < w.sinks).logical_or(i - j < w.window));  // [T, T]
}

AttentionImpl::AttentionImpl(const ModelConfig& cfg)
    : n_heads_(cfg.n_heads), n_kv_heads_(cfg.n_kv_heads), head_dim_(cfg.head_dim()), sink_(cfg.sink) {
  using torch::nn::LinearOptions;
  const int64_t kv_dim = n_kv_heads_ * head_dim_;
  q_proj = register_module("q_proj", torch::nn::Linear(LinearOptions(cfg.dim, cfg.dim).bias(false)));
  k_proj = register_module("k_proj", torch::nn::Linear(LinearOptions(cfg.dim, kv_dim).bias(false)));
  v_proj = register_module("v_proj", torch::nn::Linear(LinearOptions(cfg.dim, kv_dim).bias(false)));
  o_proj = register_module("o_proj", torch::nn::Linear(LinearOptions(cfg.dim, cfg.dim).bias(false)));
  if (sink_ == SinkKind::kLogit) sinks = register_parameter("sinks", at::zeros({n_heads_}));
}

at::Tensor AttentionImpl::sink_logit() const {
  if (sink_ == SinkKind::kZero) return at::zeros({1, n_heads_, 1, 1}, q_proj->weight.options());
  if (sink_ == SinkKind::kLogit) return sinks.view({1, n_heads_, 1, 1});
  return {};
}

namespace {

// q [B, H, Tq, D] · k [B, Hkv, Tk, D]ᵀ → [B, H, Tq, Tk], sharing each key head among its G query heads. The G query
// heads of a key head are stacked as rows ([B, Hkv, G·Tq, D]) so one batched matmul per key head reads K in place:
// broadcasting K over a G axis instead makes at::matmul materialise (copy) the whole key window G times per call.
at::Tensor gqa_scores(const at::Tensor& q, const at::Tensor& k, double scale) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3), Hkv = k.size(1), Tk = k.size(2);
  auto qg = q.reshape({B, Hkv, (H / Hkv) * Tq, D});                  // [B, Hkv, G·Tq, D]
  auto s = at::matmul(qg, k.transpose(-1, -2));                      // [B, Hkv, G·Tq, Tk]
  if (scale != 1.0) s.mul_(scale);
  return s.view({B, H, Tq, Tk});                                     // [B, H, Tq, Tk]
}

// p [B, H, Tq, Tk] · v [B, Hkv, Tk, D] → [B, H, Tq, D] (same stacking: V is read in place, never copied G times)
at::Tensor gqa_mix(const at::Tensor& p, const at::Tensor& v) {
  const int64_t B = p.size(0), H = p.size(1), Tq = p.size(2), Hkv = v.size(1);
  auto pg = p.reshape({B, Hkv, (H / Hkv) * Tq, p.size(3)});  // [B, Hkv, G·Tq, Tk]
  auto o = at::matmul(pg, v);                                // [B, Hkv, G·Tq, D]
  return o.view({B, H, Tq, v.size(3)});                      // [B, H, Tq, D]
}

// Under bf16 autocast on a CPU, PyTorch's flash attention kernel is slower than the explicit path below (forward and
// backward, 2 threads: 2.0 vs 0.72 ms a layer at tiny's shapes, 10.9 vs 6.2 ms at small's; in fp32 it is the faster
// one: docs/benchmarks.md), so there the explicit path serves every variant.
bool cpu_bf16_autocast(const at::Tensor& x) {
  return x.device().is_cpu() && at::autocast::is_autocast_enabled(at::kCPU) &&
         at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16;
}

}  // namespace

at::Tensor logit_sink_query_columns(const at::Tensor& b_over_scale, const at::Tensor& q, int64_t n) {
  const auto qt = q.scalar_type();
  if (n == 1) return b_over_scale.to(qt);
  TORCH_CHECK(n == 2, "logit_sink_query_columns: n must be 1 or 2, got ", n);
  auto run = qt;
  if (run != at::kDouble && at::autocast::is_autocast_enabled(q.device().type()))  // autocast leaves fp64 alone
    run = at::autocast::get_autocast_dtype(q.device().type());
  const auto hi = b_over_scale.to(run);
  const auto lo = (b_over_scale - hi.to(b_over_scale.scalar_type())).to(run);  // what hi rounded off
  return at::cat({hi.to(qt), lo.to(qt)}, -1);  // bf16 -> fp32 is exact: autocast's cast gives hi and lo back
}

at::Tensor AttentionImpl::fused_sink_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const at::Tensor& visible, double scale, int64_t logit_dims) const {
  const int64_t B = q.size(0), T = q.size(2), D = head_dim_;
  // The extra dimensions for logit: one on a CPU; on a GPU eight, so the head size stays a multiple of 8, as the fused
  // CUDA kernels want. q carries b_h/scale in them, the sink key 1 (exact in any precision), every other key 0, so
  // the sink's score is scale·(b_h/scale)·1 = b_h. With two or more, b_h/scale is split into hi + lo (the rest zero):
  // in bf16 one part alone would round b_h by up to 0.4% (logit_sink_query_columns).
  if (logit_dims <= 0) logit_dims = q.is_cuda() ? 8 : 1;
  const int64_t E = sink_ == SinkKind::kLogit ? logit_dims : 0;
  // q: a dummy query in front (row 0), and for logit b_h/scale in the extra dimensions   [B, H, T+1, D+E]
  at::Tensor qx = q;
  if (E) {
    const auto b = (sinks / scale).view({1, n_heads_, 1, 1}).expand({B, n_heads_, T, 1});  // [B, H, T, 1], float
    qx = at::cat({q, logit_sink_query_columns(b, q, std::min<int64_t>(E, 2))}, -1);        // [B, H, T, D+min(E,2)]
  }
  qx = at::constant_pad_nd(qx, {0, E - std::min<int64_t>(E, 2), 1, 0});
  // k: the sink key in front (zero; for logit 1 in the extra dimensions that carry b_h), the keys after it
  //                                                                                     [B, Hkv, T+1, D+E]
  auto sink_key = at::zeros({B, n_kv_heads_, 1, D + E}, k.options());
  if (E) sink_key.narrow(-1, D, std::min<int64_t>(E, 2)).fill_(1.0);
  auto kx = at::cat({sink_key, E ? at::constant_pad_nd(k, {0, E}) : k}, 2);
  // v: the sink's value is zero; the extra dimension too (one head size for q, k and v keeps SDPA on its fused
  // kernels: with v narrower it takes the math path)                                 [B, Hkv, T+1, D+E]
  auto vx = at::constant_pad_nd(v, {0, E, 1, 0});
  c10::optional<at::Tensor> mask;
  if (visible.defined()) {  // [T+1, T+1]: the sink column visible to every query, the dummy query sees only it
    auto m = at::constant_pad_nd(visible, {1, 0, 1, 0}, 0);
    m.select(1, 0).fill_(true);
    mask = m;
  }
  auto out = at::scaled_dot_product_attention(qx, kx, vx, mask, /*dropout_p=*/0.0, /*is_causal=*/!mask.has_value(),
                                              scale, /*enable_gqa=*/n_kv_heads_ != n_heads_);  // [B, H, T+1, D+E]
  return out.narrow(2, 1, T).narrow(-1, 0, D);                                                  // [B, H, T, D]
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                  AttentionProbe* probe, const AttentionWindow* window) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj->forward(x).view({B, T, n_heads_, head_dim_}).transpose(1, 2);     // [B, H, T, D]
  auto k = k_proj->forward(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, T, D]
  auto v = v_proj->forward(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, T, D]
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));

  at::Tensor out;  // [B, H, T, D]
  // visible [T, T]: undefined means plain causal
  const at::Tensor visible = window ? window_mask(T, *window, x.device()) : at::Tensor();
  if (probe == nullptr && !cpu_bf16_autocast(x)) {
    // The fused kernel (flash or memory-efficient on GPUs, the flash CPU kernel in fp32): none and token as they
    // are, zero and logit with their sink as one more key (fused_sink_attention).
    if (sink_ == SinkKind::kZero || sink_ == SinkKind::kLogit) {
      out = fused_sink_attention(q, k, v, visible, scale);
    } else {
      out = at::scaled_dot_product_attention(q, k, v,
                                             visible.defined() ? c10::optional<at::Tensor>(visible) : c10::nullopt,
                                             /*dropout_p=*/0.0, /*is_causal=*/!visible.defined(), scale,
                                             /*enable_gqa=*/n_kv_heads_ != n_heads_);
    }
  } else {
    const auto extra = sink_logit();        // [1, H, 1, 1] or undefined
    auto scores = gqa_scores(q, k, scale);  // [B, H, T, T]
    auto mask = visible.defined() ? visible : at::ones({T, T}, x.options().dtype(at::kBool)).tril();  // [T, T]
    scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
    auto p = softmax_with_sink(at_least_float(scores), extra).to(v.scalar_type());          // [B, H, T, T]
    if (probe) probe->probs.push_back(p.detach().to(at::kFloat));
    out = gqa_mix(p, v);
  }
  return o_proj->forward(out.transpose(1, 2).reshape({B, T, n_heads_ * head_dim_}));  // [B, T, dim]
}

at::Tensor AttentionImpl::step(const at::Tensor& x, const at::Tensor& cos_t, const at::Tensor& sin_t,
                               const at::Tensor& cos_q, const at::Tensor& sin_q, KVCacheInterface& cache,
                               int64_t layer) {
  const int64_t B = x.size(0), C = x.size(1);
  auto q = q_proj->forward(x).view({B, C, n_heads_, head_dim_}).transpose(1, 2);     // [B, H, C, D]
  auto k = k_proj->forward(x).view({B, C, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, C, D]
  auto v = v_proj->forward(x).view({B, C, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, C, D]
  const auto view = cache.append(layer, apply_rope(k, cos_t, sin_t), v);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  const float neg_inf = -std::numeric_limits<float>::infinity();

  // Scores against every slot with the queries at their text positions (right for the window), then the S sink
  // columns rescored with the queries at their sink-query positions (the paper's §3.2 cache positions), one
  // softmax and one mix over sinks and window together. With sinks, both query rotations come out of one
  // mul + addcmul over the stacked tables (RoPE: x·cos + rotate_half(x)·sin), so the sinks cost two small ops per
  // layer over a window-only cache: the [C, S] score matmul and its copy. The 1/√D scale is applied to q
  // ([B, H, C, D]) rather than to the scores ([B, H, C, S + N]).
  const int64_t S = view.sinks;
  q = q.mul(scale);
  const auto q_half = rotate_half(q);  // [B, H, C, D]
  at::Tensor scores;                   // [B, H, C, S + N]
  if (S == 0) {
    scores = gqa_scores(at::addcmul(q * cos_t, q_half, sin_t), view.k, 1.0);
  } else {
    auto q2 = at::addcmul(q.unsqueeze(-2) * cos_q, q_half.unsqueeze(-2), sin_q);  // [B, H, C, 2, D]
    scores = gqa_scores(q2.select(-2, 0), view.k, 1.0);                             // text rotation: every slot
    scores.narrow(-1, 0, S).copy_(gqa_scores(q2.select(-2, 1), view.k.narrow(2, 0, S), 1.0));  // sink columns
  }
  scores = at::where(view.mask, scores, neg_inf);
  auto p = softmax_with_sink(at_least_float(scores), sink_logit()).to(v.scalar_type());  // [B, H, C, S + N]
  auto out = gqa_mix(p, view.v);                                                          // [B, H, C, D]
  return o_proj->forward(out.transpose(1, 2).reshape({B, C, n_heads_ * head_dim_}));  // [B, C, dim]
}

}  // namespace streamsink
