// train/validation.*: the validation set is the split's first n windows, and its loss is one number for that set
// whatever the batch and the rank count. Oracle: the windows scored one at a time through Loader::next() of an
// ordered batch-1 loader, each window's own mean loss, averaged by hand.
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <ATen/Parallel.h>

#include <numeric>

#include "data/loader.h"
#include "data/shard.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"
#include "train/validation.h"

using namespace streamsink;
using streamsink::testing::TempDir;
using streamsink::testing::tiny_config;

namespace {

// A val split of n pseudo-random ids in [8, vocab) (above the tiny config's sink ids), in two shards.
void make_val(const std::string& dir, int64_t n, int64_t vocab) {
  std::vector<int32_t> a, b;
  uint64_t x = 12345;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    (i < n / 2 ? a : b).push_back(static_cast<int32_t>(8 + (x >> 33) % static_cast<uint64_t>(vocab - 8)));
  }
  write_shard(shard_path(dir, "val", 0), a, TokenDtype::kU16);
  write_shard(shard_path(dir, "val", 1), b, TokenDtype::kU16);
}

LoaderConfig val_config(const std::string& dir, int64_t T, std::vector<int64_t> prefix) {
  return {dir, "val", 1, T, 1337, 0, 1, std::move(prefix), false};
}

}  // namespace

TEST(Validation, RankWindowsTileTheSetOnceInOrder) {
  EXPECT_EQ(rank_windows(7, 0, 3), (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(rank_windows(7, 2, 3), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(rank_windows(2, 2, 3).empty()) << "a rank past the set scores nothing";
  std::vector<int> seen(50, 0);
  for (int r = 0; r < 4; ++r)
    for (int64_t w : rank_windows(50, r, 4)) seen[static_cast<size_t>(w)] += 1;
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 50);
}

TEST(Validation, WindowsAreTheOrderedLoadersBatchesAndOutOfRangeIsAnError) {
  TempDir dir;
  make_val(dir.str(), 500, 64);
  for (const std::vector<int64_t>& prefix : {std::vector<int64_t>{}, std::vector<int64_t>{4, 5}}) {
    Loader one(val_config(dir.str(), 16, prefix));  // batch 1, ordered: window i is the i-th next()
    const Loader val(val_config(dir.str(), 16, prefix));
    const auto batches = window_batches(val, {0, 1, 2, 3, 4, 5, 6}, 3);
    ASSERT_EQ(batches.size(), 3u);
    EXPECT_EQ(batches[2].inputs.size(0), 1) << "the last batch holds what is left";
    for (int64_t i = 0; i < 7; ++i) {
      const Batch b = one.next();
      const Batch& got = batches[static_cast<size_t>(i / 3)];
      EXPECT_TRUE(got.inputs[i % 3].equal(b.inputs[0])) << "window " << i;
      EXPECT_TRUE(got.targets[i % 3].equal(b.targets[0])) << "window " << i;
    }
    EXPECT_THROW(val.windows({val.windows_per_epoch()}), Error);
    EXPECT_THROW(val.windows({-1}), Error);
  }
}

TEST(Validation, TheLossIsTheSetsMeanWhateverTheBatchAndTheRanks) {
  TempDir dir;
  auto cfg = tiny_config(SinkKind::kToken);  // two sink tokens: T − 1 targets a window, the first k − 1 ignored
  make_val(dir.str(), 700, cfg.vocab_size);
  at::set_num_threads(1);
  at::manual_seed(3);
  Transformer model(cfg);
  model->eval();
  torch::NoGradGuard g;
  const int64_t T = 16;
  const Loader val(val_config(dir.str(), T, {4, 5}));
  ASSERT_EQ(validation_size(val, 1 << 20), val.windows_per_epoch()) << "a set larger than the split is the split";
  const int64_t n = validation_size(val, 23);
  ASSERT_EQ(n, 23);
  ASSERT_GT(val.windows_per_epoch(), 30) << "the set must be a prefix, not the whole split";

  // the oracle: every target's negative log-likelihood from the logits by hand (no Transformer::loss, whose handling
  // of the -100 targets would otherwise cancel out), summed over the set, over the count of targets
  Loader one(val_config(dir.str(), T, {4, 5}));
  double nll = 0;
  int64_t targets = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Batch b = one.next();
    const at::Tensor logp = at::log_softmax(model->forward(b.inputs)[0].to(at::kDouble), -1);  // [T, V]
    for (int64_t t = 0; t < T; ++t) {
      const int64_t y = b.targets[0][t].item<int64_t>();
      if (y == -100) continue;
      nll -= logp[t][y].item<double>();
      ++targets;
    }
  }
  ASSERT_EQ(targets, n * (T - 1)) << "two sink tokens: T - 1 targets a window";
  const double oracle = nll / static_cast<double>(targets);

  const c10::Device cpu(c10::kCPU);
  for (int world : {1, 2, 3, 5})
    for (int64_t batch : {1, 4, 23, 64}) {
      double total = 0;
      for (int r = 0; r < world; ++r) total += validation_loss_sum(model, val, n, batch, r, world, cpu, false);
      EXPECT_NEAR(total / static_cast<double>(n), oracle, 1e-5 * oracle) << world << " ranks, batch " << batch;
    }
  // the set is the first n windows: one more window changes the loss
  double more = 0;
  for (int r = 0; r < 2; ++r) more += validation_loss_sum(model, val, n + 1, 4, r, 2, cpu, false);
  EXPECT_GT(std::abs(more / static_cast<double>(n + 1) - oracle), 1e-6);
}
