// The expert-parallel runner against the single-process one: W ranks (threads
// of this process, each with its own Gloo context over loopback and only its
// own experts loaded) must produce the LocalExpertRunner's output bits, with
// uneven token counts and ranks that have none.
//
// The reference runs the LocalExpertRunner once on all ranks' tokens
// concatenated in rank order: then every expert sees the same rows in the
// same order as on its owning rank (rows arrive by source rank, then in
// entry order), so equality must be exact. (Against each rank's tokens alone
// an expert's batch would differ in size, and a matmul over 5 rows takes the
// GEMM path where 4 take the GEMV path: last-bit differences, as in any
// batched server.)
#include "worker/expert_parallel.h"

#include <random>
#include <thread>

#include "collective/group.h"
#include "collective/in_memory_kv_store.h"
#include "engine/local_expert_runner.h"
#include "gtest/gtest.h"
#include "worker/expert_shards.h"

namespace moeserve {
namespace {

TEST(ExpertShardsTest, EvenUnevenAndMoreRanksThanExperts) {
  ExpertShards even(60, 4);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(even.begin(r), 15 * r);
    EXPECT_EQ(even.end(r), 15 * (r + 1));
  }
  ExpertShards uneven(8, 3);
  EXPECT_EQ(uneven.begin(0), 0);
  EXPECT_EQ(uneven.end(0), 3);
  EXPECT_EQ(uneven.end(1), 6);
  EXPECT_EQ(uneven.end(2), 8);
  EXPECT_EQ(uneven.owner(5), 1);
  EXPECT_EQ(uneven.owner(6), 2);
  ExpertShards sparse(2, 4);
  EXPECT_EQ(sparse.end(0), 1);
  EXPECT_EQ(sparse.end(1), 2);
  EXPECT_EQ(sparse.begin(2), 2);
  EXPECT_EQ(sparse.end(3), 2);  // ranks 2 and 3 hold none
}

struct RankInput {
  std::vector<float> h;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  int64_t t = 0;
};

RankInput MakeInput(const ModelConfig& c, int64_t t, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  RankInput in;
  in.t = t;
  in.h.resize(t * c.hidden_size);
  for (float& x : in.h) x = normal(rng);
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> all(c.num_experts);
    for (int e = 0; e < c.num_experts; ++e) all[e] = e;
    std::shuffle(all.begin(), all.end(), rng);
    for (int s = 0; s < c.top_k; ++s) {
      in.ids.push_back(all[s]);
      in.weights.push_back(std::uniform_real_distribution<float>(0.1f, 1.0f)(rng));
    }
  }
  return in;
}

void CheckGroup(const std::string& fixture, int world, const std::vector<int64_t>& tokens) {
  const std::string dir = "tests/fixtures/" + fixture;
  auto full = LoadModel(dir);
  ASSERT_TRUE(full.ok()) << full.status();
  const ModelConfig& c = (*full)->config;
  int moe_layer = 0;
  while (!(*full)->layers[moe_layer].is_moe) ++moe_layer;
  const ExpertShards shards(c.num_experts, world);

  std::vector<RankInput> inputs;
  for (int r = 0; r < world; ++r) inputs.push_back(MakeInput(c, tokens[r], 100 + r));

  InMemoryKvStore store;
  std::vector<std::vector<float>> outs(world);
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      LoadOptions o;
      o.expert_begin = shards.begin(r);
      o.expert_end = shards.end(r);
      auto w = LoadModel(dir, o);
      if (!w.ok()) {
        errors[r] = std::string(w.status().message());
        return;
      }
      GroupOptions g;
      g.rank = r;
      g.world_size = world;
      g.prefix = "test/";
      g.timeout = absl::Seconds(20);
      auto coll = CreateCollective(store, g);
      if (!coll.ok()) {
        errors[r] = std::string(coll.status().message());
        return;
      }
      ExpertParallelRunner runner(**w, **coll, shards);
      const RankInput& in = inputs[r];
      outs[r].assign(in.t * c.hidden_size, -1.0f);
      // Twice: the runner's buffers are reused between layers and steps.
      for (int rep = 0; rep < 2; ++rep) {
        absl::Status s = runner.Run(moe_layer, in.h.data(), in.t, in.ids.data(),
                                    in.weights.data(), outs[r].data());
        if (!s.ok()) {
          errors[r] = std::string(s.message());
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;
  RankInput all;
  for (const RankInput& in : inputs) {
    all.h.insert(all.h.end(), in.h.begin(), in.h.end());
    all.ids.insert(all.ids.end(), in.ids.begin(), in.ids.end());
    all.weights.insert(all.weights.end(), in.weights.begin(), in.weights.end());
    all.t += in.t;
  }
  LocalExpertRunner local(**full);
  std::vector<float> expected(all.t * c.hidden_size);
  ASSERT_TRUE(local.Run(moe_layer, all.h.data(), all.t, all.ids.data(), all.weights.data(),
                        expected.data())
                  .ok());
  size_t offset = 0;
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(outs[r].size(), inputs[r].t * c.hidden_size);
    for (size_t i = 0; i < outs[r].size(); ++i) {
      // Bit-identical, not merely close: same operations in the same order.
      ASSERT_EQ(outs[r][i], expected[offset + i]) << "rank " << r << " element " << i;
    }
    offset += outs[r].size();
  }
}

TEST(ExpertParallelTest, OneRankMatchesLocal) { CheckGroup("qwen3_moe_f32", 1, {7}); }

TEST(ExpertParallelTest, TwoRanksUnevenTokens) { CheckGroup("qwen3_moe_f32", 2, {9, 1}); }

TEST(ExpertParallelTest, ThreeRanksUnevenExpertsOneIdle) {
  CheckGroup("mixtral_bf16", 3, {5, 0, 12});
}

TEST(ExpertParallelTest, FourRanksQwen2SharedExpertModel) {
  CheckGroup("qwen2_moe_f32", 4, {3, 8, 0, 1});
}

}  // namespace
}  // namespace moeserve
