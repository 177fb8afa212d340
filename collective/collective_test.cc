// The Collective contract on real groups of processes (W = 1..4, local and
// Gloo, rank 0 hosting the gRPC coordinator), a dying and a stalling peer,
// the fault-injecting wrapper, and CreateCollective's option checks.
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collective/fault_collective.h"
#include "collective/gloo_collective.h"
#include "collective/group.h"
#include "collective/in_memory_kv_store.h"
#include "collective/local_collective.h"
#include "collective/process_group_testing.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

constexpr absl::Duration kLimit = absl::Seconds(60);

// In a child: report a mismatch and make the child exit non-zero.
#define CHILD_CHECK(cond, ...)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", c.rank(), __FILE__, __LINE__, #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                                       \
      return 1;                                                                              \
    }                                                                                        \
  } while (0)

#define CHILD_CHECK_OK(expr)                                   \
  do {                                                         \
    const absl::Status child_status_ = (expr);                 \
    CHILD_CHECK(child_status_.ok(), child_status_.ToString()); \
  } while (0)

// Elements rank s sends to rank d: uneven, some pairs (self pairs included)
// zero, and rank 1 sends nothing at all.
int64_t Count(int s, int d) {
  if (s == 1) return 0;
  if ((s + d) % 3 == 2) return 0;
  return s + 2 * d + 1;
}

// Value j (of row_floats) of row i that rank s sends to rank d.
float Value(int s, int d, int64_t i, int j) {
  return 1000.0f * s + 10.0f * d + static_cast<float>(i) + 0.25f * j;
}

// One AllToAllV of rows of `row_floats` floats, checked against the values
// computed by hand; the counts are first exchanged with AllToAll.
int CheckAllToAllV(Collective& c, int row_floats) {
  const int w = c.world_size(), r = c.rank();
  std::vector<int64_t> send_counts(w), recv_counts(w), want_recv_counts(w);
  std::vector<float> send;
  for (int d = 0; d < w; ++d) {
    send_counts[d] = Count(r, d);
    want_recv_counts[d] = Count(d, r);
    for (int64_t i = 0; i < send_counts[d]; ++i) {
      for (int j = 0; j < row_floats; ++j) send.push_back(Value(r, d, i, j));
    }
  }
  CHILD_CHECK_OK(c.AllToAll(send_counts.data(), recv_counts.data()));
  CHILD_CHECK(recv_counts == want_recv_counts, "counts from AllToAll differ");
  std::vector<float> want;
  for (int s = 0; s < w; ++s) {
    for (int64_t i = 0; i < recv_counts[s]; ++i) {
      for (int j = 0; j < row_floats; ++j) want.push_back(Value(s, r, i, j));
    }
  }
  // One sentinel past the end catches writes beyond the received rows.
  std::vector<float> recv(want.size() + 1, -7.0f);
  CHILD_CHECK_OK(c.AllToAllV(send.empty() ? nullptr : send.data(), send_counts,
                             want.empty() ? nullptr : recv.data(), recv_counts,
                             row_floats * sizeof(float)));
  for (size_t k = 0; k < want.size(); ++k) {
    CHILD_CHECK(recv[k] == want[k], "row_floats ", row_floats, " element ", k, ": got ", recv[k],
                " want ", want[k]);
  }
  CHILD_CHECK(recv.back() == -7.0f, "wrote past the end");
  return 0;
}

// The whole contract on one rank; every rank runs it.
int CheckContract(Collective& c, const std::string& want_name) {
  const int w = c.world_size(), r = c.rank();
  CHILD_CHECK(want_name == c.name(), "name ", c.name(), " want ", want_name);
  CHILD_CHECK(c.memory() == MemorySpace::kHost, "memory");
  for (int round = 0; round < 3; ++round) {  // sequential calls stay in step
    int64_t sums[3] = {r + 1, 10 * r + round, -1};
    CHILD_CHECK_OK(c.AllReduceSum(sums, 3));
    CHILD_CHECK(sums[0] == w * (w + 1) / 2, "sum ", sums[0]);
    CHILD_CHECK(sums[1] == 10 * w * (w - 1) / 2 + w * round, "sum ", sums[1]);
    CHILD_CHECK(sums[2] == -w, "sum ", sums[2]);

    std::vector<int64_t> send(w), recv(w, -1);
    for (int d = 0; d < w; ++d) send[d] = 100 * r + d + round;
    CHILD_CHECK_OK(c.AllToAll(send.data(), recv.data()));
    for (int s = 0; s < w; ++s) {
      CHILD_CHECK(recv[s] == 100 * s + r + round, "AllToAll from ", s, ": ", recv[s]);
    }

    for (int row_floats : {1, 3, 1024}) {
      if (CheckAllToAllV(c, row_floats) != 0) return 1;
    }
    // Nothing to send anywhere: null buffers and zero counts.
    std::vector<int64_t> zeros(w, 0);
    CHILD_CHECK_OK(c.AllToAllV(nullptr, zeros, nullptr, zeros, 8));
    CHILD_CHECK_OK(c.AllReduceSum(nullptr, 0));
    CHILD_CHECK_OK(c.Barrier());
  }
  return 0;
}

class GroupTest : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(GroupTest, ContractHolds) {
  const auto [w, kind] = GetParam();
  GroupOptions o;
  o.world_size = w;
  o.kind = kind;
  o.prefix = "epoch/1/";
  o.timeout = absl::Seconds(20);
  const std::string want_name = kind == "auto" ? (w == 1 ? "local" : "gloo") : kind;
  const std::vector<int> codes = RunProcessGroup(
      o, kLimit, [&](Collective& c, KvStore&) { return CheckContract(c, want_name); });
  for (int r = 0; r < w; ++r) EXPECT_EQ(codes[r], 0) << "rank " << r << " of " << w;
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, GroupTest,
                         ::testing::Values(std::make_tuple(1, "auto"), std::make_tuple(1, "gloo"),
                                           std::make_tuple(2, "auto"), std::make_tuple(3, "auto"),
                                           std::make_tuple(4, "auto")),
                         [](const auto& info) {
                           return absl::StrCat("W", std::get<0>(info.param), "_",
                                               std::get<1>(info.param));
                         });

// Rank 0's call after its peer is gone: non-OK within the timeout, naming
// the operation; every later call fails fast with the same error.
int CheckBrokenAfter(Collective& c, absl::Duration timeout, bool names_peer) {
  std::vector<int64_t> counts = {2, 2};
  std::vector<float> send(4, 1.0f), recv(4, 0.0f);
  const absl::Time t0 = absl::Now();
  const absl::Status first = c.AllToAllV(send.data(), counts, recv.data(), counts, 4);
  const absl::Duration took = absl::Now() - t0;
  CHILD_CHECK(!first.ok(), "AllToAllV succeeded without its peer");
  CHILD_CHECK(absl::IsUnavailable(first) || absl::IsDeadlineExceeded(first), first.ToString());
  CHILD_CHECK(absl::StrContains(first.message(), "AllToAllV"), first.ToString());
  CHILD_CHECK(took < timeout + absl::Seconds(2), "took ", absl::FormatDuration(took));
  CHILD_CHECK(!names_peer || absl::StrContains(first.message(), "peer rank 1"), first.ToString());
  std::fprintf(stderr, "[rank 0] failed as expected after %s: %s\n",
               absl::FormatDuration(took).c_str(), first.ToString().c_str());
  const absl::Time t1 = absl::Now();
  const absl::Status second = c.Barrier();
  int64_t x = 1;
  const absl::Status third = c.AllReduceSum(&x, 1);
  CHILD_CHECK(absl::Now() - t1 < absl::Milliseconds(100), "later calls not fast");
  CHILD_CHECK(second == first && third == first, second.ToString());
  return 0;
}

TEST(GroupFailureTest, DeadPeerBreaksTheCollective) {
  GroupOptions o;
  o.world_size = 2;
  o.kind = "gloo";
  o.prefix = "epoch/2/";
  o.timeout = absl::Seconds(2);
  const std::vector<int> codes = RunProcessGroup(o, kLimit, [&](Collective& c, KvStore&) {
    CHILD_CHECK_OK(c.Barrier());
    if (c.rank() == 1) _exit(0);  // dies without a word
    return CheckBrokenAfter(c, o.timeout, /*names_peer=*/true);
  });
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
}

TEST(GroupFailureTest, StalledPeerTimesOut) {
  GroupOptions o;
  o.world_size = 2;
  o.kind = "gloo";
  o.prefix = "epoch/3/";
  o.timeout = absl::Seconds(2);
  const std::vector<int> codes = RunProcessGroup(o, kLimit, [&](Collective& c, KvStore&) {
    CHILD_CHECK_OK(c.Barrier());
    if (c.rank() == 1) {
      absl::SleepFor(o.timeout + absl::Seconds(2));  // alive, but never calls
      return 0;
    }
    return CheckBrokenAfter(c, o.timeout, /*names_peer=*/false);
  });
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
}

// A fault injected on rank 0 breaks rank 1's matching call too.
TEST(GroupFailureTest, InjectedFaultBreaksThePeer) {
  GroupOptions o;
  o.world_size = 2;
  o.kind = "gloo";
  o.prefix = "epoch/4/";
  o.timeout = absl::Seconds(2);
  const std::vector<int> codes = RunProcessGroup(o, kLimit, [&](Collective& c, KvStore&) {
    if (c.rank() == 1) {
      CHILD_CHECK_OK(c.Barrier());
      const absl::Status s = c.Barrier();  // rank 0 never joins this one
      CHILD_CHECK(absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s), s.ToString());
      return 0;
    }
    FaultOptions f;
    f.fail_call = 2;
    FaultInjectingCollective faulty(&c, f);
    const absl::Status first = faulty.Barrier();
    const absl::Status second = faulty.Barrier();
    absl::SleepFor(o.timeout + absl::Seconds(1));  // let rank 1 time out
    CHILD_CHECK_OK(first);
    CHILD_CHECK(
        absl::IsUnavailable(second) && absl::StrContains(second.message(), "injected fault"),
        second.ToString());
    return 0;
  });
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
}

// A group whose other rank never comes: forming fails within about the
// timeout, naming the store key it waited for. In a child: Gloo starts threads.
TEST(GroupFailureTest, MissingPeerFailsFormation) {
  const int code = RunInChild(kLimit, [] {
    InMemoryKvStore store;
    GlooOptions o;
    o.world_size = 2;
    o.prefix = "epoch/5/gloo/";
    o.timeout = absl::Seconds(1);
    const absl::Time t0 = absl::Now();
    absl::StatusOr<std::unique_ptr<Collective>> c = CreateGlooCollective(store, o);
    const absl::Duration took = absl::Now() - t0;
    std::fprintf(stderr, "after %s: %s\n", absl::FormatDuration(took).c_str(),
                 c.status().ToString().c_str());
    if (c.ok() || !absl::IsDeadlineExceeded(c.status())) return 1;
    if (!absl::StrContains(c.status().message(), "epoch/5/gloo/1")) return 2;
    return took < absl::Seconds(3) ? 0 : 3;
  });
  EXPECT_EQ(code, 0);
}

TEST(FaultInjectingCollectiveTest, FailsTheNthCallThenStaysBroken) {
  FaultOptions f;
  f.fail_call = 3;
  f.delay = absl::Milliseconds(30);
  FaultInjectingCollective c(std::make_unique<LocalCollective>(), f);
  EXPECT_EQ(c.world_size(), 1);
  EXPECT_STREQ(c.name(), "local");

  // Calls 1 and 2 reach the wrapped collective, each after the delay.
  const absl::Time t0 = absl::Now();
  int64_t x = 5;
  ASSERT_TRUE(c.AllReduceSum(&x, 1).ok());
  EXPECT_EQ(x, 5);
  const int64_t counts[1] = {2};
  const int32_t send[2] = {7, 8};
  int32_t recv[2] = {0, 0};
  ASSERT_TRUE(c.AllToAllV(send, counts, recv, counts, 4).ok());
  EXPECT_EQ(recv[0], 7);
  EXPECT_EQ(recv[1], 8);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(55));

  // Call 3 is the fault; it does not reach the wrapped collective.
  const int32_t send2[2] = {9, 9};
  const absl::Status third = c.AllToAllV(send2, counts, recv, counts, 4);
  EXPECT_EQ(third.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(third.message(), "injected fault")) << third;
  EXPECT_TRUE(absl::StrContains(third.message(), "AllToAllV")) << third;
  EXPECT_EQ(recv[0], 7);
  // Every later call returns the same error.
  EXPECT_EQ(c.Barrier(), third);
  int64_t y[2] = {1, 1};
  EXPECT_EQ(c.AllToAll(y, y + 1), third);
  EXPECT_EQ(c.calls(), 5);
}

TEST(LocalCollectiveTest, ChecksItsArguments) {
  LocalCollective c;
  const int64_t one[1] = {1}, two[1] = {2};
  const int64_t pair[2] = {1, 1};
  int32_t buf[2] = {3, 4};
  EXPECT_EQ(c.AllToAllV(buf, one, buf, two, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.AllToAllV(buf, pair, buf, pair, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.AllToAllV(nullptr, one, buf, one, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.AllToAllV(buf, one, buf, one, 0).code(), absl::StatusCode::kInvalidArgument);
  // In place is a no-op copy; bad calls did not break it.
  EXPECT_TRUE(c.AllToAllV(buf, one, buf, one, 4).ok());
  EXPECT_EQ(buf[0], 3);
  int64_t s = 4, r = 0;
  EXPECT_TRUE(c.AllToAll(&s, &r).ok());
  EXPECT_EQ(r, 4);
}

TEST(CreateCollectiveTest, RejectsBadOptions) {
  InMemoryKvStore store;
  GroupOptions o;
  o.world_size = 0;
  EXPECT_EQ(CreateCollective(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.world_size = 2;
  o.rank = 2;
  EXPECT_EQ(CreateCollective(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = -1;
  EXPECT_EQ(CreateCollective(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 0;
  o.kind = "local";
  EXPECT_EQ(CreateCollective(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.kind = "mpi";
  const absl::Status unknown = CreateCollective(store, o).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(unknown.message(), "mpi")) << unknown;
  o.world_size = 1;
  o.kind = "auto";
  absl::StatusOr<std::unique_ptr<Collective>> local = CreateCollective(store, o);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_STREQ((*local)->name(), "local");
}

// "nccl" on a machine without a GPU (or a build without CUDA) is a clear
// FAILED_PRECONDITION. In a child: CUDA stays out of the forking parent.
TEST(CreateCollectiveTest, NcclWithoutGpuIsFailedPrecondition) {
  const int code = RunInChild(kLimit, [] {
    InMemoryKvStore store;
    GroupOptions o;
    o.kind = "nccl";
    absl::StatusOr<std::unique_ptr<Collective>> c = CreateCollective(store, o);
    if (c.ok()) {
      std::fprintf(stderr, "nccl collective formed: a GPU is present\n");
      return (*c)->Barrier().ok() ? 3 : 1;
    }
    std::fprintf(stderr, "CreateCollective(nccl): %s\n", c.status().ToString().c_str());
    return c.status().code() == absl::StatusCode::kFailedPrecondition ? 0 : 1;
  });
  if (code == 3) GTEST_SKIP() << "a CUDA GPU is present here; nccl_collective_test covers it";
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace moeserve
