// Comparing the weights two runs saved: the largest absolute difference over every parameter of one step's
// model.safetensors (the trainer's equivalence tests: ranks, accumulation, launchers, resume).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "model/safetensors.h"

namespace streamsink::testing {

// Between two checkpoint folders.
inline double max_weight_diff(const std::string& ckpt_a, const std::string& ckpt_b) {
  auto a = load_safetensors(ckpt_a + "/model.safetensors");
  auto b = load_safetensors(ckpt_b + "/model.safetensors");
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  return worst;
}

// Between the checkpoints of one step in two runs.
inline double max_param_diff(const std::string& run_a, const std::string& run_b, const std::string& step) {
  return max_weight_diff(run_a + "/checkpoints/" + step, run_b + "/checkpoints/" + step);
}

}  // namespace streamsink::testing
