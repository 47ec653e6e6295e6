// Measures the attention sink during training, so a user sees when it emerges:
//  - per layer, the mean share of attention that queries give the first position (for `sink: token` models, the
//    k sink tokens), averaged over heads and over queries past the prefix; for zero/logit models also the mass
//    the extra sink column absorbs;
//  - the validation loss when attention is cut to a window of W recent tokens, against the same budget spent as
//    4 sinks + W − 4 recent (StreamingLLM's Table 1 in miniature, inside one forward, with text positions),
//    scored on positions >= W only, where the window actually drops tokens.
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
};

// `n_prefix`: sink tokens at the start of every sample (0 for models without sink tokens).
SinkMetrics measure_sinks(Transformer& model, const Batch& batch, int64_t n_prefix, int64_t window);

}  // namespace streamsink
