#include "train/validation.h"

#include <algorithm>
#include <cstddef>

#include "model/autocast.h"

namespace streamsink {

int64_t validation_size(const Loader& val, int64_t eval_sequences) {
  return std::min(eval_sequences, val.windows_per_epoch());
}

std::vector<int64_t> rank_windows(int64_t n, int rank, int world) {
  std::vector<int64_t> index;
  for (int64_t w = rank; w < n; w += world) index.push_back(w);
  return index;
}

namespace {

// Calls f(batch) for `index` cut into consecutive batches of at most `batch` windows, built one at a time.
template <class F>
void for_each_batch(const Loader& val, const std::vector<int64_t>& index, int64_t batch, F f) {
  for (size_t i = 0; i < index.size(); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(index.size(), i + static_cast<size_t>(batch));
    f(val.windows(std::vector<int64_t>(index.begin() + static_cast<std::ptrdiff_t>(i),
                                       index.begin() + static_cast<std::ptrdiff_t>(end))));
  }
}

}  // namespace

std::vector<Batch> window_batches(const Loader& val, const std::vector<int64_t>& index, int64_t batch) {
  std::vector<Batch> out;
  for_each_batch(val, index, batch, [&](Batch b) { out.push_back(std::move(b)); });
  return out;
}

double validation_loss_sum(Transformer& model, const Loader& val, int64_t n, int64_t batch, int rank, int world,
                           c10::Device device, bool bf16) {
  double sum = 0;
  for_each_batch(val, rank_windows(n, rank, world), batch, [&](const Batch& b) {  // one batch in memory at a time
    AutocastGuard ac(bf16, device.type());
    // the batch's mean over its targets × its rows = Σ of its windows' means (every window has as many targets)
    const double mean = model->loss(model->forward(b.inputs.to(device)), b.targets.to(device)).item<double>();
    sum += mean * static_cast<double>(b.inputs.size(0));
  });
  return sum;
}

}  // namespace streamsink
