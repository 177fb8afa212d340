#include "router/worker_pool.h"

#include <vector>

#include "gtest/gtest.h"
#include "router/fake_worker_connection.h"

namespace moeserve {
namespace router {
namespace {

// Records what the pool delivers.
class RecordingSink : public RequestSink {
 public:
  void OnOutput(absl::Span<const int32_t> ids, const internal::v1::Terminal* t,
                const TokenLogprobsList& logprobs) override {
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    logprob_count += logprobs.size();
    if (t != nullptr) terminals.push_back(*t);
  }
  std::vector<int32_t> tokens;
  int logprob_count = 0;
  std::vector<internal::v1::Terminal> terminals;
};

internal::v1::Submit Work(int prompt_tokens, uint32_t max_tokens) {
  internal::v1::Submit s;
  for (int i = 0; i < prompt_tokens; ++i) s.add_prompt(1);
  s.set_max_tokens(max_tokens);
  return s;
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ =
        std::make_unique<WorkerPool>([this](const WorkerPool::State& s) { states_.push_back(s); });
    for (int i = 0; i < 3; ++i) {
      auto w = std::make_unique<FakeWorkerConnection>("w" + std::to_string(i) + ":1");
      workers_.push_back(w.get());
      pool_->AddWorker(std::move(w));
    }
  }
  // The worker index that got `ticket`.
  int WorkerOf(const WorkerPool::Ticket& ticket) {
    for (int i = 0; i < 3; ++i) {
      for (const auto& s : workers_[i]->submits()) {
        if (s.request_id() == ticket.request_id) return i;
      }
    }
    return -1;
  }

  std::unique_ptr<WorkerPool> pool_;
  std::vector<FakeWorkerConnection*> workers_;
  std::vector<WorkerPool::State> states_;
};

TEST_F(WorkerPoolTest, NoWorkerConnectedIsUnavailable) {
  auto sink = std::make_shared<RecordingSink>();
  auto t = pool_->Submit(Work(1, 1), sink);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(t.status().message(), "no worker is connected");
  EXPECT_EQ(pool_->active_requests(), 0u);
}

TEST_F(WorkerPoolTest, StateFollowsWelcomes) {
  EXPECT_FALSE(pool_->state().serving());
  EXPECT_EQ(pool_->state().workers, 3);
  workers_[0]->Connect(0, 3);
  workers_[1]->Connect(1, 3);
  EXPECT_FALSE(pool_->state().serving());
  workers_[2]->Connect(2, 3);
  EXPECT_TRUE(pool_->state().serving());
  EXPECT_EQ(pool_->state().world_size, 3);
  ASSERT_FALSE(states_.empty());
  EXPECT_TRUE(states_.back().serving());
  workers_[1]->Disconnect(absl::UnavailableError("gone"));
  EXPECT_FALSE(states_.back().serving());
  EXPECT_EQ(states_.back().connected, 2);
}

TEST_F(WorkerPoolTest, PlacesOnLeastLoadedAndCountsWhatItPlaced) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  workers_[0]->SendLoad(100);
  workers_[1]->SendLoad(10);
  workers_[2]->SendLoad(50);
  auto sink = std::make_shared<RecordingSink>();
  auto a = pool_->Submit(Work(20, 30), sink);  // w1: 10 -> 60
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(WorkerOf(*a), 1);
  auto b = pool_->Submit(Work(1, 1), sink);  // w2 (50) < w1 (60)
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(WorkerOf(*b), 2);
  workers_[1]->SendLoad(0);  // a new report replaces what was placed since
  auto c = pool_->Submit(Work(1, 1), sink);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(WorkerOf(*c), 1);
  // Disconnected workers are never chosen.
  workers_[1]->Disconnect(absl::UnavailableError("x"));
  auto d = pool_->Submit(Work(1, 1), sink);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(WorkerOf(*d), 2);
}

TEST_F(WorkerPoolTest, TokensAndTerminalReachTheSinkOnce) {
  workers_[0]->Connect(0, 1);
  auto sink = std::make_shared<RecordingSink>();
  auto t = pool_->Submit(Work(2, 4), sink);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(workers_[0]->submits().size(), 1u);
  EXPECT_EQ(workers_[0]->submits()[0].request_id(), t->request_id);
  workers_[0]->SendTokens(t->request_id, {5, 6});
  workers_[0]->Finish(t->request_id, {7}, internal::v1::FINISH_REASON_STOP, 2, 3);
  workers_[0]->Finish(t->request_id, {8}, internal::v1::FINISH_REASON_STOP, 2, 4);  // ignored
  EXPECT_EQ(sink->tokens, (std::vector<int32_t>{5, 6, 7}));
  ASSERT_EQ(sink->terminals.size(), 1u);
  EXPECT_EQ(sink->terminals[0].completion_tokens(), 3u);
  EXPECT_EQ(pool_->active_requests(), 0u);
}

TEST_F(WorkerPoolTest, AbortSendsAbortAndDropsLaterOutput) {
  workers_[0]->Connect(0, 1);
  auto sink = std::make_shared<RecordingSink>();
  auto t = pool_->Submit(Work(1, 4), sink);
  ASSERT_TRUE(t.ok());
  pool_->Abort(*t);
  EXPECT_EQ(workers_[0]->aborts(), (std::vector<uint64_t>{t->request_id}));
  EXPECT_EQ(pool_->active_requests(), 0u);
  workers_[0]->Fail(t->request_id, 1, "cancelled");
  EXPECT_TRUE(sink->terminals.empty());
  pool_->Abort(*t);  // a second abort sends nothing
  EXPECT_EQ(workers_[0]->aborts().size(), 1u);
}

TEST_F(WorkerPoolTest, LosingAWorkerFailsItsRequestsOnly) {
  workers_[0]->Connect(0, 2);
  workers_[1]->Connect(1, 2);
  workers_[1]->SendLoad(1000);
  auto lost = std::make_shared<RecordingSink>();
  auto kept = std::make_shared<RecordingSink>();
  ASSERT_TRUE(pool_->Submit(Work(1, 1), lost).ok());  // w0
  workers_[0]->SendLoad(5000);
  ASSERT_TRUE(pool_->Submit(Work(1, 1), kept).ok());  // w1
  workers_[0]->Disconnect(absl::UnavailableError("Socket closed"));
  ASSERT_EQ(lost->terminals.size(), 1u);
  EXPECT_EQ(lost->terminals[0].code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(lost->terminals[0].message(), "worker w0:1 (rank 0) lost: UNAVAILABLE: Socket closed");
  EXPECT_TRUE(kept->terminals.empty());
  EXPECT_EQ(pool_->active_requests(), 1u);
  // The old session's Submit cannot land on a new one.
  workers_[0]->Connect(0, 2, /*epoch=*/2);
  EXPECT_TRUE(pool_->connected("w0:1"));
}

TEST_F(WorkerPoolTest, ShutdownFailsWhatIsLeft) {
  workers_[0]->Connect(0, 1);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(pool_->Submit(Work(1, 1), sink).ok());
  pool_->Shutdown();
  ASSERT_EQ(sink->terminals.size(), 1u);
  EXPECT_EQ(sink->terminals[0].message(), "the router is shutting down");
  EXPECT_TRUE(workers_[0]->shut_down());
}

TEST_F(WorkerPoolTest, RemoveWorker) {
  pool_->RemoveWorker("w1:1");
  EXPECT_EQ(pool_->addresses(), (std::vector<std::string>{"w0:1", "w2:1"}));
  // Adding a known address again does nothing.
  pool_->AddWorker(std::make_unique<FakeWorkerConnection>("w0:1"));
  EXPECT_EQ(pool_->addresses().size(), 2u);
}

}  // namespace
}  // namespace router
}  // namespace moeserve
