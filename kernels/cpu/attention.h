// Causal grouped-query attention over a paged KV cache, for one sequence.
//
// The cache for one layer is a pool of blocks, each `block_size` token rows of
// kv_dim = num_kv_heads * head_dim floats (K and V in separate pools). A
// sequence's block table lists its blocks in order: the row for token
// position j is block_table[j / block_size], offset j % block_size. A
// contiguous cache is the special case of one block.
//
// Query i (at positions[i]) attends to every cached position j <= positions[i]
// (and j > positions[i] - window when window > 0, Mistral/Mixtral sliding
// window as HF masks it). Query head h reads KV head h / (num_heads /
// num_kv_heads). Softmax in float with the maximum subtracted; scores scaled
// by 1/sqrt(head_dim).
#ifndef MOESERVE_KERNELS_CPU_ATTENTION_H_
#define MOESERVE_KERNELS_CPU_ATTENTION_H_

#include <cstdint>

namespace moeserve::kernels::cpu {

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int window = 0;  // 0: unlimited
};

struct PagedKv {
  const float* k_pool = nullptr;
  const float* v_pool = nullptr;
  const int32_t* block_table = nullptr;
  int block_size = 0;
};

// q, out: [n, num_heads, head_dim]; positions: [n]. The cache must already
// hold positions up to max(positions).
void PagedAttention(const AttentionShape& shape, const float* q, int64_t n,
                    const int32_t* positions, const PagedKv& kv, float* out);

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_ATTENTION_H_
