// Sampling the next token from logits: greedy (temperature 0), or temperature + nucleus (top-p, Holtzman et al.
// 2020), from a seeded generator so a run is reproducible.
//
// Shapes: V vocabulary.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <cstdint>
#include <vector>

namespace streamsink {

struct SamplerConfig {
  double temperature = 0.8;  // 0 = greedy (argmax); otherwise logits / temperature
  double top_p = 0.95;       // keep the smallest set of tokens whose probability reaches top_p (1 = all)
  uint64_t seed = 0;         // generator seed
  int64_t vocab_limit = 0;   // > 0: only ids below it are drawn (a tokenizer's pieces, where the model's vocabulary
                             // is padded past them: an id without a piece could not be printed)
  std::vector<int64_t> never_draw;  // ids never drawn: the tokenizer's control symbols other than </s> (<s>, <pad>,
                                    // the sink symbols), which print nothing and, fed back mid-stream, would put a
                                    // sink token or a document start where the model never saw one
  void validate() const;     // Error naming --temperature / --top-p
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg);
  // logits [V] (any device, any float dtype) → a token id.
  int64_t sample(const at::Tensor& logits);
  // The distribution sample() draws from, [V] float64 on the CPU (one-hot for greedy): for tests and tools.
  at::Tensor distribution(const at::Tensor& logits) const;

 private:
  // The logits it may draw from: the first vocab_limit when that is set, else all (a view); the never_draw ids at -inf
  // (then a copy: the caller's logits stay as they are).
  at::Tensor drawable(const at::Tensor& logits) const;
  // The distribution over drawable logits l [V'] (CPU, float64).
  at::Tensor distribution_over(const at::Tensor& l) const;

  SamplerConfig cfg_;
  at::Generator gen_;
  mutable at::Tensor never_;  // never_draw as an index tensor, on the device of the last logits (made once)
};

}  // namespace streamsink
