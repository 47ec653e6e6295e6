// Import from Hugging Face transformers: a Llama-architecture folder (config.json, model.safetensors or shards
// listed in model.safetensors.index.json, tokenizer.model) → a streamsink checkpoint folder (config.yaml with a
// `model:` section, model.safetensors in float32, tokenizer.model) that eval-stream / generate / chat accept.
//
// What Llama features our model lacks is refused with the config.json key that asks for it (rope_scaling,
// attention_bias, mlp_bias, a head_dim other than hidden_size / num_attention_heads, another hidden_act ...).
#pragma once
#include <string>

#include "model/config.h"

namespace streamsink {

struct HfImportResult {
  std::string out;            // the checkpoint folder written
  ModelConfig config;         // its architecture
  int64_t tensors = 0;        // tensors written
  int64_t parameters = 0;     // their element count
  bool dropped_lm_head = false;  // tie_word_embeddings with an lm_head.weight present: dropped
  bool adds_bos = false;  // the folder's tokenizer puts <s> before every text (tokenizer_config.json's add_bos_token,
                          // true when absent as in LlamaTokenizer): its streams want `--bos`
};

// Reads DIR/config.json into a ModelConfig; Error naming config.json and the key for anything unsupported.
ModelConfig hf_config_from_json(const std::string& dir);

// Imports the HF folder MODEL_DIR into the checkpoint folder OUT (must not exist or be empty; written under a
// temporary name and renamed when complete). F32/F16/BF16 tensors are converted to float32.
HfImportResult import_hf(const std::string& model_dir, const std::string& out);

}  // namespace streamsink
