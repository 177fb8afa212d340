// Collective: the communication an expert-parallel group needs each step.
//
//   std::unique_ptr<Collective> c = ...;   // local, Gloo or NCCL
//   int64_t agree[2] = {local_tokens, flags};
//   MOE_RETURN_IF_ERROR(c->AllReduceSum(agree, 2));
//   MOE_RETURN_IF_ERROR(c->AllToAll(send_counts.data(), recv_counts.data()));
//   MOE_RETURN_IF_ERROR(c->AllToAllV(send, send_counts, recv, recv_counts, row_bytes));
//
// Every rank must make the same sequence of calls (the same kinds, in the
// same order); a rank with nothing to send still calls with zero counts.
// Calls are blocking and not thread-safe: one thread drives a Collective.
//
// Buffers live in memory(): host memory for the local and Gloo collectives,
// device memory (on the rank's GPU) for NCCL.
//
// Failure: a call that cannot complete (a peer died, a timeout passed, the
// transport broke) returns UNAVAILABLE or DEADLINE_EXCEEDED within the
// collective's timeout, never hangs. After the first failure the collective
// is broken: every later call fails fast with the same error, and the group
// must be formed again (with a new epoch).
#ifndef MOESERVE_COLLECTIVE_COLLECTIVE_H_
#define MOESERVE_COLLECTIVE_COLLECTIVE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace moeserve {

enum class MemorySpace { kHost, kDevice };

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* name() const = 0;  // "local", "gloo", "nccl", ...
  virtual MemorySpace memory() const { return MemorySpace::kHost; }

  // In place: data[i] = sum over ranks of data[i], for i < n. `data` is host
  // memory for every implementation (it carries small control values).
  virtual absl::Status AllReduceSum(int64_t* data, size_t n) = 0;

  // One value per pair of ranks: recv[s] = the send[rank()] of rank s.
  // `send` and `recv` hold world_size() values each, in host memory.
  virtual absl::Status AllToAll(const int64_t* send, int64_t* recv) = 0;

  // Variable all-to-all. `send` holds send_counts[0] elements for rank 0,
  // then send_counts[1] for rank 1, ...; `recv` receives recv_counts[0]
  // elements from rank 0, then recv_counts[1] from rank 1, ... An element is
  // `elem_bytes` bytes. Both spans have world_size() entries, any may be
  // zero, and they must match pairwise (rank r's recv_counts[s] == rank s's
  // send_counts[r]; exchange them with AllToAll first). Buffers are in
  // memory(); either may be null when its total count is zero.
  virtual absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts,
                                 void* recv, absl::Span<const int64_t> recv_counts,
                                 size_t elem_bytes) = 0;

  // Returns once every rank has called Barrier.
  virtual absl::Status Barrier() = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_COLLECTIVE_H_
