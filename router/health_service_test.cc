// HealthService over a real gRPC server on 127.0.0.1, with the generated
// grpc.health.v1 client: Check's answers, Watch's stream of changes,
// Shutdown, Watches ended by StopAccepting, and an orderly stop with a Watch
// still open.
#include "router/health_service.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace router {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&health_);
    loop_ = std::make_unique<CompletionLoop>(b.AddCompletionQueue());
    server_ = b.BuildAndStart();
    ASSERT_NE(port, 0);
    health_.Start(loop_.get());
    loop_->Start();
    stub_ = Health::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    health_.StopAccepting();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    EXPECT_TRUE(health_.WaitForCalls(absl::Seconds(10)));
    loop_->Shutdown();
  }

  // The status Check gives, or -code for an RPC error.
  int Check(const std::string& service) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status s = stub_->Check(&context, request, &response);
    return s.ok() ? response.status() : -s.error_code();
  }

  // A Watch left open for TearDown (ended by the server's shutdown).
  grpc::ClientContext open_context_;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> open_reader_;
  HealthService health_;
  std::unique_ptr<CompletionLoop> loop_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckFollowsTheStatus) {
  EXPECT_EQ(Check(""), -grpc::StatusCode::NOT_FOUND);
  health_.SetServingStatus("", false);
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  health_.SetServingStatus("", true);
  health_.SetServingStatus("a.B", true);
  EXPECT_EQ(Check(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("a.B"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("c.D"), -grpc::StatusCode::NOT_FOUND);
  health_.SetServingStatus(false);  // every service
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("a.B"), HealthCheckResponse::NOT_SERVING);
  health_.SetServingStatus(true);
  health_.Shutdown();
  EXPECT_EQ(Check("a.B"), HealthCheckResponse::NOT_SERVING);
  health_.SetServingStatus("a.B", true);  // ignored after Shutdown
  EXPECT_EQ(Check("a.B"), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, WatchStreamsEachChange) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service("x.Y");
  auto reader = stub_->Watch(&context, request);
  HealthCheckResponse r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  health_.SetServingStatus("x.Y", true);
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVING);
  health_.SetServingStatus("other", false);  // not this service: nothing sent
  health_.SetServingStatus("x.Y", false);
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  health_.Shutdown();  // already NOT_SERVING: nothing new
  health_.SetServingStatus("x.Y", true);
  // A second watcher sees the current status at once.
  open_reader_ = stub_->Watch(&open_context_, request);
  ASSERT_TRUE(open_reader_->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  context.TryCancel();
  EXPECT_FALSE(reader->Read(&r));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The second stays open: TearDown must end it and still drain the loop.
}

// StopAccepting (the first step of a shutdown) ends each open Watch with
// UNAVAILABLE, before the server's Shutdown: a watching load balancer does
// not hold the shutdown for its grace period.
TEST_F(HealthServiceTest, StopAcceptingEndsEveryWatch) {
  health_.SetServingStatus("", true);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto reader = stub_->Watch(&context, HealthCheckRequest());
  HealthCheckResponse r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVING);
  health_.SetServingStatus("", false);  // a write, maybe still in flight
  health_.StopAccepting();
  while (reader->Read(&r)) EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  const grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
  EXPECT_EQ(end.error_message(), "the server is shutting down");
}

}  // namespace
}  // namespace router
}  // namespace moeserve
