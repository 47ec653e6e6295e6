// Text generation over a streaming Decoder: prompt prefill in chunks, then one token per step, sampled. The
// cache never grows past S + W (StreamingLLM §3.2), so generation can go on indefinitely in constant memory, and
// a chat keeps one cache across rounds.
//
// Shapes: V vocabulary.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "infer/decoder.h"
#include "infer/sampler.h"

namespace streamsink {

struct GenerateOptions {
  int64_t max_new_tokens = 256;  // -1 = until stopped (or <eos> when stop_at_eos)
  bool stop_at_eos = true;
  int64_t eos_id = 2;
};

// One stream (batch 1). The last sampled token is fed lazily, together with the next prompt, so that a round
// costs one step per new token and prompts of any length go through in chunks.
class Generator {
 public:
  Generator(Decoder& decoder, const SamplerConfig& sampler);

  // Feeds `prompt` (may be empty only once something has been generated), then samples up to max_new_tokens,
  // calling on_token for each; stops early when should_stop() returns true (checked before each token) or at
  // <eos>. Returns the number of tokens generated.
  int64_t generate(const std::vector<int64_t>& prompt, const GenerateOptions& opt,
                   const std::function<void(int64_t token)>& on_token,
                   const std::function<bool()>& should_stop = {});

  Decoder& decoder() { return dec_; }

 private:
  Decoder& dec_;
  Sampler sampler_;
  std::optional<int64_t> pending_;  // sampled but not yet fed
};

}  // namespace streamsink
