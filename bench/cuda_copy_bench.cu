// Kernels of the device-to-device copy benchmark; see cuda_copy_bench.h.
//
// Napkin math: a copy of N bytes reads N and writes N, so on an H100 SXM
// (HBM3, 5120-bit bus at 2619 MHz DDR: 3.35 TB/s peak) a 1 GiB copy moves
// 2.15 GB and should take ~0.75 ms at ~90 % of peak (~3.0 TB/s read+write).
// A 1 GiB buffer is ~20x the 50 MB L2, and the benchmark alternates between
// two buffer pairs, so nothing is served from L2 between repetitions.
//
// VectorCopy is the plainest kernel that saturates HBM: 16-byte accesses
// (one LDG.128/STG.128 per vector), four independent loads issued before
// the stores so each thread keeps 64 bytes in flight, and a grid-stride loop
// over a grid sized to full occupancy so every SM streams until the end.
#include "bench/cuda_copy_bench.h"

namespace moeserve::bench {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

__device__ __forceinline__ uint32_t Mix(uint64_t x) {
  // splitmix64 finaliser, folded to 32 bits.
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<uint32_t>(x ^ (x >> 32));
}

__global__ void FillNonZeroKernel(uint4* __restrict__ dst, int64_t n16, uint32_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n16;
       i += stride) {
    const uint64_t base = (static_cast<uint64_t>(i) << 2) ^ (static_cast<uint64_t>(seed) << 40);
    // `| 1`: never a zero word, so no compression or zero-page shortcut helps.
    dst[i] = make_uint4(Mix(base) | 1u, Mix(base + 1) | 1u, Mix(base + 2) | 1u, Mix(base + 3) | 1u);
  }
}

__global__ void __launch_bounds__(kThreads)
    VectorCopyKernel(const uint4* __restrict__ src, uint4* __restrict__ dst, int64_t n16) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  // Main loop: kUnroll vectors per thread per step, loads before stores.
  for (; i + (kUnroll - 1) * stride < n16; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) dst[i + u * stride] = v[u];
  }
  for (; i < n16; i += stride) dst[i] = src[i];  // tail
}

__global__ void CountMismatchesKernel(const uint4* __restrict__ a, const uint4* __restrict__ b,
                                      int64_t n16, unsigned long long* mismatches) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned long long bad = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n16;
       i += stride) {
    const uint4 x = a[i], y = b[i];
    bad += (x.x != y.x) | (x.y != y.y) | (x.z != y.z) | (x.w != y.w);
  }
  if (bad) atomicAdd(mismatches, bad);
}

// Enough blocks to fill every SM at the kernel's occupancy.
cudaError_t FullGrid(const void* kernel, int* blocks) {
  int device = 0, sms = 0, per_sm = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) {
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  if (err == cudaSuccess) {
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  }
  *blocks = sms * (per_sm > 0 ? per_sm : 1);
  return err;
}

}  // namespace

cudaError_t FillNonZero(uint4* dst, int64_t n16, uint32_t seed, cudaStream_t stream) {
  if (n16 <= 0) return cudaSuccess;
  int blocks = 0;
  if (cudaError_t err = FullGrid(reinterpret_cast<const void*>(FillNonZeroKernel), &blocks);
      err != cudaSuccess) {
    return err;
  }
  FillNonZeroKernel<<<blocks, kThreads, 0, stream>>>(dst, n16, seed);
  return cudaGetLastError();
}

cudaError_t VectorCopy(const uint4* src, uint4* dst, int64_t n16, int blocks, cudaStream_t stream) {
  if (n16 <= 0) return cudaSuccess;
  if (blocks <= 0) {
    if (cudaError_t err = FullGrid(reinterpret_cast<const void*>(VectorCopyKernel), &blocks);
        err != cudaSuccess) {
      return err;
    }
  }
  VectorCopyKernel<<<blocks, kThreads, 0, stream>>>(src, dst, n16);
  return cudaGetLastError();
}

cudaError_t CountMismatches(const uint4* a, const uint4* b, int64_t n16,
                            unsigned long long* mismatches, cudaStream_t stream) {
  if (n16 <= 0) return cudaSuccess;
  int blocks = 0;
  if (cudaError_t err = FullGrid(reinterpret_cast<const void*>(CountMismatchesKernel), &blocks);
      err != cudaSuccess) {
    return err;
  }
  CountMismatchesKernel<<<blocks, kThreads, 0, stream>>>(a, b, n16, mismatches);
  return cudaGetLastError();
}

}  // namespace moeserve::bench
