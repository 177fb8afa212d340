// MoE routing on the GPU: softmax + top-k, and the permutation of
// (token, expert) pairs by expert. See moe.h. (The router logits are a
// GEMM: moe_expert.cu.)
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/moe.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kMaxTopK = 16;

constexpr int kTopKWarps = 4;  // tokens per block, one warp each

// One warp per token: each lane holds experts lane, lane + 32, ... in
// registers (fully unrolled, so no local memory). The probabilities follow
// the CPU reference: float exp, a double sum, float(p / sum); the chosen
// ones renormalized by their double sum.
template <int kPerLane>  // experts per lane: ceil(E / 32) <= kPerLane
__global__ void TopKKernel(const float* __restrict__ logits, int n, int experts, int k,
                           bool renormalize, int32_t* __restrict__ ids,
                           float* __restrict__ weights) {
  const int lane = threadIdx.x & 31;
  const int t = blockIdx.x * kTopKWarps + (threadIdx.x >> 5);
  if (t >= n) return;
  const float* l = logits + static_cast<size_t>(t) * experts;
  float p[kPerLane];
  float max = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = i * 32 + lane;
    p[i] = e < experts ? l[e] : -FLT_MAX;
    max = fmaxf(max, p[i]);
  }
  for (int o = 16; o > 0; o >>= 1) max = fmaxf(max, __shfl_xor_sync(0xffffffffu, max, o));
  double sum = 0.0;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (i * 32 + lane < experts) {
      p[i] = expf(p[i] - max);
      sum += p[i];
    }
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    // Padding lanes get -1: below every probability, never chosen.
    p[i] = i * 32 + lane < experts ? static_cast<float>(p[i] / sum) : -1.0f;
  }
  double chosen = 0.0;
  for (int j = 0; j < k; ++j) {
    float best = -2.0f;
    int best_id = INT_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (p[i] > best) {  // ascending i: the first of equal values wins
        best = p[i];
        best_id = i * 32 + lane;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, best_id, o);
      if (ob > best || (ob == best && oi < best_id)) {
        best = ob;
        best_id = oi;
      }
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (i * 32 + lane == best_id) p[i] = -2.0f;  // taken
    }
    chosen += best;
    if (lane == 0) {
      ids[static_cast<size_t>(t) * k + j] = best_id;
      weights[static_cast<size_t>(t) * k + j] = best;
    }
  }
  if (renormalize) {
    __syncwarp();
    if (lane < k) {
      float* w = weights + static_cast<size_t>(t) * k + lane;
      *w = static_cast<float>(static_cast<double>(*w) / chosen);
    }
  }
}

constexpr int kPermuteThreads = 1024;

// One block: count rows per expert (shared atomics), scan counts and the
// "has rows" flags together (Hillis-Steele over kPermuteThreads >= E
// entries), then place each pair at its expert's cursor.
__global__ void __launch_bounds__(kPermuteThreads)
    PermuteKernel(const int32_t* __restrict__ ids, int pairs, int k, int experts,
                  int32_t* __restrict__ offsets, int32_t* __restrict__ active,
                  int32_t* __restrict__ active_count, int32_t* __restrict__ row_token,
                  int32_t* __restrict__ pair_row) {
  __shared__ int count[kPermuteThreads];
  __shared__ int scan_rows[kPermuteThreads];
  __shared__ int scan_flags[kPermuteThreads];
  const int tid = threadIdx.x;
  count[tid] = 0;
  __syncthreads();
  for (int p = tid; p < pairs; p += kPermuteThreads) atomicAdd(&count[ids[p]], 1);
  __syncthreads();
  const int mine = count[tid];
  const int flag = mine > 0 ? 1 : 0;
  scan_rows[tid] = mine;
  scan_flags[tid] = flag;
  __syncthreads();
  for (int off = 1; off < kPermuteThreads; off <<= 1) {
    const int r = tid >= off ? scan_rows[tid - off] : 0;
    const int f = tid >= off ? scan_flags[tid - off] : 0;
    __syncthreads();
    scan_rows[tid] += r;
    scan_flags[tid] += f;
    __syncthreads();
  }
  const int row_begin = scan_rows[tid] - mine;   // exclusive
  const int active_index = scan_flags[tid] - flag;
  __syncthreads();
  if (tid < experts) {
    offsets[tid] = row_begin;
    if (flag) active[active_index] = tid;
    count[tid] = row_begin;  // now the expert's cursor
  }
  if (tid == experts - 1) {
    offsets[experts] = scan_rows[tid];
    active_count[0] = scan_flags[tid];
  }
  __syncthreads();
  for (int p = tid; p < pairs; p += kPermuteThreads) {
    const int row = atomicAdd(&count[ids[p]], 1);
    row_token[row] = p / k;
    pair_row[p] = row;
  }
}

// One thread per row: a binary search for the last e with offsets[e] <= row.
__global__ void RowExpertKernel(const int32_t* __restrict__ offsets, int experts,
                                const int32_t* __restrict__ base, int rows,
                                int32_t* __restrict__ out) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  int lo = 0, hi = experts - 1;  // offsets[lo] <= row < offsets[hi + 1]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  out[row] = lo - base[lo];
}

__global__ void CountTokensKernel(const int32_t* __restrict__ offsets, int experts,
                                  unsigned long long* __restrict__ counters) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e < experts) counters[e] += static_cast<unsigned long long>(offsets[e + 1] - offsets[e]);
}

__global__ void CountRoutesKernel(const int32_t* __restrict__ ids, int64_t max_pairs, int k,
                                  const int32_t* __restrict__ num_tokens, int experts,
                                  unsigned long long* __restrict__ counters) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= max_pairs || p >= int64_t{*num_tokens} * k) return;
  const int32_t e = ids[p];
  if (e >= 0 && e < experts) atomicAdd(&counters[e], 1ULL);
}

}  // namespace

cudaError_t MoeCountRoutes(const int32_t* ids, int64_t max_tokens, int k,
                           const int32_t* num_tokens, int experts,
                           unsigned long long* counters, cudaStream_t stream) {
  if (experts <= 0 || experts > kMaxExperts || k <= 0 || k > kMaxTopK || max_tokens < 0 ||
      max_tokens > (int64_t{1} << 24)) {
    return cudaErrorInvalidValue;
  }
  const int64_t pairs = max_tokens * k;
  if (pairs == 0) return cudaSuccess;
  const int threads = 256;
  CountRoutesKernel<<<static_cast<int>((pairs + threads - 1) / threads), threads, 0, stream>>>(
      ids, pairs, k, num_tokens, experts, counters);
  return cudaGetLastError();
}

cudaError_t MoeRowExpert(const int32_t* offsets, int experts, const int32_t* base, int64_t rows,
                         int32_t* out, cudaStream_t stream) {
  if (experts <= 0 || experts > kMaxExperts || rows < 0 || rows > (int64_t{1} << 24)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  const int threads = 256;
  const int blocks = static_cast<int>((rows + threads - 1) / threads);
  RowExpertKernel<<<blocks, threads, 0, stream>>>(offsets, experts, base, static_cast<int>(rows),
                                                  out);
  return cudaGetLastError();
}

cudaError_t MoeCountTokens(const int32_t* offsets, int experts, unsigned long long* counters,
                           cudaStream_t stream) {
  if (experts <= 0 || experts > kMaxExperts) return cudaErrorInvalidValue;
  CountTokensKernel<<<(experts + 255) / 256, 256, 0, stream>>>(offsets, experts, counters);
  return cudaGetLastError();
}

cudaError_t MoeTopK(const float* logits, int64_t n, int experts, int k, bool renormalize,
                    int32_t* ids, float* weights, cudaStream_t stream) {
  if (n < 0 || n > INT32_MAX || experts <= 0 || experts > kMaxExperts || k <= 0 ||
      k > kMaxTopK || k > experts) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  const int blocks = static_cast<int>((n + kTopKWarps - 1) / kTopKWarps);
  const int threads = kTopKWarps * 32;
  if (experts <= 128) {
    TopKKernel<4><<<blocks, threads, 0, stream>>>(logits, static_cast<int>(n), experts, k,
                                                  renormalize, ids, weights);
  } else if (experts <= 256) {
    TopKKernel<8><<<blocks, threads, 0, stream>>>(logits, static_cast<int>(n), experts, k,
                                                  renormalize, ids, weights);
  } else {
    TopKKernel<kMaxExperts / 32><<<blocks, threads, 0, stream>>>(
        logits, static_cast<int>(n), experts, k, renormalize, ids, weights);
  }
  return cudaGetLastError();
}

cudaError_t MoePermute(const int32_t* ids, int64_t n, int k, int experts, int32_t* offsets,
                       int32_t* active, int32_t* active_count, int32_t* row_token,
                       int32_t* pair_row, cudaStream_t stream) {
  if (n < 0 || k <= 0 || k > kMaxTopK || experts <= 0 || experts > kMaxExperts ||
      n * k > (int64_t{1} << 20)) {
    return cudaErrorInvalidValue;
  }
  PermuteKernel<<<1, kPermuteThreads, 0, stream>>>(ids, static_cast<int>(n * k), k, experts,
                                                   offsets, active, active_count, row_token,
                                                   pair_row);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
