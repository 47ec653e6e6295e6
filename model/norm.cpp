#include "model/norm.h"

namespace streamsink {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  auto xf = at::isReducedFloatingType(x.scalar_type()) ? x.to(at::kFloat) : x;  // accumulate in >= float32
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return weight * normed.to(x.scalar_type());
}

}  // namespace streamsink
