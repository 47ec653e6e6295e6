// Measures the attention sink during training, so a user sees when it emerges:
//  - per layer, the mean share of attention that queries give the first position (for `sink: token` models, the
//    k sink tokens), averaged over heads and over queries past the prefix; for zero/logit models also the mass
//    the extra sink column absorbs;
//  - the validation loss when attention is cut to a window of W recent tokens, against the same budget spent as
//    4 sinks + W − 4 recent (StreamingLLM's Table 1 in miniature, inside one forward, with text positions),
//    scored on positions >= W only, where the window actually drops tokens; with the standard error of their
//    difference, from its per-sequence values (the two losses are paired: same sequences, same tokens), so a gap
//    can be told from noise.
#pragma once
#include <vector>

#include "data/loader.h"
#include "model/transformer.h"

namespace streamsink {

struct SinkMetrics {
  std::vector<double> first_share;  // per layer
  std::vector<double> extra_share;  // per layer (zero/logit models), else empty
  double window_loss = 0;           // 0 sinks + W window
  double sink4_loss = 0;            // 4 sinks + (W − 4) window
  int64_t window = 0;               // W
  int64_t sequences = 0;            // sequences measured
  int64_t scored_tokens = 0;        // targets each loss averages over: sequences × (T − W)
  // standard error of window_loss − sink4_loss: sd of the per-sequence differences / √sequences (0 for one sequence)
  double gap_se = 0;
  std::vector<double> sequence_gaps;  // per sequence: its window loss − its 4-sink loss
};

// `n_prefix`: sink tokens at the start of every sample (0 for models without sink tokens). Error unless
// 4 < min(window, T) < T.
SinkMetrics measure_sinks(Transformer& model, const Batch& batch, int64_t n_prefix, int64_t window);

// The same over several batches (every sequence of each), `rows_per_forward` sequences at a time (0: as many as
// keep the attention probe, [rows, H, T, T] fp32 per layer, within 512 MiB). Shares are means over all queries
// measured, losses over all scored tokens.
SinkMetrics measure_sinks(Transformer& model, const std::vector<Batch>& batches, int64_t n_prefix, int64_t window,
                          int64_t rows_per_forward = 0);

}  // namespace streamsink
