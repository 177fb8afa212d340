// FaultInjectingCollective: wraps another Collective for tests, failing a
// chosen call and/or delaying every call; everything else is forwarded.
//
//   FaultOptions f;
//   f.fail_call = 3;                       // the 3rd call (counting from 1)
//   f.delay = absl::Milliseconds(10);      // before each forwarded call
//   FaultInjectingCollective c(std::move(inner), f);   // or a borrowed Collective*
//
// Calls are counted across all four operations. The failing call returns
// UNAVAILABLE "injected fault ..." without reaching the wrapped collective,
// and, like a real failure, breaks this collective: every later call returns
// the same error. Not thread-safe, like every Collective.
#ifndef MOESERVE_COLLECTIVE_FAULT_COLLECTIVE_H_
#define MOESERVE_COLLECTIVE_FAULT_COLLECTIVE_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "collective/collective.h"

namespace moeserve {

struct FaultOptions {
  int64_t fail_call = 0;                        // 1-based; 0: never fail
  absl::Duration delay = absl::ZeroDuration();  // slept before each call
};

class FaultInjectingCollective final : public Collective {
 public:
  // Owns `inner`.
  FaultInjectingCollective(std::unique_ptr<Collective> inner, FaultOptions options)
      : owned_(std::move(inner)), inner_(owned_.get()), options_(options) {}
  // Borrows `inner`, which must outlive this object.
  FaultInjectingCollective(Collective* inner, FaultOptions options)
      : inner_(inner), options_(options) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  const char* name() const override { return inner_->name(); }
  MemorySpace memory() const override { return inner_->memory(); }

  absl::Status AllReduceSum(int64_t* data, size_t n) override;
  absl::Status AllToAll(const int64_t* send, int64_t* recv) override;
  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, size_t elem_bytes) override;
  absl::Status Barrier() override;

  // Calls made so far, the injected one included.
  int64_t calls() const { return calls_; }

 private:
  // Counts the call, sleeps, and returns the injected (or earlier) error.
  absl::Status Before(const char* op);

  std::unique_ptr<Collective> owned_;  // null when borrowed
  Collective* inner_;
  const FaultOptions options_;
  int64_t calls_ = 0;
  absl::Status broken_;
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_FAULT_COLLECTIVE_H_
