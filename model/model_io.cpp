#include "model/model_io.h"

#include <torch/utils.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "common/error.h"
#include "common/file_util.h"
#include "common/memory.h"
#include "model/model_memory.h"
#include "model/safetensors.h"

namespace streamsink {

std::string resolve_checkpoint_dir(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) fail(path, "no such checkpoint or run folder");
  if (fs::exists(fs::path(path) / "config.yaml") && fs::exists(fs::path(path) / "model.safetensors")) return path;
  for (const fs::path& ckpts : {fs::path(path) / "checkpoints", fs::path(path)}) {
    const auto latest = ckpts / "latest";
    if (!fs::exists(latest)) continue;
    std::string name = read_file(latest.string());
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    const auto dir = ckpts / name;
    if (!fs::exists(dir / "model.safetensors")) {
      // A rewrite of that step on a filesystem without RENAME_EXCHANGE, cut off between its two renames, leaves
      // the old copy as <name>.old-PID (train/checkpoint.cpp): say where it is.
      std::string aside;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(ckpts, ec))
        if (e.path().filename().string().rfind(name + ".old-", 0) == 0 && fs::exists(e.path() / "model.safetensors"))
          aside = e.path().string();
      fail(latest.string(), "names '" + name + "', which is not a complete checkpoint" +
                                (aside.empty() ? std::string()
                                               : "; a rewrite of it was cut off, and its previous copy is " + aside +
                                                     " (rename it to " + name + " to resume from it)"));
    }
    return dir.string();
  }
  fail(path, "neither a checkpoint folder (config.yaml + model.safetensors) nor a run folder (checkpoints/latest)");
}

ModelConfig load_model_config(const std::string& dir) {
  const std::string path = dir + "/config.yaml";
  if (!std::filesystem::exists(path)) fail(path, "missing (is '" + dir + "' a checkpoint folder?)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail(path, std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap() || !root["model"]) fail(path, "has no 'model:' section");
  auto cfg = model_config_from_yaml(root["model"], path + ": model");
  try {
    cfg.validate();
  } catch (const Error& e) {
    fail(path, e.what());
  }
  return cfg;
}

void save_model_weights(const std::string& dir, Transformer& model) {
  TensorMap tensors;
  for (const auto& p : model->named_parameters()) tensors[p.key()] = p.value().detach().to(at::kFloat);
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
}

void load_model_weights(const std::string& dir, Transformer& model) {
  const std::string path = dir + "/model.safetensors";
  auto tensors = load_safetensors(path);
  torch::NoGradGuard no_grad;
  auto params = model->named_parameters();
  for (auto& p : params) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) fail(path, "tensor '" + p.key() + "' is missing (does the config match the weights?)");
    if (it->second.sizes() != p.value().sizes())
      fail(path, "tensor '" + p.key() + "' has shape " + c10::str(it->second.sizes()) + ", the config needs " +
                     c10::str(p.value().sizes()));
    if (!at::isFloatingType(it->second.scalar_type()))  // copy_ would convert integers without a word
      fail(path, "tensor '" + p.key() + "' holds " + std::string(c10::toString(it->second.scalar_type())) +
                     ", not floating-point weights");
    p.value().copy_(it->second);
    tensors.erase(it);
  }
  if (!tensors.empty())
    fail(path, "tensor '" + tensors.begin()->first + "' is not part of this model (does the config match?)");
}

void check_model_loads(const ModelConfig& cfg, const std::string& dir) {
  // Whatever the device, the model is built on the host and its weights file is read there whole (then copied in).
  const ModelMemory m = model_memory(cfg);
  auto items = model_build_items(cfg);
  const std::string weights = dir + "/model.safetensors";
  std::error_code ec;
  const auto file = std::filesystem::file_size(weights, ec);
  if (!ec) items.push_back({static_cast<double>(file), "for " + weights + ", read whole before it is copied in"});
  const std::string hint =
      !ec && static_cast<double>(file) < 0.5 * m.param_bytes
          ? ": the config describes a model of " + model_size_summary(cfg) + ", but " + weights + " holds only " +
                format_bytes(static_cast<double>(file)) +
                " (is this config.yaml the one these weights were saved with?)"
          : ": the model is " + model_size_summary(cfg) + "; load it on a machine with more memory";
  check_model_fits(dir + "/config.yaml", "loading this checkpoint's model", items, 1, hint);
}

Transformer load_model(const std::string& dir, c10::Device device) {
  const ModelConfig cfg = load_model_config(dir);
  check_model_loads(cfg, dir);
  Transformer model(cfg);
  load_model_weights(dir, model);
  model->to(device);
  model->eval();
  return model;
}

}  // namespace streamsink
