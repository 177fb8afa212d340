#include "router/worker_pool.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
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
  EXPECT_EQ(t.status().message(), "no worker is connected and accepting requests");
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

// A request that has streamed a token cannot be retried: losing its worker
// ends it with UNAVAILABLE (and nothing else).
TEST_F(WorkerPoolTest, LosingAWorkerFailsItsStreamingRequestsOnly) {
  workers_[0]->Connect(0, 2);
  workers_[1]->Connect(1, 2);
  workers_[1]->SendLoad(1000);
  auto lost = std::make_shared<RecordingSink>();
  auto kept = std::make_shared<RecordingSink>();
  auto streaming = pool_->Submit(Work(1, 1), lost);  // w0
  ASSERT_TRUE(streaming.ok());
  workers_[0]->SendTokens(streaming->request_id, {7});
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

// A sink the retry thread may call too: a test waits for its terminal.
class WaitingSink : public RequestSink {
 public:
  void OnOutput(absl::Span<const int32_t> ids, const internal::v1::Terminal* t,
                const TokenLogprobsList&) override {
    absl::MutexLock lock(&mu_);
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
    if (t != nullptr) terminals_.push_back(*t);
  }
  // The terminals so far, after waiting up to `timeout` for the first.
  std::vector<internal::v1::Terminal> Terminals(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::vector<internal::v1::Terminal>* t) { return !t->empty(); },
                             &terminals_),
                         timeout);
    return terminals_;
  }
  std::vector<int32_t> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_;
  std::vector<internal::v1::Terminal> terminals_;
};

// Which worker holds the `n`-th placement (0-based) of `request_id`, waiting
// up to 10 s for it.
int PlacementOf(const std::vector<FakeWorkerConnection*>& workers, uint64_t request_id, int n) {
  for (int tries = 0; tries < 1000; ++tries) {
    int count = 0;
    for (size_t i = 0; i < workers.size(); ++i) {
      for (const auto& s : workers[i]->submits()) {
        if (s.request_id() == request_id && count++ == n) return static_cast<int>(i);
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -1;
}

int Placements(const std::vector<FakeWorkerConnection*>& workers, uint64_t request_id) {
  int count = 0;
  for (auto* w : workers) {
    for (const auto& s : w->submits()) count += s.request_id() == request_id;
  }
  return count;
}

// The worker of a request with no token yet is lost: the request waits (no
// terminal) while the group is incomplete, is placed again under the same
// id once every worker is back, and ends once, with the new placement's
// output. Aborting it afterwards reaches the worker that holds it now.
TEST_F(WorkerPoolTest, ARequestWithoutTokensIsRetriedWhenTheGroupComesBack) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  auto sink = std::make_shared<WaitingSink>();
  auto t = pool_->Submit(Work(3, 4), sink);
  ASSERT_TRUE(t.ok());
  const int first = WorkerOf(*t);
  ASSERT_GE(first, 0);
  workers_[first]->Disconnect(absl::UnavailableError("Socket closed"));
  EXPECT_TRUE(sink->Terminals(absl::Milliseconds(200)).empty());
  EXPECT_EQ(Placements(workers_, t->request_id), 1);  // not while a worker is missing
  EXPECT_EQ(pool_->active_requests(), 1u);
  workers_[first]->Connect(first, 3, /*epoch=*/2);
  const int second = PlacementOf(workers_, t->request_id, 1);
  ASSERT_GE(second, 0);
  EXPECT_EQ(pool_->retried_requests(), 1u);
  workers_[second]->SendTokens(t->request_id, {5});
  pool_->Abort(*t);  // the ticket names the first worker's slot
  ASSERT_TRUE(workers_[second]->WaitForAborts(1));
  EXPECT_EQ(workers_[second]->aborts().back(), t->request_id);
  EXPECT_EQ(sink->tokens(), (std::vector<int32_t>{5}));
  EXPECT_TRUE(sink->Terminals(absl::Milliseconds(50)).empty());
  EXPECT_EQ(pool_->active_requests(), 0u);
}

// A client cancels just as the retry thread places its request again: the
// Abort must reach the worker after that Submit, or the worker would never
// match it and would run an orphan to max_tokens. Each worker's Submit
// starts the Abort on another thread and gives it 200 ms to get through
// first; the pool queues a Submit under its lock, so it cannot.
TEST_F(WorkerPoolTest, AnAbortRacingARetryReachesTheWorkerAfterItsSubmit) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  auto sink = std::make_shared<WaitingSink>();
  auto t = pool_->Submit(Work(3, 4), sink);
  ASSERT_TRUE(t.ok());
  const int first = WorkerOf(*t);
  ASSERT_GE(first, 0);
  std::thread aborter;
  absl::Notification aborted;
  for (auto* w : workers_) {
    w->SetSubmitHook([&](const internal::v1::Submit& s) {
      if (s.request_id() != t->request_id || aborter.joinable()) return;
      aborter = std::thread([&] {
        pool_->Abort(*t);
        aborted.Notify();
      });
      aborted.WaitForNotificationWithTimeout(absl::Milliseconds(200));
    });
  }
  std::vector<size_t> before;
  for (auto* w : workers_) before.push_back(w->sent().size());
  workers_[first]->Disconnect(absl::UnavailableError("Socket closed"));
  workers_[first]->Connect(first, 3, /*epoch=*/2);
  const int second = PlacementOf(workers_, t->request_id, 1);
  ASSERT_GE(second, 0);
  ASSERT_TRUE(aborted.WaitForNotificationWithTimeout(absl::Seconds(10)));
  aborter.join();
  const std::string id = std::to_string(t->request_id);
  const std::vector<std::string> sent = workers_[second]->sent();
  std::vector<std::string> mine;
  for (size_t i = before[second]; i < sent.size(); ++i) {
    if (sent[i] == "submit " + id || sent[i] == "abort " + id) mine.push_back(sent[i]);
  }
  EXPECT_THAT(mine, ::testing::ElementsAre("submit " + id, "abort " + id));
  EXPECT_EQ(pool_->active_requests(), 0u);
  for (auto* w : workers_) w->SetSubmitHook(nullptr);
}

// A request placed on a worker whose stream has just broken, before the
// pool heard of it (the router's health still said SERVING): the write
// fails, but the request is not refused; the loss retries it once the
// group is back.
TEST_F(WorkerPoolTest, ARequestPlacedOnAStreamThatJustBrokeIsRetried) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  for (auto* w : workers_) w->EndSessionUnreported();
  auto sink = std::make_shared<WaitingSink>();
  auto t = pool_->Submit(Work(3, 4), sink);
  ASSERT_TRUE(t.ok()) << t.status();
  for (auto* w : workers_) EXPECT_TRUE(w->submits().empty());
  for (auto* w : workers_) w->Disconnect(absl::UnavailableError("keepalive watchdog timeout"));
  EXPECT_TRUE(sink->Terminals(absl::Milliseconds(100)).empty());
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3, /*epoch=*/2);
  const int placed = PlacementOf(workers_, t->request_id, 0);
  ASSERT_GE(placed, 0);
  workers_[placed]->Finish(t->request_id, {7}, internal::v1::FINISH_REASON_LENGTH, 3, 1);
  const auto terminals = sink->Terminals();
  ASSERT_EQ(terminals.size(), 1u);
  EXPECT_EQ(terminals[0].code(), 0);
  EXPECT_EQ(sink->tokens(), (std::vector<int32_t>{7}));
}

// A worker ending a request with UNAVAILABLE before any token (its group
// broke) is a retry too; the group is complete, so it is placed at once.
TEST_F(WorkerPoolTest, AnUnavailableTerminalBeforeAnyTokenIsRetried) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  auto sink = std::make_shared<WaitingSink>();
  auto t = pool_->Submit(Work(2, 2), sink);
  ASSERT_TRUE(t.ok());
  workers_[WorkerOf(*t)]->Fail(t->request_id, static_cast<int>(absl::StatusCode::kUnavailable),
                               "worker group failed: rank 2 is lost");
  const int second = PlacementOf(workers_, t->request_id, 1);
  ASSERT_GE(second, 0);
  workers_[second]->Finish(t->request_id, {8, 9}, internal::v1::FINISH_REASON_LENGTH, 2, 2);
  const auto terminals = sink->Terminals();
  ASSERT_EQ(terminals.size(), 1u);
  EXPECT_EQ(terminals[0].code(), 0);
  EXPECT_EQ(sink->tokens(), (std::vector<int32_t>{8, 9}));
  // Other errors are the request's own: never retried.
  auto bad = std::make_shared<WaitingSink>();
  auto u = pool_->Submit(Work(2, 2), bad);
  ASSERT_TRUE(u.ok());
  workers_[WorkerOf(*u)]->Fail(u->request_id, static_cast<int>(absl::StatusCode::kInvalidArgument),
                               "no");
  ASSERT_EQ(bad->Terminals().size(), 1u);
  EXPECT_EQ(Placements(workers_, u->request_id), 1);
}

// A request to retry while every worker drains waits (it is not lost, and
// nothing crashes) until one accepts requests again.
TEST_F(WorkerPoolTest, ARetryWaitsWhileEveryWorkerDrains) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  auto sink = std::make_shared<WaitingSink>();
  auto t = pool_->Submit(Work(2, 2), sink);
  ASSERT_TRUE(t.ok());
  for (int i = 0; i < 3; ++i) workers_[i]->SendLoad(0, 0, /*draining=*/true);
  workers_[WorkerOf(*t)]->Fail(t->request_id, static_cast<int>(absl::StatusCode::kUnavailable),
                               "this worker is draining");
  EXPECT_TRUE(sink->Terminals(absl::Milliseconds(200)).empty());
  EXPECT_EQ(Placements(workers_, t->request_id), 1);
  workers_[1]->SendLoad(0);
  EXPECT_EQ(PlacementOf(workers_, t->request_id, 1), 1);
}

// The group does not come back within the retry timeout: UNAVAILABLE,
// naming the first failure; aborting a waiting request places nothing.
TEST(WorkerPoolRetryTest, GivesUpAfterTheTimeoutAndAbortCancelsAWait) {
  WorkerPool::Options options;
  options.retry_timeout = std::chrono::milliseconds(300);
  WorkerPool pool(nullptr, options);
  auto w = std::make_unique<FakeWorkerConnection>("w0:1");
  FakeWorkerConnection* worker = w.get();
  pool.AddWorker(std::move(w));
  worker->Connect(0, 1);
  auto sink = std::make_shared<WaitingSink>();
  auto aborted = std::make_shared<WaitingSink>();
  auto t = pool.Submit(Work(1, 1), sink);
  auto a = pool.Submit(Work(1, 1), aborted);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(a.ok());
  worker->Disconnect(absl::UnavailableError("Socket closed"));
  pool.Abort(*a);
  const auto start = std::chrono::steady_clock::now();
  const auto terminals = sink->Terminals();
  ASSERT_EQ(terminals.size(), 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  EXPECT_EQ(terminals[0].code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(terminals[0].message(), ::testing::HasSubstr("worker w0:1 (rank 0) lost"));
  EXPECT_THAT(terminals[0].message(), ::testing::HasSubstr("did not come back"));
  EXPECT_EQ(pool.active_requests(), 0u);
  worker->Connect(0, 1, /*epoch=*/2);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(worker->submits().size(), 2u);  // nothing placed again
  EXPECT_TRUE(aborted->Terminals(absl::Milliseconds(1)).empty());
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

// A worker that says it drains gets nothing new; its load report saying it
// no longer drains (a new session) makes it eligible again.
TEST_F(WorkerPoolTest, NothingNewIsPlacedOnADrainingWorker) {
  for (int i = 0; i < 3; ++i) workers_[i]->Connect(i, 3);
  workers_[0]->SendLoad(0, 0, /*draining=*/true);
  workers_[1]->SendLoad(0, 0, /*draining=*/true);
  workers_[2]->SendLoad(1000000);
  auto sink = std::make_shared<RecordingSink>();
  for (int n = 0; n < 3; ++n) {
    auto t = pool_->Submit(Work(1, 1), sink);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(WorkerOf(*t), 2);
  }
  workers_[2]->SendLoad(0, 0, /*draining=*/true);
  auto none = pool_->Submit(Work(1, 1), sink);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  workers_[0]->SendLoad(0);
  auto again = pool_->Submit(Work(1, 1), sink);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(WorkerOf(*again), 0);
}

// A group of 3 of which the router knows 2 (DNS does not list the third
// yet): connected to both, it still does not serve.
TEST_F(WorkerPoolTest, FewerWorkersThanTheWorldSizeIsNotServing) {
  pool_->RemoveWorker("w2:1");
  workers_[0]->Connect(0, 3);
  workers_[1]->Connect(1, 3);
  EXPECT_EQ(pool_->state().connected, 2);
  EXPECT_FALSE(pool_->state().serving());
  pool_->AddWorker(std::make_unique<FakeWorkerConnection>("w2:1"));
  EXPECT_FALSE(pool_->state().serving());
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
