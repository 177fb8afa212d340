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

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Sums 64-byte lines with 4 independent accumulators so the loads stream.
__attribute__((target("avx2"))) float SumRange(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float x : out) s += x;
  for (; i < n; ++i) s += p[i];
  return s;
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
      const size_t chunk = (n / nt) & ~size_t{31};
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
  return {Median(reads), Median(copies)};
}

}  // namespace moeserve::bench
