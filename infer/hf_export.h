// Export to Hugging Face transformers: a checkpoint folder → a LlamaForCausalLM folder (config.json,
// model.safetensors, tokenizer.model + tokenizer_config.json, special_tokens_map.json, generation_config.json).
// Our parameter names are already HF Llama names and RoPE uses HF's rotate-half convention, so the weights are
// written as they are (float32); no permutation.
//
// Only `sink: none` and `sink: token` models export: a `token` model's sinks are ordinary (special) tokens the
// caller prepends, while `zero` and `logit` add a softmax column that Llama's attention does not have.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace streamsink {

struct HfExportResult {
  std::string checkpoint;           // the resolved checkpoint folder
  std::string out;                  // the folder written
  std::vector<std::string> files;   // file names written inside `out`
  std::vector<std::string> sink_pieces;  // the sink symbols listed as additional special tokens
};

// Exports CHECKPOINT (a checkpoint or run folder) to OUT. OUT must not exist or be empty; it is written under a
// temporary name and renamed when complete. Error naming the file for a model Llama cannot express (zero/logit
// sinks), a tokenizer whose reserved ids differ from <unk>=0 <s>=1 </s>=2, or a missing file.
HfExportResult export_hf(const std::string& checkpoint, const std::string& out);

// config.json for a LlamaForCausalLM with this architecture (exposed for tests). Special ids are the tokenizer's.
std::string hf_config_json(const ModelConfig& cfg, int bos_id, int eos_id, int pad_id);

}  // namespace streamsink
