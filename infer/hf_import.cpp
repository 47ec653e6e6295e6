#include "infer/hf_import.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "common/file_util.h"
#include "data/tokenizer.h"
#include "model/model_memory.h"
#include "model/safetensors.h"

namespace streamsink {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const std::string& path) {
  if (!fs::exists(path)) fail(path, "missing");
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
}

// Typed reads of config.json keys; `def` when the key is absent or null (HF's LlamaConfig defaults).
struct ConfigReader {
  const json& j;
  const std::string& path;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t integer(const char* k, const int64_t* def = nullptr) const {
    if (!has(k)) {
      if (def) return *def;
      fail(path, "key '" + std::string(k) + "' is missing");
    }
    if (!j[k].is_number_integer()) fail(path, "key '" + std::string(k) + "' must be an integer, got " + j[k].dump());
    return j[k].get<int64_t>();
  }
  double number(const json& obj, const char* k, double def) const {
    if (!obj.contains(k) || obj[k].is_null()) return def;
    if (!obj[k].is_number()) fail(path, "key '" + std::string(k) + "' must be a number, got " + obj[k].dump());
    return obj[k].get<double>();
  }
  bool boolean(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) fail(path, "key '" + std::string(k) + "' must be true or false, got " + j[k].dump());
    return j[k].get<bool>();
  }
  std::string string(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j[k].is_string()) fail(path, "key '" + std::string(k) + "' must be a string, got " + j[k].dump());
    return j[k].get<std::string>();
  }
};

// The tensors (name → shape) a streamsink Transformer with this config has: the HF Llama names.
std::map<std::string, std::vector<int64_t>> expected_shapes(const ModelConfig& c) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t D = c.head_dim(), F = c.ffn_dim();
  s["model.embed_tokens.weight"] = {c.vocab_size, c.dim};
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s[p + "self_attn.q_proj.weight"] = {c.n_heads * D, c.dim};
    s[p + "self_attn.k_proj.weight"] = {c.n_kv_heads * D, c.dim};
    s[p + "self_attn.v_proj.weight"] = {c.n_kv_heads * D, c.dim};
    s[p + "self_attn.o_proj.weight"] = {c.dim, c.n_heads * D};
    s[p + "mlp.gate_proj.weight"] = {F, c.dim};
    s[p + "mlp.up_proj.weight"] = {F, c.dim};
    s[p + "mlp.down_proj.weight"] = {c.dim, F};
    s[p + "input_layernorm.weight"] = {c.dim};
    s[p + "post_attention_layernorm.weight"] = {c.dim};
  }
  s["model.norm.weight"] = {c.dim};
  if (!c.tie_embeddings) s["lm_head.weight"] = {c.vocab_size, c.dim};
  return s;
}

// Error naming DIR/config.json when the weights files, each read whole, and the float32 copies of half-precision
// weights do not fit in the host memory this process can get (files as large as the float32 parameters are taken
// for float32, which imports without a copy). Counted from the files, which exist: the model is never built here.
void check_import_fits(const ModelConfig& cfg, const std::string& dir, const std::vector<std::string>& files,
                       const std::string& files_what) {
  double bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const auto n = fs::file_size(f, ec);
    if (!ec) bytes += static_cast<double>(n);
  }
  const ModelMemory m = model_memory(cfg);
  std::vector<MemoryItem> items{{bytes, "for " + files_what + ", read whole"}};
  if (bytes < 0.99 * m.param_bytes)  // a 2-byte weight becomes 4: at most twice the files (a config that does not
                                     // match the weights is the shape check's error, not this one's)
    items.push_back({std::min(m.param_bytes, 2 * bytes), "for the float32 copies of half-precision weights"});
  check_model_fits(dir + "/config.json", "importing this model", items, 1,
                   ": the model is " + model_size_summary(cfg) + "; import it on a machine with more memory");
}

// Reads model.safetensors, or every shard model.safetensors.index.json names; each tensor where the index says.
TensorMap read_weights(const std::string& dir, const ModelConfig& cfg) {
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (fs::exists(single)) {
    check_import_fits(cfg, dir, {single}, single);
    return load_safetensors(single);
  }
  if (!fs::exists(index)) {
    std::string hint;
    if (fs::exists(dir + "/pytorch_model.bin") || fs::exists(dir + "/pytorch_model.bin.index.json"))
      hint = " (this folder has PyTorch .bin weights: save it again with safe_serialization=True)";
    fail(single, "missing, and there is no model.safetensors.index.json either" + hint);
  }
  const json j = read_json(index);
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    fail(index, "has no 'weight_map' object (name → shard file)");
  std::map<std::string, std::set<std::string>> by_file;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string()) fail(index, "weight_map['" + it.key() + "'] is not a file name");
    const std::string file = it->get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file.find("..") != std::string::npos)
      fail(index, "weight_map['" + it.key() + "'] names '" + file + "', not a file in this folder");
    by_file[file].insert(it.key());
  }
  if (by_file.empty()) fail(index, "weight_map is empty");
  for (const auto& [file, names] : by_file)
    if (!fs::exists(dir + "/" + file))
      fail(index, "names shard '" + file + "' (for '" + *names.begin() + "' and " + std::to_string(names.size() - 1) +
                      " more), which is missing from " + dir);
  std::vector<std::string> files;
  for (const auto& kv : by_file) files.push_back(dir + "/" + kv.first);
  check_import_fits(cfg, dir, files, "the " + std::to_string(files.size()) + " shard(s) " + index + " names");
  TensorMap all;
  for (const auto& [file, names] : by_file) {
    const std::string path = dir + "/" + file;
    auto shard = load_safetensors(path);
    for (const auto& n : names) {
      auto it = shard.find(n);
      if (it == shard.end()) fail(path, "has no tensor '" + n + "', which " + index + " places there");
      all[n] = it->second;
    }
  }
  return all;
}

}  // namespace

ModelConfig hf_config_from_json(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!fs::exists(dir)) fail(dir, "no such folder");
  const json j = read_json(path);
  if (!j.is_object()) fail(path, "is not a JSON object");
  const ConfigReader r{j, path};
  const std::string model_type = r.string("model_type", "");
  if (model_type != "llama")
    fail(path, "key 'model_type' is '" + model_type + "': only Llama-architecture models (model_type llama) import");
  if (r.has("architectures")) {
    bool llama = false;
    if (j["architectures"].is_array())
      for (const auto& a : j["architectures"]) llama = llama || (a.is_string() && a.get<std::string>() == "LlamaForCausalLM");
    if (!llama)
      fail(path, "key 'architectures' is " + j["architectures"].dump() + ": only LlamaForCausalLM imports");
  }
  // Features of transformers' Llama that our Transformer does not have.
  if (r.has("rope_scaling")) {  // {"rope_type": "default"} (or "type") is plain RoPE spelled out
    const json& rs = j["rope_scaling"];
    const json type = rs.is_object() ? rs.value("rope_type", rs.value("type", json())) : json();
    if (!(type.is_string() && type.get<std::string>() == "default"))
      fail(path, "key 'rope_scaling' is " + rs.dump() + ": scaled RoPE is not supported (plain RoPE only)");
  }
  double rope_theta = r.number(j, "rope_theta", 10000.0);
  if (r.has("rope_parameters")) {  // transformers 5 spelling: {"rope_type": "default", "rope_theta": ...}
    const json& rp = j["rope_parameters"];
    if (!rp.is_object()) fail(path, "key 'rope_parameters' is not an object");
    const std::string type = rp.value("rope_type", std::string("default"));
    if (type != "default")
      fail(path, "key 'rope_parameters.rope_type' is '" + type + "': scaled RoPE is not supported (plain RoPE only)");
    rope_theta = r.number(rp, "rope_theta", rope_theta);
  }
  if (r.boolean("attention_bias", false)) fail(path, "key 'attention_bias' is true: attention biases are not supported");
  if (r.boolean("mlp_bias", false)) fail(path, "key 'mlp_bias' is true: MLP biases are not supported");
  const std::string act = r.string("hidden_act", "silu");
  if (act != "silu" && act != "swish")  // transformers maps both names to the same SiLU
    fail(path, "key 'hidden_act' is '" + act + "': only silu (SwiGLU) is supported");

  ModelConfig c;
  c.vocab_size = r.integer("vocab_size");
  c.dim = r.integer("hidden_size");
  c.n_layers = r.integer("num_hidden_layers");
  c.n_heads = r.integer("num_attention_heads");
  c.n_kv_heads = r.integer("num_key_value_heads", &c.n_heads);
  c.hidden_dim = r.integer("intermediate_size");
  const int64_t default_ctx = 2048;
  c.context_length = r.integer("max_position_embeddings", &default_ctx);
  if (c.context_length > kMaxContextLength) {  // long-context fine-tunes: streaming needs only S + W positions
    std::fprintf(stderr,
                 "import-hf: max_position_embeddings %lld is past streamsink's largest context_length (%lld); the "
                 "imported model's context_length is %lld (streaming rotates by positions up to S + W)\n",
                 static_cast<long long>(c.context_length), static_cast<long long>(kMaxContextLength),
                 static_cast<long long>(kMaxContextLength));
    c.context_length = kMaxContextLength;
  }
  c.rope_theta = rope_theta;
  c.norm_eps = r.number(j, "rms_norm_eps", 1e-6);
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);  // LlamaConfig's default
  c.init_std = r.number(j, "initializer_range", c.init_std);
  if (c.n_heads > 0 && c.dim % c.n_heads == 0) {
    const int64_t derived = c.dim / c.n_heads;
    const int64_t hd = r.integer("head_dim", &derived);
    if (hd != derived)
      fail(path, "key 'head_dim' is " + std::to_string(hd) + ", not hidden_size / num_attention_heads = " +
                     std::to_string(derived) + ": a separate head size is not supported");
  }
  // What export-hf recorded that HF has no field for (absent in other models: a vanilla model).
  if (r.has("streamsink")) {
    const json& s = j["streamsink"];
    if (!s.is_object()) fail(path, "key 'streamsink' is not an object");
    try {
      if (s.contains("sink")) c.sink = sink_kind_from_string(s["sink"].get<std::string>());
      c.sink_tokens = s.value("sink_tokens", c.sink_tokens);
      c.sink_token_id = s.value("sink_token_id", c.sink_token_id);
      ModelConfig alt = c;  // keep the original hidden_dim spelling when it means the same size
      alt.hidden_dim = s.value("hidden_dim", alt.hidden_dim);
      alt.multiple_of = s.value("multiple_of", alt.multiple_of);
      if (alt.multiple_of > 0 && alt.hidden_dim >= 0 && alt.ffn_dim() == c.hidden_dim) c = alt;
    } catch (const std::exception& e) {  // json type errors, an unknown sink name
      fail(path, std::string("key 'streamsink': ") + e.what());
    }
    if (c.sink == SinkKind::kZero || c.sink == SinkKind::kLogit)
      fail(path, "key 'streamsink.sink' is '" + to_string(c.sink) + "': LlamaForCausalLM has no extra softmax column");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(path, e.what());
  }
  return c;
}

HfImportResult import_hf(const std::string& model_dir, const std::string& out) {
  HfImportResult res;
  res.out = out;
  const ModelConfig cfg = hf_config_from_json(model_dir);
  res.config = cfg;

  const std::string tok_path = model_dir + "/tokenizer.model";
  if (!fs::exists(tok_path))
    fail(tok_path, "missing: import-hf needs the sentencepiece tokenizer.model (a tokenizer.json-only model is not "
                   "supported)");
  const Tokenizer tok = Tokenizer::load(tok_path);
  if (tok.vocab_size() > cfg.vocab_size)
    fail(tok_path, "has " + std::to_string(tok.vocab_size()) + " pieces, more than config.json's vocab_size " +
                       std::to_string(cfg.vocab_size));
  if (cfg.sink == SinkKind::kToken)
    for (int64_t i = 0; i < cfg.sink_tokens; ++i)
      if (cfg.sink_token_id + i >= tok.vocab_size())
        fail(tok_path, "has no id " + std::to_string(cfg.sink_token_id + i) + " for the model's sink token");

  res.adds_bos = tok.bos_id() >= 0;
  if (const std::string tc = model_dir + "/tokenizer_config.json"; fs::exists(tc)) {
    const json j = read_json(tc);
    if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) res.adds_bos = res.adds_bos && j["add_bos_token"].get<bool>();
  }

  TensorMap weights = read_weights(model_dir, cfg);
  const std::string wpath = model_dir + "/model.safetensors";
  for (auto it = weights.begin(); it != weights.end();) {  // HF checkpoints of old carried the RoPE table
    static const std::string kInvFreq = "rotary_emb.inv_freq";
    const std::string& n = it->first;
    if (n.size() >= kInvFreq.size() && n.compare(n.size() - kInvFreq.size(), kInvFreq.size(), kInvFreq) == 0)
      it = weights.erase(it);
    else
      ++it;
  }
  if (cfg.tie_embeddings && weights.count("lm_head.weight")) {
    weights.erase("lm_head.weight");
    res.dropped_lm_head = true;
  }
  if (!cfg.tie_embeddings && !weights.count("lm_head.weight"))
    fail(wpath, "has no 'lm_head.weight', and config.json says tie_word_embeddings is false");

  TensorMap converted;
  for (const auto& [name, shape] : expected_shapes(cfg)) {
    auto it = weights.find(name);
    if (it == weights.end()) fail(wpath, "tensor '" + name + "' is missing (does config.json match the weights?)");
    const auto& t = it->second;
    if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kHalf && t.scalar_type() != at::kBFloat16)
      fail(wpath, "tensor '" + name + "' is " + std::string(c10::toString(t.scalar_type())) +
                      "; only F32, F16 and BF16 import");
    if (t.sizes().vec() != shape)
      fail(wpath, "tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", config.json needs " +
                      c10::str(at::IntArrayRef(shape)));
    converted[name] = t.to(at::kFloat).contiguous();
    res.parameters += t.numel();
    weights.erase(it);
  }
  if (!weights.empty())
    fail(wpath, "tensor '" + weights.begin()->first + "' is not part of a Llama model with this config.json (" +
                    std::to_string(weights.size()) + " unexpected tensors)");
  res.tensors = static_cast<int64_t>(converted.size());

  StagingDir stage(out, "import-hf");
  const std::string tmp = stage.path();
  {
    YAML::Node root, m;
    model_config_to_yaml(cfg, m);
    root["model"] = m;
    write_file_atomic(tmp + "/config.yaml", "# imported by streamsink import-hf from " + model_dir + "\n" +
                                                YAML::Dump(root) + "\n");
    save_safetensors(tmp + "/model.safetensors", converted, {{"format", "pt"}});
    converted.clear();
    fs::copy_file(tok_path, tmp + "/tokenizer.model");
    stage.commit();
  }
  return res;
}

}  // namespace streamsink
