// The CUDA paged KV cache (AppendKv) and batched paged attention against the
// CPU reference (kernels/cpu/attention.h), on seeded random data: block sizes
// 16, 32 and 7, group sizes 1, 3, 8 and 16, head_dim 64, 128 and 256, one
// batch mixing decode rows (contexts of 1, 17, 300 and 4100) with prefill
// chunks and an empty sequence, block tables shuffled across the pool, with
// and without a sliding window, unsplit and split along the KV axis. The GPU
// tests skip, saying so, where no GPU is present; the argument checks run
// everywhere (they return before touching the device).
//
// Tolerances:
// - AppendKv: exact. fp32 -> bf16 rounds to nearest even on both sides.
// - PagedAttention: the CPU reference runs on float pools holding exactly the
//   GPU pools' bf16 values (BF16ToFloat of what AppendKv wrote) and the same
//   q, so the only differences are the order of the fp32 sums (the dot
//   products, the per-thread/per-split partial sums and their merge) and
//   CUDA's expf against glibc's exp (both within 2 ulp). Each output is a
//   convex combination of V rows (|v| ~ N(0, 1), so the "output scale" is
//   1): the rounding is a few fp32 ulps of the terms summed, ~1e-6, and a
//   score off by e shifts the output by ~e. 1e-4 absolute leaves a wide
//   margin, yet a single position missing from a 4100-long
//   softmax (weight ~2.4e-4 on average, far more for the peaky rows: q has
//   scale 2, so scores spread over about +-8) or read from the wrong block
//   shows up in some of the head_dim outputs.
// - Outputs and the pool are poisoned with 0xff bytes (NaN as float and as
//   bf16): every output element must be written, and a read of any pool row
//   the kernel should not touch (past a sequence's end, an unused block, a
//   table entry past the sequence) turns the result NaN.
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer_testing.h"

namespace moeserve::cuda {
namespace {

std::vector<float> RandomFloats(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = dist(rng);
  return v;
}

// A sequence in the batch: `len` positions cached, queries at the last
// num_queries of them (decode: 1; a prefill chunk: several; 0: none).
struct SeqSpec {
  int len;
  int num_queries;
};

// The mixed batch: decodes at contexts 17, 1, 4100 and 300, a prefill chunk
// (37 queries at 100..136), a whole 23-token prompt, and a sequence with no
// query rows this step.
const std::vector<SeqSpec> kMixedBatch = {{17, 1}, {137, 37}, {50, 0}, {1, 1},
                                          {4100, 1}, {23, 23}, {300, 1}};
// Decode only, few rows: PagedAttentionNumSplits splits it.
const std::vector<SeqSpec> kDecodeBatch = {{4100, 1}, {17, 1}, {1, 1}};

// The host side of a batch: the ragged query layout, shuffled block tables
// and the pool slot of every cached token.
struct Batch {
  std::vector<int32_t> query_start;   // [num_seqs + 1]
  std::vector<int32_t> positions;     // [total_queries]
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq]
  std::vector<int32_t> slots;         // [tokens]: sequence by sequence, position order
  int max_blocks_per_seq = 0;
  int num_blocks = 0;
  int64_t total_queries() const { return static_cast<int64_t>(positions.size()); }
  int num_seqs() const { return static_cast<int>(query_start.size()) - 1; }
};

Batch MakeBatch(const std::vector<SeqSpec>& seqs, int block_size, std::mt19937& rng) {
  Batch b;
  int used = 0;
  for (const SeqSpec& s : seqs) {
    const int nb = (s.len + block_size - 1) / block_size;
    used += nb;
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, nb);
  }
  b.max_blocks_per_seq += 3;  // table entries past every sequence's end
  // A few blocks no sequence owns; the last is the "poison" block every
  // unused table entry points to (never written: NaN if read).
  b.num_blocks = used + 4;
  std::vector<int32_t> order(b.num_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const int32_t poison = order.back();
  b.block_tables.assign(seqs.size() * b.max_blocks_per_seq, poison);
  b.query_start.push_back(0);
  int next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    int32_t* table = &b.block_tables[s * b.max_blocks_per_seq];
    const int nb = (seqs[s].len + block_size - 1) / block_size;
    for (int i = 0; i < nb; ++i) table[i] = order[next++];
    for (int j = 0; j < seqs[s].len; ++j) {
      b.slots.push_back(table[j / block_size] * block_size + j % block_size);
    }
    for (int j = seqs[s].len - seqs[s].num_queries; j < seqs[s].len; ++j) {
      b.positions.push_back(j);
    }
    b.query_start.push_back(static_cast<int32_t>(b.positions.size()));
  }
  return b;
}

struct Case {
  int num_heads, num_kv_heads, head_dim, block_size, window;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << "heads=" << c.num_heads << "/" << c.num_kv_heads << " d=" << c.head_dim
      << " block=" << c.block_size << " window=" << c.window;
}

class CudaAttentionTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    auto devices = DeviceCount();
    ASSERT_TRUE(devices.ok()) << devices.status();
    if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernels were built, not run";
  }

  // Appends every cached token of `seqs`, checks the pools bit for bit, then
  // runs PagedAttention with each split count (0: PagedAttentionNumSplits)
  // against the CPU reference.
  void Check(const std::vector<SeqSpec>& seqs, const std::vector<int>& split_counts);
};

void CudaAttentionTest::Check(const std::vector<SeqSpec>& seqs,
                              const std::vector<int>& split_counts) {
  const Case c = GetParam();
  const int H = c.num_heads, D = c.head_dim, bs = c.block_size;
  const int kv_dim = c.num_kv_heads * D;
  std::mt19937 rng(77 + H * 131 + c.num_kv_heads * 17 + D + bs * 7 + c.window);
  const Batch b = MakeBatch(seqs, bs, rng);
  const int64_t T = b.total_queries();
  const int64_t tokens = static_cast<int64_t>(b.slots.size());
  const int64_t pool_rows = int64_t{b.num_blocks} * bs;

  // --- AppendKv: every token, plus two padding rows (slot -1) at the end.
  std::vector<int32_t> slots = b.slots;
  slots.push_back(-1);
  slots.push_back(-1);
  const int64_t n = tokens + 2;
  const std::vector<float> k = RandomFloats(n * kv_dim, 1.0f, rng);
  const std::vector<float> v = RandomFloats(n * kv_dim, 1.0f, rng);
  DeviceBuffer<float> d_k(k), d_v(v);
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<uint16_t> d_k_pool(pool_rows * kv_dim), d_v_pool(pool_rows * kv_dim);
  ASSERT_TRUE(d_k.get() && d_v.get() && d_slots.get() && d_k_pool.get() && d_v_pool.get());
  ASSERT_EQ(AppendKv(d_k.get(), d_v.get(), n, kv_dim, d_slots.get(), d_k_pool.get(),
                     d_v_pool.get(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> k_pool = d_k_pool.Read(), v_pool = d_v_pool.Read();
  {
    std::vector<int64_t> source(pool_rows, -1);  // token written to each row
    for (int64_t i = 0; i < tokens; ++i) source[slots[i]] = i;
    for (int64_t r = 0; r < pool_rows; ++r) {
      for (int col = 0; col < kv_dim; ++col) {
        const size_t at = r * kv_dim + col;
        const uint16_t want_k = source[r] < 0 ? 0xffff : FloatToBF16(k[source[r] * kv_dim + col]);
        const uint16_t want_v = source[r] < 0 ? 0xffff : FloatToBF16(v[source[r] * kv_dim + col]);
        ASSERT_EQ(k_pool[at], want_k) << "K pool row " << r << " col " << col;
        ASSERT_EQ(v_pool[at], want_v) << "V pool row " << r << " col " << col;
      }
    }
  }

  // --- The CPU reference, sequence by sequence, on the pools' exact values.
  std::vector<float> k_f(k_pool.size()), v_f(v_pool.size());
  for (size_t i = 0; i < k_pool.size(); ++i) k_f[i] = BF16ToFloat(k_pool[i]);
  for (size_t i = 0; i < v_pool.size(); ++i) v_f[i] = BF16ToFloat(v_pool[i]);
  const std::vector<float> q = RandomFloats(T * H * D, 2.0f, rng);
  std::vector<float> want(T * H * D, NAN);
  const kernels::cpu::AttentionShape cpu_shape{H, c.num_kv_heads, D, c.window};
  for (int s = 0; s < b.num_seqs(); ++s) {
    const int64_t q0 = b.query_start[s], nq = b.query_start[s + 1] - q0;
    if (nq == 0) continue;
    const kernels::cpu::PagedKv kv{k_f.data(), v_f.data(),
                                   &b.block_tables[s * b.max_blocks_per_seq], bs};
    kernels::cpu::PagedAttention(cpu_shape, q.data() + q0 * H * D, nq, &b.positions[q0], kv,
                                 want.data() + q0 * H * D);
  }

  // --- The GPU, for each split count.
  DeviceBuffer<float> d_q(q), d_out(T * H * D);
  DeviceBuffer<int32_t> d_positions(b.positions), d_query_start(b.query_start),
      d_tables(b.block_tables);
  ASSERT_TRUE(d_q.get() && d_out.get() && d_positions.get() && d_query_start.get() &&
              d_tables.get());
  const PagedAttentionShape shape{H, c.num_kv_heads, D, bs, c.window};
  int num_sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  int max_len = 0;
  for (const SeqSpec& s : seqs) max_len = std::max(max_len, s.len);
  for (int requested : split_counts) {
    const int splits =
        requested > 0 ? requested : PagedAttentionNumSplits(T, shape, max_len, num_sms);
    SCOPED_TRACE(::testing::Message() << "num_splits " << splits << " (asked " << requested
                                      << "), " << T << " query rows");
    DeviceBuffer<float> workspace(PagedAttentionWorkspaceFloats(T, H, D, splits));
    d_out.Poison();
    ASSERT_EQ(PagedAttention(shape, d_q.get(), T, d_positions.get(), d_query_start.get(),
                             b.num_seqs(), d_tables.get(), b.max_blocks_per_seq,
                             d_k_pool.get(), d_v_pool.get(), splits,
                             splits > 1 ? workspace.get() : nullptr, d_out.get(), nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> got = d_out.Read();
    double max_err = 0.0;
    for (int64_t e = 0; e < T * H * D; ++e) {
      const int64_t row = e / (H * D);
      ASSERT_TRUE(std::isfinite(got[e]))
          << "not written or NaN: query row " << row << " (position " << b.positions[row]
          << ") head " << (e / D) % H << " dim " << e % D;
      ASSERT_NEAR(got[e], want[e], 1e-4)
          << "query row " << row << " (position " << b.positions[row] << ") head "
          << (e / D) % H << " dim " << e % D;
      max_err = std::max(max_err, std::abs(double(got[e]) - want[e]));
    }
    RecordProperty("max_abs_error_splits_" + std::to_string(splits),
                   ::testing::PrintToString(max_err));
  }
}

TEST_P(CudaAttentionTest, MixedBatchMatchesCpuReference) {
  // Unsplit; split in 3 (uneven slices); split in 16 (mostly empty slices
  // for the short rows and the windowed ones).
  Check(kMixedBatch, {1, 3, 16});
}

TEST_P(CudaAttentionTest, DecodeBatchMatchesCpuReference) {
  // 0: PagedAttentionNumSplits' own choice, which splits this small batch.
  Check(kDecodeBatch, {0, 1, 5});
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionTest,
    ::testing::Values(Case{32, 4, 128, 16, 0},   // Qwen3-30B-A3B
                      Case{32, 4, 128, 7, 0},    // odd block size
                      Case{32, 4, 128, 16, 64},  // sliding window
                      Case{16, 16, 64, 16, 0},   // OLMoE-like, group 1
                      Case{16, 16, 64, 7, 64},
                      Case{16, 16, 128, 32, 0},
                      Case{8, 1, 128, 16, 0},    // one KV head
                      Case{8, 1, 128, 7, 64},
                      Case{12, 4, 64, 16, 0},    // group 3: one head per block
                      Case{32, 4, 64, 7, 64},
                      Case{16, 1, 256, 16, 0},   // group 16 at d=256: two head chunks
                      Case{8, 2, 256, 7, 64}));

TEST(CudaAttentionArgsTest, NumSplitsSplitsSmallBatchesOnly) {
  const PagedAttentionShape shape{32, 4, 128, 16, 0};
  // One decode row: 4 blocks; eight blocks per SM of 132 want 264 splits,
  // capped at one per 64 positions and at kMaxAttentionSplits.
  EXPECT_EQ(PagedAttentionNumSplits(1, shape, 8192, 132), kMaxAttentionSplits);
  EXPECT_EQ(PagedAttentionNumSplits(1, shape, 513, 132), 8);
  EXPECT_EQ(PagedAttentionNumSplits(1, shape, 100, 132), 1);
  EXPECT_EQ(PagedAttentionNumSplits(16, shape, 8192, 132), 17);  // 64 blocks
  EXPECT_EQ(PagedAttentionNumSplits(256, shape, 8192, 132), 2);  // 1024 blocks
  EXPECT_EQ(PagedAttentionNumSplits(512, shape, 8192, 132), 1);
  EXPECT_EQ(PagedAttentionNumSplits(1, shape, 1 << 20, 1000), kMaxAttentionSplits);
  EXPECT_EQ(PagedAttentionWorkspaceFloats(10, 32, 128, 1), 0);
  EXPECT_EQ(PagedAttentionWorkspaceFloats(10, 32, 128, 4), 4 * 10 * 32 * 130);
}

// Bad shapes are refused on the host before any launch; these run without a
// GPU. The pointers are never dereferenced.
TEST(CudaAttentionArgsTest, RejectsUnsupportedShapes) {
  alignas(16) static float f[64];
  alignas(16) static uint16_t pool[64];
  alignas(16) static int32_t ints[64];
  auto run = [&](PagedAttentionShape shape, int splits, float* workspace) {
    return PagedAttention(shape, f, 4, ints, ints, 1, ints, 4, pool, pool, splits, workspace, f,
                          nullptr);
  };
  const PagedAttentionShape good{8, 2, 128, 16, 0};
  PagedAttentionShape s = good;
  s.head_dim = 96;
  EXPECT_EQ(run(s, 1, nullptr), cudaErrorInvalidValue);
  s = good;
  s.num_heads = 6;
  s.num_kv_heads = 4;
  EXPECT_EQ(run(s, 1, nullptr), cudaErrorInvalidValue);
  s = good;
  s.num_kv_heads = 0;
  EXPECT_EQ(run(s, 1, nullptr), cudaErrorInvalidValue);
  s = good;
  s.block_size = 0;
  EXPECT_EQ(run(s, 1, nullptr), cudaErrorInvalidValue);
  s = good;
  s.window = -1;
  EXPECT_EQ(run(s, 1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(run(good, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(run(good, kMaxAttentionSplits + 1, f), cudaErrorInvalidValue);
  EXPECT_EQ(run(good, 2, nullptr), cudaErrorInvalidValue);  // split without workspace
  // Misaligned q.
  EXPECT_EQ(PagedAttention(good, f + 1, 4, ints, ints, 1, ints, 4, pool, pool, 1, nullptr, f,
                           nullptr),
            cudaErrorInvalidValue);
  // No sequences for the rows.
  EXPECT_EQ(PagedAttention(good, f, 4, ints, ints, 0, ints, 4, pool, pool, 1, nullptr, f,
                           nullptr),
            cudaErrorInvalidValue);
  // Nothing to do is not an error, and launches nothing.
  EXPECT_EQ(PagedAttention(good, f, 0, ints, ints, 1, ints, 4, pool, pool, 1, nullptr, f,
                           nullptr),
            cudaSuccess);
  EXPECT_EQ(AppendKv(f, f, 0, 128, ints, pool, pool, nullptr), cudaSuccess);
  EXPECT_EQ(AppendKv(f, f, -1, 128, ints, pool, pool, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(AppendKv(f, f, 4, 0, ints, pool, pool, nullptr), cudaErrorInvalidValue);
}

// kv_dim not a multiple of 4 takes the scalar path; rows land at shuffled
// slots, padding rows (slot -1) are skipped, other rows stay untouched.
TEST(CudaAppendKvTest, OddWidthScalarPath) {
  auto devices = DeviceCount();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernels were built, not run";
  std::mt19937 rng(5);
  const int kv_dim = 13, pool_rows = 11;
  const std::vector<int32_t> slots = {7, -1, 0, 10, 3, -1};
  const int64_t n = static_cast<int64_t>(slots.size());
  const std::vector<float> k = RandomFloats(n * kv_dim, 3.0f, rng);
  const std::vector<float> v = RandomFloats(n * kv_dim, 3.0f, rng);
  DeviceBuffer<float> d_k(k), d_v(v);
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<uint16_t> d_k_pool(pool_rows * kv_dim), d_v_pool(pool_rows * kv_dim);
  ASSERT_EQ(AppendKv(d_k.get(), d_v.get(), n, kv_dim, d_slots.get(), d_k_pool.get(),
                     d_v_pool.get(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> k_pool = d_k_pool.Read(), v_pool = d_v_pool.Read();
  std::vector<int> source(pool_rows, -1);
  for (int i = 0; i < n; ++i) {
    if (slots[i] >= 0) source[slots[i]] = i;
  }
  for (int r = 0; r < pool_rows; ++r) {
    for (int col = 0; col < kv_dim; ++col) {
      const uint16_t want_k = source[r] < 0 ? 0xffff : FloatToBF16(k[source[r] * kv_dim + col]);
      const uint16_t want_v = source[r] < 0 ? 0xffff : FloatToBF16(v[source[r] * kv_dim + col]);
      ASSERT_EQ(k_pool[r * kv_dim + col], want_k) << "row " << r << " col " << col;
      ASSERT_EQ(v_pool[r * kv_dim + col], want_v) << "row " << r << " col " << col;
    }
  }
}

// A query whose position is past its block table gets NaN rows (not an out
// of bounds read); the other rows of the batch are unaffected.
TEST(CudaAttentionNaNTest, PositionPastTableGivesNaN) {
  auto devices = DeviceCount();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernels were built, not run";
  const int H = 4, KVH = 2, D = 64, bs = 16, kv_dim = KVH * D;
  const PagedAttentionShape shape{H, KVH, D, bs, 0};
  std::mt19937 rng(11);
  // One sequence, one block (block 1 of 2), queries at positions 5 and 16.
  const std::vector<int32_t> table = {1}, positions = {5, 16}, query_start = {0, 2};
  std::vector<uint16_t> pool(2 * bs * kv_dim);
  for (auto& x : pool) x = FloatToBF16(std::normal_distribution<float>(0.0f, 1.0f)(rng));
  const std::vector<float> q = RandomFloats(2 * H * D, 1.0f, rng);
  DeviceBuffer<uint16_t> d_pool(pool);
  DeviceBuffer<float> d_q(q), d_out(2 * H * D);
  DeviceBuffer<int32_t> d_table(table), d_positions(positions), d_query_start(query_start);
  ASSERT_EQ(PagedAttention(shape, d_q.get(), 2, d_positions.get(), d_query_start.get(), 1,
                           d_table.get(), 1, d_pool.get(), d_pool.get(), 1, nullptr, d_out.get(),
                           nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got = d_out.Read();
  std::vector<float> pool_f(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) pool_f[i] = BF16ToFloat(pool[i]);
  std::vector<float> want(H * D);
  kernels::cpu::PagedAttention({H, KVH, D, 0}, q.data(), 1, positions.data(),
                               {pool_f.data(), pool_f.data(), table.data(), bs}, want.data());
  for (int e = 0; e < H * D; ++e) {
    ASSERT_NEAR(got[e], want[e], 1e-4) << e;
    ASSERT_TRUE(std::isnan(got[H * D + e])) << e;
  }
}

}  // namespace
}  // namespace moeserve::cuda
