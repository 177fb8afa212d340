#include "collective/alltoallv_args.h"

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace {

absl::Status Total(const char* which, absl::Span<const int64_t> counts, int world_size,
                   size_t elem_bytes, size_t* total) {
  if (static_cast<int>(counts.size()) != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAllV: ", counts.size(), " ", which,
                                                   " counts for a world of ", world_size));
  }
  *total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllToAllV: ", which, "_counts[", r, "] = ", counts[r], " is negative"));
    }
    *total += static_cast<size_t>(counts[r]) * elem_bytes;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAllToAllVArgs(int rank, int world_size, const void* send,
                                absl::Span<const int64_t> send_counts, const void* recv,
                                absl::Span<const int64_t> recv_counts, size_t elem_bytes,
                                AllToAllVBytes* bytes) {
  if (elem_bytes == 0) return absl::InvalidArgumentError("AllToAllV: elem_bytes is 0");
  absl::Status s = Total("send", send_counts, world_size, elem_bytes, &bytes->send);
  if (!s.ok()) return s;
  s = Total("recv", recv_counts, world_size, elem_bytes, &bytes->recv);
  if (!s.ok()) return s;
  if (send_counts[rank] != recv_counts[rank]) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllToAllV: rank ", rank, " sends ", send_counts[rank],
                     " elements to itself but expects ", recv_counts[rank]));
  }
  if ((send == nullptr && bytes->send > 0) || (recv == nullptr && bytes->recv > 0)) {
    return absl::InvalidArgumentError("AllToAllV: null buffer with a non-zero total count");
  }
  return absl::OkStatus();
}

}  // namespace moeserve
