// Attention statistics against the probe's own maps: shares recomputed by hand; the extra column's mass is zero
// for none/token and positive for zero/logit.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "infer/attention_stats.h"
#include "model/attention.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::all_sinks;
using streamsink::testing::tiny_config;

class AttentionStatsPerSink : public ::testing::TestWithParam<SinkKind> {};
INSTANTIATE_TEST_SUITE_P(Variants, AttentionStatsPerSink, ::testing::ValuesIn(all_sinks()),
                         [](const auto& info) { return to_string(info.param); });

TEST_P(AttentionStatsPerSink, SharesAreTheProbeMapsAveraged) {
  at::set_num_threads(1);
  torch::NoGradGuard g;
  at::manual_seed(0);
  Transformer m(tiny_config(GetParam()));
  m->eval();
  std::vector<int32_t> stream;
  for (int i = 0; i < 100; ++i) stream.push_back(8 + (i * 37) % 56);
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
