// HealthService: grpc.health.v1.Health (Check and Watch) on gRPC's async
// API, its calls run by a CompletionLoop: the router's replacement for
// gRPC's built-in health service, which runs on the callback API and so
// would bring the callback threads back (see completion_loop.h).
//
//   HealthService health;
//   b.RegisterService(&health);          // before BuildAndStart
//   health.Start(&loop);                 // after it
//   health.SetServingStatus("", true);   // from any thread
//   ...
//   health.Shutdown();                   // NOT_SERVING for good
//   health.StopAccepting();              // then Server::Shutdown(),
//   health.WaitForCalls(absl::Seconds(10));  // then loop.Shutdown()
//
// Statuses follow gRPC's own service: "" is the server as a whole; Check
// of a service never set is NOT_FOUND; Watch sends the status at once and
// again on each change (SERVICE_UNKNOWN while never set); after Shutdown
// everything reads NOT_SERVING and later changes are ignored.
// Thread-safe. The loop must outlive the server; the service, the loop's
// Shutdown.
#ifndef MOESERVE_ROUTER_HEALTH_SERVICE_H_
#define MOESERVE_ROUTER_HEALTH_SERVICE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "router/completion_loop.h"

namespace moeserve {
namespace router {

class HealthService final : public grpc::health::v1::Health::AsyncService {
 public:
  HealthService() = default;
  ~HealthService() override;  // after the loop's Shutdown

  void Start(CompletionLoop* loop);
  void SetServingStatus(const std::string& service, bool serving);
  void SetServingStatus(bool serving);  // every service set so far
  void Shutdown();
  // Before Server::Shutdown(): no new call is asked for, no call starts
  // another write (the loop's queue is about to close), and every Watch
  // ends with UNAVAILABLE once its write in flight is done.
  void StopAccepting();
  // After Server::Shutdown(), before the loop's: waits until every call has
  // ended (the loop must still be running). False if some had not within
  // `timeout`.
  bool WaitForCalls(absl::Duration timeout);

 private:
  class CheckCall;
  class WatchCall;
  friend class CheckCall;
  friend class WatchCall;
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  Status StatusLocked(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CallDeleted();
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CompletionLoop* loop_ = nullptr;
  mutable absl::Mutex mu_;
  std::map<std::string, bool> serving_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;  // call objects alive, unparked
  std::set<WatchCall*> watchers_ ABSL_GUARDED_BY(mu_);
  // Calls asked for but never matched (the server shut down first): they
  // get no done tag, so they are freed here, in the destructor.
  std::vector<WatchCall*> parked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_HEALTH_SERVICE_H_
