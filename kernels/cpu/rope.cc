#include "kernels/cpu/rope.h"

#include <cmath>

namespace moeserve::kernels::cpu {

RopeTable::RopeTable(int head_dim, double theta) : head_dim_(head_dim) {
  const int half = head_dim / 2;
  inv_freq_.resize(half);
  for (int i = 0; i < half; ++i) {
    inv_freq_[i] = 1.0 / std::pow(theta, (2.0 * i) / head_dim);
  }
}

void RopeTable::Apply(float* x, int64_t n, int heads, const int32_t* positions) const {
  const int half = head_dim_ / 2;
  std::vector<float> cos_v(half), sin_v(half);
  for (int64_t t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = positions[t] * inv_freq_[i];
      cos_v[i] = static_cast<float>(std::cos(angle));
      sin_v[i] = static_cast<float>(std::sin(angle));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim_;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_v[i] - b * sin_v[i];
        v[i + half] = b * cos_v[i] + a * sin_v[i];
      }
    }
  }
}

}  // namespace moeserve::kernels::cpu
