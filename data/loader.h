// The training (and validation) loader: batches of fixed-length windows from a split's memory-mapped shards.
//
// With k = prefix.size() sink ids prepended, a sample reads L = T - k + 1 consecutive tokens x[0..L-1] of the
// split's concatenated stream:
//   k = 0: inputs = x[0..T-1],                 targets = x[1..T]
//   k > 0: inputs = [p_1..p_k, x[0..T-k-1]],   targets = [-100 x (k-1), x[0..T-k]]
// so the last sink predicts x[0] and no target is ever a sink. Windows start every `stride` tokens, where stride
// is the number of real targets per window (T when k = 0, L = T-k+1 when k > 0): every token of the split is a
// target exactly once per epoch.
// Window order: shuffled per epoch by a permutation seeded from (seed, epoch); global step s covers permuted
// windows [s*B*W, (s+1)*B*W) and rank r takes the contiguous B of them at r*B. The tail (< B*W windows) is
// dropped. Everything is a function of (config, cursor): a checkpoint stores the cursor and resumes exactly.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace streamsink {

struct LoaderConfig {
  std::string data_dir;          // holds <split>_NNNNNN.bin
  std::string split = "train";   // train | val | test
  int64_t batch_size = 8;        // B, per rank
  int64_t seq_len = 256;         // T, model input length including the sink prefix
  uint64_t seed = 1337;          // shuffle seed
  int rank = 0;                  // this process's rank
  int world_size = 1;            // W
  std::vector<int64_t> prefix;   // sink ids prepended to every sample
  bool shuffle = true;           // false: windows in order (validation)
};

struct Batch {
  at::Tensor inputs;   // [B, T] int64, CPU
  at::Tensor targets;  // [B, T] int64, CPU; -100 where ignored
};

struct LoaderCursor {
  int64_t epoch = 0;          // epochs completed
  int64_t step_in_epoch = 0;  // global steps taken in this epoch: the next batch is this one
};

class Loader {
 public:
  explicit Loader(LoaderConfig cfg);
  Batch next();
  // The windows with these indices in the split's own order (0 = the split's first window), unshuffled, as a batch of
  // index.size() rows: what next() builds for its rows, for the validation set (train/validation.h). Error when an
  // index is out of range.
  Batch windows(const std::vector<int64_t>& index) const;
  LoaderCursor cursor() const { return cursor_; }
  void restore(const LoaderCursor& c);
  int64_t windows_per_epoch() const { return n_windows_; }
  int64_t steps_per_epoch() const { return n_windows_ / (cfg_.batch_size * cfg_.world_size); }
  int64_t tokens_in_split() const { return total_tokens_; }
  const LoaderConfig& config() const { return cfg_; }

 private:
  void read_tokens(int64_t begin, int64_t n, int64_t* out) const;  // from the concatenated stream
  void build_order();                                              // the permutation of cursor_.epoch
  void fill_row(int64_t window, int64_t* row_in, int64_t* row_tg, std::vector<int64_t>& scratch) const;

  LoaderConfig cfg_;
  std::vector<Shard> shards_;
  std::vector<int64_t> shard_begin_;  // stream offset of each shard's first token
  int64_t total_tokens_ = 0;
  int64_t window_len_ = 0;  // L
  int64_t stride_ = 0;
  int64_t n_windows_ = 0;
  std::vector<int64_t> order_;  // window index per position in this epoch (empty: identity)
  LoaderCursor cursor_;
};

// The window order of an epoch: a Fisher-Yates shuffle driven by splitmix64 seeded from (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace streamsink
