// The MoE block on the GPU: routing, the permutation of tokens by expert, the
// expert FFN as one grouped GEMM launch per projection, and the combine.
// CPU references: kernels/cpu/router.h (RouteTopK), kernels/cpu/linear.h and
// activation.h (the expert FFN), engine/feed_forward.h (AccumulateScaled: the
// combine in ascending expert id).
//
// Storage is bf16 (uint16_t bit patterns) with fp32 accumulation. One layer,
// for n tokens of hidden size H, E experts of width I and top-k:
//
//   MoeRouterLogits  logits[n, E] = x[n, H] · Wr[E, H]^T  (fp32 out, a GEMM)
//   MoeTopK          ids[n, k], weights[n, k] from softmax(logits)
//   MoePermute       rows of each expert contiguous: offsets[E + 1],
//                    the active experts, row -> token, (token, j) -> row
//   MoeGateUp        h[row, I] = bf16(silu(x·Wg^T) * (x·Wu^T))    one launch
//   MoeDown          y[row, H] = h[row] · Wd^T                    one launch
//   MoeCombine       out[t, H] = Σ over t's experts, ascending id, w · y[row]
//
// With the experts spread over ranks (the GPU worker's expert parallelism),
// two helpers of the exchange: MoeRowExpert names each permuted row's expert
// in its owner's numbering, and MoeCountTokens adds the rows per expert to
// running counters (the tokens-per-expert metric).
//
// The expert GEMMs run on the tensor cores (mma.sync m16n8k16 bf16, fp32
// accumulate) with the weights as the 16-row "A" operand and up to 32 or 64
// tokens as "B", so one pass over an expert's weights serves every token
// routed to it (an expert with more rows takes several passes).
// At decode batch sizes the layer is bound by reading the experts' weights;
// to read them at full bandwidth the weights are stored in *fragment order*:
// each warp loads the A
// fragment of a 16x16 tile as one coalesced 16-byte load per thread, with no
// shared memory staging. Gate and up rows are interleaved 8 by 8 so that one
// tile's accumulators hold a gate value and its up value in the same thread,
// and SiLU(gate) * up is applied before anything leaves registers.
//
// Every value a token gets is independent of which other tokens share its
// expert and of their order within the expert (each GEMM column is computed
// alone, the split-K partial sums are added in a fixed order), so results are
// deterministic and batch-invariant although the permutation uses atomics.
//
// Weights are packed once at upload (MoePackRouter, MoePackGateUp,
// MoePackDown). Shapes: H and I multiples of 16, E <= 1024, k <= 16 and
// k <= E; every launcher checks them and returns cudaErrorInvalidValue
// otherwise.
// Launchers take raw device pointers and a stream, FlashInfer style, and
// return the launch status; none synchronizes, so all can be captured in a
// CUDA graph.
#ifndef MOESERVE_KERNELS_CUDA_MOE_H_
#define MOESERVE_KERNELS_CUDA_MOE_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::cuda {

// Packs gate [E, I, H] and up [E, I, H] (row-major bf16) into the fragment
// order MoeGateUp reads: per expert, I/8 tiles of 16 rows (gate rows 8i..8i+7
// then up rows 8i..8i+7) by H/16 k-tiles, each tile 32 lanes x 8 values.
// packed holds E * 2 * I * H values.
cudaError_t MoePackGateUp(const uint16_t* gate, const uint16_t* up, int experts, int inter,
                          int hidden, uint16_t* packed, cudaStream_t stream);

// Packs down [E, H, I] into the fragment order MoeDown reads (H/16 row tiles
// by I/16 k-tiles per expert). packed holds E * H * I values.
cudaError_t MoePackDown(const uint16_t* down, int experts, int hidden, int inter,
                        uint16_t* packed, cudaStream_t stream);

// Packs the router [E, H] (bf16) into the fragment order MoeRouterLogits
// reads, padded with zero rows to a multiple of 16: packed holds
// MoeRouterPackedSize(E, H) values.
inline int64_t MoeRouterPackedSize(int experts, int hidden) {
  return int64_t{(experts + 15) / 16} * 16 * hidden;
}
cudaError_t MoePackRouter(const uint16_t* router, int experts, int hidden, uint16_t* packed,
                          cudaStream_t stream);

// logits[n, E] (fp32) = x[n, H] · router[E, H]^T on the tensor cores (the
// expert GEMM's kernel over one dense matrix): bf16 products are exact in
// fp32 and summed in fp32, as the CPU does, in another order.
cudaError_t MoeRouterLogits(const uint16_t* x, int64_t n, int hidden,
                            const uint16_t* router_packed, int experts, float* logits,
                            cudaStream_t stream);

// Per token: softmax over the E logits (float), the k largest (ties: lower
// id first; ids in descending weight), optionally renormalized to sum to 1.
cudaError_t MoeTopK(const float* logits, int64_t n, int experts, int k, bool renormalize,
                    int32_t* ids, float* weights, cudaStream_t stream);

// Groups the n*k (token, expert) pairs by expert. Writes
//   offsets[E + 1]   rows of expert e are offsets[e] .. offsets[e+1]-1
//   active[E]        the experts with rows, ascending; active_count[0] of them
//   row_token[n*k]   the token of each row
//   pair_row[n*k]    the row of pair (t, j), j indexing ids[t, :]
// One block; n*k up to 2^20.
cudaError_t MoePermute(const int32_t* ids, int64_t n, int k, int experts, int32_t* offsets,
                       int32_t* active, int32_t* active_count, int32_t* row_token,
                       int32_t* pair_row, cudaStream_t stream);

// After MoePermute: out[row] = e - base[e] for the expert e whose rows hold
// `row` (offsets[e] <= row < offsets[e + 1]), for row in [0, rows). base[e]
// is the first expert id of e's owner rank, so out is e's index among its
// owner's experts. offsets: [experts + 1] from MoePermute; rows <=
// offsets[experts]. CPU reference: a scan of the offsets (moe_test.cc).
cudaError_t MoeRowExpert(const int32_t* offsets, int experts, const int32_t* base, int64_t rows,
                         int32_t* out, cudaStream_t stream);

// counters[e] += offsets[e + 1] - offsets[e] for e in [0, experts).
cudaError_t MoeCountTokens(const int32_t* offsets, int experts, unsigned long long* counters,
                           cudaStream_t stream);

// counters[ids[p]] += 1 for p < *num_tokens * k, where *num_tokens (on the
// device, <= max_tokens) is read when the kernel runs: the count of a batch
// padded to max_tokens rows (a CUDA graph's fixed shape) without its padding.
// ids: [max_tokens, k] from MoeTopK, each in [0, experts). Grid from
// max_tokens * k. CPU reference: a count over the same ids (moe_test.cc).
cudaError_t MoeCountRoutes(const int32_t* ids, int64_t max_tokens, int k,
                           const int32_t* num_tokens, int experts,
                           unsigned long long* counters, cudaStream_t stream);

// The experts' first projection and activation for every row:
// h[row, I] = bf16(silu(x[t] · Wg[e]^T) * (x[t] · Wu[e]^T)), t = row_token[row].
// rows = n * k (it sizes the grid and picks the variant).
// variant: which tiling of the GEMM (1 .. kMoeGemmVariants, see
// MoeGemmVariantName; 0 = MoeDefaultGemmVariant). Every variant computes the
// same values up to the order of the fp32 sums (last bits); a benchmark knob.
cudaError_t MoeGateUp(const uint16_t* x, int hidden, int inter, const uint16_t* gate_up_packed,
                      int experts, const int32_t* offsets, const int32_t* active,
                      const int32_t* active_count, int rows, const int32_t* row_token,
                      uint16_t* h, cudaStream_t stream, int variant = 0);

// The experts' second projection: y[row, H] (fp32) = h[row, I] · Wd[e]^T.
cudaError_t MoeDown(const uint16_t* h, int inter, int hidden, const uint16_t* down_packed,
                    int experts, const int32_t* offsets, const int32_t* active,
                    const int32_t* active_count, int rows, float* y, cudaStream_t stream,
                    int variant = 0);

// The GEMM tilings: split-K warps per block, 16-row weight tiles per block,
// tokens per pass, k-tiles in flight per warp. Null past the last.
inline constexpr int kMoeGemmVariants = 9;
const char* MoeGemmVariantName(int variant);
int MoeDefaultGemmVariant(int rows, int experts);

// out[t, H] = Σ_j weights[t, j] * y[pair_row[t*k + j], :], the terms added in
// ascending expert id from 0.0f, as the CPU engine's AccumulateScaled does.
cudaError_t MoeCombine(const float* y, const int32_t* ids, const float* weights,
                       const int32_t* pair_row, int64_t n, int k, int hidden, float* out,
                       cudaStream_t stream);

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_MOE_H_
