#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace streamsink {

double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps) {
  if (c.warmup_steps > 0 && step < c.warmup_steps) return c.lr * (step + 1) / static_cast<double>(c.warmup_steps);
  if (c.schedule == "constant") return c.lr;
  const double span = std::max<int64_t>(1, total_steps - c.warmup_steps);
  const double progress = std::clamp((step - c.warmup_steps) / span, 0.0, 1.0);  // 0 → 1 after warm-up
  if (c.schedule == "cosine") return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * progress));
  if (c.schedule == "linear") return c.lr - (c.lr - c.min_lr) * progress;
  // wsd: stable at lr, then linear to min_lr over the last decay_fraction of all steps (ending at min_lr on the
  // last step)
  const int64_t decay_steps = std::max<int64_t>(1, std::llround(c.decay_fraction * total_steps));
  const int64_t decay_start = std::max<int64_t>(c.warmup_steps, total_steps - decay_steps);
  if (step < decay_start) return c.lr;
  const double t = std::min(1.0, (step - decay_start + 1) / static_cast<double>(total_steps - decay_start));
  return c.lr - (c.lr - c.min_lr) * t;
}

}  // namespace streamsink
