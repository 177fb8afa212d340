// The paged KV cache: a pool of fixed-size blocks shared by every sequence of
// a rank, and each sequence's block table into it.
//
//   auto pool = std::make_shared<KvBlockPool>(layers, kv_dim, /*block_size=*/16, blocks);
//   KvCache cache(pool);
//   if (!cache.Reserve(positions)) { /* out of blocks: preempt someone */ }
//   cache.k_row(layer, pos)          // where position pos's keys go
//   cache.View(layer)                // what the attention kernel reads
//
// Layout: per layer, K and V pools of [num_blocks, block_size, kv_dim] floats.
// Position j of a sequence lives in block table[j / block_size], row
// j % block_size (kernels/cpu/attention.h reads it so). The pool's memory is
// reserved, not touched, up front: the OS commits a block's pages when it is
// first written, so a large budget costs only what is used.
//
// Prefix caching (vLLM's automatic prefix caching): a block that holds a full
// block_size run of a sequence's tokens can be published under the hash of
// its tokens chained with its predecessor's hash. Another sequence whose
// tokens start the same way finds those blocks and shares them (reference
// counts) instead of computing them again. A published block that no
// sequence uses any more stays cached until a fresh block is needed, then the
// least recently released one is evicted. Lookups compare the stored tokens
// as well as the hash, so a hash collision cannot return a wrong block.
//
// Not thread-safe: the engine thread owns the pool and its caches.
#ifndef MOESERVE_ENGINE_KV_CACHE_H_
#define MOESERVE_ENGINE_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/types/span.h"
#include "kernels/cpu/attention.h"

namespace moeserve {

class KvBlockPool {
 public:
  // host_storage false: block ids and bookkeeping only, for a ForwardPass
  // that keeps the values on a device (k_row and friends must not be used).
  KvBlockPool(int num_layers, int64_t kv_dim, int block_size, int num_blocks,
              bool host_storage = true);
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  // How many blocks of `block_size` positions fit in `bytes` (K and V, all
  // layers, values of value_bytes: 4 for the CPU's float, 2 for bf16).
  static int64_t BlocksForBytes(int num_layers, int64_t kv_dim, int block_size, int64_t bytes,
                                int value_bytes = sizeof(float));

  int num_layers() const { return num_layers_; }
  int64_t kv_dim() const { return kv_dim_; }
  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  // Blocks no sequence holds (cached ones included: they can be evicted).
  int num_free() const { return static_cast<int>(free_.size() + evictable_.size()); }
  int num_used() const { return num_blocks_ - num_free(); }
  bool host_storage() const { return k_ != nullptr; }
  // Host bytes of K and V storage (0 without host storage).
  size_t bytes() const {
    return k_ ? 2 * layer_floats() * num_layers_ * sizeof(float) : 0;
  }

  // A block for one holder (reference count 1): a never-published free block
  // first, else the least recently released cached one (forgetting its
  // hash). -1 when every block is held.
  int32_t Allocate();
  // One more holder of `block` (which may be cached with no holder).
  void AddRef(int32_t block);
  // One holder fewer; at zero the block is free again (still cached when
  // published).
  void Release(int32_t block);
  int ref_count(int32_t block) const { return refs_[block]; }
  // Testing: fill every block Allocate hands out with NaN, so that reading a
  // position nobody wrote since shows in the results.
  void set_poison_on_allocate(bool on) { poison_ = on; }

  // Prefix cache. The hash of a full block: HashBlock(parent, its tokens),
  // with parent 0 for a sequence's first block.
  static uint64_t HashBlock(uint64_t parent, absl::Span<const int32_t> tokens);
  // The cached block with this hash, parent and tokens, or -1. Does not
  // take a reference.
  int32_t Find(uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens) const;
  // `block` (held, full, its rows written) now answers Find for this hash. A
  // no-op if another block already does.
  void Publish(int32_t block, uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens);

  float* k_row(int layer, int32_t block, int row) { return &k_[Offset(layer, block, row)]; }
  float* v_row(int layer, int32_t block, int row) { return &v_[Offset(layer, block, row)]; }
  const float* k_layer(int layer) const { return &k_[Offset(layer, 0, 0)]; }
  const float* v_layer(int layer) const { return &v_[Offset(layer, 0, 0)]; }

 private:
  struct Cached {
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;
    bool published = false;
    std::list<int32_t>::iterator lru;  // in evictable_, while unheld
  };

  size_t layer_floats() const {
    return static_cast<size_t>(num_blocks_) * block_size_ * static_cast<size_t>(kv_dim_);
  }
  size_t Offset(int layer, int32_t block, int row) const {
    return layer * layer_floats() +
           (static_cast<size_t>(block) * block_size_ + row) * static_cast<size_t>(kv_dim_);
  }
  void Unpublish(int32_t block);

  int num_layers_;
  int64_t kv_dim_;
  int block_size_;
  int num_blocks_;
  std::unique_ptr<float[]> k_, v_;  // uninitialised: pages committed on first write
  std::vector<int> refs_;
  std::vector<int32_t> free_;       // unheld, unpublished (a stack)
  std::list<int32_t> evictable_;    // unheld, published; front = least recently released
  std::vector<Cached> meta_;
  std::unordered_multimap<uint64_t, int32_t> by_hash_;
  bool poison_ = false;
};

// One sequence's blocks. Move-only; releases its blocks when destroyed.
class KvCache {
 public:
  explicit KvCache(std::shared_ptr<KvBlockPool> pool);
  // A cache with a pool of its own, just big enough for `capacity` positions
  // (single-sequence use: Generate, ScorePrompt, tests).
  KvCache(int num_layers, int64_t kv_dim, int capacity, int block_size = 16);
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&& other);
  ~KvCache();

  // Positions the blocks held can store.
  int capacity() const { return static_cast<int>(blocks_.size()) * pool_->block_size(); }
  int64_t kv_dim() const { return pool_->kv_dim(); }
  // Takes blocks until capacity() >= positions; false if the pool ran out
  // (the blocks taken so far are kept).
  bool Reserve(int positions);
  // Appends a block another holder filled (the prefix cache); takes a
  // reference. Only while capacity() is a whole number of full blocks.
  void AppendShared(int32_t block);
  // Releases every block.
  void Clear();
  const std::vector<int32_t>& blocks() const { return blocks_; }
  KvBlockPool& pool() const { return *pool_; }

  float* k_row(int layer, int pos) {
    return pool_->k_row(layer, blocks_[pos / pool_->block_size()], pos % pool_->block_size());
  }
  float* v_row(int layer, int pos) {
    return pool_->v_row(layer, blocks_[pos / pool_->block_size()], pos % pool_->block_size());
  }
  kernels::cpu::PagedKv View(int layer) const;

 private:
  std::shared_ptr<KvBlockPool> pool_;
  std::vector<int32_t> blocks_;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_KV_CACHE_H_
