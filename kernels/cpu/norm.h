// RMSNorm as Hugging Face computes it for Llama-family models:
//   out = x * rsqrt(mean(x^2) + eps) * weight
// over rows of `dim` elements; `out` may alias `x`.
#ifndef MOESERVE_KERNELS_CPU_NORM_H_
#define MOESERVE_KERNELS_CPU_NORM_H_

#include <cstdint>

namespace moeserve::kernels::cpu {

void RmsNorm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
             float* out);

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_NORM_H_
