// The fragment-order bf16 GEMM shared by the MoE experts (moe.h), the
// router and the dense layers (linear.h): device code, included by their .cu
// files only. See moe.h for the weight layout and why.
#ifndef MOESERVE_KERNELS_CUDA_GEMM_CUH_
#define MOESERVE_KERNELS_CUDA_GEMM_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bf16.cuh"

namespace moeserve::cuda {
namespace gemm {

// Fragment order (PTX ISA, mma.m16n8k16 with .bf16 A): lane = 4 * g + t
// holds, as 8 consecutive values, A[g][2t..2t+1], A[g+8][2t..2t+1],
// A[g][2t+8..2t+9], A[g+8][2t+8..2t+9] of a 16x16 tile: the four 32-bit A
// registers in order. Value i of lane (g, t) is tile row r, column c:
static __device__ __forceinline__ int FragRow(int g, int i) { return (i & 2) ? g + 8 : g; }
static __device__ __forceinline__ int FragCol(int t, int i) { return 2 * t + (i & 1) + ((i & 4) ? 8 : 0); }

// One thread per packed 16-byte group: tile (e, rt, kt), lane. With gate
// set, tile rows 0-7 are gate rows 8rt.., rows 8-15 up rows 8rt.. of
// [E, I, K] matrices; otherwise rows 16rt.. of a [E, 16 * row_tiles, K] one.
// Rows at or past valid_rows (per matrix, without gate: the router's
// padding to 16) pack as zeros.
static __global__ void PackKernel(const uint16_t* __restrict__ a, const uint16_t* __restrict__ up,
                           int experts, int row_tiles, int k_dim, int valid_rows,
                           uint16_t* __restrict__ out) {
  const int k_tiles = k_dim / 16;
  const size_t total = static_cast<size_t>(experts) * row_tiles * k_tiles * 32;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int lane = idx % 32;
    size_t rest = idx / 32;
    const int kt = rest % k_tiles;
    rest /= k_tiles;
    const int rt = rest % row_tiles;
    const size_t e = rest / row_tiles;
    const int g = lane >> 2, t = lane & 3;
    uint16_t v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int r = FragRow(g, i);
      const int c = kt * 16 + FragCol(t, i);
      if (up != nullptr) {  // gate/up interleaved; inter = 8 * row_tiles
        const uint16_t* m = r < 8 ? a : up;
        const size_t row = e * (8 * row_tiles) + rt * 8 + (r & 7);
        v[i] = m[row * k_dim + c];
      } else {
        const int local = rt * 16 + r;
        v[i] = local < valid_rows ? a[(e * valid_rows + local) * k_dim + c] : 0;
      }
    }
    uint4 packed;
    packed.x = v[0] | (static_cast<uint32_t>(v[1]) << 16);
    packed.y = v[2] | (static_cast<uint32_t>(v[3]) << 16);
    packed.z = v[4] | (static_cast<uint32_t>(v[5]) << 16);
    packed.w = v[6] | (static_cast<uint32_t>(v[7]) << 16);
    reinterpret_cast<uint4*>(out)[idx] = packed;
  }
}

static __device__ __forceinline__ void MmaBf16(float (&d)[4], const uint4& a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

// Weights are read once: stream them past L1 and mark them first to evict
// from L2, which keeps the activations there.
static __device__ __forceinline__ uint4 LoadStreaming(const uint4* p) { return __ldcs(p); }

// Grid (slot of an active expert, group of kRowTiles row tiles). kSplitK
// warps per block each take a 1/kSplitK share of the k-tiles, for every row
// tile of the group and all of the expert's rows (in passes of kPassTiles * 8
// tokens); then warp 0 adds the others' partial sums in warp order and
// writes the epilogue. One B fragment load serves kRowTiles MMAs, so a larger
// group re-reads the activations from L2 less often (what limits large
// batches); a deeper split-K and unroll keep more weight bytes in flight
// (what limits batch 1). The next kUnroll k-tiles of weights are always in
// flight while the current ones are multiplied, and the first ones are
// issued before the row bookkeeping that the activations wait for.
// kGateUp: B rows are x[row_token[row]] and the epilogue is silu(gate) * up
// into bf16 h; otherwise B rows are h[row] and the epilogue writes float y.
// kPrefetchB: whether the activations are double-buffered too (more
// registers, less exposed L2 latency).
template <bool kGateUp, int kSplitK, int kRowTiles, int kPassTiles, int kUnroll, bool kPrefetchB>
static __global__ void __launch_bounds__(kSplitK * 32)
    ExpertGemmKernel(const uint16_t* __restrict__ in, int k_dim, int row_tiles, int out_cols,
                     const uint4* __restrict__ weights, const int32_t* __restrict__ offsets,
                     const int32_t* __restrict__ active, const int32_t* __restrict__ active_count,
                     const int32_t* __restrict__ row_token, uint16_t* __restrict__ h_out,
                     float* __restrict__ y_out, int dense_rows, int out_limit) {
  constexpr int kPassRows = kPassTiles * 8;
  // Grouped mode: block x is a slot of the active experts. Dense mode
  // (dense_rows > 0, the router): one matrix, block x a pass of rows.
  int e = 0;
  if (dense_rows > 0) {
    if (static_cast<int>(blockIdx.x) * kPassRows >= dense_rows) return;
  } else {
    if (static_cast<int>(blockIdx.x) >= active_count[0]) return;
    e = active[blockIdx.x];
  }
  const int rt0 = blockIdx.y * kRowTiles;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int k_tiles = k_dim / 16;
  const int kt_begin = warp * k_tiles / kSplitK;
  const int kt_end = (warp + 1) * k_tiles / kSplitK;
  const uint4* a_ptr = weights + (static_cast<size_t>(e) * row_tiles + rt0) * k_tiles * 32 + lane;
  const size_t tile_stride = static_cast<size_t>(k_tiles) * 32;  // one row tile, in uint4
  // Row tiles past the end (row_tiles % kRowTiles) are skipped warp-uniformly.
  bool tile_ok[kRowTiles];
#pragma unroll
  for (int r = 0; r < kRowTiles; ++r) tile_ok[r] = rt0 + r < row_tiles;

  // Double-buffered operands: the next kUnroll k-tiles of weights (and of
  // activations, once the rows are known) load while the current multiply.
  uint4 a_next[kUnroll][kRowTiles];
  uint32_t b_next[kUnroll][kPassTiles][2];
  const uint16_t* b_row[kPassTiles];
  auto load_a = [&](int kt) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRowTiles; ++r) {
        if (kt + u < kt_end && tile_ok[r]) {
          a_next[u][r] = LoadStreaming(a_ptr + r * tile_stride + static_cast<size_t>(kt + u) * 32);
        }
      }
    }
  };
  // B registers of n-tile j: this lane's token's values at k = 2t, 2t+1 and
  // 2t+8, 2t+9 (zero for a lane past the last token).
  auto load_b = [&](int kt, int n_tiles) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int j = 0; j < kPassTiles; ++j) {
        b_next[u][j][0] = b_next[u][j][1] = 0;
        if (kt + u < kt_end && j < n_tiles && b_row[j] != nullptr) {
          const int k0 = (kt + u) * 16;
          b_next[u][j][0] = __ldg(reinterpret_cast<const uint32_t*>(b_row[j] + k0));
          b_next[u][j][1] = __ldg(reinterpret_cast<const uint32_t*>(b_row[j] + k0 + 8));
        }
      }
    }
  };
  load_a(kt_begin);

  const int row0 = dense_rows > 0 ? blockIdx.x * kPassRows : offsets[e];
  const int rows = dense_rows > 0 ? min(kPassRows, dense_rows - row0) : offsets[e + 1] - row0;
  __shared__ float partial[kSplitK > 1 ? kSplitK - 1 : 1][kRowTiles][kPassTiles][4][32];

  for (int pass = 0; pass < rows; pass += kPassRows) {
    const int n_pass = min(kPassRows, rows - pass);
    const int n_tiles = (n_pass + 7) / 8;  // the same in every lane
    // This lane's B column in n-tile j is token j*8 + g of the pass.
#pragma unroll
    for (int j = 0; j < kPassTiles; ++j) {
      const int col = j * 8 + g;
      if (col < n_pass) {
        const int row = row0 + pass + col;
        const int src = kGateUp ? row_token[row] : row;
        b_row[j] = in + static_cast<size_t>(src) * k_dim + 2 * t;
      } else {
        b_row[j] = nullptr;
      }
    }
    if (kPrefetchB) load_b(kt_begin, n_tiles);
    float acc[kRowTiles][kPassTiles][4] = {};
    for (int kt = kt_begin; kt < kt_end; kt += kUnroll) {
      if (!kPrefetchB) load_b(kt, n_tiles);
      uint4 a[kUnroll][kRowTiles];
      uint32_t b[kUnroll][kPassTiles][2];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int r = 0; r < kRowTiles; ++r) a[u][r] = a_next[u][r];
#pragma unroll
        for (int j = 0; j < kPassTiles; ++j) {
          b[u][j][0] = b_next[u][j][0];
          b[u][j][1] = b_next[u][j][1];
        }
      }
      if (kt + kUnroll < kt_end) {
        load_a(kt + kUnroll);
        if (kPrefetchB) load_b(kt + kUnroll, n_tiles);
      } else if (pass + kPassRows < rows) {
        load_a(kt_begin);  // the next pass starts over
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (kt + u >= kt_end) break;
#pragma unroll
        for (int j = 0; j < kPassTiles; ++j) {
          if (j >= n_tiles) break;
#pragma unroll
          for (int r = 0; r < kRowTiles; ++r) {
            if (tile_ok[r]) MmaBf16(acc[r][j], a[u][r], b[u][j][0], b[u][j][1]);
          }
        }
      }
    }
    if (warp > 0) {
#pragma unroll
      for (int r = 0; r < kRowTiles; ++r) {
#pragma unroll
        for (int j = 0; j < kPassTiles; ++j) {
          if (j < n_tiles) {
#pragma unroll
            for (int c = 0; c < 4; ++c) partial[warp - 1][r][j][c][lane] = acc[r][j][c];
          }
        }
      }
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
      for (int r = 0; r < kRowTiles; ++r) {
        if (!tile_ok[r]) continue;
        const int rt = rt0 + r;
#pragma unroll
        for (int j = 0; j < kPassTiles; ++j) {
          if (j >= n_tiles) break;
          for (int w = 0; w < kSplitK - 1; ++w) {
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[r][j][c] += partial[w][r][j][c][lane];
          }
          // D fragment: acc[..][0..1] are tile row g, tokens 2t and 2t+1;
          // acc[..][2..3] tile row g + 8, the same tokens.
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int col = j * 8 + 2 * t + half;
            if (col >= n_pass) continue;
            const size_t row = row0 + pass + col;
            if (kGateUp) {
              const float gate = acc[r][j][half], up = acc[r][j][2 + half];
              const float silu = gate / (1.0f + expf(-gate));
              h_out[row * out_cols + rt * 8 + g] = FloatToBf16(silu * up);
            } else {
              if (rt * 16 + g < out_limit) y_out[row * out_cols + rt * 16 + g] = acc[r][j][half];
              if (rt * 16 + g + 8 < out_limit) {
                y_out[row * out_cols + rt * 16 + g + 8] = acc[r][j][2 + half];
              }
            }
          }
        }
      }
    }
    __syncthreads();  // partial is reused by the next pass
  }
}

struct GemmArgs {
  const uint16_t* in;
  int k_dim, row_tiles, out_cols;
  const uint4* w;
  const int32_t *offsets, *active, *active_count, *row_token;
  uint16_t* h;
  float* y;
  int dense_rows = 0;  // > 0: dense mode (the router)
  int out_limit = 0;   // output columns written (y only)
};

template <bool kGateUp, int kSplitK, int kRowTiles, int kPassTiles, int kUnroll,
          bool kPrefetchB = true>
inline cudaError_t Launch(int max_active, const GemmArgs& a, cudaStream_t stream) {
  const int blocks_x =
      a.dense_rows > 0 ? (a.dense_rows + kPassTiles * 8 - 1) / (kPassTiles * 8) : max_active;
  const dim3 grid(blocks_x, (a.row_tiles + kRowTiles - 1) / kRowTiles);
  ExpertGemmKernel<kGateUp, kSplitK, kRowTiles, kPassTiles, kUnroll, kPrefetchB>
      <<<grid, kSplitK * 32, 0, stream>>>(a.in, a.k_dim, a.row_tiles, a.out_cols, a.w,
                                          a.offsets, a.active, a.active_count, a.row_token,
                                          a.h, a.y, a.dense_rows, a.out_limit);
  return cudaGetLastError();
}

inline int PackBlocks(size_t groups) {
  const size_t blocks = (groups + 255) / 256;
  return static_cast<int>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}


}  // namespace gemm
}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_GEMM_CUH_
