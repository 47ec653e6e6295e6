// Attention statistics against the probe's own maps: shares recomputed by hand; the extra column's mass is zero
// for none/token and positive for zero/logit; the JSON's mean_maps are collect_attention's, rounded.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "infer/attention_stats.h"
#include "model/attention.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::all_sinks;
using streamsink::testing::tiny_config;

namespace {

// The tiny model of a variant, seeded, in eval mode, on one thread.
Transformer seeded_model(SinkKind sink) {
  at::set_num_threads(1);
  at::manual_seed(0);
  Transformer m(tiny_config(sink));
  m->eval();
  return m;
}

// n tokens cycling over ids 8..63 (no reserved ids).
std::vector<int32_t> test_stream(int n) {
  std::vector<int32_t> stream;
  for (int i = 0; i < n; ++i) stream.push_back(8 + (i * 37) % 56);
  return stream;
}

}  // namespace

class AttentionStatsPerSink : public ::testing::TestWithParam<SinkKind> {};
INSTANTIATE_TEST_SUITE_P(Variants, AttentionStatsPerSink, ::testing::ValuesIn(all_sinks()),
                         [](const auto& info) { return to_string(info.param); });

TEST_P(AttentionStatsPerSink, SharesAreTheProbeMapsAveraged) {
  torch::NoGradGuard g;
  Transformer m = seeded_model(GetParam());
  const auto stream = test_stream(100);
  const int64_t T = 12, N = 3, k = 2;
  auto s = collect_attention(m, stream, T, N, k);
  ASSERT_EQ(s.first_token_share.sizes(), (at::IntArrayRef{2, 4}));
  ASSERT_EQ(s.mean_maps.sizes(), (at::IntArrayRef{2, T, T}));
  EXPECT_EQ(s.starts, (std::vector<int64_t>{0, (100 - (T - m->config().prefix_tokens())) / 2,
                                            100 - (T - m->config().prefix_tokens())}));
  // by hand for the windows
  auto prefix = std::vector<int64_t>();
  for (int64_t i = 0; i < m->config().prefix_tokens(); ++i) prefix.push_back(m->config().sink_token_id + i);
  std::vector<at::Tensor> rows;
  for (auto st : s.starts) {
    std::vector<int64_t> w(prefix);
    for (int64_t j = 0; j < T - static_cast<int64_t>(prefix.size()); ++j) w.push_back(stream[st + j]);
    rows.push_back(at::tensor(w, at::kLong));
  }
  AttentionProbe probe;
  m->forward(at::stack(rows), &probe);
  for (int64_t l = 0; l < 2; ++l) {
    auto p = probe.probs[l].mean(0).narrow(1, k, T - k);  // [H, T-k, T]
    EXPECT_LT((p.select(2, 0).mean(1) - s.first_token_share[l]).abs().max().item<double>(), 1e-5);
    EXPECT_LT((p.narrow(2, 0, k).sum(2).mean(1) - s.first_k_share[l]).abs().max().item<double>(), 1e-5);
  }
  const bool extra = GetParam() == SinkKind::kZero || GetParam() == SinkKind::kLogit;
  EXPECT_EQ(s.sink_column_mass.max().item<double>() > 1e-3, extra);
  auto js = attention_stats_json(s, to_string(GetParam()));
  EXPECT_NE(js.find("\"first_token_share\""), std::string::npos);
}

// The JSON's "mean_maps" (for scripts/plots/plot_attention.py) are collect_attention's [L, T, T] maps to 6
// significant digits, zero above the diagonal; where there is no extra sink column (none, token) every query row t
// sums to 1 over keys 0..t, and to at most 1 where there is one (zero, logit).
TEST_P(AttentionStatsPerSink, TheJsonHoldsTheMeanMaps) {
  torch::NoGradGuard g;
  Transformer m = seeded_model(GetParam());
  const auto stream = test_stream(200);
  const int64_t T = 24, N = 4, k = 2;
  const auto s = collect_attention(m, stream, T, N, k);
  const auto j = nlohmann::json::parse(attention_stats_json(s, to_string(GetParam())));
  ASSERT_TRUE(j.contains("mean_maps"));
  for (const char* key : {"sink", "tokens", "samples", "first_k", "window_starts", "uniform_first_token_share"})
    EXPECT_TRUE(j.contains(key)) << key;  // the fields from before are all still there
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_TRUE(j["layers"][0].contains("mean_first_token_share"));
  const auto& maps = j["mean_maps"];
  ASSERT_EQ(maps.size(), 2u);
  const auto ref = s.mean_maps.to(at::kDouble).contiguous();  // [L, T, T]
  const auto a = ref.accessor<double, 3>();
  const bool extra = GetParam() == SinkKind::kZero || GetParam() == SinkKind::kLogit;
  for (int64_t l = 0; l < 2; ++l) {
    ASSERT_EQ(maps[l].size(), static_cast<size_t>(T)) << "layer " << l;
    for (int64_t t = 0; t < T; ++t) {
      const auto& row = maps[l][t];
      ASSERT_EQ(row.size(), static_cast<size_t>(T)) << "layer " << l << " query " << t;
      double sum = 0;
      for (int64_t key = 0; key < T; ++key) {
        const double v = row[key].get<double>(), want = a[l][t][key];
        EXPECT_NEAR(v, want, 5.01e-6 * std::abs(want)) << "layer " << l << " query " << t << " key " << key;
        if (key > t) EXPECT_EQ(v, 0.0) << "layer " << l << " query " << t << " key " << key;  // causal
        sum += v;
      }
      if (extra)
        EXPECT_LE(sum, 1.0 + 1e-5) << "layer " << l << " query " << t;
      else
        EXPECT_NEAR(sum, 1.0, 1e-5) << "layer " << l << " query " << t;
    }
  }
}

// Against a closed form, per layer and head: with every q_proj weight zero all scores are 0, so a query at t puts
// 1 / (t + 1 + e^{b_h}) on each of its t + 1 keys and e^{b_h} / (t + 1 + e^{b_h}) on the extra column, b_h = 0 for
// zero and the head's own learned logit for logit (distinct per head, shifted per layer, so a logit read from the
// wrong head or layer shows). The figures are means over the queries t in [first_k, T), the same in every window.
TEST(AttentionStats, WithZeroScoresEachHeadsSinkColumnMassIsItsClosedForm) {
  at::set_num_threads(1);
  torch::NoGradGuard g;
  const std::vector<double> base = {-1.0, 0.0, 0.5, 2.0};  // b_h of layer 0; layer l adds 0.25·l
  std::vector<int32_t> stream;
  for (int i = 0; i < 100; ++i) stream.push_back(8 + (i * 37) % 56);
  const int64_t T = 12, N = 3, k = 2;
  for (auto sink : {SinkKind::kZero, SinkKind::kLogit}) {
    SCOPED_TRACE(to_string(sink));
    at::manual_seed(0);
    Transformer m(tiny_config(sink));
    m->eval();
    for (auto& p : m->named_parameters()) {
      if (p.key().find("q_proj") != std::string::npos) p.value().zero_();
      if (p.key().find(".sinks") != std::string::npos) {  // model.layers.<l>.self_attn.sinks
        const int64_t l = std::stoll(p.key().substr(std::string("model.layers.").size()));
        p.value().copy_(at::tensor(base, at::kFloat) + 0.25 * l);
      }
    }
    const auto s = collect_attention(m, stream, T, N, k);
    ASSERT_EQ(s.sink_column_mass.sizes(), (at::IntArrayRef{2, 4}));  // [L, H]
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t h = 0; h < 4; ++h) {
        const double e = sink == SinkKind::kZero ? 1.0 : std::exp(base[h] + 0.25 * l);
        double mass = 0, first = 0;
        for (int64_t t = k; t < T; ++t) mass += e / (t + 1 + e), first += 1.0 / (t + 1 + e);
        mass /= T - k, first /= T - k;
        EXPECT_NEAR(s.sink_column_mass[l][h].item<double>(), mass, 1e-6) << "layer " << l << " head " << h;
        EXPECT_NEAR(s.first_token_share[l][h].item<double>(), first, 1e-6) << "layer " << l << " head " << h;
        EXPECT_NEAR(s.first_k_share[l][h].item<double>(), k * first, 1e-6) << "layer " << l << " head " << h;
      }
  }
}
