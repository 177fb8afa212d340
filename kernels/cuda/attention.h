// Paged KV cache and causal grouped-query attention on the GPU, for a batch of
// sequences in one launch (decode, prefill and chunked prefill alike). The
// CPU reference is kernels/cpu/attention.h (PagedAttention, one sequence).
//
// The cache, per layer: a K pool and a V pool of bf16 (uint16_t bit patterns),
// each [num_blocks, block_size, num_kv_heads, head_dim] -- block b holds
// block_size token rows of kv_dim = num_kv_heads * head_dim values. A token
// lives at pool row `slot` = block * block_size + offset. A sequence's block
// table lists its blocks in order: position j is at row
// block_table[j / block_size] * block_size + j % block_size.
//
// Per step of one layer:
//
//   AppendKv        write the step's new K/V rows (fp32 -> bf16) at their slots
//   PagedAttention  every query row attends to its sequence's cached
//                   positions j <= its position (and j > position - window
//                   when window > 0), query head h reading KV head
//                   h / (num_heads / num_kv_heads); scale 1/sqrt(head_dim),
//                   online softmax and accumulation in fp32, fp32 out.
//
// The batch is ragged: sequence s owns query rows query_start[s] ..
// query_start[s + 1] - 1 (decode: one row at the last position; prefill: one
// row per prompt token), each row with its own position. Every attended
// position must already be in the cache (AppendKv for the step runs first).
//
// Long contexts with few query rows are split along the KV axis
// (flash-decoding): num_splits blocks per (row, KV head) each reduce a slice
// to a partial (max, sum, accumulator) in `workspace`, and a second small
// kernel merges them. PagedAttentionNumSplits picks a count;
// PagedAttentionWorkspaceFloats sizes the workspace.
//
// Contract: launchers take raw device pointers (16-byte aligned, as
// cudaMalloc returns, where noted) and a stream; they check shapes on the host
// and return cudaErrorInvalidValue before launching anything when a shape is
// unsupported, else the launch status. None allocates or synchronizes, so all
// can be captured in a CUDA graph (the grid depends only on the host-side
// sizes). Device-side contents (positions, block tables, query_start) are not
// checked: a query whose position is negative or past its block table gets
// NaN rows instead of reading out of bounds; block ids must be < num_blocks.
#ifndef MOESERVE_KERNELS_CUDA_ATTENTION_H_
#define MOESERVE_KERNELS_CUDA_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::cuda {

// k, v: [n, kv_dim] fp32. Row i is rounded to bf16 (nearest even, as
// common/dtype.h FloatToBF16 for finite values) and written to pool row
// slots[i] of k_pool / v_pool ([*, kv_dim] bf16). A negative slot skips the
// row (padding tokens of a fixed-size graph batch). Slots must be distinct.
// kv_dim >= 1; n >= 0 (0 launches nothing).
cudaError_t AppendKv(const float* k, const float* v, int64_t n, int kv_dim,
                     const int32_t* slots, uint16_t* k_pool, uint16_t* v_pool,
                     cudaStream_t stream);

struct PagedAttentionShape {
  int num_heads = 0;     // query heads; a multiple of num_kv_heads
  int num_kv_heads = 0;  // >= 1
  int head_dim = 0;      // 64, 128 or 256
  int block_size = 0;    // tokens per cache block, any >= 1
  int window = 0;        // sliding window in positions; 0: unlimited
};

// The largest supported num_splits.
inline constexpr int kMaxAttentionSplits = 128;

// Floats of workspace PagedAttention needs for num_splits (0 when 1).
inline int64_t PagedAttentionWorkspaceFloats(int64_t total_queries, int num_heads,
                                             int head_dim, int num_splits) {
  if (num_splits <= 1) return 0;
  return int64_t{num_splits} * total_queries * num_heads * (head_dim + 2);
}

// A split count that gives about eight blocks per multiprocessor (a block
// walks its positions in order, so more, shorter splits hide latency) when
// the batch alone would not, with every split at least 64 positions of
// max_kv_len (the longest context in the batch); 1 for large batches.
int PagedAttentionNumSplits(int64_t total_queries, const PagedAttentionShape& shape,
                            int max_kv_len, int num_sms);

// q, out: [total_queries, num_heads, head_dim] fp32 (16-byte aligned).
// positions: [total_queries]. query_start: [num_seqs + 1], non-decreasing,
// query_start[0] = 0 and query_start[num_seqs] = total_queries.
// block_tables: [num_seqs, max_blocks_per_seq]. k_pool, v_pool: one layer's
// bf16 pools (16-byte aligned). num_splits: 1 .. kMaxAttentionSplits; when
// > 1, workspace holds PagedAttentionWorkspaceFloats(...) floats (16-byte
// aligned) and is overwritten; when 1 it may be null. Every element of out is
// written. total_queries == 0 launches nothing.
cudaError_t PagedAttention(const PagedAttentionShape& shape, const float* q,
                           int64_t total_queries, const int32_t* positions,
                           const int32_t* query_start, int num_seqs,
                           const int32_t* block_tables, int max_blocks_per_seq,
                           const uint16_t* k_pool, const uint16_t* v_pool, int num_splits,
                           float* workspace, float* out, cudaStream_t stream);

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_ATTENTION_H_
