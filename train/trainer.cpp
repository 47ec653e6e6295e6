#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <malloc.h>
#include <nlohmann/json.hpp>
#include <torch/utils.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <thread>

#include "common/device.h"
#include "common/error.h"
#include "common/fault_injection.h"
#include "common/file_util.h"
#include "common/memory.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/autocast.h"
#include "model/model_io.h"
#include "model/model_memory.h"
#include "model/transformer.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/metrics_log.h"
#include "train/peak_flops.h"
#include "train/schedule.h"
#include "train/sink_metrics.h"
#include "train/step_profiler.h"
#include "train/validation.h"
#include "train/weight_check.h"

namespace streamsink {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};
const char* const kBudgetStop = "train.max_seconds";  // the stop reason a time-budget stop names (and evaluates)
void on_stop_signal(int sig) { g_stop_signal = sig; }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string human_time(double s) {
  char buf[32];
  if (s < 0 || !std::isfinite(s)) return "?";
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  else std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

std::string short_number(double x) {  // "1e+38", "0.003", "1.43"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", x);
  return buf;
}

// Whether DIR holds a run: a checkpoint folder (complete or not, `latest` or not) or a metrics.jsonl with a line.
bool holds_a_run(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "checkpoints", ec))
    if (e.path().filename().string().rfind("step_", 0) == 0 || e.path().filename() == "latest") return true;
  return fs::file_size(fs::path(dir) / "metrics.jsonl", ec) > 0 && !ec;
}

std::vector<int64_t> sink_prefix(const ModelConfig& m) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < m.prefix_tokens(); ++i) p.push_back(m.sink_token_id + i);
  return p;
}

// Error naming the config file and the figures when training its model does not fit in the host memory this process
// can get (model/model_memory.h says what is counted): on a CPU the parameters, their gradients and AdamW's two
// moments; on a GPU the parameters while the model is built on the host; on resume, the larger of the checkpoint's
// two safetensors files too, read whole (on a GPU after the host's copy of the parameters has moved). Every rank of
// this node holds as much.
void check_training_fits(const RunConfig& cfg, c10::Device device, int local_ranks, const std::string& resume_dir) {
  const ModelMemory m = model_memory(cfg.model);
  auto items = model_build_items(cfg.model);
  if (device.is_cpu()) {
    items.push_back({m.param_bytes, "for their gradients"});
    items.push_back({2 * m.param_bytes, "for AdamW's two moments"});
  }
  if (!resume_dir.empty()) {
    double file = 0;
    std::string name;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
      std::error_code ec;
      const auto n = fs::file_size(fs::path(resume_dir) / f, ec);
      if (!ec && static_cast<double>(n) > file) file = static_cast<double>(n), name = resume_dir + "/" + f;
    }
    double built = 0;
    for (const auto& it : items) built += it.bytes;
    if (file > 0 && device.is_cpu()) items.push_back({file, "for " + name + ", read whole on resume"});
    else if (file > built) items = {{file, "for " + name + ", read whole on resume"}};
  }
  check_model_fits(cfg.source, "training this model on " + device.str(), items, local_ranks,
                   ": the model is " + model_size_summary(cfg.model) +
                       " (activations come on top); lower model.dim, model.n_layers, model.hidden_dim or "
                       "model.vocab_size, or train on a machine with more memory");
}

}  // namespace

std::string resolve_run_tokenizer(const TrainConfig& tc) {
  const bool have_manifest = fs::exists(fs::path(tc.data_dir) / "manifest.json");
  const auto matches_data = [&](const std::string& path) {  // Error naming the file: unloadable, or not the data's
    if (have_manifest) check_manifest_tokenizer(read_manifest(tc.data_dir), path);
    else (void)Tokenizer::load(path);
  };
  if (!tc.tokenizer.empty()) {
    if (!fs::is_regular_file(tc.tokenizer))
      fail(tc.tokenizer, "train.tokenizer: no such file (a sentencepiece .model is expected)");
    matches_data(tc.tokenizer);
    return tc.tokenizer;
  }
  const std::string in_data = (fs::path(tc.data_dir) / "tokenizer.model").string();
  if (fs::exists(in_data)) {
    matches_data(in_data);
    return in_data;
  }
  if (have_manifest) {
    const Manifest man = read_manifest(tc.data_dir);
    if (fs::is_regular_file(man.tokenizer_path) &&
        Tokenizer::load(man.tokenizer_path).checksum() == man.tokenizer_checksum)
      return man.tokenizer_path;
    std::fprintf(stderr, "[train] note: the tokenizer %s that prepared %s is %s; the checkpoints will carry no "
                 "tokenizer, which generate, chat and export-hf need (set train.tokenizer)\n",
                 man.tokenizer_path.c_str(), tc.data_dir.c_str(),
                 fs::exists(man.tokenizer_path) ? "no longer the same file" : "gone");
  }
  return "";
}

void check_data_ids(const ModelConfig& m, const std::string& tokenizer, const std::string& data_dir) {
  // The data's vocabulary must fit the model's embedding: past it, a CPU run stops with an index error, but a GPU
  // run hits a device-side assert that poisons the whole process.
  if (fs::exists(fs::path(data_dir) / "manifest.json")) {
    const Manifest man = read_manifest(data_dir);
    if (man.vocab_size > m.vocab_size)
      fail(man.path, "the data's tokenizer has " + std::to_string(man.vocab_size) +
                         " pieces, more than model.vocab_size = " + std::to_string(m.vocab_size) +
                         " (set model.vocab_size to at least " + std::to_string(man.vocab_size) + ")");
  }
  const int64_t k = m.prefix_tokens(), lo = m.sink_token_id;
  const std::string ids = "model.sink_token_id = " + std::to_string(lo) + " with model.sink_tokens = " +
                          std::to_string(k);
  const bool have_tokenizer = !tokenizer.empty() && fs::exists(tokenizer);
  if (k > 0 && have_tokenizer) {
    const Tokenizer tok = Tokenizer::load(tokenizer);
    std::vector<int64_t> reserved;
    for (int64_t i = 0; i < tok.n_sink_ids(); ++i) reserved.push_back(tok.sink_id(static_cast<int>(i)));
    for (int64_t id = lo; id < lo + k; ++id) {
      const bool sink_symbol = std::find(reserved.begin(), reserved.end(), id) != reserved.end();
      if (!sink_symbol && id < tok.vocab_size())
        fail(tokenizer, ids + ": id " + std::to_string(id) + " is the tokenizer's piece '" +
                            tok.piece(static_cast<int32_t>(id)) + "', not one of its sink symbols, so the sink would " +
                            "share its embedding with that piece. " +
                            "Use the tokenizer's reserved sink symbols (" + std::to_string(reserved.size()) +
                            (reserved.empty() ? "" : ": ids " + std::to_string(reserved.front()) + ".." +
                                                         std::to_string(reserved.back())) +
                            "), ids past its " + std::to_string(tok.vocab_size()) +
                            " pieces, or a tokenizer with more (`streamsink tokenizer train --sink-symbols N`)");
    }
  }
  // One pass over every train and val shard, which data without a manifest or tokenizer (llm.c's shards, say) has
  // nothing else to vouch for: every id inside the model's vocabulary, and none of the sink's ids as plain data
  // unless a tokenizer reserves them.
  const bool count_sink_ids = k > 0 && !have_tokenizer;
  for (const char* split : {"train", "val"})
    for (const auto& path : list_shards(data_dir, split)) {
      const Shard::Scan scan = Shard::open(path).scan(count_sink_ids ? lo : 0, count_sink_ids ? lo + k : 0);
      if (scan.max >= m.vocab_size)
        fail(path, "holds token id " + std::to_string(scan.max) + ", outside model.vocab_size = " +
                       std::to_string(m.vocab_size) + " (set model.vocab_size to at least " +
                       std::to_string(scan.max + 1) + ")");
      if (scan.in_range > 0)
        fail(path, "holds " + std::to_string(scan.in_range) + " token(s) with the ids that " + ids +
                       " reserves for the sink; with no tokenizer.model to reserve them, choose ids this data never "
                       "uses");
    }
}

int train(const RunConfig& cfg_in, const TrainOptions& opts) {
  RunConfig cfg = cfg_in;
  TrainConfig& tc = cfg.train;
  tc.seq_len = cfg.seq_len();
  if (opts.out_dir.empty()) throw Error("--out: a run folder is required");

  // ---- processes, devices, threads ----
  const DistEnv env = detect_dist_env();
  const c10::Device device = resolve_device(tc.device, env.local_rank);
  if (device.is_cpu()) {
    // glibc hands every large block (activations, logits: MiBs) back to the kernel when freed and faults it in
    // again on the next step: 5-10% of a small CPU step in page faults. Keep freed memory in the heap instead:
    // no mmap'd blocks at all (the mmap threshold cannot go above 32 MiB, and small.yaml's logits are 32 MiB),
    // and no trimming. small.yaml, 1 thread: 686k -> 190k page faults in 16 steps, +9% tokens/s, peak RSS
    // 0.90 -> 1.05 GB (docs/benchmarks.md).
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  if (tc.threads > 0) {
    at::set_num_threads(static_cast<int>(tc.threads));
  } else if (env.world_size > 1 && device.is_cpu()) {
    at::set_num_threads(cpu_threads_per_rank(env));  // the node's CPUs shared by its ranks
  }
  auto dist = Distributed::init(env, device, std::chrono::milliseconds(static_cast<int64_t>(tc.timeout_s * 1000)));
  const bool main = dist->is_main();
  const int world = dist->world_size();

  // ---- run folder: never overwrite a run by accident ----
  std::string resume_dir;
  bool rewinding = false;  // an explicit checkpoint of the run's own folder
  if (opts.resume == "auto") {
    resume_dir = latest_checkpoint(opts.out_dir);
  } else if (!opts.resume.empty()) {
    resume_dir = resolve_checkpoint_dir(opts.resume);
    // Another folder's checkpoint continues into a fresh folder, or rewinds its own run; into a folder that holds
    // a run of its own it would overwrite that run's checkpoints past the step and splice its metrics.jsonl.
    const fs::path own = fs::path(opts.out_dir) / "checkpoints";
    std::error_code ec;
    const fs::path from = fs::canonical(resume_dir, ec).parent_path();
    rewinding = fs::exists(own) && fs::equivalent(from, own, ec);
    if (holds_a_run(opts.out_dir) && !rewinding)
      throw Error(opts.out_dir + ": already holds a run of its own (checkpoints or metrics.jsonl), and " +
                  resume_dir + " is not one of its checkpoints; pass --resume auto to continue that run, or a " +
                  "fresh --out for this one");
  } else if (!latest_checkpoint(opts.out_dir).empty()) {
    throw Error(opts.out_dir + ": already holds checkpoints; pass --resume auto to continue it, or a fresh --out");
  }
  const std::string tokenizer = resolve_run_tokenizer(tc);

  // ---- model, optimizer, data ----
  check_training_fits(cfg, device, env.local_world_size, resume_dir);
  at::manual_seed(tc.seed);
  Transformer model(cfg.model);
  model->to(device);
  std::vector<std::pair<std::string, at::Tensor>> named;
  std::vector<at::Tensor> params;
  for (auto& p : model->named_parameters()) {
    named.emplace_back(p.key(), p.value());
    params.push_back(p.value());
  }
  {
    torch::NoGradGuard g;
    dist->broadcast(params, 0);  // every rank starts from rank 0's weights
  }
  AdamW opt(named, {tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay});
  const auto prefix = sink_prefix(cfg.model);
  check_data_ids(cfg.model, tokenizer, tc.data_dir);  // before step 1, not as an index error (or a GPU assert)
  Loader loader({tc.data_dir, "train", tc.batch_size, tc.seq_len, static_cast<uint64_t>(tc.seed), dist->rank(),
                 world, prefix, true});
  // The validation set (train/validation.h): the val split's first eval_sequences windows, the same whatever the
  // batch and the ranks. The last step always evaluates, so a split without one window is an error now (the
  // Loader's own check), not after training.
  const Loader val({tc.data_dir, "val", 1, tc.seq_len, static_cast<uint64_t>(tc.seed), 0, 1, prefix, false});
  const int64_t val_n = validation_size(val, tc.eval_sequences);
  const int64_t tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum * world;
  const int64_t total_steps = tc.steps > 0 ? tc.steps : (tc.tokens + tokens_per_step - 1) / tokens_per_step;

  TrainState state;
  if (!resume_dir.empty()) {
    load_checkpoint(resume_dir, model, opt, state);
    check_resume_data_order(resume_dir, state, cfg, world, loader.windows_per_epoch());
    // A budget below the checkpoint's step would train nothing and yet rewrite the run's config.yaml with it.
    if (state.step > total_steps)
      fail(resume_dir, "is at step " + std::to_string(state.step) + ", past this run's budget of " +
                           std::to_string(total_steps) + " steps (train.steps / train.tokens): nothing to resume; " +
                           "raise the budget, or train into a fresh --out");
    loader.restore(state.cursor);
  }
  if (opts.stop_after >= 0 && opts.stop_after <= state.step)
    throw Error("--stop-after " + std::to_string(opts.stop_after) + ": the run is already at step " +
                std::to_string(state.step) + " (--stop-after counts the run's steps from its start, resumes included)");
  if (opts.profile_count > 0 && opts.profile_first > total_steps && main)
    std::fprintf(stderr, "[train] note: --profile starts at step %lld, past the run's %lld steps: no profile\n",
                 static_cast<long long>(opts.profile_first), static_cast<long long>(total_steps));
  const bool bf16 = tc.precision == "bf16";
  const double flops_per_token = training_flops_per_token(cfg.model, tc.seq_len);
  double peak = 0;
  std::string peak_source;
  if (device.is_cuda()) {
    const auto names = cuda_device_names();
    const std::string name = names.empty() ? "" : names[std::min<size_t>(device.index(), names.size() - 1)];
    peak = gpu_peak_flops(name, bf16 ? "bf16" : "fp32");
    peak_source = peak > 0 ? "data sheet, " + name : "unknown GPU (" + name + "): no MFU";
  } else {
    // against the peak of the precision the matmuls run in: bf16 autocast on a CPU with AVX512_BF16 or AMX runs
    // them several times faster than fp32 (this project's CPU: 960 vs 221 GFLOP/s by `streamsink bench-peak`), so
    // an fp32 peak would overstate MFU
    const auto p = cpu_peak(at::get_num_threads(), tc.precision);
    peak = p.flops;
    peak_source = std::string(p.cached ? "cached" : "measured") + " " + tc.precision + " matmul peak, " + p.cpu;
    // ...and a CPU without AVX512_BF16 or AMX has no fast bf16 matmul at all (an AVX2 EPYC here: 0.8 against 117
    // GFLOP/s in fp32), so bf16 there trains many times slower: say so rather than leave the user to wonder. Only
    // from a cached fp32 figure: the note is not worth a measurement that the other ranks would wait for.
    if (bf16 && main)
      if (const auto f = cached_cpu_peak(at::get_num_threads(), "fp32"); f && f->flops > p.flops)
        std::fprintf(stderr,
                     "[train] note: bf16 matmuls run at %.1f GFLOP/s on this CPU against %.1f in fp32 (`streamsink "
                     "bench-peak`; probably no AVX512_BF16 or AMX): --set train.precision=fp32 would train faster\n",
                     p.flops / 1e9, f->flops / 1e9);
  }

  if (main && tc.steps > 0 && tc.tokens > 0)
    std::fprintf(stderr, "[train] note: train.steps = %lld sets the budget; train.tokens = %lld is not used\n",
                 static_cast<long long>(tc.steps), static_cast<long long>(tc.tokens));
  if (main && tc.warmup_steps >= total_steps)
    std::fprintf(stderr, "[train] note: train.warmup_steps = %lld is not shorter than the run's %lld steps: the "
                 "learning rate warms up for the whole run and never decays\n",
                 static_cast<long long>(tc.warmup_steps), static_cast<long long>(total_steps));
  std::unique_ptr<MetricsLog> metrics;
  if (main) {
    fs::create_directories(opts.out_dir);
    write_file_atomic(opts.out_dir + "/config.yaml", run_config_to_yaml(cfg));
    if (!resume_dir.empty() && (rewinding || opts.resume == "auto"))  // the run's own checkpoint, never another's
      if (const std::string aside = rewind_checkpoints(resume_dir, state.step); !aside.empty())
        std::fprintf(stderr, "[train] resuming %s: the checkpoints past it are an abandoned run's, moved to %s\n",
                     resume_dir.c_str(), aside.c_str());
    if (resume_dir.empty()) write_file_atomic(opts.out_dir + "/metrics.jsonl", "");  // a fresh run starts empty
    metrics = std::make_unique<MetricsLog>(opts.out_dir + "/metrics.jsonl", resume_dir.empty() ? -1 : state.step);
    std::printf("# resolved config (%s)\n%s", cfg.source.c_str(), run_config_to_yaml(cfg).c_str());
    std::printf("# run: %s | device %s | %d rank(s) via %s (%s) | %d threads | %s\n", opts.out_dir.c_str(),
                device.str().c_str(), world, env.launcher.c_str(), dist->backend_name().c_str(),
                at::get_num_threads(), bf16 ? "bf16 autocast" : "fp32");
    std::printf("# resolved: tokenizer %s | sink metrics past W = %lld | seq_len %lld\n",
                tokenizer.empty() ? "none (checkpoints carry no tokenizer)" : tokenizer.c_str(),
                static_cast<long long>(cfg.sink_window()), static_cast<long long>(tc.seq_len));
    {  // which parameters decay, as the issue asks the run to state (train/adamw.h decides by name)
      int64_t decayed = 0, kept = 0;
      std::vector<std::string> kinds;  // of the parameters that do not decay, without their layer
      for (const auto& [name, p] : named) {
        if (AdamW::decays(name, p)) {
          decayed += p.numel();
        } else {
          kept += p.numel();
          const auto dot = name.rfind('.', name.rfind('.') - 1);  // "layers.0.attn_norm.weight" -> "attn_norm.weight"
          const std::string kind = dot == std::string::npos ? name : name.substr(dot + 1);
          if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
        }
      }
      std::string kept_names;
      for (const auto& k : kinds) kept_names += (kept_names.empty() ? "" : ", ") + k;
      std::printf("# optimizer: AdamW betas (%g, %g), eps %g; weight decay %g on %lld parameters (matmul weights, "
                  "embeddings), none on %lld (%s)\n",
                  tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay, static_cast<long long>(decayed),
                  static_cast<long long>(kept), kept_names.c_str());
    }
    std::printf("# model: %.2fM parameters, %.3g training FLOPs/token; peak %.3g FLOP/s (%s)\n",
                model->num_parameters() / 1e6, flops_per_token, peak, peak_source.c_str());
    std::printf("# data: %lld windows/epoch of %lld tokens; %lld steps x %lld tokens/step = %.3gM tokens%s\n",
                static_cast<long long>(loader.windows_per_epoch()), static_cast<long long>(tc.seq_len),
                static_cast<long long>(total_steps), static_cast<long long>(tokens_per_step),
                total_steps * tokens_per_step / 1e6,
                resume_dir.empty() ? "" : (", resuming " + resume_dir + " at step " + std::to_string(state.step)).c_str());
    std::printf("# validation: the val split's first %lld windows%s; sink metrics on the first %lld\n",
                static_cast<long long>(val_n),
                val_n < tc.eval_sequences ? (" (all it has; train.eval_sequences is " +
                                             std::to_string(tc.eval_sequences) + ")").c_str()
                                          : "",
                static_cast<long long>(std::min(tc.sink_sequences, val_n)));
    std::fflush(stdout);
  }

  auto save = [&]() {
    state.cursor = loader.cursor();
    state.world_size = world;
    state.train_windows = loader.windows_per_epoch();
    if (main) {
      const auto dir = save_checkpoint(opts.out_dir, cfg, model, opt, state, tokenizer, tc.keep_checkpoints);
      std::fprintf(stderr, "\n[train] checkpoint %s\n", dir.c_str());
    }
    dist->barrier();
  };

  auto evaluate = [&]() {
    torch::NoGradGuard g;
    model->eval();
    const double val_loss =
        dist->allreduce_sum(validation_loss_sum(model, val, val_n, tc.batch_size, dist->rank(), world, device, bf16)) /
        static_cast<double>(val_n);
    nlohmann::json rec = {
        {"step", state.step}, {"val_loss", val_loss}, {"val_ppl", std::exp(val_loss)}, {"val_sequences", val_n}};
    if (main) {  // on the set's first windows, whatever the rank count
      std::vector<int64_t> first(static_cast<size_t>(std::min(tc.sink_sequences, val_n)));
      std::iota(first.begin(), first.end(), int64_t{0});
      const auto sm = measure_sinks(model, window_batches(val, first, tc.batch_size), cfg.model.prefix_tokens(),
                                    cfg.sink_window());
      rec["sink_first_share"] = sm.first_share;
      if (!sm.extra_share.empty()) rec["sink_extra_share"] = sm.extra_share;
      rec["window_loss"] = sm.window_loss;
      rec["sink4_loss"] = sm.sink4_loss;
      rec["sink_gap_se"] = sm.sequences > 1 ? nlohmann::json(sm.gap_se) : nlohmann::json();  // null: no spread
      rec["sink_window"] = sm.window;
      rec["sink_sequences"] = sm.sequences;
      rec["sink_scored_tokens"] = sm.scored_tokens;
      std::string shares;
      for (double s : sm.first_share) shares += (shares.empty() ? "" : " ") + std::to_string(s).substr(0, 5);
      std::fprintf(stderr, "\n[eval] step %lld  val_loss %.4f  ppl %.2f | first-position attention per layer: %s | "
                   "loss past W=%lld: window %.4f, 4 sinks %.4f (gap %+.4f ± %.4f, %lld tokens)\n",
                   static_cast<long long>(state.step), val_loss, std::exp(val_loss), shares.c_str(),
                   static_cast<long long>(sm.window), sm.window_loss, sm.sink4_loss, sm.window_loss - sm.sink4_loss,
                   sm.gap_se, static_cast<long long>(sm.scored_tokens));
    }
    if (main) metrics->write(rec);
    model->train();
  };

  // The weights after an update, screened (train/weight_check.h: their 2-norm, finite when they all are), left on the
  // device and read with the next step's host sync of its loss and gradient norm, or before this step evaluates or
  // writes a checkpoint, so that the check costs no sync of its own. Undefined: nothing to read (no update since).
  at::Tensor weights_screen;
  struct { int64_t step = 0; double lr = 0, grad_norm = 0; } update;  // the update weights_screen follows
  // Non-finite weights after an update stop the run under either nan_policy: a skip skips an update not made yet, and
  // cannot undo one; every later step would be non-finite too, and no checkpoint of them may be written or called good.
  const auto non_finite_weights = [&]() {
    if (main)
      metrics->write({{"step", update.step}, {"event", "non_finite_weights"}, {"lr", update.lr},
                      {"grad_norm", update.grad_norm}, {"policy", tc.nan_policy}});
    const std::string last = main ? last_finite_checkpoint(opts.out_dir) : "";  // rank 0 reads the weights files
    const auto bad = non_finite_tensors(named);
    return Error("step " + std::to_string(update.step) + ": the optimizer update (lr " + short_number(update.lr) +
                 ", gradient norm " + short_number(update.grad_norm) + ") made the weights non-finite (inf or NaN " +
                 (bad.empty() ? "on another rank" : "in " + quoted_list(bad)) + "): stopping, whatever " +
                 "train.nan_policy (a skip cannot undo an update). Last checkpoint with finite weights: " +
                 (!main         ? std::string("rank 0 names it")
                  : last.empty() ? std::string("none")
                                 : last + " (resume from it with --resume " + last + " and a lower train.lr)"));
  };
  // A screen that did not come out finite (on any rank): the exact test, which the ranks agree on as on the loss.
  const auto weights_non_finite = [&]() {
    return dist->allreduce_sum(std::vector<double>{non_finite_tensors(named).empty() ? 0.0 : 1.0})[0] > 0;
  };
  // Reads weights_screen now (a host sync: only where the step syncs anyway, for an evaluation or a checkpoint).
  const auto check_weights_now = [&]() {
    if (!weights_screen.defined()) return;
    const double w = weights_screen.item<double>();
    weights_screen = at::Tensor();
    if (dist->allreduce_sum(std::vector<double>{std::isfinite(w) ? 0.0 : 1.0})[0] > 0 && weights_non_finite())
      throw non_finite_weights();
  };

  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  model->train();
  const bool tty = isatty(fileno(stderr));
  const auto loop_start = std::chrono::steady_clock::now();
  const double elapsed_before = state.elapsed_s;  // earlier invocations' loop time (a resumed run goes on from it)
  double window_time = 0;
  int64_t window_tokens = 0;
  int exit_code = 0;
  bool warned_peak = false;

  StepProfiler profiler(opts.profile_first, main ? opts.profile_count : 0, opts.out_dir, device);  // rank 0 only
  while (state.step < total_steps) {
    fault::maybe_exit(state.step + 1, dist->rank());  // test-only hook (common/fault_injection.h)
    profiler.before_step(state.step + 1);
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = learning_rate(tc, state.step, total_steps);
    at::Tensor loss_sum = at::zeros({}, at::TensorOptions().device(device));
    for (int64_t micro = 0; micro < tc.grad_accum; ++micro) {
      auto b = loader.next();
      auto x = b.inputs.to(device, /*non_blocking=*/true), y = b.targets.to(device, /*non_blocking=*/true);
      at::Tensor loss;
      {
        AutocastGuard ac(bf16, device.type());
        loss = model->loss(model->forward(x), y) / static_cast<double>(tc.grad_accum);
      }
      loss.backward();
      loss_sum += loss.detach();
    }
    std::vector<at::Tensor> grads;
    for (auto& p : params) grads.push_back(p.mutable_grad());
    for (const auto where : {fault::NanIn::kGrad, fault::NanIn::kLoss})  // test-only hook: poison the gradients or loss
      if (fault::nan_at(state.step + 1, dist->rank(), where))
        (where == fault::NanIn::kLoss ? loss_sum : grads.front()).fill_(fault::faults().nan_value);
    dist->allreduce_mean(grads);
    at::Tensor norm = at::norm(at::stack(at::_foreach_norm(grads)));
    // One host sync per step: the loss and the gradient norm together (the finite check needs them anyway), and with
    // them the screen of the weights the previous update left.
    auto host = at::stack({loss_sum.to(at::kFloat), norm.to(at::kFloat),
                           weights_screen.defined() ? weights_screen : at::zeros({}, norm.options().dtype(at::kFloat))})
                    .to(at::kCPU);
    weights_screen = at::Tensor();
    double loss_v = host[0].item<double>();
    const double norm_v = host[1].item<double>();
    const double weights_v = host[2].item<double>();
    // Whether to stop after this step (a signal, --stop-after, train.max_seconds), agreed in the same sum as the loss:
    // a signal or the clock can reach the ranks at different steps, and a rank that stopped alone would leave the
    // others waiting in a collective until the timeout. A signal that arrives later in the step stops the next one.
    const char* stop_why = g_stop_signal != 0 ? (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM")
                           : opts.stop_after >= 0 && state.step + 1 >= opts.stop_after ? "--stop-after"
                           : tc.max_seconds > 0 && seconds_since(loop_start) >= tc.max_seconds ? kBudgetStop
                           : fault::stop_at(state.step + 1, dist->rank()) ? "STREAMSINK_FAULT_STOP_AT_STEP"  // test-only
                                                                           : nullptr;
    // The gradient norm's finiteness rides along too, so every rank takes the same skip/stop decision by
    // construction (the all-reduced gradients are the same on every rank, but nothing else has to rely on that).
    // A stop at the time budget is the run's planned end, so it evaluates (the run's last metrics then hold the
    // model it leaves); a signal wants out at once, and a stop that any rank asked for otherwise does not evaluate.
    const bool budget_stop = stop_why == kBudgetStop;
    const auto sums = dist->allreduce_sum(std::vector<double>{loss_v, stop_why ? 1.0 : 0.0,
                                                              std::isfinite(norm_v) ? 0.0 : 1.0, budget_stop ? 1.0 : 0.0,
                                                              std::isfinite(weights_v) ? 0.0 : 1.0});
    // the previous step's update, before this step decides anything
    if (sums[4] > 0 && weights_non_finite()) throw non_finite_weights();
    loss_v = sums[0] / world;
    const bool stop_requested = sums[1] > 0;
    const bool stop_evaluates = stop_requested && sums[3] == sums[1];  // every rank that asked, asked for the budget
    if (stop_requested && !stop_why)
      stop_why = stop_evaluates ? "train.max_seconds, on another rank" : "a stop request on another rank";
    const bool norm_finite = sums[2] == 0;
    const bool skipped = !std::isfinite(loss_v) || !norm_finite;  // nan_policy decides: skip or stop
    if (skipped) {
      opt.zero_grad();
      if (main)
        metrics->write({{"step", state.step + 1}, {"event", "non_finite"}, {"loss", std::isfinite(loss_v) ? loss_v : -1},
                        {"policy", tc.nan_policy}});
      if (tc.nan_policy == "stop") {
        const auto last = last_finite_checkpoint(opts.out_dir);
        std::fprintf(stderr, "\n[train] non-finite %s at step %lld: stopping (nan_policy=stop); last good checkpoint: %s\n",
                     std::isfinite(loss_v) ? "gradient" : "loss", static_cast<long long>(state.step + 1),
                     last.empty() ? "none" : last.c_str());
        exit_code = 3;
        break;
      }
      ++state.skipped_steps;
      std::fprintf(stderr, "\n[train] non-finite loss/gradient at step %lld: step skipped (%lld so far)\n",
                   static_cast<long long>(state.step + 1), static_cast<long long>(state.skipped_steps));
      if (state.skipped_steps > tc.max_skipped_steps) {
        std::fprintf(stderr, "[train] more than %lld skipped steps: stopping\n", static_cast<long long>(tc.max_skipped_steps));
        exit_code = 3;
        break;
      }
      // A skipped step still counts, and goes on below to its evaluation, checkpoint and stop (a skipped last step
      // must still end the run with them); it only has no loss to log.
    } else {
      if (tc.grad_clip > 0 && norm_v > tc.grad_clip) at::_foreach_mul_(grads, tc.grad_clip / (norm_v + 1e-6));
      opt.step(lr);
      opt.zero_grad();
      if (fault::nan_at(state.step + 1, dist->rank(), fault::NanIn::kWeights)) {  // test-only hook: a blown-up update
        at::NoGradGuard g;
        params.front().fill_(fault::faults().nan_value);
      }
      weights_screen = weights_norm(params);
      update = {state.step + 1, lr, norm_v};
    }
    ++state.step;
    profiler.after_step(state.step);
    state.tokens_seen += tokens_per_step;

    const double dt = seconds_since(t0);
    window_time += dt;
    window_tokens += tokens_per_step;
    const double tok_s = window_tokens / window_time;
    const double mfu = peak > 0 ? flops_per_token * tok_s / (peak * world) : 0;
    state.elapsed_s = elapsed_before + seconds_since(loop_start);
    const double left = (total_steps - state.step) * (window_time / std::max<int64_t>(1, window_tokens / tokens_per_step));
    // A run that stops early logs its last step too, so metrics.jsonl always ends where the checkpoint is.
    const bool log_now =
        !skipped && (state.step % tc.log_interval == 0 || state.step == total_steps || stop_requested);
    if (main && log_now && mfu > 1.0 && !warned_peak) {
      std::fprintf(stderr, "\n[train] MFU above 100%%: the peak %.3g FLOP/s (%s) is too low, likely measured while the "
                   "machine was busy; `streamsink bench-peak` measures it again\n", peak, peak_source.c_str());
      warned_peak = true;
    }
    if (main && !skipped && (tty || log_now)) {
      std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s  MFU %.1f%%  left %s%s",
                   tty ? "\r" : "", static_cast<long long>(state.step), static_cast<long long>(total_steps), loss_v,
                   lr, norm_v, tok_s, 100 * mfu, human_time(left).c_str(), tty ? "\033[K" : "\n");
    }
    if (main && log_now) {
      metrics->write({{"step", state.step}, {"loss", loss_v}, {"lr", lr}, {"grad_norm", norm_v},
                      {"tokens_seen", state.tokens_seen}, {"tok_s", tok_s}, {"mfu", mfu}, {"elapsed_s", state.elapsed_s}});
      window_time = 0;
      window_tokens = 0;
    }
    const bool last = state.step == total_steps;
    const bool evaluates = (tc.eval_interval > 0 && state.step % tc.eval_interval == 0) || last || stop_evaluates;
    const bool saves = (tc.checkpoint_interval > 0 && state.step % tc.checkpoint_interval == 0) || last || stop_requested;
    if (evaluates || saves) check_weights_now();
    if (evaluates) evaluate();
    if (saves) save();
    if (stop_requested && !last) {
      if (main)
        std::fprintf(stderr, "[train] stopped at step %lld (%s) after writing a checkpoint; resume with --resume auto\n",
                     static_cast<long long>(state.step), stop_why);
      // A process of its own stopped by a signal exits as the shell expects of one (128 + the signal), so that
      // `train ... && eval-stream ...` does not go on with a half-trained model; under a launcher the ranks exit 0
      // and the launcher reports the signal (a non-zero rank would read as a failed one).
      if (g_stop_signal != 0 && env.launcher == "single") exit_code = 128 + g_stop_signal;
      break;
    }
  }
  profiler.finish();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (main && exit_code == 0 && state.step == total_steps)
    std::fprintf(stderr, "[train] done: %lld steps, %.3gM tokens, run folder %s\n", static_cast<long long>(state.step),
                 state.tokens_seen / 1e6, opts.out_dir.c_str());
  return exit_code;
}

}  // namespace streamsink
