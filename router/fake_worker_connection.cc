#include "router/fake_worker_connection.h"

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace router {

using internal::v1::TokenBatch;

void FakeWorkerConnection::Start(Listener* listener) {
  absl::MutexLock lock(&mu_);
  listener_ = listener;
}

void FakeWorkerConnection::SetSubmitHook(
    std::function<void(const internal::v1::Submit&)> hook) {
  absl::MutexLock lock(&mu_);
  submit_hook_ = std::move(hook);
}

absl::Status FakeWorkerConnection::Submit(uint64_t session, const internal::v1::Submit& submit) {
  std::function<void(const internal::v1::Submit&)> hook;
  {
    absl::MutexLock lock(&mu_);
    hook = submit_hook_;
  }
  if (hook) hook(submit);
  absl::MutexLock lock(&mu_);
  if (session_ == 0 || session != session_) {
    return absl::UnavailableError(absl::StrCat("worker ", address_, " is not connected"));
  }
  submits_.push_back(submit);
  sent_.push_back(absl::StrCat("submit ", submit.request_id()));
  return absl::OkStatus();
}

void FakeWorkerConnection::Abort(uint64_t session, uint64_t request_id) {
  absl::MutexLock lock(&mu_);
  if (session_ != 0 && session == session_) {
    aborts_.push_back(request_id);
    sent_.push_back(absl::StrCat("abort ", request_id));
  }
}

void FakeWorkerConnection::Shutdown() {
  absl::MutexLock deliver(&deliver_mu_);
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  session_ = 0;
}

uint64_t FakeWorkerConnection::Connect(uint32_t rank, uint32_t world_size, uint64_t epoch) {
  absl::MutexLock deliver(&deliver_mu_);
  Listener* listener;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    if (listener_ == nullptr || shut_down_) return 0;
    listener = listener_;
    session = session_ = ++sessions_started_;
  }
  internal::v1::Welcome welcome;
  welcome.set_rank(rank);
  welcome.set_world_size(world_size);
  listener->OnConnected(session, epoch, welcome);
  return session;
}

void FakeWorkerConnection::SendBatch(const TokenBatch& batch) {
  absl::MutexLock deliver(&deliver_mu_);
  Listener* listener;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    if (session_ == 0) return;
    listener = listener_;
    session = session_;
  }
  listener->OnTokens(session, batch);
}

void FakeWorkerConnection::SendTokens(uint64_t request_id, const std::vector<int32_t>& ids) {
  TokenBatch batch;
  auto* item = batch.add_items();
  item->set_request_id(request_id);
  item->mutable_token_ids()->Add(ids.begin(), ids.end());
  SendBatch(batch);
}

void FakeWorkerConnection::Finish(uint64_t request_id, const std::vector<int32_t>& ids,
                                  internal::v1::FinishReason reason, uint32_t prompt_tokens,
                                  uint32_t completion_tokens) {
  TokenBatch batch;
  auto* item = batch.add_items();
  item->set_request_id(request_id);
  item->mutable_token_ids()->Add(ids.begin(), ids.end());
  auto* terminal = item->mutable_terminal();
  terminal->set_code(0);
  terminal->set_finish_reason(reason);
  terminal->set_prompt_tokens(prompt_tokens);
  terminal->set_completion_tokens(completion_tokens);
  SendBatch(batch);
}

void FakeWorkerConnection::Fail(uint64_t request_id, int code, const std::string& message) {
  TokenBatch batch;
  auto* item = batch.add_items();
  item->set_request_id(request_id);
  item->mutable_terminal()->set_code(code);
  item->mutable_terminal()->set_message(message);
  SendBatch(batch);
}

void FakeWorkerConnection::SendLoad(uint64_t pending_tokens, uint32_t active_requests,
                                    bool draining) {
  absl::MutexLock deliver(&deliver_mu_);
  Listener* listener;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    if (session_ == 0) return;
    listener = listener_;
    session = session_;
  }
  internal::v1::LoadReport load;
  load.set_pending_tokens(pending_tokens);
  load.set_active_requests(active_requests);
  load.set_draining(draining);
  listener->OnLoad(session, load);
}

void FakeWorkerConnection::Disconnect(const absl::Status& why) {
  absl::MutexLock deliver(&deliver_mu_);
  Listener* listener;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    session = session_ != 0 ? session_ : ended_unreported_;
    if (session == 0) return;
    listener = listener_;
    session_ = 0;
    ended_unreported_ = 0;
  }
  listener->OnDisconnected(session, why);
}

void FakeWorkerConnection::EndSessionUnreported() {
  absl::MutexLock lock(&mu_);
  ended_unreported_ = session_;
  session_ = 0;
}

std::vector<std::string> FakeWorkerConnection::sent() const {
  absl::MutexLock lock(&mu_);
  return sent_;
}

std::vector<internal::v1::Submit> FakeWorkerConnection::submits() const {
  absl::MutexLock lock(&mu_);
  return submits_;
}

std::vector<uint64_t> FakeWorkerConnection::aborts() const {
  absl::MutexLock lock(&mu_);
  return aborts_;
}

bool FakeWorkerConnection::WaitForSubmits(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return submits_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FakeWorkerConnection::WaitForAborts(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return aborts_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FakeWorkerConnection::connected() const {
  absl::MutexLock lock(&mu_);
  return session_ != 0;
}

bool FakeWorkerConnection::started() const {
  absl::MutexLock lock(&mu_);
  return listener_ != nullptr;
}

bool FakeWorkerConnection::shut_down() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

}  // namespace router
}  // namespace moeserve
