// FakeWorkerService: an in-process moeserve.internal.v1.Worker/Connect
// server that plays a worker for tests of the real gRPC connection and the
// router binary. It ends the first `forming` streams with UNAVAILABLE (a
// group still forming), then Welcomes with the configured epoch, reports a
// load, answers each Submit with one TokenBatch holding `reply` tokens and
// an OK terminal (LENGTH), and each Abort with a CANCELLED terminal. It
// records what routers sent and counts messages with the wrong epoch.
//
//   FakeWorkerService worker;
//   int port;
//   std::unique_ptr<grpc::Server> server = worker.Serve(&port);  // 127.0.0.1:port
#ifndef MOESERVE_ROUTER_FAKE_WORKER_SERVICE_H_
#define MOESERVE_ROUTER_FAKE_WORKER_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"

namespace moeserve {
namespace router {

class FakeWorkerService final : public internal::v1::Worker::Service {
 public:
  FakeWorkerService(uint32_t rank = 1, uint32_t world_size = 2) : rank_(rank), world_(world_size) {}

  // Starts a server for this service on 127.0.0.1 (`port` 0: any free one;
  // the port is written back).
  std::unique_ptr<grpc::Server> Serve(int* port);

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<internal::v1::WorkerMessage,
                                                internal::v1::RouterMessage>* stream) override;

  void SetForming(int n);
  void SetEpoch(uint64_t epoch);
  void SetReply(std::vector<int32_t> tokens);
  // Breaks the open stream, as a crashed worker would.
  void Kick();

  std::vector<std::string> hellos();
  std::vector<internal::v1::RouterMessage> received();
  int wrong_epochs();

 private:
  const uint32_t rank_, world_;
  absl::Mutex mu_;
  int forming_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 5;
  std::vector<int32_t> reply_ ABSL_GUARDED_BY(mu_) = {100, 101};
  grpc::ServerContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<std::string> hellos_ ABSL_GUARDED_BY(mu_);
  std::vector<internal::v1::RouterMessage> received_ ABSL_GUARDED_BY(mu_);
  int wrong_epochs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_FAKE_WORKER_SERVICE_H_
