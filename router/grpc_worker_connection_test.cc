// GrpcWorkerConnection against an in-process Worker service that plays the
// worker's side of the contract: UNAVAILABLE while "forming", then Welcome,
// then one TokenBatch per Submit and a CANCELLED terminal per Abort.
#include "router/grpc_worker_connection.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "router/fake_worker_service.h"

namespace moeserve {
namespace router {
namespace {

// Records listener calls; Wait* block until they arrive.
class RecordingListener : public WorkerConnection::Listener {
 public:
  void OnConnected(uint64_t session, uint64_t epoch, const internal::v1::Welcome& w) override {
    absl::MutexLock lock(&mu_);
    sessions_.push_back(session);
    epochs_.push_back(epoch);
    rank_ = w.rank();
  }
  void OnTokens(uint64_t, const internal::v1::TokenBatch& batch) override {
    absl::MutexLock lock(&mu_);
    for (const auto& item : batch.items()) items_.push_back(item);
  }
  void OnLoad(uint64_t, const internal::v1::LoadReport& load) override {
    absl::MutexLock lock(&mu_);
    pending_ = load.pending_tokens();
  }
  void OnDisconnected(uint64_t session, const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    disconnects_.push_back({session, status});
  }

  bool WaitFor(std::function<bool(RecordingListener*)> done) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done(this); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Seconds(10));
  }

  absl::Mutex mu_;
  std::vector<uint64_t> sessions_, epochs_;
  uint32_t rank_ = 0;
  uint64_t pending_ = 0;
  std::vector<internal::v1::RequestTokens> items_;
  std::vector<std::pair<uint64_t, absl::Status>> disconnects_;
};

class GrpcWorkerConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = service_.Serve(&port_);
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (connection_) connection_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  void Connect() {
    connection_ =
        std::make_unique<GrpcWorkerConnection>(absl::StrCat("127.0.0.1:", port_), "router-test");
    connection_->Start(&listener_);
  }

  FakeWorkerService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  RecordingListener listener_;
  std::unique_ptr<GrpcWorkerConnection> connection_;
};

TEST_F(GrpcWorkerConnectionTest, RetriesWhileFormingThenWelcomes) {
  service_.SetForming(3);
  Connect();
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return !l->sessions_.empty(); }));
  EXPECT_EQ(service_.hellos().size(), 4u);  // three UNAVAILABLE, then Welcome
  EXPECT_EQ(service_.hellos()[0], "router-test");
  absl::MutexLock lock(&listener_.mu_);
  EXPECT_EQ(listener_.epochs_[0], 5u);
  EXPECT_EQ(listener_.rank_, 1u);
}

TEST_F(GrpcWorkerConnectionTest, SubmitAndAbortCarryTheEpoch) {
  Connect();
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return l->pending_ == 77; }));
  uint64_t session;
  {
    absl::MutexLock lock(&listener_.mu_);
    session = listener_.sessions_[0];
  }
  internal::v1::Submit submit;
  submit.set_request_id(42);
  submit.add_prompt(1);
  ASSERT_TRUE(connection_->Submit(session, submit).ok());
  connection_->Abort(session, 43);
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return l->items_.size() == 2; }));
  {
    absl::MutexLock lock(&listener_.mu_);
    EXPECT_EQ(listener_.items_[0].request_id(), 42u);
    EXPECT_EQ(listener_.items_[0].token_ids_size(), 2);
    EXPECT_TRUE(listener_.items_[0].has_terminal());
    EXPECT_EQ(listener_.items_[1].terminal().code(), 1);  // CANCELLED
  }
  EXPECT_EQ(service_.wrong_epochs(), 0);
  // A session that is not the open one sends nothing.
  EXPECT_EQ(connection_->Submit(session + 1, submit).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.received().size(), 2u);
}

TEST_F(GrpcWorkerConnectionTest, ReconnectsAfterLossWithTheNewEpoch) {
  Connect();
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return l->sessions_.size() == 1; }));
  service_.SetEpoch(9);
  service_.Kick();
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return l->sessions_.size() == 2; }));
  uint64_t old_session, new_session;
  {
    absl::MutexLock lock(&listener_.mu_);
    ASSERT_EQ(listener_.disconnects_.size(), 1u);
    old_session = listener_.disconnects_[0].first;
    EXPECT_FALSE(listener_.disconnects_[0].second.ok());
    EXPECT_EQ(listener_.epochs_[1], 9u);
    new_session = listener_.sessions_[1];
  }
  EXPECT_NE(old_session, new_session);
  internal::v1::Submit submit;
  submit.set_request_id(1);
  EXPECT_FALSE(connection_->Submit(old_session, submit).ok());  // never lands on the new stream
  ASSERT_TRUE(connection_->Submit(new_session, submit).ok());
  ASSERT_TRUE(listener_.WaitFor([](RecordingListener* l) { return l->items_.size() == 1; }));
  EXPECT_EQ(service_.wrong_epochs(), 0);
}

TEST_F(GrpcWorkerConnectionTest, ShutdownWhileRetryingIsPrompt) {
  service_.SetForming(1000000);
  Connect();
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  connection_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  absl::MutexLock lock(&listener_.mu_);
  EXPECT_TRUE(listener_.sessions_.empty());
}

}  // namespace
}  // namespace router
}  // namespace moeserve
