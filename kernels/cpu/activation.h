// SwiGLU's elementwise part: out[i] = silu(gate[i]) * up[i], with
// silu(x) = x / (1 + exp(-x)). `out` may alias `gate` or `up`.
#ifndef MOESERVE_KERNELS_CPU_ACTIVATION_H_
#define MOESERVE_KERNELS_CPU_ACTIVATION_H_

#include <cstdint>

namespace moeserve::kernels::cpu {

void SiluMul(const float* gate, const float* up, int64_t n, float* out);

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_ACTIVATION_H_
