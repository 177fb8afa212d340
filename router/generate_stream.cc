#include "router/generate_stream.h"

#include <string>
#include <utility>

namespace moeserve {
namespace router {
namespace {

v1::FinishReason PublicReason(internal::v1::FinishReason reason) {
  switch (reason) {
    case internal::v1::FINISH_REASON_STOP:
      return v1::FINISH_REASON_STOP;
    case internal::v1::FINISH_REASON_LENGTH:
      return v1::FINISH_REASON_LENGTH;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

grpc::Status ErrorStatus(const internal::v1::Terminal& t) {
  const bool known = t.code() > 0 && t.code() <= grpc::StatusCode::UNAUTHENTICATED;
  const grpc::StatusCode code =
      known ? static_cast<grpc::StatusCode>(t.code()) : grpc::StatusCode::UNKNOWN;
  std::string message = t.message();
  if (message.empty())
    message = "the worker ended the request with code " + std::to_string(t.code());
  return grpc::Status(code, message);
}

}  // namespace

std::shared_ptr<GenerateStream> GenerateStream::Start(WorkerPool* pool,
                                                      const Tokenizer* tokenizer,
                                                      internal::v1::Submit submit,
                                                      GenerateWriter* writer,
                                                      std::vector<std::string> stop,
                                                      RequestMetrics* metrics) {
  auto stream = std::make_shared<GenerateStream>(pool, tokenizer, submit.prompt(),
                                                 std::move(stop), metrics);
  {
    absl::MutexLock lock(&stream->mu_);
    stream->writer_ = writer;
  }
  absl::StatusOr<WorkerPool::Ticket> ticket = pool->Submit(std::move(submit), stream);
  if (ticket.ok()) {
    stream->SetTicket(*std::move(ticket));
  } else {
    absl::MutexLock lock(&stream->mu_);
    if (!stream->ended_) {
      stream->ended_ = true;
      stream->error_ = grpc::Status(static_cast<grpc::StatusCode>(ticket.status().code()),
                                    std::string(ticket.status().message()));
      stream->MaybeWriteLocked();
    }
  }
  return stream;
}

GenerateStream::GenerateStream(WorkerPool* pool, const Tokenizer* tokenizer,
                               absl::Span<const int32_t> prompt, std::vector<std::string> stop,
                               RequestMetrics* metrics)
    : pool_(pool), metrics_(metrics), prompt_tokens_(static_cast<uint32_t>(prompt.size())) {
  if (tokenizer != nullptr) decoder_.emplace(tokenizer, /*skip_special_tokens=*/true, prompt);
  if (decoder_ && !stop.empty()) stop_.emplace(std::move(stop));
}

void GenerateStream::SetTicket(WorkerPool::Ticket ticket) {
  bool abort;
  {
    absl::MutexLock lock(&mu_);
    ticket_ = ticket;
    abort = abort_wanted_;
  }
  if (abort) pool_->Abort(ticket);
}

v1::Finish GenerateStream::MakeFinishLocked(v1::FinishReason reason) {
  v1::Finish finish;
  finish.set_reason(reason);
  // Usage is what this call submitted and streamed (the worker's own counts
  // in the Terminal say the same when all is well, and no stop string cut
  // the output short).
  finish.mutable_usage()->set_prompt_tokens(prompt_tokens_);
  finish.mutable_usage()->set_completion_tokens(completion_tokens_);
  return finish;
}

void GenerateStream::AppendLogprobLocked(const TokenLogprobsList& logprobs, int i) {
  if (i >= logprobs.size()) return;
  const internal::v1::TokenLogprobs& in = logprobs[i];
  v1::TokenLogprobs* out = pending_logprobs_.Add();
  out->set_logprob(in.logprob());
  out->mutable_top()->Reserve(in.top_size());
  for (const auto& a : in.top()) {
    v1::TokenLogprobs::Alternative* b = out->add_top();
    b->set_id(a.id());
    b->set_logprob(a.logprob());
  }
}

bool GenerateStream::MatchStopsLocked(absl::Span<const int32_t> token_ids,
                                      const TokenLogprobsList& logprobs) {
  for (size_t i = 0; i < token_ids.size(); ++i) {
    const int32_t id = token_ids[i];
    pending_.push_back(id);
    AppendLogprobLocked(logprobs, static_cast<int>(i));
    ++completion_tokens_;
    pending_text_ += stop_->Push(decoder_->Append(id));
    if (stop_->stopped()) return true;
  }
  return false;
}

void GenerateStream::OnOutput(absl::Span<const int32_t> token_ids,
                              const internal::v1::Terminal* terminal,
                              const TokenLogprobsList& logprobs) {
  std::optional<WorkerPool::Ticket> abort;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    if (metrics_ != nullptr && !token_ids.empty()) {
      const auto now = std::chrono::steady_clock::now();
      if (!last_token_) {
        metrics_->OnFirstToken(std::chrono::duration<double>(now - start_).count());
      } else {
        metrics_->OnTokens(static_cast<int>(token_ids.size()),
                           std::chrono::duration<double>(now - *last_token_).count());
      }
      last_token_ = now;
    }
    if (stop_) {
      if (MatchStopsLocked(token_ids, logprobs)) {
        ended_ = true;
        finish_ = MakeFinishLocked(v1::FINISH_REASON_STOP);
        // The worker would decode on until max_tokens: free the request
        // there now, as a cancel does (unless this very batch ended it).
        if (terminal == nullptr) {
          if (ticket_) {
            abort = ticket_;
          } else {
            abort_wanted_ = true;
          }
        }
        terminal = nullptr;  // the outcome is decided
      }
    } else {
      pending_.insert(pending_.end(), token_ids.begin(), token_ids.end());
      for (size_t i = 0; i < token_ids.size(); ++i) {
        AppendLogprobLocked(logprobs, static_cast<int>(i));
      }
      completion_tokens_ += token_ids.size();
    }
    if (terminal != nullptr) {
      ended_ = true;
      if (terminal->code() == 0) {
        v1::FinishReason reason = PublicReason(terminal->finish_reason());
        if (stop_) {
          // The decoder's last held-back bytes may still complete a stop
          // string; otherwise whatever was held back goes out now.
          pending_text_ += stop_->Push(decoder_->Flush());
          if (stop_->stopped()) {
            reason = v1::FINISH_REASON_STOP;
          } else {
            pending_text_ += stop_->Flush();
          }
        }
        finish_ = MakeFinishLocked(reason);
      } else {
        error_ = ErrorStatus(*terminal);
      }
    }
    MaybeWriteLocked();
  }
  if (abort) pool_->Abort(*abort);
}

void GenerateStream::MaybeWriteLocked() {
  if (writer_ == nullptr || write_in_flight_) return;
  if (error_) {
    RecordEndLocked();
    GenerateWriter* writer = std::exchange(writer_, nullptr);
    writer->Finish(*error_);
    return;
  }
  if (pending_.empty() && pending_text_.empty() && !finish_) return;
  out_.Clear();
  out_.mutable_token_ids()->Add(pending_.begin(), pending_.end());
  out_.mutable_logprobs()->Swap(&pending_logprobs_);  // pending_logprobs_ is left empty
  if (stop_) {
    out_.set_text(std::move(pending_text_));  // decoded and flushed already
    pending_text_.clear();
  } else if (decoder_) {
    std::string text;
    for (int32_t id : pending_) text += decoder_->Append(id);
    if (finish_) text += decoder_->Flush();
    out_.set_text(std::move(text));
  }
  pending_.clear();
  if (finish_) {
    *out_.mutable_finish() = *finish_;
    RecordEndLocked();
    GenerateWriter* writer = std::exchange(writer_, nullptr);
    writer->WriteAndFinish(out_, grpc::Status::OK);
    return;
  }
  write_in_flight_ = true;
  writer_->Write(out_);
}

void GenerateStream::RecordEndLocked() {
  if (metrics_ == nullptr) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (error_ && error_->error_code() == grpc::StatusCode::CANCELLED) {
    metrics_->OnFinished("abort", prompt_tokens_, completion_tokens_, seconds);
  } else if (error_) {
    metrics_->OnError(
        absl::StatusCodeToString(static_cast<absl::StatusCode>(error_->error_code())));
  } else if (finish_) {
    metrics_->OnFinished(finish_->reason() == v1::FINISH_REASON_STOP ? "stop" : "length",
                         prompt_tokens_, completion_tokens_, seconds);
  }
}

bool GenerateStream::CancelLocked(const char* why) {
  const bool tell_worker = !ended_;
  ended_ = true;
  // Whatever was still to be sent (even a finish) cannot reach the client.
  if (writer_ != nullptr) error_ = grpc::Status(grpc::StatusCode::CANCELLED, why);
  if (tell_worker && !ticket_) abort_wanted_ = true;
  MaybeWriteLocked();
  return tell_worker && ticket_.has_value();
}

void GenerateStream::OnWriteDone(bool ok) {
  std::optional<WorkerPool::Ticket> abort;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok) {
      if (CancelLocked("the response stream broke")) abort = ticket_;
    } else {
      MaybeWriteLocked();
    }
  }
  if (abort) pool_->Abort(*abort);
}

void GenerateStream::OnCancel() {
  std::optional<WorkerPool::Ticket> abort;
  {
    absl::MutexLock lock(&mu_);
    if (CancelLocked("the call was cancelled")) abort = ticket_;
  }
  if (abort) pool_->Abort(*abort);
}

}  // namespace router
}  // namespace moeserve
