// AdamW against its closed form (Loshchilov & Hutter, decoupled weight decay, bias-corrected moments), and the
// decay groups.
#include <gtest/gtest.h>

#include <cmath>

#include "train/adamw.h"

using namespace streamsink;

TEST(AdamW, MatchesTheClosedFormUpdateOverSeveralSteps) {
  auto w = at::randn({3, 4}, at::kDouble).set_requires_grad(true);
  auto n = at::randn({4}, at::kDouble).set_requires_grad(true);
  AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
  AdamW opt({{"model.layers.0.mlp.up_proj.weight", w}, {"model.norm.weight", n}}, o);
  auto w_ref = w.detach().clone(), n_ref = n.detach().clone();
  auto m_w = at::zeros_like(w_ref), v_w = at::zeros_like(w_ref), m_n = at::zeros_like(n_ref), v_n = at::zeros_like(n_ref);
  for (int t = 1; t <= 5; ++t) {
    const double lr = 0.01 * t;
    auto gw = at::randn_like(w_ref), gn = at::randn_like(n_ref);
    w.mutable_grad() = gw.clone();
    n.mutable_grad() = gn.clone();
    opt.step(lr);
    auto ref = [&](at::Tensor& p, at::Tensor& m, at::Tensor& v, const at::Tensor& g, double wd) {
      p = p * (1 - lr * wd);
      m = o.beta1 * m + (1 - o.beta1) * g;
      v = o.beta2 * v + (1 - o.beta2) * g * g;
      auto mhat = m / (1 - std::pow(o.beta1, t)), vhat = v / (1 - std::pow(o.beta2, t));
      p = p - lr * mhat / (vhat.sqrt() + o.eps);
    };
    ref(w_ref, m_w, v_w, gw, 0.1);
    ref(n_ref, m_n, v_n, gn, 0.0);  // norms do not decay
    EXPECT_LT((w.detach() - w_ref).abs().max().item<double>(), 1e-10) << "step " << t;
    EXPECT_LT((n.detach() - n_ref).abs().max().item<double>(), 1e-10) << "step " << t;
  }
  EXPECT_EQ(opt.steps_taken(), 5);
}

TEST(AdamW, DecayGroupsFollowTheNames) {
  EXPECT_TRUE(AdamW::decays("model.embed_tokens.weight", at::zeros({4, 2})));
  EXPECT_TRUE(AdamW::decays("model.layers.0.self_attn.q_proj.weight", at::zeros({4, 2})));
  EXPECT_FALSE(AdamW::decays("model.layers.0.input_layernorm.weight", at::zeros({4})));
  EXPECT_FALSE(AdamW::decays("model.layers.0.self_attn.sinks", at::zeros({4})));
  EXPECT_FALSE(AdamW::decays("model.norm.weight", at::zeros({4})));
}

// The optimizer state round trip (what a checkpoint stores): an optimizer loaded from another's state() continues
// exactly as the original does, the step count (hence the bias correction) included.
TEST(AdamW, LoadedStateContinuesBitForBit) {
  auto w = at::randn({3, 4}, at::kDouble).set_requires_grad(true);
  auto n = at::randn({4}, at::kDouble).set_requires_grad(true);
  const AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
  const std::string wn = "model.layers.0.mlp.up_proj.weight", nn = "model.norm.weight";
  AdamW a({{wn, w}, {nn, n}}, o);
  auto set_grads = [](at::Tensor& p, const at::Tensor& g) { p.mutable_grad() = g.clone(); };
  for (int t = 0; t < 3; ++t) {
    set_grads(w, at::randn_like(w));
    set_grads(n, at::randn_like(n));
    a.step(0.01);
  }
  auto w2 = w.detach().clone().set_requires_grad(true), n2 = n.detach().clone().set_requires_grad(true);
  AdamW b({{wn, w2}, {nn, n2}}, o);
  b.load_state(a.state(), "test");
  EXPECT_EQ(b.steps_taken(), 3);
  for (int t = 0; t < 2; ++t) {
    auto gw = at::randn_like(w), gn = at::randn_like(n);
    set_grads(w, gw), set_grads(w2, gw), set_grads(n, gn), set_grads(n2, gn);
    a.step(0.01);
    b.step(0.01);
    EXPECT_TRUE(at::equal(w.detach(), w2.detach())) << "step " << t;
    EXPECT_TRUE(at::equal(n.detach(), n2.detach())) << "step " << t;
  }
  EXPECT_EQ(b.steps_taken(), 5);
}
