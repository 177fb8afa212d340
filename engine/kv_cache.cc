#include "engine/kv_cache.h"

namespace moeserve {

KvCache::KvCache(int num_layers, int64_t kv_dim, int capacity)
    : kv_dim_(kv_dim),
      capacity_(capacity),
      k_(static_cast<size_t>(num_layers) * capacity * kv_dim),
      v_(static_cast<size_t>(num_layers) * capacity * kv_dim) {}

kernels::cpu::PagedKv KvCache::View(int layer) const {
  return {&k_[Offset(layer, 0)], &v_[Offset(layer, 0)], &block_zero_, capacity_};
}

}  // namespace moeserve
