// EmbeddingGather, GatherRows, RmsNormToBf16, AddInPlace and Rope (contracts
// in ops.h).
//
// Each kernel has a vectorized path (16-byte loads and stores) for the shapes
// and alignments that allow it, and a plain scalar path for the rest; the
// launcher picks one, and both do the same arithmetic per element. Float
// products and sums that the CPU reference rounds one by one use the _rn
// intrinsics, so that nvcc cannot fuse them into an FMA (which rounds once
// and would give other bits than the CPU's).
#include <climits>
#include <cstdint>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/ops.h"

namespace moeserve::cuda {
namespace {

constexpr int kGatherThreads = 256;
constexpr int kNormThreads = 256;
constexpr int kAddThreads = 256;
constexpr int kAddMaxBlocks = 8192;
constexpr int kRopeThreads = 256;
constexpr int kRopeMaxHalf = 512;  // head_dim <= 1024

bool Aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// ---- EmbeddingGather --------------------------------------------------------

// One block per token. kVec: dim % 8 == 0, table and out 16-byte aligned, so
// each thread moves 8 values: one 16-byte load, two 16-byte stores.
template <bool kVec>
__global__ void __launch_bounds__(kGatherThreads)
    EmbeddingGatherKernel(const uint16_t* __restrict__ table, int64_t vocab, int dim,
                          const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int64_t token = blockIdx.x;
  const int32_t id = ids[token];
  const bool valid = id >= 0 && id < vocab;
  const uint16_t* src = table + (valid ? int64_t{id} : 0) * dim;
  float* dst = out + token * dim;
  if constexpr (kVec) {
    const uint4* src8 = reinterpret_cast<const uint4*>(src);
    float4* dst4 = reinterpret_cast<float4*>(dst);
    for (int c = threadIdx.x; c < dim / 8; c += kGatherThreads) {
      float4 lo = make_float4(0.0f, 0.0f, 0.0f, 0.0f), hi = lo;
      if (valid) {
        const uint4 w = src8[c];
        lo = make_float4(Bf16Lo(w.x), Bf16Hi(w.x), Bf16Lo(w.y), Bf16Hi(w.y));
        hi = make_float4(Bf16Lo(w.z), Bf16Hi(w.z), Bf16Lo(w.w), Bf16Hi(w.w));
      }
      dst4[2 * c] = lo;
      dst4[2 * c + 1] = hi;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += kGatherThreads) {
      dst[i] = valid ? Bf16ToFloat(src[i]) : 0.0f;
    }
  }
}

// ---- GatherRows -------------------------------------------------------------

// One block per row, moving T-sized words (uint4, uint32_t or uint8_t).
template <typename T>
__global__ void __launch_bounds__(kGatherThreads)
    GatherRowsKernel(const T* __restrict__ src, int64_t row_words,
                     const int32_t* __restrict__ index, T* __restrict__ dst) {
  const int64_t row = blockIdx.x;
  const T* from = src + int64_t{index[row]} * row_words;
  T* to = dst + row * row_words;
  for (int64_t i = threadIdx.x; i < row_words; i += kGatherThreads) to[i] = from[i];
}

// ---- RmsNormToBf16 ----------------------------------------------------------

// Sum over the block of one double per thread; every thread gets the total.
// The per-warp partials are added in warp order by one thread.
__device__ double BlockSumDouble(double v) {
  constexpr int kWarps = kNormThreads / 32;
  __shared__ double warp_sums[kWarps];
  __shared__ double total;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kWarps; ++w) t += warp_sums[w];
    total = t;
  }
  __syncthreads();
  return total;
}

// The CPU's per-element formula: (x * scale) * weight, two float roundings.
__device__ __forceinline__ float NormValue(float x, float scale, float w) {
  return __fmul_rn(__fmul_rn(x, scale), w);
}

// One block per row. kVec: dim % 4 == 0, x, weight and out_f32 16-byte
// aligned, out_bf16 8-byte aligned: each thread moves 4 values at a time.
// x and out_f32 are not __restrict__: they may be the same array (each
// element is read and then written by the same thread).
template <bool kVec>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormToBf16Kernel(const float* x, int dim, const float* __restrict__ weight, float eps,
                        float* out_f32, uint16_t* __restrict__ out_bf16) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* of = out_f32 == nullptr ? nullptr : out_f32 + row * dim;
  uint16_t* ob = out_bf16 + row * dim;

  // Squares of floats are exact in double; the sum is double, as on the CPU.
  double ss = 0.0;
  if constexpr (kVec) {
    for (int c = threadIdx.x; c < dim / 4; c += kNormThreads) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      ss += double(v.x) * v.x;
      ss += double(v.y) * v.y;
      ss += double(v.z) * v.z;
      ss += double(v.w) * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += kNormThreads) ss += double(xr[i]) * xr[i];
  }
  ss = BlockSumDouble(ss);
  // As the CPU: float(1.0 / sqrt(ss / dim + eps)), IEEE division and sqrt.
  const float scale = static_cast<float>(1.0 / sqrt(ss / dim + static_cast<double>(eps)));

  if constexpr (kVec) {
    for (int c = threadIdx.x; c < dim / 4; c += kNormThreads) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      const float4 w = reinterpret_cast<const float4*>(weight)[c];
      const float4 r = make_float4(NormValue(v.x, scale, w.x), NormValue(v.y, scale, w.y),
                                   NormValue(v.z, scale, w.z), NormValue(v.w, scale, w.w));
      if (of != nullptr) reinterpret_cast<float4*>(of)[c] = r;
      uint2 b;
      b.x = uint32_t{FloatToBf16(r.x)} | (uint32_t{FloatToBf16(r.y)} << 16);
      b.y = uint32_t{FloatToBf16(r.z)} | (uint32_t{FloatToBf16(r.w)} << 16);
      reinterpret_cast<uint2*>(ob)[c] = b;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += kNormThreads) {
      const float r = NormValue(xr[i], scale, weight[i]);
      if (of != nullptr) of[i] = r;
      ob[i] = FloatToBf16(r);
    }
  }
}

// ---- AddInPlace -------------------------------------------------------------

// Grid-stride over n4 float4s (x and y 16-byte aligned), then the n % 4
// leftover floats by the first threads of the grid.
__global__ void __launch_bounds__(kAddThreads)
    AddInPlaceVecKernel(float* x, const float* y, int64_t n) {
  const int64_t n4 = n / 4;
  const int64_t start = int64_t{blockIdx.x} * kAddThreads + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * kAddThreads;
  float4* x4 = reinterpret_cast<float4*>(x);
  const float4* y4 = reinterpret_cast<const float4*>(y);
  for (int64_t i = start; i < n4; i += stride) {
    float4 a = x4[i];
    const float4 b = y4[i];
    a.x = __fadd_rn(a.x, b.x);
    a.y = __fadd_rn(a.y, b.y);
    a.z = __fadd_rn(a.z, b.z);
    a.w = __fadd_rn(a.w, b.w);
    x4[i] = a;
  }
  if (start < n - n4 * 4) {
    const int64_t i = n4 * 4 + start;
    x[i] = __fadd_rn(x[i], y[i]);
  }
}

__global__ void __launch_bounds__(kAddThreads)
    AddInPlaceScalarKernel(float* x, const float* y, int64_t n) {
  const int64_t start = int64_t{blockIdx.x} * kAddThreads + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * kAddThreads;
  for (int64_t i = start; i < n; i += stride) x[i] = __fadd_rn(x[i], y[i]);
}

// ---- Rope -------------------------------------------------------------------

// One block per token: the block's threads form the token's half = d/2
// angles in double into shared memory (once for all heads), then rotate
// every (head, i) pair, consecutive threads on consecutive i (coalesced).
__global__ void __launch_bounds__(kRopeThreads)
    RopeKernel(float* __restrict__ x, int heads, int head_dim,
               const int32_t* __restrict__ positions, const double* __restrict__ inv_freq) {
  __shared__ float cos_s[kRopeMaxHalf];
  __shared__ float sin_s[kRopeMaxHalf];
  const int half = head_dim / 2;
  const int64_t token = blockIdx.x;
  const double position = static_cast<double>(positions[token]);
  for (int i = threadIdx.x; i < half; i += kRopeThreads) {
    const double angle = position * inv_freq[i];
    double s, c;
    sincos(angle, &s, &c);
    cos_s[i] = static_cast<float>(c);
    sin_s[i] = static_cast<float>(s);
  }
  __syncthreads();
  float* v = x + token * heads * head_dim;
  const int pairs = heads * half;
  for (int j = threadIdx.x; j < pairs; j += kRopeThreads) {
    const int h = j / half;
    const int i = j - h * half;
    float* p = v + h * head_dim;
    const float a = p[i], b = p[i + half];
    const float c = cos_s[i], s = sin_s[i];
    p[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    p[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  }
}

}  // namespace

cudaError_t EmbeddingGather(const uint16_t* table_bf16, int64_t vocab, int dim,
                            const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  if (vocab < 1 || dim < 1 || n < 0 || n > INT32_MAX) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (table_bf16 == nullptr || ids == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const unsigned blocks = static_cast<unsigned>(n);
  if (dim % 8 == 0 && Aligned(table_bf16, 16) && Aligned(out, 16)) {
    EmbeddingGatherKernel<true>
        <<<blocks, kGatherThreads, 0, stream>>>(table_bf16, vocab, dim, ids, out);
  } else {
    EmbeddingGatherKernel<false>
        <<<blocks, kGatherThreads, 0, stream>>>(table_bf16, vocab, dim, ids, out);
  }
  return cudaGetLastError();
}

cudaError_t RmsNormToBf16(const float* x, int64_t rows, int dim, const float* weight, float eps,
                          float* out_f32_or_null, uint16_t* out_bf16, cudaStream_t stream) {
  if (dim < 1 || rows < 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (x == nullptr || weight == nullptr || out_bf16 == nullptr) return cudaErrorInvalidValue;
  const unsigned blocks = static_cast<unsigned>(rows);
  if (dim % 4 == 0 && Aligned(x, 16) && Aligned(weight, 16) && Aligned(out_f32_or_null, 16) &&
      Aligned(out_bf16, 8)) {
    RmsNormToBf16Kernel<true><<<blocks, kNormThreads, 0, stream>>>(x, dim, weight, eps,
                                                                   out_f32_or_null, out_bf16);
  } else {
    RmsNormToBf16Kernel<false><<<blocks, kNormThreads, 0, stream>>>(x, dim, weight, eps,
                                                                    out_f32_or_null, out_bf16);
  }
  return cudaGetLastError();
}

cudaError_t GatherRows(const void* src, int64_t row_bytes, const int32_t* index, int64_t n,
                       void* dst, cudaStream_t stream) {
  if (row_bytes < 1 || n < 0 || n > INT32_MAX) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(n);
  if (row_bytes % 16 == 0 && Aligned(src, 16) && Aligned(dst, 16)) {
    GatherRowsKernel<<<blocks, kGatherThreads, 0, stream>>>(
        static_cast<const uint4*>(src), row_bytes / 16, index, static_cast<uint4*>(dst));
  } else if (row_bytes % 4 == 0 && Aligned(src, 4) && Aligned(dst, 4)) {
    GatherRowsKernel<<<blocks, kGatherThreads, 0, stream>>>(
        static_cast<const uint32_t*>(src), row_bytes / 4, index, static_cast<uint32_t*>(dst));
  } else {
    GatherRowsKernel<<<blocks, kGatherThreads, 0, stream>>>(
        static_cast<const uint8_t*>(src), row_bytes, index, static_cast<uint8_t*>(dst));
  }
  return cudaGetLastError();
}

cudaError_t AddInPlace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || y == nullptr) return cudaErrorInvalidValue;
  const bool vec = Aligned(x, 16) && Aligned(y, 16);
  // Vectorized: n / 4 float4s, and at least the n % 4 (< 4) leftover threads.
  const int64_t work = vec ? n / 4 + 1 : n;
  const int64_t blocks = (work + kAddThreads - 1) / kAddThreads;
  const unsigned grid = static_cast<unsigned>(blocks < kAddMaxBlocks ? blocks : kAddMaxBlocks);
  if (vec) {
    AddInPlaceVecKernel<<<grid, kAddThreads, 0, stream>>>(x, y, n);
  } else {
    AddInPlaceScalarKernel<<<grid, kAddThreads, 0, stream>>>(x, y, n);
  }
  return cudaGetLastError();
}

cudaError_t Rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                 const double* inv_freq, cudaStream_t stream) {
  if (head_dim < 2 || head_dim > 2 * kRopeMaxHalf || head_dim % 2 != 0 || heads < 1 ||
      int64_t{heads} * head_dim > INT32_MAX || n < 0 || n > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  if (x == nullptr || positions == nullptr || inv_freq == nullptr) return cudaErrorInvalidValue;
  RopeKernel<<<static_cast<unsigned>(n), kRopeThreads, 0, stream>>>(x, heads, head_dim,
                                                                     positions, inv_freq);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
