// ModelConfig: the architecture, saved in every checkpoint and reloaded for inference.
#pragma once
#include <cstdint>
#include <string>

namespace YAML {
class Node;
}

namespace streamsink {

// Where a model's attention sink comes from (DESIGN.md, "Sink variants").
enum class SinkKind {
  kNone,   // vanilla: the model learns to use the first token(s) it sees (StreamingLLM's "vanilla")
  kToken,  // k learnable placeholder tokens prepended to every sample (StreamingLLM §3.3, "learnable sink")
  kZero,   // softmax-off-by-one: an extra logit fixed at 0 with a zero value vector (StreamingLLM's "zero sink")
  kLogit,  // one learned logit per head appended to each softmax row, no value (gpt-oss `sinks`)
};
std::string to_string(SinkKind k);
SinkKind sink_kind_from_string(const std::string& s);  // throws Error naming the accepted values

// The largest context_length validate() accepts: the rotary tables are [context_length, head_dim / 2] doubles.
constexpr int64_t kMaxContextLength = int64_t{1} << 20;

struct ModelConfig {
  int64_t vocab_size = 4096;        // tokenizer vocabulary, reserved ids (<pad> <bos> <eos> <sink>...) included
  int64_t dim = 256;                // model width d
  int64_t n_layers = 4;             // transformer blocks
  int64_t n_heads = 4;              // query heads H; head_dim = dim / n_heads
  int64_t n_kv_heads = 4;           // key/value heads (grouped-query attention); divides n_heads
  int64_t hidden_dim = 0;           // SwiGLU hidden size; 0 = Llama's rule (8/3·dim rounded up to multiple_of)
  int64_t multiple_of = 64;         // rounding for the default hidden_dim
  int64_t context_length = 256;     // training context T (sink tokens included)
  double rope_theta = 10000.0;      // RoPE base
  double norm_eps = 1e-5;           // RMSNorm epsilon
  bool tie_embeddings = true;       // lm_head shares the token embedding matrix
  double init_std = 0.02;           // std of the normal init; residual projections get init_std / sqrt(2·n_layers)
  SinkKind sink = SinkKind::kNone;  // sink variant
  int64_t sink_tokens = 1;          // k sink tokens for sink=token (ids sink_token_id .. sink_token_id+k-1)
  int64_t sink_token_id = 4;        // first reserved sink id (<unk>=0 <bos>=1 <eos>=2 <pad>=3 <sink>=4 <sink1>=5..)

  int64_t head_dim() const { return dim / n_heads; }
  int64_t ffn_dim() const;  // hidden_dim, or Llama's default when 0
  // The number of sink tokens prepended to every sample and stream (0 unless sink == kToken).
  int64_t prefix_tokens() const { return sink == SinkKind::kToken ? sink_tokens : 0; }
  void validate() const;  // throws Error with the field and the problem
};

// YAML (de)serialisation. `where` names the file (and section) for error messages; unknown keys are errors.
ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where);
void model_config_to_yaml(const ModelConfig& c, YAML::Node& out);
// Applies the keys of a YAML map onto an existing config (a file layered on its `base:`).
void apply_model_config_yaml(ModelConfig& c, const YAML::Node& node, const std::string& where);
// Sets one key from a string ("--set model.dim=512"); throws Error naming the key on a bad key or value.
void set_model_config_key(ModelConfig& c, const std::string& key, const std::string& value);

}  // namespace streamsink
