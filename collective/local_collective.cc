#include "collective/local_collective.h"

#include <cstring>

#include "collective/alltoallv_args.h"

namespace moeserve {

absl::Status LocalCollective::AllReduceSum(int64_t* data, size_t n) {
  if (data == nullptr && n > 0) return absl::InvalidArgumentError("AllReduceSum: null data");
  return absl::OkStatus();  // the sum over one rank
}

absl::Status LocalCollective::AllToAll(const int64_t* send, int64_t* recv) {
  if (send == nullptr || recv == nullptr)
    return absl::InvalidArgumentError("AllToAll: null buffer");
  recv[0] = send[0];
  return absl::OkStatus();
}

absl::Status LocalCollective::AllToAllV(const void* send, absl::Span<const int64_t> send_counts,
                                        void* recv, absl::Span<const int64_t> recv_counts,
                                        size_t elem_bytes) {
  AllToAllVBytes bytes;
  absl::Status s =
      CheckAllToAllVArgs(0, 1, send, send_counts, recv, recv_counts, elem_bytes, &bytes);
  if (!s.ok()) return s;
  if (bytes.send == 0) return absl::OkStatus();
  if (send != recv) std::memmove(recv, send, bytes.send);
  return absl::OkStatus();
}

}  // namespace moeserve
