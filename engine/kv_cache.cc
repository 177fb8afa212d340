#include "engine/kv_cache.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

namespace moeserve {

KvBlockPool::KvBlockPool(int num_layers, int64_t kv_dim, int block_size, int num_blocks,
                         bool host_storage)
    : num_layers_(num_layers),
      kv_dim_(kv_dim),
      block_size_(block_size),
      num_blocks_(num_blocks),
      refs_(num_blocks, 0),
      meta_(num_blocks) {
  if (host_storage) {
    const size_t n = static_cast<size_t>(num_layers) * num_blocks * block_size * kv_dim;
    k_.reset(new float[n]);
    v_.reset(new float[n]);
  }
  free_.reserve(num_blocks);
  // A stack: block 0 is taken first.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int64_t KvBlockPool::BlocksForBytes(int num_layers, int64_t kv_dim, int block_size,
                                    int64_t bytes, int value_bytes) {
  const int64_t per_block = 2 * int64_t{num_layers} * block_size * kv_dim * value_bytes;
  return per_block > 0 ? bytes / per_block : 0;
}

int32_t KvBlockPool::Allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    b = evictable_.front();
    evictable_.pop_front();
    Unpublish(b);
  } else {
    return -1;
  }
  refs_[b] = 1;
  if (poison_ && k_) {
    const size_t n = static_cast<size_t>(block_size_) * kv_dim_;
    for (int layer = 0; layer < num_layers_; ++layer) {
      std::fill_n(k_row(layer, b, 0), n, std::numeric_limits<float>::quiet_NaN());
      std::fill_n(v_row(layer, b, 0), n, std::numeric_limits<float>::quiet_NaN());
    }
  }
  return b;
}

void KvBlockPool::AddRef(int32_t block) {
  if (refs_[block]++ == 0) {
    // Unheld: a cached block leaves the eviction list (a free unpublished
    // block is never shared, so it cannot be here).
    assert(meta_[block].published);
    evictable_.erase(meta_[block].lru);
  }
}

void KvBlockPool::Release(int32_t block) {
  assert(refs_[block] > 0);
  if (--refs_[block] > 0) return;
  if (meta_[block].published) {
    meta_[block].lru = evictable_.insert(evictable_.end(), block);
  } else {
    free_.push_back(block);
  }
}

uint64_t KvBlockPool::HashBlock(uint64_t parent, absl::Span<const int32_t> tokens) {
  // FNV-1a over the parent hash and the token ids, then a final mix
  // (splitmix64) so nearby inputs spread over the whole range. Lookups verify
  // the tokens, so the hash only has to spread well, not resist collisions.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

int32_t KvBlockPool::Find(uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens) const {
  auto [begin, end] = by_hash_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    const Cached& m = meta_[it->second];
    if (m.parent == parent && absl::MakeConstSpan(m.tokens) == tokens) return it->second;
  }
  return -1;
}

void KvBlockPool::Publish(int32_t block, uint64_t hash, uint64_t parent,
                          absl::Span<const int32_t> tokens) {
  assert(refs_[block] > 0);
  if (meta_[block].published || Find(hash, parent, tokens) >= 0) return;
  Cached& m = meta_[block];
  m.hash = hash;
  m.parent = parent;
  m.tokens.assign(tokens.begin(), tokens.end());
  m.published = true;
  by_hash_.emplace(hash, block);
}

void KvBlockPool::Unpublish(int32_t block) {
  Cached& m = meta_[block];
  auto [begin, end] = by_hash_.equal_range(m.hash);
  for (auto it = begin; it != end; ++it) {
    if (it->second == block) {
      by_hash_.erase(it);
      break;
    }
  }
  m = Cached();
}

KvCache::KvCache(std::shared_ptr<KvBlockPool> pool) : pool_(std::move(pool)) {}

KvCache::KvCache(int num_layers, int64_t kv_dim, int capacity, int block_size)
    : pool_(std::make_shared<KvBlockPool>(num_layers, kv_dim, block_size,
                                          (std::max(capacity, 0) + block_size - 1) / block_size)) {
  Reserve(capacity);
}

KvCache& KvCache::operator=(KvCache&& other) {
  if (this != &other) {
    Clear();
    pool_ = std::move(other.pool_);
    blocks_ = std::move(other.blocks_);
    other.blocks_.clear();
  }
  return *this;
}

KvCache::~KvCache() { Clear(); }

bool KvCache::Reserve(int positions) {
  while (capacity() < positions) {
    const int32_t b = pool_->Allocate();
    if (b < 0) return false;
    blocks_.push_back(b);
  }
  return true;
}

void KvCache::AppendShared(int32_t block) {
  pool_->AddRef(block);
  blocks_.push_back(block);
}

void KvCache::Clear() {
  if (pool_ == nullptr) return;  // moved from
  for (int32_t b : blocks_) pool_->Release(b);
  blocks_.clear();
}

kernels::cpu::PagedKv KvCache::View(int layer) const {
  return {pool_->k_layer(layer), pool_->v_layer(layer), blocks_.data(), pool_->block_size()};
}

}  // namespace moeserve
