// `streamsink generate` and `streamsink chat`: text through a sink + window cache (StreamingLLM §3.2), printed
// token by token, in constant memory however long it runs.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "app/commands.h"
#include "common/device.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/interrupt.h"
#include "data/tokenizer.h"
#include "infer/generator.h"
#include "infer/stream_eval.h"
#include "infer/text_streamer.h"
#include "model/model_io.h"

namespace streamsink::app {

namespace {

// 0, also after Ctrl-C (how an endless generation or a chat is meant to end); 128 + 15 after SIGTERM, so that
// `generate ... && next` does not go on as if the command had finished its work.
int exit_status() { return interrupt_signal() == SIGTERM ? interrupt_exit_code() : 0; }

// One line from stdin (without its newline); false at the end of input or once Ctrl-C was pressed. It polls in
// 100 ms slices instead of blocking in read(): a Ctrl-C at chat's prompt ends the chat at once, even one that lands
// between the prompt and the read (before session 8 std::getline restarted the read, and chat waited for another
// line, then fed it without a reply).
bool read_line_or_interrupt(std::string& line) {
  static std::string pending;  // what was read past the last line returned
  line.clear();
  for (;;) {
    if (const size_t nl = pending.find('\n'); nl != std::string::npos) {
      line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      return true;
    }
    if (interrupted()) return false;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // the end of input: a last line without its newline still counts
      if (pending.empty()) return false;
      line.swap(pending);
      pending.clear();
      return true;
    }
    pending.append(buf, static_cast<size_t>(n));
  }
}

// The flags generate and chat share.
struct CommonFlags {
  std::string checkpoint, tokenizer, positions = "cache", device = "auto";
  DecodeConfig decode;
  SamplerConfig sampler;
  int64_t max_new_tokens = 256;
  int threads = 0;
  bool ignore_eos = false;
  bool bos = false;

  void add(CLI::App& app) {
    app.add_option("--checkpoint", checkpoint, "checkpoint folder, or a run folder (its latest checkpoint)")
        ->required();
    app.add_option("--tokenizer", tokenizer, "sentencepiece model (default: CHECKPOINT/tokenizer.model)");
    app.add_option("--max-new-tokens", max_new_tokens, "tokens to generate (per turn for chat); -1 = no limit: generate runs until "
                   "interrupted (Ctrl-C), past </s>; a chat turn runs until </s>")
        ->capture_default_str();
    app.add_option("--sinks", decode.sinks, "S sink slots (default: k for sink: token models, else 4)");
    app.add_option("--window", decode.window,
                   "W recent tokens kept in the cache (default: the model's context_length, at most 1024, - S: the "
                   "context it was trained on)");
    app.add_option("--positions", positions, "cache (§3.2) | text")->capture_default_str();
    app.add_option("--chunk", decode.max_chunk, "prompt tokens fed per step")->capture_default_str();
    app.add_option("--temperature", sampler.temperature, "0 = greedy")->capture_default_str();
    app.add_option("--top-p", sampler.top_p, "nucleus sampling mass")->capture_default_str();
    app.add_option("--seed", sampler.seed, "sampling seed")->capture_default_str();
    app.add_flag("--ignore-eos", ignore_eos, "keep generating past </s>");
    app.add_flag("--bos", bos,
                 "start the stream with the tokenizer's <s>, as models trained with it before every text expect "
                 "(Hugging Face Llamas; streamsink's own models never saw one)");
    app.add_option("--threads", threads, "intra-op CPU threads (default: LibTorch's)")->check(CLI::Range(0, 4096));
    app.add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  }
};

struct Session {
  std::string dir;
  Transformer model{nullptr};
  std::optional<Tokenizer> tok;
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<Generator> gen;
};

Session open_session(CommonFlags& f, const char* command) {
  if (f.threads > 0) at::set_num_threads(f.threads);
  if (f.max_new_tokens < -1) throw Error("--max-new-tokens: must be >= 0 or -1, got " + std::to_string(f.max_new_tokens));
  f.decode.policy = PolicyKind::kStreaming;
  f.decode.positions = position_mode_from_string(f.positions);
  f.sampler.validate();
  Session s;
  s.dir = resolve_checkpoint_dir(f.checkpoint);
  s.model = load_model(s.dir, resolve_device(f.device));
  if (f.tokenizer.empty()) f.tokenizer = s.dir + "/tokenizer.model";
  s.tok = Tokenizer::load(f.tokenizer);
  if (s.tok->vocab_size() > s.model->config().vocab_size)
    fail(f.tokenizer, "has " + std::to_string(s.tok->vocab_size()) + " ids, more than the model's vocabulary of " +
                          std::to_string(s.model->config().vocab_size));
  f.sampler.vocab_limit = s.tok->vocab_size();  // a padded model vocabulary's extra ids have no piece to print
  f.sampler.never_draw.clear();  // control symbols but </s>: they print nothing, and a sink id would enter mid-stream
  for (const int64_t id : {int64_t{s.tok->bos_id()}, int64_t{s.tok->pad_id()}})
    if (id >= 0) f.sampler.never_draw.push_back(id);
  for (int64_t i = 0; i < s.tok->n_sink_ids(); ++i) f.sampler.never_draw.push_back(s.tok->sink_id(static_cast<int>(i)));
  if (f.bos) f.decode.bos_id = bos_id_for_flag(f.tokenizer);
  s.decoder = std::make_unique<Decoder>(s.model, f.decode, 1);
  s.gen = std::make_unique<Generator>(*s.decoder, f.sampler);
  const std::string window_note = default_window_note(f.decode, s.model->config());
  std::fprintf(stderr, "%s: %s, %s%s%s, chunk %s, temperature %g top-p %g seed %llu\n", command, s.dir.c_str(),
               s.decoder->policy().describe().c_str(), window_note.c_str(), f.bos ? " <s> first (--bos)" : "",
               chunk_note(f.decode, s.decoder->policy()).c_str(), f.sampler.temperature, f.sampler.top_p,
               static_cast<unsigned long long>(f.sampler.seed));
  return s;
}

std::vector<int64_t> encode(const Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  CLI::App app{"Generate text from a prompt through a streaming (sink + window) KV cache", "streamsink generate"};
  CommonFlags f;
  std::string prompt, prompt_file;
  f.add(app);
  auto* p = app.add_option("--prompt", prompt, "the prompt text");
  auto* pf = app.add_option("--prompt-file", prompt_file, "read the prompt from a file");
  p->excludes(pf);
  CLI11_PARSE(app, argc, argv);
  if (p->count() == 0 && pf->count() == 0) throw Error("--prompt or --prompt-file is required");
  if (!prompt_file.empty()) prompt = read_file(prompt_file);

  install_interrupt_handler();  // before the model loads: a Ctrl-C then ends the run cleanly once the prompt is in
  Session s = open_session(f, "generate");
  const TextStreamer streamer(*s.tok);
  GenerateOptions opt;
  opt.max_new_tokens = f.max_new_tokens;
  opt.stop_at_eos = !f.ignore_eos && f.max_new_tokens != -1;  // -1: until interrupted, </s> included
  opt.eos_id = s.tok->eos_id();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = s.gen->generate(
      encode(*s.tok, prompt), opt,
      [&](int64_t id) {
        const std::string t = streamer.text(static_cast<int32_t>(id));
        std::fwrite(t.data(), 1, t.size(), stdout);
        std::fflush(stdout);
      },
      [] { return interrupted(); });
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n");
  std::fprintf(stderr, "generate: %lld tokens in %.2f s (%.1f tokens/s)%s, cache %.2f MiB, peak RSS %.1f MiB\n",
               static_cast<long long>(n), sec, sec > 0 ? n / sec : 0.0, interrupted() ? ", interrupted" : "",
               s.decoder->cache_bytes() / 1048576.0, peak_rss_bytes() / 1048576.0);
  return exit_status();
}

int cmd_chat(int argc, char** argv) {
  CLI::App app{"Multi-round prompts on stdin (one line per turn, EOF ends), one streaming cache across rounds",
               "streamsink chat"};
  CommonFlags f;
  f.max_new_tokens = 128;
  f.add(app);
  CLI11_PARSE(app, argc, argv);
  install_interrupt_handler();
  Session s = open_session(f, "chat");
  const TextStreamer streamer(*s.tok);
  GenerateOptions opt;
  opt.max_new_tokens = f.max_new_tokens < 0 ? -1 : f.max_new_tokens;
  opt.stop_at_eos = !f.ignore_eos;
  opt.eos_id = s.tok->eos_id();
  std::string line;
  int64_t turn = 0;
  while (!interrupted()) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    if (!read_line_or_interrupt(line)) break;  // the end of input, or Ctrl-C
    auto prompt = encode(*s.tok, line + "\n");
    s.gen->generate(
        prompt, opt,
        [&](int64_t id) {
          const std::string t = streamer.text(static_cast<int32_t>(id));
          std::fwrite(t.data(), 1, t.size(), stdout);
          std::fflush(stdout);
        },
        [] { return interrupted(); });
    std::printf("\n");
    std::fflush(stdout);
    ++turn;
  }
  std::fprintf(stderr, "\nchat: %lld turns, %lld tokens in the stream, cache %.2f MiB, peak RSS %.1f MiB\n",
               static_cast<long long>(turn), static_cast<long long>(s.decoder->seen()[0]),
               s.decoder->cache_bytes() / 1048576.0, peak_rss_bytes() / 1048576.0);
  return exit_status();
}

}  // namespace streamsink::app
