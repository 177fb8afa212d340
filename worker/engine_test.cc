// The worker's engine loop at world size 1 (the real local collective and
// the expert-parallel runner): concurrent requests give exactly the tokens
// of the single-process Generate, and every request ends with exactly one
// terminal, also when aborted, refused, stopped or when the group fails.
#include "worker/engine.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "collective/fault_collective.h"
#include "collective/local_collective.h"
#include "common/status_macros.h"
#include "engine/generator.h"
#include "engine/sample_with_draw_testing.h"
#include "engine/sampler.h"
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
        finish_order_.push_back(u.request_id);
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
  std::vector<uint64_t> finish_order() {
    std::lock_guard<std::mutex> l(mu_);
    return finish_order_;
  }
  Result Get(uint64_t id) {
    std::lock_guard<std::mutex> l(mu_);
    return results_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Result> results_;
  std::vector<uint64_t> finish_order_;
  int deliveries_ = 0;
};

// The seam of device sampling (ForwardPass::ForwardSampled), on the host:
// the real Transformer's logits, kDevice rows picked with the arithmetic
// kernels/cuda/ops.h SampleFromLogits documents (SampleWithDraw), only the
// kHost rows' logits handed back. Engine runs through it must give
// Generate's tokens.
class HostSampledForwardPass : public ForwardPass {
 public:
  explicit HostSampledForwardPass(ForwardPass& inner) : inner_(inner) {}
  const ModelConfig& config() const override { return inner_.config(); }
  absl::Status Forward(absl::Span<const SequenceChunk> batch,
                       std::vector<float>* logits) override {
    return absl::InternalError("the engine must use ForwardSampled");
  }
  bool samples_on_device() const override { return true; }
  absl::Status ForwardSampled(absl::Span<const SequenceChunk> batch,
                              absl::Span<const RowSampling> rows, std::vector<int32_t>* tokens,
                              const float** host_logits) override {
    logits_.clear();
    MOE_RETURN_IF_ERROR(inner_.Forward(batch, &logits_));
    const int vocab = config().vocab_size;
    if (rows.size() * vocab != logits_.size()) return absl::InvalidArgumentError("rows");
    tokens->assign(rows.size(), -1);
    host_.clear();
    for (size_t i = 0; i < rows.size(); ++i) {
      const float* x = &logits_[i * vocab];
      if (rows[i].where == RowSampling::kHost) host_.insert(host_.end(), x, x + vocab);
      if (rows[i].where != RowSampling::kDevice) continue;
      ++device_rows;
      (*tokens)[i] = SampleWithDraw(x, vocab, rows[i].temperature, rows[i].uniform).token;
    }
    *host_logits = host_.data();
    return absl::OkStatus();
  }
  int device_rows = 0;

 private:
  ForwardPass& inner_;
  std::vector<float> logits_, host_;
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
    options.poison_kv = true;  // reading KV nobody wrote turns results to NaN
    ForwardPass* pass = model_.get();
    if (device_sampling_) {
      sampled_ = std::make_unique<HostSampledForwardPass>(*model_);
      pass = sampled_.get();
    }
    engine_ = std::make_unique<Engine>(*pass, *c, options);
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

  // Polls the engine's stats until `pred` holds (10 s bound).
  template <typename Pred>
  bool WaitForStats(Pred pred) {
    for (int i = 0; i < 1000; ++i) {
      if (pred(engine_->stats())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Declared first: destroyed after the engine loop has stopped.
  LocalCollective local_;
  std::unique_ptr<FaultInjectingCollective> faulty_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<ExpertShards> shards_;
  std::unique_ptr<ExpertParallelRunner> runner_;
  std::unique_ptr<Transformer> model_;
  bool device_sampling_ = false;  // the engine drives a HostSampledForwardPass
  std::unique_ptr<HostSampledForwardPass> sampled_;
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

// One seat: requests run one at a time, lowest priority value first, equal
// values in arrival order.
TEST_F(EngineTest, PriorityOrdersWaitingRequests) {
  EngineOptions o;
  o.max_num_seqs = 1;
  Start(&local_, o, /*run=*/false);
  auto sink = std::make_shared<RecordingSink>();
  std::vector<WorkItem> items;
  const int priorities[] = {0, -1, 5, -1, 0};
  for (uint64_t id = 1; id <= 5; ++id) {
    items.push_back(Item(id, 4 + id, 3));
    items.back().priority = priorities[id - 1];
  }
  for (const WorkItem& w : items) ASSERT_TRUE(engine_->Submit(sink, w).ok());
  StartLoop();
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  EXPECT_EQ(sink->finish_order(), (std::vector<uint64_t>{2, 4, 1, 5, 3}));
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

// A cache of 24 blocks of 4 positions (96) for 8 requests of up to 80
// positions each: requests are preempted (their blocks taken back) and
// recompute later, and every one still gives Generate's tokens, seeded
// sampling included. Afterwards no block is held. With the prefix cache on, a
// preempted request finds its own published blocks again; off, it recomputes
// everything.
class PreemptionTest : public EngineTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PreemptionTest, TinyCacheForcesPreemptionAndEveryRequestStillMatches) {
  EngineOptions o;
  o.block_size = 4;
  o.kv_cache_blocks = 24;
  o.prefill_chunk = 8;
  o.prefix_caching = GetParam();
  Start(&local_, o);
  auto sink = std::make_shared<RecordingSink>();
  std::vector<WorkItem> items;
  for (uint64_t id = 1; id <= 8; ++id) {
    items.push_back(Item(id, 10 + 5 * id, 20 + 3 * id, id % 3 ? 0.8f : 0.0f));
  }
  for (const WorkItem& w : items) ASSERT_TRUE(engine_->Submit(sink, w).ok());
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
  EXPECT_TRUE(WaitForStats([](const EngineStats& s) { return s.kv_blocks_used == 0; }));
  const EngineStats stats = engine_->stats();
  EXPECT_GT(stats.preemptions, 0u);
  EXPECT_EQ(stats.kv_blocks_total, 24);
  // Larger than the whole cache: refused at once, naming the numbers.
  const absl::Status huge = engine_->Submit(sink, Item(9, 60, 40));
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument) << huge;
  EXPECT_THAT(std::string(huge.message()), ::testing::HasSubstr("needs 25 KV-cache blocks"));
  EXPECT_THAT(std::string(huge.message()), ::testing::HasSubstr("holds 24"));
}

INSTANTIATE_TEST_SUITE_P(PrefixCaching, PreemptionTest, ::testing::Bool());

// Requests sharing a 37-token system prompt reuse its 9 full blocks from the
// prefix cache, and give the same tokens as uncached runs (Generate).
TEST_F(EngineTest, PrefixCacheSharesASystemPromptWithIdenticalOutputs) {
  EngineOptions o;
  o.block_size = 4;
  Start(&local_, o);
  auto sink = std::make_shared<RecordingSink>();
  std::vector<int32_t> system;
  for (int i = 0; i < 37; ++i) system.push_back((11 * i + 5) % 300 + 1);
  auto with_system = [&](uint64_t id, int suffix, float temperature) {
    WorkItem w = Item(id, suffix, 12, temperature);
    w.prompt.insert(w.prompt.begin(), system.begin(), system.end());
    return w;
  };
  std::vector<WorkItem> items = {with_system(1, 6, 0)};
  ASSERT_TRUE(engine_->Submit(sink, items[0]).ok());
  ASSERT_TRUE(sink->WaitForTerminals(1));
  EXPECT_EQ(engine_->stats().prefix_hits, 0u);
  for (uint64_t id = 2; id <= 7; ++id) items.push_back(with_system(id, 1 + id, id % 2 ? 0.7f : 0));
  items.push_back(items[0]);  // the same prompt again: all but its last token cached
  items.back().request_id = 8;
  for (size_t i = 1; i < items.size(); ++i) ASSERT_TRUE(engine_->Submit(sink, items[i]).ok());
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
  const EngineStats stats = engine_->stats();
  // Requests 2-7 hit at least the 36 system tokens of 9 full blocks.
  EXPECT_GE(stats.prefix_hits, 6u * 36);
  EXPECT_GT(stats.prefix_queries, stats.prefix_hits);
}

// A storm: 48 requests from 4 sinks, a third aborted at random moments, one
// sink dropped mid-way, the rest finishing. Every block comes back, the engine
// still serves, and every request told anything was told exactly once.
TEST_F(EngineTest, AfterAStormOfCancellationsEveryBlockIsFree) {
  EngineOptions o;
  o.block_size = 4;
  o.kv_cache_blocks = 64;
  o.prefill_chunk = 16;
  Start(&local_, o);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 4; ++i) sinks.push_back(std::make_shared<RecordingSink>());
  std::mt19937 rng(5);
  std::vector<uint64_t> aborted;
  for (uint64_t id = 1; id <= 48; ++id) {
    RecordingSink* s = sinks[id % 4].get();
    ASSERT_TRUE(engine_->Submit(sinks[id % 4], Item(id, 5 + rng() % 40, 5 + rng() % 60, 0.5f)).ok());
    if (rng() % 3 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      engine_->Abort(s, id);
      aborted.push_back(id);
    }
    if (id == 30) engine_->DropSink(sinks[2].get());
  }
  EXPECT_TRUE(WaitForStats([](const EngineStats& s) { return s.active_requests == 0; }));
  EXPECT_TRUE(WaitForStats([](const EngineStats& s) { return s.kv_blocks_used == 0; }));
  for (uint64_t id = 1; id <= 48; ++id) {
    if (id % 4 == 2) continue;  // dropped sink: may have been told nothing
    auto r = sinks[id % 4]->Get(id);
    EXPECT_EQ(r.terminals, 1) << "request " << id;
    if (std::find(aborted.begin(), aborted.end(), id) == aborted.end()) {
      EXPECT_TRUE(r.status.ok()) << "request " << id << ": " << r.status;
    }
  }
  EXPECT_LE(sinks[2]->Get(2).terminals, 1);
  std::vector<WorkItem> after = {Item(100, 12, 10)};
  ASSERT_TRUE(engine_->Submit(sinks[0], after[0]).ok());
  ASSERT_TRUE(sinks[0]->WaitForTerminals(13));
  ExpectMatchesGenerate(*sinks[0], after);
}

// 64 requests of random lengths arriving at random moments, mixed greedy and
// seeded sampling, in small steps (chunked prefill next to decodes) over a
// cache that forces some preemption: each gives exactly the tokens it gives
// run alone.
TEST_F(EngineTest, SixtyFourRandomConcurrentRequestsMatchRunningAlone) {
  EngineOptions o;
  o.block_size = 8;
  o.kv_cache_blocks = 80;
  o.prefill_chunk = 24;
  o.max_step_tokens = 96;
  Start(&local_, o);
  auto sink = std::make_shared<RecordingSink>();
  std::mt19937 rng(64);
  std::vector<WorkItem> items;
  for (uint64_t id = 1; id <= 64; ++id) {
    items.push_back(Item(id, 1 + rng() % 60, 1 + rng() % 40, rng() % 2 ? 0.9f : 0.0f));
    if (rng() % 4 == 0) items.back().ignore_eos = false;
  }
  std::thread submitter([&] {
    for (const WorkItem& w : items) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      EXPECT_TRUE(engine_->Submit(sink, w).ok());
    }
  });
  submitter.join();
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
  EXPECT_TRUE(WaitForStats([](const EngineStats& s) { return s.kv_blocks_used == 0; }));
}

// Through ForwardSampled: greedy and plain-temperature rows picked by the
// "device", penalties / truncation / log-probs on the host from the rows
// handed back, prefill chunks in between; every token is still Generate's.
TEST_F(EngineTest, DeviceSamplingGivesTheHostSamplersTokens) {
  device_sampling_ = true;
  EngineOptions o;
  o.block_size = 8;
  o.prefill_chunk = 16;
  o.max_step_tokens = 64;
  Start(&local_, o);
  auto sink = std::make_shared<RecordingSink>();
  std::mt19937 rng(7);
  std::vector<WorkItem> items;
  for (uint64_t id = 1; id <= 24; ++id) {
    items.push_back(Item(id, 1 + rng() % 40, 1 + rng() % 20, rng() % 3 ? 0.9f : 0.0f));
    switch (id % 4) {
      case 0: items.back().sampling.top_p = 0.8f; break;
      case 1: items.back().sampling.repetition_penalty = 1.3f; break;
      default: break;  // plain: on the device
    }
  }
  for (const WorkItem& w : items) ASSERT_TRUE(engine_->Submit(sink, w).ok());
  ASSERT_TRUE(sink->WaitForTerminals(items.size()));
  ExpectMatchesGenerate(*sink, items);
  EXPECT_GT(sampled_->device_rows, 0);
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

// A lost peer (the worker's group watcher calls Interrupt): busy or idle,
// Run returns the reason at once and every open request ends UNAVAILABLE.
TEST_F(EngineTest, InterruptEndsRunWithTheReason) {
  Start(&local_);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine_->Submit(sink, Item(1, 30, 220)).ok());
  engine_->Interrupt(absl::UnavailableError("rank 1 is gone"));
  loop_.join();
  EXPECT_EQ(run_status_.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(run_status_.message(), "rank 1 is gone");
  ASSERT_TRUE(sink->WaitForTerminals(1));
  EXPECT_EQ(sink->Get(1).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(sink->Get(1).status.message()), ::testing::HasSubstr("rank 1 is gone"));
}

TEST_F(EngineTest, InterruptWakesAnIdleEngine) {
  Start(&local_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // idle by now
  engine_->Interrupt(absl::UnavailableError("rank 0 is gone"));
  loop_.join();  // bounded by the test's timeout: Interrupt must wake it
  EXPECT_EQ(run_status_.message(), "rank 0 is gone");
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
