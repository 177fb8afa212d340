// GrpcWorkerConnection: WorkerConnection over a real Worker/Connect bidi
// stream (synchronous gRPC client API).
//
// One reader thread per connection does everything that blocks: it opens
// the stream, sends Hello (epoch 0), waits for Welcome, then reads
// TokenBatch/LoadReport messages and hands each to the listener on that
// same thread (no hop). When the stream ends it calls OnDisconnected and
// tries again after a backoff that starts at `initial_backoff` and doubles
// up to `max_backoff` (reset by each Welcome). A worker that is still
// forming its group ends the stream with UNAVAILABLE; that is just retried.
//
// Submit/Abort queue for a per-stream writer thread (never blocking the
// caller; formerly they wrote on the caller's thread, serialized by a mutex (gRPC
// allows one writer and one reader at a time on a stream). A write blocks
// only while the transport's flow-control window is full; Shutdown() and a
// broken stream unblock it.
#ifndef MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_
#define MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include <deque>

#include "absl/synchronization/mutex.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"
#include "router/worker_connection.h"

namespace moeserve {
namespace router {

class GrpcWorkerConnection : public WorkerConnection {
 public:
  struct Options {
    std::chrono::milliseconds initial_backoff{50};
    std::chrono::milliseconds max_backoff{1000};
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
  using Stream = grpc::ClientReaderWriter<internal::v1::RouterMessage, internal::v1::WorkerMessage>;

  void Run();
  // One stream from open to end. Returns true if it got as far as Welcome.
  bool RunOnce();
  // Queues `message` (epoch stamped) for the writer thread if `session` is
  // the open one. Never blocks: Submit and Abort are called from gRPC
  // callback threads (OnCancel among them), where a blocking gRPC call can
  // deadlock the library.
  bool Write(uint64_t session, internal::v1::RouterMessage* message);
  // The open session's writer thread: writes queued messages in order until
  // the session ends; a failed write cancels the stream.
  void WriteLoop(Stream* stream, grpc::ClientContext* context);
  // Sleeps up to `d`; false if Shutdown() came first.
  bool SleepUnlessStopping(std::chrono::milliseconds d);
  // Logs a failure to connect, once per distinct message.
  void LogConnectFailure(const std::string& what);

  const std::string address_;
  const std::string router_id_;
  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<internal::v1::Worker::Stub> stub_;
  Listener* listener_ = nullptr;
  std::thread thread_;
  std::string last_failure_;  // reader thread only

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // of the stream being tried
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;                // set while Welcomed
  uint64_t session_ ABSL_GUARDED_BY(mu_) = 0;                    // of stream_
  uint64_t sessions_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<internal::v1::RouterMessage> outbox_ ABSL_GUARDED_BY(mu_);  // to stream_
  bool writer_stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_GRPC_WORKER_CONNECTION_H_
