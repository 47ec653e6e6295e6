// The KV cache as the model sees it during a decode step. The cache itself (storage, eviction, which positions
// the queries take) belongs to infer/; the model only stores new keys/values and attends over what comes back.
//
// Shapes: B streams, Hkv key/value heads, C new tokens this step, S sink slots, N window slots, D head_dim.
//
// Why two groups of keys. Under StreamingLLM's §3.2 positions are assigned by place in the cache, not by place
// in the text. Rotary attention depends only on the distance between query and key, and a window key keeps its
// distance to each query however the window slides, so window keys are rotated once, by their text position, and
// queries by theirs. Sink keys are the first S tokens of the stream (text position j = slot j) and are also stored
// rotated by j; what moves is the distance from a query to them, so for the sink group the queries are rotated by
// a second position, `sink_query` (the query's slot in the cache under §3.2, its text position under the
// `--positions text` ablation). No cached key is ever re-rotated or copied.
//
// Why one buffer. The cache hands back sinks and window as one key block (sink slots first), so the step scores
// and mixes all of it with one matmul each, the same ops a window-only cache costs; only the S sink columns are
// rescored with the second query rotation (a [C, S] matmul). Sinks are then nearly free per token (issue 8).
#pragma once
#include <ATen/ATen.h>

namespace streamsink {

// Positions of the C new tokens of a step.
struct StepPositions {
  at::Tensor text;        // [B, C] int64: position in the stream; rotates the token's key, and its query vs window keys
  at::Tensor sink_query;  // [B, C] int64: the position each query takes against the sink group
};

// What the C new queries of one layer may attend to. Every tensor is a view of cache storage (no copies).
struct CacheView {
  at::Tensor k, v;     // [B, Hkv, S + N, D]: slots 0..S-1 are the sink group (S may be 0), the rest the window
  at::Tensor mask;     // [B, 1, C, S + N] bool, true = visible
  int64_t sinks = 0;   // S
};

class KVCacheInterface {
 public:
  virtual ~KVCacheInterface() = default;
  // Stores the step's new keys (already rotated by their text positions) and values for `layer`, and returns
  // what the step's queries see. Called once per layer per step, layers in order.
  virtual CacheView append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) = 0;
};

}  // namespace streamsink
