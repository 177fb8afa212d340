// InferenceService: moeserve.v1.Inference on gRPC's callback API. Generate
// validates and tokenizes the request (RequestBuilder), places it on a
// worker (WorkerPool) and streams the output back (GenerateStream); no
// thread is held per request. GetModelInfo answers from config.json and the
// group's world size.
//
//   InferenceService service(builder.get(), &pool, "Qwen3-30B-A3B");
//   grpc::ServerBuilder b;
//   b.RegisterService(&service);
//
// Thread-safe; `builder` and `pool` must outlive the server.
#ifndef MOESERVE_ROUTER_INFERENCE_SERVICE_H_
#define MOESERVE_ROUTER_INFERENCE_SERVICE_H_

#include <atomic>
#include <string>

#include "moeserve/v1/inference.grpc.pb.h"
#include "router/api_keys.h"
#include "router/request_builder.h"
#include "router/request_metrics.h"
#include "router/worker_pool.h"

namespace moeserve {
namespace router {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // `metrics` and `keys` (optional) must outlive the service. With keys,
  // calls without a valid `authorization: Bearer KEY` get UNAUTHENTICATED.
  InferenceService(const RequestBuilder* builder, WorkerPool* pool, std::string model_name,
                   RequestMetrics* metrics = nullptr, const ApiKeys* keys = nullptr);

  // From now on Generate answers UNAVAILABLE (the router is draining);
  // calls already running go on.
  void StartDraining() { draining_.store(true); }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  const RequestBuilder* const builder_;
  WorkerPool* const pool_;
  RequestMetrics* const metrics_;
  const ApiKeys* const keys_;
  v1::ModelInfo info_;  // all but world_size
  std::atomic<bool> draining_{false};
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_INFERENCE_SERVICE_H_
