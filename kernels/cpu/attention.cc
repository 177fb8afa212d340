#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moeserve::kernels::cpu {

void PagedAttention(const AttentionShape& s, const float* q, int64_t n,
                    const int32_t* positions, const PagedKv& kv, float* out) {
  const int d = s.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(s.num_kv_heads) * d;
  const int group = s.num_heads / s.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int64_t work = n * s.num_heads;
  int64_t total_keys = 0;
  for (int64_t i = 0; i < n; ++i) total_keys += positions[i] + 1;

#pragma omp parallel if (total_keys * s.num_heads * d >= (1 << 16))
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t i = w / s.num_heads;
      const int h = static_cast<int>(w % s.num_heads);
      const int kvh = h / group;
      const int pos = positions[i];
      const int lo = s.window > 0 ? std::max(0, pos - s.window + 1) : 0;
      const float* qh = q + (i * s.num_heads + h) * d;
      scores.resize(pos - lo + 1);
      float max = -INFINITY;
      for (int j = lo; j <= pos; ++j) {
        const int64_t row =
            static_cast<int64_t>(kv.block_table[j / kv.block_size]) * kv.block_size +
            j % kv.block_size;
        const float* k = kv.k_pool + row * kv_dim + kvh * d;
        float dot = 0.0f;
        for (int c = 0; c < d; ++c) dot += qh[c] * k[c];
        dot *= scale;
        scores[j - lo] = dot;
        max = std::max(max, dot);
      }
      double sum = 0.0;
      for (float& sc : scores) {
        sc = std::exp(sc - max);
        sum += sc;
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + (i * s.num_heads + h) * d;
      std::fill(o, o + d, 0.0f);
      for (int j = lo; j <= pos; ++j) {
        const int64_t row =
            static_cast<int64_t>(kv.block_table[j / kv.block_size]) * kv.block_size +
            j % kv.block_size;
        const float* v = kv.v_pool + row * kv_dim + kvh * d;
        const float p = scores[j - lo] * inv;
        for (int c = 0; c < d; ++c) o[c] += p * v[c];
      }
    }
  }
}

}  // namespace moeserve::kernels::cpu
