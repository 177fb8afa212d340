// The Gloo Collective: host buffers over TCP, for CPU workers (and for
// tests of several ranks on one machine).
//
//   GlooOptions o;
//   o.rank = rank;  o.world_size = w;  o.host = "10.0.0.2";
//   o.prefix = absl::StrCat("epoch/", epoch, "/gloo/");
//   MOE_ASSIGN_OR_RETURN(std::unique_ptr<Collective> c, CreateGlooCollective(*store, o));
//
// Forming the group: each rank binds a TCP listener on `host` (port chosen
// by the system), advertises it in the store under `prefix`, and connects to
// every other rank; all ranks must call CreateGlooCollective with the same
// world_size and prefix (a fresh prefix per formation). It fails
// (UNAVAILABLE / DEADLINE_EXCEEDED) if the group is not complete within
// `timeout`. The store is only used while connecting.
//
// Each later call fails within `timeout` if a peer dies or stalls; after the
// first failure (or bad arguments, after which this rank is out of step with
// its peers) every call returns that first error at once. Gloo's exceptions
// never escape. Not thread-safe, like every Collective.
#ifndef MOESERVE_COLLECTIVE_GLOO_COLLECTIVE_H_
#define MOESERVE_COLLECTIVE_GLOO_COLLECTIVE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/collective.h"
#include "collective/kv_store.h"

namespace moeserve {

struct GlooOptions {
  int rank = 0;
  int world_size = 1;
  std::string host = "127.0.0.1";              // address to bind and advertise
  std::string prefix;                          // key namespace, e.g. "epoch/7/gloo/"
  absl::Duration timeout = absl::Seconds(30);  // per operation, and for connecting
};

// `store` is used only during this call.
absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(KvStore& store,
                                                                 const GlooOptions& o);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_GLOO_COLLECTIVE_H_
