#include "train/sink_metrics.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace streamsink {

namespace {

// Per-sequence mean NLL over the scored targets (those not -100): logits [B, T, V], targets [B, T] → [B] double
at::Tensor sequence_nll(const at::Tensor& logits, const at::Tensor& targets) {
  auto nll = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets.reshape({-1}),
                                    /*weight=*/{}, at::Reduction::None, /*ignore_index=*/-100)
                 .view(targets.sizes())
                 .to(at::kDouble);                                    // [B, T], 0 where ignored
  return nll.sum(1) / targets.ne(-100).sum(1).to(at::kDouble);       // [B]
}

double standard_error(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  if (x.size() < 2) return 0;
  double mean = 0, ss = 0;
  for (double v : x) mean += v / n;
  for (double v : x) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (n - 1) / n);
}

}  // namespace

SinkMetrics measure_sinks(Transformer& model, const Batch& batch, int64_t n_prefix, int64_t window) {
  torch::NoGradGuard no_grad;
  const auto device = model->parameters().front().device();
  auto inputs = batch.inputs.to(device), targets = batch.targets.to(device);
  const int64_t B = inputs.size(0), T = inputs.size(1);
  const int64_t first = std::max<int64_t>(1, n_prefix);  // the sink positions: [0, first)
  SinkMetrics m;
  m.window = std::min(window, T);
  if (m.window <= 4 || m.window >= T)
    throw Error("measure_sinks: the window W = " + std::to_string(m.window) + " must lie in (4, T = " +
                std::to_string(T) + "): 4 sinks + W - 4 recent tokens, scored past W");

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
  const auto window_nll = sequence_nll(model->forward(inputs, nullptr, &win), scored).cpu();    // [B]
  const auto sink4_nll = sequence_nll(model->forward(inputs, nullptr, &sinks), scored).cpu();  // [B]
  m.window_loss = window_nll.mean().item<double>();  // every sequence scores the same T − W targets
  m.sink4_loss = sink4_nll.mean().item<double>();
  m.sequences = B;
  m.scored_tokens = scored.ne(-100).sum().item<int64_t>();
  const auto gaps = (window_nll - sink4_nll).contiguous();
  m.sequence_gaps.assign(gaps.data_ptr<double>(), gaps.data_ptr<double>() + B);
  m.gap_se = standard_error(m.sequence_gaps);
  return m;
}

SinkMetrics measure_sinks(Transformer& model, const std::vector<Batch>& batches, int64_t n_prefix, int64_t window,
                          int64_t rows_per_forward) {
  if (batches.empty()) throw Error("measure_sinks: no batch to measure");
  if (rows_per_forward <= 0) {
    const auto& c = model->config();
    const int64_t T = batches.front().inputs.size(1);
    const int64_t probe_bytes_per_row = c.n_layers * c.n_heads * T * T * 4;
    rows_per_forward = std::max<int64_t>(1, (int64_t{512} << 20) / probe_bytes_per_row);
  }
  SinkMetrics total;
  double window_sum = 0, sink4_sum = 0;
  for (const auto& b : batches) {
    for (int64_t r0 = 0; r0 < b.inputs.size(0); r0 += rows_per_forward) {
      const int64_t n = std::min(rows_per_forward, b.inputs.size(0) - r0);
      const SinkMetrics m =
          measure_sinks(model, Batch{b.inputs.narrow(0, r0, n), b.targets.narrow(0, r0, n)}, n_prefix, window);
      // every sequence has the same queries and scored targets: means weighted by sequences
      if (total.first_share.empty()) total.first_share.assign(m.first_share.size(), 0.0);
      if (total.extra_share.empty()) total.extra_share.assign(m.extra_share.size(), 0.0);
      for (size_t l = 0; l < m.first_share.size(); ++l) total.first_share[l] += m.first_share[l] * n;
      for (size_t l = 0; l < m.extra_share.size(); ++l) total.extra_share[l] += m.extra_share[l] * n;
      window_sum += m.window_loss * n;
      sink4_sum += m.sink4_loss * n;
      total.sequences += n;
      total.scored_tokens += m.scored_tokens;
      total.window = m.window;
      total.sequence_gaps.insert(total.sequence_gaps.end(), m.sequence_gaps.begin(), m.sequence_gaps.end());
    }
  }
  const double n = static_cast<double>(total.sequences);
  for (auto& s : total.first_share) s /= n;
  for (auto& s : total.extra_share) s /= n;
  total.window_loss = window_sum / n;
  total.sink4_loss = sink4_sum / n;
  total.gap_se = standard_error(total.sequence_gaps);
  return total;
}

}  // namespace streamsink
