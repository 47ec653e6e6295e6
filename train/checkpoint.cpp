#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <fcntl.h>  // AT_FDCWD
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/fault_injection.h"
#include "common/file_util.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "train/weight_check.h"

namespace streamsink {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%07lld", static_cast<long long>(step));
  return buf;
}

// The step of a checkpoint folder "step_0000100" (by number: past step 9,999,999 the names grow a digit).
int64_t step_of(const fs::path& dir) { return std::strtoll(dir.filename().string().c_str() + 5, nullptr, 10); }

void fsync_dir(const fs::path& dir) {
  FILE* f = std::fopen(dir.c_str(), "r");
  if (f) {
    fsync(fileno(f));
    std::fclose(f);
  }
}

}  // namespace

std::string latest_checkpoint(const std::string& run_dir) {
  const auto latest = fs::path(run_dir) / "checkpoints" / "latest";
  if (!fs::exists(latest)) return "";
  return resolve_checkpoint_dir(run_dir);
}

std::string rewind_checkpoints(const std::string& ckpt_dir, int64_t step) {
  const fs::path dir = fs::canonical(ckpt_dir), root = dir.parent_path();
  write_file_atomic((root / "latest").string(), dir.filename().string() + "\n");
  fsync_dir(root);  // `latest` names the rewind point before anything moves
  std::vector<fs::path> later;
  for (const auto& e : fs::directory_iterator(root)) {
    const auto n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && n.find('.') == std::string::npos && step_of(e.path()) > step)
      later.push_back(e.path());
  }
  if (later.empty()) return "";
  const std::string base = "abandoned_after_" + step_name(step);
  fs::path aside = root / base;
  for (int k = 2; fs::exists(aside); ++k) aside = root / (base + "." + std::to_string(k));
  fs::create_directories(aside);
  for (const auto& p : later) fs::rename(p, aside / p.filename());
  fsync_dir(root);
  return aside.string();
}

std::string last_finite_checkpoint(const std::string& run_dir) {
  const std::string latest = latest_checkpoint(run_dir);
  if (latest.empty()) return "";
  // `latest`, else the complete checkpoints before it, newest first (a folder past it would be from before a rewind)
  std::vector<fs::path> candidates;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(latest).parent_path(), ec)) {
    const auto n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && n.find('.') == std::string::npos && step_of(e.path()) <= step_of(latest))
      candidates.push_back(e.path());
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const fs::path& a, const fs::path& b) { return step_of(a) > step_of(b); });
  for (const auto& dir : candidates) {
    try {
      const TensorMap w = load_safetensors((dir / "model.safetensors").string());
      const std::vector<std::pair<std::string, at::Tensor>> named(w.begin(), w.end());
      if (non_finite_tensors(named).empty()) return dir.string();
    } catch (const Error&) {  // a file that does not load vouches for nothing
    }
  }
  return "";
}

namespace {

// The generators a resumed run must continue: the CPU's, and the training GPU's when the model lives on one.
// Every rank draws the same numbers (same seed, same initialisation, nothing random after it), so rank 0's states
// are every rank's.
at::Generator cuda_generator_of(const Transformer& model) {
  const auto dev = model->parameters().front().device();
  return dev.is_cuda() ? at::globalContext().defaultGenerator(dev) : at::Generator();
}

void save_rng_states(TensorMap& o, const Transformer& model) {
  o["rng.cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  if (auto gen = cuda_generator_of(model); gen.defined()) o["rng.cuda"] = gen.get_state();
}

// Restores the states found and removes them from `o` (what is left is the optimizer's). A CUDA state is restored
// only when the model is on a GPU: a GPU run resumed on a CPU has no CUDA generator to continue. A state that is not
// one (a corrupt or foreign file) is an error naming `where`.
void restore_rng_states(TensorMap& o, const Transformer& model, const std::string& where) {
  for (const char* key : {"rng.cpu", "rng.cuda"}) {
    auto it = o.find(key);
    if (it == o.end()) continue;
    at::Generator gen = std::string(key) == "rng.cpu" ? at::detail::getDefaultCPUGenerator() : cuda_generator_of(model);
    try {
      if (gen.defined()) gen.set_state(it->second);
    } catch (const c10::Error& e) {
      fail(where, std::string(key) + " is not a generator state (" + e.msg() + ")");
    }
    o.erase(it);
  }
}

}  // namespace

// Puts the complete checkpoint folder `tmp` at `final_dir`. Rewriting a step (a run resumed from an earlier
// checkpoint into the same folder reaches a step it had reached before) swaps the two folders in one atomic
// renameat2(RENAME_EXCHANGE), so `final_dir`, which `latest` may name, holds a complete checkpoint at every instant;
// the old one then goes from the tmp name (swept by pruning if its removal fails or a crash comes first).
// Where the filesystem has no RENAME_EXCHANGE (EINVAL/ENOSYS/EOPNOTSUPP: NFS, some FUSE), or `try_exchange` is
// false (tests), the old folder moves aside to `<final>.old-PID` first: a window of two renames. If the second
// fails, the old folder goes back; a crash inside the window leaves the old checkpoint under that name, which
// pruning keeps (it is the only copy) and resume names in its error.
void replace_checkpoint_dir(const fs::path& tmp, const fs::path& final_dir, bool try_exchange) {
  if (!fs::exists(final_dir)) {
    fs::rename(tmp, final_dir);
    return;
  }
  std::error_code ec;
  if (try_exchange) {
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
      fs::remove_all(tmp, ec);  // the old checkpoint, now under the tmp name; the new one is in place either way
      return;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
      throw Error("renameat2(" + tmp.string() + ", " + final_dir.string() + ", RENAME_EXCHANGE): " +
                  std::strerror(errno));
  }
  const fs::path aside = final_dir.string() + ".old-" + std::to_string(::getpid());
  fs::remove_all(aside, ec);
  fs::rename(final_dir, aside);
  try {
    fs::rename(tmp, final_dir);
  } catch (...) {
    fs::rename(aside, final_dir, ec);
    throw;
  }
  fs::remove_all(aside, ec);
}

std::string save_checkpoint(const std::string& run_dir, const RunConfig& cfg, Transformer& model, const AdamW& opt,
                            const TrainState& state, const std::string& tokenizer_path, int64_t keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  const std::string name = step_name(state.step);
  const fs::path final_dir = root / name;
  const fs::path tmp = root / (name + ".tmp-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    // Weights with an inf or a NaN are no checkpoint to go back to: refused before anything is written, so `latest`
    // only ever names finite ones (the trainer stops before it gets here; this is the last line of defence).
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    if (const auto bad = non_finite_tensors(named); !bad.empty())
      fail(final_dir.string(), "refusing to write weights that are not finite: inf or NaN in " + quoted_list(bad) +
                                   " (" + std::to_string(bad.size()) + " of " + std::to_string(named.size()) +
                                   " tensors)");
    write_file_atomic((tmp / "config.yaml").string(), run_config_to_yaml(cfg));
    fault::checkpoint_pause();  // test-only hooks (common/fault_injection.h); no-ops unless their env vars are set
    save_model_weights(tmp.string(), model);
    fault::checkpoint_pause();
    fault::maybe_fail_checkpoint_write(state.step, (tmp / "optimizer.safetensors").string());
    TensorMap o = opt.state();
    save_rng_states(o, model);
    save_safetensors((tmp / "optimizer.safetensors").string(), o);
    fault::checkpoint_pause();
    nlohmann::json j = {{"step", state.step},
                        {"tokens_seen", state.tokens_seen},
                        {"skipped_steps", state.skipped_steps},
                        {"world_size", state.world_size},
                        {"elapsed_s", state.elapsed_s},
                        {"train_windows", state.train_windows},
                        {"cursor", {{"epoch", state.cursor.epoch}, {"step_in_epoch", state.cursor.step_in_epoch}}}};
    write_file_atomic((tmp / "state.json").string(), j.dump(2) + "\n");
    fault::checkpoint_pause();
    if (!tokenizer_path.empty() && fs::exists(tokenizer_path))
      write_file_atomic((tmp / "tokenizer.model").string(), read_file(tokenizer_path));
    fsync_dir(tmp);
    fault::checkpoint_pause();
    replace_checkpoint_dir(tmp, final_dir);
    fsync_dir(root);
    fault::checkpoint_pause();
    write_file_atomic((root / "latest").string(), name + "\n");
    fsync_dir(root);  // the new `latest` is on disk before pruning removes what the old one named
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);  // the previous checkpoint and `latest` are untouched
    const std::string prev = fs::exists(root / "latest") ? read_file((root / "latest").string()) : "none\n";
    throw Error("checkpoint of step " + std::to_string(state.step) + " failed: " + e.what() +
                "; the previous checkpoint and " + (root / "latest").string() + " are unchanged (latest: " +
                prev.substr(0, prev.find('\n')) + ")");
  }
  // Prune: keep the newest `keep` complete checkpoints; leftovers of crashed writes (*.tmp-*) go too, and so does a
  // step's old copy moved aside by a rewrite (*.old-*) once that step is complete again (else it is the only copy).
  std::vector<fs::path> complete;
  for (const auto& e : fs::directory_iterator(root)) {
    const auto n = e.path().filename().string();
    if (n.rfind("step_", 0) != 0) continue;
    if (n.find(".tmp-") != std::string::npos) {
      fs::remove_all(e.path(), ec);
      continue;
    }
    if (const auto old = n.find(".old-"); old != std::string::npos) {
      if (fs::exists(root / n.substr(0, old) / "model.safetensors")) fs::remove_all(e.path(), ec);
      continue;
    }
    complete.push_back(e.path());
  }
  // by step, not by name: past step 9,999,999 the names grow a digit and would sort before the older ones
  std::sort(complete.begin(), complete.end(),
            [&](const fs::path& a, const fs::path& b) { return step_of(a) < step_of(b); });
  for (size_t i = 0; i + keep < complete.size(); ++i)
    if (complete[i] != final_dir) fs::remove_all(complete[i], ec);
  return final_dir.string();
}

void load_checkpoint(const std::string& ckpt_dir, Transformer& model, AdamW& opt, TrainState& state) {
  load_model_weights(ckpt_dir, model);
  const std::string opt_path = ckpt_dir + "/optimizer.safetensors";
  auto o = load_safetensors(opt_path);
  restore_rng_states(o, model, opt_path);
  opt.load_state(o, opt_path);
  const std::string state_path = ckpt_dir + "/state.json";
  try {
    auto j = nlohmann::json::parse(read_file(state_path));
    state.step = j.at("step").get<int64_t>();
    state.tokens_seen = j.at("tokens_seen").get<int64_t>();
    state.skipped_steps = j.value("skipped_steps", int64_t{0});
    state.world_size = j.value("world_size", int64_t{0});
    state.elapsed_s = j.value("elapsed_s", 0.0);  // 0 in checkpoints from before session 8
    state.train_windows = j.value("train_windows", int64_t{0});  // 0 in checkpoints from before session 9
    state.cursor.epoch = j.at("cursor").at("epoch").get<int64_t>();
    state.cursor.step_in_epoch = j.at("cursor").at("step_in_epoch").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(state_path, std::string("not a valid training state: ") + e.what());
  }
}

void check_resume_data_order(const std::string& ckpt_dir, const TrainState& state, const RunConfig& cfg, int world,
                             int64_t train_windows) {
  const RunConfig was = read_run_config(ckpt_dir + "/config.yaml");  // not validated: an older run's config reads too
  std::string diffs;
  const auto differ = [&](const std::string& what, const std::string& before, const std::string& now) {
    if (before != now) diffs += "\n  " + what + ": " + before + " in the checkpoint, " + now + " now";
  };
  YAML::Node model_was, model_now;
  model_config_to_yaml(was.model, model_was);
  model_config_to_yaml(cfg.model, model_now);
  const bool token_sink = was.model.sink == SinkKind::kToken || cfg.model.sink == SinkKind::kToken;
  std::string extended;  // changes that continue the same network: a longer context, another RoPE base
  for (const auto& kv : model_now) {
    const std::string key = kv.first.Scalar(), before = model_was[key].Scalar(), now = kv.second.Scalar();
    if (before == now || key == "init_std") continue;  // the initialisation no longer matters
    if (key == "multiple_of" && was.model.hidden_dim > 0 && cfg.model.hidden_dim > 0) continue;  // unused
    if ((key == "sink_tokens" || key == "sink_token_id") && !token_sink) continue;             // unused
    if (key == "context_length" || key == "rope_theta") {
      extended += " model." + key + " " + before + " -> " + now + ";";
      continue;
    }
    differ("model." + key, before, now);
  }
  if (!diffs.empty())
    fail(ckpt_dir, "cannot resume: another model than the checkpoint's:" + diffs +
                       "\n  resume with the checkpoint's model, or start a fresh run in another folder");
  if (!extended.empty())
    std::fprintf(stderr, "[train] note: resuming %s with%s the same weights, continued (a context extension)\n",
                 ckpt_dir.c_str(), extended.c_str());
  if (state.train_windows > 0)
    differ("the train split's windows per epoch (train.data_dir: other data?)", std::to_string(state.train_windows),
           std::to_string(train_windows));
  differ("train.seq_len", std::to_string(was.seq_len()), std::to_string(cfg.seq_len()));
  differ("train.seed", std::to_string(was.train.seed), std::to_string(cfg.train.seed));
  if (state.world_size > 0)
    differ("global batch (train.batch_size x ranks)",
           std::to_string(was.train.batch_size * state.world_size) + " (" + std::to_string(was.train.batch_size) +
               " x " + std::to_string(state.world_size) + ")",
           std::to_string(cfg.train.batch_size * world) + " (" + std::to_string(cfg.train.batch_size) + " x " +
               std::to_string(world) + ")");
  else
    differ("train.batch_size", std::to_string(was.train.batch_size), std::to_string(cfg.train.batch_size));
  if (!diffs.empty())
    fail(ckpt_dir, "cannot resume: the data would not continue where it stopped (its cursor counts global batches of "
                   "the checkpoint's windows and shuffle):" + diffs +
                   "\n  resume with the checkpoint's values, or start a fresh run in another folder");
}

}  // namespace streamsink
