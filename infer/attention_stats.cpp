#include "infer/attention_stats.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"
#include "infer/decoder.h"
#include "model/attention.h"

namespace streamsink {

AttentionStats collect_attention(Transformer model, const std::vector<int32_t>& stream, int64_t T, int64_t samples,
                                 int64_t first_k) {
  torch::NoGradGuard no_grad;
  const auto& cfg = model->config();
  const auto prefix = sink_prefix(cfg);
  const auto k = static_cast<int64_t>(prefix.size());
  if (T <= k + 1) throw Error("--tokens: " + std::to_string(T) + " leaves no room after the sink prefix");
  if (samples <= 0) throw Error("--samples: must be positive, got " + std::to_string(samples));
  if (first_k <= 0 || first_k >= T) throw Error("--first-k: must be in [1, --tokens), got " + std::to_string(first_k));
  const int64_t span = T - k, n = static_cast<int64_t>(stream.size());
  if (n < span)
    throw Error("--data: the stream has " + std::to_string(n) + " tokens, fewer than one window of " +
                std::to_string(span));

  AttentionStats s;
  s.layers = cfg.n_layers, s.heads = cfg.n_heads, s.tokens = T, s.samples = samples, s.first_k = first_k;
  for (int64_t i = 0; i < samples; ++i) s.starts.push_back(samples == 1 ? 0 : i * (n - span) / (samples - 1));

  const auto dev = model->parameters().front().device();
  std::vector<at::Tensor> sum_maps_lh(cfg.n_layers);  // [H, T, T] summed over windows
  const int64_t batch = 8;
  for (int64_t b0 = 0; b0 < samples; b0 += batch) {
    const int64_t nb = std::min(batch, samples - b0);
    auto x = at::empty({nb, T}, at::kLong);  // [nb, T]
    auto xp = x.accessor<int64_t, 2>();
    for (int64_t i = 0; i < nb; ++i) {
      for (int64_t j = 0; j < k; ++j) xp[i][j] = prefix[j];
      for (int64_t j = 0; j < span; ++j) xp[i][k + j] = stream[s.starts[b0 + i] + j];
    }
    AttentionProbe probe;
    model->forward(x.to(dev), &probe);
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      auto p = probe.probs[l].to(at::kCPU).to(at::kDouble).sum(0);  // [H, T, T]
      sum_maps_lh[l] = sum_maps_lh[l].defined() ? sum_maps_lh[l] + p : p;
    }
  }
  std::vector<at::Tensor> first, firstk, sinkm, maps;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    auto m = sum_maps_lh[l] / static_cast<double>(samples);   // [H, T, T]
    auto rows = m.narrow(1, first_k, T - first_k);             // [H, T - k', T]: queries t >= first_k
    first.push_back(rows.select(2, 0).mean(1));                 // [H]
    firstk.push_back(rows.narrow(2, 0, first_k).sum(2).mean(1));  // [H]
    sinkm.push_back((1.0 - rows.sum(2)).clamp_min(0.0).mean(1));  // [H]
    maps.push_back(m.mean(0));                                  // [T, T]
  }
  s.first_token_share = at::stack(first).to(at::kFloat);   // [L, H]
  s.first_k_share = at::stack(firstk).to(at::kFloat);      // [L, H]
  s.sink_column_mass = at::stack(sinkm).to(at::kFloat);    // [L, H]
  s.mean_maps = at::stack(maps).to(at::kFloat);            // [L, T, T]
  double u = 0;
  for (int64_t t = first_k; t < T; ++t) u += 1.0 / (t + 1);
  s.uniform_first_token_share = u / (T - first_k);
  return s;
}

namespace {

// `v` to 6 significant digits: the maps are L·T·T numbers, and float's 9 digits (or double's 17) would bloat the file.
double round6(float v) {
  if (v == 0.0f || !std::isfinite(v)) return v;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(v));
  return std::strtod(buf, nullptr);
}

}  // namespace

std::string attention_stats_json(const AttentionStats& s, const std::string& sink_kind) {
  auto row = [](const at::Tensor& t, int64_t l) {
    auto r = t.select(0, l).contiguous();
    return std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
  };
  nlohmann::json j;
  j["sink"] = sink_kind;
  j["tokens"] = s.tokens;
  j["samples"] = s.samples;
  j["first_k"] = s.first_k;
  j["window_starts"] = s.starts;
  j["uniform_first_token_share"] = s.uniform_first_token_share;
  auto layers = nlohmann::json::array();
  for (int64_t l = 0; l < s.layers; ++l) {
    nlohmann::json L;
    L["layer"] = l;
    L["first_token_share"] = row(s.first_token_share, l);
    L["first_k_share"] = row(s.first_k_share, l);
    L["sink_column_mass"] = row(s.sink_column_mass, l);
    L["mean_first_token_share"] = s.first_token_share.select(0, l).mean().item<double>();
    L["mean_first_k_share"] = s.first_k_share.select(0, l).mean().item<double>();
    L["mean_sink_column_mass"] = s.sink_column_mass.select(0, l).mean().item<double>();
    layers.push_back(L);
  }
  j["layers"] = layers;
  // Per layer the [T, T] map averaged over windows and heads, rows = query position, columns = key position (zero
  // above the diagonal), to ~6 significant digits, one query row a line (dump(2) would put each number on its own).
  std::string maps = "[";
  if (s.mean_maps.defined()) {
    const auto mm = s.mean_maps.to(at::kFloat).contiguous();  // [L, T, T]
    const auto a = mm.accessor<float, 3>();
    for (int64_t l = 0; l < mm.size(0); ++l) {
      maps += l ? ",\n    [" : "\n    [";
      for (int64_t q = 0; q < mm.size(1); ++q) {
        std::vector<double> r(static_cast<size_t>(mm.size(2)));
        for (int64_t key = 0; key < mm.size(2); ++key) r[static_cast<size_t>(key)] = round6(a[l][q][key]);
        maps += (q ? ",\n      " : "\n      ") + nlohmann::json(r).dump();
      }
      maps += "\n    ]";
    }
    maps += "\n  ";
  }
  maps += "]";
  auto out = j.dump(2);  // "{\n  ...\n}"
  return out.substr(0, out.size() - 2) + ",\n  \"mean_maps\": " + maps + "\n}\n";
}

}  // namespace streamsink
