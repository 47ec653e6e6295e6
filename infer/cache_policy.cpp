#include "infer/cache_policy.h"

#include <algorithm>

#include "common/error.h"

namespace streamsink {

std::string to_string(PolicyKind k) {
  switch (k) {
    case PolicyKind::kDense: return "dense";
    case PolicyKind::kWindow: return "window";
    case PolicyKind::kStreaming: return "streaming";
    case PolicyKind::kRecompute: return "recompute";
  }
  return "?";
}

PolicyKind policy_kind_from_string(const std::string& s) {
  if (s == "dense") return PolicyKind::kDense;
  if (s == "window") return PolicyKind::kWindow;
  if (s == "streaming") return PolicyKind::kStreaming;
  if (s == "recompute") return PolicyKind::kRecompute;
  throw Error("--policy: unknown policy '" + s + "' (expected dense, window, recompute or streaming)");
}

std::string to_string(PositionMode m) { return m == PositionMode::kCache ? "cache" : "text"; }

PositionMode position_mode_from_string(const std::string& s) {
  if (s == "cache") return PositionMode::kCache;
  if (s == "text") return PositionMode::kText;
  throw Error("--positions: unknown mode '" + s + "' (expected cache or text)");
}

void DecodeConfig::validate() const {
  if (window != kAuto && window <= 0) throw Error("--window: must be positive, got " + std::to_string(window));
  if (sinks != kAuto && sinks < 0) throw Error("--sinks: must be >= 0, got " + std::to_string(sinks));
  if (max_chunk <= 0) throw Error("--chunk: must be positive, got " + std::to_string(max_chunk));
  if (bos_id < -1) throw Error("--bos: bad <s> id " + std::to_string(bos_id));
  if (policy == PolicyKind::kDense && max_tokens <= 0)  // no flag sets it: eval-stream sizes dense to its stream
    throw Error("the dense cache's max_tokens must be positive, got " + std::to_string(max_tokens));
}

CachePolicy::CachePolicy(PolicyKind kind, int64_t sinks, int64_t window, int64_t max_tokens, PositionMode positions)
    : kind_(kind), sinks_(sinks), window_(window), max_tokens_(max_tokens), positions_(positions) {}

int64_t CachePolicy::sink_query_position(int64_t t) const {
  if (positions_ == PositionMode::kText || t < sinks_) return t;
  return sinks_ + std::min(window_, t - sinks_ + 1) - 1;  // §3.2: the query's slot in the cache
}

void CachePolicy::check_room(int64_t seen, int64_t n_new) const {
  // No command reaches this: eval-stream sizes a dense cache to its stream (--tokens, or the whole --data) and
  // generate and chat always stream. A library caller's DecodeConfig::max_tokens is what it names.
  if (max_tokens_ >= 0 && seen + n_new > max_tokens_)
    throw Error("the dense cache holds " + std::to_string(max_tokens_) + " tokens (DecodeConfig::max_tokens) and the "
                "stream has " + std::to_string(seen + n_new) + ": dense never evicts; size it to the whole stream, "
                "as eval-stream does, or use --policy streaming");
}

std::string CachePolicy::describe() const {
  std::string s = to_string(kind_) + " S=" + std::to_string(sinks_) + " W=" + std::to_string(window_);
  if (max_tokens_ >= 0) s += " max_tokens=" + std::to_string(max_tokens_);
  return s + " positions=" + to_string(positions_);
}

namespace {

// W as given, or by default the rest of the model's training context after the S sinks (at least 1): a cache of
// S + W = context_length slots is what every query saw in training; capped at kDefaultCacheTokens, so a model
// imported with a long context (up to 2^20) does not get a cache of that size unasked.
int64_t default_window(const DecodeConfig& cfg, const ModelConfig& model, int64_t S) {
  return cfg.window != kAuto ? cfg.window
                          : std::max<int64_t>(1, std::min(model.context_length, kDefaultCacheTokens) - S);
}

}  // namespace

int64_t stream_prefix_tokens(const DecodeConfig& cfg, const ModelConfig& model) {
  return (cfg.bos_id >= 0 ? 1 : 0) + model.prefix_tokens();
}

int64_t resolved_chunk(const DecodeConfig& cfg, const CachePolicy& policy) {
  // A rolling cache holds W + chunk - 1 ring slots; recompute runs one forward per token whatever the chunk, and only
  // the chunk's logits [C, V] grow with it (a 1M-token --chunk would ask for a [1M, V] buffer): both take at most W.
  const bool capped = policy.kind() != PolicyKind::kDense;
  return capped ? std::min(cfg.max_chunk, policy.window()) : cfg.max_chunk;
}

std::string chunk_note(const DecodeConfig& cfg, const CachePolicy& policy) {
  const int64_t c = resolved_chunk(cfg, policy);
  return std::to_string(c) +
         (c < cfg.max_chunk ? " (--chunk " + std::to_string(cfg.max_chunk) + " capped at W)" : std::string());
}

std::string default_window_note(const DecodeConfig& cfg, const ModelConfig& model) {
  if (cfg.window != kAuto || cfg.policy == PolicyKind::kDense) return "";
  const std::string ctx = "context_length " + std::to_string(model.context_length);
  return " (W by default: " +
         (model.context_length > kDefaultCacheTokens ? "min(" + ctx + ", " + std::to_string(kDefaultCacheTokens) + ")"
                                                     : ctx) +
         " - S)";
}

CachePolicy make_policy(const DecodeConfig& cfg, const ModelConfig& model) {
  cfg.validate();
  if (cfg.bos_id >= model.vocab_size)
    throw Error("--bos: the tokenizer's <s> is id " + std::to_string(cfg.bos_id) + ", outside the model's vocabulary of " +
                std::to_string(model.vocab_size));
  const int64_t k = stream_prefix_tokens(cfg, model);
  switch (cfg.policy) {
    case PolicyKind::kDense:
      if (cfg.sinks > 0) throw Error("--sinks: the dense policy keeps every token and has no sink slots");
      return CachePolicy(PolicyKind::kDense, 0, cfg.max_tokens, cfg.max_tokens, cfg.positions);
    case PolicyKind::kWindow:
      if (cfg.sinks > 0) throw Error("--sinks: the window policy has no sink slots (use --policy streaming)");
      return CachePolicy(PolicyKind::kWindow, 0, default_window(cfg, model, 0), -1, cfg.positions);
    case PolicyKind::kStreaming:
    case PolicyKind::kRecompute: {
      if (cfg.policy == PolicyKind::kRecompute && cfg.positions == PositionMode::kText)
        throw Error("--positions: recompute runs a fresh forward, whose positions are always 0..n-1 (cache)");
      // a sink: token model's own sinks (and <s> before them); otherwise the paper's 4 initial tokens (<s> among them)
      const int64_t dflt = model.prefix_tokens() > 0 ? k : (cfg.policy == PolicyKind::kStreaming ? 4 : 0);
      const int64_t S = cfg.sinks != kAuto ? cfg.sinks : dflt;
      const int64_t W = default_window(cfg, model, S);
      if (S > W)
        throw Error("--sinks: " + std::to_string(S) + " sink slots is larger than the window of " + std::to_string(W) +
                    (cfg.window == kAuto ? " (the default: the model's context_length " +
                                            std::to_string(model.context_length) + " minus the sinks; pass --window)"
                                      : std::string(" (--window)")) +
                    ": the cache would be mostly sinks");
      return CachePolicy(cfg.policy, S, W, -1, cfg.positions);
    }
  }
  throw Error("--policy: unknown policy");
}

}  // namespace streamsink
