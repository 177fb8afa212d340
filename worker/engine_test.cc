// The worker's engine loop at world size 1 (the real local collective and
// the expert-parallel runner): concurrent requests give exactly the tokens
// of the single-process Generate, and every request ends with exactly one
// terminal, also when aborted, refused, stopped or when the group fails.
#include "worker/engine.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "collective/fault_collective.h"
#include "collective/local_collective.h"
#include "engine/generator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/expert_parallel.h"
#include "worker/expert_shards.h"

namespace moeserve {
namespace {

// Records every update; lets a test wait for terminals.
class RecordingSink : public RequestSink {
 public:
  void Deliver(std::vector<RequestUpdate> updates) override {
    std::lock_guard<std::mutex> l(mu_);
    ++deliveries_;
    for (auto& u : updates) {
      auto& r = results_[u.request_id];
      r.tokens.insert(r.tokens.end(), u.tokens.begin(), u.tokens.end());
      if (u.finished) {
        ++r.terminals;
        r.status = u.status;
        r.reason = u.finish_reason;
        r.completion_tokens = u.completion_tokens;
        r.prompt_tokens = u.prompt_tokens;
      }
    }
    cv_.notify_all();
  }
  struct Result {
    std::vector<int32_t> tokens;
    int terminals = 0;
    absl::Status status;
    FinishReason reason = FinishReason::kLength;
    int prompt_tokens = 0, completion_tokens = 0;
  };
  bool WaitForTerminals(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(30), [&] {
      size_t done = 0;
      for (auto& [id, r] : results_) done += r.terminals > 0;
      return done >= n;
    });
  }
  Result Get(uint64_t id) {
    std::lock_guard<std::mutex> l(mu_);
    return results_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Result> results_;
  int deliveries_ = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = LoadModel("tests/fixtures/qwen3_moe_f32");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    shards_ = std::make_unique<ExpertShards>(weights_->config.num_experts, 1);
  }
  void Start(Collective* c, EngineOptions options = {}, bool run = true) {
    runner_ = std::make_unique<ExpertParallelRunner>(*weights_, *c, *shards_);
    model_ = std::make_unique<Transformer>(*weights_, runner_.get());
    engine_ = std::make_unique<Engine>(*model_, *c, options);
    if (run) StartLoop();
  }
  void StartLoop() { loop_ = std::thread([this] { run_status_ = engine_->Run(); }); }
  void TearDown() override {
    if (engine_) engine_->Stop();
    if (loop_.joinable()) loop_.join();
  }
  std::vector<int32_t> Reference(const WorkItem& item) {
    Transformer single(*weights_);
    GenerateOptions o;
    o.max_tokens = item.max_tokens;
    o.sampling = item.sampling;
    o.stop_token_ids = item.stop_token_ids;
    o.ignore_eos = item.ignore_eos;
    auto r = Generate(single, item.prompt, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }

  // Every item ended once, OK, with Generate's tokens and matching usage.
  void ExpectMatchesGenerate(RecordingSink& sink, const std::vector<WorkItem>& items) {
    for (const WorkItem& w : items) {
      auto r = sink.Get(w.request_id);
      EXPECT_EQ(r.terminals, 1);
      EXPECT_TRUE(r.status.ok()) << r.status;
      EXPECT_EQ(r.tokens, Reference(w)) << "request " << w.request_id;
      EXPECT_EQ(r.prompt_tokens, static_cast<int>(w.prompt.size()));
      EXPECT_EQ(r.completion_tokens, static_cast<int>(r.tokens.size()));
    }
  }

  // Declared first: destroyed after the engine loop has stopped.
  LocalCollective local_;
  std::unique_ptr<FaultInjectingCollective> faulty_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<ExpertShards> shards_;
  std::unique_ptr<ExpertParallelRunner> runner_;
  std::unique_ptr<Transformer> model_;
  std::unique_ptr<Engine> engine_;
  std::thread loop_;
  absl::Status run_status_;
};

WorkItem Item(uint64_t id, int prompt_len, int max_tokens, float temperature = 0) {
  WorkItem w;
  w.request_id = id;
  for (int i = 0; i < prompt_len; ++i) w.prompt.push_back((7 * i + 3 * id) % 300 + 1);
  w.max_tokens = max_tokens;
  w.sampling.temperature = temperature;
  w.sampling.seed = id;
  w.ignore_eos = true;
  return w;
}

TEST_F(EngineTest, ConcurrentRequestsMatchGenerate) {
  Start(&local_);
  auto sink = std::make_shared<RecordingSink>();
  std::vector<WorkItem> items;
  for (uint64_t id = 1; id <= 8; ++id) {
    items.push_back(Item(id, 2 + 9 * id, 4 + 3 * id, id % 2 ? 0.0f : 0.8f));
  }
  items[2].ignore_eos = false;
  for (const WorkItem& w : items) ASSERT_TRUE(engine_->Submit(sink, w).ok());
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
}

TEST_F(EngineTest, AFullQueueIsResourceExhaustedAndWaitingRequestsStillFinish) {
  EngineOptions o;
  o.max_num_seqs = 2;
  o.max_waiting = 1;
  Start(&local_, o, /*run=*/false);  // nothing retires before the loop starts
  auto sink = std::make_shared<RecordingSink>();
  std::vector<WorkItem> items;
  for (uint64_t id = 1; id <= 3; ++id) items.push_back(Item(id, 3 + id, 6 + id));
  for (const WorkItem& w : items) ASSERT_TRUE(engine_->Submit(sink, w).ok());
  const absl::Status full = engine_->Submit(sink, Item(4, 3, 3));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(std::string(full.message()), ::testing::HasSubstr("--max-num-seqs 2"));
  // Two run at a time, the third waits its turn: all match Generate.
  StartLoop();
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
  // Finished requests free their places.
  items.push_back(Item(5, 4, 3));
  ASSERT_TRUE(engine_->Submit(sink, items.back()).ok());
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
}

TEST_F(EngineTest, RefusesBadRequestsWithoutQueueing) {
  Start(&local_);
  auto sink = std::make_shared<RecordingSink>();
  WorkItem empty = Item(1, 0, 4);
  EXPECT_EQ(engine_->Submit(sink, empty).code(), absl::StatusCode::kInvalidArgument);
  WorkItem bad_id = Item(2, 3, 4);
  bad_id.prompt[1] = 1 << 20;
  absl::Status s = engine_->Submit(sink, bad_id);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("outside the vocabulary"), absl::string_view::npos) << s;
  WorkItem too_long = Item(3, 10, 1000);
  s = engine_->Submit(sink, too_long);
  EXPECT_NE(s.message().find("context of 256"), absl::string_view::npos) << s;
  // max_tokens 0: finished at once, no tokens.
  ASSERT_TRUE(engine_->Submit(sink, Item(4, 5, 0)).ok());
  ASSERT_TRUE(sink->WaitForTerminals(1));
  EXPECT_EQ(sink->Get(4).completion_tokens, 0);
  EXPECT_EQ(sink->Get(4).reason, FinishReason::kLength);
}

TEST_F(EngineTest, AbortEndsWithCancelledOnce) {
  Start(&local_);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine_->Submit(sink, Item(1, 20, 200)).ok());
  ASSERT_TRUE(engine_->Submit(sink, Item(2, 5, 3)).ok());
  engine_->Abort(sink.get(), 1);
  ASSERT_TRUE(sink->WaitForTerminals(2));
  EXPECT_EQ(sink->Get(1).status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sink->Get(1).terminals, 1);
  EXPECT_LT(sink->Get(1).tokens.size(), 200u);
  EXPECT_TRUE(sink->Get(2).status.ok());
  engine_->Abort(sink.get(), 2);  // already ended: nothing more
  engine_->Abort(sink.get(), 99);  // never existed
  ASSERT_TRUE(engine_->Submit(sink, Item(3, 4, 2)).ok());
  ASSERT_TRUE(sink->WaitForTerminals(3));
  EXPECT_EQ(sink->Get(2).terminals, 1);
}

TEST_F(EngineTest, StopEndsOpenRequestsWithUnavailable) {
  Start(&local_);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine_->Submit(sink, Item(1, 30, 220)).ok());
  engine_->Stop();
  loop_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  ASSERT_TRUE(sink->WaitForTerminals(1));
  EXPECT_EQ(sink->Get(1).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine_->Submit(sink, Item(2, 3, 3)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, CollectiveFailureFailsEveryRequest) {
  FaultOptions o;
  o.fail_call = 40;  // somewhere inside the first requests' steps
  faulty_ = std::make_unique<FaultInjectingCollective>(std::make_unique<LocalCollective>(), o);
  Start(faulty_.get());
  auto sink = std::make_shared<RecordingSink>();
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(engine_->Submit(sink, Item(id, 8, 100)).ok());
  ASSERT_TRUE(sink->WaitForTerminals(3));
  loop_.join();
  EXPECT_FALSE(run_status_.ok());
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(sink->Get(id).status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(sink->Get(id).terminals, 1);
  }
}

}  // namespace
}  // namespace moeserve
