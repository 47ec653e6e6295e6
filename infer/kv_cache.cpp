#include "infer/kv_cache.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/memory.h"

namespace streamsink {

namespace {

// A CPU allocation that fails aborts the process (LibTorch's allocator), and one that the kernel grants past the
// machine's memory gets the process OOM-killed without a word, so a cache larger than the host memory this process
// can get (a typo in --window or --chunk, a dense evaluation of a long stream) is an Error first. What one decode step
// holds at once, with R = W + 1 ring slots for dense (the scratch slot) and W + C otherwise (kv_cache.h):
//   host, whatever the device: the ring's slot positions (int64) [B, R] and two steps' masks (bool) [B, C, S + R]
//     (begin_step builds the next while the last is still held);
//   on a CPU also: the keys and values [B, Hkv, S + R, D] of every layer, and one layer's attention scores:
//     model/attention.cpp step() holds up to kScoreBuffers [B, H, C, S + R] buffers of at least float at once: the
//     scores and their masked copy, then the masked scores and the probabilities (2); with a sink logit (zero,
//     logit) the masked scores, scores - lse and its exp (3; the masked scores and logsumexp's temporary before).
//     Measured (the growth of eval-stream --policy dense's peak RSS, tiny.yaml, chunk 256, from 10k to 30k tokens
//     with sink: logit, from 30k to 60k with sink: none), keys, values and masks aside: 3.1 such buffers with a
//     sink logit, 2.05 without; 3 is the count for the variants with a sink logit, and an upper bound without.
// On a GPU the keys, values and scores live in device memory, whose out-of-memory is an ordinary error. The weights,
// logits and the MLP's activations are small beside these and not counted. In double: S + W + chunk may pass 2^63
// before anything is allocated.
constexpr double kScoreBuffers = 3;

void check_fits_in_memory(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
                          const at::TensorOptions& options) {
  const KVCacheMemory m = kv_cache_memory(model, policy, batch, max_chunk, options);
  const bool dense = policy.kind() == PolicyKind::kDense;
  std::string what = "the KV cache would need " + format_bytes(m.total()) + " of host memory (" +
                     (dense ? "a dense cache of " + std::to_string(policy.window()) + " tokens"
                            : std::to_string(policy.sinks()) + " sink + " + std::to_string(policy.window()) +
                                  " window + " + std::to_string(max_chunk) + " chunk slots") +
                     " per layer and stream";
  if (options.device().is_cpu()) {
    const double slots = m.mask / (2.0 * static_cast<double>(batch) * static_cast<double>(max_chunk));  // S + R
    char shape[160];  // in %.0f: a slot count may pass 2^63
    std::snprintf(shape, sizeof shape, "%.0f float buffers of %lld x %lld heads x %lld rows x %.0f slots",
                  kScoreBuffers, static_cast<long long>(batch), static_cast<long long>(model.n_heads),
                  static_cast<long long>(max_chunk), slots);
    what += ": " + format_bytes(m.keys_values) + " for keys and values + " + format_bytes(m.scores) +
            " for a step's attention scores, " + shape + ", + " + format_bytes(m.positions + m.mask) +
            " for slot positions and two steps' masks";
  }
  require_host_memory(m.total(), what + ")",
                      dense ? ": a dense cache holds the whole stream; lower --tokens (the stream's length) or --chunk "
                              "(the rows of a step's attention scores), or use --policy streaming"
                            : ": lower --window or --chunk");
}

}  // namespace

KVCacheMemory kv_cache_memory(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
                              const at::TensorOptions& options) {
  const double S = static_cast<double>(policy.sinks()), W = static_cast<double>(policy.window());
  const double C = static_cast<double>(max_chunk), B = static_cast<double>(batch);
  const double R = W + (policy.kind() == PolicyKind::kDense ? 1.0 : C);  // Wcap + 1 (the constructor's)
  const double elem = static_cast<double>(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  KVCacheMemory m;
  m.positions = B * R * 8.0;
  // On a GPU the masks go up from pinned memory, whose caching allocator rounds each block up to a power of two
  // (at most twice the size) and keeps it: counted at twice their size there.
  m.mask = 2.0 * B * C * (S + R) * (options.device().is_cpu() ? 1.0 : 2.0);
  if (options.device().is_cpu()) {
    m.keys_values = 2.0 * static_cast<double>(model.n_layers) * B * static_cast<double>(model.n_kv_heads) * (S + R) *
                    static_cast<double>(model.head_dim()) * elem;
    m.scores = kScoreBuffers * B * static_cast<double>(model.n_heads) * C * (S + R) * std::max(4.0, elem);
  }
  return m;
}

KVCache::KVCache(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
                 at::TensorOptions options)
    : policy_(policy),
      B_(batch),
      L_(model.n_layers),
      S_(policy.sinks()),
      W_(policy.window()),
      max_chunk_(max_chunk),
      seen_(batch, 0),
      device_(options.device()) {
  TORCH_CHECK(batch > 0 && max_chunk > 0, "KVCache: batch and max_chunk must be positive");
  TORCH_CHECK(!policy.recomputes(), "KVCache: the recompute policy keeps no cache");
  check_fits_in_memory(model, policy, batch, max_chunk, options);
  // A dense stream never wraps (check_room stops it first); otherwise leave room for a whole chunk (see header).
  Wcap_ = policy.kind() == PolicyKind::kDense ? W_ : W_ + max_chunk - 1;
  const int64_t Hkv = model.n_kv_heads, D = model.head_dim(), R = Wcap_ + 1;
  for (int64_t l = 0; l < L_; ++l) {
    k_.push_back(at::zeros({B_, Hkv, S_ + R, D}, options));  // [B, Hkv, S + R, D]
    v_.push_back(at::zeros({B_, Hkv, S_ + R, D}, options));
  }
  ring_pos_ = at::full({B_, R}, -1, at::TensorOptions().dtype(at::kLong));  // [B, R]
}

StepPositions KVCache::begin_step(int64_t C, const std::vector<int64_t>& n_valid) {
  TORCH_CHECK(C > 0 && C <= max_chunk_, "KVCache::begin_step: C = ", C, " outside [1, max_chunk = ", max_chunk_, "]");
  TORCH_CHECK(n_valid.empty() || static_cast<int64_t>(n_valid.size()) == B_, "KVCache::begin_step: n_valid size");
  undo_pending_step();
  std::vector<int64_t> valid(B_, C);
  if (!n_valid.empty()) valid = n_valid;
  for (int64_t b = 0; b < B_; ++b) {
    TORCH_CHECK(valid[b] >= 0 && valid[b] <= C, "KVCache::begin_step: n_valid[", b, "] = ", valid[b]);
    policy_.check_room(seen_[b], valid[b]);
  }

  // The write plan, the slot positions and the masks, on the host (B·C·(S + R) numbers, no tensor ops), then
  // when the cache lives on a GPU one asynchronous transfer each, from pinned memory: a blocking copy from pageable
  // memory would wait for the GPU to finish all queued work, three times a step. Masks (policy.visible): ring slot
  // holding token p is visible to the query at t when t - W < p <= t (ring tokens all have p >= S); sink slot j
  // when j <= t. A padded query sees only the scratch slot (its own junk), so its row stays finite and no real row
  // sees it.
  const int64_t R = Wcap_ + 1;
  const bool gpu = !device_.is_cpu();
  const auto cpu_long = at::TensorOptions().dtype(at::kLong).pinned_memory(gpu);
  const auto cpu_bool = at::TensorOptions().dtype(at::kBool).pinned_memory(gpu);
  auto text = at::empty({B_, C}, cpu_long), sinkq = at::empty({B_, C}, cpu_long);  // [B, C]
  auto mask = at::empty({B_, 1, C, S_ + R}, cpu_bool);  // [B, 1, C, S + R]
  int64_t* tp = text.data_ptr<int64_t>();
  int64_t* qp = sinkq.data_ptr<int64_t>();
  bool* mp = mask.data_ptr<bool>();
  int64_t* rpos = ring_pos_.data_ptr<int64_t>();  // [B, R], contiguous
  runs_.clear();
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t t0 = seen_[b], nv = valid[b];
    // sink rows: tokens t0.. < S; ring rows: the rest, consecutive slots (t - S) mod Wcap, split at the wrap
    const int64_t n_sink = std::clamp<int64_t>(S_ - t0, 0, nv);
    if (n_sink > 0) runs_.push_back({b, 0, n_sink, t0});
    for (int64_t c = n_sink; c < nv;) {
      const int64_t slot = (t0 + c - S_) % Wcap_, n = std::min(nv - c, Wcap_ - slot);
      runs_.push_back({b, c, n, S_ + slot});
      for (int64_t i = 0; i < n; ++i) {
        int64_t& p = rpos[b * R + slot + i];
        overwritten_.push_back({b * R + slot + i, p});
        p = t0 + c + i;
      }
      c += n;
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t t = t0 + c;
      tp[b * C + c] = t;
      qp[b * C + c] = policy_.sink_query_position(t);
      bool* srow = mp + (b * C + c) * (S_ + R);  // the sink columns, then the ring columns
      bool* wrow = srow + S_;
      if (c < nv) {
        for (int64_t j = 0; j < R; ++j) {
          const int64_t p = rpos[b * R + j];
          wrow[j] = p >= 0 && p <= t && p > t - W_;
        }
        for (int64_t j = 0; j < S_; ++j) srow[j] = j <= t;
      } else {
        std::fill(wrow, wrow + R, false);
        wrow[Wcap_] = true;  // the scratch slot
        std::fill(srow, srow + S_, false);
      }
    }
  }
  pending_valid_ = valid;
  if (gpu) {  // the caching host allocator keeps each pinned block until its copy has run
    text = text.to(device_, /*non_blocking=*/true);
    sinkq = sinkq.to(device_, /*non_blocking=*/true);
    mask = mask.to(device_, /*non_blocking=*/true);
  }
  mask_ = mask;  // [B, 1, C, S + R]
  step_C_ = C;
  return StepPositions{text, sinkq};
}

void KVCache::end_step() {
  TORCH_CHECK(!pending_valid_.empty(), "KVCache::end_step: no step was begun");
  for (int64_t b = 0; b < B_; ++b) seen_[b] += pending_valid_[b];
  pending_valid_.clear();
  overwritten_.clear();
}

void KVCache::undo_pending_step() {
  if (pending_valid_.empty()) return;
  int64_t* rpos = ring_pos_.data_ptr<int64_t>();
  for (auto it = overwritten_.rbegin(); it != overwritten_.rend(); ++it) rpos[it->index] = it->position;
  pending_valid_.clear();
  overwritten_.clear();
  runs_.clear();
  step_C_ = 0;
}

CacheView KVCache::append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) {
  TORCH_CHECK(layer >= 0 && layer < L_, "KVCache::append: layer ", layer, " of ", L_);
  TORCH_CHECK(k_rot.size(0) == B_ && k_rot.size(2) == step_C_,
              "KVCache::append: expected [B=", B_, ", Hkv, C=", step_C_, ", D], got ", k_rot.sizes(),
              " (call begin_step first)");
  // Padding rows are not written at all: no real query sees the scratch slot, and a padded one only reads junk.
  for (const auto& r : runs_) {
    k_[layer].select(0, r.b).narrow(1, r.slot, r.n).copy_(k_rot.select(0, r.b).narrow(1, r.c0, r.n));  // [Hkv, n, D]
    v_[layer].select(0, r.b).narrow(1, r.slot, r.n).copy_(v.select(0, r.b).narrow(1, r.c0, r.n));
  }
  return CacheView{k_[layer], v_[layer], mask_, S_};
}

at::Tensor KVCache::positions() const {
  auto j = at::arange(S_, ring_pos_.options()).view({1, S_}).expand({B_, S_});  // [B, S]
  auto seen = at::tensor(seen_, at::TensorOptions().dtype(at::kLong)).view({B_, 1});
  auto sinks = at::where(j.lt(seen), j, at::full_like(j, -1));
  return at::cat({sinks, ring_pos_.narrow(1, 0, Wcap_)}, 1).to(device_);  // [B, S + Wcap]
}

void KVCache::reset() {
  pending_valid_.clear();
  overwritten_.clear();
  runs_.clear();
  step_C_ = 0;
  std::fill(seen_.begin(), seen_.end(), 0);
  ring_pos_.fill_(-1);
}

int64_t KVCache::bytes() const {
  int64_t n = ring_pos_.nbytes();
  for (int64_t l = 0; l < L_; ++l) n += k_[l].nbytes() + v_[l].nbytes();
  return n;
}

}  // namespace streamsink
