// AttentionImpl::fused_sink_attention (the `zero` and `logit` sinks through at::scaled_dot_product_attention, as one
// more key in front with a dummy query) against the oracle written out by hand: scores q·kᵀ·scale with the causal
// (or windowed) mask, the extra column (0 or b_h) concatenated, a plain softmax, the extra column dropped, times v.
// In double, with GQA (4 query heads on 2 key/value heads), b_h all different, outputs and gradients (b_h's
// included).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "model/attention.h"
#include "model/config.h"

using namespace streamsink;

namespace {

constexpr int64_t B = 2, H = 4, Hkv = 2, T = 9, D = 8;

ModelConfig config(SinkKind sink) {
  ModelConfig c;
  c.vocab_size = 64;
  c.dim = H * D;
  c.n_layers = 1;
  c.n_heads = H;
  c.n_kv_heads = Hkv;
  c.hidden_dim = 48;
  c.context_length = T;
  c.sink = sink;
  c.validate();
  return c;
}

// The oracle. q [B, H, T, D], k/v [B, Hkv, T, D], b [H] (the extra logit per head), visible [T, T] bool.
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& b,
                     const at::Tensor& visible, double scale) {
  auto kr = k.repeat_interleave(H / Hkv, 1), vr = v.repeat_interleave(H / Hkv, 1);  // [B, H, T, D]
  auto s = at::matmul(q, kr.transpose(-1, -2)) * scale;                              // [B, H, T, T]
  s = s.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  auto extra = b.view({1, H, 1, 1}).expand({B, H, T, 1});                            // [B, H, T, 1]
  auto p = at::softmax(at::cat({s, extra}, -1), -1).narrow(-1, 0, T);                // [B, H, T, T]
  return at::matmul(p, vr);                                                          // [B, H, T, D]
}

}  // namespace

TEST(FusedSinkAttention, EqualsTheExplicitSoftmaxWithItsExtraColumnInValueAndGradient) {
  // logit with one extra dimension (as on a CPU) and with eight (as on a GPU)
  for (auto [sink, logit_dims] : {std::pair{SinkKind::kZero, 0}, {SinkKind::kLogit, 1}, {SinkKind::kLogit, 8}}) {
    for (const bool windowed : {false, true}) {
      SCOPED_TRACE(to_string(sink) + " logit_dims " + std::to_string(logit_dims) +
                   (windowed ? ", window 2 sinks + 3" : ", causal"));
      at::manual_seed(7);
      Attention attn(config(sink));
      attn->to(at::kDouble);
      if (sink == SinkKind::kLogit) {
        torch::NoGradGuard g;
        attn->sinks.copy_(at::tensor({-1.5, 0.0, 0.7, 2.5}, at::kDouble));
      }
      auto opts = at::TensorOptions().dtype(at::kDouble);
      auto q = at::randn({B, H, T, D}, opts).requires_grad_(), k = at::randn({B, Hkv, T, D}, opts).requires_grad_(),
           v = at::randn({B, Hkv, T, D}, opts).requires_grad_();
      const double scale = 1.0 / std::sqrt(static_cast<double>(D));
      const at::Tensor window = windowed ? window_mask(T, AttentionWindow{2, 3}, at::kCPU) : at::Tensor();
      const at::Tensor visible = windowed ? window : at::ones({T, T}, opts.dtype(at::kBool)).tril();
      const at::Tensor b = sink == SinkKind::kLogit ? attn->sinks : at::zeros({H}, opts);

      auto got = attn->fused_sink_attention(q, k, v, window, scale, logit_dims);
      auto want = reference(q, k, v, b, visible, scale);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT((got - want).abs().max().item<double>(), 1e-12);

      // Gradients of a loss that weighs every output differently, through both.
      auto w = at::randn({B, H, T, D}, opts);
      std::vector<at::Tensor> inputs = {q, k, v};
      if (sink == SinkKind::kLogit) inputs.push_back(attn->sinks);
      auto g_got = torch::autograd::grad({(got * w).sum()}, inputs);
      auto g_want = torch::autograd::grad({(want * w).sum()}, inputs);
      const char* names[] = {"q", "k", "v", "sinks"};
      for (size_t i = 0; i < inputs.size(); ++i) {
        EXPECT_LT((g_got[i] - g_want[i]).abs().max().item<double>(), 1e-12) << names[i];
        EXPECT_GT(g_got[i].abs().sum().item<double>(), 0) << names[i] << ": no gradient";
      }
    }
  }
}

// The columns that carry b_h/scale: under bf16 autocast with an fp32 q (autocast casts q to bf16 inside SDPA), and
// with a bf16 q (as apply_rope leaves it under autocast), the two columns as SDPA receives them (in bf16) add up to
// b_h/scale to ~2^-16 relative, where one bf16 part is off by up to 2^-9 (a mutation that splits in q's dtype, not
// the dtype SDPA runs in, fails the fp32 case: lo comes out 0). Outside autocast an fp32 q gets b_h/scale whole.
TEST(FusedSinkAttention, TheLogitSinksColumnsKeepBhUnderBf16Autocast) {
  auto b = (at::rand({2, H, 3, 1}, at::kDouble) * 40 - 20).to(at::kFloat);  // b_h/scale in [-20, 20]
  const auto b64 = b.to(at::kDouble);
  auto rel = [&](const at::Tensor& got) { return ((got - b64).abs() / b64.abs()).max().item<double>(); };
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(dtype == at::kFloat ? "q fp32 (autocast casts it)" : "q bf16");
    auto q = at::zeros({2, H, 3, D}, dtype);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    auto cols = logit_sink_query_columns(b, q, 2);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    ASSERT_EQ(cols.sizes(), (std::vector<int64_t>{2, H, 3, 2}));
    ASSERT_EQ(cols.scalar_type(), dtype);
    const auto seen = cols.to(at::kBFloat16).to(at::kDouble);  // what SDPA reads
    EXPECT_LT(rel(seen.sum(-1, /*keepdim=*/true)), std::ldexp(1.0, -15));
    EXPECT_GT(rel(seen.narrow(-1, 0, 1)), std::ldexp(1.0, -12)) << "hi alone should be bf16-rounded";
  }
  auto whole = logit_sink_query_columns(b, at::zeros({1}, at::kFloat), 2);  // no autocast: fp32 hi, lo 0
  EXPECT_TRUE(at::equal(whole.narrow(-1, 0, 1), b));
  EXPECT_TRUE(at::equal(logit_sink_query_columns(b, at::zeros({1}, at::kFloat), 1), b));
}

// The same through fused_sink_attention itself (eight extra dimensions, as on a GPU), under CPU bf16 autocast with an
// fp32 q, where SDPA runs in bf16: the sink's weight read back from the output matches b_h. v = 1 makes each row's
// output 1 - p_sink = Σ e^s / (e^b_h + Σ e^s), so b_h = log(Σ e^s (1 - out) / out), with Σ e^s from the bf16 q and k
// in double. q and k are random, so the row's probabilities (rounded to bf16 inside the kernel) differ and their
// rounding averages out over the 4 x 256 rows of a head (measured: |bias| <= 0.001). With one bf16 part for b_h/scale
// (a mutation: hi alone, lo 0) heads 0-2 read -0.0108, +0.0106, -0.0059 and the test fails.
TEST(FusedSinkAttention, TheLogitSinksWeightThroughSdpaUnderBf16AutocastMatchesBh) {
  constexpr int64_t Bl = 4, Tl = 256;
  ModelConfig c = config(SinkKind::kLogit);
  c.context_length = Tl;
  Attention attn(c);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  // b_h/scale near the middle of a bf16 step (0.0625 in [8, 16)): one part would round b_h by -0.0106, +0.0106,
  // -0.0053; 12.0 is exact in bf16 (a control)
  const std::vector<double> b_over_scale = {15.03, 14.97, 9.015, 12.0};
  {
    torch::NoGradGuard g;
    for (int64_t h = 0; h < H; ++h) attn->sinks[h].fill_(b_over_scale[h] * scale);
  }
  at::manual_seed(11);
  // bf16 values held in fp32: autocast's cast changes nothing, and the double reference sees what SDPA sees
  auto q = at::randn({Bl, H, Tl, D}).to(at::kBFloat16).to(at::kFloat);
  auto k = at::randn({Bl, Hkv, Tl, D}).to(at::kBFloat16).to(at::kFloat);
  auto v = at::ones({Bl, Hkv, Tl, D});
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  auto out = attn->fused_sink_attention(q, k, v, at::Tensor(), scale, /*logit_dims=*/8);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  ASSERT_EQ(out.scalar_type(), at::kBFloat16);  // SDPA ran in bf16
  auto s = at::matmul(q.to(at::kDouble), k.to(at::kDouble).repeat_interleave(H / Hkv, 1).transpose(-1, -2)) * scale;
  s = s.masked_fill(at::ones({Tl, Tl}, at::kBool).tril().logical_not(), -std::numeric_limits<double>::infinity());
  auto z = at::exp(s).sum(-1);                           // [B, H, T]: Σ e^s over the visible keys
  auto o = out.to(at::kDouble).mean(-1);                 // [B, H, T]: every dimension is 1 - p_sink
  auto b_est = at::log(z * (1 - o) / o);                 // [B, H, T]
  for (int64_t h = 0; h < H; ++h) {
    const double bias = b_est.select(1, h).mean().item<double>() - b_over_scale[h] * scale;
    EXPECT_LT(std::abs(bias), 0.003) << "head " << h << ": b_h = " << b_over_scale[h] * scale;
  }
}
