// train/weight_check.*: the per-step screen (a 2-norm) is finite exactly when no element is an inf or a NaN, save for
// finite weights so large that the norm overflows, which the exact test then clears; the exact test names the
// tensors (against a per-element scan of each).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "train/weight_check.h"

using namespace streamsink;

namespace {

std::vector<at::Tensor> tensors_of(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> some_weights() {
  at::manual_seed(7);
  return {{"embed", at::randn({64, 16})}, {"norm", at::ones({16})}, {"wq", at::randn({16, 16})},
          {"empty", at::zeros({0})}, {"scalar", at::full({}, 0.5)}};
}

}  // namespace

TEST(WeightCheck, TheScreenIsFiniteExactlyWhenEveryElementIsAndTheExactTestNamesTheTensors) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  {
    const auto w = some_weights();
    const double norm = weights_norm(tensors_of(w)).item<double>();
    double sq = 0;  // the oracle: the 2-norm summed in double, element by element
    for (const auto& [name, t] : w) sq += t.to(at::kDouble).pow(2).sum().item<double>();
    EXPECT_NEAR(norm, std::sqrt(sq), 1e-4 * std::sqrt(sq));
    EXPECT_TRUE(non_finite_tensors(w).empty());
  }
  for (const float bad : {inf, -inf, nan}) {
    auto w = some_weights();
    w[0].second[5][3].fill_(bad);    // one element of the first tensor
    w[2].second[15][15].fill_(bad);  // and the last element of the third
    EXPECT_FALSE(std::isfinite(weights_norm(tensors_of(w)).item<double>())) << bad;
    EXPECT_EQ(non_finite_tensors(w), (std::vector<std::string>{"embed", "wq"})) << bad;
  }
  // Finite, but past what a float 2-norm holds: the screen overflows, the exact test clears them.
  auto w = some_weights();
  w[2].second.fill_(1e30);
  EXPECT_FALSE(std::isfinite(weights_norm(tensors_of(w)).item<double>()));
  EXPECT_TRUE(non_finite_tensors(w).empty());
  EXPECT_EQ(weights_norm({}).item<double>(), 0.0);
  EXPECT_TRUE(non_finite_tensors({}).empty());
}

TEST(WeightCheck, QuotedListShowsTheFirstFewAndCountsTheRest) {
  EXPECT_EQ(quoted_list({}), "");
  EXPECT_EQ(quoted_list({"a"}), "'a'");
  EXPECT_EQ(quoted_list({"a", "b", "c"}), "'a', 'b', 'c'");
  EXPECT_EQ(quoted_list({"a", "b", "c", "d", "e"}), "'a', 'b', 'c' and 2 more");
  EXPECT_EQ(quoted_list({"a", "b"}, 1), "'a' and 1 more");
}
