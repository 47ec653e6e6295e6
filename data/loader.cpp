#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"

namespace streamsink {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  uint64_t state = seed;
  state = splitmix64(state) ^ static_cast<uint64_t>(epoch);  // decorrelate epochs of nearby seeds
  for (int64_t i = n - 1; i > 0; --i) {
    // Multiply-shift maps 64 random bits onto [0, i]; its bias (< 2^-32 for n < 2^32) is irrelevant here.
    const uint64_t r = splitmix64(state);
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

Loader::Loader(LoaderConfig cfg) : cfg_(std::move(cfg)) {
  const std::string& dir = cfg_.data_dir;
  const auto k = static_cast<int64_t>(cfg_.prefix.size());
  if (cfg_.batch_size < 1) fail(dir, "loader batch_size must be >= 1");
  if (cfg_.world_size < 1 || cfg_.rank < 0 || cfg_.rank >= cfg_.world_size)
    fail(dir, "loader rank " + std::to_string(cfg_.rank) + " outside world size " + std::to_string(cfg_.world_size));
  if (cfg_.seq_len - k < 1)
    fail(dir, "seq_len " + std::to_string(cfg_.seq_len) + " leaves no room for text after " + std::to_string(k) +
                  " prefix tokens");
  for (const auto& path : list_shards(dir, cfg_.split)) {
    shards_.push_back(Shard::open(path));
    shard_begin_.push_back(total_tokens_);
    total_tokens_ += shards_.back().size();
  }
  window_len_ = cfg_.seq_len - k + 1;              // L
  stride_ = k == 0 ? window_len_ - 1 : window_len_;  // number of real targets per window
  n_windows_ = total_tokens_ < window_len_ ? 0 : (total_tokens_ - window_len_) / stride_ + 1;
  if (n_windows_ == 0)
    fail(dir, "the " + cfg_.split + " split has " + std::to_string(total_tokens_) +
                  " tokens, not one window of " + std::to_string(window_len_) + " (seq_len " +
                  std::to_string(cfg_.seq_len) + (k > 0 ? " with " + std::to_string(k) + " sink tokens" : "") + ")");
  const int64_t need = cfg_.batch_size * cfg_.world_size;
  if (n_windows_ < need)
    fail(dir, "the " + cfg_.split + " split has " + std::to_string(total_tokens_) + " tokens = " +
                  std::to_string(n_windows_) + " windows of " + std::to_string(window_len_) +
                  " tokens, fewer than one global batch (batch_size x world_size = " + std::to_string(need) + ")");
  build_order();
}

void Loader::build_order() {
  order_.clear();
  if (cfg_.shuffle) order_ = epoch_permutation(n_windows_, cfg_.seed, cursor_.epoch);
}

void Loader::restore(const LoaderCursor& c) {
  if (c.epoch < 0 || c.step_in_epoch < 0 || c.step_in_epoch > steps_per_epoch())
    fail(cfg_.data_dir, "loader cursor (epoch " + std::to_string(c.epoch) + ", step " +
                            std::to_string(c.step_in_epoch) + ") does not fit this data (" +
                            std::to_string(steps_per_epoch()) + " steps per epoch)");
  const bool new_epoch = c.epoch != cursor_.epoch;
  cursor_ = c;
  if (new_epoch) build_order();
}

void Loader::read_tokens(int64_t begin, int64_t n, int64_t* out) const {
  // The shard holding `begin`: the last one starting at or before it.
  auto it = std::upper_bound(shard_begin_.begin(), shard_begin_.end(), begin);
  auto s = static_cast<size_t>(it - shard_begin_.begin()) - 1;
  while (n > 0) {
    const int64_t off = begin - shard_begin_[s];
    const int64_t take = std::min(n, shards_[s].size() - off);
    shards_[s].copy(off, take, out);
    out += take, begin += take, n -= take;
    ++s;
  }
}

void Loader::fill_row(int64_t window, int64_t* row_in, int64_t* row_tg, std::vector<int64_t>& x) const {
  const auto k = static_cast<int64_t>(cfg_.prefix.size());
  x.resize(static_cast<size_t>(window_len_));  // L tokens of the stream
  read_tokens(window * stride_, window_len_, x.data());
  if (k == 0) {
    std::copy(x.begin(), x.end() - 1, row_in);  // x[0..T-1]
    std::copy(x.begin() + 1, x.end(), row_tg);  // x[1..T]
  } else {
    std::copy(cfg_.prefix.begin(), cfg_.prefix.end(), row_in);  // p_1..p_k
    std::copy(x.begin(), x.end() - 1, row_in + k);               // x[0..T-k-1]
    std::fill(row_tg, row_tg + (k - 1), int64_t{-100});          // sinks predict nothing ...
    std::copy(x.begin(), x.end(), row_tg + (k - 1));             // ... but the last predicts x[0]; x[0..T-k]
  }
}

Batch Loader::next() {
  if (cursor_.step_in_epoch >= steps_per_epoch()) {
    cursor_.epoch += 1;
    cursor_.step_in_epoch = 0;
    build_order();
  }
  const int64_t B = cfg_.batch_size;
  std::vector<int64_t> index(static_cast<size_t>(B));
  const int64_t first = cursor_.step_in_epoch * B * cfg_.world_size + cfg_.rank * B;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pos = first + b;
    index[static_cast<size_t>(b)] = order_.empty() ? pos : order_[static_cast<size_t>(pos)];
  }
  cursor_.step_in_epoch += 1;
  return windows(index);
}

Batch Loader::windows(const std::vector<int64_t>& index) const {
  const auto n = static_cast<int64_t>(index.size()), T = cfg_.seq_len;
  at::Tensor inputs = at::empty({n, T}, at::kLong);   // [n, T]
  at::Tensor targets = at::empty({n, T}, at::kLong);  // [n, T]
  int64_t* in = inputs.data_ptr<int64_t>();
  int64_t* tg = targets.data_ptr<int64_t>();
  std::vector<int64_t> scratch;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t w = index[static_cast<size_t>(b)];
    if (w < 0 || w >= n_windows_)
      fail(cfg_.data_dir, "window " + std::to_string(w) + " of the " + cfg_.split + " split does not exist (it has " +
                              std::to_string(n_windows_) + ")");
    fill_row(w, in + b * T, tg + b * T, scratch);
  }
  return {inputs, targets};
}

}  // namespace streamsink
