// InferenceService: moeserve.v1.Inference on gRPC's async API, its calls
// run by one CompletionLoop. Generate validates and tokenizes the request
// (RequestBuilder), places it on a worker (WorkerPool) and streams the
// output back (GenerateStream); no thread is held per request.
// GetModelInfo answers from config.json and the group's world size.
//
//   InferenceService service(builder.get(), &pool, "Qwen3-30B-A3B");
//   grpc::ServerBuilder b;
//   b.RegisterService(&service);
//   CompletionLoop loop(b.AddCompletionQueue());
//   auto server = b.BuildAndStart();
//   service.Start(&loop);
//   loop.Start();
//   ...
//   service.StopAccepting();
//   server->Shutdown();
//   service.WaitForCalls(absl::Seconds(10));
//   loop.Shutdown();
//
// Thread-safe; `builder`, `pool` and the loop must outlive the server.
#ifndef MOESERVE_ROUTER_INFERENCE_SERVICE_H_
#define MOESERVE_ROUTER_INFERENCE_SERVICE_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "moeserve/v1/inference.grpc.pb.h"
#include "router/api_keys.h"
#include "router/completion_loop.h"
#include "router/request_builder.h"
#include "router/request_metrics.h"
#include "router/worker_pool.h"

namespace moeserve {
namespace router {

class InferenceService final : public v1::Inference::AsyncService {
 public:
  // `metrics` and `keys` (optional) must outlive the service. With keys,
  // calls without a valid `authorization: Bearer KEY` get UNAUTHENTICATED.
  InferenceService(const RequestBuilder* builder, WorkerPool* pool, std::string model_name,
                   RequestMetrics* metrics = nullptr, const ApiKeys* keys = nullptr);
  // After the loop's Shutdown (it frees calls that were never matched).
  ~InferenceService() override;

  // Starts taking calls on `loop` (a queue of the server this service is
  // registered on), after BuildAndStart.
  void Start(CompletionLoop* loop);

  // From now on Generate answers UNAVAILABLE (the router is draining);
  // calls already running go on.
  void StartDraining() { draining_.store(true); }

  // Before Server::Shutdown(): no new call is asked for.
  void StopAccepting() { stopping_.store(true); }
  // After Server::Shutdown(), before the loop's: waits until every call has
  // ended and released what it held (the loop must still be running).
  // False if some had not within `timeout`.
  bool WaitForCalls(absl::Duration timeout);

 private:
  class GenerateCall;
  class ModelInfoCall;
  friend class GenerateCall;
  friend class ModelInfoCall;

  void AcceptGenerate();
  void AcceptModelInfo();
  // Counts the call objects alive (waiting ones included).
  void CallCreated();
  void CallDeleted();
  // Keeps a Generate call that was never matched until the destructor.
  void Park(GenerateCall* call);

  const RequestBuilder* const builder_;
  WorkerPool* const pool_;
  RequestMetrics* const metrics_;
  const ApiKeys* const keys_;
  v1::ModelInfo info_;  // all but world_size
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopping_{false};
  CompletionLoop* loop_ = nullptr;
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<GenerateCall*> parked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_INFERENCE_SERVICE_H_
