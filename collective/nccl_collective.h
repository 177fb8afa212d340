// The NCCL Collective: GPU buffers, one rank per GPU. Built only where the
// CUDA toolkit was found (the :nccl_collective target exists if HAS_CUDA).
//
//   NcclOptions o;
//   o.rank = rank;  o.world_size = w;  o.device = local_gpu;
//   o.prefix = absl::StrCat("epoch/", epoch, "/nccl/");
//   MOE_ASSIGN_OR_RETURN(std::unique_ptr<Collective> c, CreateNcclCollective(*store, o));
//
// Forming: rank 0 makes the NCCL unique id and Sets it under prefix + "id";
// the others Get it (waiting up to `timeout`); then every rank initialises a
// non-blocking communicator, polled until ready or `timeout`. FAILED_PRECONDITION
// if the machine has no GPU, INVALID_ARGUMENT for a bad rank or device.
//
// memory() is kDevice: AllToAllV's buffers are device pointers on `device`.
// AllReduceSum and AllToAll take host pointers (per Collective) and stage them
// through small device buffers. Each call runs on a stream the collective owns
// (a blocking stream: work the caller queued on the legacy default stream is
// ordered before it; other streams the caller must synchronize first) and
// returns once the transfer is complete. Completion is polled
// (cudaStreamQuery + ncclCommGetAsyncError); on an error or after `timeout`
// the communicator is aborted and the call returns UNAVAILABLE or
// DEADLINE_EXCEEDED with NCCL's own text; every later call fails the same
// way at once. Not thread-safe; the calling thread's current device is set
// to `device`.
#ifndef MOESERVE_COLLECTIVE_NCCL_COLLECTIVE_H_
#define MOESERVE_COLLECTIVE_NCCL_COLLECTIVE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/collective.h"
#include "collective/kv_store.h"

namespace moeserve {

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;                              // CUDA device index on this machine
  std::string prefix;                          // key namespace, e.g. "epoch/7/nccl/"
  absl::Duration timeout = absl::Seconds(30);  // per operation, and for forming
};

absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(KvStore& store,
                                                                 const NcclOptions& o);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_NCCL_COLLECTIVE_H_
