#include "router/inference_service.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "router/generate_stream.h"
#include "router/status_convert.h"

namespace moeserve {
namespace router {
namespace {

bool Authorized(const ApiKeys* keys, const grpc::ServerContext& context) {
  if (keys == nullptr || !keys->enabled()) return true;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return false;
  return keys->Allows(absl::string_view(it->second.data(), it->second.size()));
}

grpc::Status Unauthenticated() {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this router needs an API key: send the metadata "
                      "'authorization: Bearer KEY'");
}

}  // namespace

// One Generate call, from asking gRPC for it to its last tag. Three tags
// end it: Finish's (sent by the stream, or here for a rejected request),
// the done tag (always delivered once the call was matched) and no write
// in flight (the stream never finishes with one). A call asked for but
// never matched (ok=false: the server is shutting down) gets no done tag;
// it is parked and freed with the service, after the loop has drained.
class InferenceService::GenerateCall final : public GenerateWriter {
 public:
  explicit GenerateCall(InferenceService* service) : service_(service) {
    service_->CallCreated();
    context_.AsyncNotifyWhenDone(&done_tag_);
    service_->RequestGenerate(&context_, &request_, &writer_, service_->loop_->cq(),
                              service_->loop_->server_cq(), &accepted_);
  }

  // GenerateWriter (called under the stream's lock).
  void Write(const v1::GenerateResponse& message) override { writer_.Write(message, &wrote_); }
  void WriteAndFinish(const v1::GenerateResponse& message, const grpc::Status& status) override {
    writer_.WriteAndFinish(message, grpc::WriteOptions(), status, &finished_tag_);
  }
  void Finish(const grpc::Status& status) override { writer_.Finish(status, &finished_tag_); }

 private:
  void OnAccepted(bool ok) {
    if (!ok) {
      parked_ = true;
      service_->Park(this);
      return;
    }
    if (!service_->stopping_.load()) service_->AcceptGenerate();
    grpc::Status reject;
    absl::StatusOr<internal::v1::Submit> submit;
    if (!Authorized(service_->keys_, context_)) {
      reject = Unauthenticated();
    } else if (service_->draining_.load()) {
      reject = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the router is shutting down; retry on another router");
    } else {
      submit = service_->builder_->Build(request_);
      if (!submit.ok()) reject = ToGrpcStatus(submit.status());
    }
    if (!reject.ok()) {
      if (service_->metrics_ != nullptr) {
        service_->metrics_->OnError(
            absl::StatusCodeToString(static_cast<absl::StatusCode>(reject.error_code())));
      }
      writer_.Finish(reject, &finished_tag_);
      return;
    }
    stream_ = GenerateStream::Start(
        service_->pool_, service_->builder_->tokenizer(), *std::move(submit), this,
        std::vector<std::string>(request_.stop().begin(), request_.stop().end()),
        service_->metrics_);
    // The done tag has no order with the others: the client may have gone
    // already (then free the request on its worker at once).
    if (done_ && context_.IsCancelled()) stream_->OnCancel();
  }

  void OnWriteDone(bool ok) { stream_->OnWriteDone(ok); }

  void OnFinished(bool /*ok*/) {
    finished_ = true;
    MaybeDelete();
  }

  void OnDone(bool /*ok*/) {
    done_ = true;
    if (stream_ != nullptr && context_.IsCancelled()) stream_->OnCancel();
    MaybeDelete();
  }

  // Tags run one at a time on the loop, so these flags need no lock.
  void MaybeDelete() {
    if (!finished_ || !done_) return;
    InferenceService* service = service_;
    delete this;
    service->CallDeleted();
  }

  InferenceService* const service_;
  grpc::ServerContext context_;
  v1::GenerateRequest request_;
  grpc::ServerAsyncWriter<v1::GenerateResponse> writer_{&context_};
  std::shared_ptr<GenerateStream> stream_;
  bool finished_ = false, done_ = false;
  CompletionLoop::FunctionTag accepted_{[this](bool ok) { OnAccepted(ok); }};
  CompletionLoop::FunctionTag wrote_{[this](bool ok) { OnWriteDone(ok); }};
  CompletionLoop::FunctionTag finished_tag_{[this](bool ok) { OnFinished(ok); }};
  bool parked_ = false;  // never matched: the service frees it
  CompletionLoop::FunctionTag done_tag_{[this](bool ok) {
    if (!parked_) OnDone(ok);
  }};
};

class InferenceService::ModelInfoCall {
 public:
  explicit ModelInfoCall(InferenceService* service) : service_(service) {
    service_->CallCreated();
    service_->RequestGetModelInfo(&context_, &request_, &responder_, service_->loop_->cq(),
                                  service_->loop_->server_cq(), &accepted_);
  }

 private:
  void OnAccepted(bool ok) {
    if (!ok) {
      Delete();
      return;
    }
    if (!service_->stopping_.load()) service_->AcceptModelInfo();
    if (!Authorized(service_->keys_, context_)) {
      responder_.FinishWithError(Unauthenticated(), &finished_);
      return;
    }
    v1::ModelInfo info = service_->info_;
    info.set_world_size(service_->pool_->state().world_size);
    responder_.Finish(info, grpc::Status::OK, &finished_);
  }

  void Delete() {
    InferenceService* service = service_;
    delete this;
    service->CallDeleted();
  }

  InferenceService* const service_;
  grpc::ServerContext context_;
  v1::GetModelInfoRequest request_;
  grpc::ServerAsyncResponseWriter<v1::ModelInfo> responder_{&context_};
  CompletionLoop::FunctionTag accepted_{[this](bool ok) { OnAccepted(ok); }};
  CompletionLoop::FunctionTag finished_{[this](bool) { Delete(); }};
};

InferenceService::InferenceService(const RequestBuilder* builder, WorkerPool* pool,
                                   std::string model_name, RequestMetrics* metrics,
                                   const ApiKeys* keys)
    : builder_(builder), pool_(pool), metrics_(metrics), keys_(keys) {
  const ModelConfig& c = builder_->config();
  info_.set_name(std::move(model_name));
  info_.set_architecture(c.architecture_name);
  info_.set_context_length(c.max_position_embeddings);
  info_.set_vocab_size(c.vocab_size);
  info_.set_num_experts(c.num_experts);
  info_.set_experts_per_token(c.top_k);
  info_.set_num_layers(c.num_layers);
  info_.set_hidden_size(c.hidden_size);
}

InferenceService::~InferenceService() {
  absl::MutexLock lock(&mu_);
  for (GenerateCall* call : parked_) delete call;
}

void InferenceService::Start(CompletionLoop* loop) {
  loop_ = loop;
  AcceptGenerate();
  AcceptModelInfo();
}

void InferenceService::AcceptGenerate() { new GenerateCall(this); }
void InferenceService::AcceptModelInfo() { new ModelInfoCall(this); }

void InferenceService::Park(GenerateCall* call) {
  absl::MutexLock lock(&mu_);
  parked_.push_back(call);
  --calls_;
}

void InferenceService::CallCreated() {
  absl::MutexLock lock(&mu_);
  ++calls_;
}

void InferenceService::CallDeleted() {
  absl::MutexLock lock(&mu_);
  --calls_;
}

bool InferenceService::WaitForCalls(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&none), timeout);
}

}  // namespace router
}  // namespace moeserve
