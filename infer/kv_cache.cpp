#include "infer/kv_cache.h"

#include <ATen/TensorIndexing.h>

#include "common/error.h"

namespace streamsink {

using at::indexing::Slice;

KVCache::KVCache(const ModelConfig& model, const CachePolicy& policy, int64_t batch, int64_t max_chunk,
                 at::TensorOptions options)
    : policy_(policy),
      B_(batch),
      L_(model.n_layers),
      S_(policy.sinks()),
      W_(policy.window()),
      max_chunk_(max_chunk),
      seen_(batch, 0) {
  TORCH_CHECK(batch > 0 && max_chunk > 0, "KVCache: batch and max_chunk must be positive");
  TORCH_CHECK(!policy.recomputes(), "KVCache: the recompute policy keeps no cache");
  // A dense stream never wraps (check_room stops it first); otherwise leave room for a whole chunk (see header).
  Wcap_ = policy.kind() == PolicyKind::kDense ? W_ : W_ + max_chunk - 1;
  const int64_t Hkv = model.n_kv_heads, D = model.head_dim(), R = Wcap_ + 1;
  for (int64_t l = 0; l < L_; ++l) {
    sink_k_.push_back(at::zeros({B_, Hkv, S_, D}, options));  // [B, Hkv, S, D]
    sink_v_.push_back(at::zeros({B_, Hkv, S_, D}, options));
    ring_k_.push_back(at::zeros({B_, Hkv, R, D}, options));  // [B, Hkv, R, D]
    ring_v_.push_back(at::zeros({B_, Hkv, R, D}, options));
  }
  ring_pos_ = at::full({B_, R}, -1, options.dtype(at::kLong));  // [B, R]
}

StepPositions KVCache::begin_step(int64_t C, const std::vector<int64_t>& n_valid) {
  TORCH_CHECK(C > 0 && C <= max_chunk_, "KVCache::begin_step: C = ", C, " outside [1, max_chunk = ", max_chunk_, "]");
  TORCH_CHECK(n_valid.empty() || static_cast<int64_t>(n_valid.size()) == B_, "KVCache::begin_step: n_valid size");
  std::vector<int64_t> valid(B_, C);
  if (!n_valid.empty()) valid = n_valid;
  for (int64_t b = 0; b < B_; ++b) {
    TORCH_CHECK(valid[b] >= 0 && valid[b] <= C, "KVCache::begin_step: n_valid[", b, "] = ", valid[b]);
    policy_.check_room(seen_[b], valid[b]);
  }

  // The write plan, on the host (B·C numbers), then one transfer.
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  auto text = at::empty({B_, C}, cpu_long), sinkq = at::empty({B_, C}, cpu_long);
  auto slot = at::empty({B_, C}, cpu_long), slot_pos = at::empty({B_, C}, cpu_long);
  auto pad = at::empty({B_, C}, at::TensorOptions().dtype(at::kBool));
  auto tp = text.accessor<int64_t, 2>(), qp = sinkq.accessor<int64_t, 2>();
  auto sp = slot.accessor<int64_t, 2>(), pp = slot_pos.accessor<int64_t, 2>();
  auto dp = pad.accessor<bool, 2>();
  std::vector<int64_t> sb, sc, ss;  // the new tokens that take sink slots
  bool any_pad = false;
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t t = seen_[b] + c;
      const bool real = c < valid[b];
      tp[b][c] = t;
      qp[b][c] = policy_.sink_query_position(t);
      dp[b][c] = !real;
      any_pad |= !real;
      if (real && t < S_) {
        sb.push_back(b), sc.push_back(c), ss.push_back(t);
        sp[b][c] = Wcap_, pp[b][c] = -1;  // its ring write goes to the scratch slot
      } else if (real) {
        sp[b][c] = (t - S_) % Wcap_, pp[b][c] = t;
      } else {
        sp[b][c] = Wcap_, pp[b][c] = -1;  // padding: scratch slot, never visible to a real query
      }
    }
    seen_[b] += valid[b];
  }
  const auto dev = ring_pos_.device();
  text = text.to(dev), sinkq = sinkq.to(dev);
  ring_b_ = at::arange(B_, cpu_long).view({B_, 1}).expand({B_, C}).to(dev);  // [B, C]
  ring_slot_ = slot.to(dev);                                                  // [B, C]
  ring_pos_.index_put_({ring_b_, ring_slot_}, slot_pos.to(dev));
  const auto M = static_cast<int64_t>(sb.size());
  sink_b_ = at::tensor(sb, cpu_long).view({M}).to(dev);
  sink_c_ = at::tensor(sc, cpu_long).view({M}).to(dev);
  sink_slot_ = at::tensor(ss, cpu_long).view({M}).to(dev);

  // Masks (policy.visible written as tensor ops): ring slot with token p is visible to the query at t when
  // t - W < p <= t (ring tokens all have p >= S); sink slot j when j <= t.
  const auto tq = text.view({B_, 1, C, 1});                // [B, 1, C, 1]
  const auto rp = ring_pos_.view({B_, 1, 1, Wcap_ + 1});   // [B, 1, 1, R]
  win_mask_ = rp.ge(0).logical_and(rp.le(tq)).logical_and(rp.gt(tq - W_));  // [B, 1, C, R]
  auto sj = at::arange(S_, text.options()).view({1, 1, 1, S_});               // [1, 1, 1, S]
  sink_mask_ = sj.le(tq);                                                      // [B, 1, C, S]
  if (any_pad) {
    // A padded query sees only the scratch slot (its own junk), so its row stays finite and no real row sees it.
    const auto padq = pad.to(dev).view({B_, 1, C, 1});  // [B, 1, C, 1]
    auto scratch = at::zeros({1, 1, 1, Wcap_ + 1}, win_mask_.options());
    scratch.narrow(3, Wcap_, 1).fill_(true);
    win_mask_ = at::where(padq, scratch, win_mask_);
    sink_mask_ = sink_mask_.logical_and(padq.logical_not());
  }
  step_C_ = C;
  return StepPositions{text, sinkq};
}

CacheView KVCache::append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) {
  TORCH_CHECK(layer >= 0 && layer < L_, "KVCache::append: layer ", layer, " of ", L_);
  TORCH_CHECK(k_rot.size(0) == B_ && k_rot.size(2) == step_C_,
              "KVCache::append: expected [B=", B_, ", Hkv, C=", step_C_, ", D], got ", k_rot.sizes(),
              " (call begin_step first)");
  // Advanced indices on dims 0 and 2 (a slice between): the written values are laid out [B, C, Hkv, D].
  auto kc = k_rot.permute({0, 2, 1, 3});  // [B, C, Hkv, D]
  auto vc = v.permute({0, 2, 1, 3});      // [B, C, Hkv, D]
  ring_k_[layer].index_put_({ring_b_, Slice(), ring_slot_}, kc);
  ring_v_[layer].index_put_({ring_b_, Slice(), ring_slot_}, vc);
  if (sink_b_.numel() > 0) {
    sink_k_[layer].index_put_({sink_b_, Slice(), sink_slot_}, kc.index({sink_b_, sink_c_}));  // [M, Hkv, D]
    sink_v_[layer].index_put_({sink_b_, Slice(), sink_slot_}, vc.index({sink_b_, sink_c_}));
  }
  return CacheView{sink_k_[layer], sink_v_[layer], sink_mask_, ring_k_[layer], ring_v_[layer], win_mask_};
}

at::Tensor KVCache::positions() const {
  auto j = at::arange(S_, ring_pos_.options()).view({1, S_}).expand({B_, S_});  // [B, S]
  auto seen = at::tensor(seen_, at::TensorOptions().dtype(at::kLong)).to(ring_pos_.device()).view({B_, 1});
  auto sinks = at::where(j.lt(seen), j, at::full_like(j, -1));
  return at::cat({sinks, ring_pos_.narrow(1, 0, Wcap_)}, 1);  // [B, S + Wcap]
}

void KVCache::reset() {
  std::fill(seen_.begin(), seen_.end(), 0);
  ring_pos_.fill_(-1);
}

int64_t KVCache::bytes() const {
  int64_t n = ring_pos_.nbytes();
  for (int64_t l = 0; l < L_; ++l)
    n += sink_k_[l].nbytes() + sink_v_[l].nbytes() + ring_k_[l].nbytes() + ring_v_[l].nbytes();
  return n;
}

}  // namespace streamsink
