// The decoder: feeds streams of tokens through a Transformer under a cache policy, chunk by chunk, and hands back
// their logits. A prompt or an evaluation stream of any length goes through in chunks of at most max_chunk
// tokens, with eviction between chunks, so it never overflows the cache; chunked prefill gives the same logits as
// feeding token by token (each query sees exactly the slots the policy allows it).
//
// Shapes: B streams, T tokens fed, C tokens per chunk (≤ max_chunk), V vocabulary.
//
// For sink: token models the k sink tokens (StreamingLLM §3.3) are fed first to every fresh stream, after <s> when
// DecodeConfig::bos_id asks for one; their logits are dropped, so the logits the caller receives correspond one to
// one with the tokens it fed.
#pragma once
#include <ATen/ATen.h>

#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "infer/cache_policy.h"
#include "infer/kv_cache.h"
#include "model/transformer.h"

namespace streamsink {

class Decoder {
 public:
  // offset: index (among the tokens the caller fed in this call) of the chunk's first row; n_valid[b]: rows of
  // stream b that are real (the rest padding); logits [B, C, V] float32.
  using LogitsFn =
      std::function<void(int64_t offset, const std::vector<int64_t>& n_valid, const at::Tensor& logits)>;

  // `cfg` is resolved against the model with make_policy (Error naming the flag when it makes no sense).
  Decoder(Transformer model, const DecodeConfig& cfg, int64_t batch = 1);

  // Feeds streams[b] to stream b (lengths may differ, some may be empty), calling on_logits once per chunk.
  void feed(const std::vector<std::vector<int64_t>>& streams, const LogitsFn& on_logits);
  // Every stream takes the same tokens' count: tokens [B, T] int64 → logits [B, T, V] (kept: for short inputs).
  at::Tensor feed(const at::Tensor& tokens);
  // Streams of different lengths → logits per stream, [T_b, V].
  std::vector<at::Tensor> feed_all(const std::vector<std::vector<int64_t>>& streams);
  // Feeds tokens [B, T] (T ≥ 1) and returns only the last row of logits, [B, V]: prompts and generation.
  at::Tensor feed_last(const at::Tensor& tokens);

  void reset();  // every stream starts afresh (the sink prefix is fed again)
  const CachePolicy& policy() const { return policy_; }
  const std::vector<int64_t>& seen() const { return seen_; }  // tokens per stream, sink prefix included
  int64_t cache_bytes() const;                                // bytes the cache (or recompute history) holds
  int64_t batch() const { return B_; }
  int64_t max_chunk() const { return max_chunk_; }
  Transformer& model() { return model_; }

 private:
  at::TensorOptions logits_options() const;  // float32 on the model's device
  void feed_prefix_if_fresh();
  void step_cached(const std::vector<std::vector<int64_t>>& streams, int64_t offset, int64_t C,
                   const std::vector<int64_t>& n_valid, const LogitsFn& on_logits);
  void step_recompute(const std::vector<std::vector<int64_t>>& streams, int64_t offset, int64_t C,
                      const std::vector<int64_t>& n_valid, const LogitsFn& on_logits);

  Transformer model_;
  c10::Device device_;  // the model's (where the cache and the logits live)
  CachePolicy policy_;
  int64_t B_, max_chunk_;
  std::vector<int64_t> prefix_;  // <s> under --bos, then the model's sink tokens (stream_prefix)
  std::vector<int64_t> seen_;
  std::unique_ptr<KVCache> cache_;  // null under recompute
  // recompute: the first S tokens and the last W tokens of each stream (constant memory)
  std::vector<std::vector<int64_t>> head_;
  std::vector<std::deque<int64_t>> tail_;
};

// The model's sink prefix: sink_token_id .. sink_token_id + k - 1 for sink: token models, else empty.
std::vector<int64_t> sink_prefix(const ModelConfig& cfg);
// What a fresh stream starts with: <s> under --bos (decode.bos_id), then the model's sink prefix.
std::vector<int64_t> stream_prefix(const DecodeConfig& decode, const ModelConfig& cfg);

}  // namespace streamsink
