// KvCache: the keys and values of one sequence, for every layer, in float.
//
// Stored as one contiguous block per layer ([capacity, kv_dim] for K and for
// V), which the attention kernel reads through its block-table interface as
// a single block. Capacity is fixed at construction; the engine refuses work
// that would overflow it.
#ifndef MOESERVE_ENGINE_KV_CACHE_H_
#define MOESERVE_ENGINE_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"

namespace moeserve {

class KvCache {
 public:
  KvCache(int num_layers, int64_t kv_dim, int capacity);

  int capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  float* k_row(int layer, int pos) { return &k_[Offset(layer, pos)]; }
  float* v_row(int layer, int pos) { return &v_[Offset(layer, pos)]; }
  kernels::cpu::PagedKv View(int layer) const;
  size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  size_t Offset(int layer, int pos) const {
    return (static_cast<size_t>(layer) * capacity_ + pos) * kv_dim_;
  }

  int64_t kv_dim_;
  int capacity_;
  std::vector<float> k_, v_;
  int32_t block_zero_ = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_KV_CACHE_H_
