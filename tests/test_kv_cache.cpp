// The streaming KV cache and its policies against oracles (DESIGN.md, "Streaming cache, the one subtle part"):
//  - a naive slot reference that keeps every token's pre-RoPE key (each computed when its token arrived), picks
//    sinks + last W for every query, rotates them by their slot in the cache (§3.2) and attends: the production
//    cache (which never re-rotates anything) must match it to 1e-5, every sink variant, many cache lengths on;
//  - the recompute policy against a fresh forward over [first S, last W]; for a 1-layer model (keys depend on the
//    token alone) the streaming cache must equal it too;
//  - W ≥ stream length: streaming equals the dense forward;
//  - chunked prefill equals token-by-token; a batch of ragged streams equals each alone; bytes stay constant.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/utils.h>

#include <deque>

#include "common/error.h"
#include "common/memory.h"
#include "infer/decoder.h"
#include "infer/generator.h"
#include "infer/kv_cache.h"
#include "model/rope.h"
#include "model/transformer.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"
#include "tests/op_recorder.h"

using namespace streamsink;
using streamsink::testing::all_sinks;
using streamsink::testing::tiny_config;

namespace {

// Tiny tensors: intra-op threads only cost here (and the build machine's cores are shared).
[[maybe_unused]] const bool kOneThread = [] {
  at::set_num_threads(1);
  return true;
}();

std::vector<int64_t> random_stream(int64_t T, int64_t vocab, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto t = at::randint(8, vocab, {T}, gen, at::kLong);  // ids below 8 are reserved (sinks among them)
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + T);
}

Transformer make_model(const ModelConfig& cfg, uint64_t seed = 0) {
  at::manual_seed(seed);
  Transformer m(cfg);
  if (cfg.sink == SinkKind::kLogit) {
    torch::NoGradGuard g;
    for (auto& p : m->named_parameters())
      if (p.key().find("sinks") != std::string::npos) p.value().copy_(at::linspace(-1.0, 2.0, p.value().numel()));
  }
  m->eval();
  return m;
}

DecodeConfig decode_cfg(PolicyKind policy, int64_t S, int64_t W, int64_t chunk,
                        PositionMode pos = PositionMode::kCache) {
  DecodeConfig d;
  d.policy = policy;
  d.sinks = S == -1 ? kAuto : S;  // -1 here: the default
  d.window = W == -1 ? kAuto : W;
  d.max_chunk = chunk;
  d.positions = pos;
  return d;
}

// Logits [T, V] of one stream through a Decoder.
at::Tensor decode(Transformer m, const DecodeConfig& d, const std::vector<int64_t>& stream) {
  Decoder dec(m, d);
  return dec.feed_all({stream})[0];
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// The paper's semantics written out naively (one stream, one token per step). Every token's key is kept
// un-rotated (the model hands keys over rotated by the position we gave it; we rotate back). For each query:
// select the sinks {0..S-1} and the window {max(S, t-W+1)..t}, give them positions (their slot in the cache under
// §3.2, their text position under the text ablation), rotate, and put them all in one group, all visible.
class SlotReference : public KVCacheInterface {
 public:
  SlotReference(const ModelConfig& cfg, int64_t S, int64_t W, PositionMode mode)
      : cfg_(cfg), S_(S), W_(W), mode_(mode), k_(cfg.n_layers), v_(cfg.n_layers) {}

  at::Tensor next(Transformer& m, int64_t token) {  // → logits [V]
    const int64_t t = n_;
    sel_.clear();
    for (int64_t j = 0; j < std::min(S_, t + 1); ++j) sel_.push_back(j);
    for (int64_t j = std::max(S_, t - W_ + 1); j <= t; ++j) sel_.push_back(j);
    pos_.clear();
    for (size_t i = 0; i < sel_.size(); ++i)
      pos_.push_back(mode_ == PositionMode::kCache ? static_cast<int64_t>(i) : sel_[i]);
    q_ = pos_.back();  // the query is the newest selected token
    auto p = at::full({1, 1}, q_, at::kLong);
    auto logits = m->step(at::full({1, 1}, token, at::kLong), StepPositions{p, p}, *this);
    ++n_;
    return logits.view({-1});
  }

  CacheView append(int64_t layer, const at::Tensor& k_rot, const at::Tensor& v) override {
    auto [c, s] = rope_tables(at::full({1}, q_, at::kLong), cfg_.head_dim(), cfg_.rope_theta, k_rot.scalar_type());
    auto k_raw = apply_rope(k_rot, c, -s);  // rotate back by -q: the key before RoPE
    k_[layer] = k_[layer].defined() ? at::cat({k_[layer], k_raw}, 2) : k_raw;  // [1, Hkv, n, D]
    v_[layer] = v_[layer].defined() ? at::cat({v_[layer], v}, 2) : v;
    auto idx = at::tensor(sel_, at::kLong);
    auto [cs, ss] = rope_tables(at::tensor(pos_, at::kLong), cfg_.head_dim(), cfg_.rope_theta, k_rot.scalar_type());
    auto k = apply_rope(k_[layer].index_select(2, idx), cs, ss);  // [1, Hkv, n_sel, D]
    auto vv = v_[layer].index_select(2, idx);
    const auto n = static_cast<int64_t>(sel_.size());
    return CacheView{k, vv, at::ones({1, 1, 1, n}, at::TensorOptions().dtype(at::kBool)), /*sinks=*/0};
  }

 private:
  ModelConfig cfg_;
  int64_t S_, W_;
  PositionMode mode_;
  std::vector<at::Tensor> k_, v_;
  std::vector<int64_t> sel_, pos_;
  int64_t q_ = 0, n_ = 0;
};

// Reference logits [T, V] for the caller's stream (the sink prefix, if any, is fed first and dropped).
at::Tensor reference(Transformer m, int64_t S, int64_t W, PositionMode mode, const std::vector<int64_t>& stream) {
  torch::NoGradGuard g;
  SlotReference ref(m->config(), S, W, mode);
  for (auto t : sink_prefix(m->config())) ref.next(m, t);
  std::vector<at::Tensor> rows;
  for (auto t : stream) rows.push_back(ref.next(m, t));
  return at::stack(rows);
}

// The first S tokens and the last W tokens up to t, through a fresh forward: the last row, for every t.
at::Tensor fresh_forward_over_window(Transformer m, int64_t S, int64_t W, const std::vector<int64_t>& stream) {
  torch::NoGradGuard g;
  auto full = sink_prefix(m->config());
  const auto k = static_cast<int64_t>(full.size());
  full.insert(full.end(), stream.begin(), stream.end());
  std::vector<at::Tensor> rows;
  for (int64_t t = k; t < static_cast<int64_t>(full.size()); ++t) {
    std::vector<int64_t> ctx;
    for (int64_t j = 0; j < std::min(S, t + 1); ++j) ctx.push_back(full[j]);
    for (int64_t j = std::max(S, t - W + 1); j <= t; ++j) ctx.push_back(full[j]);
    auto x = at::tensor(ctx, at::kLong).view({1, -1});
    rows.push_back(m->forward(x).select(1, x.size(1) - 1).view({-1}));
  }
  return at::stack(rows);
}

}  // namespace

class KVCachePerSink : public ::testing::TestWithParam<SinkKind> {};
INSTANTIATE_TEST_SUITE_P(Variants, KVCachePerSink, ::testing::ValuesIn(all_sinks()),
                         [](const auto& info) { return to_string(info.param); });

TEST_P(KVCachePerSink, StreamingCacheEqualsTheNaiveSlotReference) {
  auto m = make_model(tiny_config(GetParam()));
  const int64_t W = 5, T = 70;  // the stream is ~10 caches long
  auto stream = random_stream(T, 64, 1);
  for (int64_t S : {0, 1, 2, 3})
    for (auto mode : {PositionMode::kCache, PositionMode::kText}) {
      auto ref = reference(m, S, W, mode, stream);
      for (int64_t chunk : {1, 3, 8}) {
        auto got = decode(m, decode_cfg(PolicyKind::kStreaming, S, W, chunk, mode), stream);
        EXPECT_LT(max_diff(got, ref), 1e-5) << "S=" << S << " chunk=" << chunk << " positions=" << to_string(mode);
      }
    }
}

TEST_P(KVCachePerSink, WindowPolicyEqualsTheReferenceWithoutSinks) {
  auto m = make_model(tiny_config(GetParam()));
  auto stream = random_stream(40, 64, 2);
  auto ref = reference(m, 0, 6, PositionMode::kCache, stream);
  for (int64_t chunk : {1, 4})
    EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kWindow, -1, 6, chunk), stream), ref), 1e-5);
}

TEST_P(KVCachePerSink, RecomputeEqualsAFreshForwardOverSinksAndWindow) {
  auto m = make_model(tiny_config(GetParam()));
  auto stream = random_stream(30, 64, 3);
  for (int64_t S : {0, 2}) {
    auto oracle = fresh_forward_over_window(m, S, 7, stream);
    for (int64_t chunk : {1, 5})
      EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kRecompute, S, 7, chunk), stream), oracle), 1e-5)
          << "S=" << S;
  }
}

TEST_P(KVCachePerSink, OneLayerStreamingCacheEqualsRecompute) {
  // With one layer a token's key and value depend on the token alone, so keeping them across window shifts is
  // exactly re-computing them: the cache must reproduce the fresh forward over [first S, last W] (positions by
  // slot, as the fresh forward assigns them). With more layers the two differ: that is what recompute is for.
  auto cfg = tiny_config(GetParam());
  cfg.n_layers = 1;
  auto m = make_model(cfg, 4);
  auto stream = random_stream(60, 64, 5);
  for (int64_t S : {0, 2, 3}) {
    auto oracle = fresh_forward_over_window(m, S, 6, stream);
    for (int64_t chunk : {1, 4})
      EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kStreaming, S, 6, chunk), stream), oracle), 1e-5)
          << "S=" << S << " chunk=" << chunk;
  }
  // and with two layers they do differ once the window slides
  auto m2 = make_model(tiny_config(GetParam()), 4);
  auto a = decode(m2, decode_cfg(PolicyKind::kStreaming, 2, 6, 4), stream);
  auto b = fresh_forward_over_window(m2, 2, 6, stream);
  EXPECT_GT(max_diff(a, b), 1e-4);
}

TEST_P(KVCachePerSink, AWindowLongerThanTheStreamEqualsTheDenseForward) {
  torch::NoGradGuard g;
  auto m = make_model(tiny_config(GetParam()));
  auto stream = random_stream(24, 64, 6);
  auto full = sink_prefix(m->config());
  const auto k = static_cast<int64_t>(full.size());
  full.insert(full.end(), stream.begin(), stream.end());
  auto dense = m->forward(at::tensor(full, at::kLong).view({1, -1})).squeeze(0).narrow(0, k, 24);
  for (int64_t chunk : {1, 7, 64}) {
    EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kStreaming, -1, 40, chunk), stream), dense), 1e-5);
    auto d = decode_cfg(PolicyKind::kDense, -1, 1, chunk);
    d.max_tokens = 40;
    EXPECT_LT(max_diff(decode(m, d, stream), dense), 1e-5);
    EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kRecompute, -1, 40, chunk), stream), dense), 1e-5);
  }
}

TEST_P(KVCachePerSink, ABatchOfRaggedStreamsEqualsEachStreamAlone) {
  auto m = make_model(tiny_config(GetParam()));
  const auto d = decode_cfg(PolicyKind::kStreaming, 2, 5, 4);
  // Two rounds of different lengths per stream, so the streams' histories differ when the second round starts.
  std::vector<std::vector<int64_t>> round1 = {random_stream(13, 64, 7), {}, random_stream(30, 64, 8)};
  std::vector<std::vector<int64_t>> round2 = {random_stream(21, 64, 9), random_stream(5, 64, 10), {}};
  Decoder batch(m, d, 3);
  auto out1 = batch.feed_all(round1);
  auto out2 = batch.feed_all(round2);
  for (int64_t b = 0; b < 3; ++b) {
    Decoder alone(m, d, 1);
    auto a1 = alone.feed_all({round1[b]})[0];
    auto a2 = alone.feed_all({round2[b]})[0];
    if (a1.size(0) > 0) EXPECT_LT(max_diff(out1[b], a1), 1e-5) << "stream " << b;
    if (a2.size(0) > 0) EXPECT_LT(max_diff(out2[b], a2), 1e-5) << "stream " << b;
    EXPECT_EQ(out1[b].size(0), static_cast<int64_t>(round1[b].size()));
    EXPECT_EQ(batch.seen()[b], alone.seen()[0]);
  }
}

TEST(KVCache, ChunkedPrefillEqualsTokenByToken) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  auto stream = random_stream(100, 64, 11);
  auto one = decode(m, decode_cfg(PolicyKind::kStreaming, 4, 16, 1), stream);
  for (int64_t chunk : {2, 16, 33, 100})
    EXPECT_LT(max_diff(decode(m, decode_cfg(PolicyKind::kStreaming, 4, 16, chunk), stream), one), 1e-5) << chunk;
}

// --bos: <s> goes first into every fresh stream (before a token model's sinks), is never handed back, and the
// logits are the model's own over [<s>, stream] (oracle: a full forward). The default sinks count it among the
// paper's 4 initial tokens for a vanilla model, and on top of a token model's own sinks.
TEST(Decoder, BosIsFedFirstAndNeverHandedBack) {
  for (const auto sink : {SinkKind::kNone, SinkKind::kToken}) {
    auto m = make_model(tiny_config(sink));
    const auto stream = random_stream(40, 64, 21);
    auto dc = decode_cfg(PolicyKind::kDense, -1, -1, 7);
    dc.max_tokens = 64;
    dc.bos_id = 1;
    const auto got = Decoder(m, dc).feed_all({stream}).at(0);  // [40, V]
    std::vector<int64_t> full = stream_prefix(dc, m->config());
    EXPECT_EQ(full.front(), 1);
    const auto k = static_cast<int64_t>(full.size());
    full.insert(full.end(), stream.begin(), stream.end());
    at::NoGradGuard g;
    const auto want = m->forward(at::tensor(full, at::kLong).view({1, -1}))[0].narrow(0, k, 40);
    EXPECT_LT(max_diff(got, want), 1e-5) << to_string(sink);
    auto streaming = decode_cfg(PolicyKind::kStreaming, -1, 16, 7);
    streaming.bos_id = 1;
    EXPECT_EQ(make_policy(streaming, m->config()).sinks(), sink == SinkKind::kNone ? 4 : 1 + 2);
  }
  auto bad = decode_cfg(PolicyKind::kStreaming, -1, 16, 7);
  bad.bos_id = 5000;
  EXPECT_THROW(make_policy(bad, tiny_config(SinkKind::kNone)), Error);
}

// A chunk longer than W would only add ring slots that every later one-token step scores and no query sees
// (infer/cache_policy.h, resolved_chunk): the decoder caps it at W under window, streaming and recompute, and the logits are
// those of any other chunk (ChunkedPrefillEqualsTokenByToken feeds 33 and 100 at W = 16).
TEST(Decoder, AChunkLongerThanTheWindowIsCappedAtW) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  Decoder capped(m, decode_cfg(PolicyKind::kStreaming, 4, 16, 256)), exact(m, decode_cfg(PolicyKind::kStreaming, 4, 16, 16));
  EXPECT_EQ(capped.max_chunk(), 16);
  EXPECT_EQ(capped.cache_bytes(), exact.cache_bytes());
  EXPECT_EQ(Decoder(m, decode_cfg(PolicyKind::kWindow, -1, 8, 256)).max_chunk(), 8);
  EXPECT_EQ(Decoder(m, decode_cfg(PolicyKind::kStreaming, 4, 16, 5)).max_chunk(), 5);  // shorter: as given
  // recompute: one forward per token whatever the chunk; only its [C, V] logits grow with it (review, session 16:
  // --chunk 1000000 asked for two [1M, V] float buffers)
  EXPECT_EQ(Decoder(m, decode_cfg(PolicyKind::kRecompute, 4, 16, 256)).max_chunk(), 16);
  auto dense = decode_cfg(PolicyKind::kDense, -1, -1, 256);
  dense.max_tokens = 300;
  EXPECT_EQ(Decoder(m, dense).max_chunk(), 256);  // dense keeps no spare slots: its chunk costs nothing
  const auto policy = make_policy(decode_cfg(PolicyKind::kStreaming, 4, 16, 256), m->config());
  EXPECT_EQ(chunk_note(decode_cfg(PolicyKind::kStreaming, 4, 16, 256), policy), "16 (--chunk 256 capped at W)");
  EXPECT_EQ(chunk_note(decode_cfg(PolicyKind::kStreaming, 4, 16, 8), policy), "8");
}

TEST(KVCache, BytesAfterTenWindowsEqualBytesAfterOne) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  const int64_t W = 16;
  Decoder dec(m, decode_cfg(PolicyKind::kStreaming, 4, W, 8));
  const int64_t before = dec.cache_bytes();
  dec.feed_all({random_stream(W, 64, 12)});
  const int64_t after_w = dec.cache_bytes();
  dec.feed_all({random_stream(9 * W, 64, 13)});
  EXPECT_EQ(dec.cache_bytes(), after_w);
  EXPECT_EQ(before, after_w);  // preallocated
  // L · 2 (k, v) · B · Hkv · (S + W + chunk - 1 + 1) · D · 4 bytes + the slot positions
  const auto cfg = m->config();
  const int64_t slots = 4 + W + 8;
  EXPECT_EQ(after_w, cfg.n_layers * 2 * cfg.n_kv_heads * slots * cfg.head_dim() * 4 + (W + 8) * 8);
}

// Constant work per token, beyond the cache's own storage (which BytesAfterTenWindowsEqualBytesAfterOne counts): a
// one-token step long after the cache filled dispatches exactly the ops, by name and count, of a step just after it
// filled (no op that depends on how far the stream has gone), and the keys it attends over are the same buffer,
// written in place: a cache that rebuilt or grew its storage (a concatenation per step, say) would hand back
// another. Op names do not show sizes; the buffer's identity and BytesAfterTenWindowsEqualBytesAfterOne do.
TEST(KVCache, AStepLongAfterTheCacheFilledDoesTheWorkOfTheFirstInTheSameBuffers) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  const int64_t W = 16;
  KVCache cache(m->config(), make_policy(decode_cfg(PolicyKind::kStreaming, 4, W, 1), m->config()), 1, 1,
                m->parameters().front().options());
  at::NoGradGuard no_grad;
  auto token = [](int64_t t) { return at::full({1, 1}, (t * 7 + 3) % 64, at::kLong); };
  int64_t t = 0;
  auto step = [&]() {  // one token through the model and the cache
    const auto pos = cache.begin_step(1);
    m->step(token(t++), pos, cache);
    cache.end_step();
  };
  struct Spy : KVCacheInterface {  // passes every call on, and keeps the first layer's key buffer
    KVCache& inner;
    const void* k0 = nullptr;
    explicit Spy(KVCache& c) : inner(c) {}
    CacheView append(int64_t layer, const at::Tensor& k, const at::Tensor& v) override {
      auto view = inner.append(layer, k, v);
      if (layer == 0) k0 = view.k.data_ptr();
      return view;
    }
  };
  auto recorded_step = [&](std::map<std::string, int64_t>* ops, const void** k_ptr) {
    const auto pos = cache.begin_step(1);
    Spy spy(cache);
    {
      streamsink::testing::OpRecorder rec;
      m->step(token(t++), pos, spy);
      *ops = rec.counts();
    }
    cache.end_step();
    *k_ptr = spy.k0;
  };
  while (t < 4 + W + 1) step();  // full and wrapped once
  std::map<std::string, int64_t> early, late;
  const void *k_early = nullptr, *k_late = nullptr;
  recorded_step(&early, &k_early);
  while (t < 40 * W) step();
  recorded_step(&late, &k_late);
  EXPECT_EQ(early, late);
  EXPECT_EQ(k_early, k_late);
}

// The host-memory estimate the constructor checks (kv_cache_memory) against the cache it describes: keys, values
// and slot positions are what bytes() holds; the masks are two of the one a full step hands every layer; the score
// buffers are kScoreBuffers (3) floats per query row and visible slot (model/attention.cpp step()).
TEST(KVCache, TheMemoryEstimateEqualsTheStorageItDescribes) {
  auto cfg = tiny_config(SinkKind::kLogit);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  struct Case {
    PolicyKind kind;
    int64_t S, W, chunk, B;
  };
  for (const Case& c : {Case{PolicyKind::kStreaming, 4, 16, 8, 2}, Case{PolicyKind::kWindow, -1, 10, 3, 1},
                        Case{PolicyKind::kDense, -1, -1, 5, 3}}) {
    auto d = decode_cfg(c.kind, c.S, c.W, c.chunk);
    d.max_tokens = 40;
    const CachePolicy policy = make_policy(d, cfg);
    KVCache cache(cfg, policy, c.B, c.chunk, opts);
    const KVCacheMemory m = kv_cache_memory(cfg, policy, c.B, c.chunk, opts);
    EXPECT_EQ(m.keys_values + m.positions, static_cast<double>(cache.bytes())) << policy.describe();
    cache.begin_step(c.chunk);
    const auto k = at::zeros({c.B, cfg.n_kv_heads, c.chunk, cfg.head_dim()});
    const CacheView view = cache.append(0, k, k);
    const int64_t slots = view.k.size(2);  // S + R
    EXPECT_EQ(m.mask, 2.0 * static_cast<double>(view.mask.numel())) << policy.describe();
    EXPECT_EQ(m.scores, 3.0 * c.B * cfg.n_heads * c.chunk * slots * 4) << policy.describe();
    // on a GPU only the host's part counts (positions and mask, the masks in pinned blocks up to twice their size):
    // the device's own out-of-memory is an error
    const auto gpu = kv_cache_memory(cfg, policy, c.B, c.chunk, opts.device(at::Device(at::kCUDA, 0)));
    EXPECT_EQ(gpu.total(), m.positions + 2 * m.mask);
  }
}

// The audit's case (a dense eval-stream of 32M tokens, OOM-killed): a dense stream whose keys, values, positions
// and mask fit in a quarter of the memory this process can get (all that was counted before), but whose step's
// attention scores over the whole cache do not, is refused before anything is allocated, naming the flags that
// bound it. Nothing is allocated: the Decoder's constructor throws first (an allocation of this size would abort).
TEST(KVCache, ADenseStreamTooLargeForItsAttentionScoresIsRefusedBeforeAllocating) {
  const HostMemory host = host_memory();
  if (host.available <= 0) GTEST_SKIP() << "this machine has no MemAvailable to check against";
  auto model = make_model(tiny_config(SinkKind::kNone));
  const auto& cfg = model->config();
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto d = decode_cfg(PolicyKind::kDense, -1, -1, 256);
  d.max_tokens = 1 << 20;
  const KVCacheMemory per_mi = kv_cache_memory(cfg, make_policy(d, cfg), 1, 256, opts);
  const double old_per_token = (per_mi.keys_values + per_mi.positions + per_mi.mask) / (1 << 20);
  d.max_tokens = static_cast<int64_t>(0.25 * static_cast<double>(host.available) / old_per_token);
  const KVCacheMemory m = kv_cache_memory(cfg, make_policy(d, cfg), 1, 256, opts);
  ASSERT_LT(m.keys_values + m.positions + m.mask, 0.3 * static_cast<double>(host.available));
  ASSERT_GT(m.scores, 2.0 * static_cast<double>(host.available));
  try {
    Decoder dec(model, d);
    FAIL() << "a dense cache of " << d.max_tokens << " tokens was accepted";
  } catch (const Error& e) {
    const std::string w = e.what();
    for (const char* want : {"KV cache would need", "a dense cache of", "attention scores", "this process can use",
                             "--tokens", "--chunk", "--policy streaming"})
      EXPECT_NE(w.find(want), std::string::npos) << "want '" << want << "' in: " << w;
    std::fprintf(stderr, "[kv-cache] %s\n", w.c_str());
  }
  // the same stream, one token per step: a step's scores shrink 256 times, and it fits
  d.max_chunk = 1;
  EXPECT_LT(kv_cache_memory(cfg, make_policy(d, cfg), 1, 1, opts).total(), 0.5 * static_cast<double>(host.available));
}

TEST(KVCache, SlotsHoldTheSinksAndTheLastTokens) {
  auto cfg = tiny_config(SinkKind::kNone);
  auto policy = make_policy(decode_cfg(PolicyKind::kStreaming, 3, 5, 2), cfg);
  KVCache cache(cfg, policy, 1, 2, at::TensorOptions().dtype(at::kFloat));
  EXPECT_EQ(cache.ring_slots(), 6);  // W + chunk - 1
  auto pos = cache.begin_step(2);    // tokens 0, 1
  cache.end_step();
  EXPECT_TRUE(at::equal(pos.text, at::tensor({0, 1}, at::kLong).view({1, 2})));
  for (int i = 0; i < 10; ++i) cache.begin_step(2), cache.end_step();  // 22 tokens in all
  auto p = cache.positions().view({-1});
  std::vector<int64_t> got(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  EXPECT_EQ(std::vector<int64_t>(got.begin(), got.begin() + 3), (std::vector<int64_t>{0, 1, 2}));
  std::vector<int64_t> ring(got.begin() + 3, got.end());
  std::sort(ring.begin(), ring.end());
  EXPECT_EQ(ring, (std::vector<int64_t>{16, 17, 18, 19, 20, 21}));  // the last Wcap tokens
  pos = cache.begin_step(2);  // tokens 22, 23: §3.2 slot of a query = S + W - 1 = 7 once the window is full
  cache.end_step();
  EXPECT_TRUE(at::equal(pos.sink_query, at::tensor({7, 7}, at::kLong).view({1, 2})));
  EXPECT_EQ(cache.seen()[0], 24);
}

// The layout kv_cache.h documents: token t lives in sink slot t when t < S, else in ring slot (t - S) mod Wcap.
// positions() must show exactly that (not just the right set of tokens) after every step, ragged chunks included.
TEST(KVCache, PositionsFollowTheDocumentedRingLayout) {
  auto cfg = tiny_config(SinkKind::kNone);
  const int64_t S = 3, W = 5, chunk = 3;
  auto policy = make_policy(decode_cfg(PolicyKind::kStreaming, S, W, chunk), cfg);
  KVCache cache(cfg, policy, 1, chunk, at::TensorOptions().dtype(at::kFloat));
  const int64_t Wcap = cache.ring_slots();
  ASSERT_EQ(Wcap, W + chunk - 1);
  int64_t seen = 0;
  for (int64_t step = 0; step < 12; ++step) {
    const int64_t C = 1 + step % chunk;
    cache.begin_step(C);
    cache.end_step();
    seen += C;
    std::vector<int64_t> want(S + Wcap, -1);
    for (int64_t t = 0; t < seen; ++t) want[t < S ? t : S + (t - S) % Wcap] = t;  // later tokens overwrite
    auto p = cache.positions().view({-1});
    ASSERT_EQ(std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel()), want)
        << "after " << seen << " tokens";
  }
}

// A step that is begun and never ended (the model threw after some layers had stored their keys) is undone by the
// next begin_step: the slot positions are put back and the later steps' logits equal a cache that never saw it.
// Before session 8 the cache counted the abandoned tokens as taken.
TEST(KVCache, AStepNeverEndedIsUndoneByTheNextOne) {
  auto cfg = tiny_config(SinkKind::kNone);
  auto m = make_model(cfg);
  const int64_t S = 2, W = 5, chunk = 3;
  auto policy = make_policy(decode_cfg(PolicyKind::kStreaming, S, W, chunk), cfg);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  KVCache clean(cfg, policy, 1, chunk, opts), hit(cfg, policy, 1, chunk, opts);
  const auto stream = random_stream(30, 64, 21);
  torch::NoGradGuard no_grad;
  auto run = [&](KVCache& cache, int64_t from, int64_t to) {  // tokens [from, to) in chunks of up to `chunk`
    std::vector<at::Tensor> out;
    for (int64_t t = from; t < to; t += chunk) {
      const int64_t C = std::min(chunk, to - t);
      auto x = at::tensor(std::vector<int64_t>(stream.begin() + t, stream.begin() + t + C), at::kLong).view({1, C});
      const auto pos = cache.begin_step(C);
      out.push_back(m->step(x, pos, cache));
      cache.end_step();
    }
    return at::cat(out, 1);  // [1, to - from, V]
  };
  run(clean, 0, 11);
  run(hit, 0, 11);
  // The abandoned step: its positions are taken and layer 0 stores junk keys in the slots of 11..13.
  hit.begin_step(chunk);
  const int64_t Hkv = cfg.n_kv_heads, D = cfg.head_dim();
  hit.append(0, at::full({1, Hkv, chunk, D}, 9.0f), at::full({1, Hkv, chunk, D}, -9.0f));
  EXPECT_EQ(hit.seen()[0], 11);
  // One token at once after the undo: it rewrites the slot of 11 only, so the slots the abandoned step took for 12
  // and 13 must already hold their old positions (a later chunk of 3 would rewrite them and hide a missing undo).
  // Oracle: the clean cache, and the ring by counting: S = 2 sink slots hold 0, 1; Wcap = W + chunk - 1 = 7 ring
  // slots, token t >= 2 in slot (t - 2) mod 7, so tokens 2..11 leave [9, 10, 11, 5, 6, 7, 8].
  auto a1 = run(clean, 11, 12), b1 = run(hit, 11, 12);
  EXPECT_TRUE(at::equal(clean.positions(), hit.positions())) << hit.positions();
  EXPECT_TRUE(at::equal(hit.positions(), at::tensor({0, 1, 9, 10, 11, 5, 6, 7, 8}, at::kLong).view({1, 9})))
      << hit.positions();  // [B = 1, S + Wcap]
  auto a = at::cat({a1, run(clean, 12, 30)}, 1), b = at::cat({b1, run(hit, 12, 30)}, 1);  // [1, 19, V]
  EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-5)) << (a - b).abs().max().item<float>();
  EXPECT_TRUE(at::equal(clean.positions(), hit.positions()));
  EXPECT_EQ(hit.seen(), clean.seen());
  // Undone by reset() too.
  hit.reset();
  hit.begin_step(chunk);
  hit.reset();
  EXPECT_EQ(hit.seen()[0], 0);
  EXPECT_EQ(at::ne(hit.positions(), -1).sum().item<int64_t>(), 0);
}

// A token id outside the vocabulary is an Error before anything is fed (on a GPU it would be a device-side
// assert), and the decoder goes on as if the call had never been made, under every policy.
TEST(Decoder, AnOutOfVocabularyTokenIsAnErrorThatFeedsNothing) {
  auto m = make_model(tiny_config(SinkKind::kToken));
  const auto good = random_stream(20, 64, 22), more = random_stream(12, 64, 23);
  for (auto kind : {PolicyKind::kStreaming, PolicyKind::kRecompute, PolicyKind::kDense}) {
    SCOPED_TRACE(static_cast<int>(kind));
    auto dc = decode_cfg(kind, -1, 6, 4);
    if (kind == PolicyKind::kDense) dc.max_tokens = 64;
    Decoder clean(m, dc), hit(m, dc);
    clean.feed_all({good});
    hit.feed_all({good});
    auto bad = more;
    bad[5] = 64;
    streamsink::testing::expect_error([&] { hit.feed_all({bad}); }, {"token id 64", "vocabulary of 64"});
    bad[5] = -1;
    EXPECT_THROW(hit.feed_all({bad}), Error);
    EXPECT_EQ(hit.seen(), clean.seen());
    auto a = clean.feed_all({more})[0], b = hit.feed_all({more})[0];
    EXPECT_TRUE(at::equal(a, b));
  }
}

TEST(KVCache, SinkQueryPositionsFollowSection32) {
  auto cfg = tiny_config(SinkKind::kNone);
  auto p = make_policy(decode_cfg(PolicyKind::kStreaming, 4, 8, 1), cfg);
  for (int64_t t = 0; t < 12; ++t) EXPECT_EQ(p.sink_query_position(t), t);  // up to S + W - 1 = 11
  for (int64_t t : {12, 100, 1000000}) EXPECT_EQ(p.sink_query_position(t), 11);
  auto q = make_policy(decode_cfg(PolicyKind::kStreaming, 4, 8, 1, PositionMode::kText), cfg);
  EXPECT_EQ(q.sink_query_position(1000000), 1000000);
}

TEST(KVCache, TextPositionsEqualCachePositionsUntilTheStreamPassesTheCache) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  const int64_t S = 2, W = 6;
  auto stream = random_stream(40, 64, 14);
  auto a = decode(m, decode_cfg(PolicyKind::kStreaming, S, W, 4), stream);
  auto b = decode(m, decode_cfg(PolicyKind::kStreaming, S, W, 4, PositionMode::kText), stream);
  EXPECT_LT(max_diff(a.narrow(0, 0, S + W), b.narrow(0, 0, S + W)), 1e-6);
  EXPECT_GT(max_diff(a.narrow(0, S + W, 40 - S - W), b.narrow(0, S + W, 40 - S - W)), 1e-4);
}

TEST(KVCache, ADenseStreamPastItsBoundIsAnError) {
  auto m = make_model(tiny_config(SinkKind::kNone));
  auto d = decode_cfg(PolicyKind::kDense, -1, 1, 4);
  d.max_tokens = 10;
  Decoder dec(m, d);
  dec.feed_all({random_stream(10, 64, 15)});
  try {
    dec.feed_all({random_stream(1, 64, 16)});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    // no command has a --max-tokens flag (eval-stream sizes dense to its stream): the message names the setting
    EXPECT_NE(std::string(e.what()).find("DecodeConfig::max_tokens"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("--max-tokens"), std::string::npos) << e.what();
  }
}

TEST(CachePolicy, BadSettingsAreErrorsNamingTheFlag) {
  auto cfg = tiny_config(SinkKind::kNone);
  auto expect_error = [&](const DecodeConfig& d, const std::string& flag) {
    try {
      make_policy(d, cfg);
      ADD_FAILURE() << "expected an error naming " << flag;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  expect_error(decode_cfg(PolicyKind::kStreaming, 4, 0, 1), "--window");
  expect_error(decode_cfg(PolicyKind::kStreaming, 4, -3, 1), "--window");
  auto minus_one = decode_cfg(PolicyKind::kStreaming, 4, 8, 1);  // a user's -1 is a value, not "the default"
  minus_one.window = -1;
  expect_error(minus_one, "--window");
  minus_one.window = 8, minus_one.sinks = -1;
  expect_error(minus_one, "--sinks");
  expect_error(decode_cfg(PolicyKind::kStreaming, 40, 8, 1), "--sinks");
  expect_error(decode_cfg(PolicyKind::kWindow, 4, 8, 1), "--sinks");
  expect_error(decode_cfg(PolicyKind::kStreaming, 4, 8, 0), "--chunk");
  EXPECT_THROW(policy_kind_from_string("lru"), Error);
  EXPECT_THROW(position_mode_from_string("absolute"), Error);
  // defaults: k sinks for token models, 4 otherwise
  EXPECT_EQ(make_policy(decode_cfg(PolicyKind::kStreaming, -1, 8, 1), tiny_config(SinkKind::kToken)).sinks(), 2);
  EXPECT_EQ(make_policy(decode_cfg(PolicyKind::kStreaming, -1, 8, 1), cfg).sinks(), 4);
}

// Without a window (kAuto) the cache is the model's training context: S + W = context_length (32 for tiny), whatever
// S is; W at least 1; an explicit window wins; dense keeps its max_tokens.
TEST(CachePolicy, TheDefaultWindowIsTheContextAfterTheSinks) {
  const auto none = tiny_config(SinkKind::kNone), token = tiny_config(SinkKind::kToken);
  auto W = [](PolicyKind p, int64_t S, const ModelConfig& m) {
    return make_policy(decode_cfg(p, S, -1, 1), m).window();
  };
  EXPECT_EQ(DecodeConfig().window, kAuto);
  EXPECT_EQ(W(PolicyKind::kStreaming, -1, none), 28);  // 4 default sinks
  EXPECT_EQ(W(PolicyKind::kStreaming, -1, token), 30);  // the 2 sink tokens
  EXPECT_EQ(W(PolicyKind::kStreaming, 1, none), 31);
  EXPECT_EQ(W(PolicyKind::kRecompute, -1, none), 32);  // 0 default sinks
  EXPECT_EQ(W(PolicyKind::kWindow, -1, none), 32);
  EXPECT_EQ(W(PolicyKind::kStreaming, 8, none), 24);
  EXPECT_EQ(make_policy(decode_cfg(PolicyKind::kStreaming, 4, 8, 1), none).window(), 8);
  EXPECT_EQ(make_policy(decode_cfg(PolicyKind::kDense, -1, -1, 1), none).window(), DecodeConfig().max_tokens);
  // a long context (an imported model's, up to 2^20) gets the default cache of kDefaultCacheTokens, not its context
  ModelConfig long_ctx = none;
  long_ctx.context_length = int64_t{1} << 20;
  EXPECT_EQ(W(PolicyKind::kStreaming, -1, long_ctx), kDefaultCacheTokens - 4);
  EXPECT_NE(default_window_note(decode_cfg(PolicyKind::kStreaming, -1, -1, 1), long_ctx).find("min(context_length"),
            std::string::npos);
  EXPECT_EQ(default_window_note(decode_cfg(PolicyKind::kStreaming, -1, 8, 1), long_ctx), "");
  try {  // no room after the sinks: W would be 1, and the error says where the window came from
    make_policy(decode_cfg(PolicyKind::kStreaming, 32, -1, 1), none);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--sinks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("context_length 32"), std::string::npos) << e.what();
  }
}

// Generation (infer/generator.*) against a naive greedy loop of full forwards over everything fed so far (W covers
// the whole stream, so the streaming cache equals the dense forward): every sampled token reaches the caller, in
// order, none twice, and the last one of a round goes into the cache with the next round's prompt.
TEST(Generator, GreedyTokensEqualANaiveArgmaxLoopAcrossRounds) {
  auto cfg = tiny_config();
  auto m = make_model(cfg, 5);
  {  // larger weights: well-separated logits, so the argmax cannot flip on rounding
    torch::NoGradGuard g;
    for (auto& p : m->named_parameters())
      if (p.key().find("norm") == std::string::npos) p.value().mul_(8.0);
  }
  Decoder dec(m, decode_cfg(PolicyKind::kStreaming, 4, 256, 8));
  SamplerConfig sc;
  sc.temperature = 0;
  Generator gen(dec, sc);
  std::vector<int64_t> history;  // every token of the stream, the naive loop's input
  auto naive_next = [&] {
    torch::NoGradGuard g;
    auto logits = m->forward(at::tensor(history, at::kLong).view({1, -1}))[0][-1];  // [V]
    return logits.argmax().item<int64_t>();
  };
  for (int round = 0; round < 3; ++round) {
    const auto prompt = random_stream(4 + 3 * round, cfg.vocab_size, 40 + round);
    history.insert(history.end(), prompt.begin(), prompt.end());
    GenerateOptions opt;
    opt.max_new_tokens = 7;
    opt.stop_at_eos = false;
    std::vector<int64_t> got;
    const int64_t n = gen.generate(prompt, opt, [&](int64_t t) { got.push_back(t); });
    std::vector<int64_t> want;
    for (int i = 0; i < 7; ++i) {
      want.push_back(naive_next());
      history.push_back(want.back());
    }
    EXPECT_EQ(n, 7) << "round " << round;
    EXPECT_EQ(got, want) << "round " << round;
    // Everything but the last sampled token has been fed; that one waits for the next round.
    EXPECT_EQ(dec.seen()[0], static_cast<int64_t>(history.size()) - 1) << "round " << round;
  }
  // <eos> ends a round early, and is itself handed over (and fed with the next prompt).
  const int64_t next = naive_next();
  GenerateOptions opt;
  opt.max_new_tokens = 5;
  opt.eos_id = next;
  std::vector<int64_t> got;
  EXPECT_EQ(gen.generate({}, opt, [&](int64_t t) { got.push_back(t); }), 1);
  EXPECT_EQ(got, std::vector<int64_t>{next});
}
