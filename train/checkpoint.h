// Training checkpoints (DESIGN.md, "Formats"): RUN/checkpoints/step_0000100/ holding
//   config.yaml        the resolved run config (model: and train:)
//   model.safetensors  weights, Hugging Face Llama names (model/model_io.h)
//   optimizer.safetensors  AdamW state, plus the RNG states (rng.cpu, rng.cuda)
//   state.json         step, tokens seen, data cursor, skipped steps, world size
//   tokenizer.model    the tokenizer the data was made with (when known)
// A checkpoint is written under step_N.tmp-PID, fsynced, and renamed; then RUN/checkpoints/latest (one line,
// the folder name) is replaced atomically. `latest` therefore only ever names a complete checkpoint, and a crash
// at any moment leaves the previous one intact.
#pragma once
#include <filesystem>
#include <string>

#include "data/loader.h"
#include "model/transformer.h"
#include "train/adamw.h"
#include "train/train_config.h"

namespace streamsink {

struct TrainState {
  int64_t step = 0;           // optimizer steps completed
  int64_t tokens_seen = 0;    // training tokens consumed (all ranks)
  int64_t skipped_steps = 0;  // steps skipped for a non-finite loss or gradient
  LoaderCursor cursor;        // the global data cursor (each rank's position follows from it and its rank)
  int64_t world_size = 0;     // ranks that trained it (0: a checkpoint from before it was recorded)
  double elapsed_s = 0;       // seconds of the training loop so far, over every invocation (metrics' elapsed_s)
  int64_t train_windows = 0;  // the train split's windows per epoch (what the cursor indexes; 0: not recorded)
};

// Writes a checkpoint of `step` and prunes all but the newest `keep`. Returns its folder. Weights with an inf or a NaN
// are refused: an Error naming the folder and the tensors, with nothing written and `latest` unchanged.
std::string save_checkpoint(const std::string& run_dir, const RunConfig& cfg, Transformer& model, const AdamW& opt,
                            const TrainState& state, const std::string& tokenizer_path, int64_t keep);

// Restores model, optimizer, state and RNG from a checkpoint folder. Errors name the file.
void load_checkpoint(const std::string& ckpt_dir, Transformer& model, AdamW& opt, TrainState& state);

// Refuses (an Error naming the keys, both values and the checkpoint) to resume `ckpt_dir`, whose state is `state`,
// into a run of `cfg` on `world` ranks whose data has `train_windows` windows per epoch, when it would not continue
// the same run:
//  - another model: the weights would load into a network that computes something else (sink: none -> token has
//    the same shapes), and config.yaml would misstate the run. Not refused: init_std (it no longer matters), keys
//    the model does not use (multiple_of with a hidden_dim given; the sink ids without sink: token), and a context
//    extension (context_length, rope_theta: a note on stderr);
//  - data read in another order: the cursor counts global batches of the checkpoint's windows and shuffle, so
//    another seq_len, seed, global batch (batch_size x ranks) or other data (another count of windows) would not
//    continue the data where it stopped.
// Anything else (steps, learning rate, grad_accum, ...) may change.
void check_resume_data_order(const std::string& ckpt_dir, const TrainState& state, const RunConfig& cfg, int world,
                             int64_t train_windows);

// Puts the complete folder `tmp` at `final_dir`, atomically where a checkpoint of that step already exists
// (renameat2 RENAME_EXCHANGE; `try_exchange` false takes the two-rename fallback of filesystems without it).
void replace_checkpoint_dir(const std::filesystem::path& tmp, const std::filesystem::path& final_dir,
                            bool try_exchange = true);

// Resuming a run in its own folder from its checkpoint `ckpt_dir` of step `step` (`--resume auto`, or a rewind:
// `train --resume RUN/checkpoints/step_N --out RUN`): `latest` names it at once, so that a crash before the run's next
// checkpoint resumes here, not in an abandoned run; and the complete checkpoints past it, an abandoned run's, move
// into RUN/checkpoints/abandoned_after_step_N[.K]/, where they are kept but neither resumed nor pruned (pruning would
// count them among the newest). For `--resume auto` there is nothing past `latest`, unless a rewind stopped between
// these two moves: it finishes them. Returns that folder, or "" when nothing was past the step.
std::string rewind_checkpoints(const std::string& ckpt_dir, int64_t step);

// RUN's latest complete checkpoint folder, or "" when it has none.
std::string latest_checkpoint(const std::string& run_dir);

// RUN's newest checkpoint, at or before `latest`, whose model.safetensors loads and holds only finite values, or ""
// when none does: what a run whose weights blew up can go back to. Reads the weights (a failure path, not per step);
// looks past `latest` only for runs written before save_checkpoint refused non-finite weights.
std::string last_finite_checkpoint(const std::string& run_dir);

}  // namespace streamsink
