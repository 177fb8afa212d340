// WorkerPool: the router's view of the worker group. It owns one
// WorkerConnection per worker, places each request on the connected worker
// with the least outstanding work (router/placement.h), and routes what the
// workers send back to each request's RequestSink.
//
//   WorkerPool pool([](const WorkerPool::State& s) { health.Set(s.serving()); });
//   pool.AddWorker(std::make_unique<GrpcWorkerConnection>(addr, "router-1"));
//   auto ticket = pool.Submit(std::move(submit), sink);  // sink gets the output
//   pool.Abort(*ticket);                                  // client went away
//
// Lifetimes and threads: request bookkeeping sits under one mutex held only
// for map lookups and for queueing a Submit on its connection (so that a
// request's Abort can never reach the worker before its Submit; the
// connection's Submit must not block or call the pool); sinks are called
// outside it, on the connection's reader
// thread (tokens, terminals, worker loss) or on the caller's thread. The
// pool keeps a shared_ptr to each sink until its terminal has been
// delivered or it is aborted, so a sink never dies while it is being called.
// Every request accepted by Submit gets exactly one terminal through its
// sink, unless Abort() removes it first:
//   - the worker's Terminal (OK or an error code), or
//   - UNAVAILABLE "worker HOST:PORT (rank R) lost: ..." when its stream ends,
//   - UNAVAILABLE "the router is shutting down" from Shutdown().
//
// Transparent retry: a request that has produced no token yet when its
// worker is lost, or when its worker ends it with UNAVAILABLE (its group
// broke or is stopping), is not ended: it waits, and is placed again, under
// the same request id, once every worker is connected (the group has
// re-formed). It ends with UNAVAILABLE, naming the first failure, when that
// takes longer than Options::retry_timeout or it failed max_attempts times.
// A request that has streamed tokens is never retried (its client has seen
// them). A retry thread places waiting requests and ends expired ones.
#ifndef MOESERVE_ROUTER_WORKER_POOL_H_
#define MOESERVE_ROUTER_WORKER_POOL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "router/placement.h"
#include "router/worker_connection.h"

namespace moeserve {
namespace router {

struct WorkerSlot;

using TokenLogprobsList = google::protobuf::RepeatedPtrField<internal::v1::TokenLogprobs>;

// Where one request's output goes.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // New tokens (possibly none) and, on the last call only, the terminal.
  // `logprobs`: one per token when the request asked for log-probs
  // (Sampling.logprobs >= 1), else empty. Calls for one request are never
  // concurrent.
  virtual void OnOutput(absl::Span<const int32_t> token_ids,
                        const internal::v1::Terminal* terminal,
                        const TokenLogprobsList& logprobs) = 0;
};

// One request placed on a worker (guarded by the pool's mutex).
struct PlacedRequest {
  std::shared_ptr<RequestSink> sink;
  // What to place again if the group is lost before the first token (null
  // once a token came, or when retry is off).
  std::shared_ptr<const internal::v1::Submit> submit;
  int attempt = 1;
};

class WorkerPool {
 public:
  struct State {
    int workers = 0;     // known addresses
    int connected = 0;   // of which Welcomed
    int world_size = 0;  // from the latest Welcome (0 before any)
    // Every known worker is connected, there is at least one, and they are
    // at least the group's world size (a worker that DNS does not list yet
    // is missing too).
    bool serving() const {
      return workers > 0 && connected == workers && connected >= world_size;
    }
    bool operator==(const State& o) const {
      return workers == o.workers && connected == o.connected && world_size == o.world_size;
    }
    bool operator!=(const State& o) const { return !(*this == o); }
  };
  // Called whenever State changes, one call at a time, latest state last;
  // from whichever thread caused the change. Must not call back into the
  // pool except state().
  using StateCallback = std::function<void(const State&)>;

  // What Abort needs to find a request again.
  struct Ticket {
    uint64_t request_id = 0;
    std::shared_ptr<WorkerSlot> slot;
  };

  struct Options {
    // How long a request lost with its group waits for the group to come
    // back (0: no retry).
    std::chrono::milliseconds retry_timeout{30000};
    int max_attempts = 3;  // placements of one request, the first included
  };

  explicit WorkerPool(StateCallback on_change = nullptr);
  WorkerPool(StateCallback on_change, Options options);
  ~WorkerPool();  // Shutdown()

  // Takes `connection` and starts it. Addresses are unique: a second
  // connection to a known address is dropped.
  void AddWorker(std::unique_ptr<WorkerConnection> connection);
  // Shuts down and forgets the worker at `address` (its requests, if any,
  // end with UNAVAILABLE).
  void RemoveWorker(const std::string& address);
  std::vector<std::string> addresses() const;
  // Whether the worker at `address` is known and Welcomed.
  bool connected(const std::string& address) const;

  // Places `submit` (its request_id is assigned here) on the least-loaded
  // connected worker. OK: `sink` gets exactly one terminal unless Abort()
  // comes first (it may have got it already). A worker whose stream has
  // just ended, before the pool heard of it, still takes the request: the
  // loss then retries or ends it like any other on that stream. Error
  // (UNAVAILABLE when no worker is connected): `sink` is never called.
  absl::StatusOr<Ticket> Submit(internal::v1::Submit submit, std::shared_ptr<RequestSink> sink);
  // Forgets the request (its sink gets nothing more) and, if it was still
  // running, sends Abort to its worker. Any later output for it is dropped.
  void Abort(const Ticket& ticket);

  // Closes every connection; requests still running end with UNAVAILABLE.
  void Shutdown();

  State state() const;
  size_t active_requests() const;  // requests whose terminal is still due (waiting ones too)
  uint64_t retried_requests() const;  // placements after a lost group, so far

 private:
  friend struct WorkerSlot;
  void OnConnected(WorkerSlot* slot, uint64_t session, uint64_t epoch,
                   const internal::v1::Welcome& welcome);
  void OnTokens(WorkerSlot* slot, uint64_t session, const internal::v1::TokenBatch& batch);
  void OnLoad(WorkerSlot* slot, uint64_t session, const internal::v1::LoadReport& load);
  void OnDisconnected(WorkerSlot* slot, uint64_t session, const absl::Status& status);
  // Ends every request of `slot` with UNAVAILABLE `message`; with `retry`,
  // those without a token yet wait for the group instead.
  void FailAll(WorkerSlot* slot, const std::string& message, bool retry);
  void NotifyChange();
  // A request waiting for the group.
  struct Waiting;
  State StateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a request whose group broke waits to be placed again: it has
  // produced no token (its Submit is kept), has attempts left, and the pool
  // is not shutting down.
  bool RetriableLocked(const PlacedRequest& placed) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `placed` to the waiting requests, its first failure `why`.
  void WaitLocked(uint64_t request_id, PlacedRequest&& placed, std::string why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetryLoop();
  // Places a request on the least-loaded eligible worker: the slot and
  // session to send it on; or null, leaving `placed` as it was, when no
  // worker is connected and accepting requests.
  std::shared_ptr<WorkerSlot> PlaceLocked(uint64_t request_id, PlacedRequest&& placed,
                                          size_t prompt_size, uint32_t max_tokens,
                                          uint64_t* session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StateCallback on_change_;
  absl::Mutex notify_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  State last_notified_ ABSL_GUARDED_BY(notify_mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<WorkerSlot>> slots_ ABSL_GUARDED_BY(mu_);
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  int world_size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Waiting>> waiting_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t retried_ ABSL_GUARDED_BY(mu_) = 0;
  absl::CondVar retry_cv_;
  std::thread retry_thread_;
};

// One worker: its connection and the pool's bookkeeping for it (guarded by
// the pool's mutex). Public only so that Ticket can name it.
struct WorkerSlot : public WorkerConnection::Listener {
  WorkerPool* pool = nullptr;
  std::unique_ptr<WorkerConnection> connection;
  std::string address;

  // Guarded by pool->mu_.
  uint64_t session = 0;  // 0: not connected
  uint32_t rank = 0;
  WorkerLoad load;
  absl::flat_hash_map<uint64_t, PlacedRequest> requests;

  void OnConnected(uint64_t s, uint64_t epoch, const internal::v1::Welcome& w) override {
    pool->OnConnected(this, s, epoch, w);
  }
  void OnTokens(uint64_t s, const internal::v1::TokenBatch& b) override {
    pool->OnTokens(this, s, b);
  }
  void OnLoad(uint64_t s, const internal::v1::LoadReport& l) override { pool->OnLoad(this, s, l); }
  void OnDisconnected(uint64_t s, const absl::Status& status) override {
    pool->OnDisconnected(this, s, status);
  }
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_WORKER_POOL_H_
