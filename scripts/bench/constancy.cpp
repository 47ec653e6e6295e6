// Constancy of the streaming cache over a long stream: per-token latency of the last 10k tokens vs the first 10k
// after the cache is full, and resident memory growth, while N tokens stream through infer::Decoder (4 sinks +
// window) in chunks, on one random-init model (configs/small.yaml's shape by default).
//
//   constancy [--tokens 1000000] [--window 508] [--chunk 16] [--measure 10000] [--dim 256 --layers 4 --heads 4
//             --kv-heads 2 --vocab 4096] [--threads 1]
// Prints key=value lines: first_ms_per_token, last_ms_per_token, latency_change (mean wall time), the same in
// thread CPU time (latency_change_cpu: with --threads 1 every op runs on this thread, so it leaves out the time a
// busy neighbour holds the core) and from the median chunk (latency_change_median: a few preempted chunks do not
// move it); paired_change, the long-streamed decoder against a fresh one whose cache has just filled, measured
// side by side in alternating blocks (the median of the pair ratios: the figure the machine's drift over a
// minutes-long run leaves alone); then rss_*_mib and rss_growth (measured before the fresh decoder exists).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "infer/decoder.h"
#include "model/transformer.h"
#include "scripts/bench/bench_clock.h"

using namespace streamsink;
using streamsink::bench::median;
using streamsink::bench::thread_cpu_ms;

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
  // One measured window (the first `measure` tokens after the cache is full, or the last `measure`): totals and
  // each chunk's ms per token, in wall and in thread CPU time.
  struct Window {
    double wall_ms = 0, cpu_ms = 0;
    int64_t n = 0;
    std::vector<double> chunk_wall;  // ms per token of each chunk
    void add(double wall, double cpu, int64_t c) {
      wall_ms += wall, cpu_ms += cpu, n += c;
      chunk_wall.push_back(wall / c);
    }
    double ms() const { return wall_ms / std::max<int64_t>(1, n); }
    double cpu() const { return cpu_ms / std::max<int64_t>(1, n); }
  } first, last;
  double rss_full = 0, peak_full = 0;
  int64_t fed = 0;
  float sink = 0;
  // Feeds decoder `d` the next chunk of its stream (`d_fed` tokens in so far); returns {wall ms, thread CPU ms}.
  auto feed_chunk = [&](Decoder& d, int64_t& d_fed, int64_t C) {
    streams[0].resize(C);
    for (int64_t c = 0; c < C; ++c) streams[0][c] = pattern[(d_fed + c) % pattern.size()];
    const double c0 = thread_cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    d.feed(streams, [&](int64_t, const std::vector<int64_t>&, const at::Tensor& logits) {
      sink += logits.select(2, 0).sum().item<float>();  // consume the logits (a host sync, as eval-stream does)
    });
    d_fed += C;
    return std::pair<double, double>{
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        thread_cpu_ms() - c0};
  };
  const auto start = std::chrono::steady_clock::now();
  while (fed < tokens) {
    const int64_t C = std::min(chunk, tokens - fed), at = fed;
    const auto [dt, dcpu] = feed_chunk(dec, fed, C);
    if (at >= full && first.n < measure) first.add(dt, dcpu, C);
    if (at >= tokens - measure && at >= full) last.add(dt, dcpu, C);
    if (fed >= full && rss_full == 0 && first.n >= measure) rss_full = rss_mib(), peak_full = peak_rss_mib();
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rss_end = rss_mib(), peak_end = peak_rss_mib();
  std::printf("tokens=%lld seconds=%.1f tokens_per_s=%.0f\n", (long long)fed, total, fed / total);
  const double first_med = median(first.chunk_wall), last_med = median(last.chunk_wall);
  std::printf("first_ms_per_token=%.4f last_ms_per_token=%.4f latency_change=%+.1f%% first_cpu_ms_per_token=%.4f "
              "last_cpu_ms_per_token=%.4f latency_change_cpu=%+.1f%% first_median_ms=%.4f last_median_ms=%.4f "
              "latency_change_median=%+.1f%%\n",
              first.ms(), last.ms(), 100 * (last.ms() / first.ms() - 1), first.cpu(), last.cpu(),
              100 * (last.cpu() / first.cpu() - 1), first_med, last_med, 100 * (last_med / first_med - 1));

  // Side by side: the long-streamed decoder against a fresh one whose cache has just filled (the state the first
  // window measured), alternating blocks of 4 chunks, the order flipped every pair, for `measure` tokens each. The
  // machine's drift over the run (clock, neighbours) cancels within a pair; what remains is the stream's own.
  Decoder fresh(model, dc, 1);
  int64_t fresh_fed = 0;
  while (fresh_fed < full) feed_chunk(fresh, fresh_fed, chunk);
  std::vector<double> pair_wall, pair_cpu;
  for (int64_t done = 0, pair = 0; done < measure; done += 4 * chunk, ++pair) {
    double w[2] = {0, 0}, c[2] = {0, 0};  // [0]: long stream, [1]: fresh
    for (int k = 0; k < 2; ++k) {
      const int which = (pair % 2 == 0) == (k == 0) ? 0 : 1;
      for (int i = 0; i < 4; ++i) {
        const auto [dt, dcpu] = which == 0 ? feed_chunk(dec, fed, chunk) : feed_chunk(fresh, fresh_fed, chunk);
        w[which] += dt, c[which] += dcpu;
      }
    }
    pair_wall.push_back(w[0] / w[1]), pair_cpu.push_back(c[0] / c[1]);
  }
  std::printf("paired_long_tokens=%lld paired_fresh_tokens=%lld pairs=%zu paired_change=%+.1f%% "
              "paired_change_cpu=%+.1f%%\n",
              (long long)fed, (long long)fresh_fed, pair_wall.size(), 100 * (median(pair_wall) - 1),
              100 * (median(pair_cpu) - 1));
  std::printf("rss_after_first_window_mib=%.1f rss_end_mib=%.1f rss_growth=%+.2f%% peak_rss_mib=%.1f->%.1f "
              "peak_rss_growth=%+.2f%% cache_bytes=%lld checksum=%g\n",
              rss_full, rss_end, 100 * (rss_end / rss_full - 1), peak_full, peak_end, 100 * (peak_end / peak_full - 1),
              (long long)dec.cache_bytes(), sink);
  return 0;
}
