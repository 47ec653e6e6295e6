#include "infer/decoder.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <string>

#include "common/error.h"

namespace streamsink {

std::vector<int64_t> sink_prefix(const ModelConfig& cfg) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < cfg.prefix_tokens(); ++i) p.push_back(cfg.sink_token_id + i);
  return p;
}

std::vector<int64_t> stream_prefix(const DecodeConfig& decode, const ModelConfig& cfg) {
  std::vector<int64_t> p;
  if (decode.bos_id >= 0) p.push_back(decode.bos_id);
  const auto sinks = sink_prefix(cfg);
  p.insert(p.end(), sinks.begin(), sinks.end());
  return p;
}

Decoder::Decoder(Transformer model, const DecodeConfig& cfg, int64_t batch)
    : model_(std::move(model)),
      device_(model_->parameters().front().device()),
      policy_(make_policy(cfg, model_->config())),
      B_(batch),
      max_chunk_(resolved_chunk(cfg, policy_)),
      prefix_(stream_prefix(cfg, model_->config())),
      seen_(batch, 0),
      head_(batch),
      tail_(batch) {
  TORCH_CHECK(batch > 0, "Decoder: batch must be positive");
  max_chunk_ = std::max<int64_t>(max_chunk_, static_cast<int64_t>(prefix_.size()));
  if (!policy_.recomputes()) {
    const at::Tensor w = model_->parameters().front();
    cache_ = std::make_unique<KVCache>(model_->config(), policy_, B_, max_chunk_, w.options());
  }
}

at::TensorOptions Decoder::logits_options() const {
  return at::TensorOptions().dtype(at::kFloat).device(device_);
}

void Decoder::reset() {
  std::fill(seen_.begin(), seen_.end(), 0);
  if (cache_) cache_->reset();
  for (auto& h : head_) h.clear();
  for (auto& t : tail_) t.clear();
}

int64_t Decoder::cache_bytes() const {
  if (cache_) return cache_->bytes();
  int64_t n = 0;
  for (int64_t b = 0; b < B_; ++b) n += static_cast<int64_t>((head_[b].size() + tail_[b].size()) * sizeof(int64_t));
  return n;
}

void Decoder::feed_prefix_if_fresh() {
  if (prefix_.empty()) return;
  std::vector<std::vector<int64_t>> streams(B_);
  std::vector<int64_t> n_valid(B_, 0);
  bool any = false;
  for (int64_t b = 0; b < B_; ++b)
    if (seen_[b] == 0) streams[b] = prefix_, n_valid[b] = static_cast<int64_t>(prefix_.size()), any = true;
  if (!any) return;
  const auto C = static_cast<int64_t>(prefix_.size());
  const LogitsFn drop = [](int64_t, const std::vector<int64_t>&, const at::Tensor&) {};
  if (cache_) step_cached(streams, 0, C, n_valid, drop);
  else step_recompute(streams, 0, C, n_valid, drop);
}

void Decoder::feed(const std::vector<std::vector<int64_t>>& streams, const LogitsFn& on_logits) {
  TORCH_CHECK(static_cast<int64_t>(streams.size()) == B_, "Decoder::feed: ", streams.size(), " streams for a batch of ",
              B_);
  torch::NoGradGuard no_grad;
  int64_t T = 0;
  const int64_t V = model_->config().vocab_size;
  for (size_t b = 0; b < streams.size(); ++b) {
    T = std::max<int64_t>(T, static_cast<int64_t>(streams[b].size()));
    // Checked before anything is fed: on a GPU an id past the embedding is a device-side assert, not an error.
    for (size_t i = 0; i < streams[b].size(); ++i)
      if (streams[b][i] < 0 || streams[b][i] >= V)
        throw Error("decoder: token id " + std::to_string(streams[b][i]) + " (stream " + std::to_string(b) +
                    ", token " + std::to_string(i) + ") is outside the model's vocabulary of " + std::to_string(V) +
                    " ids; nothing was fed");
  }
  if (T == 0) return;
  feed_prefix_if_fresh();
  for (int64_t off = 0; off < T; off += max_chunk_) {
    const int64_t C = std::min(max_chunk_, T - off);
    std::vector<int64_t> n_valid(B_);
    for (int64_t b = 0; b < B_; ++b)
      n_valid[b] = std::clamp<int64_t>(static_cast<int64_t>(streams[b].size()) - off, 0, C);
    if (cache_) step_cached(streams, off, C, n_valid, on_logits);
    else step_recompute(streams, off, C, n_valid, on_logits);
  }
}

void Decoder::step_cached(const std::vector<std::vector<int64_t>>& streams, int64_t offset, int64_t C,
                          const std::vector<int64_t>& n_valid, const LogitsFn& on_logits) {
  // [B, C]; padding rows take token 0 (never seen by real rows). Pinned for a GPU, so its copy is asynchronous.
  auto tokens = at::zeros({B_, C}, at::TensorOptions().dtype(at::kLong).pinned_memory(!device_.is_cpu()));
  auto tp = tokens.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t c = 0; c < n_valid[b]; ++c) tp[b][c] = streams[b][offset + c];
  const auto pos = cache_->begin_step(C, n_valid);
  auto logits = model_->step(tokens.to(device_, /*non_blocking=*/true), pos, *cache_);  // [B, C, V]
  cache_->end_step();  // only now: a step that throws takes none of its tokens (kv_cache.h)
  for (int64_t b = 0; b < B_; ++b) seen_[b] += n_valid[b];
  on_logits(offset, n_valid, logits);
}

// Sliding window with re-computation (the paper's Figure 1c): for every token a fresh forward over the first S
// tokens and the last W tokens of its stream, whose positions are therefore 0..n-1; the last row is its logits.
// The chunk works on copies of the kept tokens (B·(S + W) ids, nothing beside a forward per token), swapped in
// at the end, so a forward that throws takes none of the chunk's tokens, as in step_cached.
void Decoder::step_recompute(const std::vector<std::vector<int64_t>>& streams, int64_t offset, int64_t C,
                             const std::vector<int64_t>& n_valid, const LogitsFn& on_logits) {
  const int64_t S = policy_.sinks(), W = policy_.window();
  auto head = head_;
  auto tail = tail_;
  at::Tensor logits;  // [B, C, V]
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t c = 0; c < n_valid[b]; ++c) {
      const int64_t tok = streams[b][offset + c];
      if (static_cast<int64_t>(head[b].size()) < S) {
        head[b].push_back(tok);
      } else {
        tail[b].push_back(tok);
        if (static_cast<int64_t>(tail[b].size()) > W) tail[b].pop_front();
      }
      std::vector<int64_t> ctx(head[b]);
      ctx.insert(ctx.end(), tail[b].begin(), tail[b].end());
      const auto n = static_cast<int64_t>(ctx.size());
      auto x = at::tensor(ctx, at::kLong).view({1, n}).to(device_);  // [1, n]
      auto last = model_->forward_last(x);                            // [1, V]
      if (!logits.defined()) logits = at::zeros({B_, C, last.size(-1)}, last.options());
      logits.select(0, b).select(0, c).copy_(last.squeeze(0));
    }
  }
  if (!logits.defined()) logits = at::zeros({B_, C, model_->config().vocab_size}, logits_options());
  head_.swap(head);
  tail_.swap(tail);
  for (int64_t b = 0; b < B_; ++b) seen_[b] += n_valid[b];
  on_logits(offset, n_valid, logits);
}

at::Tensor Decoder::feed(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == B_, "Decoder::feed: expected tokens [B=", B_, ", T]");
  const auto cpu = tokens.to(at::kCPU).to(at::kLong).contiguous();
  std::vector<std::vector<int64_t>> streams(B_);
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t* p = cpu[b].data_ptr<int64_t>();
    streams[b].assign(p, p + tokens.size(1));
  }
  std::vector<at::Tensor> parts;
  feed(streams, [&](int64_t, const std::vector<int64_t>&, const at::Tensor& l) { parts.push_back(l); });
  return at::cat(parts, 1);  // [B, T, V]
}

std::vector<at::Tensor> Decoder::feed_all(const std::vector<std::vector<int64_t>>& streams) {
  std::vector<std::vector<at::Tensor>> parts(B_);
  feed(streams, [&](int64_t, const std::vector<int64_t>& n_valid, const at::Tensor& l) {
    for (int64_t b = 0; b < B_; ++b)
      if (n_valid[b] > 0) parts[b].push_back(l.select(0, b).narrow(0, 0, n_valid[b]));  // [n_b, V]
  });
  std::vector<at::Tensor> out(B_);
  for (int64_t b = 0; b < B_; ++b)
    out[b] = parts[b].empty() ? at::empty({0, model_->config().vocab_size}, logits_options())  // [T_b, V]
                              : at::cat(parts[b], 0);
  return out;
}

at::Tensor Decoder::feed_last(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == B_ && tokens.size(1) > 0,
              "Decoder::feed_last: expected tokens [B=", B_, ", T >= 1]");
  const auto cpu = tokens.to(at::kCPU).to(at::kLong).contiguous();
  std::vector<std::vector<int64_t>> streams(B_);
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t* p = cpu[b].data_ptr<int64_t>();
    streams[b].assign(p, p + tokens.size(1));
  }
  at::Tensor last;
  feed(streams, [&](int64_t, const std::vector<int64_t>& n_valid, const at::Tensor& l) {
    last = l.select(1, n_valid[0] - 1);  // [B, V]: every stream has the same length here
  });
  return last;
}

}  // namespace streamsink
