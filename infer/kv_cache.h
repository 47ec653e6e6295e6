// The KV cache: S sink slots that never move plus a ring of recent slots, preallocated per layer, for a batch of
// independent streams (StreamingLLM §3.2, Figure 4). Which slots a query sees is the CachePolicy's business; this
// class stores, masks and hands out views.
//
// Shapes: B streams, C new tokens per step, L layers, Hkv key/value heads, D head_dim, S sink slots,
// R = Wcap + 1 ring slots (Wcap = W + max_chunk - 1, plus one scratch slot for padding), N = R.
//
// Layout per layer: one k/v buffer [B, Hkv, S + R, D], the S sink slots first and the R ring slots after them, so a
// step attends over both with one matmul. The token at text position t of stream b lives in slot t when t < S,
// else in ring slot r = (t - S) mod Wcap, i.e. buffer slot S + r. Keys arrive rotated by their text
// position and are never re-rotated or moved (model/kv_cache_interface.h explains why): a step writes C slots
// per stream with plain copies and returns the whole storage with masks. Wcap leaves room so a prefill chunk of
// up to max_chunk tokens never overwrites a key an earlier query of the same chunk still needs.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "infer/cache_policy.h"
#include "model/config.h"
#include "model/kv_cache_interface.h"

namespace streamsink {

// What a KVCache with these settings, and one decode step over it, hold in host memory at once (kv_cache.cpp says
// what is counted), in bytes; in double, for settings whose sizes pass 2^63. keys_values and scores are 0 when
// `options` is a GPU's (they live in its memory, whose out-of-memory is an ordinary error).
struct KVCacheMemory {
  double keys_values = 0;  // every layer's k and v [B, Hkv, S + R, D]
  double scores = 0;       // one layer's attention scores during a step: kScoreBuffers x [B, H, C, S + R] floats
  double positions = 0;    // the ring's slot positions [B, R] int64 (on the host whatever the device)
  double mask = 0;         // two steps' masks [B, C, S + R] bool (on the host: the next is built while the last
                           //   is still held; twice that for a GPU's, in pinned blocks rounded up to a power of 2)
  double total() const { return keys_values + scores + positions + mask; }
};
KVCacheMemory kv_cache_memory(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
                              const at::TensorOptions& options);

class KVCache : public KVCacheInterface {
 public:
  // Allocates every layer's storage on `options`' device and dtype (the model's). Error first, naming the flags that
  // size it (--window, --chunk; --tokens for dense), when kv_cache_memory() exceeds the host memory this process can
  // get (common/memory.h).
  KVCache(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
          at::TensorOptions options);

  // Prepares a step of C new tokens per stream: stream b's first n_valid[b] tokens are real, the rest padding
  // (neither stored nor counted; empty n_valid = all C real). Computes the tokens' positions, their slots and the
  // masks once for all layers. Error (from the policy) when a dense stream overflows. Returns the positions to
  // pass to Transformer::step.
  StepPositions begin_step(int64_t C, const std::vector<int64_t>& n_valid = {});
  // The step's keys and values are all stored: each stream's count advances by its n_valid. A step that is never
  // ended (the model threw half-way through its layers) is undone by the next begin_step or reset(): the slots
  // it wrote hold only tokens no later query can see (see the header comment on Wcap), and their positions are
  // put back, so the cache is as if that step had never begun.
  void end_step();

  // KVCacheInterface: k_rot/v [B, Hkv, C, D] → stored in this step's slots; returns views of the whole storage.
  CacheView append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) override;

  // Text position of the token held by every slot, -1 = empty: [B, S + Wcap] (sinks first, then the ring).
  at::Tensor positions() const;
  const std::vector<int64_t>& seen() const { return seen_; }  // tokens each stream has taken (ended steps)
  void reset();                                               // forget every stream (storage kept)
  int64_t bytes() const;                                      // storage held: keys, values, slot positions

  const CachePolicy& policy() const { return policy_; }
  int64_t batch() const { return B_; }
  int64_t ring_slots() const { return Wcap_; }  // Wcap (without the scratch slot)

 private:
  CachePolicy policy_;
  int64_t B_, L_, S_, W_, Wcap_, max_chunk_;
  std::vector<int64_t> seen_;               // per stream
  std::vector<at::Tensor> k_, v_;            // per layer [B, Hkv, S + R, D]: sink slots, then ring slots
  c10::Device device_;                       // where the storage lives
  at::Tensor ring_pos_;                      // [B, R] int64 text position per ring slot, -1 = empty, on the host
                                             //   whatever the device: the write plan and masks are made there
  // This step's write plan and masks, shared by all layers. A stream's new real tokens are consecutive slots
  // (mod Wcap), so each stream writes at most three runs with a plain copy (sinks, ring, ring after the wrap).
  struct Run {
    int64_t b, c0, n, slot;  // rows c0..c0+n-1 of stream b → buffer slots slot..slot+n-1
  };
  std::vector<Run> runs_;
  at::Tensor mask_;  // [B, 1, C, S + R] bool
  int64_t step_C_ = 0;
  // The step begun and not yet ended: its real tokens per stream, and the ring slot positions it overwrote.
  struct Overwritten {
    int64_t index, position;  // index into ring_pos_'s [B·R] numbers, and the position it held before
  };
  std::vector<int64_t> pending_valid_;
  std::vector<Overwritten> overwritten_;
  void undo_pending_step();
};

}  // namespace streamsink
