// Gradients of the training loss, compared parameter by parameter: the oracle of the GPU's backward against the
// CPU's (tests/test_cuda.cpp), and of bf16 autocast against fp32 (tests/test_transformer.cpp).
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "model/autocast.h"
#include "model/transformer.h"
#include "tests/model_fixtures.h"

namespace streamsink::testing {

// Every parameter's gradient of the training loss on one batch (under bf16 autocast when asked), on the CPU.
inline std::map<std::string, at::Tensor> gradients(Transformer& m, const at::Tensor& x, const at::Tensor& y,
                                                    bool bf16) {
  m->zero_grad();
  at::Tensor loss;
  {
    AutocastGuard ac(bf16, x.device().type());
    loss = m->loss(m->forward(x), y);
  }
  loss.backward();
  std::map<std::string, at::Tensor> g;
  for (auto& p : m->named_parameters())
    if (p.value().grad().defined()) g[p.key()] = p.value().grad().detach().to(at::kCPU, at::kFloat).clone();
  return g;
}

// `got` against `ref`, parameter by parameter: relative error below max_rel, or (max_rel < 0) the same direction,
// cosine above 0.99; finite everywhere.
inline void expect_gradients_close(const std::map<std::string, at::Tensor>& ref,
                                   const std::map<std::string, at::Tensor>& got, double max_rel, const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (const auto& [name, r] : ref) {
    const auto& g = got.at(name);
    EXPECT_TRUE(at::isfinite(g).all().item<bool>()) << name << " (" << what << ")";
    const double norm = r.norm().item<double>();
    if (norm == 0) continue;
    if (max_rel >= 0) {
      EXPECT_LT((g - r).norm().item<double>() / norm, max_rel) << name << " (" << what << ")";
    } else {
      const double cosine = (g * r).sum().item<double>() / (g.norm().item<double>() * norm + 1e-30);
      EXPECT_GT(cosine, 0.99) << name << " (" << what << ")";
    }
  }
}

// tiny.yaml's model and a batch at its training context, T = 64 (a length some cuDNN attention backwards have
// mishandled).
struct GradCase {
  ModelConfig cfg;
  at::Tensor x, y;
};
inline GradCase grad_case(SinkKind sink) {
  at::manual_seed(2);
  GradCase c{tiny_config(sink), {}, {}};
  const int64_t T = std::min<int64_t>(64, c.cfg.context_length);
  c.x = at::randint(8, c.cfg.vocab_size, {4, T}, at::kLong);
  c.y = at::randint(8, c.cfg.vocab_size, {4, T}, at::kLong);
  return c;
}

}  // namespace streamsink::testing
