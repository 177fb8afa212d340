// WorkerConnection: the router's end of one router<->worker stream
// (moeserve.internal.v1.Worker/Connect), behind an interface so that the
// router's logic can be tested against an in-process fake.
//
//   auto conn = std::make_unique<GrpcWorkerConnection>("10.0.0.7:7000", "router-a");
//   conn->Start(&listener);             // connects, retries, reconnects
//   ...listener.OnConnected(session, welcome) arrives...
//   conn->Submit(session, submit);      // the worker answers through the listener
//   conn->Abort(session, request_id);
//   conn->Shutdown();                   // no callback after this returns
//
// Contract (every implementation):
// - A *session* is one Welcomed stream. OnConnected starts a session with a
//   number never used before on this connection; OnDisconnected ends it. In
//   between, OnTokens and OnLoad carry what the worker sent on it. When a
//   session ends, the worker has freed every request submitted on it: no
//   terminal for them will ever arrive (the listener fails them itself).
// - Listener calls for one connection are never concurrent and come in the
//   order the worker sent the messages; they may come on any thread (the
//   gRPC implementation has one reader thread per connection). The
//   listener must not call Shutdown() from inside a callback.
// - Submit and Abort are thread-safe and may be called from inside listener
//   callbacks. They never block on the network and never call the listener
//   (the pool calls Submit under its own lock). They name the session they are meant for: if that session
//   has ended, Submit returns UNAVAILABLE and sends nothing (so a request
//   never lands on a newer stream that the caller does not know about), and
//   Abort does nothing. The router stamps request_id; the connection stamps
//   the epoch.
// - After connecting fails or a session ends, the connection retries on its
//   own, with backoff, until Shutdown().
#ifndef MOESERVE_ROUTER_WORKER_CONNECTION_H_
#define MOESERVE_ROUTER_WORKER_CONNECTION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "moeserve/internal/v1/worker.pb.h"

namespace moeserve {
namespace router {

class WorkerConnection {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // The worker sent Welcome (epoch = the group's epoch from now on).
    virtual void OnConnected(uint64_t session, uint64_t epoch,
                             const internal::v1::Welcome& welcome) = 0;
    virtual void OnTokens(uint64_t session, const internal::v1::TokenBatch& batch) = 0;
    virtual void OnLoad(uint64_t session, const internal::v1::LoadReport& load) = 0;
    // The session's stream broke or ended; `status` says how.
    virtual void OnDisconnected(uint64_t session, const absl::Status& status) = 0;
  };

  virtual ~WorkerConnection() = default;

  // Starts connecting; `listener` must outlive Shutdown().
  virtual void Start(Listener* listener) = 0;
  // Sends a Submit on `session`'s stream. UNAVAILABLE if that session has
  // ended or the write fails (the stream then ends: OnDisconnected follows).
  virtual absl::Status Submit(uint64_t session, const internal::v1::Submit& submit) = 0;
  // Sends an Abort on `session`'s stream, if it is still open.
  virtual void Abort(uint64_t session, uint64_t request_id) = 0;
  // Closes the stream and stops retrying; returns once no listener call is
  // running or will run. Idempotent.
  virtual void Shutdown() = 0;
  // HOST:PORT, for messages.
  virtual const std::string& address() const = 0;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_WORKER_CONNECTION_H_
