// InferenceService end to end inside one process: a real gRPC server on
// 127.0.0.1 (port 0) and a real client, with FakeWorkerConnections playing
// the workers.
#include "router/inference_service.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "router/fake_worker_connection.h"

namespace moeserve {
namespace router {
namespace {

using ::testing::HasSubstr;

constexpr char kModel[] = "tests/fixtures/qwen3_moe_chat";

// One Generate call, run on a thread of its own.
class Call {
 public:
  Call(v1::Inference::Stub* stub, v1::GenerateRequest request,
       absl::Duration timeout = absl::Seconds(30)) {
    context_.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    thread_ = std::thread([this, stub, request] {
      auto reader = stub->Generate(&context_, request);
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
        absl::MutexLock lock(&mu_);
        responses_.push_back(response);
      }
      status_ = reader->Finish();
    });
  }
  ~Call() { Join(); }

  void Cancel() { context_.TryCancel(); }
  const grpc::Status& Join() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  // Valid after Join().
  const std::vector<v1::GenerateResponse>& responses() const { return responses_; }
  size_t received() {
    absl::MutexLock lock(&mu_);
    return responses_.size();
  }
  std::string Text() const {
    std::string text;
    for (const auto& r : responses_) text += r.text();
    return text;
  }
  std::vector<int32_t> Ids() const {
    std::vector<int32_t> ids;
    for (const auto& r : responses_)
      ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
    return ids;
  }

 private:
  grpc::ClientContext context_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::GenerateResponse> responses_;
  grpc::Status status_;
};

class InferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = LoadModelConfig(kModel);
    ASSERT_TRUE(config.ok()) << config.status();
    auto text = LoadTextFiles(kModel);
    ASSERT_TRUE(text.ok()) << text.status();
    auto builder = RequestBuilder::Create(*std::move(config), *std::move(text), "", "chat");
    ASSERT_TRUE(builder.ok()) << builder.status();
    builder_ = *std::move(builder);
    pool_ = std::make_unique<WorkerPool>();
    for (int i = 0; i < 2; ++i) {
      auto w = std::make_unique<FakeWorkerConnection>("w" + std::to_string(i) + ":1");
      workers_.push_back(w.get());
      pool_->AddWorker(std::move(w));
    }
    service_ = std::make_unique<InferenceService>(builder_.get(), pool_.get(), "qwen3_moe_chat");
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    loop_ = std::make_unique<CompletionLoop>(b.AddCompletionQueue());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    service_->Start(loop_.get());
    loop_->Start();
    stub_ = v1::Inference::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    service_->StopAccepting();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    EXPECT_TRUE(service_->WaitForCalls(absl::Seconds(10)));
    pool_->Shutdown();
    loop_->Shutdown();
  }

  static v1::GenerateRequest Ids(std::initializer_list<int32_t> ids, uint32_t max_tokens = 8) {
    v1::GenerateRequest r;
    r.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    r.set_max_tokens(max_tokens);
    return r;
  }
  // Waits until the pool holds no request.
  bool Drained() {
    for (int i = 0; i < 500; ++i) {
      if (pool_->active_requests() == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<RequestBuilder> builder_;
  std::unique_ptr<WorkerPool> pool_;
  std::vector<FakeWorkerConnection*> workers_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<CompletionLoop> loop_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(InferenceServiceTest, NoWorkerIsUnavailable) {
  Call call(stub_.get(), Ids({1, 2}));
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "no worker is connected and accepting requests");
  EXPECT_TRUE(call.responses().empty());
}

TEST_F(InferenceServiceTest, InvalidRequestNamesTheField) {
  workers_[0]->Connect(0, 2);
  v1::GenerateRequest r = Ids({1, 9999});
  Call call(stub_.get(), r);
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("token_ids.ids[1]"));
  EXPECT_TRUE(workers_[0]->submits().empty());
}

TEST_F(InferenceServiceTest, StreamsTextAndEndsWithFinishAndUsage) {
  workers_[0]->Connect(0, 2);
  workers_[1]->Connect(1, 2);
  v1::GenerateRequest r;
  r.set_text("Hello");
  r.set_max_tokens(10);
  Call call(stub_.get(), r);
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));  // both idle: the lowest index
  const internal::v1::Submit submit = workers_[0]->submits()[0];
  EXPECT_EQ(submit.max_tokens(), 10u);
  const std::vector<int32_t> out = builder_->tokenizer()->Encode(" world, how are you?", false);
  ASSERT_GE(out.size(), 3u);
  const uint64_t id = submit.request_id();
  workers_[0]->SendTokens(id, {out[0]});
  workers_[0]->SendTokens(id, std::vector<int32_t>(out.begin() + 1, out.end() - 1));
  workers_[0]->Finish(id, {out.back()}, internal::v1::FINISH_REASON_LENGTH, submit.prompt_size(),
                      out.size());
  ASSERT_TRUE(call.Join().ok()) << call.Join().error_message();
  EXPECT_EQ(call.Text(), " world, how are you?");
  EXPECT_EQ(call.Ids(), out);
  const auto& responses = call.responses();
  ASSERT_FALSE(responses.empty());
  for (size_t i = 0; i + 1 < responses.size(); ++i) EXPECT_FALSE(responses[i].has_finish());
  const v1::Finish& finish = responses.back().finish();
  EXPECT_EQ(finish.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(finish.usage().prompt_tokens(), static_cast<uint32_t>(submit.prompt_size()));
  EXPECT_EQ(finish.usage().completion_tokens(), out.size());
  EXPECT_TRUE(Drained());
}

TEST_F(InferenceServiceTest, ManyTinyBatchesArriveWholeAndInOrder) {
  workers_[0]->Connect(0, 1);
  Call call(stub_.get(), Ids({1, 2, 3}, 200));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  const uint64_t id = workers_[0]->submits()[0].request_id();
  std::vector<int32_t> sent;
  for (int i = 0; i < 199; ++i) {
    sent.push_back(10 + i % 300);
    workers_[0]->SendTokens(id, {sent.back()});
  }
  sent.push_back(7);
  workers_[0]->Finish(id, {7}, internal::v1::FINISH_REASON_LENGTH, 3, 200);
  ASSERT_TRUE(call.Join().ok());
  EXPECT_EQ(call.Ids(), sent);
  // Tokens that arrive while a write is in flight share the next message.
  EXPECT_LE(call.responses().size(), sent.size());
  EXPECT_EQ(call.Text(), builder_->tokenizer()->Decode(sent, /*skip_special_tokens=*/true));
}

// A batch of one item: `ids` with log-probs whose logprob is -id / 1000 and
// whose one alternative is (id + 1, -1), as a worker asked for logprobs=1 sends.
internal::v1::TokenBatch WithLogprobs(uint64_t request_id, const std::vector<int32_t>& ids,
                                      bool finish = false) {
  internal::v1::TokenBatch batch;
  auto* item = batch.add_items();
  item->set_request_id(request_id);
  for (int32_t id : ids) {
    item->add_token_ids(id);
    auto* lp = item->add_logprobs();
    lp->set_logprob(-id / 1000.0f);
    auto* a = lp->add_top();
    a->set_id(id + 1);
    a->set_logprob(-1.0f);
  }
  if (finish) item->mutable_terminal()->set_finish_reason(internal::v1::FINISH_REASON_LENGTH);
  return batch;
}

// Each response's log-probs are as many as its ids, and belong to them.
void ExpectLogprobsAligned(const std::vector<v1::GenerateResponse>& responses) {
  for (const v1::GenerateResponse& r : responses) {
    ASSERT_EQ(r.logprobs_size(), r.token_ids_size());
    for (int i = 0; i < r.token_ids_size(); ++i) {
      EXPECT_FLOAT_EQ(r.logprobs(i).logprob(), -r.token_ids(i) / 1000.0f);
      ASSERT_EQ(r.logprobs(i).top_size(), 1);
      EXPECT_EQ(r.logprobs(i).top(0).id(), r.token_ids(i) + 1);
      EXPECT_FLOAT_EQ(r.logprobs(i).top(0).logprob(), -1.0f);
    }
  }
}

TEST_F(InferenceServiceTest, LogprobsAreMappedAndStayAlignedWhenCoalesced) {
  workers_[0]->Connect(0, 1);
  v1::GenerateRequest request = Ids({1, 2, 3}, 200);
  request.mutable_sampling()->set_logprobs(1);
  Call call(stub_.get(), request);
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  EXPECT_EQ(workers_[0]->submits()[0].sampling().logprobs(), 1);
  const uint64_t id = workers_[0]->submits()[0].request_id();
  std::vector<int32_t> sent;
  for (int i = 0; i < 99; ++i) {
    const std::vector<int32_t> ids = {10 + i, 200 + i};
    sent.insert(sent.end(), ids.begin(), ids.end());
    workers_[0]->SendBatch(WithLogprobs(id, ids));
  }
  sent.push_back(7);
  workers_[0]->SendBatch(WithLogprobs(id, {7}, /*finish=*/true));
  ASSERT_TRUE(call.Join().ok());
  EXPECT_EQ(call.Ids(), sent);
  ExpectLogprobsAligned(call.responses());
}

TEST_F(InferenceServiceTest, LogprobsOutOfRangeAreInvalidArgument) {
  workers_[0]->Connect(0, 1);
  v1::GenerateRequest request = Ids({1, 2, 3});
  request.mutable_sampling()->set_logprobs(21);
  Call call(stub_.get(), request);
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("sampling.logprobs"));
}

TEST_F(InferenceServiceTest, StopTokenFinishesWithStop) {
  workers_[0]->Connect(0, 1);
  Call call(stub_.get(), Ids({5}));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  const uint64_t id = workers_[0]->submits()[0].request_id();
  // <|im_end|>; usage is counted by the router, whatever the worker says.
  workers_[0]->Finish(id, {421}, internal::v1::FINISH_REASON_STOP, 0, 0);
  ASSERT_TRUE(call.Join().ok());
  ASSERT_EQ(call.responses().size(), 1u);
  EXPECT_EQ(call.responses()[0].finish().reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(call.responses()[0].finish().usage().prompt_tokens(), 1u);
  EXPECT_EQ(call.responses()[0].finish().usage().completion_tokens(), 1u);
  EXPECT_EQ(call.Text(), "");  // special tokens are not shown
  EXPECT_EQ(call.Ids(), std::vector<int32_t>({421}));
}

TEST_F(InferenceServiceTest, CancelSendsAbortAndFreesTheRequest) {
  workers_[0]->Connect(0, 1);
  Call call(stub_.get(), Ids({1, 2}));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  const uint64_t id = workers_[0]->submits()[0].request_id();
  workers_[0]->SendTokens(id, {40});
  for (int i = 0; i < 500 && call.received() == 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(call.received(), 1u);
  call.Cancel();
  EXPECT_EQ(call.Join().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(workers_[0]->WaitForAborts(1));
  EXPECT_EQ(workers_[0]->aborts()[0], id);
  EXPECT_TRUE(Drained());
  // The worker's CANCELLED terminal, and anything else, is ignored.
  workers_[0]->SendTokens(id, {41});
  workers_[0]->Fail(id, static_cast<int>(grpc::StatusCode::CANCELLED), "aborted");
  EXPECT_EQ(workers_[0]->aborts().size(), 1u);
}

TEST_F(InferenceServiceTest, DeadlineAbortsTheRequest) {
  workers_[0]->Connect(0, 1);
  Call call(stub_.get(), Ids({1, 2}), absl::Milliseconds(300));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  EXPECT_EQ(call.Join().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(workers_[0]->WaitForAborts(1));
  EXPECT_EQ(workers_[0]->aborts()[0], workers_[0]->submits()[0].request_id());
  EXPECT_TRUE(Drained());
}

TEST_F(InferenceServiceTest, WorkerLossIsUnavailable) {
  workers_[0]->Connect(0, 2);
  workers_[1]->Connect(1, 2);
  workers_[0]->SendLoad(1000);
  Call call(stub_.get(), Ids({1, 2}));
  ASSERT_TRUE(workers_[1]->WaitForSubmits(1));  // the idle one
  workers_[1]->SendTokens(workers_[1]->submits()[0].request_id(), {40, 41});
  workers_[1]->Disconnect(absl::UnavailableError("Socket closed"));
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "worker w1:1 (rank 1) lost: UNAVAILABLE: Socket closed");
  EXPECT_TRUE(Drained());
  EXPECT_TRUE(workers_[1]->aborts().empty());

  // The next request goes to the worker that is left.
  Call next(stub_.get(), Ids({3}));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  workers_[0]->Finish(workers_[0]->submits()[0].request_id(), {9},
                      internal::v1::FINISH_REASON_LENGTH, 1, 1);
  EXPECT_TRUE(next.Join().ok());
}

TEST_F(InferenceServiceTest, WorkerErrorBecomesTheCallStatus) {
  workers_[0]->Connect(0, 1);
  Call call(stub_.get(), Ids({1, 2}));
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  workers_[0]->Fail(workers_[0]->submits()[0].request_id(),
                    static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED), "KV cache is full");
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "KV cache is full");
  EXPECT_TRUE(Drained());
}

TEST_F(InferenceServiceTest, ManyConcurrentCallsEachEndOnce) {
  workers_[0]->Connect(0, 2);
  workers_[1]->Connect(1, 2);
  constexpr int kCalls = 16;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kCalls; ++i) calls.push_back(std::make_unique<Call>(stub_.get(), Ids({1})));
  for (int i = 0; i < 500 && workers_[0]->submits().size() + workers_[1]->submits().size() <
                                 static_cast<size_t>(kCalls);
       ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  int finished = 0;
  for (FakeWorkerConnection* w : workers_) {
    EXPECT_FALSE(w->submits().empty());  // placement spreads them
    for (const auto& s : w->submits()) {
      w->SendTokens(s.request_id(), {50, 51});
      if (++finished % 3 == 0) {
        w->Fail(s.request_id(), static_cast<int>(grpc::StatusCode::INTERNAL), "boom");
      } else {
        w->Finish(s.request_id(), {52}, internal::v1::FINISH_REASON_LENGTH, 1, 3);
      }
    }
  }
  EXPECT_EQ(finished, kCalls);
  int ok = 0;
  for (auto& c : calls) {
    const grpc::Status& s = c->Join();
    if (s.ok()) {
      ++ok;
      EXPECT_EQ(c->Ids(), std::vector<int32_t>({50, 51, 52}));
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
    }
  }
  EXPECT_EQ(ok, kCalls - kCalls / 3);
  EXPECT_TRUE(Drained());
}

// Stop strings. The chat model's tokenizer splits kSentence into
//   " w" "or" "ld" "," " " "h" "ow" " ar" "e" " you" "?" " The" " s" "ea"
//   " is" " c" "a" "l" "m" " t" "on" "i" "gh" "t" "."
constexpr char kSentence[] = " world, how are you? The sea is calm tonight.";

class StopStringTest : public InferenceServiceTest {
 protected:
  struct Outcome {
    uint64_t request_id = 0;
    grpc::Status status;
    std::string text;
    std::vector<int32_t> ids;
    std::vector<v1::GenerateResponse> responses;
  };

  void SetUp() override {
    InferenceServiceTest::SetUp();
    sentence_ = builder_->tokenizer()->Encode(kSentence, /*add_special_tokens=*/false);
    ASSERT_EQ(sentence_.size(), 25u);
  }

  // Generates kSentence for a text request with `stops`: the worker sends
  // the ids `per_message` at a time (all of them, even after a stop: the
  // router must drop the rest), then, if `finish`, an OK LENGTH terminal
  // with nothing more.
  Outcome Generate(const std::vector<std::string>& stops, size_t per_message = 1,
                   bool finish = false) {
    workers_[0]->Connect(0, 1);
    v1::GenerateRequest r;
    r.set_text("Hello");
    r.set_max_tokens(64);
    for (const std::string& s : stops) r.add_stop(s);
    Call call(stub_.get(), r);
    Outcome o;
    EXPECT_TRUE(workers_[0]->WaitForSubmits(1));
    if (workers_[0]->submits().empty()) return o;
    o.request_id = workers_[0]->submits()[0].request_id();
    for (size_t i = 0; i < sentence_.size(); i += per_message) {
      const size_t end = std::min(sentence_.size(), i + per_message);
      workers_[0]->SendTokens(o.request_id, std::vector<int32_t>(sentence_.begin() + i,
                                                                 sentence_.begin() + end));
    }
    if (finish) {
      workers_[0]->Finish(o.request_id, {}, internal::v1::FINISH_REASON_LENGTH, 0, 0);
    }
    o.status = call.Join();
    o.text = call.Text();
    o.ids = call.Ids();
    o.responses = call.responses();
    return o;
  }

  // Checks a call that a stop string ended at token `last` (0-based): the
  // text, the ids up to and including that token, one finish (STOP, usage),
  // the worker told to abort.
  void ExpectStopped(const Outcome& o, const std::string& text, size_t last) {
    ASSERT_TRUE(o.status.ok()) << o.status.error_message();
    EXPECT_EQ(o.text, text);
    EXPECT_EQ(o.ids, std::vector<int32_t>(sentence_.begin(), sentence_.begin() + last + 1));
    ASSERT_FALSE(o.responses.empty());
    for (size_t i = 0; i + 1 < o.responses.size(); ++i) EXPECT_FALSE(o.responses[i].has_finish());
    const v1::Finish& finish = o.responses.back().finish();
    EXPECT_EQ(finish.reason(), v1::FINISH_REASON_STOP);
    EXPECT_EQ(finish.usage().completion_tokens(), last + 1);
    EXPECT_EQ(finish.usage().prompt_tokens(),
              static_cast<uint32_t>(workers_[0]->submits()[0].prompt_size()));
    ASSERT_TRUE(workers_[0]->WaitForAborts(1));
    EXPECT_EQ(workers_[0]->aborts(), std::vector<uint64_t>({o.request_id}));
    EXPECT_TRUE(Drained());
  }

  std::vector<int32_t> sentence_;
};

TEST_F(StopStringTest, InsideOneToken) {
  // "Th" lies inside " The" (token 11).
  ExpectStopped(Generate({"Th"}), " world, how are you? ", 11);
}

TEST_F(StopStringTest, AcrossTwoTokens) {
  // "ld" + "," (tokens 2 and 3).
  ExpectStopped(Generate({"ld,"}), " wor", 3);
}

TEST_F(StopStringTest, AcrossThreeTokens) {
  // "ea" + " is" + " c" (tokens 13 to 15).
  ExpectStopped(Generate({"ea is c"}), " world, how are you? The s", 15);
}

TEST_F(StopStringTest, AcrossTokensOfOneMessage) {
  // The same, with the ids arriving 4 to a message: ids after the one that
  // completed the match are not sent.
  ExpectStopped(Generate({"ea is c"}, /*per_message=*/4), " world, how are you? The s", 15);
}

TEST_F(StopStringTest, FailedPartialMatchesLoseNothing) {
  // " is calm" is held back over five tokens, then " t" breaks the match;
  // "you" (then "?") and the final "." (then the end) are held back too.
  Outcome o = Generate({" is calm!", "you!", ".!"}, 1, /*finish=*/true);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.text, kSentence);
  EXPECT_EQ(o.ids, sentence_);
  EXPECT_EQ(o.responses.back().finish().reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(o.responses.back().finish().usage().completion_tokens(), sentence_.size());
  EXPECT_TRUE(workers_[0]->aborts().empty());
  EXPECT_TRUE(Drained());
}

TEST_F(StopStringTest, EarlierOccurrenceWins) {
  // Both complete with "ld" (token 2); "orl" begins first.
  ExpectStopped(Generate({"ld", "orl"}), " w", 2);
}

TEST_F(StopStringTest, FirstToCompleteWinsWhicheverIsListedFirst) {
  // "how" (token 6) long before "sea".
  ExpectStopped(Generate({"sea", "how"}), " world, ", 6);
}

TEST_F(StopStringTest, StopInTheBatchThatEndsTheRequest) {
  // The worker's terminal comes with the stop: STOP, and nothing to abort.
  workers_[0]->Connect(0, 1);
  v1::GenerateRequest r;
  r.set_text("Hello");
  r.add_stop("you");
  Call call(stub_.get(), r);
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  const uint64_t id = workers_[0]->submits()[0].request_id();
  workers_[0]->Finish(id, sentence_, internal::v1::FINISH_REASON_LENGTH, 0, 0);
  ASSERT_TRUE(call.Join().ok());
  EXPECT_EQ(call.Text(), " world, how are ");
  EXPECT_EQ(call.Ids(), std::vector<int32_t>(sentence_.begin(), sentence_.begin() + 10));
  EXPECT_EQ(call.responses().back().finish().reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(call.responses().back().finish().usage().completion_tokens(), 10u);
  EXPECT_TRUE(workers_[0]->aborts().empty());
  EXPECT_TRUE(Drained());
}

TEST_F(StopStringTest, LogprobsOfDroppedIdsAreDropped) {
  // "ea is c" completes at token 15, the first of a 5-id message (tokens 15
  // to 19): the ids after it in that message and in later ones are not sent,
  // nor their log-probs.
  workers_[0]->Connect(0, 1);
  v1::GenerateRequest r;
  r.set_text("Hello");
  r.set_max_tokens(64);
  r.add_stop("ea is c");
  r.mutable_sampling()->set_logprobs(1);
  Call call(stub_.get(), r);
  ASSERT_TRUE(workers_[0]->WaitForSubmits(1));
  const uint64_t id = workers_[0]->submits()[0].request_id();
  for (size_t i = 0; i < sentence_.size(); i += 5) {
    const size_t end = std::min(sentence_.size(), i + 5);
    workers_[0]->SendBatch(WithLogprobs(
        id, std::vector<int32_t>(sentence_.begin() + i, sentence_.begin() + end)));
  }
  ASSERT_TRUE(call.Join().ok());
  EXPECT_EQ(call.Ids(), std::vector<int32_t>(sentence_.begin(), sentence_.begin() + 16));
  ExpectLogprobsAligned(call.responses());
}

TEST_F(StopStringTest, NoMatchIsUnchanged) {
  Outcome o = Generate({"zzz"}, 3, /*finish=*/true);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(o.text, kSentence);
  EXPECT_EQ(o.ids, sentence_);
  EXPECT_EQ(o.responses.back().finish().reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(StopStringTest, BadStopStringsAreInvalidArgument) {
  workers_[0]->Connect(0, 1);
  v1::GenerateRequest r;
  r.set_text("Hello");
  r.add_stop("ok");
  r.add_stop("");
  Call call(stub_.get(), r);
  const grpc::Status& s = call.Join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "stop[1] is empty");
  EXPECT_TRUE(workers_[0]->submits().empty());
}

TEST_F(InferenceServiceTest, GetModelInfo) {
  workers_[0]->Connect(0, 2);
  grpc::ClientContext context;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.name(), "qwen3_moe_chat");
  EXPECT_EQ(info.architecture(), "Qwen3MoeForCausalLM");
  EXPECT_EQ(info.context_length(), 256u);
  EXPECT_EQ(info.vocab_size(), 448u);
  EXPECT_EQ(info.num_experts(), 8u);
  EXPECT_EQ(info.experts_per_token(), 2u);
  EXPECT_EQ(info.world_size(), 2u);
  EXPECT_EQ(info.num_layers(), 4u);
  EXPECT_EQ(info.hidden_size(), 40u);
}

}  // namespace
}  // namespace router
}  // namespace moeserve
