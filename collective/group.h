// Forming a rank's Collective from options: the one entry point the worker
// uses, choosing the implementation by `kind`.
//
//   GroupOptions o;
//   o.rank = rank;  o.world_size = w;  o.kind = "auto";
//   o.prefix = absl::StrCat("epoch/", epoch, "/");
//   MOE_ASSIGN_OR_RETURN(std::unique_ptr<Collective> c, CreateCollective(*store, o));
//
// kind: "local" (W must be 1), "gloo" (host buffers over TCP), "nccl" (GPU
// buffers; FAILED_PRECONDITION when this build has no CUDA or the machine no
// GPU), "auto" (local at W = 1, else gloo: the engine exchanges host
// buffers). INVALID_ARGUMENT for an unknown kind, W < 1 or a rank outside
// [0, W). The store is used only while forming the group; all ranks must use
// the same kind, world_size and prefix.
#ifndef MOESERVE_COLLECTIVE_GROUP_H_
#define MOESERVE_COLLECTIVE_GROUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/collective.h"
#include "collective/kv_store.h"

namespace moeserve {

struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  std::string kind = "auto";                   // "auto", "local", "gloo", "nccl"
  std::string host = "127.0.0.1";              // gloo: the address to bind and advertise
  std::string prefix;                          // store key namespace, e.g. "epoch/7/"
  absl::Duration timeout = absl::Seconds(30);  // per operation, and for forming
  int device = 0;                              // nccl: the CUDA device index
};

absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(KvStore& store, const GroupOptions& o);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_GROUP_H_
