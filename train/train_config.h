// TrainConfig (the `train:` section of a run config) and RunConfig (model + train), loaded from YAML with
// `--set section.key=value` overrides. Unknown keys, wrong types and impossible values are errors naming the key
// and the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace streamsink {

struct TrainConfig {
  std::string data_dir;              // folder of shards from `streamsink data prepare` (train_*.bin, val_*.bin)
  std::string tokenizer;             // tokenizer.model copied into checkpoints; "" = DATA_DIR/tokenizer.model if any
  int64_t batch_size = 8;            // micro-batch per rank (sequences)
  int64_t grad_accum = 1;            // micro-batches per optimizer step
  int64_t seq_len = 0;               // tokens per sequence, sink tokens included; 0 = model.context_length
  int64_t steps = 0;                 // optimizer steps; 0 = derive from `tokens`
  int64_t tokens = 0;                // token budget (used when steps = 0)
  double lr = 3e-3;                  // peak learning rate
  int64_t warmup_steps = 100;        // linear warm-up from 0 to lr
  std::string schedule = "cosine";   // cosine | linear | wsd (warmup-stable-decay) | constant
  double min_lr = 3e-4;              // floor of cosine/linear/wsd
  double decay_fraction = 0.2;       // wsd: the last fraction of steps that decays to min_lr
  double weight_decay = 0.1;         // AdamW decay, on matmul weights and embeddings only (not norms, not sinks)
  double beta1 = 0.9;                // AdamW β1
  double beta2 = 0.95;               // AdamW β2
  double adam_eps = 1e-8;            // AdamW ε
  double grad_clip = 1.0;            // max global gradient norm; 0 = off
  std::string precision = "fp32";    // fp32 | bf16 (autocast; CUDA, or CPUs with bf16)
  int64_t eval_interval = 100;       // steps between evaluations; 0 = only at the end
  int64_t eval_sequences = 64;       // the validation set: the val split's first eval_sequences windows, in order,
                                     //   the same set (and val_loss) whatever batch_size and the rank count
  int64_t sink_window = 0;           // cache size for the sink metrics; 0 = seq_len / 2 (the paper's W)
  int64_t sink_sequences = 64;       // the sink metrics measure the validation set's first min(this, eval_sequences)
                                     //   windows (on rank 0): three fp32 forwards each, so a cap keeps them cheap
  int64_t checkpoint_interval = 500; // steps between checkpoints; 0 = only at the end
  int64_t keep_checkpoints = 2;      // complete checkpoints kept (the newest)
  int64_t log_interval = 10;         // steps between metrics lines
  int64_t seed = 1337;               // init and data order
  std::string device = "auto";       // auto | cpu | cuda | cuda:N
  int64_t threads = 0;               // intra-op threads; 0 = all cores (divided among local ranks)
  std::string nan_policy = "stop";   // a non-finite loss or gradient: skip (the step, counted) | stop
  int64_t max_skipped_steps = 10;    // skip: stop after this many skipped steps
  double timeout_s = 300;            // collective / rendezvous timeout
  double max_seconds = 0;            // wall-clock budget for the loop; 0 = none (checkpoint and stop when hit)
  int64_t retired_eval_batches = -1; // `eval_batches:` as a file gave it (-1: absent): a key retired in session 10, so
                                     //   older run folders' configs still load; validate() refuses it with the
                                     //   eval_sequences that names the same set

  void validate() const;
};

struct RunConfig {
  ModelConfig model;
  TrainConfig train;
  std::string source;  // the file it came from, for messages
  // A file may start with `base: other.yaml` (relative to it): its sections are applied on top of that file.

  // train.seq_len, or model.context_length where it is 0.
  int64_t seq_len() const { return train.seq_len > 0 ? train.seq_len : model.context_length; }
  // The cache size W of the trainer's sink metrics: train.sink_window, or seq_len() / 2 where it is 0.
  int64_t sink_window() const { return train.sink_window > 0 ? train.sink_window : seq_len() / 2; }
};

// Loads FILE, applies `overrides` ("model.dim=512", "train.steps=60"), validates. Errors name the file and key.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same, unvalidated (keys and types are still checked): a checkpoint's own config, read for a few of its keys,
// loads even where today's checks are stricter than those it was written under.
RunConfig read_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The resolved config as YAML text (model: and train: sections), as printed at start and saved in checkpoints.
std::string run_config_to_yaml(const RunConfig& c);
// Applies one "section.key=value" override.
void apply_override(RunConfig& c, const std::string& assignment);

}  // namespace streamsink
