// AppendKv and batched paged attention (see attention.h for the contract).
//
// PagedAttentionKernel<D>: one block per (query row, KV head, head chunk,
// split). The block serves G query heads that share the KV head (G = the
// largest power of two dividing the group size with G * D/8 <= 256, so
// Qwen3-30B-A3B's 32/4 heads are one block per KV head). Thread layout, tid =
// (z * G + y) * (D/8) + x:
//   x: which 8 of the D dims (one 16-byte bf16 vector of a K/V row),
//   y: which of the G query heads,
//   z: which interleaved slice of the positions (Z = 128 / (D/8 * G) slices,
//      at least 1), so small groups still have 128 threads.
// The block's KV range is streamed in tiles of 4096 / D rows (8 KiB of K and
// 8 KiB of V per tile) copied into shared memory with cp.async (16 bytes per
// thread, consecutive threads on consecutive bytes of a row: each row's
// D*2 bytes are one coalesced read), double-buffered so that the next tile
// loads while this one is computed. Each thread keeps its head's q slice (8
// floats), an 8-float output accumulator and the running (max, sum) of its
// positions; a score is 8 FMAs plus a shuffle reduction over the D/8 lanes of
// the row. At the end the Z slices are merged through shared memory, and
// either normalized into `out` (one split) or written as a partial
// (max, sum, acc) that AttentionMergeKernel combines.
//
// Napkin math, decode of one 8192-token sequence with 32/4 heads, D = 128:
// K+V are 8192 * 4 * 128 * 2 B * 2 = 16.8 MB per layer, 3.5 us at 4.8 TB/s
// (H200); 8192 * 32 * 256 = 67M FMAs, ~2.2 us on 132 SMs. Split into ~32
// slices of 256 positions there are 128 blocks, about one per SM. Shared
// memory traffic is 4x the tile bytes (G = 8 heads read each row, two heads
// per warp share a broadcast), ~19 TB/s of the ~30 TB/s the SMs provide.
//
// Prefill is correct but not tiled over queries: each query row streams its
// own prefix (from L2 for neighbouring rows), so long prompts cost O(n^2)
// L2 reads on CUDA cores; a tensor-core prefill kernel is future work.
#include "kernels/cuda/attention.h"

#include <cuda_pipeline_primitives.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/bf16.cuh"

namespace moeserve::cuda {
namespace {

// ---------------------------------------------------------------- AppendKv

constexpr int kAppendThreads = 128;

// One block per token row. kVec = 4: float4 reads, 8-byte bf16 writes
// (kv_dim % 4 == 0 and aligned pointers); kVec = 1 otherwise.
template <int kVec>
__global__ void AppendKvKernel(const float* __restrict__ k, const float* __restrict__ v,
                               int kv_dim, const int32_t* __restrict__ slots,
                               uint16_t* __restrict__ k_pool, uint16_t* __restrict__ v_pool) {
  const int64_t i = blockIdx.x;
  const int32_t slot = slots[i];
  if (slot < 0) return;  // padding token
  const float* ks = k + i * kv_dim;
  const float* vs = v + i * kv_dim;
  uint16_t* kd = k_pool + static_cast<int64_t>(slot) * kv_dim;
  uint16_t* vd = v_pool + static_cast<int64_t>(slot) * kv_dim;
  for (int c = threadIdx.x * kVec; c < kv_dim; c += kAppendThreads * kVec) {
    if constexpr (kVec == 4) {
      const float4 a = *reinterpret_cast<const float4*>(ks + c);
      const float4 b = *reinterpret_cast<const float4*>(vs + c);
      *reinterpret_cast<uint2*>(kd + c) =
          make_uint2(FloatToBf16(a.x) | (uint32_t{FloatToBf16(a.y)} << 16),
                     FloatToBf16(a.z) | (uint32_t{FloatToBf16(a.w)} << 16));
      *reinterpret_cast<uint2*>(vd + c) =
          make_uint2(FloatToBf16(b.x) | (uint32_t{FloatToBf16(b.y)} << 16),
                     FloatToBf16(b.z) | (uint32_t{FloatToBf16(b.w)} << 16));
    } else {
      kd[c] = FloatToBf16(ks[c]);
      vd[c] = FloatToBf16(vs[c]);
    }
  }
}

// ---------------------------------------------------------- PagedAttention

constexpr int kMaxThreads = 256;     // per attention block
constexpr int kMinThreads = 128;     // Z is raised until a block has this many
constexpr int kKeysPerStep = 4;      // positions a thread scores before one rescale
constexpr int kTileBytes = 8192;     // per tile, of K (and as much of V)
constexpr int kMinSplitKeys = 64;    // PagedAttentionNumSplits: positions per split
constexpr int kSplitWaves = 8;       // PagedAttentionNumSplits: blocks per SM wanted

bool IsAligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Query heads per block: the largest power of two dividing `group` with
// G * head_dim / 8 <= kMaxThreads.
int HeadsPerBlock(int group, int head_dim) {
  int g = 1;
  while (group % (2 * g) == 0 && 2 * g * (head_dim / 8) <= kMaxThreads) g *= 2;
  return g;
}

int ThreadsPerBlock(int heads_per_block, int head_dim) {
  const int per_slice = heads_per_block * (head_dim / 8);  // a power of two
  return std::max(per_slice, kMinThreads);
}

// The 8 products of q[0..7] and a 16-byte vector of 8 bf16, summed in order.
__device__ __forceinline__ float Dot8(const float (&q)[8], uint4 k) {
  float s = q[0] * Bf16Lo(k.x);
  s = fmaf(q[1], Bf16Hi(k.x), s);
  s = fmaf(q[2], Bf16Lo(k.y), s);
  s = fmaf(q[3], Bf16Hi(k.y), s);
  s = fmaf(q[4], Bf16Lo(k.z), s);
  s = fmaf(q[5], Bf16Hi(k.z), s);
  s = fmaf(q[6], Bf16Lo(k.w), s);
  s = fmaf(q[7], Bf16Hi(k.w), s);
  return s;
}

// acc[0..7] += p * v (8 bf16).
__device__ __forceinline__ void Axpy8(float p, uint4 v, float (&acc)[8]) {
  acc[0] = fmaf(p, Bf16Lo(v.x), acc[0]);
  acc[1] = fmaf(p, Bf16Hi(v.x), acc[1]);
  acc[2] = fmaf(p, Bf16Lo(v.y), acc[2]);
  acc[3] = fmaf(p, Bf16Hi(v.y), acc[3]);
  acc[4] = fmaf(p, Bf16Lo(v.z), acc[4]);
  acc[5] = fmaf(p, Bf16Hi(v.z), acc[5]);
  acc[6] = fmaf(p, Bf16Lo(v.w), acc[6]);
  acc[7] = fmaf(p, Bf16Hi(v.w), acc[7]);
}

// The sequence owning query row i: the last s with query_start[s] <= i.
__device__ __forceinline__ int FindSequence(const int32_t* __restrict__ query_start,
                                            int num_seqs, int64_t i) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

struct AttentionArgs {
  const float* q;
  const int32_t* positions;
  const int32_t* query_start;
  int num_seqs;
  const int32_t* block_tables;
  int max_blocks_per_seq;
  const uint16_t* k_pool;
  const uint16_t* v_pool;
  int num_heads;
  int num_kv_heads;
  int block_size;
  int window;
  int heads_per_block;  // G
  float scale;
  int64_t total_queries;
  float* out;          // num_splits == 1
  float* partial_acc;  // num_splits > 1: [splits, total_queries * num_heads, D]
  float* partial_ml;   // num_splits > 1: [splits, total_queries * num_heads, 2]
};

// grid = (total_queries, num_kv_heads * head chunks, num_splits).
template <int kHeadDim>
__global__ void __launch_bounds__(kMaxThreads)
    PagedAttentionKernel(const AttentionArgs a) {
  constexpr int kLanes = kHeadDim / 8;                 // threads per K/V row
  constexpr int kRows = kTileBytes / (kHeadDim * 2);   // positions per tile
  __shared__ __align__(16) uint16_t k_tile[2][kRows * kHeadDim];
  __shared__ __align__(16) uint16_t v_tile[2][kRows * kHeadDim];
  __shared__ __align__(16) float acc_sm[kMaxThreads * 8];
  __shared__ float m_sm[kMaxThreads / 8];
  __shared__ float l_sm[kMaxThreads / 8];

  const int G = a.heads_per_block;
  const int tid = threadIdx.x;
  const int x = tid % kLanes;
  const int y = (tid / kLanes) % G;
  const int z = tid / (kLanes * G);
  const int num_z = blockDim.x / (kLanes * G);

  const int64_t i = blockIdx.x;
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = group / G;
  const int kv_head = blockIdx.y / chunks;
  const int head = kv_head * group + (blockIdx.y % chunks) * G + y;
  const int split = blockIdx.z;
  const int num_splits = gridDim.z;

  // The block's positions [begin, end): this split's slice of the query's
  // range [lo, hi). Uniform over the block.
  const int seq = FindSequence(a.query_start, a.num_seqs, i);
  const int pos = a.positions[i];
  int lo = 0, hi = 0;  // empty for an invalid position: NaN out
  if (pos >= 0 && pos < static_cast<int64_t>(a.max_blocks_per_seq) * a.block_size) {
    lo = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    hi = pos + 1;
  }
  const int64_t per_split = (hi - lo + num_splits - 1) / num_splits;
  const int64_t chunk = (per_split + kRows - 1) / kRows * kRows;
  const int begin = static_cast<int>(min(int64_t{hi}, lo + split * chunk));
  const int end = static_cast<int>(min(int64_t{hi}, begin + chunk));
  const int num_tiles = (end - begin + kRows - 1) / kRows;

  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int64_t kv_dim = static_cast<int64_t>(a.num_kv_heads) * kHeadDim;
  const uint16_t* k_head = a.k_pool + kv_head * kHeadDim;
  const uint16_t* v_head = a.v_pool + kv_head * kHeadDim;

  // Issues the copies of positions t0 .. t0 + kRows - 1 into buffer `buf`;
  // rows at or past `end` are zero-filled (never read from the pools).
  auto load_tile = [&](int t0, int buf) {
    for (int idx = tid; idx < kRows * kLanes; idx += blockDim.x) {
      const int r = idx / kLanes;
      const int c = (idx % kLanes) * 8;
      const int j = t0 + r;
      uint16_t* kd = &k_tile[buf][r * kHeadDim + c];
      uint16_t* vd = &v_tile[buf][r * kHeadDim + c];
      if (j < end) {
        const int64_t row =
            static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
        __pipeline_memcpy_async(kd, k_head + row * kv_dim + c, 16);
        __pipeline_memcpy_async(vd, v_head + row * kv_dim + c, 16);
      } else {
        *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
      }
    }
    __pipeline_commit();
  };

  float q[8];
  {
    const float* qs = a.q + (i * a.num_heads + head) * kHeadDim + x * 8;
    const float4 q0 = *reinterpret_cast<const float4*>(qs);
    const float4 q1 = *reinterpret_cast<const float4*>(qs + 4);
    q[0] = q0.x, q[1] = q0.y, q[2] = q0.z, q[3] = q0.w;
    q[4] = q1.x, q[5] = q1.y, q[6] = q1.z, q[7] = q1.w;
  }
  // This thread's online softmax over its positions: running max m (-inf
  // before the first), sum l of exp(score - m), acc of exp(score - m) * v.
  float m = -INFINITY, l = 0.0f;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};

  if (num_tiles > 0) load_tile(begin, 0);
  for (int t = 0; t < num_tiles; ++t) {
    const int buf = t & 1;
    const int t0 = begin + t * kRows;
    // Buffer buf ^ 1 was last read in iteration t - 1, which ended with a
    // barrier, so it can be refilled now.
    if (t + 1 < num_tiles) {
      load_tile(t0 + kRows, buf ^ 1);
      __pipeline_wait_prior(1);  // all but the newest group: tile t is in
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    // Steps of num_z * kKeysPerStep rows; slice z scores kKeysPerStep
    // consecutive rows of each step. Every thread runs the same iterations
    // (the shuffles need whole warps).
    for (int r0 = z * kKeysPerStep; r0 < kRows; r0 += num_z * kKeysPerStep) {
      float s[kKeysPerStep];
      float tile_max = -INFINITY;
#pragma unroll
      for (int k = 0; k < kKeysPerStep; ++k) {
        const uint4 kv = *reinterpret_cast<const uint4*>(&k_tile[buf][(r0 + k) * kHeadDim + x * 8]);
        float dot = Dot8(q, kv);
#pragma unroll
        for (int off = kLanes / 2; off > 0; off /= 2) {
          dot += __shfl_xor_sync(0xffffffffu, dot, off);
        }
        s[k] = dot * a.scale;
        if (t0 + r0 + k < end) tile_max = fmaxf(tile_max, s[k]);
      }
      if (tile_max > -INFINITY) {  // at least one valid position in this step
        const float m_new = fmaxf(m, tile_max);
        const float alpha = expf(m - m_new);  // 0 while m is -inf
        l *= alpha;
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[c] *= alpha;
#pragma unroll
        for (int k = 0; k < kKeysPerStep; ++k) {
          if (t0 + r0 + k < end) {
            const float p = expf(s[k] - m_new);
            l += p;
            Axpy8(p, *reinterpret_cast<const uint4*>(&v_tile[buf][(r0 + k) * kHeadDim + x * 8]),
                  acc);
          }
        }
        m = m_new;
      }
    }
    __syncthreads();  // before iteration t + 1 refills buffer buf
  }

  // Merge the Z slices of each head. acc_sm[tid * 8 + c] is
  // [(z * G + y) * D + x * 8 + c].
  *reinterpret_cast<float4*>(&acc_sm[tid * 8]) = make_float4(acc[0], acc[1], acc[2], acc[3]);
  *reinterpret_cast<float4*>(&acc_sm[tid * 8 + 4]) = make_float4(acc[4], acc[5], acc[6], acc[7]);
  if (x == 0) {
    m_sm[z * G + y] = m;
    l_sm[z * G + y] = l;
  }
  __syncthreads();
  if (z != 0) return;
  float m_all = -INFINITY;
  for (int zz = 0; zz < num_z; ++zz) m_all = fmaxf(m_all, m_sm[zz * G + y]);
  float l_all = 0.0f;
  float acc_all[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int zz = 0; zz < num_z; ++zz) {
    const float mz = m_sm[zz * G + y];
    if (mz == -INFINITY) continue;  // a slice that saw no position
    const float w = expf(mz - m_all);
    l_all += l_sm[zz * G + y] * w;
    const float* az = &acc_sm[((zz * G + y) * kLanes + x) * 8];
#pragma unroll
    for (int c = 0; c < 8; ++c) acc_all[c] = fmaf(az[c], w, acc_all[c]);
  }
  const int64_t out_row = i * a.num_heads + head;
  if (num_splits == 1) {
    // l_all >= 1 whenever the range is non-empty (the max scores exp(0)).
    const float inv = l_all > 0.0f ? 1.0f / l_all : NAN;
    float* o = a.out + out_row * kHeadDim + x * 8;
    *reinterpret_cast<float4*>(o) =
        make_float4(acc_all[0] * inv, acc_all[1] * inv, acc_all[2] * inv, acc_all[3] * inv);
    *reinterpret_cast<float4*>(o + 4) =
        make_float4(acc_all[4] * inv, acc_all[5] * inv, acc_all[6] * inv, acc_all[7] * inv);
  } else {
    const int64_t prow = split * a.total_queries * a.num_heads + out_row;
    float* o = a.partial_acc + prow * kHeadDim + x * 8;
    *reinterpret_cast<float4*>(o) = make_float4(acc_all[0], acc_all[1], acc_all[2], acc_all[3]);
    *reinterpret_cast<float4*>(o + 4) =
        make_float4(acc_all[4], acc_all[5], acc_all[6], acc_all[7]);
    if (x == 0) {
      a.partial_ml[prow * 2] = m_all;
      a.partial_ml[prow * 2 + 1] = l_all;
    }
  }
}

// One block of head_dim threads per (query row, head): merges the splits'
// partials as the kernel above merges its slices, and normalizes.
__global__ void AttentionMergeKernel(const float* __restrict__ partial_acc,
                                     const float* __restrict__ partial_ml, int64_t rows,
                                     int num_splits, int head_dim, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int d = threadIdx.x;
  float m_all = -INFINITY;
  for (int s = 0; s < num_splits; ++s) m_all = fmaxf(m_all, partial_ml[(s * rows + row) * 2]);
  float l_all = 0.0f, acc = 0.0f;
  for (int s = 0; s < num_splits; ++s) {
    const float ms = partial_ml[(s * rows + row) * 2];
    if (ms == -INFINITY) continue;  // an empty split
    const float w = expf(ms - m_all);
    l_all += partial_ml[(s * rows + row) * 2 + 1] * w;
    acc = fmaf(partial_acc[(s * rows + row) * head_dim + d], w, acc);
  }
  out[row * head_dim + d] = l_all > 0.0f ? acc / l_all : NAN;
}

template <int kHeadDim>
cudaError_t LaunchAttention(const AttentionArgs& args, int chunks, int num_kv_heads,
                            int num_splits, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(args.total_queries),
                  static_cast<unsigned>(num_kv_heads * chunks), static_cast<unsigned>(num_splits));
  const int threads = ThreadsPerBlock(args.heads_per_block, kHeadDim);
  PagedAttentionKernel<kHeadDim><<<grid, threads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t AppendKv(const float* k, const float* v, int64_t n, int kv_dim,
                     const int32_t* slots, uint16_t* k_pool, uint16_t* v_pool,
                     cudaStream_t stream) {
  if (n < 0 || n > INT32_MAX || kv_dim < 1) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!k || !v || !slots || !k_pool || !v_pool) return cudaErrorInvalidValue;
  const bool vec = kv_dim % 4 == 0 && IsAligned16(k) && IsAligned16(v) &&
                   reinterpret_cast<uintptr_t>(k_pool) % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(v_pool) % 8 == 0;
  const unsigned blocks = static_cast<unsigned>(n);
  if (vec) {
    AppendKvKernel<4><<<blocks, kAppendThreads, 0, stream>>>(k, v, kv_dim, slots, k_pool, v_pool);
  } else {
    AppendKvKernel<1><<<blocks, kAppendThreads, 0, stream>>>(k, v, kv_dim, slots, k_pool, v_pool);
  }
  return cudaGetLastError();
}

int PagedAttentionNumSplits(int64_t total_queries, const PagedAttentionShape& shape,
                            int max_kv_len, int num_sms) {
  if (total_queries <= 0 || shape.num_kv_heads <= 0 || shape.head_dim < 8 ||
      shape.num_heads % shape.num_kv_heads != 0) {
    return 1;
  }
  const int group = shape.num_heads / shape.num_kv_heads;
  const int64_t blocks =
      total_queries * shape.num_kv_heads * (group / HeadsPerBlock(group, shape.head_dim));
  const int64_t want = kSplitWaves * int64_t{std::max(num_sms, 1)};
  if (blocks >= want) return 1;
  int64_t splits = (want + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, std::max(1, max_kv_len / kMinSplitKeys));
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxAttentionSplits));
}

cudaError_t PagedAttention(const PagedAttentionShape& shape, const float* q,
                           int64_t total_queries, const int32_t* positions,
                           const int32_t* query_start, int num_seqs,
                           const int32_t* block_tables, int max_blocks_per_seq,
                           const uint16_t* k_pool, const uint16_t* v_pool, int num_splits,
                           float* workspace, float* out, cudaStream_t stream) {
  const int d = shape.head_dim;
  if (d != 64 && d != 128 && d != 256) return cudaErrorInvalidValue;
  if (shape.num_kv_heads < 1 || shape.num_heads < 1 ||
      shape.num_heads % shape.num_kv_heads != 0 || shape.block_size < 1 || shape.window < 0) {
    return cudaErrorInvalidValue;
  }
  if (num_splits < 1 || num_splits > kMaxAttentionSplits) return cudaErrorInvalidValue;
  if (total_queries < 0 || total_queries > INT32_MAX) return cudaErrorInvalidValue;
  if (total_queries == 0) return cudaSuccess;
  if (num_seqs < 1 || max_blocks_per_seq < 1) return cudaErrorInvalidValue;
  if (!positions || !query_start || !block_tables || !IsAligned16(q) || !IsAligned16(out) ||
      !IsAligned16(k_pool) || !IsAligned16(v_pool) || !q || !out || !k_pool || !v_pool) {
    return cudaErrorInvalidValue;
  }
  if (num_splits > 1 && (!workspace || !IsAligned16(workspace) ||
                         total_queries * shape.num_heads > INT32_MAX)) {
    return cudaErrorInvalidValue;  // the merge kernel has a block per (row, head)
  }
  const int group = shape.num_heads / shape.num_kv_heads;
  const int heads_per_block = HeadsPerBlock(group, d);
  const int chunks = group / heads_per_block;
  if (int64_t{shape.num_kv_heads} * chunks > 65535) return cudaErrorInvalidValue;

  AttentionArgs args{};
  args.q = q;
  args.positions = positions;
  args.query_start = query_start;
  args.num_seqs = num_seqs;
  args.block_tables = block_tables;
  args.max_blocks_per_seq = max_blocks_per_seq;
  args.k_pool = k_pool;
  args.v_pool = v_pool;
  args.num_heads = shape.num_heads;
  args.num_kv_heads = shape.num_kv_heads;
  args.block_size = shape.block_size;
  args.window = shape.window;
  args.heads_per_block = heads_per_block;
  args.scale = 1.0f / std::sqrt(static_cast<float>(d));
  args.total_queries = total_queries;
  args.out = out;
  if (num_splits > 1) {
    args.partial_acc = workspace;
    args.partial_ml = workspace + int64_t{num_splits} * total_queries * shape.num_heads * d;
  }

  cudaError_t err = cudaErrorInvalidValue;
  switch (d) {
    case 64:
      err = LaunchAttention<64>(args, chunks, shape.num_kv_heads, num_splits, stream);
      break;
    case 128:
      err = LaunchAttention<128>(args, chunks, shape.num_kv_heads, num_splits, stream);
      break;
    case 256:
      err = LaunchAttention<256>(args, chunks, shape.num_kv_heads, num_splits, stream);
      break;
  }
  if (err != cudaSuccess || num_splits == 1) return err;
  const int64_t rows = total_queries * shape.num_heads;
  AttentionMergeKernel<<<static_cast<unsigned>(rows), d, 0, stream>>>(
      args.partial_acc, args.partial_ml, rows, num_splits, d, out);
  return cudaGetLastError();
}

}  // namespace moeserve::cuda
