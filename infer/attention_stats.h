// Where attention goes: the share of each layer's and head's attention that lands on the first token(s) of a
// window, and average attention maps (StreamingLLM §3.1, Figure 2: after the first two layers most heads put most
// of their attention on the initial tokens, whatever those tokens are: the attention sink). For zero/logit
// models the mass absorbed by the extra sink column (1 - row sum) is reported too.
//
// Shapes: L layers, H heads, N windows (samples), T tokens per window (sink prefix included), k first tokens.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace streamsink {

struct AttentionStats {
  int64_t layers = 0, heads = 0, tokens = 0, samples = 0, first_k = 1;
  std::vector<int64_t> starts;  // each window's first stream index
  // Means over windows and over queries t in [first_k, T) (rows where the first k tokens are not everything seen):
  at::Tensor first_token_share;  // [L, H] attention on token 0
  at::Tensor first_k_share;      // [L, H] attention on tokens 0..k-1
  at::Tensor sink_column_mass;   // [L, H] 1 - row sum: the extra column of zero/logit sinks (0 otherwise)
  double uniform_first_token_share = 0;  // what a uniform row would put on token 0, same rows
  at::Tensor mean_maps;                  // [L, T, T] attention averaged over windows and heads
};

// Runs the model's explicit attention path with an AttentionProbe over `samples` windows of T tokens spread evenly
// over `stream` (for sink: token models each window is the k sink tokens followed by T - k stream tokens, as in
// training). Error when the stream is shorter than one window.
AttentionStats collect_attention(Transformer model, const std::vector<int32_t>& stream, int64_t T, int64_t samples,
                                 int64_t first_k);

// Every figure as a JSON object: per layer and head the shares, and per layer "mean_maps", the [T, T] average map
// (query rows, key columns) to ~6 significant digits, for scripts/plots/plot_attention.py (Figure 2).
std::string attention_stats_json(const AttentionStats& s, const std::string& sink_kind);

}  // namespace streamsink
