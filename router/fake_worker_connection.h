// FakeWorkerConnection: an in-process WorkerConnection for tests. Nothing
// happens on its own: the test plays the worker, calling Connect(),
// SendTokens(), Finish(), SendLoad(), Disconnect(), each of which calls the
// listener on the test's thread (calls are serialized, as the contract
// requires), and inspects what the router sent with submits()/aborts().
//
//   FakeWorkerConnection worker("w0:1");
//   pool.AddWorker(&worker);           // the pool calls Start()
//   worker.Connect(/*rank=*/0, /*world_size=*/1);
//   ASSERT_TRUE(worker.WaitForSubmits(1));
//   worker.Finish(worker.submits()[0].request_id(), {5, 6}, STOP);
#ifndef MOESERVE_ROUTER_FAKE_WORKER_CONNECTION_H_
#define MOESERVE_ROUTER_FAKE_WORKER_CONNECTION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/worker_connection.h"

namespace moeserve {
namespace router {

class FakeWorkerConnection : public WorkerConnection {
 public:
  explicit FakeWorkerConnection(std::string address) : address_(std::move(address)) {}

  // WorkerConnection.
  void Start(Listener* listener) override;
  absl::Status Submit(uint64_t session, const internal::v1::Submit& submit) override;
  void Abort(uint64_t session, uint64_t request_id) override;
  void Shutdown() override;
  const std::string& address() const override { return address_; }

  // The worker's side. Each returns after the listener has run.
  // Sends Welcome; returns the new session.
  uint64_t Connect(uint32_t rank, uint32_t world_size, uint64_t epoch = 1);
  void SendTokens(uint64_t request_id, const std::vector<int32_t>& ids);
  // Tokens plus an OK Terminal.
  void Finish(uint64_t request_id, const std::vector<int32_t>& ids,
              internal::v1::FinishReason reason, uint32_t prompt_tokens,
              uint32_t completion_tokens);
  // An error Terminal (`code` a google.rpc code).
  void Fail(uint64_t request_id, int code, const std::string& message);
  void SendBatch(const internal::v1::TokenBatch& batch);
  void SendLoad(uint64_t pending_tokens, uint32_t active_requests = 0, bool draining = false);
  // Ends the session (no-op when not connected).
  void Disconnect(const absl::Status& why);
  // Ends the session on the connection's side only, as when a stream has
  // broken and its OnDisconnected is still on its way: Submit and Abort
  // fail from now on; the next Disconnect() reports the loss.
  void EndSessionUnreported();

  // Runs at the start of every Submit, before it is recorded, on the
  // caller's thread (and under whatever locks the caller holds).
  void SetSubmitHook(std::function<void(const internal::v1::Submit&)> hook);

  // What the router sent, in order.
  std::vector<internal::v1::Submit> submits() const;
  std::vector<uint64_t> aborts() const;
  // Both, in the order they arrived: "submit ID" and "abort ID".
  std::vector<std::string> sent() const;
  bool WaitForSubmits(size_t n, absl::Duration timeout = absl::Seconds(10)) const;
  bool WaitForAborts(size_t n, absl::Duration timeout = absl::Seconds(10)) const;
  bool connected() const;
  bool started() const;
  bool shut_down() const;

 private:
  const std::string address_;
  absl::Mutex deliver_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serializes listener calls
  mutable absl::Mutex mu_;
  Listener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t session_ ABSL_GUARDED_BY(mu_) = 0;  // 0: not connected
  uint64_t ended_unreported_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sessions_started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<internal::v1::Submit> submits_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> aborts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> sent_ ABSL_GUARDED_BY(mu_);
  std::function<void(const internal::v1::Submit&)> submit_hook_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_FAKE_WORKER_CONNECTION_H_
