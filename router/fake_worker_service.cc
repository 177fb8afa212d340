#include "router/fake_worker_service.h"

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace router {

using internal::v1::RouterMessage;
using internal::v1::WorkerMessage;

std::unique_ptr<grpc::Server> FakeWorkerService::Serve(int* port) {
  grpc::ServerBuilder b;
  b.AddListeningPort(absl::StrCat("127.0.0.1:", *port), grpc::InsecureServerCredentials(), port);
  b.RegisterService(this);
  return b.BuildAndStart();
}

grpc::Status FakeWorkerService::Connect(
    grpc::ServerContext* context, grpc::ServerReaderWriter<WorkerMessage, RouterMessage>* stream) {
  RouterMessage in;
  if (!stream->Read(&in) || !in.has_hello()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected Hello");
  }
  uint64_t epoch;
  std::vector<int32_t> reply;
  {
    absl::MutexLock lock(&mu_);
    hellos_.push_back(in.hello().router_id());
    if (forming_ > 0) {
      --forming_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "group is forming");
    }
    epoch = epoch_;
    reply = reply_;
    context_ = context;
  }
  WorkerMessage welcome;
  welcome.set_epoch(epoch);
  welcome.mutable_welcome()->set_rank(rank_);
  welcome.mutable_welcome()->set_world_size(world_);
  stream->Write(welcome);
  WorkerMessage load;
  load.set_epoch(epoch);
  load.mutable_load()->set_pending_tokens(77);
  stream->Write(load);
  while (stream->Read(&in)) {
    {
      absl::MutexLock lock(&mu_);
      if (in.epoch() != epoch) ++wrong_epochs_;
      received_.push_back(in);
    }
    WorkerMessage out;
    out.set_epoch(epoch);
    auto* item = out.mutable_tokens()->add_items();
    if (in.has_submit()) {
      item->set_request_id(in.submit().request_id());
      item->mutable_token_ids()->Add(reply.begin(), reply.end());
      item->mutable_terminal()->set_finish_reason(internal::v1::FINISH_REASON_LENGTH);
      item->mutable_terminal()->set_prompt_tokens(in.submit().prompt_size());
      item->mutable_terminal()->set_completion_tokens(reply.size());
    } else if (in.has_abort()) {
      item->set_request_id(in.abort().request_id());
      item->mutable_terminal()->set_code(static_cast<int>(grpc::StatusCode::CANCELLED));
    } else {
      continue;
    }
    stream->Write(out);
  }
  absl::MutexLock lock(&mu_);
  if (context_ == context) context_ = nullptr;
  return grpc::Status::OK;
}

void FakeWorkerService::SetForming(int n) {
  absl::MutexLock lock(&mu_);
  forming_ = n;
}

void FakeWorkerService::SetEpoch(uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  epoch_ = epoch;
}

void FakeWorkerService::SetReply(std::vector<int32_t> tokens) {
  absl::MutexLock lock(&mu_);
  reply_ = std::move(tokens);
}

void FakeWorkerService::Kick() {
  absl::MutexLock lock(&mu_);
  if (context_ != nullptr) context_->TryCancel();
}

std::vector<std::string> FakeWorkerService::hellos() {
  absl::MutexLock lock(&mu_);
  return hellos_;
}

std::vector<RouterMessage> FakeWorkerService::received() {
  absl::MutexLock lock(&mu_);
  return received_;
}

int FakeWorkerService::wrong_epochs() {
  absl::MutexLock lock(&mu_);
  return wrong_epochs_;
}

}  // namespace router
}  // namespace moeserve
