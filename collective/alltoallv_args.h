// Argument checks shared by the Collective implementations' AllToAllV
// (internal to collective/).
#ifndef MOESERVE_COLLECTIVE_ALLTOALLV_ARGS_H_
#define MOESERVE_COLLECTIVE_ALLTOALLV_ARGS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace moeserve {

// Totals of a valid AllToAllV call, in bytes.
struct AllToAllVBytes {
  size_t send = 0;
  size_t recv = 0;
};

// INVALID_ARGUMENT unless: both spans have world_size entries, none
// negative, elem_bytes > 0, this rank's send and recv counts for itself
// agree, and a buffer is non-null where its total is non-zero. Fills *bytes.
absl::Status CheckAllToAllVArgs(int rank, int world_size, const void* send,
                                absl::Span<const int64_t> send_counts, const void* recv,
                                absl::Span<const int64_t> recv_counts, size_t elem_bytes,
                                AllToAllVBytes* bytes);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_ALLTOALLV_ARGS_H_
