// Whether weights are finite: train/trainer.cpp checks them after every optimizer update (a skip cannot undo an update,
// so non-finite weights stop the run under either nan_policy), train/checkpoint.cpp before it writes them.
// Two stages. Every step, a screen that costs one fused reduction and no host sync: the 2-norm over all the weights
// (at::_foreach_norm, as for the gradient norm; an inf or a NaN anywhere makes it non-finite). Only when it is not
// finite, the exact test (isfinite, tensor by tensor): a 2-norm also overflows for finite weights past ~1e19 in fp32,
// and those are not called non-finite. (An inf-norm never overflows, but LibTorch's CPU kernel for it is scalar:
// 13 ms a step for small.yaml's 3.2M weights, against 0.65 ms for the 2-norm.)
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace streamsink {

// The screen: the 2-norm over every element of `tensors`, as a 0-dim float tensor on their device. Finite: every
// element is finite. Not finite: one of them is not, or the norm overflowed (non_finite_tensors tells which). Stays on
// the device: no host sync (the caller reads it with one it does anyway). 0 for an empty list.
at::Tensor weights_norm(const std::vector<at::Tensor>& tensors);

// The exact test: the names of the tensors that hold an inf or a NaN, in their order (empty: all finite). One host
// sync.
std::vector<std::string> non_finite_tensors(const std::vector<std::pair<std::string, at::Tensor>>& named);

// "'a', 'b', 'c' and 4 more": the first `shown` of `names`, quoted, for a message.
std::string quoted_list(const std::vector<std::string>& names, size_t shown = 3);

}  // namespace streamsink
