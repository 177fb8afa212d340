// GenerateStream: one Generate call in flight. It is the request's
// RequestSink (the worker pool pushes tokens into it from the worker
// stream's reader thread) and the state behind the call's
// grpc::ServerWriteReactor (gRPC's callback threads call OnWriteDone and
// OnCancel on it). No thread of its own and no thread hop per token:
//
//   reader thread:  OnOutput(tokens) -> append to pending; if no write is in
//                   flight, detokenize the pending tokens and StartWrite.
//   gRPC thread:    OnWriteDone -> if tokens arrived meanwhile, send them
//                   all as one message (coalescing); else go idle.
//   terminal:       OK -> the last message carries text, ids and finish
//                   (StartWriteAndFinish); error -> Finish(status), pending
//                   tokens dropped.
//   OnCancel:       (client cancel, deadline, write failure) -> Abort the
//                   request on its worker at once, Finish(CANCELLED); any
//                   later output for it is ignored.
//
// Exactly one Finish per call. The reactor holds a shared_ptr to the stream
// and the pool holds another until the request's terminal or abort, so
// neither side ever touches freed state; the stream drops its reactor
// pointer as it calls Finish, after which gRPC may delete the reactor.
#ifndef MOESERVE_ROUTER_GENERATE_STREAM_H_
#define MOESERVE_ROUTER_GENERATE_STREAM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "moeserve/v1/inference.pb.h"
#include "router/worker_pool.h"
#include "tokenizer/incremental_decoder.h"

namespace moeserve {
namespace router {

using GenerateReactor = grpc::ServerWriteReactor<v1::GenerateResponse>;

class GenerateStream : public RequestSink {
 public:
  // Places `submit` on a worker through `pool` and returns the reactor for
  // gRPC to drive (it deletes itself in OnDone). `tokenizer` may be null
  // (then responses carry ids only); it and `pool` must outlive the call.
  static GenerateReactor* Start(WorkerPool* pool, const Tokenizer* tokenizer,
                                internal::v1::Submit submit);

  // A reactor that only finishes with `status` (for rejected requests).
  static GenerateReactor* Reject(const grpc::Status& status);

  GenerateStream(WorkerPool* pool, const Tokenizer* tokenizer, absl::Span<const int32_t> prompt);

  // RequestSink (the pool's side).
  void OnOutput(absl::Span<const int32_t> token_ids,
                const internal::v1::Terminal* terminal) override;

  // The reactor's side.
  void OnWriteDone(bool ok);
  void OnCancel();

 private:
  // Starts the next write or the Finish, if one is due and none is running.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the call as cancelled; true if the worker must be told.
  bool CancelLocked(const char* why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetTicket(WorkerPool::Ticket ticket);

  WorkerPool* const pool_;
  const uint32_t prompt_tokens_;
  absl::Mutex mu_;
  uint32_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;  // null once finished
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the outcome is decided
  std::optional<grpc::Status> error_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Finish> finish_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> pending_ ABSL_GUARDED_BY(mu_);
  std::optional<IncrementalDecoder> decoder_ ABSL_GUARDED_BY(mu_);
  v1::GenerateResponse out_ ABSL_GUARDED_BY(mu_);  // the message being written
  std::optional<WorkerPool::Ticket> ticket_ ABSL_GUARDED_BY(mu_);
  bool abort_wanted_ ABSL_GUARDED_BY(mu_) = false;  // cancelled before the ticket was known
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_GENERATE_STREAM_H_
