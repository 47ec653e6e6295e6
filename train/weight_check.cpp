#include "train/weight_check.h"

#include <ATen/core/grad_mode.h>

namespace streamsink {

at::Tensor weights_norm(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return at::zeros({}, at::kFloat);
  at::NoGradGuard no_grad;  // parameters require grad; a reduction of them is no part of any graph
  return at::norm(at::stack(at::_foreach_norm(tensors))).to(at::kFloat);
}

std::vector<std::string> non_finite_tensors(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::vector<std::string> out;
  if (named.empty()) return out;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> finite;
  for (const auto& [name, t] : named) finite.push_back(at::isfinite(t).all());
  const at::Tensor flags = at::stack(finite).to(at::kCPU).contiguous();  // the one host sync
  const bool* f = flags.const_data_ptr<bool>();
  for (size_t i = 0; i < named.size(); ++i)
    if (!f[i]) out.push_back(named[i].first);
  return out;
}

std::string quoted_list(const std::vector<std::string>& names, size_t shown) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += " and " + std::to_string(names.size() - shown) + " more";
  return s;
}

}  // namespace streamsink
