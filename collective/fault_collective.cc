#include "collective/fault_collective.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moeserve {

absl::Status FaultInjectingCollective::Before(const char* op) {
  ++calls_;
  if (!broken_.ok()) return broken_;
  if (options_.delay > absl::ZeroDuration()) absl::SleepFor(options_.delay);
  if (calls_ == options_.fail_call) {
    broken_ = absl::UnavailableError(
        absl::StrCat("injected fault: ", op, " (call ", calls_, ") on rank ", rank()));
  }
  return broken_;
}

absl::Status FaultInjectingCollective::AllReduceSum(int64_t* data, size_t n) {
  MOE_RETURN_IF_ERROR(Before("AllReduceSum"));
  return inner_->AllReduceSum(data, n);
}

absl::Status FaultInjectingCollective::AllToAll(const int64_t* send, int64_t* recv) {
  MOE_RETURN_IF_ERROR(Before("AllToAll"));
  return inner_->AllToAll(send, recv);
}

absl::Status FaultInjectingCollective::AllToAllV(const void* send,
                                                 absl::Span<const int64_t> send_counts, void* recv,
                                                 absl::Span<const int64_t> recv_counts,
                                                 size_t elem_bytes) {
  MOE_RETURN_IF_ERROR(Before("AllToAllV"));
  return inner_->AllToAllV(send, send_counts, recv, recv_counts, elem_bytes);
}

absl::Status FaultInjectingCollective::Barrier() {
  MOE_RETURN_IF_ERROR(Before("Barrier"));
  return inner_->Barrier();
}

}  // namespace moeserve
