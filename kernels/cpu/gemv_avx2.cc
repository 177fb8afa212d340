// Compiled with -mavx2 -mfma -mf16c; only called when the CPU reports those
// features (see DetectIsa).
#include <immintrin.h>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

// 8 weights at element offset `i` of a row, as float.
template <DType kD>
inline __m256 Load(const void* row, int64_t i) {
  if constexpr (kD == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i));
    if constexpr (kD == DType::kBF16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
}

template <DType kD>
inline float LoadOne(const void* row, int64_t i) {
  if constexpr (kD == DType::kF32) {
    return static_cast<const float*>(row)[i];
  } else if constexpr (kD == DType::kBF16) {
    return BF16ToFloat(static_cast<const uint16_t*>(row)[i]);
  } else {
    return F16ToFloat(static_cast<const uint16_t*>(row)[i]);
  }
}

inline float Sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType kD, int N>
void Rows(const GemvArgs& a) {
  constexpr int64_t kSize = kD == DType::kF32 ? 4 : 2;
  const int64_t cols = a.cols;
  const int64_t main = cols & ~int64_t{15};
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const void* row = static_cast<const char*>(a.w) + r * cols * kSize;
    __m256 acc0[N], acc1[N];
    for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c < main; c += 16) {
      const __m256 w0 = Load<kD>(row, c);
      const __m256 w1 = Load<kD>(row, c + 8);
      for (int t = 0; t < N; ++t) {
        const float* x = a.x + t * cols + c;
        acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc1[t]);
      }
    }
    for (int t = 0; t < N; ++t) {
      float tail = 0.0f;
      const float* x = a.x + t * cols;
      for (int64_t k = c; k < cols; ++k) tail += LoadOne<kD>(row, k) * x[k];
      a.y[t * a.rows + r] = Sum(_mm256_add_ps(acc0[t], acc1[t])) + tail;
    }
  }
}

template <DType kD>
void Dispatch(const GemvArgs& a) {
  switch (a.n) {
    case 1:
      return Rows<kD, 1>(a);
    case 2:
      return Rows<kD, 2>(a);
    case 3:
      return Rows<kD, 3>(a);
    default:
      return Rows<kD, 4>(a);
  }
}

}  // namespace

void GemvAvx2(const GemvArgs& a) {
  switch (a.dtype) {
    case DType::kBF16:
      return Dispatch<DType::kBF16>(a);
    case DType::kF16:
      return Dispatch<DType::kF16>(a);
    default:
      return Dispatch<DType::kF32>(a);
  }
}

}  // namespace moeserve::kernels::cpu
