// WorkerDiscovery: which workers the router connects to, from --workers.
//
//   --workers 10.0.0.5:7000,10.0.0.6:7000   a fixed list
//   --workers workers.moeserve:7000         one name: every address it
//                                           resolves to (a Kubernetes
//                                           headless Service), re-resolved
//                                           every few seconds
//
//   WorkerDiscovery discovery(*ParseWorkerList(flag), SystemResolver(),
//                             [](const std::string& a) { return MakeConnection(a); },
//                             &pool);
//   discovery.Refresh();                  // adds the first workers
//   discovery.Start(absl::Seconds(5));    // keeps following DNS
//
// In DNS mode new addresses are added as they appear; an address that is no
// longer resolved is dropped once its worker is disconnected (a terminating
// pod leaves DNS before it has drained, so a connected one is kept). A
// failed resolution keeps the current set. The resolver is a function so
// that tests can script it.
#ifndef MOESERVE_ROUTER_WORKER_DISCOVERY_H_
#define MOESERVE_ROUTER_WORKER_DISCOVERY_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/worker_pool.h"

namespace moeserve {
namespace router {

// Splits "host:port" or "[v6addr]:port" (port 0-65535); INVALID_ARGUMENT
// naming `address`.
absl::Status SplitHostPort(absl::string_view address, std::string* host, std::string* port);

// Parses a comma-separated HOST:PORT list (spaces allowed, duplicates
// dropped); INVALID_ARGUMENT naming --workers.
absl::StatusOr<std::vector<std::string>> ParseWorkerList(absl::string_view flag);

// Numeric addresses of `host`.
using Resolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string& host)>;

// getaddrinfo: the host's IPv4 addresses if it has any, else its IPv6 ones
// (so that "localhost" is one worker, not two), sorted, without duplicates.
Resolver SystemResolver();

class WorkerDiscovery {
 public:
  using Factory = std::function<std::unique_ptr<WorkerConnection>(const std::string& address)>;

  WorkerDiscovery(std::vector<std::string> workers, Resolver resolver, Factory factory,
                  WorkerPool* pool);
  ~WorkerDiscovery();  // Stop()

  // One name (not an IP literal) was given: its addresses are followed.
  bool dns_mode() const { return dns_mode_; }

  // Brings the pool's workers in line with the list / DNS. Returns the
  // resolution error, if any (the pool is then left as it was).
  absl::Status Refresh();

  // Refresh() every `period` on a thread of its own, logging failures.
  void Start(absl::Duration period);
  void Stop();

 private:
  const std::vector<std::string> workers_;
  const Resolver resolver_;
  const Factory factory_;
  WorkerPool* const pool_;
  bool dns_mode_ = false;
  std::string host_, port_;  // dns_mode_
  std::thread thread_;
  std::string last_error_;  // thread_ only

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// "host:port", with brackets for IPv6 hosts.
std::string JoinHostPort(const std::string& host, const std::string& port);

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_WORKER_DISCOVERY_H_
