#include "model/config.h"

#include <yaml-cpp/yaml.h>

#include <vector>

#include "common/config_fields.h"
#include "common/error.h"

namespace streamsink {

std::string to_string(SinkKind k) {
  switch (k) {
    case SinkKind::kNone: return "none";
    case SinkKind::kToken: return "token";
    case SinkKind::kZero: return "zero";
    case SinkKind::kLogit: return "logit";
  }
  return "?";
}

SinkKind sink_kind_from_string(const std::string& s) {
  if (s == "none") return SinkKind::kNone;
  if (s == "token") return SinkKind::kToken;
  if (s == "zero") return SinkKind::kZero;
  if (s == "logit") return SinkKind::kLogit;
  throw Error("sink '" + s + "': expected none, token, zero or logit");
}

int64_t ModelConfig::ffn_dim() const {
  if (hidden_dim > 0) return hidden_dim;
  const int64_t h = (8 * dim) / 3;  // Llama: 2/3 of 4·dim, rounded up to a multiple
  return multiple_of * ((h + multiple_of - 1) / multiple_of);
}

void ModelConfig::validate() const {
  auto bad = [](const std::string& key, const std::string& why) { throw Error("model." + key + ": " + why); };
  if (vocab_size <= 0) bad("vocab_size", "must be positive");
  if (dim <= 0) bad("dim", "must be positive");
  if (n_layers <= 0) bad("n_layers", "must be positive");
  if (n_heads <= 0) bad("n_heads", "must be positive");
  if (dim % n_heads != 0)
    bad("n_heads", std::to_string(n_heads) + " heads do not divide the width dim=" + std::to_string(dim));
  if (head_dim() % 2 != 0) bad("n_heads", "head_dim = dim / n_heads must be even for rotary embeddings");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    bad("n_kv_heads", std::to_string(n_kv_heads) + " must divide n_heads=" + std::to_string(n_heads));
  if (hidden_dim < 0) bad("hidden_dim", "must be >= 0 (0 = Llama's default)");
  if (multiple_of <= 0) bad("multiple_of", "must be positive");
  // The rotary tables hold context_length rows (angles in double): bounded so that a typo is an error, not an
  // allocation that aborts the process.
  if (context_length <= 0 || context_length > kMaxContextLength)
    bad("context_length", "must be in [1, " + std::to_string(kMaxContextLength) + "], got " +
                              std::to_string(context_length));
  if (!(rope_theta > 0)) bad("rope_theta", "must be positive");
  if (!(norm_eps > 0)) bad("norm_eps", "must be positive");
  if (!(init_std > 0)) bad("init_std", "must be positive");
  if (sink == SinkKind::kToken) {
    if (sink_tokens < 1) bad("sink_tokens", "must be >= 1 for sink: token");
    if (sink_tokens >= context_length) bad("sink_tokens", "must be smaller than context_length");
    if (sink_token_id < 0 || sink_token_id > vocab_size - sink_tokens)  // (no overflow for a huge id)
      bad("sink_token_id", std::to_string(sink_tokens) + " sink id(s) from " + std::to_string(sink_token_id) +
                               " fall outside the vocabulary of " + std::to_string(vocab_size));
  }
}

namespace {

const std::vector<Field<ModelConfig>>& model_fields() {
  using C = ModelConfig;
  static const std::vector<Field<C>> fields = {
      int_field("vocab_size", &C::vocab_size),
      int_field("dim", &C::dim),
      int_field("n_layers", &C::n_layers),
      int_field("n_heads", &C::n_heads),
      int_field("n_kv_heads", &C::n_kv_heads),
      int_field("hidden_dim", &C::hidden_dim),
      int_field("multiple_of", &C::multiple_of),
      int_field("context_length", &C::context_length),
      double_field("rope_theta", &C::rope_theta),
      double_field("norm_eps", &C::norm_eps),
      bool_field("tie_embeddings", &C::tie_embeddings),
      double_field("init_std", &C::init_std),
      Field<C>{"sink",
               [](C& c, const std::string& v, const std::string& w) {
                 try {
                   c.sink = sink_kind_from_string(v);
                 } catch (const Error& e) {
                   throw Error(w + ": " + e.what());
                 }
               },
               [](const C& c) { return to_string(c.sink); }},
      int_field("sink_tokens", &C::sink_tokens),
      int_field("sink_token_id", &C::sink_token_id),
  };
  return fields;
}

}  // namespace

ModelConfig model_config_from_yaml(const YAML::Node& node, const std::string& where) {
  ModelConfig c;
  apply_fields(model_fields(), c, node, where);
  return c;
}

void apply_model_config_yaml(ModelConfig& c, const YAML::Node& node, const std::string& where) {
  apply_fields(model_fields(), c, node, where);
}

void model_config_to_yaml(const ModelConfig& c, YAML::Node& out) { emit_fields(model_fields(), c, out); }

void set_model_config_key(ModelConfig& c, const std::string& key, const std::string& value) {
  if (!set_field(model_fields(), c, key, value, "model." + key)) throw Error("unknown key 'model." + key + "'");
}

}  // namespace streamsink
