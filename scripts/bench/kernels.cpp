// The kernels whose cost decides the project's figures, timed with Google Benchmark on the CPU at the model shapes
// of configs/tiny.yaml and configs/small.yaml (read from those files), fp32. scripts/bench/kernels.sh builds and
// runs it and prints the ratios that matter as key=value lines.
//
//   kernels [--threads N] [--configs DIR] [--long-position N] [Google Benchmark flags: --benchmark_filter=RE, ...]
//
// --threads: intra-op threads (at::set_num_threads), 1 by default: on the shared 2-core machine 2 threads collapse
// under load (docs/benchmarks.md). --configs: the folder holding tiny.yaml and small.yaml (default: this source
// tree's configs/). --long-position: the long stream's position in decode_step and decode_pair, 2^20 (1M) by
// default. As the trainer does on a CPU, freed memory stays in the heap (mallopt: no mmap'd blocks, no trimming),
// for every benchmark here; the decode and cache benchmarks allocate blocks far below glibc's default mmap
// threshold, so this changes nothing for them.
//
// What each benchmark measures, and why. items/s is tokens/s, per CPU second of the benchmark thread (Google
// Benchmark's default: with 1 intra-op thread every op runs on that thread, so it is the work itself, not the time
// a neighbour holds the core; per wall second with --threads > 1). The "Time" column is wall time.
//
//   attention/CONFIG/SINK    one attention layer (q/k/v/o projections, RoPE, attention), forward + backward on a
//                            batch of B x T tokens of the config (gradients for the weights and the input).
//                            none/token take the fused at::scaled_dot_product_attention; zero/logit the explicit
//                            softmax with the extra sink logit (model/attention.cpp): the kernel-level price of a
//                            zero or logit sink.
//   train_step/CONFIG/SINK   the trainer's step without the loader and the all-reduce (train/trainer.cpp): forward,
//                            cross-entropy, backward, global gradient norm with its one host sync, clipping, the
//                            project's AdamW and zero_grad, on a fixed random batch of the config's shape. Answers
//                            "what does training with a zero/logit sink cost over vanilla?" at the level a user
//                            pays it (token costs what none costs: its sink is an ordinary input position).
//   decode_step/W=N/pos=P    one token through small.yaml's model over a streaming KVCache of S=4 sinks + W recent
//                            slots (max_chunk 256, DecodeConfig's default), the work Decoder::step_cached does per
//                            step: the token tensor, KVCache::begin_step, Transformer::step (every layer's append),
//                            end_step. pos=full: the cache has just filled (position S + Wcap); pos=1M: after 2^20
//                            tokens (the bookkeeping of the tokens between is advanced without the model, then the
//                            last Wcap tokens are real; ~7 s of set-up for the three windows). Equal times say the
//                            time per token does not grow with the position (the constancy target, as a kernel).
//   train_pair/CONFIG/SINK   the step of the vanilla model and of the zero/logit one, alternating (run_paired below);
//   decode_pair/W=N          the decode step just full and at the long position, alternating in blocks of 8 tokens.
//                            Their counter b_over_a (SINK / none; long / full) is the figure to quote: separate
//                            benchmarks drifted up to 60% apart between repetitions on this machine, the pairs'
//                            medians 1-13% (docs/benchmarks.md).
//   kvcache/W=N              KVCache bookkeeping alone for one token on a full cache: begin_step (the host-side
//                            write plan and [1, 1, S + R] mask), append for every layer (the key/value copies),
//                            end_step: the per-token overhead the cache adds to the decode step above.
//   loader/small             Loader::next() for a batch of small.yaml's shape (8 x 256) from 16M random uint16
//                            tokens in four shards in a temporary folder (removed at exit), shuffled: the tokens/s
//                            the data path gives, to set against train_step/small.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <malloc.h>
#include <stdlib.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/shard.h"
#include "infer/cache_policy.h"
#include "infer/decoder.h"
#include "infer/kv_cache.h"
#include "model/attention.h"
#include "model/rope.h"
#include "model/transformer.h"
#include "scripts/bench/bench_clock.h"
#include "train/adamw.h"
#include "train/train_config.h"

using namespace streamsink;
using streamsink::bench::median;
using streamsink::bench::thread_cpu_ms;

namespace {

constexpr int64_t kSinks = 4;  // S of the streaming cache
const char* const kSinkNames[] = {"none", "token", "zero", "logit"};

// ---- 1. training: one attention layer, and the trainer's step ----

struct AttentionFixture {
  Attention attn{nullptr};
  at::Tensor x, grad_out, cos, sin;  // x, grad_out [B, T, dim]; cos/sin [T, D]
};

struct TrainFixture {
  Transformer model{nullptr};
  std::unique_ptr<AdamW> opt;
  std::vector<at::Tensor> params;
  at::Tensor x, y;  // [B, T] int64
  double lr = 0, grad_clip = 0;
};

// ---- 2, 3. decoding: a model and a streaming KVCache brought to a position ----

struct DecodeFixture {
  Transformer model{nullptr};
  std::unique_ptr<KVCache> cache;
  std::vector<int64_t> ids;  // the tokens fed, in turn
  int64_t next = 0;
};

// ---- 4. the loader, over shards in a temporary folder ----

struct LoaderFixture {
  std::filesystem::path dir;
  std::unique_ptr<Loader> loader;
  ~LoaderFixture() {
    loader.reset();  // unmaps the shards first
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};

// Every fixture is built once, at the first run of its benchmark, and kept: Google Benchmark calls a benchmark
// function several times (the iteration estimate, the warm-up, each repetition), and building a model or streaming
// a cache to a position a million tokens in must stay outside what is timed and must not repeat.
class Fixtures {
 public:
  Fixtures(std::string config_dir, int64_t long_position)
      : config_dir_(std::move(config_dir)), long_position_(long_position) {}

  RunConfig run_config(const std::string& name, const std::string& sink) const {
    return load_run_config(config_dir_ + "/" + name + ".yaml", {"model.sink=" + sink});
  }

  AttentionFixture& attention(const std::string& name, const std::string& sink) {
    auto& f = attention_[name + "/" + sink];
    if (f) return *f;
    const RunConfig rc = run_config(name, sink);
    const ModelConfig& mc = rc.model;
    const int64_t B = rc.train.batch_size, T = rc.seq_len();
    at::manual_seed(0);
    f = std::make_unique<AttentionFixture>();
    f->attn = Attention(mc);
    // The layer's input is the residual stream: it needs a gradient, which backward passes on (not accumulated).
    f->x = at::randn({B, T, mc.dim}).requires_grad_(true);
    f->grad_out = at::randn({B, T, mc.dim});
    std::tie(f->cos, f->sin) = rope_tables(at::arange(T, at::kLong), mc.head_dim(), mc.rope_theta, at::kFloat);
    return *f;
  }

  TrainFixture& train(const std::string& name, const std::string& sink) {
    auto& f = train_[name + "/" + sink];
    if (f) return *f;
    const RunConfig rc = run_config(name, sink);
    const ModelConfig& mc = rc.model;
    const int64_t B = rc.train.batch_size, T = rc.seq_len();
    at::manual_seed(0);
    f = std::make_unique<TrainFixture>();
    f->model = Transformer(mc);
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (auto& p : f->model->named_parameters()) {
      named.emplace_back(p.key(), p.value());
      f->params.push_back(p.value());
    }
    const TrainConfig& tc = rc.train;
    f->opt = std::make_unique<AdamW>(named, AdamWOptions{tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay});
    f->lr = tc.lr, f->grad_clip = tc.grad_clip;
    // A batch as the loader makes it: k sink ids first for sink: token (data/loader.h); targets shifted by one.
    auto seq = at::randint(mc.vocab_size, {B, T + 1}, at::kLong);  // [B, T + 1]
    f->x = seq.narrow(1, 0, T).clone(), f->y = seq.narrow(1, 1, T).clone();
    for (int64_t i = 0; i < mc.prefix_tokens(); ++i) {
      f->x.select(1, i).fill_(mc.sink_token_id + i);
      if (i + 1 < mc.prefix_tokens()) f->y.select(1, i).fill_(-100);
    }
    return *f;
  }

  // small.yaml's model over a streaming cache (S=4, W=window) that has just filled (position S + Wcap: every sink
  // and ring slot written once, the next token wraps), or that has taken --long-position tokens (or a little more,
  // where that is below S + 2·Wcap: a stream that long).
  DecodeFixture& decode(int64_t window, bool long_stream) {
    auto& f = decode_[{window, long_stream}];
    if (f) return *f;
    f = std::make_unique<DecodeFixture>();
    f->model = decode_model();
    f->cache = make_cache(window);
    const int64_t Wcap = f->cache->ring_slots(), filled = kSinks + Wcap;
    torch::NoGradGuard no_grad;
    feed_model(*f, filled);  // sinks and every ring slot hold the model's keys
    if (long_stream) {
      advance_bookkeeping(*f->cache, std::max<int64_t>(0, long_position_ - filled - Wcap));  // positions only
      feed_model(*f, Wcap);                                      // the window is the model's again
    }
    at::manual_seed(1);
    auto ids = at::randint(f->model->config().vocab_size, {4096}, at::kLong);
    f->ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    return *f;
  }

  // A cache of its own for the bookkeeping benchmark, full (position S + Wcap), its keys and values zeros.
  KVCache& bookkeeping_cache(int64_t window) {
    auto& c = bookkeeping_[window];
    if (c) return *c;
    c = make_cache(window);
    advance_bookkeeping(*c, kSinks + c->ring_slots());
    return *c;
  }

  LoaderFixture& loader() {
    if (loader_) return *loader_;
    const RunConfig rc = run_config("small", "none");
    loader_ = std::make_unique<LoaderFixture>();
    std::string tmpl = (std::filesystem::temp_directory_path() / "streamsink-kernels-XXXXXX").string();
    TORCH_CHECK(mkdtemp(tmpl.data()) != nullptr, "kernels: cannot make a temporary folder under ",
                std::filesystem::temp_directory_path().string());
    loader_->dir = tmpl;
    const TokenDtype dtype = dtype_for_vocab(rc.model.vocab_size);
    at::manual_seed(2);
    for (int64_t s = 0; s < 4; ++s) {  // 4 x 4M tokens: the size of the bench corpus (16.2M tokens)
      auto t = at::randint(rc.model.vocab_size, {int64_t{1} << 22}, at::kInt);
      write_shard(shard_path(loader_->dir.string(), "train", s),
                  std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + t.numel()), dtype);
    }
    loader_->loader = std::make_unique<Loader>(LoaderConfig{loader_->dir.string(), "train", rc.train.batch_size,
                                                            rc.seq_len(), 1337, 0, 1, {}, true});
    return *loader_;
  }

  Transformer decode_model() {
    if (!decode_model_) {
      ModelConfig mc = run_config("small", "none").model;
      at::manual_seed(0);
      decode_model_ = Transformer(mc);
      decode_model_->eval();
    }
    return decode_model_;
  }

 private:
  std::unique_ptr<KVCache> make_cache(int64_t window) {
    const Transformer m = decode_model();
    DecodeConfig dc;  // streaming, max_chunk: the library's defaults
    dc.sinks = kSinks;
    dc.window = window;
    return std::make_unique<KVCache>(m->config(), make_policy(dc, m->config()), 1, dc.max_chunk,
                                     m->parameters().front().options());
  }

  // Advances a cache by n tokens without the model: begin_step, zero keys/values for every layer, end_step.
  void advance_bookkeeping(KVCache& cache, int64_t n) {
    const ModelConfig& mc = decode_model()->config();
    const int64_t C = DecodeConfig{}.max_chunk;
    auto zeros = at::zeros({1, mc.n_kv_heads, C, mc.head_dim()});  // [B, Hkv, C, D]
    for (int64_t done = 0; done < n;) {
      const int64_t c = std::min(C, n - done);
      cache.begin_step(c);
      for (int64_t l = 0; l < mc.n_layers; ++l) cache.append(l, zeros.narrow(2, 0, c), zeros.narrow(2, 0, c));
      cache.end_step();
      done += c;
    }
  }

  // Feeds n random tokens through the model in chunks of max_chunk, as Decoder::step_cached does.
  void feed_model(DecodeFixture& f, int64_t n) {
    const int64_t C = DecodeConfig{}.max_chunk;
    for (int64_t done = 0; done < n;) {
      const int64_t c = std::min(C, n - done);
      auto tokens = at::randint(f.model->config().vocab_size, {1, c}, at::kLong);  // [1, c]
      const auto pos = f.cache->begin_step(c);
      f.model->step(tokens, pos, *f.cache);
      f.cache->end_step();
      done += c;
    }
  }

  std::string config_dir_;
  int64_t long_position_;
  std::map<std::string, std::unique_ptr<AttentionFixture>> attention_;
  std::map<std::string, std::unique_ptr<TrainFixture>> train_;
  std::map<std::pair<int64_t, bool>, std::unique_ptr<DecodeFixture>> decode_;
  std::map<int64_t, std::unique_ptr<KVCache>> bookkeeping_;
  std::unique_ptr<LoaderFixture> loader_;
  Transformer decode_model_{nullptr};
};

void bm_attention(benchmark::State& state, Fixtures& fx, const std::string& config, const std::string& sink) {
  auto& f = fx.attention(config, sink);
  for (auto _ : state) {
    auto out = f.attn->forward(f.x, f.cos, f.sin, nullptr);  // [B, T, dim]
    out.backward(f.grad_out);
    benchmark::DoNotOptimize(f.x.grad().data_ptr<float>());
    f.x.mutable_grad().reset();  // passed on, as to the layer below
    for (auto& p : f.attn->parameters()) p.mutable_grad().zero_();  // AdamW::zero_grad
  }
  state.SetItemsProcessed(state.iterations() * f.x.size(0) * f.x.size(1));
  state.SetLabel(sink == "zero" || sink == "logit" ? "explicit softmax + sink" : "fused SDPA");
}

// train/trainer.cpp's loop body, grad_accum 1, one rank (no loader, no all-reduce). Returns the loss.
double train_step(TrainFixture& f) {
  at::Tensor loss_sum = at::zeros({});
  auto loss = f.model->loss(f.model->forward(f.x), f.y) / 1.0;
  loss.backward();
  loss_sum += loss.detach();
  std::vector<at::Tensor> grads;
  for (auto& p : f.params) grads.push_back(p.mutable_grad());
  at::Tensor norm = at::norm(at::stack(at::_foreach_norm(grads)));
  auto host = at::stack({loss_sum.to(at::kFloat), norm.to(at::kFloat)}).to(at::kCPU);  // the step's host sync
  const double loss_v = host[0].item<double>(), norm_v = host[1].item<double>();
  if (f.grad_clip > 0 && norm_v > f.grad_clip) at::_foreach_mul_(grads, f.grad_clip / (norm_v + 1e-6));
  f.opt->step(f.lr);
  f.opt->zero_grad();
  return loss_v;
}

// One token through the model and the cache, as Decoder::step_cached runs it (under a NoGradGuard). Returns the
// logits [1, 1, V].
at::Tensor decode_token(DecodeFixture& f) {
  auto tokens = at::zeros({1, 1}, at::kLong);  // [B, C], filled on the host as step_cached fills it
  tokens.data_ptr<int64_t>()[0] = f.ids[static_cast<size_t>(f.next++ % static_cast<int64_t>(f.ids.size()))];
  const auto pos = f.cache->begin_step(1);
  auto logits = f.model->step(tokens, pos, *f.cache);  // [1, 1, V]
  f.cache->end_step();
  return logits;
}

void bm_train_step(benchmark::State& state, Fixtures& fx, const std::string& config, const std::string& sink) {
  auto& f = fx.train(config, sink);
  for (auto _ : state) benchmark::DoNotOptimize(train_step(f));
  state.SetItemsProcessed(state.iterations() * f.x.numel());
}

void bm_decode_step(benchmark::State& state, Fixtures& fx, int64_t window, bool long_stream) {
  auto& f = fx.decode(window, long_stream);
  torch::NoGradGuard no_grad;  // as Decoder::feed
  state.counters["pos"] = static_cast<double>(f.cache->seen()[0]);  // where this run starts
  for (auto _ : state) benchmark::DoNotOptimize(decode_token(f).data_ptr<float>());
  state.SetItemsProcessed(state.iterations());
  state.counters["slots"] = static_cast<double>(kSinks + f.cache->ring_slots() + 1);  // S + R, each attended
}

// The side-by-side figure. On this shared machine the same benchmark runs up to 60% apart from one repetition to
// the next (decode_step above), more than the differences to measure; so `a` and `b` run alternately, one call each an
// iteration, the order flipped every iteration, each call timed on its own (thread CPU time with one intra-op
// thread, where every op runs on this thread: not a neighbour's share of the core; wall time with more), and the
// counter b_over_a is the median over blocks of `block` iterations of b's time / a's: noise slower than a block hits
// both alike. Google Benchmark's own time is that of the pair.
template <class A, class B>
void run_paired(benchmark::State& state, A&& a, B&& b, int64_t block, bool cpu_clock) {
  const auto now_ms = [cpu_clock] {
    return cpu_clock ? thread_cpu_ms()
                     : std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
                           .count();
  };
  std::vector<double> ratios;
  double ta = 0, tb = 0;
  int64_t i = 0;
  for (auto _ : state) {
    const double t0 = now_ms();
    if (i % 2 == 0) a(); else b();
    const double t1 = now_ms();
    if (i % 2 == 0) b(); else a();
    const double t2 = now_ms();
    ta += i % 2 == 0 ? t1 - t0 : t2 - t1;
    tb += i % 2 == 0 ? t2 - t1 : t1 - t0;
    if (++i % block == 0) {
      ratios.push_back(tb / ta);
      ta = tb = 0;
    }
  }
  state.counters["b_over_a"] = ratios.empty() ? 0.0 : median(ratios);
  state.counters["pairs"] = static_cast<double>(ratios.size());
}

// train_pair/CONFIG/SINK: a training step of the vanilla model, then one of the SINK model (b_over_a: SINK / none).
void bm_train_pair(benchmark::State& state, Fixtures& fx, const std::string& config, const std::string& sink,
                   bool cpu_clock) {
  auto& none = fx.train(config, "none");
  auto& other = fx.train(config, sink);
  run_paired(
      state, [&] { benchmark::DoNotOptimize(train_step(none)); }, [&] { benchmark::DoNotOptimize(train_step(other)); },
      1, cpu_clock);
  state.SetItemsProcessed(state.iterations() * (none.x.numel() + other.x.numel()));
}

// decode_pair/W=N: a token on the just-full cache, then one on the long stream's (b_over_a: long / full), in blocks
// of 8 tokens (as scripts/bench/decode_latency.cpp pairs streaming and window).
void bm_decode_pair(benchmark::State& state, Fixtures& fx, int64_t window, bool cpu_clock) {
  auto& full = fx.decode(window, false);
  auto& long_stream = fx.decode(window, true);
  torch::NoGradGuard no_grad;
  run_paired(
      state, [&] { benchmark::DoNotOptimize(decode_token(full).data_ptr<float>()); },
      [&] { benchmark::DoNotOptimize(decode_token(long_stream).data_ptr<float>()); }, 8, cpu_clock);
  state.SetItemsProcessed(2 * state.iterations());
}

void bm_kvcache(benchmark::State& state, Fixtures& fx, int64_t window) {
  KVCache& cache = fx.bookkeeping_cache(window);
  const ModelConfig& mc = fx.decode_model()->config();
  at::manual_seed(3);
  auto k = at::randn({1, mc.n_kv_heads, 1, mc.head_dim()}), v = at::randn({1, mc.n_kv_heads, 1, mc.head_dim()});
  for (auto _ : state) {
    cache.begin_step(1);
    for (int64_t l = 0; l < mc.n_layers; ++l) benchmark::DoNotOptimize(cache.append(l, k, v).mask.data_ptr<bool>());
    cache.end_step();
  }
  state.SetItemsProcessed(state.iterations());
}

void bm_loader(benchmark::State& state, Fixtures& fx) {
  auto& f = fx.loader();
  int64_t tokens = 0;
  for (auto _ : state) {
    Batch b = f.loader->next();
    benchmark::DoNotOptimize(b.inputs.data_ptr<int64_t>());
    benchmark::DoNotOptimize(b.targets.data_ptr<int64_t>());
    tokens += b.inputs.numel();
  }
  state.SetItemsProcessed(tokens);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  std::string config_dir = STREAMSINK_SOURCE_DIR "/configs";
  int64_t long_position = int64_t{1} << 20;
  // Our flags out of argv first; Google Benchmark takes its own and ReportUnrecognizedArguments the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--configs" && i + 1 < argc) {
      config_dir = argv[++i];
    } else if (a == "--long-position" && i + 1 < argc) {
      long_position = std::atoll(argv[++i]);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  if (threads < 1 || long_position < 1) {
    std::fprintf(stderr, "kernels: --threads and --long-position must be numbers of at least 1\n");
    return 2;
  }
  at::set_num_threads(threads);
  mallopt(M_MMAP_MAX, 0);  // as train/trainer.cpp on a CPU: freed blocks stay in the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  Fixtures fx(config_dir, long_position);
  for (const std::string config : {"tiny", "small"}) {
    RunConfig rc;
    try {
      rc = fx.run_config(config, "none");  // here, before any benchmark, a bad --configs stops the run
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kernels: %s\n", e.what());
      return 2;
    }
    const ModelConfig& m = rc.model;
    benchmark::AddCustomContext(config, "dim " + std::to_string(m.dim) + ", " + std::to_string(m.n_layers) +
                                            " layers, " + std::to_string(m.n_heads) + "/" +
                                            std::to_string(m.n_kv_heads) + " heads, vocab " +
                                            std::to_string(m.vocab_size) + ", batch " +
                                            std::to_string(rc.train.batch_size) + " x " + std::to_string(rc.seq_len()));
  }
  benchmark::AddCustomContext("intra_op_threads", std::to_string(at::get_num_threads()));

  // With more than one thread, rates per wall second: the benchmark thread's CPU time leaves out the other workers'.
  const auto add = [&](const std::string& name, benchmark::TimeUnit unit, auto fn, auto... args) {
    auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, std::ref(fx), args...)->Unit(unit);
    if (threads > 1) b->UseRealTime();
  };
  for (const std::string config : {"tiny", "small"})
    for (const std::string sink : kSinkNames)
      add("attention/" + config + "/" + sink, benchmark::kMicrosecond, bm_attention, config, sink);
  for (const std::string config : {"tiny", "small"})
    for (const std::string sink : kSinkNames)
      add("train_step/" + config + "/" + sink, benchmark::kMillisecond, bm_train_step, config, sink);
  // "1M" for 2^20, "16k" for 2^14, else the number
  const std::string long_name = long_position % (1 << 20) == 0 ? std::to_string(long_position >> 20) + "M"
                                : long_position % (1 << 10) == 0 ? std::to_string(long_position >> 10) + "k"
                                                                 : std::to_string(long_position);
  for (const int64_t W : {252, 1020, 4092}) {
    add("decode_step/W=" + std::to_string(W) + "/pos=full", benchmark::kMicrosecond, bm_decode_step, W, false);
    add("decode_step/W=" + std::to_string(W) + "/pos=" + long_name, benchmark::kMicrosecond, bm_decode_step, W, true);
  }
  for (const std::string config : {"tiny", "small"})
    for (const std::string sink : {"zero", "logit"})
      add("train_pair/" + config + "/" + sink, benchmark::kMillisecond, bm_train_pair, config, sink, threads == 1);
  for (const int64_t W : {252, 1020, 4092})
    add("decode_pair/W=" + std::to_string(W), benchmark::kMicrosecond, bm_decode_pair, W, threads == 1);
  for (const int64_t W : {252, 1020, 4092})
    add("kvcache/W=" + std::to_string(W), benchmark::kMicrosecond, bm_kvcache, W);
  add("loader/small", benchmark::kMicrosecond, bm_loader);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
