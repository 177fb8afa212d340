// LocalCollective: the Collective of a one-rank group (W = 1). Every call is
// a local copy or a no-op; nothing can fail except bad arguments
// (INVALID_ARGUMENT), which do not break it.
//
//   std::unique_ptr<Collective> c = std::make_unique<LocalCollective>();
//   MOE_RETURN_IF_ERROR(c->AllToAllV(send, {n}, recv, {n}, row_bytes));  // copies n rows
#ifndef MOESERVE_COLLECTIVE_LOCAL_COLLECTIVE_H_
#define MOESERVE_COLLECTIVE_LOCAL_COLLECTIVE_H_

#include "collective/collective.h"

namespace moeserve {

class LocalCollective final : public Collective {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const char* name() const override { return "local"; }

  absl::Status AllReduceSum(int64_t* data, size_t n) override;
  absl::Status AllToAll(const int64_t* send, int64_t* recv) override;
  // send_counts and recv_counts must be {n} and {n}; copies n * elem_bytes.
  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, size_t elem_bytes) override;
  absl::Status Barrier() override { return absl::OkStatus(); }
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_LOCAL_COLLECTIVE_H_
