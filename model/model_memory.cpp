#include "model/model_memory.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/memory.h"
#include "model/transformer.h"

namespace streamsink {

namespace {

// "16.8T", "2.10M", "186k"
std::string format_count(double n) {
  static const char* units[] = {"", "k", "M", "G", "T", "P"};
  int u = 0;
  while (n >= 1000 && u < 5) n /= 1000, ++u;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g%s", n, units[u]);
  return buf;
}

}  // namespace

ModelMemory model_memory(const ModelConfig& c) {
  ModelMemory m;
  m.parameters = parameter_count(c);
  m.param_bytes = 4 * m.parameters;
  m.rope_bytes = 24 * static_cast<double>(c.context_length) * static_cast<double>(c.head_dim());
  return m;
}

std::string model_size_summary(const ModelConfig& c) {
  return "vocab_size " + std::to_string(c.vocab_size) + ", dim " + std::to_string(c.dim) + ", n_layers " +
         std::to_string(c.n_layers) + ", hidden_dim " + std::to_string(c.ffn_dim()) +
         (c.tie_embeddings ? "" : ", untied lm_head");
}

std::vector<MemoryItem> model_build_items(const ModelConfig& cfg) {
  const ModelMemory m = model_memory(cfg);
  std::vector<MemoryItem> items{{m.param_bytes, "for its " + format_count(m.parameters) + " float32 parameters"}};
  if (m.rope_bytes > 0.01 * m.param_bytes)
    items.push_back({m.rope_bytes, "for its rotary tables (context_length " + std::to_string(cfg.context_length) +
                                       " x head_dim " + std::to_string(cfg.head_dim()) + ")"});
  return items;
}

void check_model_fits(const std::string& where, const std::string& action, const std::vector<MemoryItem>& items,
                      int copies, const std::string& hint) {
  double each = 0;
  std::string parts;
  for (const auto& it : items) {
    each += it.bytes;
    parts += (parts.empty() ? "" : " + ") + format_bytes(it.bytes) + " " + it.what;
  }
  const double need = each * std::max(copies, 1);
  std::string what = where + ": " + action + " needs " + format_bytes(need) + " of host memory";
  if (copies > 1)
    what += ", " + format_bytes(each) + " for each of the " + std::to_string(copies) + " ranks on this node";
  require_host_memory(need, what + " (" + parts + ")", hint);
}

}  // namespace streamsink
