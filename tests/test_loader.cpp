// data/loader.*: window semantics with and without a sink prefix, every token a target once per epoch,
// determinism, rank disjointness, exact resume, and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.h"
#include "data/loader.h"
#include "data/shard.h"
#include "tests/helpers.h"

using streamsink::Batch;
using streamsink::Error;
using streamsink::Loader;
using streamsink::LoaderConfig;
using streamsink::LoaderCursor;
using streamsink::TokenDtype;
using streamsink::testing::TempDir;

namespace {

constexpr int32_t kBase = 1000;  // token value = kBase + stream position: no collision with sink ids

// A split of n tokens whose values name their position, cut into shards of `per_shard` (so windows cross them).
void make_split(const std::string& dir, const std::string& split, int64_t n, int64_t per_shard) {
  int64_t idx = 0;
  for (int64_t begin = 0; begin < n; begin += per_shard, ++idx) {
    std::vector<int32_t> t;
    for (int64_t i = begin; i < std::min(n, begin + per_shard); ++i) t.push_back(static_cast<int32_t>(kBase + i));
    streamsink::write_shard(streamsink::shard_path(dir, split, idx), t, TokenDtype::kU16);
  }
}

std::vector<int64_t> row(const at::Tensor& t, int64_t b) {
  const at::Tensor r = t[b].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

bool same(const Batch& a, const Batch& b) { return a.inputs.equal(b.inputs) && a.targets.equal(b.targets); }

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_split(dir_.str(), "train", 1000, 300);
    make_split(dir_.str(), "val", 100, 1000);
  }
  LoaderConfig config(int64_t B, int64_t T, std::vector<int64_t> prefix = {}) const {
    LoaderConfig c;
    c.data_dir = dir_.str();
    c.batch_size = B;
    c.seq_len = T;
    c.prefix = std::move(prefix);
    return c;
  }
  TempDir dir_;
};

}  // namespace

TEST_F(LoaderTest, NoPrefixWindowsInOrder) {
  auto c = config(2, 8);
  c.shuffle = false;
  Loader l(c);
  // L = 9 tokens read per window, stride 8: windows start at 0, 8, 16, ...; (1000 - 9) / 8 + 1 = 124.
  EXPECT_EQ(l.windows_per_epoch(), 124);
  EXPECT_EQ(l.steps_per_epoch(), 62);
  const Batch b = l.next();
  EXPECT_EQ(b.inputs.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(b.inputs.scalar_type(), at::kLong);
  EXPECT_EQ(b.targets.sizes(), (std::vector<int64_t>{2, 8}));
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t j = 0; j < 8; ++j) {
      EXPECT_EQ(row(b.inputs, r)[j], kBase + 8 * r + j);
      EXPECT_EQ(row(b.targets, r)[j], kBase + 8 * r + j + 1);
    }
}

TEST_F(LoaderTest, SinkPrefixSemantics) {
  auto c = config(2, 8, {4, 5});
  c.shuffle = false;
  Loader l(c);
  // k = 2: L = T - k + 1 = 7 tokens per window, and all 7 are targets, so the stride is 7.
  EXPECT_EQ(l.windows_per_epoch(), (1000 - 7) / 7 + 1);
  const Batch b = l.next();
  for (int64_t r = 0; r < 2; ++r) {
    const auto in = row(b.inputs, r), tg = row(b.targets, r);
    const int64_t x0 = kBase + 7 * r;
    EXPECT_EQ(in, (std::vector<int64_t>{4, 5, x0, x0 + 1, x0 + 2, x0 + 3, x0 + 4, x0 + 5}));
    EXPECT_EQ(tg, (std::vector<int64_t>{-100, x0, x0 + 1, x0 + 2, x0 + 3, x0 + 4, x0 + 5, x0 + 6}));
  }
  // One sink: nothing ignored, the sink predicts x[0].
  auto c1 = config(1, 4, {4});
  c1.shuffle = false;
  const Batch b1 = Loader(c1).next();
  EXPECT_EQ(row(b1.inputs, 0), (std::vector<int64_t>{4, kBase, kBase + 1, kBase + 2}));
  EXPECT_EQ(row(b1.targets, 0), (std::vector<int64_t>{kBase, kBase + 1, kBase + 2, kBase + 3}));
}

TEST_F(LoaderTest, EveryTokenIsATargetOncePerEpoch) {
  for (const auto& prefix : {std::vector<int64_t>{}, std::vector<int64_t>{4}, std::vector<int64_t>{4, 5, 6}}) {
    for (const bool shuffle : {false, true}) {
      auto c = config(3, 10, prefix);
      c.shuffle = shuffle;
      Loader l(c);
      std::map<int64_t, int> seen;
      for (int64_t s = 0; s < l.steps_per_epoch(); ++s) {
        const Batch b = l.next();
        const at::Tensor t = b.targets.flatten();
        for (int64_t i = 0; i < t.numel(); ++i) {
          const int64_t v = t[i].item<int64_t>();
          if (v == -100) continue;
          ASSERT_GE(v, kBase) << "a sink id is a target";
          ++seen[v];
        }
        // Sinks are in every row's inputs, and nowhere in its targets.
        for (int64_t r = 0; r < 3; ++r)
          for (size_t j = 0; j < prefix.size(); ++j) EXPECT_EQ(row(b.inputs, r)[j], prefix[j]);
      }
      for (const auto& [v, n] : seen) ASSERT_EQ(n, 1) << "token at " << v - kBase << " predicted " << n << " times";
      // The epoch covers the stream up to the dropped tail: a contiguous block of targets.
      const int64_t stride = prefix.empty() ? 10 : 10 - static_cast<int64_t>(prefix.size()) + 1;
      const int64_t used = l.steps_per_epoch() * 3;
      EXPECT_EQ(static_cast<int64_t>(seen.size()), used * stride);
      if (!shuffle) EXPECT_EQ(seen.begin()->first, kBase + (prefix.empty() ? 1 : 0));
    }
  }
}

TEST_F(LoaderTest, DeterministicGivenSeed) {
  auto c = config(4, 16, {4});
  Loader a(c), b(c);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(same(a.next(), b.next())) << "step " << i;  // crosses epochs
  EXPECT_GE(a.cursor().epoch, 1);
  c.seed = 7;
  Loader d(c), e(config(4, 16, {4}));
  EXPECT_FALSE(same(d.next(), e.next()));
  // Successive epochs are shuffled differently.
  EXPECT_NE(streamsink::epoch_permutation(100, 1337, 0), streamsink::epoch_permutation(100, 1337, 1));
  auto p = streamsink::epoch_permutation(100, 1337, 3);
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(p[i], i);
}

TEST_F(LoaderTest, RanksAreDisjointAndTileTheGlobalBatch) {
  auto single = config(4, 8, {4});
  auto r0 = config(2, 8, {4}), r1 = config(2, 8, {4});
  r0.world_size = r1.world_size = 2;
  r1.rank = 1;
  Loader ls(single), l0(r0), l1(r1);
  EXPECT_EQ(l0.steps_per_epoch(), ls.steps_per_epoch());
  std::set<std::vector<int64_t>> all0, all1;
  for (int64_t s = 0; s < ls.steps_per_epoch(); ++s) {
    const Batch bs = ls.next(), b0 = l0.next(), b1 = l1.next();
    EXPECT_TRUE(at::cat({b0.inputs, b1.inputs}).equal(bs.inputs));
    EXPECT_TRUE(at::cat({b0.targets, b1.targets}).equal(bs.targets));
    for (int64_t r = 0; r < 2; ++r) {
      all0.insert(row(b0.targets, r));
      all1.insert(row(b1.targets, r));
    }
  }
  for (const auto& w : all0) EXPECT_EQ(all1.count(w), 0u);
}

TEST_F(LoaderTest, ExactResumeFromCursor) {
  auto c = config(3, 12, {4, 5});
  Loader a(c);
  const int64_t spe = a.steps_per_epoch();
  for (const int64_t k : {int64_t{0}, int64_t{5}, spe, spe + 3}) {
    Loader x(c);
    for (int64_t i = 0; i < k; ++i) x.next();
    const LoaderCursor cur = x.cursor();
    Loader y(c);
    y.restore(cur);
    for (int64_t i = 0; i < spe + 2; ++i) ASSERT_TRUE(same(x.next(), y.next())) << "k=" << k << " step " << i;
    EXPECT_EQ(x.cursor().epoch, y.cursor().epoch);
    EXPECT_EQ(x.cursor().step_in_epoch, y.cursor().step_in_epoch);
  }
  LoaderCursor bad;
  bad.step_in_epoch = spe + 1;
  EXPECT_THROW(a.restore(bad), Error);
}

TEST_F(LoaderTest, Errors) {
  // val has 100 tokens: 11 windows of 9 (T = 8), not enough for a global batch of 2 x 8.
  auto c = config(2, 8);
  c.split = "val";
  c.world_size = 8;
  c.rank = 0;
  try {
    Loader l(c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir_.str()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fewer than one global batch"), std::string::npos) << e.what();
  }
  c.world_size = 1;
  EXPECT_NO_THROW(Loader l(c));
  c.split = "test";
  EXPECT_THROW(Loader l(c), Error);  // no test shards
  auto d = config(2, 3, {4, 5, 6});
  EXPECT_THROW(Loader l(d), Error);  // no room for text
  auto e = config(2, 8);
  e.rank = 1;
  EXPECT_THROW(Loader l(e), Error);  // rank outside the world
}
