// The sampler against closed forms: greedy is the argmax, temperature 1 / top-p 1 is the softmax (empirically
// too), the nucleus is the smallest prefix of the sorted distribution reaching p, a seed reproduces a run.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "infer/sampler.h"

using namespace streamsink;

namespace {
SamplerConfig cfg(double temperature, double top_p, uint64_t seed = 0) {
  SamplerConfig c;
  c.temperature = temperature;
  c.top_p = top_p;
  c.seed = seed;
  return c;
}
}  // namespace

TEST(Sampler, TemperatureZeroIsTheArgmax) {
  Sampler s(cfg(0, 0.9));
  auto l = at::randn({100});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l), l.argmax().item<int64_t>());
}

TEST(Sampler, FullNucleusAtTemperatureOneIsTheSoftmax) {
  auto l = at::tensor({1.0, 2.0, 0.5, -1.0});
  Sampler s(cfg(1.0, 1.0, 7));
  auto p = s.distribution(l);
  EXPECT_LT((p - at::softmax(l.to(at::kDouble), 0)).abs().max().item<double>(), 1e-12);
  std::vector<int> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(l)];
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(counts[j] / double(n), p[j].item<double>(), 0.015) << j;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  auto l = at::tensor({1.0, 2.0, 0.5});
  auto cold = Sampler(cfg(0.5, 1.0)).distribution(l);
  auto hot = Sampler(cfg(2.0, 1.0)).distribution(l);
  EXPECT_LT((cold - at::softmax(l.to(at::kDouble) / 0.5, 0)).abs().max().item<double>(), 1e-12);
  EXPECT_GT(cold[1].item<double>(), hot[1].item<double>());
}

TEST(Sampler, TheNucleusIsTheSmallestPrefixReachingP) {
  // probabilities 0.5, 0.3, 0.15, 0.05 (shuffled): top-p 0.8 keeps {0.5, 0.3}, renormalised to 0.625, 0.375.
  auto probs = at::tensor({0.15, 0.5, 0.05, 0.3}, at::kDouble);
  auto l = probs.log();
  auto q = Sampler(cfg(1.0, 0.8)).distribution(l);
  EXPECT_NEAR(q[1].item<double>(), 0.625, 1e-9);
  EXPECT_NEAR(q[3].item<double>(), 0.375, 1e-9);
  EXPECT_EQ(q[0].item<double>(), 0.0);
  EXPECT_EQ(q[2].item<double>(), 0.0);
  Sampler s(cfg(1.0, 0.8, 3));
  for (int i = 0; i < 500; ++i) {
    const auto t = s.sample(l);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  // a tiny p keeps the top token only, down to any p > 0 (below the 1e-9 rounding allowance too)
  for (const double p : {1e-6, 1e-12}) {
    EXPECT_TRUE(at::equal(Sampler(cfg(1.0, p)).distribution(l), at::tensor({0.0, 1.0, 0.0, 0.0}, at::kDouble))) << p;
    Sampler one(cfg(1.0, p, 3));
    for (int i = 0; i < 50; ++i) EXPECT_EQ(one.sample(l), 1) << p;
  }
}

TEST(Sampler, TheSeedReproducesARun) {
  auto l = at::randn({50});
  auto run = [&](uint64_t seed) {
    Sampler s(cfg(1.0, 0.95, seed));
    std::vector<int64_t> out;
    for (int i = 0; i < 30; ++i) out.push_back(s.sample(l));
    return out;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST(Sampler, BadSettingsAreErrorsNamingTheFlag) {
  auto expect_error = [](SamplerConfig c, const std::string& flag) {
    try {
      Sampler s(c);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  expect_error(cfg(-1, 0.9), "--temperature");
  expect_error(cfg(1, 0), "--top-p");
  expect_error(cfg(1, 1.5), "--top-p");
}

// A vocabulary limit (the tokenizer's pieces, below a padded model vocabulary) never draws an id at or past it: the
// distribution is the softmax of the ids below the limit alone (closed form), greedy is their argmax, and samples
// over many draws all fall below it, though the largest logits lie past it.
TEST(Sampler, AVocabularyLimitDrawsOnlyIdsBelowIt) {
  auto l = at::tensor({1.0, 2.0, 0.5, -1.0, 9.0, 8.0});  // ids 4 and 5: no piece
  auto c = cfg(1.0, 1.0, 3);
  c.vocab_limit = 4;
  Sampler s(c);
  const auto before = l.clone();
  const auto p = s.distribution(l);
  EXPECT_TRUE(at::equal(l, before)) << "the sampler wrote into the caller's logits";
  const auto want = at::softmax(l.narrow(0, 0, 4).to(at::kDouble), 0);
  EXPECT_LT((p.narrow(0, 0, 4) - want).abs().max().item<double>(), 1e-12);
  EXPECT_EQ(p.narrow(0, 4, 2).abs().sum().item<double>(), 0.0);
  for (int i = 0; i < 2000; ++i) ASSERT_LT(s.sample(l), 4);
  auto g = cfg(0, 1.0);
  g.vocab_limit = 4;
  EXPECT_EQ(Sampler(g).sample(l), 1);
  auto nucleus = cfg(0.7, 0.5, 5);
  nucleus.vocab_limit = 4;
  Sampler n(nucleus);
  for (int i = 0; i < 500; ++i) ASSERT_LT(n.sample(l), 4);
}

// The tokenizer's control symbols other than </s> are never drawn (generate passes <s>, <pad> and the sink symbols):
// they print nothing, and fed back they would put a sink token mid-stream. Greedy takes the best id left; sampling
// gives them probability 0; the caller's logits stay as they are.
TEST(Sampler, NeverDrawnIdsHaveProbabilityZeroAndGreedySkipsThem) {
  auto l = at::tensor({1.0, 9.0, 0.5, 8.0, 2.0, 7.5});  // ids 1 and 3 lead
  for (const double temperature : {0.0, 1.0}) {
    auto c = cfg(temperature, 1.0, 4);
    c.never_draw = {1, 3};
    Sampler s(c);
    const auto before = l.clone();
    const auto p = s.distribution(l);
    EXPECT_TRUE(at::equal(l, before)) << "the sampler wrote into the caller's logits";
    EXPECT_EQ(p[1].item<double>(), 0.0);
    EXPECT_EQ(p[3].item<double>(), 0.0);
    EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-12);
    if (temperature == 0) {
      EXPECT_EQ(s.sample(l), 5);
    } else {
      auto keep = l.to(at::kDouble).clone();
      keep.index_fill_(0, at::tensor({1, 3}, at::kLong), -std::numeric_limits<double>::infinity());
      EXPECT_LT((p - at::softmax(keep, 0)).abs().max().item<double>(), 1e-12);
      for (int i = 0; i < 1000; ++i) {
        const int64_t id = s.sample(l);
        ASSERT_TRUE(id != 1 && id != 3) << id;
      }
    }
  }
  auto bad = cfg(1.0, 1.0);
  bad.vocab_limit = 4;
  bad.never_draw = {4};
  EXPECT_THROW(Sampler{bad}, Error);
  auto outside = cfg(1.0, 1.0);  // no limit to check against until the logits come: an error then, not a crash
  outside.never_draw = {6};
  Sampler o(outside);
  EXPECT_THROW(o.sample(l), c10::Error);
}
