// Compiled with -mavx512f -mavx512bw -mavx512vl -mfma -mf16c; only called when the CPU
// reports those features (see DetectIsa).
#include <immintrin.h>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

inline __m512 LoadBF16(const uint16_t* p) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline __m512 LoadF16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline __m512 MaskedLoadBF16(const uint16_t* p, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline __m512 MaskedLoadF16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

template <bool kBF16, int N>
void Rows(const GemvArgs& a) {
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  const int64_t cols = a.cols;
  const int64_t main = cols & ~int64_t{31};
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const uint16_t* row = w + r * cols;
    __m512 acc0[N], acc1[N];
    for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < main; c += 32) {
      const __m512 w0 = kBF16 ? LoadBF16(row + c) : LoadF16(row + c);
      const __m512 w1 = kBF16 ? LoadBF16(row + c + 16) : LoadF16(row + c + 16);
      for (int t = 0; t < N; ++t) {
        const float* x = a.x + t * cols + c;
        acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc0[t]);
        acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc1[t]);
      }
    }
    for (; c < cols; c += 16) {
      const int64_t left = cols - c;
      const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
      const __m512 w0 = kBF16 ? MaskedLoadBF16(row + c, m) : MaskedLoadF16(row + c, m);
      for (int t = 0; t < N; ++t) {
        acc0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, a.x + t * cols + c), acc0[t]);
      }
    }
    for (int t = 0; t < N; ++t) {
      a.y[t * a.rows + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
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

void GemvAvx512(const GemvArgs& a) {
  if (a.dtype == DType::kBF16) {
    Dispatch<true>(a);
  } else {
    Dispatch<false>(a);
  }
}

}  // namespace moeserve::kernels::cpu
