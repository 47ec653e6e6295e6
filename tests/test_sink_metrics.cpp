// The training-time sink metrics (train/sink_metrics.h) against a closed form: with every q_proj weight zero all
// scores are 0, so a query at position t spreads its attention uniformly over its t + 1 visible keys (and, for
// zero/logit models, the extra column with logit 0 / the head's learned b_h). The share the first position (the k
// sink tokens of a `token` model) gets, and the extra column's mass, follow by counting. With a random model, the
// shares against the probe's maps summed by hand (the first columns, not any others).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cmath>

#include "infer/decoder.h"
#include "model/attention.h"
#include "tests/model_fixtures.h"
#include "train/sink_metrics.h"

using namespace streamsink;
using streamsink::testing::all_sinks;
using streamsink::testing::tiny_config;

class SinkMetricsPerSink : public ::testing::TestWithParam<SinkKind> {};
INSTANTIATE_TEST_SUITE_P(Variants, SinkMetricsPerSink, ::testing::ValuesIn(all_sinks()),
                         [](const auto& info) { return to_string(info.param); });

// A model of `cfg` initialised from `seed`, in eval mode, on one intra-op thread (the figures compared below are
// sums in one order).
Transformer seeded_model(const ModelConfig& cfg, uint64_t seed) {
  at::set_num_threads(1);
  at::manual_seed(seed);
  Transformer m(cfg);
  m->eval();
  return m;
}

TEST_P(SinkMetricsPerSink, SharesFollowTheClosedFormOfUniformAttention) {
  const auto cfg = tiny_config(GetParam());
  Transformer m = seeded_model(cfg, 0);
  std::vector<double> b(cfg.n_heads, 0.0);  // the extra column's logit per head (zero: 0; none/token: no column)
  {
    torch::NoGradGuard g;
    for (auto& p : m->named_parameters()) {
      if (p.key().find("q_proj") != std::string::npos) p.value().zero_();
      if (p.key().find("sinks") != std::string::npos) {
        p.value().copy_(at::linspace(-1.0, 2.0, p.value().numel()));
        for (int64_t h = 0; h < cfg.n_heads; ++h) b[h] = p.value()[h].item<double>();
      }
    }
  }
  const int64_t B = 2, T = 16, W = 8, k = cfg.prefix_tokens();
  auto inputs = at::randint(8, cfg.vocab_size, {B, T}, at::kLong);
  auto targets = at::randint(8, cfg.vocab_size, {B, T}, at::kLong);
  if (k > 0) inputs.narrow(1, 0, k).copy_(at::arange(cfg.sink_token_id, cfg.sink_token_id + k, at::kLong));
  const SinkMetrics s = measure_sinks(m, Batch{inputs, targets}, k, W);

  const bool extra = GetParam() == SinkKind::kZero || GetParam() == SinkKind::kLogit;
  const int64_t first = std::max<int64_t>(1, k);  // the sink positions [0, first)
  double want_first = 0, want_extra = 0;          // mean over heads and over queries t >= first
  for (int64_t h = 0; h < cfg.n_heads; ++h)
    for (int64_t t = first; t < T; ++t) {
      const double col = extra ? std::exp(b[h]) : 0.0;
      want_first += first / (t + 1 + col);
      want_extra += col / (t + 1 + col);
    }
  want_first /= cfg.n_heads * (T - first);
  want_extra /= cfg.n_heads * (T - first);

  ASSERT_EQ(s.first_share.size(), static_cast<size_t>(cfg.n_layers));
  for (int64_t l = 0; l < cfg.n_layers; ++l) EXPECT_NEAR(s.first_share[l], want_first, 1e-6) << "layer " << l;
  if (extra) {
    ASSERT_EQ(s.extra_share.size(), static_cast<size_t>(cfg.n_layers));
    for (int64_t l = 0; l < cfg.n_layers; ++l) EXPECT_NEAR(s.extra_share[l], want_extra, 1e-6) << "layer " << l;
  } else {
    EXPECT_TRUE(s.extra_share.empty());
  }
  EXPECT_EQ(s.window, W);
  EXPECT_TRUE(std::isfinite(s.window_loss) && std::isfinite(s.sink4_loss));
}

// With a random model (attention far from uniform, so the columns differ): the shares are the probe's own maps
// restated, the first `max(1, k)` key columns summed for each query past them.
TEST_P(SinkMetricsPerSink, SharesAreTheProbeMapsFirstColumns) {
  torch::NoGradGuard g;
  const auto cfg = tiny_config(GetParam());
  Transformer m = seeded_model(cfg, 1);
  const int64_t B = 2, T = 16, W = 8, k = cfg.prefix_tokens(), first = std::max<int64_t>(1, k);
  auto inputs = at::randint(8, cfg.vocab_size, {B, T}, at::kLong);
  if (k > 0) inputs.narrow(1, 0, k).copy_(at::arange(cfg.sink_token_id, cfg.sink_token_id + k, at::kLong));
  const SinkMetrics s = measure_sinks(m, Batch{inputs, inputs.clone()}, k, W);
  AttentionProbe probe;
  m->forward(inputs, &probe);
  ASSERT_EQ(s.first_share.size(), probe.probs.size());
  for (size_t l = 0; l < probe.probs.size(); ++l) {
    const auto& p = probe.probs[l];  // [B, H, T, T]
    double want = 0;
    int64_t n = 0;
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t h = 0; h < cfg.n_heads; ++h)
        for (int64_t t = first; t < T; ++t, ++n)
          for (int64_t j = 0; j < first; ++j) want += p[bb][h][t][j].item<double>();
    EXPECT_NEAR(s.first_share[l], want / n, 1e-5) << "layer " << l;
    // and the maps are not uniform over the first columns, else this test could not tell columns apart
    EXPECT_GT((p.select(3, 0) - p.select(3, 1)).narrow(2, first, T - first).abs().max().item<double>(), 1e-3);
  }
}

// Several batches measured a few sequences at a time against the one-batch measurement of all their sequences at
// once (shares and losses are means over equal counts, so the two agree), and the gap's standard error against its
// closed form, sd / √n over the per-sequence gaps, each sequence measured alone.
TEST(SinkMetrics, BatchesMeasuredInPiecesEqualOneBatchAndTheGapCarriesItsStandardError) {
  torch::NoGradGuard g;
  const auto cfg = tiny_config(SinkKind::kToken);
  Transformer m = seeded_model(cfg, 3);
  const int64_t T = 16, W = 8, k = cfg.prefix_tokens();
  const auto make = [&](int64_t B) {
    auto inputs = at::randint(8, cfg.vocab_size, {B, T}, at::kLong);
    inputs.narrow(1, 0, k).copy_(at::arange(cfg.sink_token_id, cfg.sink_token_id + k, at::kLong));
    return Batch{inputs, at::randint(8, cfg.vocab_size, {B, T}, at::kLong)};
  };
  const std::vector<Batch> batches = {make(3), make(2)};
  const SinkMetrics pieces = measure_sinks(m, batches, k, W, /*rows_per_forward=*/2);
  const Batch all{at::cat({batches[0].inputs, batches[1].inputs}), at::cat({batches[0].targets, batches[1].targets})};
  const SinkMetrics whole = measure_sinks(m, all, k, W);

  EXPECT_EQ(pieces.sequences, 5);
  EXPECT_EQ(pieces.scored_tokens, 5 * (T - W));
  EXPECT_EQ(whole.scored_tokens, 5 * (T - W));
  ASSERT_EQ(pieces.first_share.size(), whole.first_share.size());
  for (size_t l = 0; l < whole.first_share.size(); ++l)
    EXPECT_NEAR(pieces.first_share[l], whole.first_share[l], 1e-6) << "layer " << l;
  EXPECT_NEAR(pieces.window_loss, whole.window_loss, 1e-6);
  EXPECT_NEAR(pieces.sink4_loss, whole.sink4_loss, 1e-6);

  std::vector<double> gaps;
  for (int64_t i = 0; i < 5; ++i) {
    const SinkMetrics one = measure_sinks(m, Batch{all.inputs.narrow(0, i, 1), all.targets.narrow(0, i, 1)}, k, W);
    gaps.push_back(one.window_loss - one.sink4_loss);
    EXPECT_EQ(one.gap_se, 0.0);  // one sequence: no spread to measure
  }
  double mean = 0, ss = 0;
  for (double x : gaps) mean += x / 5;
  for (double x : gaps) ss += (x - mean) * (x - mean);
  const double se = std::sqrt(ss / 4 / 5);
  ASSERT_GT(se, 1e-4);
  EXPECT_NEAR(pieces.window_loss - pieces.sink4_loss, mean, 1e-6);
  EXPECT_NEAR(pieces.gap_se, se, 1e-6 * se + 1e-9);
  EXPECT_NEAR(whole.gap_se, se, 1e-6 * se + 1e-9);
}

// The two losses against the independent streaming decoder (infer/decoder.h), for a `none` model (no sink prefix):
// measure_sinks scores the targets at positions t >= W (W = min(window, T)): the mean over rows of each row's mean
// cross-entropy, here the plain mean over all scored targets (every target is valid, each row scores T - W).
//  - window_loss: each query sees the last W tokens, itself included: the `window` policy with W, each batch row fed
//    as its own stream to a fresh Decoder, the cross-entropy of its logits at t >= W;
//  - sink4_loss: the first 4 tokens plus the last W - 4: the `streaming` policy with S = 4 sinks and window W - 4
//    under text positions (the windowed forward rotates every key by its text position). A cached key is the one
//    computed when its token arrived, under the same visible set the windowed forward gives that token in every
//    layer, so the two are equal for any layer count (here 2).
TEST(SinkMetrics, WindowAndSink4LossesAreTheStreamingDecodersCrossEntropyPastTheWindow) {
  torch::NoGradGuard g;
  const auto cfg = tiny_config(SinkKind::kNone);
  Transformer m = seeded_model(cfg, 2);
  const int64_t B = 2, T = 16, W = 8;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(71);
  auto inputs = at::randint(8, cfg.vocab_size, {B, T}, gen, at::kLong);   // [B, T]
  auto targets = at::randint(8, cfg.vocab_size, {B, T}, gen, at::kLong);  // [B, T]
  const SinkMetrics s = measure_sinks(m, Batch{inputs, targets}, 0, W);
  ASSERT_EQ(s.window, W);

  auto decoded_loss = [&](PolicyKind policy, int64_t sinks, int64_t window) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      DecodeConfig d;
      d.policy = policy;
      d.sinks = sinks;
      d.window = window;
      d.positions = PositionMode::kText;
      d.max_chunk = 4;
      Decoder dec(m, d);
      auto lp = at::log_softmax(dec.feed(inputs.narrow(0, b, 1)).select(0, 0).to(at::kDouble), -1);  // [T, V]
      for (int64_t t = W; t < T; ++t, ++n) sum -= lp[t][targets[b][t].item<int64_t>()].item<double>();
    }
    return sum / static_cast<double>(n);
  };
  const double window_ref = decoded_loss(PolicyKind::kWindow, 0, W);
  const double sink4_ref = decoded_loss(PolicyKind::kStreaming, 4, W - 4);
  EXPECT_NEAR(s.window_loss, window_ref, 1e-5);
  EXPECT_NEAR(s.sink4_loss, sink4_ref, 1e-5);
  // The two patterns differ for t >= W (the sinks 0..3 against tokens t - 7 .. t - 4), and so do the losses.
  EXPECT_GT(std::abs(s.window_loss - s.sink4_loss), 1e-3);
}
