// Streaming evaluation against oracles: with a cache as long as the stream every policy's per-token NLL is the
// cross-entropy of the dense forward (the first token, and a token model's sink prefix, unscored); with a short
// window the chunked evaluation equals the token-by-token decode; blocks and perplexity are the NLL's means.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cmath>
#include <filesystem>
#include <optional>

#include "common/error.h"
#include "data/shard.h"
#include "infer/decoder.h"
#include "infer/stream_eval.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::all_sinks;
using streamsink::testing::tiny_config;

namespace {

[[maybe_unused]] const bool kOneThread = [] {
  at::set_num_threads(1);
  return true;
}();

std::vector<int32_t> random_tokens(int64_t T, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto t = at::randint(8, 64, {T}, gen, at::kInt);
  return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + T);
}

Transformer make_model(const ModelConfig& cfg) {
  at::manual_seed(0);
  Transformer m(cfg);
  m->eval();
  return m;
}

StreamEvalOptions opts(PolicyKind p, int64_t S, int64_t W, int64_t chunk, int64_t block = 8) {
  StreamEvalOptions o;
  o.decode.policy = p;
  o.decode.sinks = S == -1 ? kAuto : S;  // -1 here: the default
  o.decode.window = W == -1 ? kAuto : W;
  o.decode.max_chunk = chunk;
  o.block = block;
  return o;
}

// Dense cross-entropy per token i >= 1 (prefix prepended and not scored).
std::vector<double> dense_nll(Transformer m, const std::vector<int32_t>& toks) {
  torch::NoGradGuard g;
  auto full = sink_prefix(m->config());
  const auto k = static_cast<int64_t>(full.size());
  full.insert(full.end(), toks.begin(), toks.end());
  auto lp = at::log_softmax(m->forward(at::tensor(full, at::kLong).view({1, -1})).squeeze(0), -1);  // [k+N, V]
  std::vector<double> out(toks.size(), NAN);
  for (size_t i = 1; i < toks.size(); ++i) out[i] = -lp[k + i - 1][toks[i]].item<double>();
  return out;
}

}  // namespace

class StreamEvalPerSink : public ::testing::TestWithParam<SinkKind> {};
INSTANTIATE_TEST_SUITE_P(Variants, StreamEvalPerSink, ::testing::ValuesIn(all_sinks()),
                         [](const auto& info) { return to_string(info.param); });

TEST_P(StreamEvalPerSink, WithACacheAsLongAsTheStreamEveryPolicyGivesTheDenseCrossEntropy) {
  auto m = make_model(tiny_config(GetParam()));
  auto toks = random_tokens(30, 1);
  auto ref = dense_nll(m, toks);
  for (auto o : {opts(PolicyKind::kDense, -1, 1, 7), opts(PolicyKind::kStreaming, -1, 40, 7),
                 opts(PolicyKind::kWindow, -1, 40, 1), opts(PolicyKind::kRecompute, -1, 40, 7)}) {
    auto r = evaluate_stream(m, toks, o);
    EXPECT_TRUE(std::isnan(r.nll[0]));
    EXPECT_EQ(r.scored, 29);
    double sum = 0;
    for (size_t i = 1; i < toks.size(); ++i) {
      EXPECT_NEAR(r.nll[i], ref[i], 1e-4) << r.policy << " token " << i;
      sum += ref[i];
    }
    EXPECT_NEAR(r.mean_nll, sum / 29, 1e-5) << r.policy;
    EXPECT_NEAR(r.ppl, std::exp(sum / 29), 1e-3) << r.policy;
    ASSERT_EQ(r.block_ppl.size(), 4u);  // blocks of 8: [0,8) [8,16) [16,24) [24,30)
    // Every block, the partial last one too: exp of the mean dense NLL over the block's scored tokens (token 0 is
    // never scored, so the first block holds 7, the last 6), compared as logs so the tolerance is on the NLL.
    const int64_t scored_range[4][2] = {{1, 8}, {8, 16}, {16, 24}, {24, 30}};  // [first, end) per block
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int64_t i = scored_range[j][0]; i < scored_range[j][1]; ++i) s += ref[i];
      const double mean = s / static_cast<double>(scored_range[j][1] - scored_range[j][0]);
      EXPECT_NEAR(std::log(r.block_ppl[j]), mean, 1e-4) << r.policy << " block " << j;
    }
    EXPECT_GT(r.cache_bytes, 0);
    EXPECT_GT(r.peak_rss_bytes, 0);
  }
}

TEST_P(StreamEvalPerSink, ChunkedEvaluationEqualsTheTokenByTokenDecode) {
  auto m = make_model(tiny_config(GetParam()));
  auto toks = random_tokens(80, 2);
  auto r = evaluate_stream(m, toks, opts(PolicyKind::kStreaming, 2, 6, 16));
  DecodeConfig d = opts(PolicyKind::kStreaming, 2, 6, 1).decode;
  Decoder dec(m, d);
  auto logits = dec.feed_all({std::vector<int64_t>(toks.begin(), toks.end())})[0];  // [N, V]
  auto lp = at::log_softmax(logits, -1);
  for (size_t i = 1; i < toks.size(); ++i) EXPECT_NEAR(r.nll[i], -lp[i - 1][toks[i]].item<double>(), 1e-4) << i;
}

// The stream reaches the decoder in segments (only a segment is held as int64 ids: eval-stream's memory no longer
// grows by 16 bytes a token for copies of the stream); segments of two chunks give the same NLLs, bit for bit, as
// one segment, under every policy and with a sink prefix.
TEST(StreamEval, SegmentsGiveTheSameFiguresAsOneCall) {
  auto m = make_model(tiny_config(SinkKind::kToken));
  // segments of 6: a last one of 5 (41), none short (36), a last one of a single token (37)
  for (const int64_t N : {41, 36, 37}) {
    auto toks = random_tokens(N, 9);
    for (auto o : {opts(PolicyKind::kDense, -1, 1, 3), opts(PolicyKind::kStreaming, -1, 6, 3),
                   opts(PolicyKind::kRecompute, -1, 6, 3)}) {
      SCOPED_TRACE("N " + std::to_string(N));
      const auto whole = evaluate_stream(m, toks, o);
      o.segment_tokens = 6;
      int64_t last_done = 0, next_scored = 1;
      double last_mean = 0;
      o.progress = [&](int64_t done, int64_t total, double mean_nll) {
        EXPECT_GT(done, last_done);
        EXPECT_EQ(total, N);
        last_done = done;
        last_mean = mean_nll;
      };
      o.on_scored = [&](int64_t first, const int64_t* ids, const float*, int64_t n) {  // each token once, in order
        EXPECT_EQ(first, next_scored);
        for (int64_t k = 0; k < n; ++k) EXPECT_EQ(ids[k], toks[first + k]) << "token " << first + k;
        next_scored = first + n;
      };
      const auto parts = evaluate_stream(m, toks, o);
      EXPECT_EQ(last_done, N);
      EXPECT_EQ(next_scored, N);
      EXPECT_NEAR(last_mean, whole.mean_nll, 1e-9) << whole.policy;  // the running mean ends at the result's
      for (size_t i = 1; i < toks.size(); ++i) EXPECT_EQ(whole.nll[i], parts.nll[i]) << whole.policy << " token " << i;
      EXPECT_EQ(whole.ppl, parts.ppl);
    }
  }
}

// eval-stream's way: NLLs not kept, written to --out as they are scored. The file holds every token with the NLL
// the kept run measured, and every figure is the same, bit for bit (the sums run in stream order either way).
TEST(StreamEval, OutputFilesHoldEveryTokenAndEveryFigure) {
  streamsink::testing::TempDir dir;
  auto m = make_model(tiny_config());
  auto toks = random_tokens(20, 3);
  auto o = opts(PolicyKind::kStreaming, 1, 4, 3);
  const auto kept = evaluate_stream(m, toks, o);
  o.keep_nll = false;
  NllJsonlWriter writer(dir.str() + "/nll.jsonl");
  o.on_scored = [&](int64_t first, const int64_t* ids, const float* nll, int64_t n) { writer.add(first, ids, nll, n); };
  const auto r = evaluate_stream(m, toks, o);
  EXPECT_FALSE(std::filesystem::exists(dir.str() + "/nll.jsonl"));  // only a whole evaluation appears there
  writer.commit();
  EXPECT_TRUE(r.nll.empty());
  EXPECT_EQ(r.mean_nll, kept.mean_nll);
  EXPECT_EQ(r.block_ppl, kept.block_ppl);
  EXPECT_EQ(r.block_ppl.size(), 3u);  // blocks of 8 over 20 tokens
  FILE* f = std::fopen((dir.str() + "/nll.jsonl").c_str(), "r");
  ASSERT_TRUE(f);
  char line[256];
  int n = 0;
  long long i = 0;
  int tok = 0;
  double nll = 0;
  while (std::fgets(line, sizeof line, f)) {
    ASSERT_EQ(std::sscanf(line, "{\"i\": %lld, \"token\": %d, \"nll\": %lf}", &i, &tok, &nll), 3) << line;
    EXPECT_EQ(i, n + 1);
    EXPECT_EQ(tok, toks[i]);
    EXPECT_NEAR(nll, kept.nll[i], 1e-4);
    ++n;
  }
  std::fclose(f);
  EXPECT_EQ(n, 19);
  const auto js = summary_json(r);
  for (const char* key : {"\"ppl\"", "\"tokens_per_s\"", "\"cache_bytes\"", "\"peak_rss_bytes\"", "\"block_ppl\""})
    EXPECT_NE(js.find(key), std::string::npos) << key;
}

// stop(): the evaluation ends at the chunk where it first says true, with StreamEvalInterrupted naming how far it
// got (no figures); the --out writer, dropped uncommitted, leaves neither the file nor its temporary behind.
TEST(StreamEval, StopEndsTheEvaluationAtAChunkAndTheWriterLeavesNothing) {
  streamsink::testing::TempDir dir;
  auto m = make_model(tiny_config());
  auto toks = random_tokens(20, 3);
  auto o = opts(PolicyKind::kStreaming, 1, 4, 3);  // chunks of 3 tokens
  int chunks = 0, scored = 0;
  o.stop = [&] { return ++chunks == 2; };
  try {
    std::optional<NllJsonlWriter> writer(std::in_place, dir.str() + "/nll.jsonl");
    o.on_scored = [&](int64_t first, const int64_t* ids, const float* nll, int64_t n) {
      writer->add(first, ids, nll, n);
      scored += static_cast<int>(n);
    };
    evaluate_stream(m, toks, o);
    FAIL() << "expected StreamEvalInterrupted";
  } catch (const StreamEvalInterrupted& e) {
    EXPECT_EQ(e.done, 6) << e.what();  // two chunks of 3
    EXPECT_NE(std::string(e.what()).find("6 of 20 tokens"), std::string::npos) << e.what();
  }
  EXPECT_EQ(chunks, 2);
  EXPECT_EQ(scored, 6);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "the interrupted writer left a file behind";
}

// A data folder's test split read through the mapped shards, a range at a time, against the concatenation that
// read_split_tokens makes: every range, across the shard boundary too; the cap; ids checked only within the cap.
TEST(StreamEval, TokenStreamReadsMappedShardsAsOneStream) {
  streamsink::testing::TempDir dir;
  std::vector<int32_t> a = {9, 10, 11, 12, 13}, b = {20, 21, 22, 63, 99};  // 99: outside a vocabulary of 64
  write_shard(dir.str() + "/test_000000.bin", a, TokenDtype::kU16);
  write_shard(dir.str() + "/test_000001.bin", b, TokenDtype::kU32);
  const auto all = read_split_tokens(dir.str(), "test");
  const TokenStream s = TokenStream::open(dir.str(), "", -1, 100);
  ASSERT_EQ(s.size(), 10);
  for (int64_t begin = 0; begin <= 10; ++begin)
    for (int64_t n = 0; begin + n <= 10; ++n)
      EXPECT_EQ(s.read(begin, n), std::vector<int32_t>(all.begin() + begin, all.begin() + begin + n))
          << "[" << begin << ", " << begin + n << ")";
  EXPECT_THROW(s.read(8, 3), Error);
  EXPECT_THROW(s.read(-1, 2), Error);
  // Capped before the 99 (token 9): no error, and only 9 tokens.
  EXPECT_EQ(TokenStream::open(dir.str(), "", 9, 64).read(0, 9), std::vector<int32_t>(all.begin(), all.begin() + 9));
  for (int64_t cap : {int64_t{10}, int64_t{-1}}) {
    try {
      TokenStream::open(dir.str(), "", cap, 64);
      FAIL() << "expected an error";
    } catch (const Error& e) {  // the index in the stream and in its shard, and the shard's file
      const std::string msg = e.what();
      EXPECT_NE(msg.find("token 9 has id 99 (token 4 of this shard"), std::string::npos) << msg;
      EXPECT_NE(msg.find("test_000001.bin"), std::string::npos) << msg;
    }
  }
  s.release(0, 10);  // done with: still readable
  EXPECT_EQ(s.read(2, 7), std::vector<int32_t>(all.begin() + 2, all.begin() + 9));
  // The same stream in memory reads the same.
  EXPECT_EQ(TokenStream::from_tokens(all).read(3, 5), s.read(3, 5));
}

TEST(StreamEval, LoadsAShardAFolderAndChecksTheVocabulary) {
  streamsink::testing::TempDir dir;
  std::vector<int32_t> toks = {9, 10, 11, 12, 13, 63};
  write_shard(dir.str() + "/test_000000.bin", toks, TokenDtype::kU16);
  EXPECT_EQ(load_eval_tokens(dir.str() + "/test_000000.bin", "", -1, 64), toks);
  EXPECT_EQ(load_eval_tokens(dir.str(), "", 4, 64), std::vector<int32_t>(toks.begin(), toks.begin() + 4));
  try {
    load_eval_tokens(dir.str(), "", -1, 32);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_eval_tokens(dir.str() + "/nowhere.bin", "", -1, 64), Error);
  // a text file with no tokenizer
  std::FILE* f = std::fopen((dir.str() + "/a.txt").c_str(), "w");
  std::fputs("hello\n", f);
  std::fclose(f);
  try {
    load_eval_tokens(dir.str() + "/a.txt", dir.str() + "/tokenizer.model", -1, 64);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos) << e.what();
  }
}
