// Compiled with -mavx2 -mfma -mf16c; only called when the CPU reports those
// features (see DetectIsa).
#include <immintrin.h>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

inline __m256 LoadBF16(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline __m256 LoadF16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float Sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <bool kBF16, int N>
void Rows(const GemvArgs& a) {
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  const int64_t cols = a.cols;
  const int64_t main = cols & ~int64_t{15};
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const uint16_t* row = w + r * cols;
    __m256 acc0[N], acc1[N];
    for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c < main; c += 16) {
      const __m256 w0 = kBF16 ? LoadBF16(row + c) : LoadF16(row + c);
      const __m256 w1 = kBF16 ? LoadBF16(row + c + 8) : LoadF16(row + c + 8);
      for (int t = 0; t < N; ++t) {
        const float* x = a.x + t * cols + c;
        acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc1[t]);
      }
    }
    for (int t = 0; t < N; ++t) {
      float tail = 0.0f;
      const float* x = a.x + t * cols;
      for (int64_t k = c; k < cols; ++k) {
        tail += (kBF16 ? BF16ToFloat(row[k]) : F16ToFloat(row[k])) * x[k];
      }
      a.y[t * a.rows + r] = Sum(_mm256_add_ps(acc0[t], acc1[t])) + tail;
    }
  }
}

template <bool kBF16>
void Dispatch(const GemvArgs& a) {
  switch (a.n) {
    case 1:
      return Rows<kBF16, 1>(a);
    case 2:
      return Rows<kBF16, 2>(a);
    case 3:
      return Rows<kBF16, 3>(a);
    default:
      return Rows<kBF16, 4>(a);
  }
}

}  // namespace

void GemvAvx2(const GemvArgs& a) {
  if (a.dtype == DType::kBF16) {
    Dispatch<true>(a);
  } else {
    Dispatch<false>(a);
  }
}

}  // namespace moeserve::kernels::cpu
