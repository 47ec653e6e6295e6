// `streamsink eval-stream`: per-token NLL of a long stream under a cache policy (StreamingLLM §4.1, Figure 3).
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "app/commands.h"
#include "common/device.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/interrupt.h"
#include "infer/stream_eval.h"
#include "model/model_io.h"

namespace streamsink::app {

namespace {

// "m:ss", or "h:mm:ss" from an hour on.
std::string clock_string(double seconds) {
  const auto t = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

// The evaluation's progress, on stderr (stdout keeps only the figures that scripts read): on a terminal one line
// redrawn in place at most 5 times a second, else a line at each tenth of the stream, so that logs stay short.
class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty), t0_(clock::now()) {}
  void operator()(int64_t done, int64_t total, double mean_nll) {
    const auto now = clock::now();
    const bool last = done >= total;
    if (tty_) {
      if (!last && now - shown_ < std::chrono::milliseconds(200)) return;
    } else {
      const int64_t tenth = done * 10 / std::max<int64_t>(1, total);  // 0..10
      if (tenth <= tenth_shown_) return;
      tenth_shown_ = tenth;
    }
    shown_ = now;
    const double secs = std::chrono::duration<double>(now - t0_).count();
    const double rate = secs > 0 ? done / secs : 0;
    char ppl[32] = "-";
    if (std::isfinite(mean_nll)) std::snprintf(ppl, sizeof ppl, "%.3f", std::exp(mean_nll));
    const std::string when = last ? "done in " + clock_string(secs)
                                  : (rate > 0 ? clock_string((total - done) / rate) : std::string("?")) + " left";
    std::fprintf(stderr, "%seval-stream: %lld/%lld tokens (%.0f%%), %.0f tokens/s, ppl %s%s, %s%s",
                 tty_ ? "\r" : "", static_cast<long long>(done), static_cast<long long>(total),
                 100.0 * done / std::max<int64_t>(1, total), rate, ppl, last ? "" : " so far", when.c_str(),
                 tty_ && !last ? "   " : "\n");
    std::fflush(stderr);
  }
  // Ends a progress line left open on a terminal (before a message that is not progress).
  void end_line() const {
    if (tty_ && shown_ != clock::time_point{}) std::fputc('\n', stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  bool tty_;
  clock::time_point t0_, shown_{};
  int64_t tenth_shown_ = 0;
};

}  // namespace

int cmd_eval_stream(int argc, char** argv) {
  CLI::App app{"Per-token negative log-likelihood of a long stream under a KV cache policy", "streamsink eval-stream"};
  std::string checkpoint, data, out, policy = "streaming", positions = "cache", tokenizer, device = "auto";
  DecodeConfig dc;
  int64_t tokens = -1, block = 1024;
  int threads = 0;
  app.add_option("--checkpoint", checkpoint, "checkpoint folder, or a run folder (its latest checkpoint)")->required();
  app.add_option("--data", data, "a token shard, a data folder (its test split) or a text file")->required();
  app.add_option("--policy", policy, "dense | window | recompute | streaming")->capture_default_str();
  app.add_option("--sinks", dc.sinks,
                 "S sink slots (default: k for sink: token models, else 4 under streaming and 0 under recompute; "
                 "none for dense/window)");
  app.add_option("--window", dc.window,
                 "W recent tokens each query sees (default: the model's context_length, at most 1024, - S: the "
                 "context it was trained on; not used by dense)");
  app.add_option("--tokens", tokens, "evaluate the first N tokens of the stream (default: all)");
  app.add_option("--positions", positions, "cache (§3.2, default) | text (ablation)")->capture_default_str();
  app.add_option("--chunk", dc.max_chunk, "tokens fed per step (prefill chunk)")->capture_default_str();
  app.add_option("--out", out, "per-token NLL as jsonl; a summary is written to OUT.summary.json");
  app.add_option("--block", block, "tokens per reported perplexity block")->capture_default_str();
  app.add_option("--threads", threads, "intra-op CPU threads (default: LibTorch's)")->check(CLI::Range(0, 4096));
  app.add_option("--tokenizer", tokenizer, "sentencepiece model for a text --data (default: CHECKPOINT/tokenizer.model)");
  app.add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  bool bos = false;
  app.add_flag("--bos", bos,
               "start the stream with the tokenizer's <s> (fed, not scored), as models trained with it before every "
               "text expect (Hugging Face Llamas; streamsink's own models never saw one)");
  CLI11_PARSE(app, argc, argv);

  if (threads > 0) at::set_num_threads(threads);
  dc.policy = policy_kind_from_string(policy);
  dc.positions = position_mode_from_string(positions);
  dc.validate();
  if (tokens != -1 && tokens < 2)
    throw Error("--tokens: at least 2 (the first token is never scored), got " + std::to_string(tokens));
  const std::string dir = resolve_checkpoint_dir(checkpoint);
  check_data_tokenizer(data, dir + "/tokenizer.model");  // shards made with another tokenizer would read as noise
  auto model = load_model(dir, resolve_device(device));
  if (tokenizer.empty()) tokenizer = dir + "/tokenizer.model";
  const TokenStream stream = TokenStream::open(data, tokenizer, tokens, model->config().vocab_size);  // mapped
  if (bos) dc.bos_id = bos_id_for_flag(tokenizer);
  // The inputs are good: --out's folder is made now, before the evaluation, which may take hours.
  if (!out.empty()) prepare_output_folder(out, "--out");

  StreamEvalOptions opt;
  opt.decode = dc;
  opt.block = block;
  Progress progress(isatty(fileno(stderr)) != 0);
  opt.progress = [&](int64_t done, int64_t total, double mean_nll) { progress(done, total, mean_nll); };
  const CachePolicy resolved =
      make_policy(eval_decode_config(dc, model->config(), stream.size()), model->config());
  std::printf("eval-stream: checkpoint %s\n", dir.c_str());
  std::printf("  data %s: %lld tokens\n", data.c_str(), static_cast<long long>(stream.size()));
  const std::string window_note = default_window_note(dc, model->config());
  std::printf("  policy %s%s%s chunk %s block %lld threads %d device %s\n", resolved.describe().c_str(),
              window_note.c_str(), bos ? " <s> first (--bos)" : "", chunk_note(dc, resolved).c_str(),
              static_cast<long long>(block),
              at::get_num_threads(), model->parameters().front().device().str().c_str());
  std::fflush(stdout);
  // Ctrl-C or SIGTERM stops the evaluation at the next chunk: no figures for part of a stream, and --out is not
  // written (its temporary file, made next, is removed as the writer goes).
  install_interrupt_handler();
  opt.stop = [] { return interrupted(); };
  // The per-token NLLs go to --out as they come, not into memory: the command's memory does not grow with the stream.
  opt.keep_nll = false;
  std::optional<NllJsonlWriter> writer;
  if (!out.empty()) {
    writer.emplace(out);
    opt.on_scored = [&](int64_t first, const int64_t* ids, const float* nll, int64_t n) { writer->add(first, ids, nll, n); };
  }
  StreamEvalResult r;
  try {
    r = evaluate_stream(model, stream, opt);
  } catch (const StreamEvalInterrupted& e) {
    writer.reset();
    progress.end_line();
    std::fprintf(stderr, "eval-stream: interrupted (%s), %s; no figures%s\n", interrupt_signal_name(), e.what(),
                 out.empty() ? "" : (", and " + out + " not written").c_str());
    return interrupt_exit_code();
  }

  for (size_t j = 0; j < r.block_ppl.size(); ++j)
    std::printf("  block %4zu  tokens [%lld, %lld)  ppl %.3f\n", j, static_cast<long long>(j * block),
                static_cast<long long>(std::min<int64_t>((j + 1) * block, r.tokens)), r.block_ppl[j]);
  std::printf("perplexity %.4f (mean nll %.5f over %lld tokens)\n", r.ppl, r.mean_nll,
              static_cast<long long>(r.scored));
  std::printf("tokens/s %.1f  (%.2f s)\n", r.tokens_per_s, r.seconds);
  std::printf("cache bytes %lld  peak RSS %.1f MiB\n", static_cast<long long>(r.cache_bytes),
              r.peak_rss_bytes / 1048576.0);
  std::printf("\n%s", summary_table(r).c_str());
  if (!out.empty()) {
    writer->commit();
    write_file_atomic(out + ".summary.json", summary_json(r));
    std::printf("wrote %s and %s.summary.json\n", out.c_str(), out.c_str());
  }
  return 0;
}

}  // namespace streamsink::app
