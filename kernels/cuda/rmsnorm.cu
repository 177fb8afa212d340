#include "kernels/cuda/rmsnorm.h"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void RmsNormKernel(const float* __restrict__ x, int dim,
                              const float* __restrict__ weight, float eps,
                              float* __restrict__ out) {
  const float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kThreads) ss += row[i] * row[i];
  // Warp reduction, then one value per warp through shared memory.
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float scale;
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
    scale = rsqrtf(total / dim + eps);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < dim; i += kThreads) dst[i] = row[i] * scale * weight[i];
}

}  // namespace

cudaError_t RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
                    float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, dim, weight, eps, out);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
