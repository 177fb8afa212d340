// GrpcWorkerConnection: WorkerConnection over a real Worker/Connect bidi
// stream (gRPC async client API, its tags run by a CompletionLoop).
//
// The stream sends Hello (epoch 0), reads Welcome, then reads
// TokenBatch/LoadReport messages and hands each to the listener on the
// loop's thread (one read in flight, so listener calls are never concurrent
// and keep their order). In the router the loop is the one that also runs
// the public Generate calls, so the response write a token starts
// (GenerateStream) and its completion stay on that thread: no thread hop
// per token (see completion_loop.h).
//
// Submit/Abort never block: they stamp the epoch and start the write at once
// if none is in flight, else queue it; the write's completion starts the
// next queued one. A failed write cancels the stream.
//
// One manager thread per connection handles only the lifecycle: it starts a
// stream, waits until every tag of it is back, reports OnDisconnected (if it
// was Welcomed) and tries again after a backoff that starts at
// `initial_backoff` and doubles up to `max_backoff` (reset by each Welcome).
// A worker that is still forming its group ends the stream with
// UNAVAILABLE; that is just retried.
#ifndef MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_
#define MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/credentials.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"
#include "router/completion_loop.h"
#include "router/worker_connection.h"

namespace moeserve {
namespace router {

class GrpcWorkerConnection : public WorkerConnection {
 public:
  struct Options {
    std::chrono::milliseconds initial_backoff{50};
    std::chrono::milliseconds max_backoff{1000};
    // Plaintext when null (common/tls.h makes mutual-TLS credentials).
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    // Runs the stream's tags; must be running while the connection is and
    // outlive its Shutdown(). Null: the connection starts a loop of its own.
    CompletionLoop* loop = nullptr;
    // Pings the worker after this long without hearing from it, and ends
    // the stream when a ping goes unanswered for as long: a worker that
    // vanished without closing its socket (a lost host, a partition, a
    // frozen process) is then noticed, its requests fail over, and nothing
    // new is placed on it. Zero: no pings (a dead peer is noticed only by
    // TCP). The worker must accept pings this often (moeserve-worker does).
    std::chrono::milliseconds keepalive{10000};
  };

  GrpcWorkerConnection(std::string address, std::string router_id, Options options);
  GrpcWorkerConnection(std::string address, std::string router_id)
      : GrpcWorkerConnection(std::move(address), std::move(router_id), Options()) {}
  ~GrpcWorkerConnection() override;  // Shutdown()

  void Start(Listener* listener) override;
  absl::Status Submit(uint64_t session, const internal::v1::Submit& submit) override;
  void Abort(uint64_t session, uint64_t request_id) override;
  void Shutdown() override;
  const std::string& address() const override { return address_; }

 private:
  class Call;  // one stream (the reactor)
  friend class Call;

  void Run();
  // One stream from open to end. Returns true if it got as far as Welcome.
  bool RunOnce();
  // Sends `message` (epoch stamped) if `session` is the open one. Never
  // blocks.
  bool Write(uint64_t session, internal::v1::RouterMessage* message);
  // Sleeps up to `d`; false if Shutdown() came first.
  bool SleepUnlessStopping(std::chrono::milliseconds d);
  // Logs a failure to connect, once per distinct message.
  void LogConnectFailure(const std::string& what);

  const std::string address_;
  const std::string router_id_;
  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<internal::v1::Worker::Stub> stub_;
  std::unique_ptr<CompletionLoop> own_loop_;  // when Options::loop is null
  CompletionLoop* loop_ = nullptr;
  Listener* listener_ = nullptr;
  std::thread thread_;
  std::string last_failure_;  // manager thread only

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Call* call_ ABSL_GUARDED_BY(mu_) = nullptr;  // the stream being tried
  uint64_t sessions_started_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_
