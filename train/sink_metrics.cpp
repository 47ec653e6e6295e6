#include "train/sink_metrics.h"

#include <torch/utils.h>

#include <algorithm>

namespace streamsink {

SinkMetrics measure_sinks(Transformer& model, const Batch& batch, int64_t n_prefix, int64_t window) {
  torch::NoGradGuard no_grad;
  const auto device = model->parameters().front().device();
  auto inputs = batch.inputs.to(device), targets = batch.targets.to(device);
  const int64_t T = inputs.size(1);
  const int64_t first = std::max<int64_t>(1, n_prefix);  // the sink positions: [0, first)
  SinkMetrics m;
  m.window = std::min(window, T);

  AttentionProbe probe;
  model->forward(inputs, &probe);
  for (const auto& p : probe.probs) {  // p [B, H, T, T]
    auto rows = p.narrow(2, first, T - first);                                    // queries past the prefix
    m.first_share.push_back(rows.narrow(3, 0, first).sum(-1).mean().item<double>());
    if (model->config().sink == SinkKind::kZero || model->config().sink == SinkKind::kLogit)
      m.extra_share.push_back((1.0 - rows.sum(-1)).mean().item<double>());
  }

  auto scored = targets.clone();
  scored.narrow(1, 0, m.window).fill_(-100);  // only positions where the window has dropped tokens
  AttentionWindow win{0, m.window}, sinks{4, m.window - 4};
  m.window_loss = model->loss(model->forward(inputs, nullptr, &win), scored).item<double>();
  m.sink4_loss = model->loss(model->forward(inputs, nullptr, &sinks), scored).item<double>();
  return m;
}

}  // namespace streamsink
