#include "model/rope.h"

namespace streamsink {

std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t head_dim, double theta,
                                              at::ScalarType dtype) {
  TORCH_CHECK(head_dim % 2 == 0, "rope: head_dim must be even, got ", head_dim);
  auto opts = at::TensorOptions().dtype(at::kDouble).device(positions.device());
  // inv_freq[i] = θ^(-2i/D), i < D/2
  auto inv_freq = at::pow(theta, -at::arange(0, head_dim, 2, opts) / static_cast<double>(head_dim));  // [D/2]
  auto angles = positions.to(at::kDouble).unsqueeze(-1) * inv_freq;                                  // P + [D/2]
  angles = at::cat({angles, angles}, -1);                                                             // P + [D]
  return {angles.cos().to(dtype), angles.sin().to(dtype)};
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return (x * cos + rotate_half(x) * sin).to(x.scalar_type());
}

}  // namespace streamsink
