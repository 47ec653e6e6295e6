// The validation set and its loss: one set, and one number for it, whatever the batch size and the rank count.
//
// The set is the first n = min(train.eval_sequences, windows in the split) windows of the validation split, in the
// split's own order (Loader::windows: unshuffled, with the sink prefix). Rank r of R scores windows r, r + R,
// r + 2R, ..., batch_size at a time, and returns the sum of their per-window mean losses; the ranks' sums add up
// to the set's total, so val_loss = total / n names the set, not how it was cut (up to float summation order).
// Every window has the same number of targets (T without a sink prefix, T − k + 1 with k sink tokens), so the
// mean of the per-window means is also the mean per token.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

#include "data/loader.h"
#include "model/transformer.h"

namespace streamsink {

// n: how many windows the set has (min(eval_sequences, the split's windows)).
int64_t validation_size(const Loader& val, int64_t eval_sequences);

// The windows rank `rank` of `world` scores out of the first n: rank, rank + world, ... (none when n <= rank).
std::vector<int64_t> rank_windows(int64_t n, int rank, int world);

// `index` cut into consecutive batches of at most `batch` windows each.
std::vector<Batch> window_batches(const Loader& val, const std::vector<int64_t>& index, int64_t batch);

// Σ over this rank's windows of the window's mean loss, scored `batch` windows per forward under bf16 autocast
// when `bf16`. The caller holds no_grad and eval mode.
double validation_loss_sum(Transformer& model, const Loader& val, int64_t n, int64_t batch, int rank, int world,
                           c10::Device device, bool bf16);

}  // namespace streamsink
