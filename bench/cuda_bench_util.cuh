// Shared by the GPU benchmarks (one .cu each): CUDA error checks that exit
// with the failing call, and a deterministic fill of bf16 buffers with
// pseudo-normal values (never zeros: they hide unwritten outputs and run
// faster than real data).
#ifndef MOESERVE_BENCH_CUDA_BENCH_UTIL_CUH_
#define MOESERVE_BENCH_CUDA_BENCH_UTIL_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK_CUDA(expr)                                                                 \
  do {                                                                                   \
    cudaError_t err_ = (expr);                                                           \
    if (err_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,          \
                   cudaGetErrorString(err_));                                            \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

namespace moeserve::bench {

// p[i] = bf16 of a sum of 4 hashed uniforms (variance 1/3, rescaled to
// `scale`), a function of (i, seed) only.
static __global__ void FillBf16Kernel(uint16_t* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed * 0x9e3779b9u ^
                 static_cast<uint32_t>(i >> 32) * 0x85ebca6bu;
    float sum = 0;
    for (int r = 0; r < 4; ++r) {
      h ^= h >> 16;
      h *= 0x7feb352du;
      h ^= h >> 15;
      h *= 0x846ca68bu;
      h ^= h >> 16;
      sum += (h & 0xffffff) / 16777216.0f - 0.5f;
    }
    p[i] = static_cast<uint16_t>(__float_as_uint(sum * 1.732f * scale) >> 16);
  }
}

inline void FillBf16(uint16_t* p, size_t n, uint32_t seed, float scale) {
  FillBf16Kernel<<<4096, 256>>>(p, n, seed, scale);
  CHECK_CUDA(cudaGetLastError());
}

// cudaMalloc of n values (at least one); exits on failure. Benchmarks keep
// their buffers until they exit.
template <typename T>
T* Alloc(size_t n) {
  T* p = nullptr;
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace moeserve::bench

#endif  // MOESERVE_BENCH_CUDA_BENCH_UTIL_CUH_
