// The experts' grouped GEMMs, the weight packing they read, and the combine.
// See moe.h for the layout and why.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/linear.h"
#include "kernels/cuda/moe.h"

namespace moeserve::cuda {

using gemm::GemmArgs;
using gemm::Launch;
using gemm::PackBlocks;
using gemm::PackKernel;

namespace {

// Picks the GEMM variant by the mean rows per expert: few rows need many
// bytes in flight, many rows need the activations re-read less.
int DefaultGemmVariant(int rows, int experts) {
  // Measured on an H200 at Qwen3-30B-A3B's sizes (bench/README.md): 1 up
  // to ~8 rows per expert, then 2.
  return rows <= 8 * experts ? 1 : 2;
}

constexpr int kCombineThreads = 256;

// One block per token: the token's k (expert id, weight, row) sorted by id
// in shared memory, then each thread sums its columns in that order.
__global__ void CombineKernel(const float* __restrict__ y, const int32_t* __restrict__ ids,
                              const float* __restrict__ weights,
                              const int32_t* __restrict__ pair_row, int k, int hidden,
                              float* __restrict__ out) {
  __shared__ int s_id[16], s_row[16];
  __shared__ float s_w[16];
  __shared__ int l_id[16], l_row[16];
  __shared__ float l_w[16];
  const size_t t = blockIdx.x;
  if (threadIdx.x < k) {  // the k loads in parallel, then one thread sorts
    l_id[threadIdx.x] = ids[t * k + threadIdx.x];
    l_w[threadIdx.x] = weights[t * k + threadIdx.x];
    l_row[threadIdx.x] = pair_row[t * k + threadIdx.x];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int j = 0; j < k; ++j) {  // insertion sort by expert id, k <= 16
      const int id = l_id[j];
      const float w = l_w[j];
      const int row = l_row[j];
      int i = j;
      while (i > 0 && s_id[i - 1] > id) {
        s_id[i] = s_id[i - 1];
        s_w[i] = s_w[i - 1];
        s_row[i] = s_row[i - 1];
        --i;
      }
      s_id[i] = id;
      s_w[i] = w;
      s_row[i] = row;
    }
  }
  __syncthreads();
  if (hidden % 4 == 0) {  // 16-byte loads; the k terms' loads issued together
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* out4 = reinterpret_cast<float4*>(out + t * hidden);
    const int h4 = hidden / 4;
    for (int c = threadIdx.x; c < h4; c += kCombineThreads) {
      float4 v[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if (j < k) v[j] = y4[static_cast<size_t>(s_row[j]) * h4 + c];
      }
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if (j < k) {
          acc.x += s_w[j] * v[j].x;
          acc.y += s_w[j] * v[j].y;
          acc.z += s_w[j] * v[j].z;
          acc.w += s_w[j] * v[j].w;
        }
      }
      out4[c] = acc;
    }
    return;
  }
  for (int c = threadIdx.x; c < hidden; c += kCombineThreads) {
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) acc += s_w[j] * y[static_cast<size_t>(s_row[j]) * hidden + c];
    out[t * hidden + c] = acc;
  }
}

// The variants (MoeGemmVariantName below). Keep the two in step.
template <bool kGateUp>
cudaError_t LaunchGemm(int variant, int rows, int experts, int max_active, const GemmArgs& a,
                       cudaStream_t stream) {
  if (variant == 0) variant = DefaultGemmVariant(rows, experts);
  switch (variant) {
    case 1: return Launch<kGateUp, 4, 4, 2, 2>(max_active, a, stream);
    case 2: return Launch<kGateUp, 2, 8, 4, 1>(max_active, a, stream);
    case 3: return Launch<kGateUp, 4, 4, 4, 2>(max_active, a, stream);
    case 4: return Launch<kGateUp, 4, 8, 2, 1>(max_active, a, stream);
    case 5: return Launch<kGateUp, 2, 8, 4, 1, false>(max_active, a, stream);
    case 6: return Launch<kGateUp, 4, 8, 4, 1>(max_active, a, stream);
    case 7: return Launch<kGateUp, 1, 8, 4, 1>(max_active, a, stream);
    case 8: return Launch<kGateUp, 8, 2, 4, 2, false>(max_active, a, stream);
    case 9: return Launch<kGateUp, 4, 4, 4, 2, false>(max_active, a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

const char* MoeGemmVariantName(int variant) {
  switch (variant) {
    case 1: return "split 4, 4 tiles, 16 tok, unroll 2";
    case 2: return "split 2, 8 tiles, 32 tok, unroll 1";
    case 3: return "split 4, 4 tiles, 32 tok, unroll 2";
    case 4: return "split 4, 8 tiles, 16 tok, unroll 1";
    case 5: return "split 2, 8 tiles, 32 tok, unroll 1, B not prefetched";
    case 6: return "split 4, 8 tiles, 32 tok, unroll 1";
    case 7: return "split 1, 8 tiles, 32 tok, unroll 1";
    case 8: return "split 8, 2 tiles, 32 tok, unroll 2, B not prefetched";
    case 9: return "split 4, 4 tiles, 32 tok, unroll 2, B not prefetched";
    default: return nullptr;
  }
}

int MoeDefaultGemmVariant(int rows, int experts) { return DefaultGemmVariant(rows, experts); }

cudaError_t MoePackGateUp(const uint16_t* gate, const uint16_t* up, int experts, int inter,
                          int hidden, uint16_t* packed, cudaStream_t stream) {
  if (experts <= 0 || inter <= 0 || inter % 16 != 0 || hidden <= 0 || hidden % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const size_t groups = static_cast<size_t>(experts) * inter * hidden * 2 / 8;
  PackKernel<<<PackBlocks(groups), 256, 0, stream>>>(gate, up, experts, inter / 8, hidden,
                                                     2 * inter, packed);
  return cudaGetLastError();
}

cudaError_t MoePackDown(const uint16_t* down, int experts, int hidden, int inter,
                        uint16_t* packed, cudaStream_t stream) {
  if (experts <= 0 || inter <= 0 || inter % 16 != 0 || hidden <= 0 || hidden % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const size_t groups = static_cast<size_t>(experts) * inter * hidden / 8;
  PackKernel<<<PackBlocks(groups), 256, 0, stream>>>(down, nullptr, experts, hidden / 16, inter,
                                                     hidden, packed);
  return cudaGetLastError();
}

cudaError_t MoeGateUp(const uint16_t* x, int hidden, int inter, const uint16_t* gate_up_packed,
                      int experts, const int32_t* offsets, const int32_t* active, const int32_t* active_count,
                      int rows, const int32_t* row_token, uint16_t* h, cudaStream_t stream,
                      int variant) {
  if (hidden <= 0 || hidden % 16 != 0 || inter <= 0 || inter % 16 != 0 || experts <= 0 ||
      rows < 0) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  const GemmArgs args{x,      hidden, inter / 8,    inter,     reinterpret_cast<const uint4*>(gate_up_packed),
                      offsets, active, active_count, row_token, h,   nullptr};
  return LaunchGemm<true>(variant, rows, experts, std::min(experts, rows), args, stream);
}

cudaError_t MoeDown(const uint16_t* h, int inter, int hidden, const uint16_t* down_packed,
                    int experts, const int32_t* offsets, const int32_t* active, const int32_t* active_count,
                    int rows, float* y, cudaStream_t stream, int variant) {
  if (hidden <= 0 || hidden % 16 != 0 || inter <= 0 || inter % 16 != 0 || experts <= 0 ||
      rows < 0) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  GemmArgs args{h,       inter,  hidden / 16,  hidden,  reinterpret_cast<const uint4*>(down_packed),
                offsets, active, active_count, nullptr, nullptr, y};
  args.out_limit = hidden;
  return LaunchGemm<false>(variant, rows, experts, std::min(experts, rows), args, stream);
}

cudaError_t MoePackRouter(const uint16_t* router, int experts, int hidden, uint16_t* packed,
                          cudaStream_t stream) {
  return PackLinearWeight(router, experts, hidden, packed, stream);
}

cudaError_t MoeRouterLogits(const uint16_t* x, int64_t n, int hidden,
                            const uint16_t* router_packed, int experts, float* logits,
                            cudaStream_t stream) {
  // One dense [E, H] matrix; split-K 8 since K (= H) is long and, at small
  // n, there are few row tiles.
  return LinearBf16(x, n, hidden, router_packed, experts, logits, stream, 1);
}

cudaError_t MoeCombine(const float* y, const int32_t* ids, const float* weights,
                       const int32_t* pair_row, int64_t n, int k, int hidden, float* out,
                       cudaStream_t stream) {
  if (n < 0 || n > INT32_MAX || k <= 0 || k > 16 || hidden <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  CombineKernel<<<static_cast<unsigned>(n), kCombineThreads, 0, stream>>>(y, ids, weights,
                                                                          pair_row, k, hidden,
                                                                          out);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
