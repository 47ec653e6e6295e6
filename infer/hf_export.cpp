#include "infer/hf_export.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "common/error.h"
#include "common/file_util.h"
#include "data/tokenizer.h"
#include "model/model_io.h"
#include "model/safetensors.h"

namespace streamsink {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json added_token(const std::string& content) {
  return {{"content", content}, {"lstrip", false}, {"normalized", false},
          {"rstrip", false},    {"single_word", false}, {"special", true}};
}

}  // namespace

std::string hf_config_json(const ModelConfig& c, int bos_id, int eos_id, int pad_id) {
  json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.dim},
      {"intermediate_size", c.ffn_dim()},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim()},
      {"hidden_act", "silu"},
      {"max_position_embeddings", c.context_length},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"rms_norm_eps", c.norm_eps},
      {"tie_word_embeddings", c.tie_embeddings},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"pretraining_tp", 1},
      {"initializer_range", c.init_std},
      {"use_cache", true},
      {"bos_token_id", bos_id},
      {"eos_token_id", eos_id},
      {"torch_dtype", "float32"},
      // What HF has no field for, so import-hf gives back the same config (transformers keeps unknown keys).
      {"streamsink", {{"sink", to_string(c.sink)},
                      {"sink_tokens", c.sink_tokens},
                      {"sink_token_id", c.sink_token_id},
                      {"hidden_dim", c.hidden_dim},
                      {"multiple_of", c.multiple_of}}},
  };
  if (pad_id >= 0) j["pad_token_id"] = pad_id;
  return j.dump(2) + "\n";
}

HfExportResult export_hf(const std::string& checkpoint, const std::string& out) {
  HfExportResult r;
  r.checkpoint = resolve_checkpoint_dir(checkpoint);
  r.out = out;
  const std::string cfg_path = r.checkpoint + "/config.yaml";
  const ModelConfig cfg = load_model_config(r.checkpoint);
  if (cfg.sink == SinkKind::kZero || cfg.sink == SinkKind::kLogit)
    fail(cfg_path, "model.sink is '" + to_string(cfg.sink) + "': its attention adds " +
                       (cfg.sink == SinkKind::kZero ? std::string("a zero logit (softmax-off-by-one)")
                                                    : std::string("a learned logit per head")) +
                       " as an extra softmax column, and Llama's attention in transformers has no extra softmax "
                       "column, so LlamaForCausalLM would compute different outputs. Only sink: none and sink: "
                       "token models export to Hugging Face");

  // Tokenizer: the reserved ids must be the ones Llama's tokenizer classes assume.
  const std::string tok_path = r.checkpoint + "/tokenizer.model";
  if (!fs::exists(tok_path)) fail(tok_path, "missing: the export needs the checkpoint's sentencepiece tokenizer");
  const Tokenizer tok = Tokenizer::load(tok_path);
  if (tok.unk_id() != 0 || tok.bos_id() != 1 || tok.eos_id() != 2)
    fail(tok_path, "reserved ids are <unk>=" + std::to_string(tok.unk_id()) + " <s>=" + std::to_string(tok.bos_id()) +
                       " </s>=" + std::to_string(tok.eos_id()) + "; LlamaTokenizer needs 0, 1, 2");
  if (tok.vocab_size() > cfg.vocab_size)
    fail(tok_path, "has " + std::to_string(tok.vocab_size()) + " pieces, more than the model's vocab_size " +
                       std::to_string(cfg.vocab_size));
  for (int64_t i = 0; i < tok.n_sink_ids(); ++i) r.sink_pieces.push_back(tok.piece(tok.sink_id(static_cast<int>(i))));
  for (int64_t i = 0; i < cfg.prefix_tokens(); ++i) {  // a token model's sinks must be special tokens too
    const int32_t id = static_cast<int32_t>(cfg.sink_token_id + i);
    if (id >= tok.vocab_size()) fail(tok_path, "has no id " + std::to_string(id) + " for the model's sink token");
    const std::string p = tok.piece(id);
    if (std::find(r.sink_pieces.begin(), r.sink_pieces.end(), p) == r.sink_pieces.end()) r.sink_pieces.push_back(p);
  }

  auto model = load_model(r.checkpoint);  // validates the weights against the config
  TensorMap tensors;
  for (const auto& p : model->named_parameters()) tensors[p.key()] = p.value().detach().to(at::kFloat).contiguous();

  StagingDir stage(out, "export-hf");
  const std::string tmp = stage.path();
  {
    save_safetensors(tmp + "/model.safetensors", tensors, {{"format", "pt"}});
    write_file_atomic(tmp + "/config.json", hf_config_json(cfg, tok.bos_id(), tok.eos_id(), tok.pad_id()));
    fs::copy_file(tok_path, tmp + "/tokenizer.model");

    const std::string unk = tok.piece(tok.unk_id()), bos = tok.piece(tok.bos_id()), eos = tok.piece(tok.eos_id());
    const std::string pad = tok.pad_id() >= 0 ? tok.piece(tok.pad_id()) : std::string();
    json decoder = json::object();
    decoder[std::to_string(tok.unk_id())] = added_token(unk);
    decoder[std::to_string(tok.bos_id())] = added_token(bos);
    decoder[std::to_string(tok.eos_id())] = added_token(eos);
    if (!pad.empty()) decoder[std::to_string(tok.pad_id())] = added_token(pad);
    for (const auto& p : r.sink_pieces) {
      for (int32_t id = 0; id < tok.vocab_size(); ++id)
        if (tok.piece(id) == p) {
          decoder[std::to_string(id)] = added_token(p);
          break;
        }
    }
    // No bos/eos added (streamsink's streams carry none). legacy=false and add_prefix_space set to whether the
    // model has sentencepiece's dummy prefix: for our own tokenizers (identity normalization, no dummy prefix)
    // false, which makes LlamaTokenizer (slow) and its fast conversion prepend nothing; for an imported Llama
    // tokenizer.model true, so they prepend the "▁" that sentencepiece itself does. Either way HF's ids equal ours.
    json tc = {
        {"tokenizer_class", "LlamaTokenizer"},
        {"add_bos_token", false},
        {"add_eos_token", false},
        {"legacy", false},
        {"add_prefix_space", tok.adds_dummy_prefix()},
        {"clean_up_tokenization_spaces", false},
        {"spaces_between_special_tokens", false},
        {"sp_model_kwargs", json::object()},
        {"model_max_length", cfg.context_length},
        {"unk_token", unk},
        {"bos_token", bos},
        {"eos_token", eos},
        {"additional_special_tokens", r.sink_pieces},
        {"added_tokens_decoder", decoder},
    };
    json sm = {{"unk_token", unk}, {"bos_token", bos}, {"eos_token", eos},
               {"additional_special_tokens", r.sink_pieces}};
    if (!pad.empty()) {
      tc["pad_token"] = pad;
      sm["pad_token"] = pad;
    }
    write_file_atomic(tmp + "/tokenizer_config.json", tc.dump(2) + "\n");
    write_file_atomic(tmp + "/special_tokens_map.json", sm.dump(2) + "\n");
    json gc = {{"bos_token_id", tok.bos_id()}, {"eos_token_id", tok.eos_id()}};
    if (tok.pad_id() >= 0) gc["pad_token_id"] = tok.pad_id();
    write_file_atomic(tmp + "/generation_config.json", gc.dump(2) + "\n");

    stage.commit();
  }
  r.files = {"config.json",           "model.safetensors",       "tokenizer.model",
             "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
  return r;
}

}  // namespace streamsink
