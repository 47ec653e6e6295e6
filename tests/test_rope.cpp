// Rotary embeddings against their closed form, and the relative-position property at stream positions.
#include <gtest/gtest.h>

#include <cmath>

#include "model/rope.h"

using namespace streamsink;

TEST(Rope, MatchesTheClosedFormRotationPerFrequencyPair) {
  const int64_t D = 8;
  const double theta = 10000.0;
  auto x = at::randn({1, 1, 3, D}, at::kDouble);
  auto pos = at::tensor({0, 5, 1234567}, at::kLong);
  auto [cos, sin] = rope_tables(pos, D, theta, at::kDouble);
  auto y = apply_rope(x, cos, sin);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = pos[t].item<double>() * std::pow(theta, -2.0 * i / D);
      const double a = x[0][0][t][i].item<double>(), b = x[0][0][t][i + D / 2].item<double>();
      EXPECT_NEAR(y[0][0][t][i].item<double>(), a * std::cos(angle) - b * std::sin(angle), 1e-9);
      EXPECT_NEAR(y[0][0][t][i + D / 2].item<double>(), b * std::cos(angle) + a * std::sin(angle), 1e-9);
    }
}

TEST(Rope, ScoresDependOnlyOnTheDistanceEvenAtMillionsOfTokens) {
  const int64_t D = 16;
  auto q = at::randn({1, 1, 1, D}, at::kFloat), k = at::randn({1, 1, 1, D}, at::kFloat);
  auto score = [&](int64_t m, int64_t n) {
    auto [cq, sq] = rope_tables(at::tensor({m}, at::kLong), D, 10000.0, at::kFloat);
    auto [ck, sk] = rope_tables(at::tensor({n}, at::kLong), D, 10000.0, at::kFloat);
    return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item<double>();
  };
  const double near = score(10, 3);
  EXPECT_NEAR(score(4'000'010, 4'000'003), near, 1e-3);
  EXPECT_NEAR(score(1007, 1000), near, 1e-4);
}

// Under bf16 autocast q and k leave their projections in bf16 and the tables are fp32: the rotation comes back in
// x's dtype (the dtype attention runs in), computed wider and rounded once, so within half a bf16 step (2^-8
// relative) of the exact rotation of the same bf16 inputs: the double-precision one the closed-form test checks.
TEST(Rope, KeepsTheInputsDtypeRoundingOnce) {
  const int64_t D = 8;
  at::manual_seed(5);
  auto x = at::randn({1, 2, 5, D}).to(at::kBFloat16);
  auto pos = at::arange(5, at::kLong);
  auto [cos, sin] = rope_tables(pos, D, 10000.0, at::kFloat);
  auto y = apply_rope(x, cos, sin);
  ASSERT_EQ(y.scalar_type(), at::kBFloat16);
  auto [cd, sd] = rope_tables(pos, D, 10000.0, at::kDouble);
  auto exact = apply_rope(x.to(at::kDouble), cd, sd);
  EXPECT_TRUE((y.to(at::kDouble) - exact).abs().le(exact.abs() * std::ldexp(1.0, -8) + 1e-6).all().item<bool>());
  EXPECT_EQ(apply_rope(x.to(at::kFloat), cos, sin).scalar_type(), at::kFloat);
}
