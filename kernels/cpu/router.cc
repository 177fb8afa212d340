#include "kernels/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moeserve::kernels::cpu {

void RouteTopK(const float* logits, int64_t n, int experts, int k, bool renormalize,
               int32_t* ids, float* weights) {
  std::vector<float> probs(experts);
  std::vector<int32_t> order(experts);
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * experts;
    const float max = *std::max_element(l, l + experts);
    double sum = 0.0;
    for (int e = 0; e < experts; ++e) {
      probs[e] = std::exp(l[e] - max);
      sum += probs[e];
    }
    for (int e = 0; e < experts; ++e) probs[e] = static_cast<float>(probs[e] / sum);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) {
                        return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
                      });
    double chosen = 0.0;
    for (int j = 0; j < k; ++j) chosen += probs[order[j]];
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = order[j];
      weights[t * k + j] =
          renormalize ? static_cast<float>(probs[order[j]] / chosen) : probs[order[j]];
    }
  }
}

}  // namespace moeserve::kernels::cpu
