// GenerateStream: one Generate call in flight. It is the request's
// RequestSink (the worker pool pushes tokens into it from the worker
// stream's reads) and the state behind the call's GenerateWriter (the call
// reports OnWriteDone and OnCancel to it). No thread of its own and no
// thread hop per token:
//
//   worker read:    OnOutput(tokens, logprobs) -> append to pending; if no write is in
//                   flight, detokenize the pending tokens and Write.
//   write done:     OnWriteDone -> if tokens arrived meanwhile, send them
//                   all as one message (coalescing); else go idle.
//   terminal:       OK -> the last message carries text, ids and finish
//                   (WriteAndFinish); error -> Finish(status), pending
//                   tokens dropped.
//   OnCancel:       (client cancel, deadline, write failure) -> Abort the
//                   request on its worker at once, Finish(CANCELLED); any
//                   later output for it is ignored.
//
// With stop strings (GenerateRequest.stop) the reader thread detokenizes
// each id as it arrives and runs the text through a StopMatcher, so that
// the id that completes a stop string is known at once: the call then ends
// OK with finish reason STOP (the ids up to and including that one, the
// text before the stop string), and the request is aborted on its worker
// the way a cancel is. Text that may still begin a stop string is held back
// (its ids are sent) until it can no longer match, or until the end.
//
// Log-probs (SamplingParams.logprobs >= 1) travel with their ids: pending
// keeps them parallel, coalesced chunks carry both, and the ids a stop
// string drops take their log-probs with them.
//
// Exactly one Finish per call. The call holds a shared_ptr to the stream
// and the pool holds another until the request's terminal or abort, so
// neither side ever touches freed state; the stream drops its writer
// pointer as it calls Finish, after which the call may be deleted.
#ifndef MOESERVE_ROUTER_GENERATE_STREAM_H_
#define MOESERVE_ROUTER_GENERATE_STREAM_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/status.h"
#include "moeserve/v1/inference.pb.h"
#include "router/request_metrics.h"
#include "router/stop_matcher.h"
#include "router/worker_pool.h"
#include "tokenizer/incremental_decoder.h"

namespace moeserve {
namespace router {

// The sending side of one Generate call (InferenceService's async call).
// The stream calls it under its own lock, one operation at a time: after
// Write, nothing until the call reports OnWriteDone; after WriteAndFinish or
// Finish, nothing ever again. An implementation must not call back into
// the stream from inside these (gRPC's async ops never run a tag inline).
class GenerateWriter {
 public:
  virtual ~GenerateWriter() = default;
  virtual void Write(const v1::GenerateResponse& message) = 0;
  virtual void WriteAndFinish(const v1::GenerateResponse& message, const grpc::Status& status) = 0;
  virtual void Finish(const grpc::Status& status) = 0;
};

class GenerateStream : public RequestSink {
 public:
  // Places `submit` on a worker through `pool` and returns the stream,
  // which sends through `writer` (it must stay valid until the stream calls
  // its Finish or WriteAndFinish; the caller keeps the stream alive as long
  // as it reports to it). `tokenizer` may be null (then responses carry ids
  // only, and `stop` must be empty); it and `pool` must outlive the call.
  // `stop`: the request's stop strings (checked by RequestBuilder:
  // non-empty). `metrics` (optional) hears the call's first token, token
  // gaps and end.
  static std::shared_ptr<GenerateStream> Start(WorkerPool* pool, const Tokenizer* tokenizer,
                                               internal::v1::Submit submit, GenerateWriter* writer,
                                               std::vector<std::string> stop = {},
                                               RequestMetrics* metrics = nullptr);

  GenerateStream(WorkerPool* pool, const Tokenizer* tokenizer, absl::Span<const int32_t> prompt,
                 std::vector<std::string> stop = {}, RequestMetrics* metrics = nullptr);

  // RequestSink (the pool's side).
  void OnOutput(absl::Span<const int32_t> token_ids, const internal::v1::Terminal* terminal,
                const TokenLogprobsList& logprobs) override;

  // The call's side: its Write finished; the client cancelled (or the
  // deadline passed, or the connection broke).
  void OnWriteDone(bool ok);
  void OnCancel();

 private:
  // Starts the next write or the Finish, if one is due and none is running.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the call as cancelled; true if the worker must be told.
  bool CancelLocked(const char* why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stop-string mode: detokenizes `token_ids` into pending_text_ one id at a
  // time; true if one completed a stop string (ids after it are dropped).
  // `logprobs` (one per id, or empty) follow their ids.
  bool MatchStopsLocked(absl::Span<const int32_t> token_ids, const TokenLogprobsList& logprobs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the public form of logprobs[i] to pending_logprobs_, if there is one.
  void AppendLogprobLocked(const TokenLogprobsList& logprobs, int i)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The finish message for an OK end.
  v1::Finish MakeFinishLocked(v1::FinishReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetTicket(WorkerPool::Ticket ticket);

  // Reports the call's end to metrics_, once (as the reactor is let go).
  void RecordEndLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WorkerPool* const pool_;
  RequestMetrics* const metrics_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> last_token_ ABSL_GUARDED_BY(mu_);
  const uint32_t prompt_tokens_;
  absl::Mutex mu_;
  uint32_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  GenerateWriter* writer_ ABSL_GUARDED_BY(mu_) = nullptr;  // null once finished
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the outcome is decided
  std::optional<grpc::Status> error_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Finish> finish_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> pending_ ABSL_GUARDED_BY(mu_);
  // pending_'s log-probs, parallel to it (empty when none were asked for).
  google::protobuf::RepeatedPtrField<v1::TokenLogprobs> pending_logprobs_ ABSL_GUARDED_BY(mu_);
  std::optional<IncrementalDecoder> decoder_ ABSL_GUARDED_BY(mu_);
  // Set when the request has stop strings; then the text of pending_ is
  // decoded already, into pending_text_.
  std::optional<StopMatcher> stop_ ABSL_GUARDED_BY(mu_);
  std::string pending_text_ ABSL_GUARDED_BY(mu_);
  v1::GenerateResponse out_ ABSL_GUARDED_BY(mu_);  // the message being written
  std::optional<WorkerPool::Ticket> ticket_ ABSL_GUARDED_BY(mu_);
  bool abort_wanted_ ABSL_GUARDED_BY(mu_) = false;  // cancelled before the ticket was known
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_GENERATE_STREAM_H_
