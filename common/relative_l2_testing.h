// Test helper: the relative L2 distance ||got - want|| / ||want|| (in double;
// the denominator floored at 1e-30 so an all-zero `want` does not divide by
// zero). The GPU tests compare logits and layer outputs with it.
#ifndef MOESERVE_COMMON_RELATIVE_L2_TESTING_H_
#define MOESERVE_COMMON_RELATIVE_L2_TESTING_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace moeserve {

inline double RelativeL2(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace moeserve

#endif  // MOESERVE_COMMON_RELATIVE_L2_TESTING_H_
