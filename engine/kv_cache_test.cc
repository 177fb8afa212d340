#include "engine/kv_cache.h"

#include <vector>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

std::shared_ptr<KvBlockPool> Pool(int blocks, int block_size = 4) {
  return std::make_shared<KvBlockPool>(/*num_layers=*/2, /*kv_dim=*/3, block_size, blocks);
}

TEST(KvBlockPool, BlocksForBytes) {
  // 2 layers × (K + V) × 4 positions × 3 floats × 4 bytes = 192 bytes a block.
  EXPECT_EQ(KvBlockPool::BlocksForBytes(2, 3, 4, 192 * 10 + 191), 10);
  EXPECT_EQ(KvBlockPool::BlocksForBytes(2, 3, 4, 100), 0);
}

TEST(KvBlockPool, AllocatesEveryBlockOnceThenRefuses) {
  auto pool = Pool(3);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(pool->Allocate());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool->Allocate(), -1);
  EXPECT_EQ(pool->num_free(), 0);
  pool->Release(1);
  EXPECT_EQ(pool->num_free(), 1);
  EXPECT_EQ(pool->Allocate(), 1);
}

TEST(KvCache, ReserveMapsPositionsThroughTheBlockTable) {
  auto pool = Pool(4);
  KvCache a(pool), b(pool);
  ASSERT_TRUE(a.Reserve(5));  // blocks 0, 1
  ASSERT_TRUE(b.Reserve(4));  // block 2
  ASSERT_TRUE(a.Reserve(9));  // block 3
  EXPECT_EQ(a.blocks(), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(a.capacity(), 12);
  EXPECT_FALSE(b.Reserve(5));  // nothing left
  EXPECT_EQ(b.capacity(), 4);
  // Position 9 of a: block 3, row 1.
  EXPECT_EQ(a.k_row(1, 9), pool->k_row(1, 3, 1));
  EXPECT_EQ(a.v_row(0, 4), pool->v_row(0, 1, 0));
  // What the kernel reads resolves to the same rows.
  a.k_row(1, 9)[2] = 7.0f;
  const kernels::cpu::PagedKv view = a.View(1);
  const int64_t row = int64_t{view.block_table[9 / view.block_size]} * view.block_size + 9 % 4;
  EXPECT_EQ(view.k_pool[row * 3 + 2], 7.0f);
}

TEST(KvCache, DestructionAndClearFreeEveryBlock) {
  auto pool = Pool(4);
  {
    KvCache a(pool);
    ASSERT_TRUE(a.Reserve(16));
    EXPECT_EQ(pool->num_free(), 0);
    KvCache moved = std::move(a);
    EXPECT_EQ(pool->num_free(), 0);
    moved.Clear();
    EXPECT_EQ(pool->num_free(), 4);
    ASSERT_TRUE(moved.Reserve(3));
  }
  EXPECT_EQ(pool->num_free(), 4);
}

TEST(KvCache, StandaloneCacheHoldsItsCapacity) {
  KvCache c(/*num_layers=*/1, /*kv_dim=*/2, /*capacity=*/37);
  EXPECT_EQ(c.capacity(), 48);  // three blocks of 16
  EXPECT_FALSE(c.Reserve(49));
}

TEST(PrefixCache, PublishedBlocksAreSharedThenEvictedLeastRecentFirst) {
  auto pool = Pool(3);
  const std::vector<int32_t> t1 = {1, 2, 3, 4}, t2 = {5, 6, 7, 8};
  const uint64_t h1 = KvBlockPool::HashBlock(0, t1), h2 = KvBlockPool::HashBlock(h1, t2);
  EXPECT_NE(h1, KvBlockPool::HashBlock(0, t2));
  EXPECT_NE(h2, KvBlockPool::HashBlock(0, t2));  // the chain matters, not only the tokens

  KvCache a(pool);
  ASSERT_TRUE(a.Reserve(8));
  pool->Publish(a.blocks()[0], h1, 0, t1);
  pool->Publish(a.blocks()[1], h2, h1, t2);
  EXPECT_EQ(pool->Find(h1, 0, t1), a.blocks()[0]);
  EXPECT_EQ(pool->Find(h2, h1, t2), a.blocks()[1]);
  EXPECT_EQ(pool->Find(h2, 0, t2), -1);                        // wrong parent
  EXPECT_EQ(pool->Find(h1, 0, {1, 2, 3, 5}), -1);              // tokens checked, not just hash

  // A second sequence shares the first block.
  KvCache b(pool);
  b.AppendShared(pool->Find(h1, 0, t1));
  EXPECT_EQ(pool->ref_count(a.blocks()[0]), 2);
  const int32_t first = a.blocks()[0], second = a.blocks()[1];
  a.Clear();
  EXPECT_EQ(pool->ref_count(first), 1);
  EXPECT_EQ(pool->num_free(), 2);  // `second` is unheld but still cached
  EXPECT_EQ(pool->Find(h2, h1, t2), second);
  b.Clear();

  // Reuse from the cache takes it off the eviction list.
  KvCache c(pool);
  c.AppendShared(pool->Find(h1, 0, t1));
  EXPECT_EQ(pool->num_free(), 2);
  // Fresh blocks: the never-published one, then the least recently released
  // cached block (`second`), whose hash is then forgotten.
  ASSERT_TRUE(c.Reserve(8));
  EXPECT_EQ(pool->Find(h2, h1, t2), second);
  KvCache d(pool);
  ASSERT_TRUE(d.Reserve(4));
  EXPECT_EQ(d.blocks()[0], second);
  EXPECT_EQ(pool->Find(h2, h1, t2), -1);
  EXPECT_EQ(pool->Find(h1, 0, t1), first);  // still held by c
  EXPECT_EQ(pool->num_free(), 0);
}

}  // namespace
}  // namespace moeserve
