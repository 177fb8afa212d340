// Dense bf16 GEMMs (linear.h) on the shared fragment-order kernel.
#include "kernels/cuda/linear.h"

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/gemm.cuh"

namespace moeserve::cuda {
namespace {

__global__ void ToBf16Kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = FloatToBf16(x[i]);
  }
}

}  // namespace

cudaError_t PackLinearWeight(const uint16_t* w, int out_features, int in_features,
                             uint16_t* packed, cudaStream_t stream) {
  if (out_features <= 0 || in_features <= 0 || in_features % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const int row_tiles = (out_features + 15) / 16;
  const size_t groups = static_cast<size_t>(row_tiles) * 16 * in_features / 8;
  gemm::PackKernel<<<gemm::PackBlocks(groups), 256, 0, stream>>>(
      w, nullptr, 1, row_tiles, in_features, out_features, packed);
  return cudaGetLastError();
}

cudaError_t LinearBf16(const uint16_t* x, int64_t n, int in_features, const uint16_t* packed,
                       int out_features, float* y, cudaStream_t stream, int variant) {
  if (n < 0 || n > INT32_MAX || in_features <= 0 || in_features % 16 != 0 ||
      out_features <= 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  const int row_tiles = (out_features + 15) / 16;
  gemm::GemmArgs args{x,       in_features, row_tiles, out_features,
                      reinterpret_cast<const uint4*>(packed),
                      nullptr, nullptr,     nullptr,   nullptr, nullptr, y};
  args.dense_rows = static_cast<int>(n);
  args.out_limit = out_features;
  // Split-K 8 with one row tile per block fills the card when there are few
  // row tiles (projections); with many (lm_head), four tiles per block
  // re-read x less. Passes of 64 tokens (3, 4) read W once at batch 64 but
  // re-read x from L2 more: measured slower in a whole decode step on an
  // H200 (bench/README.md), so the default stays with 32-token passes.
  if (variant == 0) variant = row_tiles >= 1024 ? 2 : 1;
  switch (variant) {
    case 1: return gemm::Launch<false, 8, 1, 4, 4, false>(0, args, stream);
    case 2: return gemm::Launch<false, 4, 4, 4, 2, false>(0, args, stream);
    case 3: return gemm::Launch<false, 8, 1, 8, 2, false>(0, args, stream);
    case 4: return gemm::Launch<false, 4, 2, 8, 2, false>(0, args, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t FloatToBf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535 * 8);
  ToBf16Kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x, n, out);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
