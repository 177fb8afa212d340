#include "worker/stream_sink.h"

#include <utility>

namespace moeserve {

namespace v1 = internal::v1;

namespace {

v1::FinishReason ToProto(FinishReason r) {
  return r == FinishReason::kStop ? v1::FINISH_REASON_STOP : v1::FINISH_REASON_LENGTH;
}

void FillTerminal(const RequestUpdate& u, v1::Terminal* t) {
  t->set_code(static_cast<int32_t>(u.status.code()));
  t->set_message(std::string(u.status.message()));
  if (u.status.ok()) t->set_finish_reason(ToProto(u.finish_reason));
  t->set_prompt_tokens(u.prompt_tokens);
  t->set_completion_tokens(u.completion_tokens);
}

}  // namespace

StreamSink::StreamSink(uint64_t epoch, Stream* stream)
    : epoch_(epoch), stream_(stream), writer_([this] { WriteLoop(); }) {}

StreamSink::~StreamSink() { Close(); }

void StreamSink::Deliver(std::vector<RequestUpdate> updates) {
  v1::WorkerMessage m;
  v1::TokenBatch* batch = m.mutable_tokens();
  for (const RequestUpdate& u : updates) {
    v1::RequestTokens* item = batch->add_items();
    item->set_request_id(u.request_id);
    item->mutable_token_ids()->Add(u.tokens.begin(), u.tokens.end());
    for (const SampleResult& r : u.logprobs) {
      v1::TokenLogprobs* lp = item->add_logprobs();
      lp->set_logprob(static_cast<float>(r.logprob));
      for (const TokenLogprob& t : r.top) {
        v1::TokenLogprobs::Alternative* a = lp->add_top();
        a->set_id(t.token);
        a->set_logprob(static_cast<float>(t.logprob));
      }
    }
    if (u.finished) FillTerminal(u, item->mutable_terminal());
  }
  Send(std::move(m));
}

void StreamSink::Refuse(uint64_t request_id, const absl::Status& status) {
  RequestUpdate u;
  u.request_id = request_id;
  u.finished = true;
  u.status = status;
  std::vector<RequestUpdate> one;
  one.push_back(std::move(u));
  Deliver(std::move(one));
}

void StreamSink::Send(v1::WorkerMessage message) {
  message.set_epoch(epoch_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    queue_.push_back(std::move(message));
  }
  cv_.notify_one();
}

void StreamSink::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_ && !writer_.joinable()) return;
    closed_ = true;
  }
  cv_.notify_one();
  if (writer_.joinable()) writer_.join();
}

void StreamSink::WriteLoop() {
  bool broken = false;
  while (true) {
    std::deque<v1::WorkerMessage> batch;
    bool closed;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return closed_ || !queue_.empty(); });
      batch.swap(queue_);
      closed = closed_;
    }
    // Merge consecutive TokenBatches: one write for all that piled up.
    while (!batch.empty() && !broken) {
      v1::WorkerMessage m = std::move(batch.front());
      batch.pop_front();
      while (m.has_tokens() && !batch.empty() && batch.front().has_tokens()) {
        for (auto& item : *batch.front().mutable_tokens()->mutable_items()) {
          *m.mutable_tokens()->add_items() = std::move(item);
        }
        batch.pop_front();
      }
      if (!stream_->Write(m)) broken = true;  // the router is gone; drop the rest
    }
    if (closed) return;
  }
}

}  // namespace moeserve
