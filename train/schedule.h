// Learning-rate schedules: linear warm-up from 0, then cosine / linear decay to min_lr, warmup-stable-decay
// (constant, then linear decay over the last decay_fraction of steps; Hu et al., MiniCPM), or constant.
#pragma once
#include <cstdint>

#include "train/train_config.h"

namespace streamsink {

// The LR of optimizer step `step` (0-based) out of `total_steps`. Warm-up: lr·(step + 1)/warmup, so no step runs
// at LR 0 and step warmup − 1 reaches lr. Cosine and linear then decay with progress (step − warmup)/(total −
// warmup), the convention of Hugging Face's get_cosine_schedule_with_warmup: step `warmup` is at lr again and
// min_lr would be reached at step `total`, one past the last (the last step's cosine LR is min_lr plus
// (lr − min_lr)·(1 − cos(π/n))/2 for n = total − warmup decay steps; linear's is min_lr + (lr − min_lr)/n).
// Warmup-stable-decay ends exactly at min_lr on the last step. tests/test_trainer.cpp pins each formula.
double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps);

}  // namespace streamsink
