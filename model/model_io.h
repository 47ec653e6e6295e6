// The model's own part of a checkpoint folder: `config.yaml` (its `model:` section; the trainer adds `train:`)
// and `model.safetensors` with Hugging Face Llama names. Used by train/ (save) and infer/ (load).
#pragma once
#include <c10/core/Device.h>

#include <string>

#include "model/config.h"
#include "model/transformer.h"

namespace streamsink {

// Checkpoint layout (written by train/): RUN/checkpoints/step_0000100/{config.yaml, model.safetensors,
// tokenizer.model, ...} and RUN/checkpoints/latest, a one-line text file naming the newest complete step folder
// (replaced atomically, so it never names a partial one).
//
// Accepts a checkpoint folder, a run folder, or a run's checkpoints/ folder; returns the checkpoint folder.
// Error naming the path when none is there.
std::string resolve_checkpoint_dir(const std::string& path);

// Reads the `model:` section of DIR/config.yaml (other sections are ignored here).
ModelConfig load_model_config(const std::string& dir);
// Writes DIR/model.safetensors atomically (float32 weights; the tied lm_head is not stored, as in HF).
void save_model_weights(const std::string& dir, Transformer& model);
// Loads DIR/model.safetensors into `model`: every parameter present with the right shape, nothing extra;
// otherwise an Error naming the file and the tensor.
void load_model_weights(const std::string& dir, Transformer& model);
// Error naming DIR/config.yaml and the figures when the model it describes, and DIR/model.safetensors read
// alongside, do not fit in the host memory this process can get (model/model_memory.h): checked before the model is
// built, whatever the device (a model is built on the host, and its weights are read there, before it moves).
void check_model_loads(const ModelConfig& cfg, const std::string& dir);
// config + weights → a model on `device`, in eval mode (check_model_loads first).
Transformer load_model(const std::string& dir, c10::Device device = c10::kCPU);

}  // namespace streamsink
