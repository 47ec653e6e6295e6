// Decode configuration and the cache policies: which tokens of a stream a query may attend to (the eviction
// policy) and which position it takes against the pinned sink slots. The storage that carries a policy out is
// infer/kv_cache.h; the policy never touches a tensor.
//
// Vocabulary: a stream's tokens have text positions t = 0, 1, 2, ... (for sink: token models the k sink tokens
// are the stream's first tokens, t = 0..k-1). S = pinned sink slots, W = recent tokens a query sees (itself
// included). A query at t sees the sinks {0..S-1} ∩ {≤ t} and the window {max(S, t-W+1) .. t}.
//
//   dense      S = 0, W = max_tokens, and an Error once a stream passes max_tokens (no eviction)
//   window     S = 0, last W tokens (StreamingLLM's "window attention" baseline, Figure 1b)
//   streaming  S sinks + last W (StreamingLLM, §3.2, Figure 1d)
//   recompute  every token, a fresh forward over [first S tokens, last W tokens]: no cache, quadratic in W
//              (the paper's "sliding window with re-computation" quality baseline, Figure 1c)
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "model/config.h"

namespace streamsink {

enum class PolicyKind { kDense, kWindow, kStreaming, kRecompute };
std::string to_string(PolicyKind k);
PolicyKind policy_kind_from_string(const std::string& s);  // Error naming the accepted values

// Positions under which sink keys are seen (StreamingLLM §3.2): by place in the cache, or by place in the text.
enum class PositionMode { kCache, kText };
std::string to_string(PositionMode m);
PositionMode position_mode_from_string(const std::string& s);  // Error naming the accepted values

// The default cache (S + W) is the model's training context, but at most this many tokens.
constexpr int64_t kDefaultCacheTokens = 1024;
// A DecodeConfig field left to its default. Not -1: `--window -1` is a user's value, and an error like 0.
constexpr int64_t kAuto = std::numeric_limits<int64_t>::min();

struct DecodeConfig {
  PolicyKind policy = PolicyKind::kStreaming;  // dense | window | streaming | recompute
  int64_t sinks = kAuto;                       // S; kAuto = the default: k for sink: token models, else 4 (streaming)
                                               //   or 0 (recompute); dense and window have none
  int64_t window = kAuto;                      // W recent tokens (the query itself included); kAuto = the default:
                                               //   min(the model's context_length, kDefaultCacheTokens) - S (at
                                               //   least 1), so that S + W is the context it was trained on
  int64_t max_tokens = 1 << 16;                // dense only: a stream's bound (its cache is preallocated to it);
                                               //   no flag: eval-stream sets it to the stream's length (--tokens)
  PositionMode positions = PositionMode::kCache;  // cache (§3.2) | text (ablation)
  int64_t max_chunk = 256;                     // most tokens fed per step (prefill chunk)
  int64_t bos_id = -1;                         // fed first to every fresh stream and never scored (--bos: <s>, for
                                               //   models trained with it before every text, as HF Llamas are);
                                               //   -1 = none (streamsink's own models never saw one)
  void validate() const;                       // Error naming the flag and the problem
};

// A resolved policy. Value type: small, copied freely; built once per decoder by make_policy.
class CachePolicy {
 public:
  PolicyKind kind() const { return kind_; }
  int64_t sinks() const { return sinks_; }             // S pinned slots (the stream's first S tokens)
  int64_t window() const { return window_; }           // W recent tokens a query sees, itself included
  int64_t max_tokens() const { return max_tokens_; }   // a stream's bound, -1 = unbounded
  PositionMode positions() const { return positions_; }
  bool recomputes() const { return kind_ == PolicyKind::kRecompute; }

  // The position a query at text position t takes against the sink slots. §3.2: its slot in the cache,
  // p(t) = t for t < S, else S + min(W, t - S + 1) - 1; under PositionMode::kText, t itself.
  int64_t sink_query_position(int64_t t) const;
  // Whether the key of the token at text position p is visible to the query at t (p <= t).
  bool visible(int64_t p, int64_t t) const { return p <= t && (p < sinks_ || p > t - window_); }
  // Error (naming DecodeConfig::max_tokens) when a dense stream that has seen `seen` tokens cannot take `n_new` more.
  void check_room(int64_t seen, int64_t n_new) const;
  std::string describe() const;  // "streaming S=4 W=60 positions=cache"

  CachePolicy(PolicyKind kind, int64_t sinks, int64_t window, int64_t max_tokens, PositionMode positions);

 private:
  PolicyKind kind_;
  int64_t sinks_, window_, max_tokens_;
  PositionMode positions_;
};

// Resolves the defaults of `cfg` against the model (the sink default, the window default context_length - S,
// dense's S = 0 and W = max_tokens) and checks them: Error naming the flag (--window, --sinks, --chunk; dense's
// max_tokens, which no flag sets) when they make no sense.
CachePolicy make_policy(const DecodeConfig& cfg, const ModelConfig& model);
// Tokens a fresh stream starts with before the caller's: <s> under --bos, then a sink: token model's k sink tokens.
int64_t stream_prefix_tokens(const DecodeConfig& cfg, const ModelConfig& model);

// The most tokens the decoder feeds per step under `policy`: --chunk, but at most W under window, streaming and
// recompute. The ring keeps W + chunk - 1 slots (infer/kv_cache.h) and every one-token step scores all of them, so a
// chunk longer than the window would only add slots that no query of a later step can see (at W = 28 and --chunk
// 256, 9x the attention work of every generated token); a chunk of W tokens costs at most W - 1 spare columns.
// Recompute runs one forward per token whatever the chunk: only the chunk's logits [C, V] grow with it.
int64_t resolved_chunk(const DecodeConfig& cfg, const CachePolicy& policy);
// "256", or "28 (--chunk 256 capped at W)" for the resolved-config printout.
std::string chunk_note(const DecodeConfig& cfg, const CachePolicy& policy);
// " (W by default: context_length N - S)" when `cfg` leaves W to the default, for the resolved policy's printout.
std::string default_window_note(const DecodeConfig& cfg, const ModelConfig& model);

}  // namespace streamsink
