#include "train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "common/config_fields.h"
#include "common/error.h"

namespace streamsink {

namespace {

const std::vector<Field<TrainConfig>>& train_fields() {
  using C = TrainConfig;
  static const std::vector<Field<C>> f = {
      string_field("data_dir", &C::data_dir),
      string_field("tokenizer", &C::tokenizer),
      int_field("batch_size", &C::batch_size),
      int_field("grad_accum", &C::grad_accum),
      int_field("seq_len", &C::seq_len),
      int_field("steps", &C::steps),
      int_field("tokens", &C::tokens),
      double_field("lr", &C::lr),
      int_field("warmup_steps", &C::warmup_steps),
      string_field("schedule", &C::schedule),
      double_field("min_lr", &C::min_lr),
      double_field("decay_fraction", &C::decay_fraction),
      double_field("weight_decay", &C::weight_decay),
      double_field("beta1", &C::beta1),
      double_field("beta2", &C::beta2),
      double_field("adam_eps", &C::adam_eps),
      double_field("grad_clip", &C::grad_clip),
      string_field("precision", &C::precision),
      int_field("eval_interval", &C::eval_interval),
      int_field("eval_sequences", &C::eval_sequences),
      int_field("sink_sequences", &C::sink_sequences),
      int_field("sink_window", &C::sink_window),
      int_field("checkpoint_interval", &C::checkpoint_interval),
      int_field("keep_checkpoints", &C::keep_checkpoints),
      int_field("log_interval", &C::log_interval),
      int_field("seed", &C::seed),
      string_field("device", &C::device),
      int_field("threads", &C::threads),
      string_field("nan_policy", &C::nan_policy),
      int_field("max_skipped_steps", &C::max_skipped_steps),
      double_field("timeout_s", &C::timeout_s),
      double_field("max_seconds", &C::max_seconds),
  };
  return f;
}

}  // namespace

void TrainConfig::validate() const {
  auto bad = [](const std::string& key, const std::string& why) { throw Error("train." + key + ": " + why); };
  if (data_dir.empty()) bad("data_dir", "is required (a folder made by `streamsink data prepare`)");
  if (batch_size <= 0) bad("batch_size", "must be positive");
  if (grad_accum <= 0) bad("grad_accum", "must be positive");
  if (seq_len < 0) bad("seq_len", "must be >= 0 (0 = model.context_length)");
  if (steps < 0 || tokens < 0) bad("steps", "steps and tokens must be >= 0");
  if (steps == 0 && tokens == 0) bad("steps", "set a budget: train.steps or train.tokens");
  if (!(lr > 0)) bad("lr", "must be positive");
  if (min_lr < 0 || min_lr > lr) bad("min_lr", "must be in [0, lr]");
  if (warmup_steps < 0) bad("warmup_steps", "must be >= 0");
  if (schedule != "cosine" && schedule != "linear" && schedule != "wsd" && schedule != "constant")
    bad("schedule", "'" + schedule + "': expected cosine, linear, wsd or constant");
  if (!(decay_fraction > 0 && decay_fraction <= 1)) bad("decay_fraction", "must be in (0, 1]");
  if (weight_decay < 0) bad("weight_decay", "must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) bad("beta1", "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) bad("beta2", "must be in [0, 1)");
  if (!(adam_eps > 0)) bad("adam_eps", "must be positive");
  if (grad_clip < 0) bad("grad_clip", "must be >= 0 (0 = off)");
  if (precision != "fp32" && precision != "bf16") bad("precision", "'" + precision + "': expected fp32 or bf16");
  if (eval_interval < 0) bad("eval_interval", "must be >= 0 (0 = only at the last step)");
  if (retired_eval_batches >= 0)
    bad("eval_batches", "was replaced by train.eval_sequences, the number of validation windows, which gives the same "
                        "set (and val_loss) whatever the batch size and the rank count: remove eval_batches (from the "
                        "file, or the --set) and set eval_sequences: " + std::to_string(retired_eval_batches * batch_size) +
                            " for the set eval_batches: " + std::to_string(retired_eval_batches) + " gave one rank (" +
                            std::to_string(retired_eval_batches) + " x batch_size " + std::to_string(batch_size) +
                            "; times the rank count for a run of several)");
  if (eval_sequences < 1) bad("eval_sequences", "must be >= 1 (every run evaluates at its last step)");
  if (sink_sequences < 1) bad("sink_sequences", "must be >= 1");
  if (sink_window < 0) bad("sink_window", "must be >= 0 (0 = seq_len / 2)");
  if (checkpoint_interval < 0) bad("checkpoint_interval", "must be >= 0");
  if (keep_checkpoints < 1) bad("keep_checkpoints", "must be >= 1");
  if (log_interval <= 0) bad("log_interval", "must be positive");
  if (threads < 0 || threads > 4096) bad("threads", "must be in [0, 4096] (0 = torch's default)");
  if (nan_policy != "skip" && nan_policy != "stop") bad("nan_policy", "'" + nan_policy + "': expected skip or stop");
  if (max_skipped_steps < 0) bad("max_skipped_steps", "must be >= 0");
  if (!(timeout_s > 0 && timeout_s <= 1e6)) bad("timeout_s", "must be in (0, 1e6] seconds");
  if (max_seconds < 0) bad("max_seconds", "must be >= 0");
}

void apply_override(RunConfig& c, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) throw Error("--set '" + assignment + "': expected section.key=value");
  const std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  if (key.rfind("model.", 0) == 0) {
    set_model_config_key(c.model, key.substr(6), value);
  } else if (key == "train.eval_batches") {  // retired: validate() explains, as for the key in a file
    c.train.retired_eval_batches = parse_int(value, "--set " + key);
  } else if (key.rfind("train.", 0) == 0) {
    if (!set_field(train_fields(), c.train, key.substr(6), value, "--set " + key))
      throw Error("--set: unknown key '" + key + "'");
  } else {
    throw Error("--set '" + assignment + "': keys are addressed by section: model.KEY or train.KEY");
  }
}

namespace {

// The train: section, with the retired key eval_batches set aside for validate() to explain.
void apply_train_section(TrainConfig& t, const YAML::Node& node, const std::string& where) {
  if (node.IsMap() && node["eval_batches"]) {
    YAML::Node rest = YAML::Clone(node);
    const auto v = rest["eval_batches"];
    if (!v.IsScalar()) fail(where, "eval_batches: expected a number");
    t.retired_eval_batches = parse_int(v.Scalar(), where + ": eval_batches");
    rest.remove("eval_batches");
    apply_fields(train_fields(), t, rest, where);
  } else {
    apply_fields(train_fields(), t, node, where);
  }
}

// Applies FILE's sections onto `c`, after its `base:` file (a path relative to FILE) when it names one.
void apply_config_file(RunConfig& c, const std::string& path, int depth) {
  if (depth > 8) fail(path, "`base:` chain deeper than 8 files (a cycle?)");
  YAML::Node root;
  if (std::filesystem::is_directory(path)) fail(path, "is a folder; give the config's .yaml file");
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail(path, "cannot open (does it exist?)");
  } catch (const YAML::Exception& e) {
    fail(path, std::string("not valid YAML: ") + e.what());
  }
  if (!root || root.IsNull()) return;
  if (!root.IsMap()) fail(path, "expected a map with model: and train: sections");
  if (root["base"]) {
    if (!root["base"].IsScalar()) fail(path, "base: expected a file name");
    const auto base = std::filesystem::path(path).parent_path() / root["base"].Scalar();
    apply_config_file(c, base.string(), depth + 1);
  }
  for (const auto& kv : root) {
    const auto key = kv.first.as<std::string>();
    if (key == "model") {
      apply_model_config_yaml(c.model, kv.second, path + ": model");
    } else if (key == "train") {
      apply_train_section(c.train, kv.second, path + ": train");
    } else if (key != "base") {
      fail(path, "unknown section '" + key + "' (expected base:, model: and train:)");
    }
  }
}

}  // namespace

RunConfig read_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig c;
  c.source = path;
  apply_config_file(c, path, 0);
  for (const auto& o : overrides) apply_override(c, o);
  return c;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig c = read_run_config(path, overrides);
  try {
    c.model.validate();
    c.train.validate();
  } catch (const Error& e) {
    fail(path, e.what());
  }
  if (c.train.seq_len > c.model.context_length)
    fail(path, "train.seq_len " + std::to_string(c.train.seq_len) + " exceeds model.context_length " +
                   std::to_string(c.model.context_length));
  // The sink metrics compare a window of W with 4 sinks + (W - 4) on the positions past W: both need 4 < W < T.
  const int64_t T = c.seq_len(), W = c.sink_window();
  if (!(W > 4 && W < T))
    fail(path, c.train.sink_window > 0
                   ? "train.sink_window " + std::to_string(W) + " must be > 4 and < seq_len (" + std::to_string(T) +
                         "), or 0 for seq_len / 2"
                   : "train.sink_window: seq_len / 2 (the default) is " + std::to_string(W) +
                         ", and the sink metrics need more than 4: give seq_len >= 10 or a sink_window");
  return c;
}

std::string run_config_to_yaml(const RunConfig& c) {
  YAML::Node root, m, t;
  model_config_to_yaml(c.model, m);
  emit_fields(train_fields(), c.train, t);
  root["model"] = m;
  root["train"] = t;
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

}  // namespace streamsink
