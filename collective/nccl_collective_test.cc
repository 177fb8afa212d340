// The NCCL Collective on this machine's GPU(s): W = 1 over an
// InMemoryKvStore (device AllToAllV with uneven rows and empty calls,
// host-staged AllReduceSum and AllToAll, Barrier), W = 2 in two threads
// when there are two GPUs, and a group whose second rank never comes
// (bounded: DEADLINE_EXCEEDED). Skipped, saying so, without a GPU.
#include "collective/nccl_collective.h"

#include <cuda_runtime_api.h>

#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "collective/group.h"
#include "collective/in_memory_kv_store.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"

namespace moeserve {
namespace {

int Gpus() {
  absl::StatusOr<int> n = cuda::DeviceCount();
  return n.ok() ? *n : 0;
}

#define SKIP_WITHOUT_GPUS(n)                                                       \
  if (Gpus() < (n)) {                                                              \
    GTEST_SKIP() << "needs " << (n) << " CUDA GPU(s), this machine has " << Gpus() \
                 << ": the NCCL collective was built, not run here";               \
  }

// Device copy of host floats, and back.
float* ToDevice(const std::vector<float>& host) {
  float* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), host.size() * sizeof(float) + 4), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  return d;
}

std::vector<float> ToHost(const float* d, size_t n) {
  std::vector<float> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

// rows[s][d]: rows rank s sends to rank d, of `width` floats each.
void CheckAllToAllV(Collective& c, const std::vector<std::vector<int64_t>>& rows, int width) {
  const int w = c.world_size(), r = c.rank();
  std::vector<int64_t> send_counts(w), recv_counts(w);
  std::vector<float> send, want;
  for (int d = 0; d < w; ++d) {
    send_counts[d] = rows[r][d];
    for (int64_t i = 0; i < rows[r][d] * width; ++i) send.push_back(1000.0f * r + 10.0f * d + i);
  }
  for (int s = 0; s < w; ++s) {
    recv_counts[s] = rows[s][r];
    for (int64_t i = 0; i < rows[s][r] * width; ++i) want.push_back(1000.0f * s + 10.0f * r + i);
  }
  float* dsend = ToDevice(send);
  float* drecv = ToDevice(std::vector<float>(want.size(), -1.0f));
  const absl::Status s = c.AllToAllV(dsend, send_counts, drecv, recv_counts, width * sizeof(float));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(ToHost(drecv, want.size()), want);
  cudaFree(dsend);
  cudaFree(drecv);
}

TEST(NcclCollectiveTest, OneRank) {
  SKIP_WITHOUT_GPUS(1);
  InMemoryKvStore store;
  NcclOptions o;
  o.prefix = "epoch/1/nccl/";
  o.timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<Collective>> made = CreateNcclCollective(store, o);
  ASSERT_TRUE(made.ok()) << made.status();
  Collective& c = **made;
  EXPECT_STREQ(c.name(), "nccl");
  EXPECT_EQ(c.memory(), MemorySpace::kDevice);
  absl::StatusOr<std::string> id = store.Get("epoch/1/nccl/id", absl::ZeroDuration());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->size(), 128u);

  CheckAllToAllV(c, {{5}}, 3);
  CheckAllToAllV(c, {{1}}, 1024);
  ASSERT_TRUE(c.AllToAllV(nullptr, {0}, nullptr, {0}, 4).ok());
  int64_t sums[3] = {3, -4, 1LL << 40};
  ASSERT_TRUE(c.AllReduceSum(sums, 3).ok());
  EXPECT_EQ(sums[0], 3);
  EXPECT_EQ(sums[1], -4);
  EXPECT_EQ(sums[2], 1LL << 40);
  int64_t send = 42, recv = 0;
  ASSERT_TRUE(c.AllToAll(&send, &recv).ok());
  EXPECT_EQ(recv, 42);
  ASSERT_TRUE(c.Barrier().ok());
  // Bad arguments break it (this rank is out of step with any peers).
  EXPECT_EQ(c.AllToAllV(nullptr, {1}, nullptr, {1}, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Barrier().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclCollectiveTest, ThroughCreateCollective) {
  SKIP_WITHOUT_GPUS(1);
  InMemoryKvStore store;
  GroupOptions o;
  o.kind = "nccl";
  absl::StatusOr<std::unique_ptr<Collective>> c = CreateCollective(store, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_STREQ((*c)->name(), "nccl");
  ASSERT_TRUE((*c)->Barrier().ok());
}

TEST(NcclCollectiveTest, TwoRanksOnTwoGpus) {
  SKIP_WITHOUT_GPUS(2);
  InMemoryKvStore store;
  std::vector<std::vector<int64_t>> rows = {{2, 0}, {3, 1}};
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      NcclOptions o;
      o.rank = r;
      o.world_size = 2;
      o.device = r;
      o.prefix = "epoch/2/nccl/";
      absl::StatusOr<std::unique_ptr<Collective>> c = CreateNcclCollective(store, o);
      ASSERT_TRUE(c.ok()) << c.status();
      CheckAllToAllV(**c, rows, 5);
      int64_t x[2] = {r + 1, 7};
      ASSERT_TRUE((*c)->AllReduceSum(x, 2).ok());
      EXPECT_EQ(x[0], 3);
      EXPECT_EQ(x[1], 14);
      int64_t send[2] = {10 * r, 10 * r + 1}, recv[2] = {-1, -1};
      ASSERT_TRUE((*c)->AllToAll(send, recv).ok());
      EXPECT_EQ(recv[0], r);
      EXPECT_EQ(recv[1], 10 + r);
    });
  }
  for (auto& t : ranks) t.join();
}

TEST(NcclCollectiveTest, MissingPeerTimesOut) {
  SKIP_WITHOUT_GPUS(1);
  InMemoryKvStore store;
  NcclOptions o;
  o.world_size = 2;  // rank 1 never comes
  o.prefix = "epoch/3/nccl/";
  o.timeout = absl::Seconds(3);
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::unique_ptr<Collective>> c = CreateNcclCollective(store, o);
  const absl::Duration took = absl::Now() - t0;
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(c.status()) || absl::IsUnavailable(c.status()))
      << c.status();
  EXPECT_LT(took, o.timeout + absl::Seconds(10));
}

}  // namespace
}  // namespace moeserve
