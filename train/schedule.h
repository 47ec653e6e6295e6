// Learning-rate schedules: linear warm-up from 0, then cosine / linear decay to min_lr, warmup-stable-decay
// (constant, then linear decay over the last decay_fraction of steps; Hu et al., MiniCPM), or constant.
#pragma once
#include <cstdint>

#include "train/train_config.h"

namespace streamsink {

// The LR of optimizer step `step` (0-based) out of `total_steps`.
double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps);

}  // namespace streamsink
