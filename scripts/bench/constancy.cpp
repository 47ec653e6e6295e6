// Constancy of the streaming cache over a long stream: per-token latency of the last 10k tokens vs the first 10k
// after the cache is full, and resident memory growth, while N tokens stream through infer::Decoder (4 sinks +
// window) in chunks, on one random-init model (configs/small.yaml's shape by default).
//
//   constancy [--tokens 1000000] [--window 508] [--chunk 16] [--measure 10000] [--dim 256 --layers 4 --heads 4
//             --kv-heads 2 --vocab 4096] [--threads 1]
// Prints key=value lines: first_ms_per_token, last_ms_per_token, latency_change, rss_*_mib, rss_growth.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "infer/decoder.h"
#include "model/transformer.h"

using namespace streamsink;

namespace {

double rss_mib() {  // current resident set (VmRSS), MiB
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 1000000, window = 508, chunk = 16, measure = 10000, threads = 1;
  ModelConfig mc;
  mc.n_kv_heads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--tokens") tokens = v;
    else if (k == "--window") window = v;
    else if (k == "--chunk") chunk = v;
    else if (k == "--measure") measure = v;
    else if (k == "--threads") threads = v;
    else if (k == "--dim") mc.dim = v;
    else if (k == "--layers") mc.n_layers = v;
    else if (k == "--heads") mc.n_heads = v;
    else if (k == "--kv-heads") mc.n_kv_heads = v;
    else if (k == "--vocab") mc.vocab_size = v;
    else {
      std::fprintf(stderr, "constancy: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  at::set_num_threads(static_cast<int>(threads));
  at::manual_seed(0);
  Transformer model(mc);
  model->eval();
  torch::NoGradGuard no_grad;
  DecodeConfig dc;
  dc.policy = PolicyKind::kStreaming;
  dc.sinks = 4;
  dc.window = window;
  dc.max_chunk = chunk;
  Decoder dec(model, dc, 1);
  const int64_t full = 4 + window;  // the cache is full from here on
  std::printf("# model %.2fM parameters, streaming S=4 W=%lld, chunks of %lld, %lld tokens, %d threads\n",
              model->num_parameters() / 1e6, (long long)window, (long long)chunk, (long long)tokens,
              at::get_num_threads());
  std::fflush(stdout);

  // A repeated pseudo-random token stream, fed chunk by chunk (the caller's side of eval-stream / generate).
  std::vector<int64_t> pattern(4096);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = (i * 2654435761u) % mc.vocab_size;
  std::vector<std::vector<int64_t>> streams(1, std::vector<int64_t>(chunk));
  double first_s = 0, last_s = 0, rss_full = 0, peak_full = 0;
  int64_t first_n = 0, last_n = 0, fed = 0;
  float sink = 0;
  const auto start = std::chrono::steady_clock::now();
  while (fed < tokens) {
    const int64_t C = std::min(chunk, tokens - fed);
    streams[0].resize(C);
    for (int64_t c = 0; c < C; ++c) streams[0][c] = pattern[(fed + c) % pattern.size()];
    const auto t0 = std::chrono::steady_clock::now();
    dec.feed(streams, [&](int64_t, const std::vector<int64_t>&, const at::Tensor& logits) {
      sink += logits.select(2, 0).sum().item<float>();  // consume the logits (a host sync, as eval-stream does)
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (fed >= full && first_n < measure) first_s += dt, first_n += C;
    if (fed >= tokens - measure && fed >= full) last_s += dt, last_n += C;
    fed += C;
    if (fed >= full && rss_full == 0 && first_n >= measure) rss_full = rss_mib(), peak_full = peak_rss_mib();
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double first_ms = 1e3 * first_s / std::max<int64_t>(1, first_n);
  const double last_ms = 1e3 * last_s / std::max<int64_t>(1, last_n);
  const double rss_end = rss_mib(), peak_end = peak_rss_mib();
  std::printf("tokens=%lld seconds=%.1f tokens_per_s=%.0f\n", (long long)fed, total, fed / total);
  std::printf("first_ms_per_token=%.4f last_ms_per_token=%.4f latency_change=%+.1f%%\n", first_ms, last_ms,
              100 * (last_ms / first_ms - 1));
  std::printf("rss_after_first_window_mib=%.1f rss_end_mib=%.1f rss_growth=%+.2f%% peak_rss_mib=%.1f->%.1f "
              "peak_rss_growth=%+.2f%% cache_bytes=%lld checksum=%g\n",
              rss_full, rss_end, 100 * (rss_end / rss_full - 1), peak_full, peak_end, 100 * (peak_end / peak_full - 1),
              (long long)dec.cache_bytes(), sink);
  return 0;
}
