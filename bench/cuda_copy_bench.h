// Kernels of the device-to-device copy benchmark (bench/cuda_copy_bench_main.cc):
// a fill with non-zero pseudo-random words, the 16-byte vectorized copy that
// is timed beside cudaMemcpyAsync, and a compare that checks the copy.
//
// Host launchers take raw device pointers, a length in 16-byte vectors and a
// stream, and return the launch error (cudaGetLastError) without waiting for
// the kernel. Pointers must be 16-byte aligned (cudaMalloc's are).
#ifndef MOESERVE_BENCH_CUDA_COPY_BENCH_H_
#define MOESERVE_BENCH_CUDA_COPY_BENCH_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::bench {

// dst[i] = a hash of (i, seed) with every 32-bit word non-zero.
cudaError_t FillNonZero(uint4* dst, int64_t n16, uint32_t seed, cudaStream_t stream);

// dst[i] = src[i] for i < n16: 16-byte loads and stores, grid-stride, four
// vectors in flight per thread. `blocks` 0 picks full occupancy on the device.
cudaError_t VectorCopy(const uint4* src, uint4* dst, int64_t n16, int blocks, cudaStream_t stream);

// Adds to *mismatches (device memory, zeroed by the caller) the number of i
// with a[i] != b[i].
cudaError_t CountMismatches(const uint4* a, const uint4* b, int64_t n16,
                            unsigned long long* mismatches, cudaStream_t stream);

}  // namespace moeserve::bench

#endif  // MOESERVE_BENCH_CUDA_COPY_BENCH_H_
