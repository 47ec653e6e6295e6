// The training loop: AdamW with the LR schedule, gradient accumulation and clipping, data parallelism over c10d,
// bf16 autocast, evaluation with the sink metrics, metrics.jsonl, one live progress line, atomic checkpoints and
// exact resume. `streamsink train` is a thin shell over train().
#pragma once
#include <string>

#include "train/train_config.h"

namespace streamsink {

struct TrainOptions {
  std::string out_dir;         // the run folder: config.yaml, metrics.jsonl, checkpoints/
  std::string resume;          // "" = fresh run (refused if out_dir already has checkpoints), "auto", or a path
  int64_t stop_after = -1;     // stop cleanly (after a checkpoint) once the run's step N is done (counted from the
                               //   run's start, resumes included; it must lie ahead); -1 = never
  int64_t profile_first = 0;   // profile steps profile_first .. + profile_count - 1 on rank 0 (train/step_profiler.h)
  int64_t profile_count = 0;   // 0: no profile
};

// Returns the process exit code: 0 when the budget is done, or the run stopped cleanly (after writing a checkpoint)
// at --stop-after, at train.max_seconds, or on a signal under a launcher; 128 + the signal when a process of its
// own stopped so on SIGINT / SIGTERM; 3 on a numerical fault under nan_policy=stop. Bad input throws Error.
int train(const RunConfig& cfg, const TrainOptions& opts);

// The tokenizer a run's checkpoints carry (generate, chat and export-hf need it), checked before the first step:
// train.tokenizer when set (it must load, and match the tokenizer the data's manifest records); else the data
// folder's tokenizer.model; else the file the manifest names, if it is still the one the data was prepared with.
// "" (with a note on stderr) when there is none. Error naming the file for one that does not load or does not match.
std::string resolve_run_tokenizer(const TrainConfig& train);

// The data's ids against the model, before the first step; Error naming the file otherwise:
//  - the data's vocabulary (its manifest) and every id of its train and val shards within model.vocab_size;
//  - sink: token prepends k placeholder ids (StreamingLLM §3.3) that must be the sink's alone: were one an ordinary
//    piece, the sink would share its embedding with text. With a tokenizer, each must be one of its reserved sink
//    symbols (control symbols no text encodes to) or past its vocabulary; with none, no shard may hold them.
void check_data_ids(const ModelConfig& model, const std::string& tokenizer, const std::string& data_dir);

}  // namespace streamsink
