// Per-token decoding latency of the streaming cache (4 sinks + window), the plain window cache and the sliding
// window with re-computation, at several cache sizes, on one random-init model (StreamingLLM Figure 10).
//
//   decode_latency [--caches 256,512,1024,2048,4096] [--tokens 64] [--recompute-tokens 3] [--repeats 3]
//                  [--dim 256 --layers 4 --heads 4 --kv-heads 2 --vocab 4096] [--chunk 64] [--threads 0]
//                  [--device cpu|cuda]
//
// Cache size L = every token a query attends to: streaming S=4 sinks + W=L-4 recent; window W=L; recompute a fresh
// forward over the last L tokens per token. Streaming and window are timed through infer::Decoder::feed_last on a
// cache that is full and has wrapped (fed 2L tokens in chunks of --chunk first); recompute is timed as the forward
// over L tokens that Decoder's recompute step runs for every token once its window is full (filling it through the
// Decoder would cost L such forwards). Each ms figure is the median over --repeats rounds of the mean per-token time;
// streaming_vs_window is the median over paired blocks of 8 tokens (streaming and window alternating) of their
// time ratio, minus one: the side-by-side figure, far less noisy on a shared machine than a ratio of two medians;
// streaming_vs_window_cpu is the same in thread CPU time (meaningful with --threads 1, where every op runs on the
// calling thread), which also leaves out the time other processes hold the core.
// Prints one line per cache size:  cache=4096 streaming_ms=... window_ms=... recompute_ms=... ratio=...
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "infer/decoder.h"
#include "model/transformer.h"
#include "scripts/bench/bench_clock.h"

using namespace streamsink;
using streamsink::bench::median;
using streamsink::bench::thread_cpu_ms;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kBlock = 8;  // tokens per timed block in the streaming/window pairs

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

// Mean ms per token of `n` single-token steps on a decoder whose cache is already full; `cpu_ms` gets the same
// in thread CPU time.
double time_cached(Decoder& dec, int64_t vocab, int64_t n, int64_t& next_tok, double* cpu_ms = nullptr) {
  const double c0 = thread_cpu_ms();
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    auto tok = at::full({1, 1}, (next_tok++ * 7919) % vocab, at::kLong);
    auto logits = dec.feed_last(tok);  // [1, V]
    (void)logits.argmax().item<int64_t>();  // waits for the step (a host sync on a GPU, as a sampler would)
  }
  const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / n;
  if (cpu_ms) *cpu_ms = (thread_cpu_ms() - c0) / n;
  return wall;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> caches = {256, 512, 1024, 2048, 4096};
  int64_t tokens = 64, recompute_tokens = 3, repeats = 3, chunk = 64, threads = 0;
  std::string device = "cpu";
  ModelConfig mc;  // defaults: dim 256, 4 layers, 4 heads, vocab 4096 (configs/small.yaml's model, n_kv_heads below)
  mc.n_kv_heads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--caches") caches = parse_list(v);
    else if (k == "--tokens") tokens = std::stoll(v);
    else if (k == "--recompute-tokens") recompute_tokens = std::stoll(v);
    else if (k == "--repeats") repeats = std::stoll(v);
    else if (k == "--chunk") chunk = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--dim") mc.dim = std::stoll(v);
    else if (k == "--layers") mc.n_layers = std::stoll(v);
    else if (k == "--heads") mc.n_heads = std::stoll(v);
    else if (k == "--kv-heads") mc.n_kv_heads = std::stoll(v);
    else if (k == "--vocab") mc.vocab_size = std::stoll(v);
    else if (k == "--device") device = v;
    else {
      std::fprintf(stderr, "decode_latency: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (tokens < kBlock) {
    std::fprintf(stderr, "decode_latency: --tokens must be at least %lld\n", (long long)kBlock);
    return 2;
  }
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  mc.context_length = *std::max_element(caches.begin(), caches.end());
  at::manual_seed(0);
  Transformer model(mc);
  model->to(c10::Device(device));
  model->eval();
  torch::NoGradGuard no_grad;
  std::printf("# device %s; model: dim %lld, %lld layers, %lld heads (%lld kv), vocab %lld: %.2fM parameters, fp32, %d threads, "
              "chunk %lld, %lld tokens x %lld repeats\n",
              device.c_str(), (long long)mc.dim, (long long)mc.n_layers, (long long)mc.n_heads, (long long)mc.n_kv_heads,
              (long long)mc.vocab_size, model->num_parameters() / 1e6, at::get_num_threads(), (long long)chunk,
              (long long)tokens, (long long)repeats);
  std::fflush(stdout);

  for (const int64_t L : caches) {
    auto make = [&](PolicyKind kind) {
      DecodeConfig dc;
      dc.policy = kind;
      dc.sinks = kind == PolicyKind::kStreaming ? 4 : 0;
      dc.window = kind == PolicyKind::kStreaming ? L - 4 : L;
      dc.max_chunk = chunk;
      auto dec = std::make_unique<Decoder>(model, dc, 1);
      auto fill = at::randint(mc.vocab_size, {1, 2 * L}, at::kLong).to(c10::Device(device));
      dec->feed_last(fill);  // full and wrapped
      return dec;
    };
    auto streaming = make(PolicyKind::kStreaming);
    auto window = make(PolicyKind::kWindow);
    int64_t next_tok = 1;
    time_cached(*streaming, mc.vocab_size, 4, next_tok);  // warm-up
    time_cached(*window, mc.vocab_size, 4, next_tok);
    std::vector<double> s_ms, w_ms, r_ms, pair_ratio, pair_ratio_cpu;
    auto ctx = at::randint(mc.vocab_size, {1, L}, at::kLong).to(c10::Device(device));
    model->forward_last(ctx);  // warm-up
    for (int64_t r = 0; r < repeats; ++r) {  // interleaved, so a noisy neighbour hits all three alike
      // Streaming and window alternate in blocks of kBlock tokens (order flipped every pair, against drift); each
      // pair's ratio is one paired sample of streaming / window, immune to noise slower than a block.
      double s_sum = 0, w_sum = 0;
      for (int64_t i = 0; i < tokens / kBlock; ++i) {
        double s_blk, w_blk, s_cpu, w_cpu;
        if (i % 2 == 0) {
          s_blk = time_cached(*streaming, mc.vocab_size, kBlock, next_tok, &s_cpu);
          w_blk = time_cached(*window, mc.vocab_size, kBlock, next_tok, &w_cpu);
        } else {
          w_blk = time_cached(*window, mc.vocab_size, kBlock, next_tok, &w_cpu);
          s_blk = time_cached(*streaming, mc.vocab_size, kBlock, next_tok, &s_cpu);
        }
        s_sum += s_blk, w_sum += w_blk;
        pair_ratio.push_back(s_blk / w_blk);
        pair_ratio_cpu.push_back(s_cpu / w_cpu);
      }
      s_ms.push_back(s_sum / (tokens / kBlock));
      w_ms.push_back(w_sum / (tokens / kBlock));
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < recompute_tokens; ++i) {
        auto last = model->forward_last(ctx);  // [1, V]: Decoder::step_recompute's work per token
        (void)last.argmax().item<int64_t>();
      }
      r_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / recompute_tokens);
    }
    const double s = median(s_ms), w = median(w_ms), rc = median(r_ms);
    const auto spread = [](const std::vector<double>& v) {
      return (*std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end())) / median(v);
    };
    std::printf("cache=%lld streaming_ms=%.4f window_ms=%.4f recompute_ms=%.3f ratio=%.1f streaming_vs_window=%+.1f%% "
                "streaming_vs_window_cpu=%+.1f%% pairs=%zu spread=%.0f%%/%.0f%%/%.0f%%\n",
                (long long)L, s, w, rc, rc / s, 100 * (median(pair_ratio) - 1), 100 * (median(pair_ratio_cpu) - 1),
                pair_ratio.size(), 100 * spread(s_ms),
                100 * spread(w_ms), 100 * spread(r_ms));
    std::fflush(stdout);
  }
  return 0;
}
