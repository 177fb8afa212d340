// Argmax and SampleFromLogits (contracts in ops.h): one block per row.
//
// Argmax. The CPU scans `if (logits[i] > logits[best]) best = i` from
// best = 0, which returns the lowest index of the largest value. That is the
// maximum of (key, -index) in lexicographic order, a total order, so any
// reduction tree gives the same answer: each thread keeps the best of a
// strided slice, then warp shuffles, then the warps' winners. NaN is mapped
// so the order stays total and the CPU's answer is kept: a NaN at index 0 is
// never replaced by the CPU (nothing compares greater than NaN), so its key
// is +inf (and index 0 wins any tie); a NaN elsewhere is never taken, so its
// key is -inf (it can only tie, at -inf, with index 0, which comes first).
//
// SampleFromLogits. Three passes over the row, all in index order where it
// matters:
//   1. the block argmax above (its key is the max logit, for p_i);
//   2. each thread sums p_i over its contiguous slice [begin, end) in
//      order, in double, and a block-wide exclusive scan of those sums gives
//      each slice's offset: the cumulative sum before it;
//   3. the cumulative at i is offset + (p_begin + ... + p_i), summed in
//      order from 0 as in pass 2, so a slice's last cumulative is exactly
//      offset + its pass-2 sum. A thread walks its slice only if that last
//      cumulative exceeds the threshold (cumulatives within a slice never
//      decrease, so otherwise no element of it can), and offers the first
//      i with p_i > 0 and cumulative > threshold; the block takes the lowest
//      offer (atomicMin). The threshold is u * total, with total the last
//      slice's last cumulative; for u < 1 and a finite positive total,
//      u * total < total in double rounding, so the last slice crosses
//      whenever it holds a p_i > 0.
// No offer (NaN; or a threshold within rounding of the total when the last
// slice's p_i are all 0) falls back, as the CPU does, to the last token with
// p_i > 0, else 0.
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/ops.h"

namespace moeserve::cuda {
namespace {

constexpr int kRowThreads = 512;
constexpr int kRowWarps = kRowThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;

// The argmax order key of logit v at index i (see the file comment).
__device__ __forceinline__ float ArgmaxKey(float v, int i) {
  if (isnan(v)) return i == 0 ? INFINITY : -INFINITY;
  return v;
}

// True when (key, index) comes before (best_key, best_index): larger key,
// or the same key and a lower index.
__device__ __forceinline__ bool Before(float key, int index, float best_key, int best_index) {
  return key > best_key || (key == best_key && index < best_index);
}

struct Best {
  float key;
  int index;
};

// The argmax of row[0, vocab) over the block; every thread gets it. Ends
// with a __syncthreads, so shared writes made before the call are visible
// to every thread after it.
__device__ Best BlockArgmax(const float* __restrict__ row, int vocab) {
  __shared__ float warp_key[kRowWarps];
  __shared__ int warp_index[kRowWarps];
  // (-inf, INT_MAX) comes after every element, -inf ones included.
  float key = -INFINITY;
  int index = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kRowThreads) {
    const float k = ArgmaxKey(row[i], i);
    if (Before(k, i, key, index)) {
      key = k;
      index = i;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float k = __shfl_xor_sync(kFullMask, key, off);
    const int i = __shfl_xor_sync(kFullMask, index, off);
    if (Before(k, i, key, index)) {
      key = k;
      index = i;
    }
  }
  if (threadIdx.x % 32 == 0) {
    warp_key[threadIdx.x / 32] = key;
    warp_index[threadIdx.x / 32] = index;
  }
  __syncthreads();
  Best best{warp_key[0], warp_index[0]};
  for (int w = 1; w < kRowWarps; ++w) {
    if (Before(warp_key[w], warp_index[w], best.key, best.index)) {
      best = Best{warp_key[w], warp_index[w]};
    }
  }
  return best;
}

__global__ void __launch_bounds__(kRowThreads)
    ArgmaxKernel(const float* __restrict__ logits, int vocab, int32_t* __restrict__ out) {
  const Best best = BlockArgmax(logits + int64_t{blockIdx.x} * vocab, vocab);
  if (threadIdx.x == 0) out[blockIdx.x] = best.index;
}

// p_i as Sampler::Sample: exp((logits[i] - max) * inv_t), the difference in
// float, the product and exp in double.
__device__ __forceinline__ double Prob(float logit, float max, double inv_t) {
  return exp(static_cast<double>(__fsub_rn(logit, max)) * inv_t);
}

// At least 2 blocks per SM: ptxas's own choice, 4, capped it at 32
// registers and spilled.
__global__ void __launch_bounds__(kRowThreads, 2)
    SampleKernel(const float* __restrict__ logits, int vocab, const float* __restrict__ temperature,
                 const double* __restrict__ uniform, int32_t* __restrict__ out) {
  __shared__ double warp_incl[kRowWarps];  // inclusive scan of the warps' sums
  __shared__ double total;
  __shared__ int chosen;
  __shared__ int last_positive;
  const int64_t r = blockIdx.x;
  const float* row = logits + r * vocab;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (tid == 0) {
    chosen = INT_MAX;
    last_positive = 0;
    total = 0.0;
  }
  // Pass 1 (its final __syncthreads publishes the initializations above).
  const Best best = BlockArgmax(row, vocab);
  const float t = temperature[r];
  if (t <= 0.0f) {  // block-uniform: the whole block returns
    if (tid == 0) out[r] = best.index;
    return;
  }
  const double inv_t = 1.0 / static_cast<double>(t);
  const float max = best.key;

  // Pass 2: this thread's slice sum, then the exclusive scan over threads.
  const int chunk = (vocab + kRowThreads - 1) / kRowThreads;
  const int begin = min(tid * chunk, vocab);
  const int end = min(begin + chunk, vocab);
  double local = 0.0;
  for (int i = begin; i < end; ++i) local += Prob(row[i], max, inv_t);

  double incl = local;  // inclusive scan within the warp
  for (int off = 1; off < 32; off <<= 1) {
    const double o = __shfl_up_sync(kFullMask, incl, off);
    if (lane >= off) incl += o;
  }
  double excl = __shfl_up_sync(kFullMask, incl, 1);
  if (lane == 0) excl = 0.0;
  if (lane == 31) warp_incl[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    double w = lane < kRowWarps ? warp_incl[lane] : 0.0;
    for (int off = 1; off < 32; off <<= 1) {
      const double o = __shfl_up_sync(kFullMask, w, off);
      if (lane >= off) w += o;
    }
    if (lane < kRowWarps) warp_incl[lane] = w;
  }
  __syncthreads();
  const double offset = warp > 0 ? warp_incl[warp - 1] + excl : excl;
  const double slice_last = offset + local;  // this slice's last cumulative
  if (begin < end && end == vocab) total = slice_last;  // exactly one thread
  __syncthreads();

  // Pass 3: the first cumulative above the threshold.
  const double threshold = uniform[r] * total;
  if (threshold < slice_last) {
    double part = 0.0;
    for (int i = begin; i < end; ++i) {
      const double p = Prob(row[i], max, inv_t);
      part += p;
      if (p > 0.0 && threshold < offset + part) {
        atomicMin(&chosen, i);
        break;
      }
    }
  }
  __syncthreads();
  if (chosen != INT_MAX) {  // block-uniform
    if (tid == 0) out[r] = chosen;
    return;
  }
  // Fallback: the last token with p_i > 0, else 0.
  for (int i = end - 1; i >= begin && i > 0; --i) {
    if (Prob(row[i], max, inv_t) > 0.0) {
      atomicMax(&last_positive, i);
      break;
    }
  }
  __syncthreads();
  if (tid == 0) out[r] = last_positive;
}

bool BadRowShape(int64_t rows, int vocab) {
  return vocab < 1 || vocab > kMaxSampleVocab || rows < 0 || rows > INT32_MAX;
}

}  // namespace

cudaError_t Argmax(const float* logits, int64_t rows, int vocab, int32_t* out,
                   cudaStream_t stream) {
  if (BadRowShape(rows, vocab)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (logits == nullptr || out == nullptr) return cudaErrorInvalidValue;
  ArgmaxKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(logits, vocab, out);
  return cudaGetLastError();
}

cudaError_t SampleFromLogits(const float* logits, int64_t rows, int vocab,
                             const float* temperature, const double* uniform, int32_t* out,
                             cudaStream_t stream) {
  if (BadRowShape(rows, vocab)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (logits == nullptr || temperature == nullptr || uniform == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  SampleKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(logits, vocab,
                                                                        temperature, uniform, out);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
