// RMSNorm on the GPU; the CPU reference is kernels/cpu/norm.h.
//
// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight, float in and
// out (bf16 storage comes with the GPU backend). One block per row: each
// thread sums a strided slice of squares, a block reduction gives the mean,
// then each thread scales its slice. Napkin math: 2 reads + 1 write of the
// row, so a [T, 2048] float call moves 24 KiB per row; at ~3 TB/s that is
// ~8 ns per row — launch overhead dominates below a few hundred rows.
//
// Host launcher in FlashInfer style: raw device pointers, sizes and a stream;
// returns the launch status.
#ifndef MOESERVE_KERNELS_CUDA_RMSNORM_H_
#define MOESERVE_KERNELS_CUDA_RMSNORM_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::cuda {

cudaError_t RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
                    float* out, cudaStream_t stream);

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_RMSNORM_H_
