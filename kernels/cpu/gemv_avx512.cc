// Compiled with -mavx512f -mavx512bw -mavx512vl -mfma -mf16c; only called when
// the CPU reports those features (see DetectIsa).
#include <immintrin.h>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

// 16 weights at element offset `i` of a row, as float; masked loads read only
// the lanes in `m`.
template <DType kD>
inline __m512 Load(const void* row, int64_t i, __mmask16 m = 0xffff) {
  if constexpr (kD == DType::kF32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + i);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + i);
    if constexpr (kD == DType::kBF16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
}

template <DType kD>
inline const void* Row(const GemvArgs& a, int64_t r) {
  constexpr int64_t kSize = kD == DType::kF32 ? 4 : 2;
  return static_cast<const char*>(a.w) + r * a.cols * kSize;
}

template <DType kD, int N>
void Rows(const GemvArgs& a) {
  const int64_t cols = a.cols;
  const int64_t main = cols & ~int64_t{31};
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const void* row = Row<kD>(a, r);
    __m512 acc0[N], acc1[N];
    for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < main; c += 32) {
      const __m512 w0 = Load<kD>(row, c);
      const __m512 w1 = Load<kD>(row, c + 16);
      for (int t = 0; t < N; ++t) {
        const float* x = a.x + t * cols + c;
        acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc0[t]);
        acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc1[t]);
      }
    }
    for (; c < cols; c += 16) {
      const int64_t left = cols - c;
      const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
      const __m512 w0 = Load<kD>(row, c, m);
      for (int t = 0; t < N; ++t) {
        acc0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, a.x + t * cols + c), acc0[t]);
      }
    }
    for (int t = 0; t < N; ++t) {
      a.y[t * a.rows + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
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

void GemvAvx512(const GemvArgs& a) {
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
