#include "infer/sampler.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace streamsink {

void SamplerConfig::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw Error("--temperature: must be >= 0, got " + std::to_string(temperature));
  if (!(top_p > 0 && top_p <= 1)) throw Error("--top-p: must be in (0, 1], got " + std::to_string(top_p));
  for (const int64_t id : never_draw)
    if (id < 0 || (vocab_limit > 0 && id >= vocab_limit))
      throw Error("sampler: a never-drawn id " + std::to_string(id) + " outside [0, " + std::to_string(vocab_limit) + ")");
}

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg), gen_(at::make_generator<at::CPUGeneratorImpl>(cfg.seed)) {
  cfg_.validate();
}

at::Tensor Sampler::drawable(const at::Tensor& logits) const {
  TORCH_CHECK(logits.dim() == 1, "Sampler: expected logits [V], got ", logits.sizes());
  const bool limit = cfg_.vocab_limit > 0 && logits.size(0) > cfg_.vocab_limit;
  const auto l = limit ? logits.narrow(0, 0, cfg_.vocab_limit) : logits;  // [V'], a view
  if (cfg_.never_draw.empty()) return l;
  TORCH_CHECK(static_cast<int64_t>(cfg_.never_draw.size()) < l.size(0) &&
                  *std::max_element(cfg_.never_draw.begin(), cfg_.never_draw.end()) < l.size(0),
              "Sampler: never_draw ids must be fewer than and inside the ", l.size(0), " logits");
  if (!never_.defined() || never_.device() != l.device())
    never_ = at::tensor(cfg_.never_draw, at::kLong).to(l.device());
  return l.index_fill(0, never_, -std::numeric_limits<double>::infinity());  // a copy
}

at::Tensor Sampler::distribution(const at::Tensor& logits) const {
  const auto d = distribution_over(drawable(logits.detach()).to(at::kCPU).to(at::kDouble));  // [V']
  return at::constant_pad_nd(d, {0, logits.size(0) - d.size(0)});  // [V]: ids past the limit get 0
}

at::Tensor Sampler::distribution_over(const at::Tensor& l) const {
  if (cfg_.temperature == 0) return at::zeros_like(l).index_fill_(0, l.argmax(), 1.0);
  auto p = at::softmax(l / cfg_.temperature, 0);  // [V]
  if (cfg_.top_p >= 1) return p;
  // Nucleus: sort descending; keep token i while the mass before it is < top_p (so the top token always stays).
  auto [sorted, order] = p.sort(/*dim=*/0, /*descending=*/true);  // [V], [V]
  auto before = sorted.cumsum(0) - sorted;                         // [V] exclusive prefix sums
  auto kept = sorted.masked_fill(before.ge(cfg_.top_p - 1e-9), 0.0);  // 1e-9: sums that reach p up to rounding
  kept.narrow(0, 0, 1).copy_(sorted.narrow(0, 0, 1));                   // a top_p below 1e-9 still keeps the top token
  auto q = at::zeros_like(p).scatter_(0, order, kept);  // back to vocabulary order
  return q / q.sum();
}

int64_t Sampler::sample(const at::Tensor& logits) {
  if (cfg_.temperature == 0) return drawable(logits).argmax().item<int64_t>();
  auto p = distribution_over(drawable(logits.detach()).to(at::kCPU).to(at::kDouble));
  return at::multinomial(p, 1, /*replacement=*/false, gen_).item<int64_t>();
}

}  // namespace streamsink
