#include "bench/membw.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace moeserve::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Sums the buffer with 8 independent accumulators so the loads stream; the
// widest vectors the CPU has, as the kernels use.
__attribute__((target("avx512f"))) float SumRange512(const float* p, size_t n) {
  __m512 a[8];
  for (auto& v : a) v = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    for (int j = 0; j < 8; ++j) a[j] = _mm512_add_ps(a[j], _mm512_load_ps(p + i + 16 * j));
  }
  for (int j = 1; j < 8; ++j) a[0] = _mm512_add_ps(a[0], a[j]);
  float s = _mm512_reduce_add_ps(a[0]);
  for (; i < n; ++i) s += p[i];
  return s;
}

__attribute__((target("avx2"))) float SumRange256(const float* p, size_t n) {
  __m256 a[8];
  for (auto& v : a) v = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 8; ++j) a[j] = _mm256_add_ps(a[j], _mm256_load_ps(p + i + 8 * j));
  }
  for (int j = 1; j < 8; ++j) a[0] = _mm256_add_ps(a[0], a[j]);
  float out[8];
  _mm256_storeu_ps(out, a[0]);
  float s = 0;
  for (float x : out) s += x;
  for (; i < n; ++i) s += p[i];
  return s;
}

float SumRange(const float* p, size_t n) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 ? SumRange512(p, n) : SumRange256(p, n);
}

}  // namespace


BandwidthResult MeasureBandwidth(size_t bytes, int repeats, int threads) {
  const size_t n = bytes / sizeof(float);
  float* src = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  float* dst = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  // First touch from the threads that will read, then warm.
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) {
    src[i] = 1e-9f * static_cast<float>(i & 1023);
    dst[i] = 0;
  }
  std::vector<double> reads, copies;
  volatile float sink = 0;
  for (int r = 0; r < repeats + 1; ++r) {
    double t0 = Now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = (n / nt) & ~size_t{127};
      const size_t begin = t * chunk, end = t == nt - 1 ? n : begin + chunk;
      total += SumRange(src + begin, end - begin);
    }
    double t1 = Now();
    sink = sink + total;
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = n / nt;
      const size_t begin = t * chunk, end = t == nt - 1 ? n : begin + chunk;
      std::memcpy(dst + begin, src + begin, (end - begin) * sizeof(float));
    }
    double t2 = Now();
    if (r == 0) continue;  // warm-up
    reads.push_back(bytes / (t1 - t0) / 1e9);
    copies.push_back(2.0 * bytes / (t2 - t1) / 1e9);
  }
  std::free(src);
  std::free(dst);
  // The best repeat, as STREAM reports: what the memory system can sustain.
  return {*std::max_element(reads.begin(), reads.end()),
          *std::max_element(copies.begin(), copies.end())};
}

}  // namespace moeserve::bench
