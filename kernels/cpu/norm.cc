#include "kernels/cpu/norm.h"

#include <cmath>

namespace moeserve::kernels::cpu {

void RmsNorm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
             float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    // Sum of squares in double: exact enough that the mean does not depend
    // on the summation order (HF sums in float; the difference is < 1e-7).
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * scale * weight[i];
  }
}

}  // namespace moeserve::kernels::cpu
