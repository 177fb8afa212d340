#include "router/inference_service.h"

#include <string>
#include <utility>
#include <vector>

#include "router/generate_stream.h"
#include "router/status_convert.h"

namespace moeserve {
namespace router {
namespace {

bool Authorized(const ApiKeys* keys, grpc::CallbackServerContext* context) {
  if (keys == nullptr || !keys->enabled()) return true;
  const auto& md = context->client_metadata();
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

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  if (!Authorized(keys_, context)) {
    if (metrics_ != nullptr) metrics_->OnError("UNAUTHENTICATED");
    return GenerateStream::Reject(Unauthenticated());
  }
  if (draining_.load()) {
    if (metrics_ != nullptr) metrics_->OnError("UNAVAILABLE");
    return GenerateStream::Reject(grpc::Status(
        grpc::StatusCode::UNAVAILABLE, "the router is shutting down; retry on another router"));
  }
  absl::StatusOr<internal::v1::Submit> submit = builder_->Build(*request);
  if (!submit.ok()) {
    if (metrics_ != nullptr) metrics_->OnError(absl::StatusCodeToString(submit.status().code()));
    return GenerateStream::Reject(ToGrpcStatus(submit.status()));
  }
  return GenerateStream::Start(pool_, builder_->tokenizer(), *std::move(submit),
                               std::vector<std::string>(request->stop().begin(),
                                                        request->stop().end()),
                               metrics_);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest* /*request*/,
                                                         v1::ModelInfo* response) {
  if (!Authorized(keys_, context)) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Unauthenticated());
    return reactor;
  }
  *response = info_;
  response->set_world_size(pool_->state().world_size);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace router
}  // namespace moeserve
