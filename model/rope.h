// Rotary position embeddings (Su et al., RoFormer) in the Hugging Face "rotate half" convention: frequency i
// pairs dimension i with dimension i + D/2, so our q/k projection weights export to HF Llama with no permutation.
//
// Shapes: B batch, H heads, T tokens, D head_dim.
#pragma once
#include <ATen/ATen.h>

namespace streamsink {

// cos/sin tables for integer positions. positions: any shape P (int64); returns {cos, sin}, each P + [D], in
// `dtype`. Angles are computed in double precision: stream positions reach millions and float32 loses the low
// digits of pos·θ_i there.
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t head_dim, double theta,
                                              at::ScalarType dtype);

// rotate_half(x) = [-x2, x1] over the last dim (x1, x2 its halves).
at::Tensor rotate_half(const at::Tensor& x);

// x·cos + rotate_half(x)·sin, in x's dtype. x [B, H, T, D]; cos/sin broadcastable to it ([T, D] or [B, 1, T, D]).
// Computed in the wider of the two dtypes and rounded once: under bf16 autocast q and k leave their projections in
// bf16 while the tables stay fp32, and the rotated q and k stay bf16, the dtype attention runs in (not fp32 copies
// for SDPA to cast again; the logit sink's hi + lo split of b_h/scale is made in that dtype).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace streamsink
