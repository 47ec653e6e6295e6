// What a Transformer takes of host memory, from its config alone, and the check that runs before one is built for
// a command (training, loading a checkpoint): a config too large for the machine (a typo in dim or vocab_size, a
// checkpoint from a bigger machine) is an Error naming the file and the figures, not LibTorch's allocator aborting
// the process or the OOM killer ending it (common/memory.h).
//
// What is counted, in bytes (in double: a mistyped config may pass 2^63):
//   parameters     4 per parameter (float32, as Transformer builds them; parameter_count's closed form)
//   rotary tables  24 · context_length · head_dim: the float cos and sin tables the model keeps (8 per entry) and
//                  the double angles and cos/sin they are computed from (16 per entry, freed after construction)
//   training       the parameters again for their gradients and twice for AdamW's exp_avg and exp_avg_sq, when the
//                  model trains on the CPU; on a GPU the host holds the parameters only while the model is built,
//                  before model->to(device). Activations are not counted (they depend on the batch, and a step that
//                  runs out of them fails where a first step shows it).
//   files          a safetensors file is read whole into host memory before its tensors are copied into the model
//                  (model.safetensors; optimizer.safetensors on resume), whatever the device
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace streamsink {

// One part of what a command holds in host memory at its peak: "1.00 GiB for their gradients".
struct MemoryItem {
  double bytes = 0;
  std::string what;  // after the figure: "for their gradients"
};

struct ModelMemory {
  double parameters = 0;   // parameter_count(cfg)
  double param_bytes = 0;  // 4 per parameter (float32)
  double rope_bytes = 0;   // the rotary tables and their construction (see above)
};
ModelMemory model_memory(const ModelConfig& cfg);

// "vocab_size 4000000, dim 4194304, n_layers 2, hidden_dim 192": the sizes the parameter count comes from.
std::string model_size_summary(const ModelConfig& cfg);

// The items of building the model: its parameters, and its rotary tables when they are not negligible.
std::vector<MemoryItem> model_build_items(const ModelConfig& cfg);

// Error "WHERE: ACTION needs T of host memory (A for ..., B for ...)[, × N ranks on this node], more than the X this
// process can use (SOURCE): HINT" when the items, times `copies` (processes of one node that each hold them), do
// not fit in what this process can get (common/memory.h).
void check_model_fits(const std::string& where, const std::string& action, const std::vector<MemoryItem>& items,
                      int copies, const std::string& hint);

}  // namespace streamsink
